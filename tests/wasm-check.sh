#!/usr/bin/env bash
# Builds wharf-core for wasm32-unknown-unknown with Debian's rustc-web and build-std
# (recipe: shared/notes/workers.md). Proves the core needs no OS, tokio or Send.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-worker-tools.sh --rust-only
root=$PWD
. functions/worker/wasm-env.sh   # the Worker's environment: one cache for both builds
/usr/bin/cargo build -p wharf-core --release --target wasm32-unknown-unknown
ls -l target/wasm/wasm32-unknown-unknown/release/libwharf_core.rlib
