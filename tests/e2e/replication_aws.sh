#!/usr/bin/env bash
# Replication between two AWS "regions" run locally: each region has its own bucket
# (an s3s-fs each) and its own table (a moto each; B's in another AWS region, eu-west-1),
# and its own API Lambda (prebuilt, under `cargo lambda watch`'s emulator). A's jobs Lambda
# copies every change to B's stores through B's own handlers in its process
# ({"job":"replicate"} from the every-minute schedule, or a batch of DynamoDB stream
# records).
#   - docker pushes to A; before the job runs B has nothing of it and answers its reads
#     from A (the project's home): blob GETs are 307s to A's bucket
#   - after the run, docker pulls the image from B, and B's blob GETs are 307s to B's bucket
#   - docker pushes to B's endpoint: B forwards the writes to A, the project's home
#   - a tag moved in A moves in B on a stream-triggered run; a manifest deleted in A goes
#   - B's bucket down: the run reports the failure and holds its checkpoint; B back, the
#     next run copies what was pushed meanwhile
#   - identity is A's (B has WHARF_IDENTITY_HOME): a user made in A logs in to B after a run,
#     a token from A pulls from B (one signing key, configured in both), B refuses identity
#     writes, and a user deleted in A is refused by B after the next run (the every-minute
#     schedule's bound)
# Budget: about a minute after the binaries are built.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
source "$here/aws_lib.sh"
JOBS_BIN=${JOBS_BIN:-$ROOT/target/release/wharf-lambda-jobs}
CREDS="admin:$WHARF_ADMIN_PASSWORD"
export AWS_ACCESS_KEY_ID=wharftestkey AWS_SECRET_ACCESS_KEY=wharftestsecret
export WHARF_DYNAMODB_ATTEMPT_TIMEOUT_MS=3000

# (Assignments of their own, not prefixes: a prefix would undo what start_s3 sets.)
S3_DIR=$WORK/s3-a
start_s3
A_S3=$S3_PORT
start_moto
A_DDB=$MOTO_PORT
S3_PORT=
S3_DIR=$WORK/s3-b
start_s3
B_S3=$S3_PORT
B_S3_PID=$S3_PID
start_moto
B_DDB=$MOTO_PORT
# One token signing key for the registry, configured in both regions (as from one secret).
KEYS_PEM=$(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null)
# What docker talks to in each region (see url_front.py), and the regions by those URLs.
FA=$(free_port)
FB=$(free_port)
RA=127.0.0.1:$FA
RB=127.0.0.1:$FB
REGIONS="us-east-1=http://$RA,eu-west-1=http://$RB"
A_ENV=(AWS_REGION=us-east-1 AWS_ENDPOINT_URL_S3=http://127.0.0.1:$A_S3 AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$A_DDB
  WHARF_S3_BUCKET=wharf-a WHARF_DYNAMODB_TABLE=wharf-a "WHARF_TOKEN_KEYS_PEM=$KEYS_PEM"
  WHARF_REGION=us-east-1 "WHARF_REGIONS=$REGIONS")
B_ENV=(AWS_REGION=eu-west-1 AWS_ENDPOINT_URL_S3=http://127.0.0.1:$B_S3 AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$B_DDB
  WHARF_S3_BUCKET=wharf-b WHARF_DYNAMODB_TABLE=wharf-b "WHARF_TOKEN_KEYS_PEM=$KEYS_PEM" WHARF_IDENTITY_HOME=us-east-1
  WHARF_REGION=eu-west-1 "WHARF_REGIONS=$REGIONS")
check_output "wharf aws bootstrap of region A" "user admin ready" env "${A_ENV[@]}" "$WHARF_BIN" aws bootstrap
check_output "wharf aws bootstrap of region B" "user admin ready" env "${B_ENV[@]}" "$WHARF_BIN" aws bootstrap

# Each region's API function and the function-URL front docker talks to (see url_front.py).
# front NAME PORT LAMBDA_PORT
front() {
  python3 "$here/url_front.py" "$2" "$3" >>"$LOGDIR/$SUITE-$1-url-front.log" 2>&1 &
  PIDS+=("$!")
  wait_http "http://127.0.0.1:$2/v2/" 20
}
start_emulator A
start_instance A "${A_ENV[@]}"
start_emulator B
start_instance B "${B_ENV[@]}"
wait_http "http://127.0.0.1:$A_PORT/v2/" 30
wait_http "http://127.0.0.1:$B_PORT/v2/" 30
front a "$FA" "$A_PORT"
front b "$FB" "$B_PORT"

