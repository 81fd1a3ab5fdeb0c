#!/usr/bin/env bash
# Installs what building and running the Worker needs, only what is missing (recipe:
# shared/notes/workers.md). Everything but the Debian packages goes under target/, so a
# cached target/ caches the ~20 minutes of `cargo install` too.
#   --rust-only   just Debian's rustc-web 1.96 + std source + lld (the wasm32 check of the core)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mkdir -p target
pkgs="rustc-web=1.96.0+dfsg1-1~deb12u2 cargo-web=1.96.0+dfsg1-1~deb12u2 rust-web-src=1.96.0+dfsg1-1~deb12u2 lld-22"
if ! dpkg -s rustc-web rust-web-src lld-22 >/dev/null 2>&1; then
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs; } >target/wasm-apt.log 2>&1
fi
mkdir -p /usr/lib/rustlib/wasm32-unknown-unknown/lib   # worker-build looks for it
[ "${1:-}" = "--rust-only" ] && exit 0

tools=$root/target/tools
# worker-build is released with the `worker` crate; wasm-bindgen-cli must match the
# wasm-bindgen in Cargo.lock exactly. Debug builds: they orchestrate, the compiler and
# wasm-opt do the work, and they install in a third of the time.
wb=$(awk '/^name = "worker"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
bg=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
if [ "$("$tools/bin/worker-build" --version 2>/dev/null)" != "$wb" ]; then
  echo "installing worker-build $wb (some minutes, once: cached in target/tools)"
  cargo install --debug "worker-build@$wb" --locked --root "$tools" >target/tools-worker-build.log 2>&1 \
    || { tail -20 target/tools-worker-build.log; exit 1; }
fi
if ! "$tools/bin/wasm-bindgen" --version 2>/dev/null | grep -qF " $bg"; then
  echo "installing wasm-bindgen-cli $bg"
  cargo install --debug "wasm-bindgen-cli@$bg" --root "$tools" >target/tools-wasm-bindgen.log 2>&1 \
    || { tail -20 target/tools-wasm-bindgen.log; exit 1; }
fi
# esbuild and wasm-opt for worker-build; wrangler 4.86 (the last on Node 20) for
# `wrangler dev` and its Miniflare/workerd, which the tests drive.
if [ ! -x target/node/node_modules/.bin/wrangler ] || [ ! -x target/node/node_modules/.bin/wasm-opt ]; then
  command -v npm >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm; } >target/node-apt.log 2>&1
  mkdir -p target/node
  (cd target/node && { [ -f package.json ] || npm init -y >/dev/null; } \
     && npm install --no-audit --no-fund esbuild binaryen wrangler@4.86.0) >target/node-install.log 2>&1 \
    || { tail -20 target/node-install.log; exit 1; }
fi
