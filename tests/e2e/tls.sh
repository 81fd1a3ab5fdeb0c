#!/usr/bin/env bash
# HTTPS: wharf serving TLS with a certificate from a test CA; docker trusts the CA through
# /etc/docker/certs.d/HOST:PORT/ca.crt, skopeo through --cert-dir.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

pki="$WORK/pki"
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=wharf test CA" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$pki/server.key" -out "$pki/server.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$pki/ext.cnf"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
  -extfile "$pki/ext.cnf" -out "$pki/server.crt" >/dev/null 2>&1
check "test CA and server certificate made" openssl verify -CAfile "$pki/ca.crt" "$pki/server.crt"
start_wharf --tls-cert "$pki/server.crt" --tls-key "$pki/server.key"
check_output "wharf answers over HTTPS" "registry/2.0" curl -si --cacert "$pki/ca.crt" "https://$R/v2/"
check_fails "plain HTTP is refused on the TLS port" curl -sf "http://$R/v2/"
check_output "the token realm is https" "realm=\"https://$R/token\"" curl -si --cacert "$pki/ca.crt" "https://$R/v2/"

certs="/etc/docker/certs.d/$R"
mkdir -p "$certs"
cp "$pki/ca.crt" "$certs/ca.crt"
trap 'rm -rf "$certs"; cleanup' EXIT
start_dockerd
make_image e2e-tls:1 3
docker tag e2e-tls:1 "$R/tls/app:v1"
check "docker login over HTTPS" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $R"
check "docker push over HTTPS" docker push "$R/tls/app:v1"
docker rmi -f "$R/tls/app:v1" e2e-tls:1 >/dev/null 2>&1
check "docker pull over HTTPS" docker pull "$R/tls/app:v1"

rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
mkdir -p "$WORK/skopeo-certs"
cp "$pki/ca.crt" "$WORK/skopeo-certs/ca.crt"
check "skopeo copy out over HTTPS (--src-cert-dir)" skopeo copy --src-cert-dir "$WORK/skopeo-certs" \
  --src-creds "admin:$WHARF_ADMIN_PASSWORD" "docker://$R/tls/app:v1" "oci:$WORK/out:v1"
check "skopeo copy in over HTTPS (--dest-cert-dir)" skopeo copy --dest-cert-dir "$WORK/skopeo-certs" \
  --dest-creds "admin:$WHARF_ADMIN_PASSWORD" "oci:$WORK/out:v1" "docker://$R/tls/copy:v1"
rm -rf "$certs"   # containers/image also reads /etc/docker/certs.d
check_fails "skopeo without the CA refuses the certificate" skopeo inspect \
  --creds "admin:$WHARF_ADMIN_PASSWORD" "docker://$R/tls/app:v1"

# Replication to an https registry: a second wharf copies its pushes to this one, verifying
# its certificate with the system's CA certificates (SSL_CERT_FILE here); with no CA that
# signed it, it refuses to send anything.
# start_source NAME CA_FILE: a wharf replicating to https://$R; sets SRC.
start_source() {
  local port
  port=$(free_port)
  SSL_CERT_FILE=$2 WHARF_REPLICA_PASSWORD=$WHARF_ADMIN_PASSWORD RUST_LOG=debug "$WHARF_BIN" serve \
    --listen "127.0.0.1:$port" --data-dir "$WORK/$1-data" --replica-url "https://$R" --replica-username admin \
    >>"$LOGDIR/tls-$1-wharf.log" 2>&1 &
  PIDS+=("$!")
  wait_http "http://127.0.0.1:$port/v2/" 20
  SRC="127.0.0.1:$port"
}
tls_status() {
  local t
  t=$(curl -s --cacert "$pki/ca.crt" -u "admin:$WHARF_ADMIN_PASSWORD" "https://$R/token?service=wharf&scope=repository:$1:pull" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s -o /dev/null -w '%{http_code}' --cacert "$pki/ca.crt" -H "Authorization: Bearer $t" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
    "https://$R/v2/$1/manifests/v1"
}
wait_tls() { for _ in $(seq 1 200); do [ "$(tls_status "$1")" = 200 ] && return 0; sleep 0.1; done; return 1; }
start_source trusted "$pki/ca.crt"
check "skopeo copy to a wharf replicating to https" skopeo copy --dest-tls-verify=false \
  --dest-creds "admin:$WHARF_ADMIN_PASSWORD" "oci:$WORK/out:v1" "docker://$SRC/tls/repl:v1"
check "the https replica gets it (certificate verified by the CA)" wait_tls tls/repl
: >"$WORK/no-ca.pem"
start_source untrusting "$WORK/no-ca.pem"
check "skopeo copy to a wharf that does not trust the CA" skopeo copy --dest-tls-verify=false \
  --dest-creds "admin:$WHARF_ADMIN_PASSWORD" "oci:$WORK/out:v1" "docker://$SRC/tls/refused:v1"
for _ in $(seq 1 100); do grep -q "replication step failed" "$LOGDIR/tls-untrusting-wharf.log" && break; sleep 0.1; done
check "it refuses the unknown certificate" grep -q "replication step failed.*UnknownIssuer" "$LOGDIR/tls-untrusting-wharf.log"
check "and sends nothing" test "$(tls_status tls/refused)" = 404
finish
