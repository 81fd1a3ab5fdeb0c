#!/usr/bin/env bash
# The Cloudflare Worker under workerd (Miniflare 4, as `wrangler dev` runs it) on local R2
# and D1, with real clients:
#   - the metadata (and its optional abilities), document, blob and blob inventory
#     conformance suites inside the Worker, on its D1 and R2
#   - the protocol suite (the same one every runtime passes) against the Worker
#   - docker push/pull of an image with a 90 MB layer sent in one PATCH, skopeo copy out
#   - 300 MB by chunked upload (several R2 objects joined into one at commit)
#   - a body over WHARF_MAX_BODY_BYTES refused with 413 and an OCI error
#   - presigned R2 URLs for pulls (WHARF_R2_PRESIGN_URL), checked by s3s-fs playing R2's S3 API
#   - the cron trigger removing an idle upload and its R2 objects
#   - the cron's jobs (upload cleanup, a retention pass, a collection) that need several
#     invocations, each run inside its 1,000 subrequests, continuing from checkpoints
#   - project policies on D1: an immutable tag's re-push refused by docker, a push over
#     quota refused, retention run through the management API
# Local workerd enforces neither Cloudflare's body limit nor CPU limits.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/worker_lib.sh"

if ! build_worker; then
  _record 1 "the Worker builds" "$LOGDIR/$SUITE-worker-build.log"
  finish; exit 1
fi
# Blobs over 128 MiB are assembled in R2 as a multipart upload (the path of blobs over
# 4.995 GiB), so the 300 MB chunked push takes it; smaller ones are one put.
WVARS=(WHARF_ADMIN_PASSWORD="$WHARF_ADMIN_PASSWORD" WHARF_LOG=debug WHARF_R2_MAX_SINGLE_PUT=$((128 * 1024 * 1024)))
start_worker "${WVARS[@]}" || { _record 1 "the Worker starts" /dev/null; finish; exit 1; }
A=$R

check_output "the metadata, abilities, document, blob and inventory conformance suites pass on D1 and R2" "conformance passed" \
  curl -s -X POST "http://$A/__conformance"
check_output "the Worker asks for a token (401 + Bearer challenge)" 'Bearer realm="http://'"$A"'/token"' \
  curl -si "http://$A/v2/"

