#!/usr/bin/env bash
# The AWS runtime, measured next to Distribution (Debian's docker-registry, s3 driver) in
# the same run. A report, not a test: the exit status says whether the run completed.
#
#   bash bench/aws.sh            print the report (markdown) on stdout, progress on stderr
#   bash bench/aws.sh --write    also put it into BENCHMARKS.md, between the aws markers
#
# 1. AWS calls per operation. `wharf serve --storage s3 --metadata dynamodb` (token auth
#    on; the same core and adapters as the Lambda) counts its SDK calls with the
#    interceptor (WHARF_COUNT_AWS_CALLS=1); each operation runs on a fresh process, as on a
#    cold Lambda instance. S3 (s3s-fs) sits behind bench/s3_count_proxy.py, which counts
#    every S3 request, including the GETs clients make on presigned URLs. docker-registry
#    on the same proxy and s3s-fs (redirects on, no cache, no auth) does the same
#    operations. The counts become a cost per million pulls at list prices (see report).
# 2. The Lambda: zipped bootstrap from `cargo lambda build --profile lambda` (x86_64, and arm64
#    when Debian's rustc-web and its std source are there for build-std), cold start to
#    the first response under `cargo lambda watch` (median of BENCH_COLD_RUNS, 7), and peak
#    memory (VmHWM) of an instance after a 100 MB chunked push and read-back.
#
# Environment: WHARF_BIN, LAMBDA_BIN (default target/release/…), BENCH_COLD_RUNS (7),
# BENCH_ARM64=0 to skip the arm64 build, BENCH_ZIP=0 to skip both builds, BENCH_LAYERS (4 layers in the pushed image).
set -u
cd "$(dirname "$0")/.."
write=0
for a in "$@"; do
  case "$a" in
    --write) write=1 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
export E2E_LOGDIR=${E2E_LOGDIR:-$PWD/target/bench-logs}
source tests/e2e/lib.sh
source tests/e2e/aws_lib.sh
log() { echo "[bench-aws] $*" >&2; }
for b in "$WHARF_BIN" "$LAMBDA_BIN"; do
  [ -x "$b" ] || { log "missing $b: cargo build --release -p wharf -p wharf-lambda-api"; exit 1; }
done
command -v docker-registry >/dev/null || { log "docker-registry is missing (apt-get install docker-registry)"; exit 1; }
OUT=$WORK/results
mkdir -p "$OUT"

# ---- stand-ins: s3s-fs behind the counting proxy, moto -----------------------------------
start_s3
start_moto
PROXY_PORT=$(free_port)
python3 bench/s3_count_proxy.py "$PROXY_PORT" "$S3_PORT" >"$LOGDIR/$SUITE-proxy.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$PROXY_PORT/__counts" 20
PROXY=http://127.0.0.1:$PROXY_PORT
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=wharftestkey AWS_SECRET_ACCESS_KEY=wharftestsecret
export AWS_ENDPOINT_URL_S3=$PROXY AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$MOTO_PORT
export WHARF_S3_BUCKET=wharf-bench WHARF_DYNAMODB_TABLE=wharf-bench
"$WHARF_BIN" aws bootstrap >"$LOGDIR/$SUITE-bootstrap.log" 2>&1 || { log "bootstrap failed"; exit 1; }
proxy_counts() { curl -sf "$PROXY/__counts"; }

# ---- the reference: Distribution on moto's S3 ------------------------------------------------
# Not on s3s-fs: Distribution's s3 driver lists multipart uploads on every PATCH, which
# s3s-fs does not implement (501). moto's S3 sits behind a second counting proxy.
REF_PROXY_PORT=$(free_port)
python3 bench/s3_count_proxy.py "$REF_PROXY_PORT" "$MOTO_PORT" >"$LOGDIR/$SUITE-ref-proxy.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$REF_PROXY_PORT/__counts" 20
REF_PROXY=http://127.0.0.1:$REF_PROXY_PORT
ref_proxy_counts() { curl -sf "$REF_PROXY/__counts"; }
python3 -c 'import boto3,sys; boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1").create_bucket(Bucket="ref-bench")' \
  "http://127.0.0.1:$MOTO_PORT" || { log "could not create the reference's bucket in moto"; exit 1; }
