#!/usr/bin/env bash
# Real docker and garbage collection on `wharf serve`: two images share a base layer; one
# is deleted; `wharf gc run --dry-run` says what it would collect and deletes nothing;
# `wharf gc run` frees the deleted image's own layers on disk and keeps the shared one;
# docker pulls what remains; the run is in the history and the audit log; a developer may
# not run it; a collection right after a push (grace 1h) collects nothing of it; `--verify`
# finds nothing wrong, then names a layer file deleted behind wharf's back.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
# No scheduled collection: the suite runs its own.
start_wharf --gc-interval-hours 0
start_dockerd
cli_as_admin "$R"
blobs_bytes() { du -sb "$WHARF_DATA/blobs" | cut -f1; }

make_image e2e-gc-base:1 4
for name in gone keep; do
  ctx="$WORK/ctx-$name"
  mkdir -p "$ctx"
  head -c $((20 * 1024 * 1024)) /dev/urandom >"$ctx/own.bin"
  printf 'FROM e2e-gc-base:1\nCOPY own.bin /own.bin\n' >"$ctx/Dockerfile"
  check "docker build $name (the shared base and a 20 MB layer of its own)" \
    env DOCKER_BUILDKIT=0 docker build -q -t "$R/gc/$name:v1" "$ctx"
done
check "docker login" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $R"
check_output "docker push gc/gone" "digest: sha256:" docker push "$R/gc/gone:v1"
check_output "docker push gc/keep" "digest: sha256:" docker push "$R/gc/keep:v1"

# The 20 MB layer of gc/gone, as the registry names it.
GONE_DIGEST=$(docker image inspect -f '{{index .RepoDigests 0}}' "$R/gc/gone:v1" | cut -d@ -f2)
TOKEN=$(curl -s -u "admin:$WHARF_ADMIN_PASSWORD" "http://$R/token?service=wharf&scope=repository:gc/gone:pull,delete" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
OWN_LAYER=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  "http://$R/v2/gc/gone/manifests/v1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["digest"])')
check "the deleted image's own layer is on disk" test -f "$WHARF_DATA/blobs/sha256/${OWN_LAYER:7:2}/${OWN_LAYER:7}"
check_output "DELETE gc/gone by digest → 202" "202" \
  curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $TOKEN" "http://$R/v2/gc/gone/manifests/$GONE_DIGEST"

BEFORE=$(blobs_bytes)
check_output "wharf gc run --dry-run names the deleted image's layer" "would collect blob $OWN_LAYER" \
  "$WHARF_BIN" gc run --dry-run --grace 0s
check "a dry run frees nothing" test "$(blobs_bytes)" = "$BEFORE"

check_output "wharf gc run, right after the pushes with the default grace (1h), collects nothing" \
  "finished: 0 links, 0 uploads, 0 blobs" "$WHARF_BIN" gc run

"$WHARF_BIN" gc run --grace 0s >"$WORK/gc.out" 2>&1
check "wharf gc run --grace 0s succeeds" test $? = 0
cat "$WORK/gc.out" >>"$LOGDIR/$SUITE-gc-run.txt"
check_output "it collected the deleted image's layer" "collected blob $OWN_LAYER" cat "$WORK/gc.out"
check "the layer's file is gone from disk" test ! -e "$WHARF_DATA/blobs/sha256/${OWN_LAYER:7:2}/${OWN_LAYER:7}"
AFTER=$(blobs_bytes)
check "at least 20 MB freed on disk ($BEFORE → $AFTER bytes)" test $((BEFORE - AFTER)) -ge $((20 * 1024 * 1024))
check_output "the report's bytes match" "blobs (" cat "$WORK/gc.out"

docker rmi -f "$R/gc/keep:v1" "$R/gc/gone:v1" e2e-gc-base:1 >/dev/null 2>&1
check "docker pull gc/keep (its own layer and the shared base were kept)" docker pull "$R/gc/keep:v1"
check_output "the deleted image does not pull" "manifest unknown" sh -c "docker pull $R/gc/gone:v1 2>&1"

check_output "wharf gc history lists the runs" '"status": "finished"' "$WHARF_BIN" gc history
check_output "the audit log has the run" "gc_finish" "$WHARF_BIN" audit --action gc_finish

check "wharf user add dev" "$WHARF_BIN" user add dev --new-password "dev-$WHARF_ADMIN_PASSWORD"
check_output "a user who is not a system admin may not run garbage collection (403)" "403" \
  sh -c "WHARF_USERNAME=dev WHARF_PASSWORD='dev-$WHARF_ADMIN_PASSWORD' '$WHARF_BIN' gc run 2>&1"
check_output "nor read its history" "403" \
  sh -c "WHARF_USERNAME=dev WHARF_PASSWORD='dev-$WHARF_ADMIN_PASSWORD' '$WHARF_BIN' gc history 2>&1"
check_output "anonymous: 401" "401" curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d '{}' "http://$R/api/v1/gc"
check_output "a registry token is not a management credential (401)" "401" \
  curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{}' "http://$R/api/v1/gc"
check_output "an unknown field is refused (400)" "400" \
  curl -s -o /dev/null -w '%{http_code}' -u "admin:$WHARF_ADMIN_PASSWORD" -X POST -H 'Content-Type: application/json' -d '{"grace":"1h"}' "http://$R/api/v1/gc"

# Pushing again after the collection: docker's HEAD finds nothing and uploads again.
make_image e2e-gc-base:1 4
ctx="$WORK/ctx-again"
mkdir -p "$ctx"
head -c $((1024 * 1024)) /dev/urandom >"$ctx/own.bin"
printf 'FROM e2e-gc-base:1\nCOPY own.bin /own.bin\n' >"$ctx/Dockerfile"
check "docker build gc/again" env DOCKER_BUILDKIT=0 docker build -q -t "$R/gc/again:v1" "$ctx"
check_output "docker push gc/again after the collection" "digest: sha256:" docker push "$R/gc/again:v1"
docker rmi -f "$R/gc/again:v1" >/dev/null 2>&1
check "docker pull gc/again" docker pull "$R/gc/again:v1"

# The full mark-and-sweep: after pushes, a delete and collections, nothing differs; a
# layer file lost behind wharf's back is named, and the command fails.
check_output "wharf gc run --verify finds the bookkeeping true" "; 0 differences" "$WHARF_BIN" gc run --verify
KTOKEN=$(curl -s -u "admin:$WHARF_ADMIN_PASSWORD" "http://$R/token?service=wharf&scope=repository:gc/keep:pull" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
KEEP_LAYER=$(curl -s -H "Authorization: Bearer $KTOKEN" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  "http://$R/v2/gc/keep/manifests/v1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["digest"])')
rm -f "$WHARF_DATA/blobs/sha256/${KEEP_LAYER:7:2}/${KEEP_LAYER:7}"
BEFORE=$(blobs_bytes)
"$WHARF_BIN" gc run --verify >"$WORK/verify.out" 2>&1
check "wharf gc run --verify exits non-zero once a layer's file is lost" test $? != 0
check_output "and names the lost layer and its repository" "difference missing_bytes $KEEP_LAYER in gc/keep" cat "$WORK/verify.out"
check "a verification deletes nothing from disk" test "$(blobs_bytes)" = "$BEFORE"
finish
