#!/usr/bin/env bash
# Garbage collection on the AWS runtime: the API Lambda and the jobs Lambda (both prebuilt,
# run against `cargo lambda watch`'s Runtime API) on s3s-fs (S3) and moto (DynamoDB).
#   - docker pushes two images sharing a base through the API Lambda; one is deleted
#   - the jobs Lambda invoked with EventBridge Scheduler's input ({"job":"gc"}) collects
#     the deleted image's own layers: their objects are gone from the bucket
#   - docker pulls the other image back
#   - a run queued through the API (`wharf gc run`) is advanced by {"job":"advance"}
#   - project policies on DynamoDB: an immutable tag's re-push refused by docker (the
#     conditional tag write), a push over quota refused, and {"job":"retention"} applying
#     a project's retention policy
#   - an input that is no job fails the invocation, naming the jobs
#   - first, the GC soak (tests/tests/gc_soak.rs) over the Lambdas: pushes, deletes and
#     collections at once lose nothing and leak nothing in the bucket
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
source "$here/aws_lib.sh"
JOBS_BIN=${JOBS_BIN:-$ROOT/target/release/wharf-lambda-jobs}
start_s3
start_moto
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=wharftestkey AWS_SECRET_ACCESS_KEY=wharftestsecret
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$S3_PORT AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$MOTO_PORT
export WHARF_S3_BUCKET=wharf-gc WHARF_DYNAMODB_TABLE=wharf-gc
export WHARF_DYNAMODB_ATTEMPT_TIMEOUT_MS=3000
check_output "wharf aws bootstrap" "user admin ready" "$WHARF_BIN" aws bootstrap
start_lambda API
# What docker talks to: cargo-lambda's function-URL emulator refuses binary bodies without
# a Content-Type, unlike AWS; url_front.py hands requests on as AWS does (see there).
URL_PORT=$(free_port)
python3 "$here/url_front.py" "$URL_PORT" "$API_PORT" >>"$LOGDIR/$SUITE-url-front.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$URL_PORT/v2/" 20
R="127.0.0.1:$URL_PORT"

# The jobs function: its own emulator, one instance, scheduled runs with no grace.
jobs_port=$(free_port)
(cd "$ROOT" && exec "$CARGO_LAMBDA" lambda watch --only-lambda-apis -A 127.0.0.1 -P "$jobs_port" \
  -p wharf-lambda-jobs --bin wharf-lambda-jobs) >"$LOGDIR/$SUITE-jobs-emulator.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 300); do grep -q "starting Runtime server" "$LOGDIR/$SUITE-jobs-emulator.log" 2>/dev/null && break; sleep 0.1; done
env WHARF_GC_GRACE_SECS=0 AWS_LAMBDA_FUNCTION_NAME=_ AWS_LAMBDA_FUNCTION_VERSION=1 \
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$jobs_port/.rt" \
  RUST_LOG=info,wharf_core=debug "$JOBS_BIN" >>"$LOGDIR/$SUITE-jobs-wharf-lambda.log" 2>&1 &
PIDS+=("$!")
invoke() { "$CARGO_LAMBDA" lambda invoke -A 127.0.0.1 -P "$jobs_port" --data-ascii "$1" _ 2>&1; }
objects() { find "$WORK/s3/$WHARF_S3_BUCKET" -type f -path '*blobs*' 2>/dev/null | wc -l; }

