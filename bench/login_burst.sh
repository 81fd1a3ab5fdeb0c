#!/usr/bin/env bash
# Manifest GET latency during a burst of logins (Argon2 verifications), on two wharf binaries:
# "before" (Argon2 on the async worker threads) and "after" (the current tree: Argon2 on the
# blocking pool, at most cores − 1 at once). Both servers run at once on 127.0.0.1 (free ports
# picked at run time); each measurement runs against one while the other idles, interleaved
# round by round, so the machine's noise falls on both alike.
#
#   bash bench/login_burst.sh           print the report (markdown) on stdout, progress on stderr
#   bash bench/login_burst.sh --write   also put it into BENCHMARKS.md, between the logins markers
#   bash bench/login_burst.sh --build   cargo build --release -p wharf first
#
# Per round and binary: a baseline (GETs, no logins), then GETs during LOGIN_CONNS closed-loop
# logins (GET /token with Basic auth of real users, Argon2id hashes: one user per connection,
# created through /api/v1/users, since the current tree's login throttle counts a login in
# flight against its (user, address) pair until it succeeds, and answers 429 beyond 5).
# Environment: WHARF_BEFORE (/tmp/wharf-727e058), WHARF_AFTER (target/release/wharf),
# LOGIN_CONNS (20), LOGIN_DURATION (10 s counted, after 1 s of warm-up), LOGIN_ROUNDS (3),
# GET_CONNS (2), GET_INTERVAL_MS (2: each GET connection sends one GET every 2 ms).
# A report, not a test: the exit status says whether the run completed, never how fast it was.
set -euo pipefail
cd "$(dirname "$0")/.."

write=0 build=0
for a in "$@"; do
  case "$a" in
    --write) write=1 ;;
    --build) build=1 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

before_bin=${WHARF_BEFORE:-/tmp/wharf-727e058}
after_src=${WHARF_AFTER:-target/release/wharf}
conns=${LOGIN_CONNS:-20}
duration=${LOGIN_DURATION:-10}
rounds=${LOGIN_ROUNDS:-3}
get_conns=${GET_CONNS:-2}
get_interval=${GET_INTERVAL_MS:-2}
password=bench-admin-password-1
repo=bench/app
log() { echo "[login-burst] $*" >&2; }

for t in curl python3 sha256sum; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 2; }
done
[ -x "$before_bin" ] || { echo "no 'before' binary at $before_bin (WHARF_BEFORE)" >&2; exit 2; }
if [ "$build" = 1 ] || [ ! -x "$after_src" ]; then
  log "cargo build --release -p wharf"
  cargo build --release -p wharf >&2
fi
log "cargo build --release -p wharf-bench"
cargo build --release -q -p wharf-bench --bin login-burst >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/wharf-login-burst.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# The shared target/ may be rebuilt by someone else during the run: measure a copy.
cp "$after_src" "$work/wharf-after"
cp target/release/login-burst "$work/login-burst"
after_bin=$work/wharf-after
tree="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo '+changes')"
after_built=$(date -u -r "$after_src" '+%Y-%m-%d %H:%M UTC')

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME BIN: sets port_NAME and pid_NAME.
start() {
  local name=$1 bin=$2 port
  port=$(free_port)
  mkdir -p "$work/$name"
  WHARF_ADMIN_PASSWORD=$password RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" \
    --data-dir "$work/$name" --auth on --token-ttl-secs 3600 >"$work/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local i
  for i in $(seq 1 3000); do
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; echo "$name exited" >&2; exit 1; }
    case $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true) in
      200 | 401) break ;;
    esac
    [ "$i" = 3000 ] && { echo "$name did not answer within 30 s" >&2; exit 1; }
    sleep 0.01
  done
  printf -v "port_$name" %s "$port"
  printf -v "pid_$name" %s "$pid"
}