# A's jobs function, replicating to B's stores.
start_emulator JOBS wharf-lambda-jobs
INSTANCE_BIN=$JOBS_BIN start_instance JOBS "${A_ENV[@]}" WHARF_REPLICA_S3_BUCKET=wharf-b \
  WHARF_REPLICA_DYNAMODB_TABLE=wharf-b WHARF_REPLICA_REGION=eu-west-1 \
  WHARF_REPLICA_ENDPOINT_URL_S3=http://127.0.0.1:$B_S3 WHARF_REPLICA_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$B_DDB
invoke() { "$CARGO_LAMBDA" lambda invoke -A 127.0.0.1 -P "$JOBS_PORT" --data-ascii "$1" _ 2>&1; }
replicate() { invoke '{"job":"replicate"}'; }
# A batch as DynamoDB Streams delivers it (the records only wake the job).
STREAM='{"Records":[{"eventID":"1","eventName":"INSERT","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"us-east-1","dynamodb":{"Keys":{"pk":{"S":"outbox"}},"SequenceNumber":"1","SizeBytes":10,"StreamViewType":"KEYS_ONLY"}}]}'

token() {
  curl -s -u "${TOKEN_CREDS:-$CREDS}" "http://$1/token?service=wharf&scope=repository:$2:pull" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
ACCEPT='Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
# digest_at REGISTRY REPO REF: the digest REGISTRY serves for REPO:REF, or nothing.
digest_at() {
  curl -s -o /dev/null -I -w '%header{docker-content-digest}' -H "Authorization: Bearer $(token "$1" "$2")" \
    -H "$ACCEPT" "http://$1/v2/$2/manifests/$3"
}
# first_layer REGISTRY REPO REF: the digest of the image's first layer.
first_layer() {
  curl -s -H "Authorization: Bearer $(token "$1" "$2")" -H "$ACCEPT" "http://$1/v2/$2/manifests/$3" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])'
}
# blob_location REGISTRY REPO DIGEST: the Location a blob GET answers with.
blob_location() {
  curl -s -o /dev/null -w '%{http_code} %header{location}' -H "Authorization: Bearer $(token "$1" "$2")" \
    "http://$1/v2/$2/blobs/$3"
}

start_dockerd
check "docker login to A" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $RA"
make_image "$RA/repl/app:v1" 3
check_output "docker push to region A's Lambda" "digest: sha256:" docker push "$RA/repl/app:v1"
APP1=$(digest_at "$RA" repl/app v1)
ID1=$(docker image inspect -f '{{.Id}}' "$RA/repl/app:v1")
check "A serves the image" test -n "$APP1"
check "each region's bucket is on its own S3" test "$A_S3" != "$B_S3"
b_blobs() { find "$WORK/s3-b/wharf-b" -type f -path '*blobs*' 2>/dev/null | wc -l; }
check "B's bucket has nothing of it before the job runs" test "$(b_blobs)" = 0
check "B answers its manifest from A, the project's home" test "$(digest_at "$RB" repl/app v1)" = "$APP1"
EARLY_LAYER=$(first_layer "$RA" repl/app v1)
check_output "B's blob GET is a 307 to A's bucket before replication" "307 http://127.0.0.1:$A_S3/wharf-a/" blob_location "$RB" repl/app "$EARLY_LAYER"

