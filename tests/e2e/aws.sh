#!/usr/bin/env bash
# The AWS runtime end to end: the Lambda function (prebuilt, run against `cargo lambda
# watch`'s Runtime API and function-URL emulator) on s3s-fs (S3, strict SigV4) and moto
# (DynamoDB), with `wharf serve --storage s3 --metadata dynamodb` as the upload front.
#   - docker push/pull of small layers through the Lambda, blobs served by 307 to
#     presigned s3s-fs URLs; skopeo copy out of it
#   - a 300 MB layer pushed by docker through a Lambda whose uploads go to the front
#   - the Cloudflare Worker (workerd under Miniflare) as the upload front instead: docker
#     push of a 90 MB layer and 300 MB in chunks through it, written to s3s-fs and moto over
#     signed fetch and served by the Lambda; 413 over 100 MB; forged capability; bad digest
#   - a 100 MB layer in 5 MiB chunks through the Lambda alone; a 7 MB PATCH refused (413)
#   - the protocol suite against the Lambda, and its sha512 cases against a second Lambda
#     whose bucket is on moto's S3 (s3s-fs cannot hold sha512 keys)
#   - tampered presigned URLs and forged capabilities refused
#   - S3 stopped in the middle of a PATCH, DynamoDB stopped during a manifest PUT: 5xx with
#     an OCI error body, then the retry succeeds and nothing half-written is visible
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
source "$here/aws_lib.sh"
start_s3
start_moto

export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=wharftestkey AWS_SECRET_ACCESS_KEY=wharftestsecret
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$S3_PORT AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$MOTO_PORT
export WHARF_S3_BUCKET=wharf-e2e WHARF_DYNAMODB_TABLE=wharf-e2e
# Short enough that the outage checks below answer quickly, long enough for moto (one
# request at a time) under a loaded CI machine: 1 s was exceeded once there.
export WHARF_DYNAMODB_ATTEMPT_TIMEOUT_MS=3000
UPLOAD_SECRET=$(random_word)$(random_word)$(random_word)

check_output "wharf aws bootstrap creates bucket, table, key and admin" "user admin ready" \
  "$WHARF_BIN" aws bootstrap

# ---- the upload front and two Lambda deployments ----------------------------------------
RUST_LOG=info,wharf=debug,wharf_core=debug WHARF_UPLOAD_SECRET=$UPLOAD_SECRET start_wharf --storage s3 --metadata dynamodb
FRONT=$R
FRONT_PID=$WHARF_PID

start_lambda API
start_lambda FRONTED WHARF_UPLOAD_URL="http://$FRONT" WHARF_UPLOAD_SECRET="$UPLOAD_SECRET"

# url_front NAME EMULATOR_PORT: what docker and skopeo talk to. cargo-lambda 1.9.2's
# function-URL emulator keeps only the first of repeated headers and refuses binary bodies
# without a Content-Type, unlike AWS; url_front.py hands requests on as AWS does (see there).
url_front() {
  local name=$1 upstream=$2 port
  port=$(free_port)
  python3 "$here/url_front.py" "$port" "$upstream" >>"$LOGDIR/$SUITE-url-front-$name.log" 2>&1 &
  PIDS+=("$!")
  eval "${name}_URL_PORT=$port"
  wait_http "http://127.0.0.1:$port/v2/" 20
}
url_front API "$API_PORT"
url_front FRONTED "$FRONTED_PORT"
A=127.0.0.1:$API_PORT
B=127.0.0.1:$FRONTED_PORT
DA=127.0.0.1:$API_URL_PORT      # what docker and skopeo talk to
DB=127.0.0.1:$FRONTED_URL_PORT

