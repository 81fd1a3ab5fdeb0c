#!/usr/bin/env bash
# Installs what the test suites need, only what is missing (CI machines start clean).
set -u
cd "$(dirname "$0")/.."
mkdir -p target
log=target/install-deps.log
: >"$log"
apt_pkgs=()
for p in docker.io skopeo podman buildah docker-registry wrk openssl curl uidmap; do
  dpkg -s "$p" >/dev/null 2>&1 || apt_pkgs+=("$p")
done
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "installing: ${apt_pkgs[*]}"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${apt_pkgs[@]}"; } >>"$log" 2>&1 \
    || { echo "apt-get install failed; see $log"; tail -20 "$log"; exit 1; }
fi
# python3 -m pip: the interpreter that runs the oras suite is the one that gets the SDK.
python3 -c 'import oras' 2>/dev/null || python3 -m pip install -q 'oras==0.2.43' >>"$log" 2>&1 || { echo "pip install oras failed"; exit 1; }
# The image's /usr/local/bin/docker CLI is newer than Debian's; either works with Debian's dockerd.
command -v dockerd >/dev/null || { echo "dockerd missing after install"; exit 1; }
exit 0
