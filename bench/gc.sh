#!/usr/bin/env bash
# Garbage collection on a synthetic registry, wharf against CNCF Distribution 2.8 (Debian's
# docker-registry) on the same content, in one run.
#
#   bash bench/gc.sh            print the report (markdown) on stdout, progress on stderr
#   bash bench/gc.sh --write    also put it into BENCHMARKS.md, between the gc markers
#
# Environment: GC_BENCH_MANIFESTS (100000: 1,000 repositories of 100 images, 300,000 blobs),
# GC_BENCH_DELETE (1000), GC_BENCH_AWS_MANIFESTS (0: the AWS stand-ins are skipped unless
# asked, e.g. 100) and GC_BENCH_AWS_DELETE (30), BENCH_DIR (target/bench-work). The AWS
# stand-ins stay small: moto answers one request at a time and deep-copies its tables for
# every transaction, so it slows as its table grows (100 manifests: 5 minutes; at ~150 a
# call passes the SDK's 5 s attempt timeout, and moto ignores the retry's idempotency token).
#
# The embedded store is generated on /dev/shm (its commits are fsync'd: 700,000 of them on
# disk would take an hour), then copied to BENCH_DIR, where it is measured; Distribution's
# layout is written straight to BENCH_DIR. Distribution's garbage-collect runs on it with
# the registry stopped, as its documentation requires. A report, not a test: the exit
# status says whether the run completed, never how fast it was.
set -euo pipefail
cd "$(dirname "$0")/.."

write=0
for a in "$@"; do
  case "$a" in
    --write) write=1 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
command -v docker-registry >/dev/null || {
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry time >&2
}

N=${GC_BENCH_MANIFESTS:-100000}
DEL=${GC_BENCH_DELETE:-1000}
AWS_N=${GC_BENCH_AWS_MANIFESTS:-0}
AWS_DEL=${GC_BENCH_AWS_DELETE:-30}
work=${BENCH_DIR:-target/bench-work}/gc
shm=/dev/shm/wharf-gc-bench-$$
log() { echo "[gc-bench] $*" >&2; }
trap 'rm -rf "$shm"' EXIT

cargo build --release -q -p wharf-gc-bench >&2
B=target/release/wharf-gc-bench
rm -rf "$work" && mkdir -p "$work" "$shm"

log "generating $N manifests (embedded store on $shm, Distribution's layout in $work/dist)"
"$B" generate --dir "$shm" --manifests "$N" --distribution "$work/dist" >"$work/results.jsonl"
cp -a "$shm" "$work/wharf"
rm -rf "$shm"
sync

cat >"$work/dist.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $(cd "$work" && pwd)/dist
  delete:
    enabled: true
EOF

# Distribution's garbage-collect (the registry stopped): time, peak memory, blobs deleted.
dist_gc() {
  local case=$1 before after
  before=$(find "$work/dist/docker/registry/v2/blobs" -name data | wc -l)
  sync
  /usr/bin/time -f '%e %M' -o "$work/dist-$case.time" \
    docker-registry garbage-collect "$work/dist.yml" >"$work/dist-$case.out" 2>"$work/dist-$case.err"
  after=$(find "$work/dist/docker/registry/v2/blobs" -name data | wc -l)
  read -r secs kib <"$work/dist-$case.time"
  echo "{\"case\": \"dist_$case\", \"seconds\": $secs, \"peak_rss_kib\": $kib, \"objects_before\": $before, \"objects_after\": $after, \"eligible\": $(grep -c 'eligible for deletion' "$work/dist-$case.out" || true)}" >>"$work/results.jsonl"
}

log "Distribution garbage-collect: nothing to collect"
dist_gc nothing
log "wharf: nothing to collect, after deleting $DEL manifests, --verify"
"$B" measure --dir "$work/wharf" --manifests "$N" --delete "$DEL" --distribution "$work/dist" >>"$work/results.jsonl"
log "Distribution garbage-collect: after deleting the same $DEL manifests"
dist_gc after_delete

if [ "$AWS_N" -gt 0 ]; then
  log "AWS stand-ins (s3s-fs, moto): $AWS_N manifests"
  "$B" aws --manifests "$AWS_N" --delete "$AWS_DEL" --concurrency 1 >>"$work/results.jsonl"
fi

report=$(python3 bench/gc_report.py "$work/results.jsonl" "$N" "$DEL" "$AWS_N" "$AWS_DEL")
echo "$report"
if [ "$write" = 1 ]; then
  python3 bench/write_section.py gc "$report"
  log "results written to BENCHMARKS.md"
fi
