#!/usr/bin/env bash
# Harbor-style replication rules between `wharf serve` and CNCF Distribution (Debian's
# docker-registry, one instance with htpasswd basic auth, one plain), checked with skopeo:
# a push rule with repository and tag filters and a namespace rewrite (a second run finds
# everything present), a pull rule, override off and on, delete sync, a destination that is
# down (retrying, then succeeded; at most one active run of a rule; 5 attempts, then
# failed), an on-push trigger, the sealed remote password surviving a restart and never
# showing in the data dir, the log or an answer, non-admins and bad input refused, and the
# `wharf replication` CLI. Budget: about two minutes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
CREDS="admin:$WHARF_ADMIN_PASSWORD"
rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb

check "docker-registry is installed (tests/install-deps.sh)" command -v docker-registry
[ "$FAILED" = 0 ] || { finish; exit 1; }

# ---- helpers ---------------------------------------------------------------------------
DIST_USER=dist-u
DIST_PW="dist-pw-$(random_word)"
WRONG_PW="wrong-pw-$(random_word)"

# bcrypt_hash PASSWORD: a bcrypt hash (cost 4: Distribution checks it on every request).
bcrypt_hash() {
  if command -v htpasswd >/dev/null; then
    htpasswd -nbBC 4 x "$1" | head -1 | cut -d: -f2-
  elif python3 -c 'import bcrypt' 2>/dev/null; then
    python3 -c 'import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())' "$1"
  else
    python3 -W ignore -c 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))' "$1"
  fi
}

# start_dist NAME PORT [auth]: docker-registry on 127.0.0.1:PORT, storage in $WORK/NAME,
# deletes enabled; with "auth", htpasswd basic auth for $DIST_USER:$DIST_PW. Sets DIST_PID.
start_dist() {
  local name=$1 port=$2 auth=${3:-}
  cat >"$WORK/$name.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $WORK/$name
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: $(random_word)
EOF
  if [ "$auth" = auth ]; then
    echo "$DIST_USER:$(bcrypt_hash "$DIST_PW")" >"$WORK/$name.htpasswd"
    printf 'auth:\n  htpasswd:\n    realm: %s\n    path: %s\n' "$name" "$WORK/$name.htpasswd" >>"$WORK/$name.yml"
  fi
  docker-registry serve "$WORK/$name.yml" >>"$LOGDIR/$SUITE-$name.log" 2>&1 &
  DIST_PID=$!
  PIDS+=("$DIST_PID")
  wait_http "http://127.0.0.1:$port/v2/" 20
}

# A one-image OCI layout of random bytes (ref "img"), made offline; prints its digest.
cat >"$WORK/mkimg.py" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out = sys.argv[1]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def put(data, media_type):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": f"sha256:{d}", "size": len(data)}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    payload = os.urandom(64 * 1024)
    info = tarfile.TarInfo("data.bin")
    info.size = len(payload)
    t.addfile(info, io.BytesIO(payload))