token() { # PORT SCOPE
  curl -sf -u "admin:$password" "http://127.0.0.1:$1/token?service=wharf&scope=$2" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# seed PORT: a config blob and an OCI manifest tagged v1; prints the pull token.
seed() {
  local port=$1 base="http://127.0.0.1:$1" tok cfg digest loc manifest
  tok=$(token "$port" "repository:$repo:pull,push")
  cfg=$work/config.json
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$cfg"
  digest=sha256:$(sha256sum "$cfg" | cut -d' ' -f1)
  loc=$(curl -sf -X POST -H "Authorization: Bearer $tok" -D - -o /dev/null "$base/v2/$repo/blobs/uploads/" |
    tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case $loc in http*) ;; *) loc=$base$loc ;; esac
  case $loc in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
  curl -sf -X PUT -H "Authorization: Bearer $tok" -H 'Content-Type: application/octet-stream' \
    --data-binary "@$cfg" "$loc" -o /dev/null
  manifest=$work/manifest.json
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[]}' \
    "$digest" "$(stat -c %s "$cfg")" >"$manifest"
  curl -sf -X PUT -H "Authorization: Bearer $tok" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$manifest" "$base/v2/$repo/manifests/v1" -o /dev/null
  local st
  st=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$base/v2/$repo/manifests/v1")
  [ "$st" = 200 ] || { echo "seeded manifest GET answered $st" >&2; exit 1; }
  local i
  for i in $(seq -w 1 "$conns"); do
    curl -sf -u "admin:$password" -H 'Content-Type: application/json' \
      -d "{\"username\":\"load$i\",\"password\":\"load-password-$i\"}" \
      "$base/api/v1/users" -o /dev/null || { echo "creating user load$i failed" >&2; exit 1; }
  done
  token "$port" "repository:$repo:pull"
}

loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
start before "$before_bin"
start after "$after_bin"
tok_before=$(seed "$port_before")
tok_after=$(seed "$port_after")
log "before: $before_bin on :$port_before (pid $pid_before); after: tree $tree on :$port_after (pid $pid_after)"

cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

basics=()
for i in $(seq -w 1 "$conns"); do basics+=(--basic "load$i:load-password-$i"); done
results=$work/results.jsonl
for r in $(seq 1 "$rounds"); do
  for name in before after; do
    for n in 0 "$conns"; do
      port_var=port_$name pid_var=pid_$name tok_var=tok_$name
      log "round $r: $name, $n concurrent logins, ${duration} s"
      c0=$(cpu_ticks "${!pid_var}")
      out=$("$work/login-burst" "${basics[@]}" --addr "127.0.0.1:${!port_var}" --token "${!tok_var}" \
        --get-path "/v2/$repo/manifests/v1" --login-path "/token?service=wharf&scope=repository:$repo:pull" \
        --logins "$n" --get-conns "$get_conns" \
        --get-interval-ms "$get_interval" --duration "$duration" --warmup 1)
      c1=$(cpu_ticks "${!pid_var}")
      threads=$(awk '/^Threads:/ { print $2 }' "/proc/${!pid_var}/status")
      echo "{\"round\": $r, \"binary\": \"$name\", \"logins\": $n, \"server_cpu_ticks\": $((c1 - c0)), \"threads_after\": $threads, \"run\": $out}" >>"$results"
    done
  done
done
mkdir -p target
cp "$results" target/login-burst-results.jsonl

report=$(
  MACHINE="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores" \
  LOADAVG=$loadavg TREE=$tree AFTER_BUILT=$after_built BEFORE_BIN=$before_bin CONNS=$conns DURATION=$duration \
  GET_CONNS=$get_conns GET_INTERVAL=$get_interval CLK=$(getconf CLK_TCK) \
  python3 bench/login_burst_report.py "$results"
)
echo "$report"
if [ "$write" = 1 ]; then
  python3 bench/write_section.py logins "$report"
  log "written to BENCHMARKS.md"
fi