# ---- the soak, first, while the bucket holds nothing else ---------------------------------
# tests/tests/gc_soak.rs over the API Lambda: pushers (HEAD-then-skip and mounts), a deleter
# and collections with grace 0 s and 2 s at once; the collections the soak queues through the
# API are advanced by {"job":"advance"} invocations in a loop, as the every-minute schedule
# would, in the jobs function's own process. At the end every push answered 201 pulls whole
# and the bucket's blobs/ holds exactly the bytes the remaining images reference. One
# emulated API instance over moto pushes a few images in ten seconds (a push that loses a
# race with a grace-0 collection is pushed again, as a client would), so the soak asks for
# at least 8 pushes here.
(while :; do invoke '{"job":"advance"}' >/dev/null; sleep 0.5; done) &
ADVANCER=$!
PIDS+=("$ADVANCER")
check_output "the GC soak on the API and jobs Lambdas (moto + s3s-fs): nothing lost, nothing leaked" "test result: ok" \
  env WHARF_TEST_URL="http://$R" WHARF_TEST_USER=admin WHARF_TEST_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  WHARF_SOAK_SECS="${WHARF_AWS_SOAK_SECS:-60}" WHARF_SOAK_MIN_PUSHES=8 WHARF_SOAK_BLOB_DIR="$WORK/s3/$WHARF_S3_BUCKET/blobs" \
  cargo test -q --manifest-path "$ROOT/Cargo.toml" -p wharf-tests --test gc_soak -- --nocapture
grep -h -e '^soak ' -e 'panicked at' -A2 "$WORK"/out.* 2>/dev/null | head -8
kill "$ADVANCER" 2>/dev/null
wait "$ADVANCER" 2>/dev/null

start_dockerd
make_image e2e-awsgc-base:1 2
for name in gone keep; do
  ctx="$WORK/ctx-$name"
  mkdir -p "$ctx"
  head -c $((1024 * 1024)) /dev/urandom >"$ctx/own.bin"
  printf 'FROM e2e-awsgc-base:1\nCOPY own.bin /own.bin\n' >"$ctx/Dockerfile"
  check "docker build $name" env DOCKER_BUILDKIT=0 docker build -q -t "$R/gc/$name:v1" "$ctx"
