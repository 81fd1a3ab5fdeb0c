#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs the Rust tests (unit,
# conformance, fault injection, auth, protocol), builds the core for wasm32, runs every
# end-to-end suite with real clients, and ends with one line: `N passed, N failed`.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
LOGS=$ROOT/target/test-logs
mkdir -p "$LOGS"
export E2E_LOGDIR=$LOGS
# A CI run builds once from cold: incremental state would only cost disk and time.
[ "${CI:-}" = true ] && export CARGO_INCREMENTAL=0
PASS=0
FAIL=0
SUMMARY=()

note() { SUMMARY+=("$(printf '%-28s %s' "$1" "$2")"); }
add() { PASS=$((PASS + $2)); FAIL=$((FAIL + $3)); note "$1" "$2 passed, $3 failed"; }

T0=$SECONDS
LAST=$SECONDS
# Each step's wall time goes to the log (not the summary), to see where a CI run goes.
step() { echo "    ($((SECONDS - LAST)) s; $((SECONDS - T0)) s in all)"; LAST=$SECONDS; echo; echo "=== $*"; }

step "dependencies"
if ! bash tests/install-deps.sh; then
  echo "0 passed, 1 failed"
  exit 1
fi

step "build (the ci profile: release code, no LTO)"
if ! cargo build --profile ci -p wharf -p wharf-lambda-api -p wharf-lambda-jobs >"$LOGS/build.log" 2>&1; then
  tail -40 "$LOGS/build.log"
  echo "0 passed, 1 failed"
  exit 1
fi
export WHARF_BIN=$ROOT/target/ci/wharf LAMBDA_BIN=$ROOT/target/ci/wharf-lambda-api JOBS_BIN=$ROOT/target/ci/wharf-lambda-jobs
# The AWS adapter tests need moto and s3s-fs (installed above): missing ones fail, not skip.
export WHARF_REQUIRE_TOOLS=1

step "cargo test --workspace"
cargo test --workspace --no-fail-fast >"$LOGS/cargo-test.log" 2>&1
rc=$?
p=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$LOGS/cargo-test.log")
f=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$LOGS/cargo-test.log")
p=${p:-0}; f=${f:-0}
if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; tail -40 "$LOGS/cargo-test.log"; fi
grep -E '^test .* FAILED$|panicked' "$LOGS/cargo-test.log" | head -20
add "cargo test" "$p" "$f"

step "core for wasm32-unknown-unknown"
if bash tests/wasm-check.sh >"$LOGS/wasm.log" 2>&1; then add "wasm32 build of the core" 1 0; else tail -20 "$LOGS/wasm.log"; add "wasm32 build of the core" 0 1; fi

step "build the Worker (wasm32, for the aws and worker suites)"
# Here rather than inside a suite, so a cold build does not count against a suite's timeout.
if bash functions/worker/build.sh --conformance >"$LOGS/worker-build.log" 2>&1; then
  export WHARF_WORKER_BUILT=$ROOT/functions/worker/build-test   # the suites skip their build
  add "Worker build" 1 0
else
  tail -30 "$LOGS/worker-build.log"; add "Worker build" 0 1
fi

for suite in docker gc policies skopeo podman oras tls auth replication replication_rules regions aws aws_gc replication_aws worker; do
  step "e2e: $suite"
  out="$LOGS/e2e-$suite.out"
  timeout 900 bash "tests/e2e/$suite.sh" >"$out" 2>&1
  rc=$?
  grep -E '^  FAIL' -A12 "$out" | head -60
  line=$(grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
  p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); p=${p:-0}
  f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/'); f=${f:-0}
  if { [ "$rc" != 0 ] || [ -z "$line" ]; } && [ "$f" = 0 ]; then f=1; tail -30 "$out"; fi
  add "e2e $suite" "$p" "$f"
done

step "no secrets in any server log of this run"
# Every wharf log of the run (debug level in the e2e suites): no password hash, private key
# or token may appear. The auth suite also greps for the exact passwords and secrets it used.
leaks=$(grep -lE '\$argon2|BEGIN [A-Z ]*PRIVATE KEY|eyJ[A-Za-z0-9_-]{10,}\.eyJ' "$LOGS"/*wharf*.log 2>/dev/null)
logs=$(ls "$LOGS"/*wharf*.log 2>/dev/null | wc -l)
if [ -z "$leaks" ] && [ "$logs" -gt 0 ]; then
  add "secrets absent from $logs logs" 1 0
else
  echo "secrets found in: ${leaks:-no logs were written}"
  add "secrets absent from logs" 0 1
fi

step "summary"
printf '%s\n' "${SUMMARY[@]}"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
