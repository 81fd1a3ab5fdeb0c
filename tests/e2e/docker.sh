#!/usr/bin/env bash
# Real docker against wharf: a three-layer image with a 200 MB layer, re-push (layers
# skipped), pull by tag and by digest, delete by digest, and the pull that fails after.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
start_wharf
start_dockerd
IMG="$R/e2e/app:v1"

make_image e2e-docker-base:1 4
ctx="$WORK/ctx"
mkdir -p "$ctx"
head -c $((200 * 1024 * 1024)) /dev/urandom >"$ctx/big.bin"
date +%s%N >"$ctx/small.txt"
printf 'FROM e2e-docker-base:1\nCOPY big.bin /big.bin\nCOPY small.txt /small.txt\n' >"$ctx/Dockerfile"
check "docker build a 3-layer image (one layer 200 MB)" env DOCKER_BUILDKIT=0 docker build -q -t "$IMG" "$ctx"
check "the image has 3 layers" test "$(docker image inspect -f '{{len .RootFS.Layers}}' "$IMG")" = 3
ORIG_ID=$(docker image inspect -f '{{.Id}}' "$IMG")

check "docker login" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $R"
check_output "docker push" "digest: sha256:" docker push "$IMG"
out="$WORK/repush.txt"
docker push "$IMG" >"$out" 2>&1
check "re-push skips all 3 layers (Layer already exists)" test "$(grep -c 'Layer already exists' "$out")" = 3

DIGEST=$(docker image inspect -f '{{index .RepoDigests 0}}' "$IMG" | cut -d@ -f2)
check "the pushed manifest digest is known" test -n "$DIGEST"
docker rmi -f "$IMG" e2e-docker-base:1 >/dev/null 2>&1
check "image removed locally" sh -c "! docker image inspect $IMG >/dev/null 2>&1"
check "docker pull by tag" docker pull "$IMG"
check "pulled image has the same id (config digest)" test "$(docker image inspect -f '{{.Id}}' "$IMG")" = "$ORIG_ID"
docker rmi -f "$IMG" >/dev/null 2>&1
check "docker pull by digest" docker pull "$R/e2e/app@$DIGEST"
check "pulled-by-digest image has the same id" test "$(docker image inspect -f '{{.Id}}' "$R/e2e/app@$DIGEST")" = "$ORIG_ID"

TOKEN=$(curl -s -u "admin:$WHARF_ADMIN_PASSWORD" "http://$R/token?service=wharf&scope=repository:e2e/app:pull,delete" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
check_output "DELETE the manifest by digest → 202" "202" \
  curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $TOKEN" "http://$R/v2/e2e/app/manifests/$DIGEST"
docker rmi -f "$R/e2e/app@$DIGEST" "$IMG" >/dev/null 2>&1
# docker itself may not ask: containerd keeps a removed image's manifest in its content
# store for a while and pulls by digest from there, fetching only the blobs. So the registry
# is asked directly, and by skopeo, which keeps no cache.
check_output "the manifest is gone from the registry (404 MANIFEST_UNKNOWN)" "404 MANIFEST_UNKNOWN" \
  oci_error GET "http://$R/v2/e2e/app/manifests/$DIGEST" -H "Authorization: Bearer $TOKEN"
check_output "skopeo inspect by digest now fails with manifest unknown" "manifest unknown" \
  sh -c "skopeo inspect --raw --tls-verify=false --creds 'admin:$WHARF_ADMIN_PASSWORD' docker://$R/e2e/app@$DIGEST 2>&1"
check_output "pull by tag fails too (the tag went with the manifest)" "manifest unknown" sh -c "docker pull $IMG 2>&1"
finish