check_output "{\"job\":\"replicate\"} copies the outbox to B" '"finished":true' replicate
# B's own first admin was replaced by A's in that run (identity is A's): docker logs in to
# B now, as A's admin.
check "docker login to B" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $RB"
check "B serves repl/app:v1 at A's digest" test "$(digest_at "$RB" repl/app v1)" = "$APP1"
LAYER=$(first_layer "$RB" repl/app v1)
check_output "B's blob GET is a 307 to B's own bucket" "307 http://127.0.0.1:$B_S3/wharf-b/" blob_location "$RB" repl/app "$LAYER"
check_output "A's blob GET is a 307 to A's bucket" "307 http://127.0.0.1:$A_S3/wharf-a/" blob_location "$RA" repl/app "$LAYER"
docker rmi -f "$RA/repl/app:v1" >/dev/null 2>&1
check "docker pull from region B" docker pull "$RB/repl/app:v1"
check "B's bucket holds the layer" test -n "$(find "$WORK/s3-b/wharf-b" -type f -path "*${LAYER#sha256:}*" 2>/dev/null | head -1)"
check "the image pulled from B is the one pushed to A" test "$(docker image inspect -f '{{.Id}}' "$RB/repl/app:v1")" = "$ID1"

# A tag moved in A moves in B on a run a stream batch triggers; a deleted manifest goes.
make_image "$RA/repl/app:v1" 1
check_output "docker push another image to the same tag in A" "digest: sha256:" docker push "$RA/repl/app:v1"
APP2=$(digest_at "$RA" repl/app v1)
check "the tag has moved in A" test "$APP2" != "$APP1"
check_output "a DynamoDB stream batch triggers a replicate run" '"finished":true' invoke "$STREAM"
check "B's tag follows A's" test "$(digest_at "$RB" repl/app v1)" = "$APP2"
check "skopeo delete of repl/app@first in A" skopeo delete --tls-verify=false --creds "$CREDS" "docker://$RA/repl/app@$APP1"
check_output "the next run copies the deletion" '"finished":true' replicate
check_output "B no longer serves the deleted manifest" "404" \
  curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(token "$RB" repl/app)" -H "$ACCEPT" "http://$RB/v2/repl/app/manifests/$APP1"

# B's bucket down: the run says so and holds its checkpoint; B back, the next run copies.
kill "$B_S3_PID"; for _ in $(seq 1 50); do kill -0 "$B_S3_PID" 2>/dev/null || break; sleep 0.1; done
make_image "$RA/repl/later:v1" 2
check_output "docker push to A while B's bucket is down" "digest: sha256:" docker push "$RA/repl/later:v1"
LATER=$(digest_at "$RA" repl/later v1)
invoke '{"job":"replicate"}' >"$WORK/down.json"
check_output "the run reports the failed copy" '"error":"' cat "$WORK/down.json"
check_output "and is not finished" '"finished":false' cat "$WORK/down.json"
start_s3
check_output "B's bucket back: the next run finishes" '"finished":true' replicate
check "B serves what was pushed while its bucket was down" test "$(digest_at "$RB" repl/later v1)" = "$LATER"
docker rmi -f "$RA/repl/later:v1" >/dev/null 2>&1
check "docker pull of it from B" docker pull "$RB/repl/later:v1"

# A push to B's endpoint of a project homed in A: B forwards its writes to A.
make_image "$RB/repl/via-b:v1" 2
check_output "docker push to region B's endpoint" "digest: sha256:" docker push "$RB/repl/via-b:v1"
VIA=$(digest_at "$RA" repl/via-b v1)
check "the push landed in A, the project's home" test -n "$VIA"
check "B's bucket did not take it" test -z "$(find "$WORK/s3-b/wharf-b" -type f -path "*$(first_layer "$RA" repl/via-b v1 | sed 's/sha256://')*" | head -1)"
check_output "the next run copies it to B" '"finished":true' replicate
check_output "then B's blob GET is a 307 to B's bucket" "307 http://127.0.0.1:$B_S3/wharf-b/" blob_location "$RB" repl/via-b "$(first_layer "$RA" repl/via-b v1)"

# Identity: written in A, mirrored to B by the same runs.
api() { curl -s -o "$WORK/api.json" -w '%{http_code}' -u "$CREDS" -H 'Content-Type: application/json' -X "$2" "http://$1/api/v1/$3" ${4:+-d "$4"}; }
check_output "A creates user carol" "201" api "$RA" POST users '{"username":"carol","password":"carol-password-1"}'
check_output "A makes carol a developer of repl" "20" api "$RA" POST projects/repl/members '{"username":"carol","role":"developer"}'
check_output "B refuses to create a user (identity is A's)" "403" api "$RB" POST users '{"username":"eve","password":"eve-password-1"}'
check_output "and names the region to write in" "us-east-1" cat "$WORK/api.json"
check "carol cannot log in to B before the run" bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -u carol:carol-password-1 'http://$RB/token?service=wharf&scope=repository:repl/app:pull')\" = 401 ]"
replicate >"$WORK/identity.json"
check_output "the run mirrors A's identity to B" '"identity":{"compared":' cat "$WORK/identity.json"
check "docker login to B as carol" sh -c "echo carol-password-1 | docker login -u carol --password-stdin $RB"
check "a token from A pulls carol's manifest from B" test "$(TOKEN_CREDS=carol:carol-password-1 token "$RA" repl/app | \
  xargs -I{} curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer {}' -H "$ACCEPT" "http://$RB/v2/repl/app/manifests/v1")" = 200
check_output "A deletes carol" "20" api "$RA" DELETE users/carol
check_output "the next run takes the deletion to B" '"deleted":' replicate
check "B refuses carol's login" bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -u carol:carol-password-1 'http://$RB/token?service=wharf&scope=repository:repl/app:pull')\" = 401 ]"
check_fails "docker login to B as carol fails" sh -c "echo carol-password-1 | docker login -u carol --password-stdin $RB"
finish