REF_PORT=$(free_port)
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log: {level: info}
storage:
  s3:
    accesskey: wharftestkey
    secretkey: wharftestsecret
    region: us-east-1
    regionendpoint: $REF_PROXY
    bucket: ref-bench
    secure: false
    v4auth: true
  delete: {enabled: true}
  redirect: {disable: false}
http:
  addr: 127.0.0.1:$REF_PORT
EOF
REF_LOG=$LOGDIR/$SUITE-docker-registry.log
start_ref() {
  : >"$REF_LOG"
  # Without AWS_CA_BUNDLE: its Go SDK v1 refuses to start with one set ("unsupported transport").
  env -u AWS_CA_BUNDLE docker-registry serve "$WORK/registry.yml" >>"$REF_LOG" 2>&1 &
  REF_PID=$!
  PIDS+=("$REF_PID")
}
start_ref
wait_http "http://127.0.0.1:$REF_PORT/v2/" 30
REF=127.0.0.1:$REF_PORT

# ---- wharf on a fixed port, one fresh process per measured operation -----------------------
W_PORT=$(free_port)
W=127.0.0.1:$W_PORT
W_LOG=$WORK/wharf-counted.log
wharf_up() {
  : >"$W_LOG"
  WHARF_COUNT_AWS_CALLS=1 RUST_LOG=info,wharf=debug "$WHARF_BIN" serve --listen "$W" \
    --storage s3 --metadata dynamodb --data-dir "$WORK/wharf-data" >"$W_LOG" 2>&1 &
  W_PID=$!
  PIDS+=("$W_PID")
  wait_http "http://$W/v2/" 20
  proxy_counts >/dev/null # start-up's S3 calls are not the operation's
}
wharf_down() {
  kill "$W_PID"
  for _ in $(seq 1 100); do kill -0 "$W_PID" 2>/dev/null || break; sleep 0.1; done
  cat "$W_LOG" >>"$LOGDIR/$SUITE-wharf.log"
}

# measure LABEL REPS CMD…: CMD REPS times on a fresh wharf; records SDK calls, S3 requests
# (server and presigned) and HTTP requests, per repetition.
measure() {
  local label=$1 reps=$2 i s3 sdk reqs
  shift 2
  wharf_up
  for i in $(seq 1 "$reps"); do "$@" >>"$WORK/ops.log" 2>&1 || log "FAILED: $label ($*)"; done
  s3=$(proxy_counts)
  wharf_down
  sdk=$(grep -o 'wharf-aws-calls .*' "$W_LOG" | cut -d' ' -f2-)
  reqs=$(($(grep -c ' request method=' "$W_LOG") - 1)) # less wait_http's probe
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' wharf "$label" "$reps" "$reqs" "${sdk:-null}" "$s3" >>"$OUT/calls.tsv"
}
# measure_ref LABEL REPS CMD…: the same on the running docker-registry.
measure_ref() {
  local label=$1 reps=$2 i s3 before after
  shift 2
  ref_proxy_counts >/dev/null
  before=$(grep -cE '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/' "$REF_LOG")
  for i in $(seq 1 "$reps"); do "$@" >>"$WORK/ops.log" 2>&1 || log "FAILED: reference $label ($*)"; done
  sleep 0.2
  s3=$(ref_proxy_counts)
  after=$(grep -cE '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/' "$REF_LOG")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' reference "$label" "$reps" "$((after - before))" null "$s3" >>"$OUT/calls.tsv"
}

log "building a ${BENCH_LAYERS:-4}-layer image"
start_dockerd
export DOCKER_CONFIG="$WORK/docker-config"
mkdir -p "$DOCKER_CONFIG" "$WORK/ctx"
make_image bench-base:1 2
printf 'FROM bench-base:1\n' >"$WORK/ctx/Dockerfile"
for i in $(seq 2 "${BENCH_LAYERS:-4}"); do
  head -c $((1024 * 1024)) /dev/urandom >"$WORK/ctx/l$i.bin"
  echo "COPY l$i.bin /l$i.bin" >>"$WORK/ctx/Dockerfile"
done
DOCKER_BUILDKIT=0 docker build -q -t bench/app:v1 "$WORK/ctx" >/dev/null || { log "docker build failed"; exit 1; }
docker tag bench/app:v1 "$W/bench/app:v1"
docker tag bench/app:v1 "$REF/bench/app:v1"
wipe_images() { docker rmi -f $(docker images -aq) >/dev/null 2>&1 || true; }

