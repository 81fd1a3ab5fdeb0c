#!/usr/bin/env bash
# Builds wharf-core for wasm32-unknown-unknown with Debian's rustc-web and build-std
# (recipe: shared/notes/workers.md). Proves the core needs no OS, tokio or Send.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs="rustc-web=1.96.0+dfsg1-1~deb12u2 cargo-web=1.96.0+dfsg1-1~deb12u2 rust-web-src=1.96.0+dfsg1-1~deb12u2 lld-22"
if ! dpkg -s rustc-web rust-web-src lld-22 >/dev/null 2>&1; then
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs; } >target/wasm-apt.log 2>&1
fi
mkdir -p /usr/lib/rustlib/wasm32-unknown-unknown/lib
PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort \
  CARGO_TARGET_DIR=target/wasm /usr/bin/cargo build -p wharf-core --release \
  --target wasm32-unknown-unknown
ls -l target/wasm/wasm32-unknown-unknown/release/libwharf_core.rlib