done
check "docker login to the Lambda" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $R"
check_output "docker push gc/gone through the Lambda" "digest: sha256:" docker push "$R/gc/gone:v1"
check_output "docker push gc/keep through the Lambda" "digest: sha256:" docker push "$R/gc/keep:v1"
GONE=$(docker image inspect -f '{{index .RepoDigests 0}}' "$R/gc/gone:v1" | cut -d@ -f2)
TOKEN=$(curl -s -u "admin:$WHARF_ADMIN_PASSWORD" "http://$R/token?service=wharf&scope=repository:gc/gone:pull,delete" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
OWN=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  "http://$R/v2/gc/gone/manifests/v1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["digest"])')
check "the deleted image's own layer is in the bucket" sh -c "find '$WORK/s3/$WHARF_S3_BUCKET' -type f | grep -q '${OWN:7}'"
check_output "DELETE gc/gone by digest → 202" "202" \
  curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $TOKEN" "http://$R/v2/gc/gone/manifests/$GONE"
BEFORE=$(objects)

invoke '{"job":"gc"}' >"$WORK/gc.json"
cat "$WORK/gc.json" >>"$LOGDIR/$SUITE-jobs-answers.txt"
check_output "the jobs Lambda ran {\"job\":\"gc\"} to its end" '"status":"finished"' tr -d ' \n' <"$WORK/gc.json"
check_output "it deleted the deleted image's two own blobs (config and layer)" '"blobs":2' tr -d ' \n' <"$WORK/gc.json"
check "the layer's object is gone from the bucket" sh -c "! find '$WORK/s3/$WHARF_S3_BUCKET' -type f | grep -q '${OWN:7}'"
check "two objects fewer in the bucket ($BEFORE → $(objects))" test $((BEFORE - $(objects))) = 2

docker rmi -f "$R/gc/keep:v1" "$R/gc/gone:v1" e2e-awsgc-base:1 >/dev/null 2>&1
check "docker pull gc/keep through the Lambda" docker pull "$R/gc/keep:v1"

# A run queued through the API waits for the scheduler's every-minute {"job":"advance"}.
WHARF_URL="http://$R" WHARF_USERNAME=admin WHARF_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  "$WHARF_BIN" gc run --grace 0s --wait 120s >"$WORK/cli.out" 2>&1 &
cli=$!
for _ in $(seq 1 100); do grep -q queued "$WORK/cli.out" && break; sleep 0.1; done
invoke '{"job":"advance"}' >"$WORK/advance.json"
check_output "{\"job\":\"advance\"} finishes the run the API queued" '"status":"finished"' tr -d ' \n' <"$WORK/advance.json"
wait "$cli"
check "wharf gc run against the Lambda returns once it finished" test $? = 0
check_output "and prints its report" "finished: 0 links, 0 uploads, 0 blobs" cat "$WORK/cli.out"

# The full mark-and-sweep over DynamoDB and the bucket's listing: nothing differs.
WHARF_URL="http://$R" WHARF_USERNAME=admin WHARF_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  "$WHARF_BIN" gc run --verify --wait 120s >"$WORK/verify.out" 2>&1 &
cli=$!
for _ in $(seq 1 100); do grep -q queued "$WORK/verify.out" && break; sleep 0.1; done
invoke '{"job":"advance"}' >"$WORK/advance.json"
wait "$cli"
check "wharf gc run --verify against the Lambda succeeds" test $? = 0
check_output "and finds the bookkeeping true" "; 0 differences" cat "$WORK/verify.out"

# Project policies, on DynamoDB: immutability by the conditional tag write, the quota from
# the usage shards, retention as the scheduled job.
cli_as_admin "$R"
for p in pol polq; do check "wharf project create $p (through the Lambda)" "$WHARF_BIN" project create "$p"; done
printf '{"rules":[{"tags":{"matches":"v*"}}]}' >"$WORK/imm.json"
check "wharf immutability set pol" "$WHARF_BIN" immutability set pol "$WORK/imm.json"
make_image "$R/pol/app:v1" 0
check_output "docker push pol/app:v1" "digest: sha256:" docker push "$R/pol/app:v1"
make_image "$R/pol/app:v1" 0
check_output "docker push of another image as pol/app:v1 is refused, naming the rule" \
  "denied: tag v1 of pol/app is immutable (immutability rule 1" sh -c "docker push $R/pol/app:v1 2>&1"
check "wharf quota set polq 1KiB" "$WHARF_BIN" quota set polq 1KiB
make_image "$R/polq/app:v1" 1
check_output "docker push over polq's quota is refused with usage and limit" \
  "denied: quota exceeded: project polq uses 0 of its 1024 bytes" sh -c "docker push $R/polq/app:v1 2>&1"
for i in 1 2 3 4 5; do make_image "$R/pol/app:t$i" 0; docker push -q "$R/pol/app:t$i" >/dev/null 2>&1 || echo "push t$i failed"; done
printf '{"rules":[{"tags":{"matches":"t*"},"keep":{"latest_pushed":2}},{"tags":{"matches":"v*"},"keep":"always"}]}' >"$WORK/ret.json"
check "wharf retention set pol" "$WHARF_BIN" retention set pol "$WORK/ret.json"
check_output "the dry run through the Lambda explains it" "[t1]: deleted: pushed today, never pulled; no rule keeps it" \
  "$WHARF_BIN" retention run pol --dry-run
invoke '{"job":"retention"}' >"$WORK/retention.json"
cat "$WORK/retention.json" >>"$LOGDIR/$SUITE-jobs-answers.txt"
check_output "{\"job\":\"retention\"} deleted the 3 oldest t* images" '"deleted":3' tr -d ' \n' <"$WORK/retention.json"
docker rmi -f "$R/pol/app:t5" "$R/pol/app:t1" >/dev/null 2>&1
check "docker pull pol/app:t5 (kept)" docker pull "$R/pol/app:t5"
check_output "pol/app:t1 is gone" "manifest unknown" sh -c "docker pull $R/pol/app:t1 2>&1"

# cargo-lambda wraps the error at 80 columns in a box: joined into one line first.
invoke_flat() { invoke "$1" | tr '\n│' '  ' | tr -s ' '; }
check_output "an input that is no job fails the invocation" "unknown variant \`sweep\`" invoke_flat '{"job":"sweep"}'
check_output "and the error names the jobs there are" "(gc, advance, cleanup_uploads, retention, replicate, replication_rules)" invoke_flat '{"job":"sweep"}'
finish
