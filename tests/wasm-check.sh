#!/usr/bin/env bash
# Builds wharf-core for wasm32-unknown-unknown with Debian's rustc-web and build-std
# (recipe: shared/notes/workers.md). Proves the core needs no OS, tokio or Send.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-worker-tools.sh --rust-only
PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort \
  CARGO_TARGET_DIR=target/wasm /usr/bin/cargo build -p wharf-core --release \
  --target wasm32-unknown-unknown
ls -l target/wasm/wasm32-unknown-unknown/release/libwharf_core.rlib
