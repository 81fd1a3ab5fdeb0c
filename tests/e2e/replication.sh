#!/usr/bin/env bash
# Replication between two `wharf serve` instances ("regions" A and B, two data dirs, two
# ports): A copies every change to B over the distribution API, logging in to B's token
# endpoint. skopeo and docker push to A and pull from B; tag moves and deletes follow; a
# replica that is down catches up when it is back; the lag from A's answer to B serving the
# image is measured. Budget: about a minute.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
CREDS="admin:$WHARF_ADMIN_PASSWORD"
rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb

# B first, on a port kept across its restart.
B_PORT=$(free_port)
B_DATA=$WORK/b-data
start_b() {
  RUST_LOG=debug "$WHARF_BIN" serve --listen "127.0.0.1:$B_PORT" --data-dir "$B_DATA" \
    >>"$LOGDIR/replication-b-wharf.log" 2>&1 &
  B_PID=$!
  PIDS+=("$B_PID")
  wait_http "http://127.0.0.1:$B_PORT/v2/" 20
}
start_b
RB="127.0.0.1:$B_PORT"
WHARF_DATA=$WORK/a-data WHARF_REPLICA_PASSWORD=$WHARF_ADMIN_PASSWORD SUITE=replication-a \
  start_wharf --replica-url "http://$RB" --replica-username admin
RA=$R
A_LOG=$WHARF_LOG

# digest_at REGISTRY REPO REF: the digest REGISTRY serves for REPO:REF, or nothing.
digest_at() {
  local t
  t=$(curl -s -u "$CREDS" "http://$1/token?service=wharf&scope=repository:$2:pull" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s -o /dev/null -I -w '%header{docker-content-digest}' -H "Authorization: Bearer $t" \
    -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' \
    "http://$1/v2/$2/manifests/$3"
}
b_digest() { digest_at "$RB" "$@"; }
# wait_b REPO REF DIGEST [SECONDS]: until B serves REF at DIGEST ("" : until it serves none).
wait_b() {
  local i
  for i in $(seq 1 $((${4:-30} * 20))); do
    [ "$(b_digest "$1" "$2")" = "$3" ] && return 0
    sleep 0.05
  done
  echo "B serves $1:$2 at '$(b_digest "$1" "$2")', not '$3'" >&2
  return 1
}

# A multi-arch index, pushed to A with skopeo, pulled whole from B.
INDEX=$(python3 "$here/make_index.py" "$WORK/layout")
check "skopeo copy --all of a 2-platform index to A" \
  skopeo copy --all --dest-tls-verify=false --dest-creds "$CREDS" "oci:$WORK/layout:multi" "docker://$RA/repl/multi:v1"
check "B serves the index at its digest" wait_b repl/multi v1 "$INDEX"
check "skopeo copy --all from B (every platform, digests verified)" \
  skopeo copy --all --src-tls-verify=false --src-creds "$CREDS" "docker://$RB/repl/multi:v1" "oci:$WORK/from-b:multi"
check "the index copied from B has A's digest" \
  python3 -c "import json,sys; sys.exit(0 if json.load(open('$WORK/from-b/index.json'))['manifests'][0]['digest']=='$INDEX' else 1)"

# docker: push to A, pull from B.
start_dockerd
check "docker login to A" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $RA"
check "docker login to B" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $RB"
make_image "$RA/repl/app:v1" 20
check_output "docker push a 20 MB image to A" "digest: sha256:" docker push "$RA/repl/app:v1"
APP1=$(docker image inspect -f '{{index .RepoDigests 0}}' "$RA/repl/app:v1" | sed 's/.*@//')
ID1=$(docker image inspect -f '{{.Id}}' "$RA/repl/app:v1")
check "B serves repl/app:v1" wait_b repl/app v1 "$APP1"
check "docker pull from B" docker pull "$RB/repl/app:v1"
check "the image pulled from B is the one pushed to A" test "$(docker image inspect -f '{{.Id}}' "$RB/repl/app:v1")" = "$ID1"

# A tag moved in A moves in B; a deleted one goes.
make_image "$RA/repl/app:v1" 1
check_output "docker push another image to the same tag in A" "digest: sha256:" docker push "$RA/repl/app:v1"
APP2=$(docker image inspect -f '{{index .RepoDigests 0}}' "$RA/repl/app:v1" | sed 's/.*@//')
check "the new image has another digest" test "$APP2" != "$APP1"
check "B's tag follows A's" wait_b repl/app v1 "$APP2"
check "skopeo delete repl/multi:v1 in A" skopeo delete --tls-verify=false --creds "$CREDS" "docker://$RA/repl/multi:v1"
check "the deletion reaches B" wait_b repl/multi v1 ""

# B down: A keeps its changes and B gets them when it is back.
kill "$B_PID"; for _ in $(seq 1 100); do kill -0 "$B_PID" 2>/dev/null || break; sleep 0.1; done
check "skopeo copy to A while B is down" \
  skopeo copy --dest-tls-verify=false --dest-creds "$CREDS" "oci:$WORK/layout:multi" "docker://$RA/repl/later:v1"
for _ in $(seq 1 60); do grep -q "replication step failed" "$A_LOG" && break; sleep 0.1; done
check "A logs the failed step" grep -q "replication step failed" "$A_LOG"
start_b
LATER=$(digest_at "$RA" repl/later v1)
check "A serves the image pushed while B was down" test -n "$LATER"
check "B catches up after its restart" wait_b repl/later v1 "$LATER"
for _ in $(seq 1 50); do grep -q "replication resumed" "$A_LOG" && break; sleep 0.1; done
check "A logs that replication resumed" grep -q "replication resumed" "$A_LOG"
check "no replication credential in A's log" bash -c "! grep -qF -- '$WHARF_ADMIN_PASSWORD' '$A_LOG'"

# Lag: from A's answer to a manifest PUT to B serving that digest, 20 times; the
# measurement's own overhead is the same poll against A.
python3 "$here/repl_lag.py" "$RA" "$RB" "$CREDS" 20 >"$WORK/lag.txt" 2>&1
cat "$WORK/lag.txt"
check_output "20 images replicated, lag measured" "replicated 20/20" cat "$WORK/lag.txt"
finish