token() { # token HOST SCOPE
  curl -s -u "admin:$WHARF_ADMIN_PASSWORD" "http://$1/token?service=wharf&scope=$2" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
check_output "the Lambda asks for a token (401 + Bearer challenge)" 'Bearer realm="http://'"$A"'/token"' \
  curl -si "http://$A/v2/"

# ---- docker through the Lambda ------------------------------------------------------------
start_dockerd
make_image e2e-aws-base:1 3
ctx="$WORK/ctx"
mkdir -p "$ctx"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$ctx/two.bin"
date +%s%N >"$ctx/stamp.txt"
printf 'FROM e2e-aws-base:1\nCOPY two.bin /two.bin\nCOPY stamp.txt /stamp.txt\n' >"$ctx/Dockerfile"
SMALL="$DA/aws/small:v1"
docker_roundtrip "$DA" "$SMALL" "$ctx" "of 3 small layers through the Lambda (pulls by 307 from s3s-fs)" e2e-aws-base:1
check "skopeo copy out of the Lambda (digests verified)" \
  skopeo copy --quiet --src-tls-verify=false --src-creds "admin:$WHARF_ADMIN_PASSWORD" \
  "docker://$SMALL" "oci:$WORK/oci-small:v1"

T=$(token "$A" "repository:aws/small:pull,push")
CONFIG_DIGEST=$(docker image inspect -f '{{.Id}}' "$SMALL")
curl -s -D "$WORK/blob.h" -o /dev/null -H "Authorization: Bearer $T" "http://$A/v2/aws/small/blobs/$CONFIG_DIGEST"
check_output "a blob GET is a 307 to s3s-fs" "HTTP/1.1 307" cat "$WORK/blob.h"
PRESIGNED=$(grep -i '^location:' "$WORK/blob.h" | cut -d' ' -f2- | tr -d '\r')
check "the 307 points at s3s-fs with a SigV4 query signature" \
  sh -c "case '$PRESIGNED' in http://127.0.0.1:$S3_PORT/*X-Amz-Signature=*) exit 0;; *) exit 1;; esac"
check_output "the presigned URL serves the blob (digest checked)" "${CONFIG_DIGEST#sha256:}" \
  sh -c "curl -sf '$PRESIGNED' | sha256sum"
TAMPERED=$(python3 -c 'import re,sys; u=sys.argv[1]; print(re.sub(r"(X-Amz-Signature=)(.)", lambda m: m.group(1) + ("b" if m.group(2) == "a" else "a"), u))' "$PRESIGNED")
check_output "a tampered presigned URL is refused by s3s-fs (403)" "403" \
  curl -s -o /dev/null -w '%{http_code}' "$TAMPERED"
OTHER_KEY=$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); k=p.path; i=k.rindex("/")+1; c="1" if k[i]=="0" else "0"; print(u.urlunsplit(p._replace(path=k[:i]+c+k[i+1:])))' "$PRESIGNED")
check "… (the moved URL differs from the signed one)" test "$OTHER_KEY" != "$PRESIGNED"
check_output "a presigned URL moved to another key is refused (403)" "403" \
  curl -s -o /dev/null -w '%{http_code}' "$OTHER_KEY"

# ---- the 6 MB limit, chunks, and the upload front ------------------------------------------
head -c $((7 * 1024 * 1024)) /dev/urandom >"$WORK/seven.bin"
T=$(token "$A" "repository:aws/limit:pull,push")
LOC=$(curl -s -D - -o /dev/null -X POST -H "Authorization: Bearer $T" "http://$A/v2/aws/limit/blobs/uploads/" \
  | grep -i '^location:' | cut -d' ' -f2- | tr -d '\r')
curl -s -o "$WORK/413.json" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $T" \
  -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/seven.bin" "http://$A$LOC" >"$WORK/413.code"
check_output "a 7 MB PATCH to the Lambda gets 413" "413" cat "$WORK/413.code"
check_output "… with an OCI error naming the limit and WHARF_UPLOAD_URL" "6291456" \
  sh -c "python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))[\"errors\"][0]; print(e[\"code\"], e[\"message\"])' $WORK/413.json | grep WHARF_UPLOAD_URL"
curl -s -D "$WORK/st.h" -o /dev/null -H "Authorization: Bearer $T" "http://$A$LOC"
check_output "… and the refused bytes were not recorded (Range 0-0)" "range: 0-0" sh -c "tr -d '\r' <$WORK/st.h | tr A-Z a-z"

head -c $((100 * 1024 * 1024)) /dev/urandom >"$WORK/hundred.bin"
check_output "100 MB in 5 MiB chunks through the Lambda alone, read back by 307" "digest verified" \
  python3 "$here/chunked_push.py" "http://$A" aws/chunked "$WORK/hundred.bin" $((5 * 1024 * 1024)) admin "$WHARF_ADMIN_PASSWORD"

