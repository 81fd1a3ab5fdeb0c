# The AWS stand-ins and the Lambda launcher, shared by tests/e2e/aws.sh and bench/aws.sh.
# Source after lib.sh. s3s-fs (strict SigV4) plays S3, moto plays DynamoDB, and `cargo
# lambda watch --only-lambda-apis` provides the Runtime API and the function-URL emulator
# that prebuilt instances of the function poll.
LAMBDA_BIN=${LAMBDA_BIN:-$ROOT/target/release/wharf-lambda-api}
CARGO_LAMBDA=$(command -v cargo-lambda) || { echo "cargo-lambda is missing (pip install cargo-lambda)"; exit 1; }
for t in s3s-fs moto_server; do
  command -v "$t" >/dev/null || [ -x "$HOME/.cargo/bin/$t" ] || { echo "$t is missing"; exit 1; }
done

# start_moto: moto's DynamoDB on MOTO_PORT.
start_moto() {
  MOTO_PORT=$(free_port)
  # One request at a time, so conditional writes are atomic as on DynamoDB (see there).
  python3 "$ROOT/infra/aws/src/moto_serial.py" 127.0.0.1 "$MOTO_PORT" >"$LOGDIR/$SUITE-moto.log" 2>&1 &
  MOTO_PID=$!
  PIDS+=("$MOTO_PID")
  wait_http "http://127.0.0.1:$MOTO_PORT/" 30
}

# start_emulator NAME [PACKAGE]: the Runtime API and function-URL emulator (of the API
# function, or PACKAGE's); sets NAME_PORT.
start_emulator() {
  local name=$1 pkg=${2:-wharf-lambda-api} port log i
  port=$(free_port)
  log="$LOGDIR/$SUITE-$name-emulator.log"
  (cd "$ROOT" && exec "$CARGO_LAMBDA" lambda watch --only-lambda-apis -A 127.0.0.1 -P "$port" \
    -p "$pkg" --bin "$pkg") >"$log" 2>&1 &
  PIDS+=("$!")
  for i in $(seq 1 300); do grep -q "starting Runtime server" "$log" 2>/dev/null && break; sleep 0.1; done
  eval "${name}_PORT=$port"
}

# start_instance NAME [VAR=VALUE…]: one instance of the prebuilt function ($INSTANCE_BIN,
# default the API's) polling NAME's emulator, as a 128 MB Lambda; sets INSTANCE_PID.
start_instance() {
  local name=$1 port
  shift
  port=$(eval echo "\$${name}_PORT")
  env "$@" AWS_LAMBDA_FUNCTION_NAME=_ AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 \
    AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt" RUST_LOG=${LAMBDA_RUST_LOG:-info,wharf_core=debug} \
    "${INSTANCE_BIN:-$LAMBDA_BIN}" >>"$LOGDIR/$SUITE-$name-wharf-lambda.log" 2>&1 &
  INSTANCE_PID=$!
  PIDS+=("$INSTANCE_PID")
}

# start_lambda NAME [VAR=VALUE…]: the emulator and two instances (Lambda serves concurrent
# requests from separate instances; two prove nothing is kept between requests). Sets
# NAME_PORT, NAME_PIDS.
start_lambda() {
  local name=$1 pids=() i
  shift
  start_emulator "$name"
  for i in 1 2; do
    start_instance "$name" "$@"
    pids+=("$INSTANCE_PID")
  done
  eval "${name}_PIDS=\"${pids[*]}\""
  wait_http "http://127.0.0.1:$(eval echo "\$${name}_PORT")/v2/" 30
}
