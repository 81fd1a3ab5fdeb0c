#!/usr/bin/env bash
# skopeo against wharf: copies both ways, a multi-arch OCI index with --all, inspect, delete.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
start_wharf
CREDS="admin:$WHARF_ADMIN_PASSWORD"
rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
sk() { skopeo "$@"; }

INDEX_DIGEST=$(python3 "$here/make_index.py" "$WORK/layout")
check "an OCI layout with a 2-platform index was made" test -n "$INDEX_DIGEST"
check "skopeo copy --all (index) into wharf" \
  sk copy --all --dest-tls-verify=false --dest-creds "$CREDS" "oci:$WORK/layout:multi" "docker://$R/sk/multi:v1"
check "the index keeps its digest in wharf" \
  test "sha256:$(sk inspect --raw --tls-verify=false --creds "$CREDS" "docker://$R/sk/multi:v1" | sha256sum | cut -d' ' -f1)" = "$INDEX_DIGEST"
check_output "the index lists both platforms" '"arm64"' sk inspect --raw --tls-verify=false --creds "$CREDS" "docker://$R/sk/multi:v1"
check "skopeo copy --all out of wharf" \
  sk copy --all --src-tls-verify=false --src-creds "$CREDS" "docker://$R/sk/multi:v1" "oci:$WORK/back:multi"
check "the copied-out index has the same digest" \
  python3 -c "import json,sys; m=json.load(open('$WORK/back/index.json'))['manifests']; sys.exit(0 if m[0]['digest']=='$INDEX_DIGEST' else 1)"
check "skopeo copy of one platform by digest" \
  sk copy --src-tls-verify=false --src-creds "$CREDS" --override-arch arm64 "docker://$R/sk/multi:v1" "oci:$WORK/one:arm"

check "skopeo copy an image in (oci dir → wharf)" \
  sk copy --dest-tls-verify=false --dest-creds "$CREDS" "oci:$WORK/one:arm" "docker://$R/sk/single:v1"
check "skopeo copy the image out again (wharf → oci dir)" \
  sk copy --src-tls-verify=false --src-creds "$CREDS" "docker://$R/sk/single:v1" "oci:$WORK/single:v1"
check "blob contents survive the round trip" \
  bash -c "cd $WORK && diff <(ls one/blobs/sha256 | sort) <(ls single/blobs/sha256 | sort)"
check "skopeo writes a docker-archive tarball" \
  sk copy "oci:$WORK/one:arm" "docker-archive:$WORK/archive.tar:sk/archive:v1"
check "skopeo copy docker-archive → wharf" \
  sk copy --dest-tls-verify=false --dest-creds "$CREDS" "docker-archive:$WORK/archive.tar" "docker://$R/sk/archive:v1"
ARCHIVE_CONFIG=$(tar -xOf "$WORK/archive.tar" manifest.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Config"].split("/")[-1].removesuffix(".json"))')
check "the image config keeps its digest (docker-archive → wharf)" \
  test "$(sk inspect --raw --tls-verify=false --creds "$CREDS" "docker://$R/sk/archive:v1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')" = "sha256:${ARCHIVE_CONFIG#sha256:}"
check "skopeo copy as Docker schema 2" \
  sk copy --format v2s2 --dest-tls-verify=false --dest-creds "$CREDS" "oci:$WORK/one:arm" "docker://$R/sk/v2s2:v1"
check_output "the stored manifest is Docker schema 2" "application/vnd.docker.distribution.manifest.v2+json" \
  sk inspect --raw --tls-verify=false --creds "$CREDS" "docker://$R/sk/v2s2:v1"
check_output "skopeo list-tags" '"v1"' sk list-tags --tls-verify=false --creds "$CREDS" "docker://$R/sk/single"
check "skopeo delete" sk delete --tls-verify=false --creds "$CREDS" "docker://$R/sk/single:v1"
check_fails "inspect after delete fails" sk inspect --tls-verify=false --creds "$CREDS" "docker://$R/sk/single:v1"
finish
