# Runs the Worker under workerd (Miniflare, the runtime `wrangler dev` uses) with local R2
# and D1. Source after lib.sh. The build is functions/worker/build.sh --conformance.
WORKER_BUILD=${WORKER_BUILD:-$ROOT/functions/worker/build-test}
export WHARF_NODE_MODULES=$ROOT/target/node/node_modules

# start_worker [NAME=VALUE…]: the Worker with those variables on WORKER_PORT (picked on the
# first call and kept, like its state in $WORK/worker-state); sets R and WORKER_PID.
start_worker() {
  WORKER_PORT=${WORKER_PORT:-$(free_port)}
  local log="$LOGDIR/$SUITE-wharf-worker.log" i
  : >"$WORK/worker.ready"
  node "$ROOT/tests/e2e/worker_serve.mjs" "$WORKER_BUILD" "$ROOT/functions/worker/migrations/0001_init.sql" \
    "$WORK/worker-state" "$WORKER_PORT" "$@" >"$WORK/worker.ready" 2>>"$log" &
  WORKER_PID=$!
  PIDS+=("$WORKER_PID")
  R="127.0.0.1:$WORKER_PORT"
  for i in $(seq 1 300); do
    grep -q '^ready' "$WORK/worker.ready" && return 0
    kill -0 "$WORKER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "the Worker did not start" >&2
  tail -20 "$log" >&2
  return 1
}

stop_worker() {
  kill "$WORKER_PID" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$WORKER_PID" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$WORKER_PID" 2>/dev/null
}
