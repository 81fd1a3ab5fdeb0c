#!/usr/bin/env bash
# podman push and pull against wharf.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
start_wharf
rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
pm() {
  podman --storage-driver vfs --root "$WORK/pm-root" --runroot "$WORK/pm-run" \
    --cgroup-manager cgroupfs --events-backend file "$@"
}
mkdir -p "$WORK/rootfs"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$WORK/rootfs/blob.bin"
tar -C "$WORK/rootfs" -cf "$WORK/layer.tar" .
check "podman import" pm import "$WORK/layer.tar" "$R/pm/app:v1"
ID=$(pm image inspect -f '{{.Id}}' "$R/pm/app:v1")
export REGISTRY_AUTH_FILE="$WORK/auth.json"
check "podman login" pm login --tls-verify=false -u admin -p "$WHARF_ADMIN_PASSWORD" "$R"
check "podman push" pm push --tls-verify=false "$R/pm/app:v1"
check "podman rmi" pm rmi -f "$R/pm/app:v1"
check "podman pull" pm pull --tls-verify=false "$R/pm/app:v1"
check "pulled image has the same id" test "$(pm image inspect -f '{{.Id}}' "$R/pm/app:v1")" = "$ID"
finish
