# Shared helpers for the end-to-end suites: servers on ports picked at run time, bounded
# waits, cleanup by PID, and pass/fail counting. Source it; call `finish` at the end.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WHARF_BIN=${WHARF_BIN:-$ROOT/target/release/wharf}
WORK=$(mktemp -d /tmp/wharf-e2e.XXXXXX)
PASSED=0
FAILED=0
PIDS=()
SUITE=$(basename "$0" .sh)
LOGDIR=${E2E_LOGDIR:-$ROOT/target/e2e-logs}
mkdir -p "$LOGDIR"

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK" 2>/dev/null
}
trap cleanup EXIT

random_word() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# The first admin's password for the server a suite starts (auth is on by default).
WHARF_ADMIN_PASSWORD=${WHARF_ADMIN_PASSWORD:-adm-$(random_word)}
export WHARF_ADMIN_PASSWORD

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_http URL [SECONDS]: until the URL answers at all (any status), bounded.
wait_http() {
  local url=$1 limit=${2:-20} i
  for i in $(seq 1 $((limit * 10))); do
    curl -sk -o /dev/null "$url" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $url" >&2
  return 1
}

# start_wharf [extra serve args…]: sets WHARF_PORT, R (127.0.0.1:PORT), WHARF_PID,
# WHARF_LOG, WHARF_DATA.
start_wharf() {
  WHARF_PORT=$(free_port)
  WHARF_DATA=${WHARF_DATA:-$WORK/wharf-data}
  WHARF_LOG="$LOGDIR/$SUITE-wharf.log"
  RUST_LOG=${RUST_LOG:-debug} "$WHARF_BIN" serve --listen "127.0.0.1:$WHARF_PORT" --data-dir "$WHARF_DATA" "$@" \
    >>"$WHARF_LOG" 2>&1 &
  WHARF_PID=$!
  PIDS+=("$WHARF_PID")
  R="127.0.0.1:$WHARF_PORT"
  local scheme=http
  case " $* " in *" --tls-cert "*) scheme=https ;; esac
  wait_http "$scheme://127.0.0.1:$WHARF_PORT/v2/" 20
}

stop_wharf() {
  kill "$WHARF_PID" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$WHARF_PID" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$WHARF_PID" 2>/dev/null
}

# start_dockerd: a private daemon and a client config of its own (so a `docker login`
# never touches the user's); exports DOCKER_HOST and DOCKER_CONFIG.
start_dockerd() {
  local d
  d=$(mktemp -d /tmp/dk.XXXX)
  dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
    --data-root="$d/data" --exec-root="$d/exec" --pidfile="$d/docker.pid" \
    --host="unix://$d/docker.sock" >"$LOGDIR/$SUITE-dockerd.log" 2>&1 &
  PIDS+=("$!")
  export DOCKER_HOST="unix://$d/docker.sock"
  export DOCKER_CONFIG="$WORK/docker-config"
  mkdir -p "$DOCKER_CONFIG"
  DOCKERD_DIR=$d
  for _ in $(seq 1 300); do docker info >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "dockerd did not start" >&2
  tail -20 "$LOGDIR/$SUITE-dockerd.log" >&2
  return 1
}


# cli_as_admin REGISTRY: the `wharf` CLI of the rest of the suite talks to REGISTRY as admin.
cli_as_admin() {
  export WHARF_URL="http://$1" WHARF_USERNAME=admin WHARF_PASSWORD="$WHARF_ADMIN_PASSWORD"
}

# start_s3: s3s-fs (strict SigV4, the S3 stand-in) on S3_PORT (picked on first call, kept
# across restarts) over $WORK/s3, keys wharftestkey / wharftestsecret.
start_s3() {
  local S3S
  S3S=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
  S3_PORT=${S3_PORT:-$(free_port)}
  S3_DIR=${S3_DIR:-$WORK/s3}
  mkdir -p "$S3_DIR"
  "$S3S" --host 127.0.0.1 --port "$S3_PORT" --access-key wharftestkey --secret-key wharftestsecret \
    "$S3_DIR" >>"$LOGDIR/$SUITE-s3s-fs.log" 2>&1 &
  S3_PID=$!
  PIDS+=("$S3_PID")
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && return 0; sleep 0.1; done
  return 1
}

# make_image NAME SIZE_MB: a one-layer image of random bytes, made without the internet.
make_image() {
  local name=$1 mb=$2 dir
  dir=$(mktemp -d "$WORK/img.XXXX")
  mkdir -p "$dir/rootfs/data"
  head -c $((mb * 1024 * 1024)) /dev/urandom >"$dir/rootfs/data/blob.bin"
  echo "$name" >"$dir/rootfs/data/name.txt"
  tar -C "$dir/rootfs" -cf "$dir/layer.tar" .
  docker import "$dir/layer.tar" "$name" >/dev/null
  rm -rf "$dir"
}

# docker_roundtrip REGISTRY IMAGE CONTEXT WHAT [LOCAL_IMAGE…]: docker builds CONTEXT as
# IMAGE, logs in to REGISTRY as admin, pushes, removes IMAGE (and the LOCAL_IMAGEs its
# Dockerfile started from), pulls it back and checks the pulled image has the built id.
# WHAT names the push in the check lines (e.g. "to the Worker, a 90 MB layer in one PATCH").
docker_roundtrip() {
  local reg=$1 img=$2 ctx=$3 what=$4 id
  shift 4
  check "docker build $img" env DOCKER_BUILDKIT=0 docker build -q -t "$img" "$ctx"
  id=$(docker image inspect -f '{{.Id}}' "$img")
  check "docker login to $reg" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $reg"
  check_output "docker push $what" "digest: sha256:" docker push "$img"
  docker rmi -f "$img" "$@" >/dev/null 2>&1
  check "docker pull $img back" docker pull "$img"
  check "the pulled image has the built id" test "$(docker image inspect -f '{{.Id}}' "$img")" = "$id"
}

# oci_error METHOD URL [CURL_ARGS…]: prints "<HTTP status> <first OCI error code>".
oci_error() {
  local method=$1 url=$2 body
  shift 2
  body=$(mktemp -p "$WORK")
  printf '%s ' "$(curl -s -o "$body" -w '%{http_code}' -X "$method" "$@" "$url")"
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"][0]["code"])' "$body" 2>&1
}

_record() {
  if [ "$1" = 0 ]; then
    PASSED=$((PASSED + 1)); echo "  ok   $2"
  else
    FAILED=$((FAILED + 1)); echo "  FAIL $2"; [ -s "$3" ] && tail -15 "$3" | sed 's/^/       /'
  fi
}

# check NAME CMD…: passes if CMD succeeds.
check() {
  local name=$1; shift
  local out="$WORK/out.$PASSED.$FAILED"
  "$@" >"$out" 2>&1
  _record $? "$name" "$out"
}

# check_fails NAME CMD…: passes if CMD fails.
check_fails() {
  local name=$1; shift
  local out="$WORK/out.$PASSED.$FAILED"
  if "$@" >"$out" 2>&1; then _record 1 "$name (unexpectedly succeeded)" "$out"; else _record 0 "$name" "$out"; fi
}

# check_output NAME TEXT CMD…: passes if CMD's output contains TEXT (exit status ignored).
check_output() {
  local name=$1 text=$2; shift 2
  local out="$WORK/out.$PASSED.$FAILED"
  "$@" >"$out" 2>&1
  if grep -qF -- "$text" "$out"; then _record 0 "$name" "$out"; else _record 1 "$name (no \"$text\")" "$out"; fi
}

finish() {
  echo "$SUITE: $PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ]
}
