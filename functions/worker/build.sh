#!/usr/bin/env bash
# Builds the Worker: wasm32 with Debian's rustc-web 1.96 and build-std (recipe:
# shared/notes/workers.md), then worker-build (wasm-bindgen, wasm-opt, the JS shim).
#   bash build.sh                 → build/index.js + build/index_bg.wasm (what wrangler deploys)
#   bash build.sh --conformance   → build-test/ with POST /__conformance (tests only)
# Tools come from tests/install-worker-tools.sh (target/tools, target/node), so a build
# cache in target/ also caches them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=build
args=()
if [ "${1:-}" = "--conformance" ]; then out=build-test; args=(-- --features conformance); fi
bash "$root/tests/install-worker-tools.sh"
export PATH=/usr/bin:$root/target/tools/bin:$PATH   # Debian's 1.96 before rustup's 1.95
export RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort
export CARGO_TARGET_DIR=$root/target/wasm            # never shared with the host build
export WASM_BINDGEN_BIN=$root/target/tools/bin/wasm-bindgen
export ESBUILD_BIN=$root/target/node/node_modules/@esbuild/linux-x64/bin/esbuild
export WASM_OPT_BIN=$root/target/node/node_modules/.bin/wasm-opt
# One codegen unit and whole-program LTO: smaller and faster wasm. opt-level stays 3:
# SHA-256 of every pushed byte is the Worker's CPU cost.
export CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=false
cd "$here"
worker-build --release --out-dir "$out" "${args[@]}"
ls -l "$out/index.js" "$out/index_bg.wasm"
