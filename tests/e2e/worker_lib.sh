# Runs the Worker under workerd (Miniflare, the runtime `wrangler dev` uses) with local R2
# and D1. Source after lib.sh. The build is functions/worker/build.sh --conformance.
WORKER_BUILD=${WORKER_BUILD:-$ROOT/functions/worker/build-test}
export WHARF_NODE_MODULES=$ROOT/target/node/node_modules

# build_worker: the test build (functions/worker/build.sh --conformance) into WORKER_BUILD,
# unless tests/run.sh built it already in this run (WHARF_WORKER_BUILT): even with nothing to
# compile, worker-build reruns wasm-bindgen and wasm-opt, about a minute and a half here.
build_worker() {
  [ "${WHARF_WORKER_BUILT:-}" = "$WORKER_BUILD" ] && return 0
  echo "building the Worker (wasm32, worker-build)"
  if ! bash "$ROOT/functions/worker/build.sh" --conformance >"$LOGDIR/$SUITE-worker-build.log" 2>&1; then
    tail -30 "$LOGDIR/$SUITE-worker-build.log"
    return 1
  fi
}

# start_worker [NAME=VALUE…]: the Worker with those variables on WORKER_PORT (picked on the
# first call and kept, like its state in $WORK/worker-state); sets R and WORKER_PID.
start_worker() {
  WORKER_PORT=${WORKER_PORT:-$(free_port)}
  local log="$LOGDIR/$SUITE-wharf-worker.log" i
  : >"$WORK/worker.ready"
  node "$ROOT/tests/e2e/worker_serve.mjs" "$WORKER_BUILD" "$ROOT/functions/worker/migrations" \
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

# worker_cpu: CPU seconds used so far by workerd (the child of Miniflare's node process).
worker_cpu() {
  local c
  for c in $(cat "/proc/$WORKER_PID/task/$WORKER_PID/children" 2>/dev/null); do
    if grep -q '^workerd' "/proc/$c/comm" 2>/dev/null; then
      awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "/proc/$c/stat"
      return
    fi
  done
  echo 0
}

stop_worker() {
  kill "$WORKER_PID" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$WORKER_PID" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$WORKER_PID" 2>/dev/null
}