MT='application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json'
# token: a pull token for bench/app from the running wharf.
token() {
  curl -sf -u "admin:$WHARF_ADMIN_PASSWORD" "http://$W/token?service=wharf&scope=repository:bench/app:pull" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
# digests HOST [CURL_ARGS…]: bench/app:v1's manifest digest and its last layer's digest.
digests() {
  local h=$1
  shift
  curl -sf "$@" -H "Accept: $MT" "http://$h/v2/bench/app/manifests/v1" | python3 -c '
import hashlib, json, sys
b = sys.stdin.buffer.read()
print("sha256:" + hashlib.sha256(b).hexdigest(), json.loads(b)["layers"][-1]["digest"])'
}

log "AWS calls per operation (wharf: fresh process per operation; reference: docker-registry)"
measure "idle (start-up probe only)" 1 true
measure "docker login" 1 sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $W"
measure "docker push, ${BENCH_LAYERS:-4} layers, new repository" 1 docker push "$W/bench/app:v1"
measure_ref "docker push, ${BENCH_LAYERS:-4} layers, new repository" 1 docker push "$REF/bench/app:v1"
measure "docker push again (every blob there)" 1 docker push "$W/bench/app:v1"
measure_ref "docker push again (every blob there)" 1 docker push "$REF/bench/app:v1"

# Uncounted: a token and the digests the single requests use.
wharf_up
TOKEN=$(token)
read -r MDIGEST LAYER < <(digests "$W" -H "Authorization: Bearer $TOKEN")
wharf_down
read -r RMDIGEST RLAYER < <(digests "$REF")

auth=(-H "Authorization: Bearer $TOKEN")
status_is() { [ "$(curl -s -o /dev/null -w '%{http_code}' "${@:2}")" = "$1" ]; } # status_is CODE CURL_ARGS…
R5=5
measure "token (basic auth, pull scope)" $R5 token
for target in wharf reference; do
  if [ $target = wharf ]; then m=measure h=$W d=$MDIGEST l=$LAYER a=("${auth[@]}"); else m=measure_ref h=$REF d=$RMDIGEST l=$RLAYER a=(); fi
  $m "manifest GET by tag" $R5 curl -sf -o /dev/null "${a[@]}" -H "Accept: $MT" "http://$h/v2/bench/app/manifests/v1"
  $m "manifest GET by digest" $R5 curl -sf -o /dev/null "${a[@]}" -H "Accept: $MT" "http://$h/v2/bench/app/manifests/$d"
  $m "manifest HEAD by tag" $R5 curl -sf -I -o /dev/null "${a[@]}" -H "Accept: $MT" "http://$h/v2/bench/app/manifests/v1"
  $m "blob GET (the 307 only)" $R5 status_is 307 "${a[@]}" "http://$h/v2/bench/app/blobs/$l"
  $m "blob HEAD" $R5 curl -sf -I -o /dev/null "${a[@]}" "http://$h/v2/bench/app/blobs/$l"
done
wipe_images
measure "docker pull, ${BENCH_LAYERS:-4} layers" 1 docker pull "$W/bench/app:v1"
wipe_images
measure_ref "docker pull, ${BENCH_LAYERS:-4} layers" 1 docker pull "$REF/bench/app:v1"

# ---- the Lambda ---------------------------------------------------------------------------
log "Lambda: zipped bootstrap"
zip_size() { # zip_size ARCH_FLAG TARGET_DIR → "ZIP_BYTES BOOTSTRAP_BYTES"
  local flag=$1 dir=$2
  rm -f "$dir/lambda/wharf-lambda-api/bootstrap.zip" # not the directory: the profile's build cache is there too
  CARGO_TARGET_DIR=$dir "$CARGO_LAMBDA" lambda build --profile lambda $flag -p wharf-lambda-api \
    --output-format zip >>"$LOGDIR/$SUITE-lambda-build.log" 2>&1 || return 1
  python3 - "$dir/lambda/wharf-lambda-api/bootstrap.zip" <<'PY'
import os, sys, zipfile
z = sys.argv[1]
print(os.path.getsize(z), zipfile.ZipFile(z).getinfo("bootstrap").file_size)
PY
}
if [ "${BENCH_ZIP:-1}" = 1 ]; then
  if z=$(zip_size --x86-64 target/lambda-x86_64); then
    echo "x86_64 $z" >>"$OUT/zip.txt"
    # Cold start and memory below are measured on what ships, not on the release build.
    python3 -c 'import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extract("bootstrap", sys.argv[2])' \
      target/lambda-x86_64/lambda/wharf-lambda-api/bootstrap.zip "$WORK" && chmod +x "$WORK/bootstrap" &&
      LAMBDA_BIN=$WORK/bootstrap
  fi
fi
echo "$LAMBDA_BIN" >"$OUT/lambda-bin.txt"
if [ "${BENCH_ZIP:-1}" = 1 ] && [ "${BENCH_ARM64:-1}" = 1 ] && dpkg -s rustc-web rust-web-src >/dev/null 2>&1; then
  # rustup's toolchain has no aarch64 std here; Debian's rustc-web builds one (build-std).
  if z=$(PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort \
    zip_size --arm64 target/lambda-arm64); then
    echo "arm64 $z" >>"$OUT/zip.txt"
  else
    log "arm64 build failed (see $LOGDIR/$SUITE-lambda-build.log)"
  fi
fi

log "Lambda: cold start under cargo lambda watch"
# A fresh token: the one above may have expired during the builds.
wharf_up
TOKEN=$(token)
wharf_down
auth=(-H "Authorization: Bearer $TOKEN")
start_emulator COLD
# Time from starting an instance to the first answer of an authenticated manifest GET by
# tag (the emulator holds the request until the instance polls), then a second, warm one.
for i in $(seq 1 "${BENCH_COLD_RUNS:-7}"); do
  t0=$(date +%s%N)
  LAMBDA_RUST_LOG=warn start_instance COLD
  c=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" -H "Accept: $MT" "http://127.0.0.1:$COLD_PORT/v2/bench/app/manifests/v1")
  t1=$(date +%s%N)
  w=$(curl -s -o /dev/null -w '%{time_total}' "${auth[@]}" -H "Accept: $MT" "http://127.0.0.1:$COLD_PORT/v2/bench/app/manifests/v1")
  echo "wharf $(((t1 - t0) / 1000)) $c $w" >>"$OUT/cold.txt"
  kill "$INSTANCE_PID"; wait "$INSTANCE_PID" 2>/dev/null
done
# The reference's process start to its first manifest GET, on the same S3.
kill "$REF_PID"; wait "$REF_PID" 2>/dev/null
for i in $(seq 1 "${BENCH_COLD_RUNS:-7}"); do
  t0=$(date +%s%N)
  start_ref
  for _ in $(seq 1 2000); do
    c=$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $MT" "http://$REF/v2/bench/app/manifests/v1") && break
    sleep 0.005
  done
  t1=$(date +%s%N)
  echo "reference $(((t1 - t0) / 1000)) $c 0" >>"$OUT/cold.txt"
  kill "$REF_PID"; wait "$REF_PID" 2>/dev/null
done

log "Lambda: peak memory after a 100 MB chunked push and read-back"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$WORK/hundred.bin"
LAMBDA_RUST_LOG=warn start_instance COLD
python3 tests/e2e/chunked_push.py "http://127.0.0.1:$COLD_PORT" bench/mem "$WORK/hundred.bin" $((5 * 1024 * 1024)) \
  admin "$WHARF_ADMIN_PASSWORD" >>"$WORK/ops.log" 2>&1 && ok=ok || ok=failed
echo "wharf-lambda $(grep VmHWM /proc/"$INSTANCE_PID"/status | awk '{print $2}') $ok" >>"$OUT/mem.txt"
start_ref
wait_http "http://$REF/v2/" 30
python3 tests/e2e/chunked_push.py "http://$REF" bench/mem "$WORK/hundred.bin" $((5 * 1024 * 1024)) - - \
  >>"$WORK/ops.log" 2>&1 && ok=ok || ok=failed
echo "reference $(grep VmHWM /proc/"$REF_PID"/status | awk '{print $2}') $ok" >>"$OUT/mem.txt"

report=$(python3 bench/aws_report.py "$OUT" "$(docker-registry --version 2>/dev/null | head -1)")
echo "$report"
if [ "$write" = 1 ]; then
  python3 bench/write_section.py aws "$report" && log "written to BENCHMARKS.md"
fi
