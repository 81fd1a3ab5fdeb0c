#!/usr/bin/env bash
# Project policies with real docker on `wharf serve`: an immutable tag's re-push refused by
# docker with the rule in its message (and racing pushes of one immutable tag: exactly one
# wins), a push over the project's quota refused with usage and limit and nothing of it
# counted, and retention on a project of 30 tags: the dry run explains every decision and
# deletes nothing, the run deletes what it said, docker pulls what is left, garbage
# collection frees the rest; who may set what.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
start_wharf --gc-interval-hours 0
start_dockerd
cli_as_admin "$R"
check "docker login" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $R"
for p in shop quota ret; do check "wharf project create $p" "$WHARF_BIN" project create "$p"; done
tags_of() {
  local t
  t=$(curl -s -u "admin:$WHARF_ADMIN_PASSWORD" "http://$R/token?service=wharf&scope=repository:$1:pull" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s -H "Authorization: Bearer $t" "http://$R/v2/$1/tags/list?n=1000" \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("tags") or []))'
}

# --- Immutability -----------------------------------------------------------------------
printf '{"rules":[{"repositories":{"matches":"**"},"tags":{"matches":"v*"}}]}' >"$WORK/imm.json"
check "wharf immutability set shop (tags v* of every repository)" "$WHARF_BIN" immutability set shop "$WORK/imm.json"
check_output "wharf immutability show shop" '"matches": "v*"' "$WHARF_BIN" immutability show shop
make_image "$R/shop/app:v1" 1
FIRST=$(docker image inspect -f '{{.Id}}' "$R/shop/app:v1")
check_output "docker push shop/app:v1" "digest: sha256:" docker push "$R/shop/app:v1"
check_output "docker push shop/app:v1 again, unchanged" "digest: sha256:" docker push "$R/shop/app:v1"
make_image "$R/shop/app:v1" 1
check_output "docker push of another image as shop/app:v1 is refused, naming the rule" \
  "denied: tag v1 of shop/app is immutable (immutability rule 1: repositories matching **, tags matching v*)" \
  sh -c "docker push $R/shop/app:v1 2>&1"