token() { # token SCOPE
  curl -s -u "admin:$WHARF_ADMIN_PASSWORD" "http://$A/token?service=wharf&scope=$1" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# ---- the protocol suite ----------------------------------------------------------------------
check_output "the protocol suite passes against the Worker" "test result: ok" \
  env WHARF_TEST_URL="http://$A" WHARF_TEST_USER=admin WHARF_TEST_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  WHARF_TEST_NO_CONTINUE="workerd does not answer Expect: 100-continue" \
  cargo test -q --manifest-path "$ROOT/Cargo.toml" -p wharf-tests --test protocol
check_output "the upload race suite passes against the Worker" "test result: ok" \
  env WHARF_TEST_URL="http://$A" WHARF_TEST_USER=admin WHARF_TEST_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  WHARF_TEST_NO_CONTINUE="workerd does not answer Expect: 100-continue" \
  cargo test -q --manifest-path "$ROOT/Cargo.toml" -p wharf-tests --test upload_races
check_output "the security suite passes against the Worker" "test result: ok" \
  env WHARF_TEST_URL="http://$A" WHARF_TEST_USER=admin WHARF_TEST_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  WHARF_TEST_HOST_REFUSED_BY_RUNTIME="workerd cannot build a URL from an invalid Host and fails the request before the Worker runs" \
  cargo test -q --manifest-path "$ROOT/Cargo.toml" -p wharf-tests --test security
check_output "the throttle suite passes against the Worker (addresses from CF-Connecting-IP)" "test result: ok" \
  env WHARF_TEST_URL="http://$A" WHARF_TEST_USER=admin WHARF_TEST_PASSWORD="$WHARF_ADMIN_PASSWORD" \
  WHARF_TEST_CLIENT_ADDR_HEADER=CF-Connecting-IP \
  cargo test -q --manifest-path "$ROOT/Cargo.toml" -p wharf-tests --test throttle

# ---- docker and skopeo -----------------------------------------------------------------------
start_dockerd
make_image e2e-worker-base:1 2
ctx="$WORK/ctx"
mkdir -p "$ctx"
head -c $((90 * 1024 * 1024)) /dev/urandom >"$ctx/ninety.bin"
date +%s%N >"$ctx/stamp.txt"
printf 'FROM e2e-worker-base:1\nCOPY ninety.bin /ninety.bin\nCOPY stamp.txt /stamp.txt\n' >"$ctx/Dockerfile"
IMG="$A/edge/app:v1"
docker_roundtrip "$A" "$IMG" "$ctx" "to the Worker (a 90 MB layer in one PATCH; pulls streamed from R2)" e2e-worker-base:1
check "skopeo copy out of the Worker (digests verified)" \
  skopeo copy --quiet --src-tls-verify=false --src-creds "admin:$WHARF_ADMIN_PASSWORD" \
  "docker://$IMG" "oci:$WORK/oci-app:v1"
T=$(token "repository:edge/app:pull")
skopeo inspect --raw --tls-verify=false --creds "admin:$WHARF_ADMIN_PASSWORD" "docker://$IMG" >"$WORK/manifest.json"
LAYER=$(python3 -c 'import json,sys; print(max(json.load(open(sys.argv[1]))["layers"], key=lambda l: l["size"])["digest"])' "$WORK/manifest.json")
LAYER_SIZE=$(python3 -c 'import json,sys; print(max(l["size"] for l in json.load(open(sys.argv[1]))["layers"]))' "$WORK/manifest.json")
check "the big layer is over 90 MB" test "$LAYER_SIZE" -gt $((90 * 1024 * 1024))
check_output "a blob HEAD states the layer's size (Content-Length)" "content-length: $LAYER_SIZE" \
  sh -c "curl -sI -H 'Authorization: Bearer $T' http://$A/v2/edge/app/blobs/$LAYER | tr -d '\r' | tr A-Z a-z"
check_output "a ranged blob GET returns 206 and the range" "206 10" \
  curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "Authorization: Bearer $T" -H 'Range: bytes=100-109' \
  "http://$A/v2/edge/app/blobs/$LAYER"

# ---- chunked upload, limits ------------------------------------------------------------------
head -c $((300 * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
check_output "300 MB in 16 MiB chunks, joined in R2 at commit (multipart of streamed ranges), read back" "digest verified" \
  python3 "$here/chunked_push.py" "http://$A" edge/chunked "$WORK/big.bin" $((16 * 1024 * 1024)) admin "$WHARF_ADMIN_PASSWORD"
rm -f "$WORK/big.bin"

T=$(token "repository:edge/limit:pull,push")
LOC=$(curl -s -D - -o /dev/null -X POST -H "Authorization: Bearer $T" "http://$A/v2/edge/limit/blobs/uploads/" \
  | grep -i '^location:' | cut -d' ' -f2- | tr -d '\r')
head -c $((101 * 1024 * 1024)) /dev/urandom >"$WORK/over.bin"
curl -s -o "$WORK/413.json" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $T" \
  -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/over.bin" "http://$A$LOC" >"$WORK/413.code"
rm -f "$WORK/over.bin"
check_output "a 101 MB PATCH gets 413 (WHARF_MAX_BODY_BYTES, the plan's limit)" "413" cat "$WORK/413.code"
check_output "… with an OCI error naming the limit" "104857600" cat "$WORK/413.json"

# ---- the cron trigger ------------------------------------------------------------------------
T=$(token "repository:edge/idle:pull,push")
IDLE=$(curl -s -D - -o /dev/null -X POST -H "Authorization: Bearer $T" "http://$A/v2/edge/idle/blobs/uploads/" \
  | grep -i '^location:' | cut -d' ' -f2- | tr -d '\r')
check_output "an idle upload holds some bytes" "202" \
  curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "Authorization: Bearer $T" -H 'Content-Type: application/octet-stream' \
  --data-binary @"$ctx/stamp.txt" "http://$A$IDLE"
IDLE_ID=${IDLE##*/}; IDLE_ID=${IDLE_ID%%\?*}
check_output "… whose bytes are in R2 under uploads/" "uploads/$IDLE_ID/" curl -s "http://$A/__r2?prefix=uploads/"
# ---- restart: presigned R2 URLs for pulls, and every upload counts as idle ----------------
# Miniflare's R2 has no S3 endpoint, so s3s-fs (strict SigV4) plays R2's S3 API: the blob is
# copied there under its key, and the Worker's presigned URL must be accepted by it.
start_s3
S3=http://127.0.0.1:$S3_PORT
CONFIG=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["digest"])' "$WORK/manifest.json")
S3AUTH="--aws-sigv4 aws:amz:auto:s3 --user wharftestkey:wharftestsecret -H x-amz-content-sha256:UNSIGNED-PAYLOAD"
PT=$(token "repository:edge/app:pull")
curl -sf -o "$WORK/config.blob" -H "Authorization: Bearer $PT" "http://$A/v2/edge/app/blobs/$CONFIG"
check "the config blob is copied to s3s-fs under its R2 key" \
  sh -c "curl -sf $S3AUTH -X PUT $S3/wharf-blobs \
    && curl -sf $S3AUTH -T '$WORK/config.blob' $S3/wharf-blobs/blobs/sha256/${CONFIG#sha256:}"
stop_worker
start_worker "${WVARS[@]}" WHARF_UPLOAD_MAX_AGE_HOURS=0 WHARF_R2_PRESIGN_URL="$S3/wharf-blobs" \
  R2_ACCESS_KEY_ID=wharftestkey R2_SECRET_ACCESS_KEY=wharftestsecret
curl -s -D "$WORK/blob.h" -o /dev/null -H "Authorization: Bearer $PT" "http://$A/v2/edge/app/blobs/$CONFIG"
check_output "with WHARF_R2_PRESIGN_URL a blob GET is a 307" "HTTP/1.1 307" cat "$WORK/blob.h"
PRESIGNED=$(grep -i '^location:' "$WORK/blob.h" | cut -d' ' -f2- | tr -d '\r')
check "… to the R2 S3 endpoint with a SigV4 query signature" \
  sh -c "case '$PRESIGNED' in $S3/wharf-blobs/blobs/sha256/*X-Amz-Signature=*) exit 0;; *) exit 1;; esac"
check_output "… which the S3 API accepts and serves the blob (digest checked)" "${CONFIG#sha256:}" \
  sh -c "curl -sf '$PRESIGNED' | sha256sum"
TAMPERED=$(python3 -c 'import re,sys; u=sys.argv[1]; print(re.sub(r"(X-Amz-Signature=)(.)", lambda m: m.group(1) + ("b" if m.group(2) == "a" else "a"), u))' "$PRESIGNED")
check_output "… and refuses it tampered (403)" "403" curl -s -o /dev/null -w '%{http_code}' "$TAMPERED"
check_output "the scheduled handler runs" "200" \
  curl -s -o /dev/null -w '%{http_code}' "http://$A/cdn-cgi/handler/scheduled?cron=*/10+*+*+*+*"
check_output "the idle upload is gone (404 BLOB_UPLOAD_UNKNOWN)" "404 BLOB_UPLOAD_UNKNOWN" \
  sh -c "curl -s -o $WORK/idle.json -w '%{http_code} ' -H 'Authorization: Bearer $T' 'http://$A$IDLE'; python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"errors\"][0][\"code\"])' $WORK/idle.json"
curl -s "http://$A/__r2?prefix=uploads/" >"$WORK/left.txt"
check "… and so are its R2 objects" sh -c "grep -q ' keys' $WORK/left.txt && ! grep -q 'uploads/$IDLE_ID/' $WORK/left.txt"
check_output "the Worker logged the cleanup" "upload cleanup" cat "$LOGDIR/$SUITE-wharf-worker.log"

# ---- project policies on D1 ------------------------------------------------------------------
cli_as_admin "$A"
for p in wpol wpolq; do check "wharf project create $p (on the Worker)" "$WHARF_BIN" project create "$p"; done
printf '{"rules":[{"tags":{"matches":"v*"}}]}' >"$WORK/imm.json"
check "wharf immutability set wpol" "$WHARF_BIN" immutability set wpol "$WORK/imm.json"
make_image "$A/wpol/app:v1" 0
check_output "docker push wpol/app:v1" "digest: sha256:" docker push "$A/wpol/app:v1"
make_image "$A/wpol/app:v1" 0
check_output "docker push of another image as wpol/app:v1 is refused, naming the rule" \
  "denied: tag v1 of wpol/app is immutable (immutability rule 1" sh -c "docker push $A/wpol/app:v1 2>&1"
check "wharf quota set wpolq 1KiB" "$WHARF_BIN" quota set wpolq 1KiB
make_image "$A/wpolq/app:v1" 1
check_output "docker push over wpolq's quota is refused with usage and limit" \
  "denied: quota exceeded: project wpolq uses 0 of its 1024 bytes" sh -c "docker push $A/wpolq/app:v1 2>&1"
for i in 1 2 3; do make_image "$A/wpol/app:t$i" 0; docker push -q "$A/wpol/app:t$i" >/dev/null 2>&1 || echo "push t$i failed"; done
printf '{"rules":[{"tags":{"matches":"t*"},"keep":{"latest_pushed":1}},{"tags":{"matches":"v*"},"keep":"always"}]}' >"$WORK/ret.json"
check "wharf retention set wpol" "$WHARF_BIN" retention set wpol "$WORK/ret.json"
check_output "wharf retention run wpol deletes the 2 older t* images" "1 repositories: 2 artifacts kept, 2 deleted (2 tags)" \
  "$WHARF_BIN" retention run wpol
docker rmi -f "$A/wpol/app:t1" >/dev/null 2>&1
check_output "wpol/app:t1 is gone" "manifest unknown" sh -c "docker pull $A/wpol/app:t1 2>&1"

# ---- the cron's budget: work that does not fit in one invocation's 1,000 subrequests --------
# A fresh Worker (grace 0, every upload idle): 100 images under a keep-the-latest-1 policy and
# 120 idle uploads. Miniflare enforces no subrequest limit, so the Worker counts its own D1 and
# R2 binding calls and logs them per run: each run must stay inside 1,000, and together they
# must have needed more than one, so the checkpoints carried the jobs across invocations.
stop_worker
mv "$WORK/worker-state" "$WORK/worker-state-before-cron"
start_worker "${WVARS[@]}" WHARF_UPLOAD_MAX_AGE_HOURS=0 WHARF_GC_GRACE_SECS=0 \
  || { _record 1 "a fresh Worker starts" /dev/null; finish; exit 1; }
LOG="$LOGDIR/$SUITE-wharf-worker.log"
LINES0=$(wc -l <"$LOG")
since() { tail -n +$((LINES0 + 1)) "$LOG"; } # the log of this part only
check "wharf project create wcron" "$WHARF_BIN" project create wcron
printf '{"rules":[{"tags":{"matches":"t*"},"keep":{"latest_pushed":1}}]}' >"$WORK/cron-ret.json"
check "wharf retention set wcron (keep the latest pushed t*)" "$WHARF_BIN" retention set wcron "$WORK/cron-ret.json"
check_output "100 images and 120 idle uploads pushed to wcron/app" "pushed 100 images and left 120 uploads idle" \
  python3 "$here/push_many.py" "http://$A" wcron/app 100 120 admin "$WHARF_ADMIN_PASSWORD"
tick() { curl -s -o /dev/null -w '%{http_code}' "http://$A/cdn-cgi/handler/scheduled?cron=*/10+*+*+*+*"; }
for _ in $(seq 1 40); do
  [ "$(tick)" = 200 ] || break
  since | grep -q 'retention step.*finished=true' && break
done
check_output "the retention pass finished over several cron runs, deleting 99 images" "finished=true deleted=99" since
check_output "… more than one step (its budget stopped it)" "finished=false" since
PT=$(token "repository:wcron/app:pull")
mcode() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $PT" \
  -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$A/v2/wcron/app/manifests/$1"; }
check_output "the latest, t99, is kept" "200" mcode t99
check_output "t0 is deleted" "404" mcode t0
check_output "t98 is deleted" "404" mcode t98
check_output "the idle uploads and their R2 objects are gone" "0 keys" curl -s "http://$A/__r2?prefix=uploads/"
# A collection through the API, advanced by the cron from its checkpoint until it finished.
"$WHARF_BIN" gc run --grace 0s --wait 300s >"$WORK/cron-gc.out" 2>&1 &
cli=$!
for _ in $(seq 1 60); do
  kill -0 "$cli" 2>/dev/null || break
  tick >/dev/null
  sleep 0.5
done
wait "$cli"
check "wharf gc run on the Worker returns once the cron finished it" test $? = 0
check_output "… and prints its report" "finished:" cat "$WORK/cron-gc.out"
check_output "R2 holds only the kept image's blobs (its config and the shared layer)" "2 keys" \
  curl -s "http://$A/__r2?prefix=blobs/"
check_output "skopeo copies wcron/app:t99 with its digests verified" "OK" sh -c \
  "skopeo copy --quiet --src-tls-verify=false --src-creds 'admin:$WHARF_ADMIN_PASSWORD' \
    docker://$A/wcron/app:t99 dir:$WORK/t99 && echo OK"
since | grep 'cron run done' | sed -E 's/.*subrequests=([0-9]+).*/\1/' >"$WORK/subrequests.txt"
echo "cron runs: $(wc -l <"$WORK/subrequests.txt"); subrequests each: $(tr '\n' ' ' <"$WORK/subrequests.txt")"
check_output "every cron run stayed inside 1,000 subrequests, and they needed more than one" "within, more than one" \
  awk '{ n = $1 + 0; if (n > max) max = n; sum += n } END { if (max <= 1000 && sum > 1000) print "within, more than one"; else print "max " max ", sum " sum }' \
  "$WORK/subrequests.txt"

finish
