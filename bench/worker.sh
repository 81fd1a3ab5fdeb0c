#!/usr/bin/env bash
# The Worker measured (bench/worker.py): wasm size, cold start under workerd, manifest GET
# req/s next to `wharf serve` and Distribution in the same run, and the Worker's own SHA-256
# rate (bench/wasm_hash.js: wharf-core's hasher built as the Worker is, timed under V8).
#
#   bash bench/worker.sh           print the report (markdown) on stdout, progress on stderr
#   bash bench/worker.sh --write   also put it into BENCHMARKS.md, between the worker markers
#
# Environment: BENCH_DURATION (10 s per load run), BENCH_CONNS (32), BENCH_COLD (5 cold starts).
# A report, not a test: the exit status says whether the run completed, never how fast it was.
set -euo pipefail
cd "$(dirname "$0")/.."
write=0
[ "${1:-}" = "--write" ] && write=1
for t in wrk docker-registry; do
  command -v $t >/dev/null || { apt-get update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk docker-registry >&2; break; }
done
echo "[bench] building the Worker as deployed (functions/worker/build.sh)" >&2
bash functions/worker/build.sh >&2
echo "[bench] building wharf-core's SHA-256 for wasm32 as the Worker is (bench/wasm-hash)" >&2
(
  root=$PWD
  . functions/worker/wasm-env.sh
  cargo build --release --target wasm32-unknown-unknown -p wharf-wasm-hash >&2
  wasm-bindgen --target nodejs --out-dir target/bench-wasm-hash target/wasm/wasm32-unknown-unknown/release/wharf_wasm_hash.wasm
  # worker-build's default wasm-opt pass, so the hash runs as optimised as in the Worker.
  target/node/node_modules/.bin/wasm-opt -O target/bench-wasm-hash/wharf_wasm_hash_bg.wasm -o target/bench-wasm-hash/wharf_wasm_hash_bg.wasm
)
[ -x target/release/wharf ] || cargo build --release -p wharf >&2
report=$(python3 bench/worker.py)
echo "$report"
if [ "$write" = 1 ]; then
  python3 bench/write_section.py worker "$report"
  echo "[bench] results written to BENCHMARKS.md" >&2
fi
