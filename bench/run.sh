#!/usr/bin/env bash
# wharf against CNCF Distribution 2.8 (Debian's docker-registry), both measured in one run.
#
#   bash bench/run.sh            print the report (markdown) on stdout, progress on stderr
#   bash bench/run.sh --write    also put it into BENCHMARKS.md, between the results markers
#   bash bench/run.sh --build    rebuild target/release/wharf first (otherwise only if missing)
#
# Environment: BENCH_LAYER_MB (1024), BENCH_DURATION (10 s per load run), BENCH_CONNS (32),
# BENCH_REPEAT (2 rounds of each push/pull), BENCH_RANGE_MB (16, the multi-PATCH push),
# BENCH_DIR (work dir; default target/bench-work, the file system the data dirs live on),
# WHARF_BIN, BENCH_SELFTEST=1 (both columns docker-registry: checks the harness alone).
# A report, not a test: the exit status says whether the run completed, never how fast it was.
set -euo pipefail
cd "$(dirname "$0")/.."

write=0 build=0
for a in "$@"; do
  case "$a" in
    --write) write=1 ;;
    --build) build=1 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[bench] installing ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

if [ "${BENCH_SELFTEST:-0}" != 1 ] && { [ "$build" = 1 ] || [ ! -x "${WHARF_BIN:-target/release/wharf}" ]; }; then
  echo "[bench] cargo build --release -p wharf" >&2
  cargo build --release -p wharf >&2
fi
# The load generator for HEAD (wrk cannot do HEAD: wg/wrk#198); quick when up to date.
cargo build --release -q -p wharf-bench >&2

report=$(python3 bench/bench.py)
echo "$report"

if [ "$write" = 1 ]; then
  python3 bench/write_section.py results "$report"
  echo "[bench] results written to BENCHMARKS.md" >&2
fi