docker rmi -f "$R/shop/app:v1" >/dev/null 2>&1
check "docker pull shop/app:v1" docker pull "$R/shop/app:v1"
check "it is still the first image" test "$(docker image inspect -f '{{.Id}}' "$R/shop/app:v1")" = "$FIRST"
make_image "$R/shop/app:latest" 1
check_output "docker push shop/app:latest (no rule selects it)" "digest: sha256:" docker push "$R/shop/app:latest"
make_image "$R/shop/app:latest" 1
check_output "and it moves" "digest: sha256:" docker push "$R/shop/app:latest"
TOKEN=$(curl -s -u "admin:$WHARF_ADMIN_PASSWORD" "http://$R/token?service=wharf&scope=repository:shop/app:pull,delete" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
check_output "DELETE of the immutable tag: 403 DENIED" "403 DENIED" oci_error DELETE "http://$R/v2/shop/app/manifests/v1" -H "Authorization: Bearer $TOKEN"
check_output "racing pushes of one immutable tag: exactly one wins, 10 rounds of 8" "round 9: 1 won, 7 denied, tag at the winner: True" \
  python3 "$here/immutable_race.py" "$R" shop/race admin "$WHARF_ADMIN_PASSWORD"
check "(and no round went otherwise)" python3 "$here/immutable_race.py" "$R" shop/race2 admin "$WHARF_ADMIN_PASSWORD"

# --- Quota ------------------------------------------------------------------------------
check "wharf quota set quota 30MiB" "$WHARF_BIN" quota set quota 30MiB
make_image "$R/quota/one:v1" 20
check_output "docker push quota/one (20 MB of 30)" "digest: sha256:" docker push "$R/quota/one:v1"
USED=$("$WHARF_BIN" quota show quota | python3 -c 'import json,sys; print(json.load(sys.stdin)["used_bytes"])')
check "the usage counts it ($USED bytes)" test "$USED" -gt $((20 * 1024 * 1024))
make_image "$R/quota/two:v1" 20
check_output "docker push quota/two (20 MB more) is refused with usage and limit" \
  "denied: quota exceeded: project quota uses $USED of its 31457280 bytes" sh -c "docker push $R/quota/two:v1 2>&1"
check_output "nothing of the refused push counts" "\"used_bytes\": $USED" "$WHARF_BIN" quota show quota
check_output "a project admin who is not a system admin may not set a quota (403)" "403" \
  sh -c "'$WHARF_BIN' user add qa --new-password 'qa-$WHARF_ADMIN_PASSWORD' >/dev/null; '$WHARF_BIN' member add quota qa projectAdmin >/dev/null; WHARF_USERNAME=qa WHARF_PASSWORD='qa-$WHARF_ADMIN_PASSWORD' '$WHARF_BIN' quota set quota 1TiB 2>&1"
check "wharf quota set quota 60MiB" "$WHARF_BIN" quota set quota 60MiB
check_output "the same push now goes through" "digest: sha256:" docker push "$R/quota/two:v1"

# --- Retention on 30 tags ---------------------------------------------------------------
for i in $(seq 1 30); do make_image "$R/ret/app:v$i" 0; docker push -q "$R/ret/app:v$i" >/dev/null 2>&1 || echo "push v$i failed"; done
check "30 tags pushed" test "$(tags_of ret/app)" = 30
printf '{"rules":[{"tags":{"matches":"v1"}}]}' >"$WORK/imm-ret.json"
check "v1 of ret is immutable" "$WHARF_BIN" immutability set ret "$WORK/imm-ret.json"
printf '{"rules":[{"repositories":{"matches":"**"},"tags":{"matches":"v*"},"keep":{"latest_pushed":10}}]}' >"$WORK/ret.json"
check "wharf retention set ret (keep the 10 most recently pushed)" "$WHARF_BIN" retention set ret "$WORK/ret.json"
check_output "a developer may not set retention (403)" "403" \
  sh -c "'$WHARF_BIN' member add ret qa developer >/dev/null; WHARF_USERNAME=qa WHARF_PASSWORD='qa-$WHARF_ADMIN_PASSWORD' '$WHARF_BIN' retention set ret '$WORK/ret.json' 2>&1"
"$WHARF_BIN" retention run ret --dry-run >"$WORK/dry.out" 2>&1
cat "$WORK/dry.out" >>"$LOGDIR/$SUITE-retention-dry-run.txt"
check_output "the dry run's summary" "dry run: 1 repositories: 11 artifacts kept, 19 deleted (19 tags)" cat "$WORK/dry.out"
check_output "it says why v30 is kept" "[v30]: kept by rule 1: the 1st most recently pushed of the 10 it keeps" cat "$WORK/dry.out"
check_output "why v1 is kept" "[v1]: kept: tag v1 is immutable (immutability rule 1)" cat "$WORK/dry.out"
check_output "why v2 goes" "[v2]: deleted: pushed today, never pulled; no rule keeps it" cat "$WORK/dry.out"
check "the dry run deleted nothing" test "$(tags_of ret/app)" = 30
check_output "wharf retention run ret" "1 repositories: 11 artifacts kept, 19 deleted (19 tags)" "$WHARF_BIN" retention run ret
check "11 tags are left" test "$(tags_of ret/app)" = 11
docker rmi -f "$R/ret/app:v30" "$R/ret/app:v1" "$R/ret/app:v5" >/dev/null 2>&1
check "docker pull ret/app:v30" docker pull "$R/ret/app:v30"
check "docker pull ret/app:v1 (immutable)" docker pull "$R/ret/app:v1"
check_output "ret/app:v5 is gone" "manifest unknown" sh -c "docker pull $R/ret/app:v5 2>&1"
check_output "the audit log has the run" "retention_run" "$WHARF_BIN" audit --project ret --action retention_run
"$WHARF_BIN" gc run --grace 0s >"$WORK/gc.out" 2>&1
cat "$WORK/gc.out" >>"$LOGDIR/$SUITE-gc-run.txt"
# 19 images of a config and a layer each (and the layers of the refused pushes above).
check "garbage collection frees the deleted images' blobs ($(grep -c '^collected blob' "$WORK/gc.out") collected)" \
  test "$(grep -c '^collected blob' "$WORK/gc.out")" -ge 38
docker rmi -f "$R/ret/app:v30" >/dev/null 2>&1
check "docker pull ret/app:v30 after the collection" docker pull "$R/ret/app:v30"
finish