ctx="$WORK/ctx-big"
mkdir -p "$ctx"
head -c $((300 * 1024 * 1024)) /dev/urandom >"$ctx/big.bin"
printf 'FROM scratch\nCOPY big.bin /big.bin\n' >"$ctx/Dockerfile"
BIG="$DB/aws/big:v1"
docker_roundtrip "$DB" "$BIG" "$ctx" "of a 300 MB layer through the fronted Lambda"
check "the layer's bytes went to the front, with a capability" grep -q 'method=PATCH.*blobs/uploads' "$LOGDIR/$SUITE-wharf.log"

# capability_checks LAMBDA FRONT REPO WHO: an upload POST to the Lambda at LAMBDA gives a
# Location on FRONT with a capability (CAPLOC), and WHO refuses a forged one (401).
capability_checks() {
  local lambda=$1 front=$2 repo=$3 who=$4 t forged
  t=$(token "$lambda" "repository:$repo:pull,push")
  CAPLOC=$(curl -s -D - -o /dev/null -X POST -H "Authorization: Bearer $t" "http://$lambda/v2/$repo/blobs/uploads/" \
    | grep -i '^location:' | cut -d' ' -f2- | tr -d '\r')
  check "the Lambda sends the upload to $who with a capability" \
    sh -c "case '$CAPLOC' in http://$front/v2/$repo/blobs/uploads/*'?cap='*) exit 0;; *) exit 1;; esac"
  forged=$(echo "$CAPLOC" | sed -E 's/(cap=[0-9]+\.)(.)/\1\2A/; s/(cap=[0-9]+\.)AA/\1BA/')
  check_output "$who refuses a forged capability (401 UNAUTHORIZED)" "401 UNAUTHORIZED" \
    oci_error PATCH "$forged" -H 'Content-Type: application/octet-stream' --data-binary x
}

# Capabilities: a forged or misused one is refused by the front.
capability_checks "$B" "$FRONT" aws/cap "the front"
OTHER_REPO=$(echo "$CAPLOC" | sed 's#/aws/cap/#/aws/other/#')
check_output "a capability used on another repository is refused (401)" "401" \
  curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' --data-binary x "$OTHER_REPO"
check_output "the genuine capability works without a token (202)" "202" \
  curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' --data-binary x "$CAPLOC"

# ---- the Cloudflare Worker as the upload front --------------------------------------------
# The Worker (workerd under Miniflare) in front mode: no R2 or D1 of its own, it writes the
# deployment's bucket and table over signed fetch (no SDK), so the Lambda serves the blob.
source "$here/worker_lib.sh"
if ! build_worker; then
  _record 1 "the Worker builds" "$LOGDIR/$SUITE-worker-build.log"
