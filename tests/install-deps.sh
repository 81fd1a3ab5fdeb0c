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
# Local AWS stand-ins for the wharf-s3 / wharf-dynamodb tests: moto (DynamoDB) and s3s-fs
# (a strict S3 that checks SigV4 and presigned URLs).
command -v moto_server >/dev/null || python3 -m pip install -q 'moto[server]==5.2.1' >>"$log" 2>&1 \
  || { echo "pip install moto failed"; exit 1; }
if ! command -v s3s-fs >/dev/null && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
  echo "installing s3s-fs (cargo install, a few minutes)"
  cargo install -q s3s-fs@0.14.1 --features binary >>"$log" 2>&1 || { echo "cargo install s3s-fs failed"; tail -20 "$log"; exit 1; }
fi
# The Lambda emulator (Runtime API + function URLs) for the AWS suite; pip brings zig too.
command -v cargo-lambda >/dev/null || python3 -m pip install -q 'cargo-lambda==1.9.2' >>"$log" 2>&1 \
  || { echo "pip install cargo-lambda failed"; exit 1; }
# The image's /usr/local/bin/docker CLI is newer than Debian's; either works with Debian's dockerd.
command -v dockerd >/dev/null || { echo "dockerd missing after install"; exit 1; }
exit 0
