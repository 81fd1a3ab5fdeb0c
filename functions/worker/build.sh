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
. "$here/wasm-env.sh"
export WASM_BINDGEN_BIN=$root/target/tools/bin/wasm-bindgen
export ESBUILD_BIN=$root/target/node/node_modules/@esbuild/linux-x64/bin/esbuild
export WASM_OPT_BIN=$root/target/node/node_modules/.bin/wasm-opt
cd "$here"
worker-build --release --out-dir "$out" "${args[@]}"
ls -l "$out/index.js" "$out/index_bg.wasm"