else
  SUITE_WORKER_LOG="$LOGDIR/$SUITE-wharf-worker.log"
  start_worker WHARF_LOG=debug WHARF_UPLOAD_SECRET="$UPLOAD_SECRET" \
    WHARF_FRONT_S3_BUCKET="$WHARF_S3_BUCKET" WHARF_FRONT_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" \
    WHARF_FRONT_S3_PATH_STYLE=true WHARF_FRONT_DYNAMODB_TABLE="$WHARF_DYNAMODB_TABLE" \
    WHARF_FRONT_DYNAMODB_ENDPOINT="http://127.0.0.1:$MOTO_PORT" WHARF_FRONT_AWS_REGION="$AWS_REGION" \
    AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
  WF=$R
  check_output "the Worker front serves nothing without a capability (401 UNAUTHORIZED)" "401 UNAUTHORIZED" \
    oci_error GET "http://$WF/v2/"
  start_lambda WFRONTED WHARF_UPLOAD_URL="http://$WF" WHARF_UPLOAD_SECRET="$UPLOAD_SECRET"
  url_front WFRONTED "$WFRONTED_PORT"
  DW=127.0.0.1:$WFRONTED_URL_PORT
  ctx="$WORK/ctx-wbig"
  mkdir -p "$ctx"
  head -c $((90 * 1024 * 1024)) /dev/urandom >"$ctx/wninety.bin"
  printf 'FROM scratch\nCOPY wninety.bin /wninety.bin\n' >"$ctx/Dockerfile"
  cpu0=$(worker_cpu)
  docker_roundtrip "$DW" "$DW/aws/wbig:v1" "$ctx" "of a 90 MB layer (one PATCH) through a Lambda fronted by the Worker"
  echo "  info: workerd CPU for the docker push and pull of a 90 MB layer via the Worker front: $(awk "BEGIN { print $(worker_cpu) - $cpu0 }") s"
  check "the layer went through the Worker (its log has the blob pushed)" \
    grep -q 'blob pushed.*aws/wbig' "$SUITE_WORKER_LOG"
  head -c $((300 * 1024 * 1024)) /dev/urandom >"$WORK/wthree.bin"
  cpu0=$(worker_cpu)
  check_output "300 MB in 64 MiB chunks through the Worker front, read back from the Lambda by 307" "digest verified" \
    python3 "$here/chunked_push.py" "http://$DW" aws/wchunked "$WORK/wthree.bin" $((64 * 1024 * 1024)) admin "$WHARF_ADMIN_PASSWORD"
  echo "  info: workerd CPU for the 300 MB chunked push through the Worker front: $(awk "BEGIN { print $(worker_cpu) - $cpu0 }") s"
  rm -f "$WORK/wthree.bin"
  capability_checks "127.0.0.1:$WFRONTED_PORT" "$WF" aws/wcap "the Worker"
  WLOC=$CAPLOC
  head -c $((101 * 1024 * 1024)) /dev/urandom >"$WORK/wlarge.bin"
  check_output "a PATCH over the plan's 100 MB is refused by the Worker (413 SIZE_INVALID)" "413 SIZE_INVALID" \
    oci_error PATCH "$WLOC" -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/wlarge.bin"
  rm -f "$WORK/wlarge.bin"
  head -c $((7 * 1024 * 1024)) /dev/urandom >"$WORK/wseven.bin"
  WD=sha256:$(sha256sum "$WORK/wseven.bin" | cut -d' ' -f1)
  check_output "a 7 MB PATCH (over the Lambda's limit) to the Worker is accepted (202)" "202" \
    curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/wseven.bin" "$WLOC"
  WID=$(echo "$WLOC" | sed -E 's#.*/uploads/([^?]*).*#\1#')
  staged() { # the S3 listing of the upload's staging prefix
    curl -s --aws-sigv4 "aws:amz:$AWS_REGION:s3" -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
      -H x-amz-content-sha256:UNSIGNED-PAYLOAD "http://127.0.0.1:$S3_PORT/$WHARF_S3_BUCKET?list-type=2&prefix=uploads%2F$WID%2F"
  }
  WLIST=$(staged)
  check "… staged in S3 under uploads/$WID/" sh -c "case '$WLIST' in *'<Key>uploads/$WID/'*) exit 0;; *) exit 1;; esac"
  check_output "a wrong digest is refused by the Worker (400 DIGEST_INVALID)" "DIGEST_INVALID" \
    curl -s -X PUT "$(echo "$WLOC" | sed 's/?cap=/?digest=sha256:'"$(printf '0%.0s' $(seq 64))"'\&cap=/')"
  T=$(token "$A" "repository:aws/wcap:pull")
  check_output "… and left nothing behind: the blob is unknown to the Lambda (404)" "404" \
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $T" "http://$A/v2/aws/wcap/blobs/$WD"
  WLIST=$(staged)
  check "… and the Worker deleted what it had staged in S3" \
    sh -c "case '$WLIST' in *ListBucketResult*) ;; *) exit 1;; esac; case '$WLIST' in *'<Key>'*) exit 1;; esac"
  stop_worker
fi

# ---- the protocol suite against the Lambda --------------------------------------------------
check_output "the protocol suite passes against the Lambda" "test result: ok" \
  env WHARF_TEST_URL="http://$A" WHARF_TEST_USER=admin WHARF_TEST_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  WHARF_TEST_SKIP_SHA512="s3s-fs stores object metadata in a file named after the base64 of bucket+key+upload id, over 255 bytes for a sha512 key" \
  cargo test -q --manifest-path "$ROOT/Cargo.toml" -p wharf-tests --test protocol