diff_id = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": put(config, "application/vnd.oci.image.config.v1+json"),
    "layers": [put(gzip.compress(buf.getvalue(), mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")],
}).encode()
desc = put(manifest, "application/vnd.oci.image.manifest.v1+json")
desc["annotations"] = {"org.opencontainers.image.ref.name": "img"}
with open(f"{out}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [desc]}, f)
with open(f"{out}/oci-layout", "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(desc["digest"])
PY
mkimg() { python3 "$WORK/mkimg.py" "$WORK/img-$1"; }
# to_wharf IMG REF / to_dist IMG REF: skopeo copies layout IMG there as REF.
to_wharf() { skopeo copy -q --dest-tls-verify=false --dest-creds "$CREDS" "oci:$WORK/img-$1:img" "docker://$R/$2"; }
to_dist() { skopeo copy -q --dest-tls-verify=false --dest-creds "$DIST_USER:$DIST_PW" "oci:$WORK/img-$1:img" "docker://$D/$2"; }

# reg_digest REGISTRY CREDS REF: the digest of the manifest REGISTRY serves for REF
# (skopeo inspect --raw), or nothing.
reg_digest() {
  local f
  f=$(mktemp -p "$WORK")
  skopeo inspect --raw --tls-verify=false ${2:+--creds "$2"} "docker://$1/$3" >"$f" 2>/dev/null \
    && echo "sha256:$(sha256sum <"$f" | cut -d' ' -f1)"
}
wharf_digest() { reg_digest "$R" "$CREDS" "$1"; }
dist_digest() { reg_digest "$D" "$DIST_USER:$DIST_PW" "$1"; }
later_digest() { reg_digest "$D2" "" "$1"; }
# has DIGEST FN REF: passes if FN (one of the *_digest) gives DIGEST for REF ("": absent).
has() {
  local got
  got=$("$2" "$3")
  echo "$2 $3: '$got', want '$1'"
  [ "$got" = "$1" ]
}
# wait_has DIGEST FN REF SECONDS: until it does.
wait_has() {
  local i
  for i in $(seq 1 $(($4 * 2))); do
    [ "$("$2" "$3")" = "$1" ] && return 0
    sleep 0.5
  done
  has "$1" "$2" "$3"
}

LAST=$WORK/last.json
# call [-u USER:PASSWORD | -n] METHOD PATH [JSON]: a management API request (as admin,
# unless -u, or -n for no credentials); prints the HTTP status, leaves the body in $LAST.
call() {
  local auth=(-u "$CREDS") data=()
  case $1 in
    -u) auth=(-u "$2"); shift 2 ;;
    -n) auth=(); shift ;;
  esac
  local method=$1 path=$2
  [ $# -ge 3 ] && data=(-H 'Content-Type: application/json' --data-binary "$3")
  : >"$LAST"
  curl -s -o "$LAST" -w '%{http_code}' --max-time 30 "${auth[@]}" -X "$method" "${data[@]}" \
    "http://$R/api/v1/$path"
}
# expect STATUSES CALL-ARGS…: passes if the status is one of STATUSES (e.g. "400|404").
expect() {
  local want=$1 got
  shift
  got=$(call "$@")
  echo "HTTP $got: $(head -c 1000 "$LAST")"
  [[ $got =~ ^($want)$ ]]
}
# jt EXPR FILE [ARGS…]: passes if the Python expression EXPR holds of the JSON in FILE
# (`j`; the ARGS are `a`).
jt() {
  python3 - "$@" <<'PY'
import json, sys
expr, path, a = sys.argv[1], sys.argv[2], sys.argv[3:]
j = None
try:
    j = json.load(open(path))
    ok = bool(eval(expr))
except Exception as e:
    ok = False
    print(f"{type(e).__name__}: {e}")
if not ok:
    print("not true:", expr, a)
    print(json.dumps(j, indent=1)[:3000] if j is not None else open(path).read()[:3000])
sys.exit(0 if ok else 1)
PY
}
# jv EXPR FILE: prints EXPR's value.
jv() { python3 -c 'import json,sys; j=json.load(open(sys.argv[2])); v=eval(sys.argv[1]); print("" if v is None else v)' "$1" "$2" 2>/dev/null; }
# expect_json STATUSES EXPR CALL-ARGS…: the status is one of STATUSES and EXPR holds of the body.
expect_json() {
  local want=$1 expr=$2
  shift 2
  expect "$want" "$@" && jt "$expr" "$LAST"
}

EXEC=""
# start_exec RULE: POSTs an execution (202 expected); its id in EXEC.
start_exec() {
  local code
  code=$(call POST "replication/rules/$1/executions" '{}')
  echo "POST executions of $1 -> HTTP $code: $(head -c 1000 "$LAST")"
  EXEC=$(jv 'j["id"]' "$LAST")
  [ "$code" = 202 ] && [ -n "$EXEC" ]
}
# wait_exec RULE ID STATUSES SECONDS: until the execution's status is one of STATUSES
# (e.g. "succeeded|failed"); its JSON in $WORK/exec.json.
wait_exec() {
  local i st=""
  for i in $(seq 1 $(($4 * 4))); do
    if [ "$(call GET "replication/rules/$1/executions/$2")" = 200 ]; then
      cp "$LAST" "$WORK/exec.json"
      st=$(jv 'j["status"]' "$WORK/exec.json")
      [[ $st =~ ^($3)$ ]] && return 0
    fi
    sleep 0.25
  done
  echo "execution $2 of rule $1 is '$st' after $4 s, not $3"
  head -c 3000 "$WORK/exec.json" 2>/dev/null
  return 1
}
# newest_first RULE ID… : the rule's history holds exactly these executions, in this order.
newest_first() {
  local rule=$1
  shift
  expect 200 GET "replication/rules/$rule/executions" &&
    jt '[str(e["id"]) for e in j["executions"]]==a' "$LAST" "$@"
}
# run_rule RULE: an execution, to its end (60 s at most); its JSON in $WORK/exec.json.
run_rule() { start_exec "$1" && wait_exec "$1" "$EXEC" 'succeeded|failed' 60; }
EX=$WORK/exec.json
succeeded() { jt 'j["status"]=="succeeded" and j["finished_ms"] and not j.get("error")' "$EX"; }
# item_is OUTCOME REPO TAG: the execution in $EX has an item for REPO:TAG with OUTCOME.
item_is() {
  jt 'any(i.get("repository")==a[1] and i.get("tag")==a[2] and i.get("outcome")==a[0] for i in j.get("items") or [])' \
    "$EX" "$1" "$2" "$3"
}
# not_copied REPO TAG: no item of the execution in $EX copied REPO:TAG.
not_copied() {
  jt 'not any(i.get("repository")==a[0] and i.get("tag")==a[1] and i.get("outcome")=="copied" for i in j.get("items") or [])' \
    "$EX" "$1" "$2"
}

# rule_json NAME DIRECTION REMOTE REPOS TAGS NAMESPACE TRIGGER DELETE_SYNC OVERRIDE: a rule's
# body (REPOS and TAGS are JSON lists; NAMESPACE "" for none; TRIGGER a JSON object).
rule_json() {
  local ns=""
  [ -n "$6" ] && ns="\"destination_namespace\":\"$6\","
  printf '{"name":"%s","direction":"%s","remote":"%s","repositories":%s,"tags":%s,%s"trigger":%s,"delete_sync":%s,"override":%s,"enabled":true}' \
    "$1" "$2" "$3" "$4" "$5" "$ns" "$7" "$8" "$9"
}
MANUAL='{"kind":"manual"}'
LIB_REPOS='[{"matches":"lib/**"},{"excludes":"lib/secret*"}]'
V_TAGS='[{"matches":"v*"},{"excludes":"*-dev"}]'
# to_dist_rule OVERRIDE DELETE_SYNC
to_dist_rule() { rule_json to-dist push dist "$LIB_REPOS" "$V_TAGS" mirror "$MANUAL" "$2" "$1"; }

# ---- servers and images ----------------------------------------------------------------
D_PORT=$(free_port)
check "docker-registry with htpasswd basic auth starts" start_dist dist "$D_PORT" auth
D=127.0.0.1:$D_PORT
check "dist refuses requests without credentials (401)" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "http://$D/v2/")" = 401
check "dist takes its user's password" \
  test "$(curl -s -o /dev/null -w '%{http_code}' -u "$DIST_USER:$DIST_PW" "http://$D/v2/")" = 200

unset WHARF_SECRET_KEY # serve generates <data-dir>/keys/secret.key
export WHARF_REPLICATION_RETRY_SECS=1
start_wharf
cli_as_admin "$R"
for p in lib other; do check "POST projects $p: 201" expect 201 POST projects "{\"name\":\"$p\"}"; done

APP1=$(mkimg app1)
APPDEV=$(mkimg appdev)
SECRET=$(mkimg secret)
OTHER=$(mkimg other)
MULTI=$(python3 "$here/make_index.py" "$WORK/img-multi")
check "skopeo copy lib/app:v1 to wharf" to_wharf app1 lib/app:v1
check "skopeo copy lib/app:v2-dev to wharf" to_wharf appdev lib/app:v2-dev
check "skopeo copy lib/secret:v1 to wharf" to_wharf secret lib/secret:v1
check "skopeo copy other/x:v1 to wharf" to_wharf other other/x:v1
check "skopeo copy --all a 2-platform index to wharf as lib/multi:v1" \
  skopeo copy -q --all --dest-tls-verify=false --dest-creds "$CREDS" "oci:$WORK/img-multi:multi" "docker://$R/lib/multi:v1"
check "wharf serves lib/app:v1 at its digest" has "$APP1" wharf_digest lib/app:v1
check "wharf serves lib/multi:v1 at the index's digest" has "$MULTI" wharf_digest lib/multi:v1

# ---- remotes ---------------------------------------------------------------------------
check "POST replication/registries dist (basic auth): 201" expect 201 POST replication/registries \
  '{"name":"dist","url":"http://'"$D"'","username":"'"$DIST_USER"'","password":"'"$DIST_PW"'"}'
cp "$LAST" "$WORK/reg-dist.json"
check "the answer has has_password true, the user name, times, and no password" \
  jt 'j["name"]=="dist" and j["url"]==a[0] and j["username"]==a[1] and j["has_password"] is True and "password" not in j and j["created_ms"]>0 and j["updated_ms"]>0' \
  "$WORK/reg-dist.json" "http://$D" "$DIST_USER"
check "the password is nowhere in the answer" bash -c "! grep -qF -- '$DIST_PW' '$WORK/reg-dist.json'"
check "the generated seal key is in the data dir (keys/secret.key)" test -s "$WHARF_DATA/keys/secret.key"
check_output "the same name again: 409 CONFLICT" "409 CONFLICT" \
  oci_error POST "http://$R/api/v1/replication/registries" -u "$CREDS" -H 'Content-Type: application/json' \
  --data-binary '{"name":"dist","url":"http://'"$D"'"}'
check "GET replication/registries lists dist, without its password" expect_json 200 \
  'any(r["name"]=="dist" and r["has_password"] is True and "password" not in r for r in j["registries"])' \
  GET replication/registries
check "(the list carries no password: $DIST_PW not in it)" bash -c "! grep -qF -- '$DIST_PW' '$LAST'"

# ---- 1. push rule wharf → dist: filters, namespace rewrite, then everything present -----
check "POST replication/rules to-dist (lib/** but lib/secret*, v* but *-dev, into mirror): 201" \
  expect_json 201 'j["name"]=="to-dist" and j["direction"]=="push" and j["destination_namespace"]=="mirror"' \
  POST replication/rules "$(to_dist_rule true false)"
check "GET replication/rules lists it" expect_json 200 'any(r["name"]=="to-dist" for r in j["rules"])' GET replication/rules
check "run to-dist through the API: the execution ends" run_rule to-dist
cp "$EX" "$WORK/exec-first.json"
FIRST_ID=$EXEC
check "it succeeded, trigger manual" jt 'j["status"]=="succeeded" and j["trigger"]=="manual" and j["rule"]=="to-dist" and j["started_ms"]<=j["finished_ms"]' "$EX"
check "its items: lib/app:v1 copied" item_is copied lib/app v1
check "its items: lib/multi:v1 (an index) copied" item_is copied lib/multi v1
check "the item's destination is mirror/app" \
  jt 'any(i.get("repository")=="lib/app" and i.get("tag")=="v1" and "mirror/app" in (i.get("destination") or "") for i in j["items"])' "$EX"
check "lib/app:v2-dev (excluded tag) not copied" not_copied lib/app v2-dev
check "lib/secret:v1 (excluded repository) not copied" not_copied lib/secret v1
check "other/x:v1 (not under lib/) not copied" not_copied other/x v1
check "totals: 2 or more copied, blobs and bytes counted, nothing failed" \
  jt 'j["totals"]["copied"]>=2 and j["totals"]["blobs_copied"]>=2 and j["totals"]["bytes_copied"]>60000 and j["totals"]["failed"]==0' "$EX"
check "skopeo inspect --creds at dist: mirror/app:v1" \
  skopeo inspect --tls-verify=false --creds "$DIST_USER:$DIST_PW" "docker://$D/mirror/app:v1"
check "dist's mirror/app:v1 has wharf's digest" has "$APP1" dist_digest mirror/app:v1
check "dist's mirror/multi:v1 is the index, same digest" has "$MULTI" dist_digest mirror/multi:v1
check "skopeo copy --all of mirror/multi:v1 out of dist (every platform there)" \
  skopeo copy -q --all --src-tls-verify=false --src-creds "$DIST_USER:$DIST_PW" "docker://$D/mirror/multi:v1" "oci:$WORK/multi-from-dist:multi"
check "dist has no mirror/app:v2-dev" has "" dist_digest mirror/app:v2-dev
check "dist has no mirror/secret:v1" has "" dist_digest mirror/secret:v1
check "dist has no other/x:v1" has "" dist_digest other/x:v1
check "dist has no mirror/x:v1" has "" dist_digest mirror/x:v1
check "dist has no lib/app:v1 (the namespace was rewritten)" has "" dist_digest lib/app:v1
check "run to-dist again" run_rule to-dist
check "it succeeded" succeeded
check "lib/app:v1 is present this time" item_is present lib/app v1
check "nothing copied: totals.copied 0, no blob" jt 'j["totals"]["copied"]==0 and j["totals"]["blobs_copied"]==0 and j["totals"]["present"]>=2' "$EX"
check "the history lists both runs, newest first" newest_first to-dist "$EXEC" "$FIRST_ID"

# ---- 2. pull rule dist → wharf, into namespace lib ---------------------------------------
ALPINE=$(mkimg alpine)
JQ=$(mkimg jq)
check "skopeo copy alpine:3 to dist (basic auth)" to_dist alpine alpine:3
check "skopeo copy tools/jq:1.7 to dist" to_dist jq tools/jq:1.7
check "POST rule from-dist (pull, all but mirror/**, into lib): 201" expect 201 POST replication/rules \
  "$(rule_json from-dist pull dist '[{"excludes":"mirror/**"}]' '[]' lib "$MANUAL" false true)"
check "run from-dist" run_rule from-dist
check "it succeeded" succeeded
check "its items: alpine:3 copied" item_is copied alpine 3
check "its items: tools/jq:1.7 copied" item_is copied tools/jq 1.7
check "no item comes from mirror/ (excluded)" \
  jt 'not any((i.get("repository") or "").startswith("mirror/") for i in j["items"])' "$EX"
check "skopeo copy lib/alpine:3 out of wharf" \
  skopeo copy -q --src-tls-verify=false --src-creds "$CREDS" "docker://$R/lib/alpine:3" "oci:$WORK/alpine-from-wharf:3"
check "wharf's lib/alpine:3 has dist's digest" has "$(dist_digest alpine:3)" wharf_digest lib/alpine:3
check "(which is the pushed image's)" has "$ALPINE" wharf_digest lib/alpine:3
check "wharf's lib/jq:1.7 (tools/ rewritten to lib/) has dist's digest" has "$JQ" wharf_digest lib/jq:1.7
check "wharf has no tools/jq:1.7" has "" wharf_digest tools/jq:1.7

# ---- a remote's update without a password keeps the old one ------------------------------
check "PUT replication/registries/dist without a password: 200, has_password still" expect_json 200 \
  'j["has_password"] is True and j["updated_ms"]>=j["created_ms"]' \
  PUT replication/registries/dist '{"name":"dist","url":"http://'"$D"'","username":"'"$DIST_USER"'"}'

# ---- 3. override off, then on -------------------------------------------------------------
FOREIGN=$(mkimg foreign)
check "skopeo copy another image over mirror/app:v1 at dist" to_dist foreign mirror/app:v1
check "dist serves the other image" has "$FOREIGN" dist_digest mirror/app:v1
check "PUT rule to-dist with override false: 200" expect 200 PUT replication/rules/to-dist "$(to_dist_rule false false)"
check "GET rule to-dist shows override false" expect_json 200 'j["override"] is False' GET replication/rules/to-dist
check "run to-dist (override off; the kept password still opens dist)" run_rule to-dist
check "it succeeded" succeeded
check "lib/app:v1 skipped" item_is skipped lib/app v1
check "totals.skipped counts it" jt 'j["totals"]["skipped"]>=1 and j["totals"]["copied"]==0' "$EX"
check "dist keeps its own mirror/app:v1" has "$FOREIGN" dist_digest mirror/app:v1
check "PUT rule to-dist with override true: 200" expect 200 PUT replication/rules/to-dist "$(to_dist_rule true false)"
check "run to-dist (override on)" run_rule to-dist
check "it succeeded" succeeded
check "lib/app:v1 copied" item_is copied lib/app v1
check "dist's mirror/app:v1 is wharf's again" has "$APP1" dist_digest mirror/app:v1

# ---- 5, 6. destination down: retrying, then succeeded; one active run per rule ---------------
LATER_PORT=$(free_port)
D2=127.0.0.1:$LATER_PORT
check "POST registries later (no credentials; nothing listens yet): 201, has_password false" \
  expect_json 201 'j["has_password"] is False' POST replication/registries '{"name":"later","url":"http://'"$D2"'"}'
check "POST rule to-later (other/**, same names): 201" expect 201 POST replication/rules \
  "$(rule_json to-later push later '[{"matches":"other/**"}]' '[]' "" "$MANUAL" false true)"
# Two POSTs back to back: the first is still queued (or running) when the second comes.
call POST replication/rules/to-later/executions '{}' >"$WORK/first.code"
cp "$LAST" "$WORK/first.json"
oci_error POST "http://$R/api/v1/replication/rules/to-later/executions" -u "$CREDS" \
  -H 'Content-Type: application/json' --data-binary '{}' >"$WORK/second.txt"
check "the first POST of an execution: 202" test "$(cat "$WORK/first.code")" = 202
LATER_EXEC=$(jv 'j["id"]' "$WORK/first.json")
check_output "the second POST at once: 409 CONFLICT (one is queued or running)" "409 CONFLICT" cat "$WORK/second.txt"
check "the execution goes to retrying (destination down)" wait_exec to-later "$LATER_EXEC" retrying 20
check "with a retry recorded (at_ms, error) and a next attempt" \
  jt 'len(j["retries"])>=1 and j["retries"][0]["at_ms"]>0 and j["retries"][0]["error"] and j["next_attempt_ms"]' "$EX"
check "the refused POST made no execution" expect_json 200 'len(j["executions"])==1' GET replication/rules/to-later/executions
check "a plain docker-registry starts on the remote's port" start_dist later "$LATER_PORT"
check "the execution ends" wait_exec to-later "$LATER_EXEC" 'succeeded|failed' 60
check "it succeeded, the failed attempts recorded" jt 'j["status"]=="succeeded" and j["attempts"]>=1 and len(j["retries"])>=1' "$EX"
check "other/x:v1 copied" item_is copied other/x v1
check "the plain registry serves other/x:v1 at wharf's digest" has "$OTHER" later_digest other/x:v1
check "DELETE registries/later while a rule names it: 409" expect 409 DELETE replication/registries/later
check "DELETE rules/to-later: 200" expect 200 DELETE replication/rules/to-later
check "GET rules/to-later: 404" expect 404 GET replication/rules/to-later
check "DELETE registries/later: 200" expect 200 DELETE replication/registries/later
check "GET registries/later: 404" expect 404 GET replication/registries/later

# ---- triggers: on push; scheduled --------------------------------------------------------
check "POST rule on-push (other/** into pushed, on_push): 201" expect 201 POST replication/rules \
  "$(rule_json on-push push dist '[{"matches":"other/**"}]' '[]' pushed '{"kind":"on_push"}' false true)"
Y=$(mkimg y)
check "skopeo copy other/y:v1 to wharf" to_wharf y other/y:v1
check "the push is replicated: dist serves pushed/y:v1 within 30 s" wait_has "$Y" dist_digest pushed/y:v1 30
check "rule on-push has an execution with trigger on_push" \
  expect_json 200 'len(j["executions"])>=1 and j["executions"][0]["trigger"]=="on_push"' GET replication/rules/on-push/executions
check "POST rule hourly (scheduled every 3600 s): 201" expect_json 201 \
  'j["trigger"]["kind"]=="scheduled" and j["trigger"]["every_secs"]==3600' POST replication/rules \
  "$(rule_json hourly push dist '[{"matches":"nothing/**"}]' '[]' "" '{"kind":"scheduled","every_secs":3600}' false true)"
check "DELETE rules/hourly: 200" expect 200 DELETE replication/rules/hourly

# ---- restart (the sealed password opens with the kept key), 4. delete sync ------------------
KEY_SUM=$(sha256sum <"$WHARF_DATA/keys/secret.key")
stop_wharf
start_wharf
cli_as_admin "$R"
check "wharf restarts on the same data dir" wait_http "http://$R/v2/" 5
check "the seal key is the same after the restart" test "$(sha256sum <"$WHARF_DATA/keys/secret.key")" = "$KEY_SUM"
check "skopeo delete lib/app:v1 in wharf" skopeo delete --tls-verify=false --creds "$CREDS" "docker://$R/lib/app:v1"
check "wharf no longer serves lib/app:v1" has "" wharf_digest lib/app:v1
check "PUT rule to-dist with delete_sync true: 200" expect_json 200 'j["delete_sync"] is True' \
  PUT replication/rules/to-dist "$(to_dist_rule true true)"
check "run to-dist (delete sync, after the restart)" run_rule to-dist
check "it succeeded" succeeded
check "an item deleted app:v1" \
  jt 'any(i.get("outcome")=="deleted" and i.get("tag")=="v1" and "app" in (i.get("repository") or "") for i in j["items"])' "$EX"
check "totals.deleted counts it" jt 'j["totals"]["deleted"]>=1' "$EX"
check "dist no longer has mirror/app:v1" has "" dist_digest mirror/app:v1
check_fails "skopeo inspect of mirror/app:v1 at dist fails" \
  skopeo inspect --tls-verify=false --creds "$DIST_USER:$DIST_PW" "docker://$D/mirror/app:v1"
check "dist keeps mirror/multi:v1 (still in wharf)" has "$MULTI" dist_digest mirror/multi:v1
check "dist keeps alpine:3 (outside the rule)" has "$ALPINE" dist_digest alpine:3

# ---- a destination that never comes: 5 attempts, then failed (checked at the end) ----------
NEVER_PORT=$(free_port)
check "POST registries never (nothing ever listens): 201" expect 201 POST replication/registries '{"name":"never","url":"http://127.0.0.1:'"$NEVER_PORT"'"}'
check "POST rule to-never: 201" expect 201 POST replication/rules \
  "$(rule_json to-never push never '[{"matches":"other/**"}]' '[]' "" "$MANUAL" false true)"
check "POST an execution of to-never: 202" start_exec to-never
NEVER_EXEC=$EXEC

# ---- 7. who may, and bad input ----------------------------------------------------------------
BOB_PW="bob-$(random_word)"
BOB="bob:$BOB_PW"
check "POST users bob (not an admin): 201" expect 201 POST users '{"username":"bob","password":"'"$BOB_PW"'"}'
check "bob: GET registries: 403" expect 403 -u "$BOB" GET replication/registries
check "bob: GET registries/dist: 403" expect 403 -u "$BOB" GET replication/registries/dist
check "bob: POST registries: 403" expect 403 -u "$BOB" POST replication/registries '{"name":"bobs","url":"http://127.0.0.1:1"}'
check "bob: PUT registries/dist: 403" expect 403 -u "$BOB" PUT replication/registries/dist '{"name":"dist","url":"http://127.0.0.1:1"}'
check "bob: DELETE registries/dist: 403" expect 403 -u "$BOB" DELETE replication/registries/dist
check "bob: GET rules: 403" expect 403 -u "$BOB" GET replication/rules
check "bob: POST rules: 403" expect 403 -u "$BOB" POST replication/rules \
  "$(rule_json bobs push dist '[{"matches":"**"}]' '[]' "" "$MANUAL" false true)"
check "bob: PUT rules/to-dist: 403" expect 403 -u "$BOB" PUT replication/rules/to-dist "$(to_dist_rule true true)"
check "bob: DELETE rules/to-dist: 403" expect 403 -u "$BOB" DELETE replication/rules/to-dist
check "bob: POST executions: 403" expect 403 -u "$BOB" POST replication/rules/to-dist/executions '{}'
check "bob: GET executions: 403" expect 403 -u "$BOB" GET replication/rules/to-dist/executions
check "bob: GET an execution: 403" expect 403 -u "$BOB" GET "replication/rules/to-dist/executions/$FIRST_ID"
check "no credentials: GET registries: 401" expect 401 -n GET replication/registries
check "no credentials: POST registries: 401" expect 401 -n POST replication/registries '{"name":"anon","url":"http://127.0.0.1:1"}'
check "no credentials: POST executions: 401" expect 401 -n POST replication/rules/to-dist/executions '{}'
check "a wrong admin password: 401" expect 401 -u "admin:not-$WHARF_ADMIN_PASSWORD" GET replication/rules
check "dist and to-dist are still there, unchanged" expect_json 200 'j["delete_sync"] is True' GET replication/rules/to-dist
check "no rule bobs was made" expect 404 GET replication/rules/bobs
check "a remote with url file:///etc/passwd: 400" expect 400 POST replication/registries '{"name":"evil1","url":"file:///etc/passwd"}'
check "a remote with url ftp://x: 400" expect 400 POST replication/registries '{"name":"evil2","url":"ftp://x"}'
check "a remote with url 'not a url': 400" expect 400 POST replication/registries '{"name":"evil3","url":"not a url"}'
check "none of them was made" expect 404 GET replication/registries/evil1
check "a rule naming an unknown remote: 404 or 400" expect '404|400' POST replication/rules \
  "$(rule_json r1 push nope '[{"matches":"**"}]' '[]' "" "$MANUAL" false true)"
check "a rule with an empty repository pattern: 400" expect 400 POST replication/rules \
  "$(rule_json r2 push dist '[{"matches":""}]' '[]' "" "$MANUAL" false true)"
check "a rule with an empty tag pattern: 400" expect 400 POST replication/rules \
  "$(rule_json r3 push dist '[{"matches":"**"}]' '[{"excludes":""}]' "" "$MANUAL" false true)"
check "a rule with direction sideways: 400" expect 400 POST replication/rules \
  "$(rule_json r4 sideways dist '[{"matches":"**"}]' '[]' "" "$MANUAL" false true)"
check_output "a rule whose name exists: 409 CONFLICT" "409 CONFLICT" \
  oci_error POST "http://$R/api/v1/replication/rules" -u "$CREDS" -H 'Content-Type: application/json' \
  --data-binary "$(to_dist_rule true false)"
check "DELETE registries/dist while rules name it: 409" expect 409 DELETE replication/registries/dist
check "executions of an unknown rule: 404" expect 404 POST replication/rules/nope/executions '{}'
check "an unknown execution: 404" expect 404 GET replication/rules/to-dist/executions/nope-0
check "a write without Content-Type: application/json: 415" \
  test "$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" -X POST --data-binary '{}' "http://$R/api/v1/replication/rules/to-dist/executions")" = 415
check "GET registries/dist carries no password" expect_json 200 'j["has_password"] is True and "password" not in j' \
  GET replication/registries/dist
check "(nor does it as text)" bash -c "! grep -qF -- '$DIST_PW' '$LAST'"
check "GET rules carries no password" expect 200 GET replication/rules
check "(as text)" bash -c "! grep -qF -- '$DIST_PW' '$LAST'"

# ---- 8. the CLI -------------------------------------------------------------------------------
# cli_ok TEXT CMD…: CMD exits 0 and prints TEXT.
cli_ok() {
  local text=$1 rc
  shift
  "$@" >"$WORK/cli.out" 2>&1
  rc=$?
  cat "$WORK/cli.out"
  echo "(exit $rc)"
  [ "$rc" = 0 ] && grep -qF -- "$text" "$WORK/cli.out"
}
W=$WHARF_BIN
check "wharf replication registry list shows dist" cli_ok "http://$D" "$W" replication registry list
check "wharf replication registry add cli-dist (password from WHARF_REMOTE_PASSWORD)" \
  env WHARF_REMOTE_PASSWORD="$DIST_PW" "$W" replication registry add cli-dist "http://$D" --remote-username "$DIST_USER"
check "the CLI-made remote has a password" expect_json 200 'j["has_password"] is True' GET replication/registries/cli-dist
check "and the user name" jt 'j["username"]==a[0]' "$LAST" "$DIST_USER"
check "wharf replication rule add cli-rule (other/**, v*, into cli)" \
  "$W" replication rule add cli-rule --direction push --remote cli-dist --repo 'other/**' --tag 'v*' --exclude-tag '*-dev' --dest-namespace cli
check "wharf replication rule list shows it" cli_ok cli-rule "$W" replication rule list
check "wharf replication rule run cli-rule --wait 60s: exit 0, prints the execution" \
  cli_ok succeeded "$W" replication rule run cli-rule --wait 60s
check "dist serves cli/x:v1 at wharf's digest" has "$OTHER" dist_digest cli/x:v1
check "dist serves cli/y:v1 at wharf's digest" has "$Y" dist_digest cli/y:v1
check "wharf replication rule history cli-rule lists the run" cli_ok succeeded "$W" replication rule history cli-rule
check "wharf replication rule add cli-sched --every 5m" \
  "$W" replication rule add cli-sched --direction pull --remote cli-dist --repo 'nothing/**' --every 5m
check "it is scheduled every 300 s" expect_json 200 'j["trigger"]=={"kind":"scheduled","every_secs":300}' GET replication/rules/cli-sched
check "wharf replication rule add cli-onpush --on-push --no-override --delete-sync" \
  "$W" replication rule add cli-onpush --direction push --remote cli-dist --repo 'nothing/**' --exclude-repo 'nothing/x*' --on-push --no-override --delete-sync
check "it is on_push, override off, delete sync on" \
  expect_json 200 'j["trigger"]["kind"]=="on_push" and j["override"] is False and j["delete_sync"] is True and {"excludes":"nothing/x*"} in j["repositories"]' \
  GET replication/rules/cli-onpush
check "wharf replication rule rm cli-sched" "$W" replication rule rm cli-sched
check "wharf replication rule rm cli-onpush" "$W" replication rule rm cli-onpush
check_fails "wharf replication registry rm cli-dist while cli-rule names it fails" "$W" replication registry rm cli-dist
check "wharf replication registry add bad-pw (a wrong password)" \
  env WHARF_REMOTE_PASSWORD="$WRONG_PW" "$W" replication registry add bad-pw "http://$D" --remote-username "$DIST_USER"
check "wharf replication rule add bad-rule" \
  "$W" replication rule add bad-rule --direction push --remote bad-pw --repo 'other/**' --dest-namespace bad
check_fails "wharf replication rule run bad-rule --wait 60s exits non-zero (dist refuses the password)" \
  "$W" replication rule run bad-rule --wait 60s
check "its execution failed, with an error" expect_json 200 \
  'j["executions"][0]["status"]=="failed" and j["executions"][0]["error"]' GET replication/rules/bad-rule/executions
check "dist has no bad/x:v1" has "" dist_digest bad/x:v1
check "wharf replication rule rm cli-rule" "$W" replication rule rm cli-rule
check "wharf replication rule rm bad-rule" "$W" replication rule rm bad-rule
check "wharf replication registry rm cli-dist" "$W" replication registry rm cli-dist
check "wharf replication registry rm bad-pw" "$W" replication registry rm bad-pw
check "registry list no longer shows cli-dist (but dist)" \
  bash -c "'$W' replication registry list >'$WORK/list.out' 2>&1 && grep -qF 'http://$D' '$WORK/list.out' && ! grep -q cli-dist '$WORK/list.out'"

# ---- 5 (end). the destination that never came: failed after 5 attempts -------------------------
check "to-never's execution ends" wait_exec to-never "$NEVER_EXEC" 'succeeded|failed' 60
check "it failed after 5 attempts, each retry recorded, with an error" \
  jt 'j["status"]=="failed" and j["attempts"]==5 and len(j["retries"])>=4 and j["error"] and j["finished_ms"]' "$EX"

# ---- no remote password at rest or in the log -------------------------------------------------
b64=$(printf '%s' "$DIST_PW" | base64 -w0)
check "no file under the data dir holds dist's password" bash -c "! grep -rqaF -- '$DIST_PW' '$WHARF_DATA'"
check "nor in base64" bash -c "! grep -rqaF -- '${b64%%=*}' '$WHARF_DATA'"
check "nor the wrong one given to bad-pw" bash -c "! grep -rqaF -- '$WRONG_PW' '$WHARF_DATA'"
check "the wharf log is not empty" test -s "$WHARF_LOG"
check "the wharf log does not hold dist's password" bash -c "! grep -qaF -- '$DIST_PW' '$WHARF_LOG'"
check "nor the wrong one" bash -c "! grep -qaF -- '$WRONG_PW' '$WHARF_LOG'"
check "nor bob's" bash -c "! grep -qaF -- '$BOB_PW' '$WHARF_LOG'"
finish
