# The wasm32 build environment (recipe: shared/notes/workers.md), sourced by build.sh and
# tests/wasm-check.sh so both share one cache in target/wasm (same compiler, same profile).
# Needs $root (the workspace root).
export PATH=/usr/bin:$root/target/tools/bin:$PATH   # Debian's 1.96 before rustup's 1.95
export RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort
export CARGO_TARGET_DIR=$root/target/wasm            # never shared with the host build
# One codegen unit and whole-program LTO: smaller and faster wasm. opt-level stays 3:
# SHA-256 of every pushed byte is the Worker's CPU cost.
export CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=false