check_output "the upload race suite passes against the Lambda" "test result: ok" \
  env WHARF_TEST_URL="http://$A" WHARF_TEST_USER=admin WHARF_TEST_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  cargo test -q --manifest-path "$ROOT/Cargo.toml" -p wharf-tests --test upload_races
# Its raw requests go through the Invoke API: the emulator answers CORS preflights itself
# and fails on a Host it cannot parse, where AWS hands both to the function.
check_output "the security suite passes against the Lambda" "test result: ok" \
  env WHARF_TEST_URL="http://$A" WHARF_TEST_USER=admin WHARF_TEST_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  WHARF_TEST_LAMBDA_INVOKE="http://$A/2015-03-31/functions/_/invocations" \
  WHARF_TEST_HOST_REFUSED_BY_RUNTIME="lambda_http cannot build a request from an invalid Host (a function error)" \
  cargo test -q --manifest-path "$ROOT/Cargo.toml" -p wharf-tests --test security
# The function-URL emulator gives every request sourceIp 127.0.0.1; the throttle suite
# invokes the function with events of its own, each with the client address it chose.
check_output "the throttle suite passes against the Lambda (addresses from the request context)" "test result: ok" \
  env WHARF_TEST_URL="http://$A" WHARF_TEST_USER=admin WHARF_TEST_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  WHARF_TEST_LAMBDA_INVOKE="http://$A/2015-03-31/functions/_/invocations" \
  cargo test -q --manifest-path "$ROOT/Cargo.toml" -p wharf-tests --test throttle

# ---- sha512 on S3: a second Lambda deployment whose bucket is on moto ------------------------
# s3s-fs cannot hold sha512 keys (above); moto's S3 (on moto's one port, beside DynamoDB) can.
# Same table, so the same admin; a bucket of its own.
MOTO_S3=(AWS_ENDPOINT_URL_S3="http://127.0.0.1:$MOTO_PORT" WHARF_S3_BUCKET=wharf-e2e-moto)
check_output "wharf aws bootstrap creates a bucket on moto's S3" "user admin ready" \
  env "${MOTO_S3[@]}" "$WHARF_BIN" aws bootstrap
start_lambda S3MOTO "${MOTO_S3[@]}"
check_output "the sha512 cases of the protocol suite pass against a Lambda on moto's S3" "test result: ok" \
  env WHARF_TEST_URL="http://127.0.0.1:$S3MOTO_PORT" WHARF_TEST_USER=admin WHARF_TEST_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  cargo test -q --manifest-path "$ROOT/Cargo.toml" -p wharf-tests --test protocol sha512

# ---- faults ------------------------------------------------------------------------------
# S3 stops in the middle of a PATCH streaming into the front.
T=$(token "$FRONT" "repository:aws/fault:pull,push")
FLOC=$(curl -s -D - -o /dev/null -X POST -H "Authorization: Bearer $T" "http://$FRONT/v2/aws/fault/blobs/uploads/" \
  | grep -i '^location:' | cut -d' ' -f2- | tr -d '\r')
curl -s -o "$WORK/fault.json" -w '%{http_code}' --limit-rate 20M -X PATCH -H "Authorization: Bearer $T" \
  -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/hundred.bin" "http://$FRONT$FLOC" >"$WORK/fault.code" 2>/dev/null &
CURL=$!
sleep 1.5
kill -9 "$S3_PID"
wait "$CURL"
code=$(cat "$WORK/fault.code")
check "S3 stopped mid-PATCH: the PATCH fails with a 5xx (got $code)" sh -c "case '$code' in 5??) exit 0;; *) exit 1;; esac"
check_output "… with an OCI error body" "UNAVAILABLE" cat "$WORK/fault.json"
start_s3
curl -s -D "$WORK/fst.h" -o /dev/null -H "Authorization: Bearer $T" "http://$FRONT$FLOC"
check_output "… nothing of it was recorded (Range 0-0)" "range: 0-0" sh -c "tr -d '\r' <$WORK/fst.h | tr A-Z a-z"
check_output "the retried PATCH succeeds once S3 is back" "202" \
  curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "Authorization: Bearer $T" \
  -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/hundred.bin" "http://$FRONT$FLOC"
