#!/usr/bin/env bash
# One registry in two regions (two `wharf serve` instances, a and b, one signing key): b
# forwards a project's writes to its home region, and the reads it cannot answer yet too.
#   - docker pushes to b's endpoint a project homed in a: the push lands in a, not in b
#   - docker pulls it from b before b has it (b redirects to a), then after replication
#     from b's own store (no redirect)
#   - two docker pushes of one tag at once, one to each region: both succeed, and after
#     replication both regions serve the same digest
#   - b refuses identity writes (a is the identity home) and a token from a works at b
# Budget: about a minute.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
CREDS="admin:$WHARF_ADMIN_PASSWORD"
rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/key.pem" 2>/dev/null
PA=$(free_port)
PB=$(free_port)
RA="127.0.0.1:$PA"
RB="127.0.0.1:$PB"
REGIONS="a=http://$RA,b=http://$RB"

start_b() {
  RUST_LOG=debug "$WHARF_BIN" serve --listen "$RB" --data-dir "$WORK/b-data" --token-keys "$WORK/key.pem" \
    --region b --regions "$REGIONS" --identity-home a >>"$LOGDIR/regions-b-wharf.log" 2>&1 &
  PIDS+=("$!")
  wait_http "http://$RB/v2/" 20
}
# start_a [serve args…]
start_a() {
  RUST_LOG=debug "$WHARF_BIN" serve --listen "$RA" --data-dir "$WORK/a-data" --token-keys "$WORK/key.pem" \
    --region a --regions "$REGIONS" "$@" >>"$LOGDIR/regions-a-wharf.log" 2>&1 &
  A_PID=$!
  PIDS+=("$A_PID")
  wait_http "http://$RA/v2/" 20
}
start_b
start_a   # not replicating yet: b lacks what a has

token() {
  curl -s -u "$CREDS" "http://$1/token?service=wharf&scope=repository:$2:pull" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
ACCEPT='Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
# answer REGISTRY REPO REF [TOKEN_FROM]: "status location digest" of a manifest GET, not followed.
answer() {
  curl -s -o /dev/null -w '%{http_code} %header{location} %header{docker-content-digest}' \
    -H "Authorization: Bearer $(token "${4:-$1}" "$2")" -H "$ACCEPT" "http://$1/v2/$2/manifests/$3"
}
digest_of() { answer "$@" | awk '{print $NF}'; }
B_LOG=$LOGDIR/regions-b-wharf.log
forwards() { grep -c "$1 forwarded" "$B_LOG"; }
# from_b_itself REPO REF DIGEST: b answers with DIGEST and forwards nothing for it.
from_b_itself() {
  local before
  before=$(forwards read)
  [ "$(answer "$RB" "$1" "$2" | awk '{print $1, $NF}')" = "200 $3" ] && [ "$(forwards read)" = "$before" ]
}

start_dockerd
check "docker login to a" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $RA"
check "docker login to b" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $RB"
make_image "$RB/team/app:v1" 5
check_output "docker push to b's endpoint (project homed in a)" "digest: sha256:" docker push "$RB/team/app:v1"
APP=$(docker image inspect -f '{{index .RepoDigests 0}}' "$RB/team/app:v1" | sed 's/.*@//')
ID=$(docker image inspect -f '{{.Id}}' "$RB/team/app:v1")
check "the push landed in a" test "$(digest_of "$RA" team/app v1)" = "$APP"
check "b forwarded the push's writes" test "$(forwards request)" -gt 3
blobs_in_b() { find "$WORK/b-data" -type f -path '*sha256*' 2>/dev/null | wc -l; }
check "b stored none of its blobs" test "$(blobs_in_b)" = 0
before=$(forwards read)
check_output "b answers the manifest GET from a (it lacks it)" "200  $APP" answer "$RB" team/app v1
check "by forwarding the read" test "$(forwards read)" -gt "$before"
check_output "b refuses to create a user (identity is a's)" "403" \
  curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" -H 'Content-Type: application/json' \
  -d '{"username":"eve","password":"eve-password-1"}' "http://$RB/api/v1/users"
check_output "a token from a is taken at b (one signing key)" "200" answer "$RB" team/app v1 "$RA"
docker rmi -f "$RB/team/app:v1" >/dev/null 2>&1
check "docker pull from b before replication (served from a)" docker pull "$RB/team/app:v1"
check "it is the image pushed" test "$(docker image inspect -f '{{.Id}}' "$RB/team/app:v1")" = "$ID"

# a replicates to b now: b catches up (its walk), then answers itself.
kill "$A_PID"; for _ in $(seq 1 50); do kill -0 "$A_PID" 2>/dev/null || break; sleep 0.1; done
WHARF_REPLICA_PASSWORD=$WHARF_ADMIN_PASSWORD start_a --replica-url "http://$RB" --replica-username admin
wait_b_serves() {
  local i
  for i in $(seq 1 200); do
    from_b_itself "$@" && return 0
    sleep 0.1
  done
  answer "$RB" "$1" "$2" >&2
  return 1
}
check "after replication b serves the manifest itself" wait_b_serves team/app v1 "$APP"
check "and holds the image's blobs" test "$(blobs_in_b)" -ge 2
docker rmi -f "$RB/team/app:v1" >/dev/null 2>&1
check "docker pull from b after replication" docker pull "$RB/team/app:v1"

# The same tag pushed through both regions at once: both pushes succeed, and a decides.
make_image "$RA/team/app:moving" 2
make_image "$RB/team/app:moving" 2
( docker push "$RA/team/app:moving" >"$WORK/push-a.log" 2>&1; echo "rc=$?" >>"$WORK/push-a.log" ) &
PUSH_A=$!
( docker push "$RB/team/app:moving" >"$WORK/push-b.log" 2>&1; echo "rc=$?" >>"$WORK/push-b.log" ) &
PUSH_B=$!
wait "$PUSH_A" "$PUSH_B"
check_output "the push through a succeeded" "rc=0" cat "$WORK/push-a.log"
check_output "the push through b succeeded" "rc=0" cat "$WORK/push-b.log"
FINAL=$(digest_of "$RA" team/app moving)
check "a's tag is one of the two pushes" grep -qF "$FINAL" "$WORK/push-a.log" "$WORK/push-b.log"
check "b serves the same digest after replication" wait_b_serves team/app moving "$FINAL"
finish