HD=sha256:$(sha256sum "$WORK/hundred.bin" | cut -d' ' -f1)
check_output "… and the PUT verifies the digest (201)" "201" \
  curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $T" "http://$FRONT$FLOC?digest=$HD"
T=$(token "$A" "repository:aws/fault:pull,push")
check_output "the blob reads back whole through the Lambda" "${HD#sha256:}" \
  sh -c "curl -sfL -H 'Authorization: Bearer $T' http://$A/v2/aws/fault/blobs/$HD | sha256sum"

# DynamoDB stops (never answers) during a manifest PUT to the Lambda.
CFG='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
printf '%s' "$CFG" >"$WORK/cfg.json"
CD=sha256:$(sha256sum "$WORK/cfg.json" | cut -d' ' -f1)
curl -s -o /dev/null -X POST -H "Authorization: Bearer $T" -H 'Content-Type: application/octet-stream' \
  --data-binary @"$WORK/cfg.json" "http://$A/v2/aws/fault/blobs/uploads/?digest=$CD"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
  "$CD" "$(stat -c %s "$WORK/cfg.json")" "$HD" "$(stat -c %s "$WORK/hundred.bin")" >"$WORK/man.json"
MD=sha256:$(sha256sum "$WORK/man.json" | cut -d' ' -f1)
kill -STOP "$MOTO_PID"
curl -s -o "$WORK/dfault.json" -w '%{http_code}' -m 120 -X PUT -H "Authorization: Bearer $T" \
  -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/man.json" \
  "http://$A/v2/aws/fault/manifests/v1" >"$WORK/dfault.code"
# An outage is neither a wrong password nor a duplicate (issue 19, item 15): creating a user
# and logging in both answer 503 while the table does not answer.
curl -s -o "$WORK/ufault.json" -w '%{http_code}' -m 120 -u "admin:$WHARF_ADMIN_PASSWORD" \
  -X POST -H 'Content-Type: application/json' -d '{"username":"during-outage","password":"pw-during-outage"}' \
  "http://$A/api/v1/users" >"$WORK/ufault.code"
curl -s -o "$WORK/tfault.json" -w '%{http_code}' -m 120 -u "admin:$WHARF_ADMIN_PASSWORD" \
  "http://$A/token?service=wharf" >"$WORK/tfault.code"
kill -CONT "$MOTO_PID"
check_output "DynamoDB stopped: creating a user answers 503, not 409 or 401" "503" cat "$WORK/ufault.code"
check_output "… with UNAVAILABLE, not a conflict" "UNAVAILABLE" cat "$WORK/ufault.json"
check_output "DynamoDB stopped: a login answers 503, not 401" "503" cat "$WORK/tfault.code"
check_output "once DynamoDB is back, the user can be created (201)" "201" \
  curl -s -o /dev/null -w '%{http_code}' -u "admin:$WHARF_ADMIN_PASSWORD" -X POST \
  -H 'Content-Type: application/json' -d '{"username":"during-outage","password":"pw-during-outage"}' \
  "http://$A/api/v1/users"
code=$(cat "$WORK/dfault.code")
check "DynamoDB stopped: the manifest PUT fails with a 5xx (got $code)" sh -c "case '$code' in 5??) exit 0;; *) exit 1;; esac"
check_output "… with an OCI error body" "UNAVAILABLE" cat "$WORK/dfault.json"
check_output "the retried manifest PUT succeeds (201)" "201" \
  curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $T" \
  -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/man.json" \
  "http://$A/v2/aws/fault/manifests/v1"
check_output "tag and digest both serve the manifest" "$MD $MD" sh -c "
  a=\$(curl -s -H 'Authorization: Bearer $T' -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://$A/v2/aws/fault/manifests/v1 | sha256sum | cut -d' ' -f1)
  b=\$(curl -s -H 'Authorization: Bearer $T' -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://$A/v2/aws/fault/manifests/$MD | sha256sum | cut -d' ' -f1)
  echo sha256:\$a sha256:\$b"

for p in $API_PIDS; do
  echo "  Lambda instance $p: $(grep -E 'VmHWM' /proc/$p/status 2>/dev/null | tr -s ' \t' ' ')"
done
finish
