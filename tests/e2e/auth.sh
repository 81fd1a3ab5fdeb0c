#!/usr/bin/env bash
# Auth with real clients: docker login/push/pull as a user and as a robot account,
# anonymous pull of a public project, skopeo --creds, and no secret in the server's logs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
start_wharf --auth on
start_dockerd
wharf_cli() { WHARF_URL="http://$R" WHARF_USERNAME=admin WHARF_PASSWORD="$WHARF_ADMIN_PASSWORD" "$WHARF_BIN" "$@"; }

ALICE_PW="alice-$(random_word)"
check "admin creates user alice" wharf_cli user add alice --new-password "$ALICE_PW"
check "admin creates private project team" wharf_cli project create team
check "admin creates public project pub" wharf_cli project create pub --public
check "alice becomes a developer of team" wharf_cli member add team alice developer

make_image e2e-auth:base 3
docker tag e2e-auth:base "$R/team/app:v1"
check_fails "push without login is denied" docker push "$R/team/app:v1"
check "docker login as alice" sh -c "echo '$ALICE_PW' | docker login -u alice --password-stdin $R"
check "alice pushes team/app:v1" docker push "$R/team/app:v1"
docker rmi -f "$R/team/app:v1" >/dev/null 2>&1
check "alice pulls team/app:v1" docker pull "$R/team/app:v1"
check_output "alice may not push to pub (not a member)" "denied" \
  sh -c "docker tag e2e-auth:base $R/pub/app:v1 && docker push $R/pub/app:v1 2>&1"
docker logout "$R" >/dev/null

robot_json=$(wharf_cli robot create ci --project team --actions pull,push --days 1)
ROBOT_NAME=$(printf '%s' "$robot_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
ROBOT_SECRET=$(printf '%s' "$robot_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
check "robot is named robot\$team+ci" test "$ROBOT_NAME" = 'robot$team+ci'
check "docker login as the robot" sh -c "printf '%s' '$ROBOT_SECRET' | docker login -u '$ROBOT_NAME' --password-stdin $R"
docker tag e2e-auth:base "$R/team/app:v2"
check "robot pushes team/app:v2" docker push "$R/team/app:v2"
docker rmi -f "$R/team/app:v2" >/dev/null 2>&1
check "robot pulls team/app:v2" docker pull "$R/team/app:v2"
docker logout "$R" >/dev/null

check "admin pushes to the public project" sh -c "echo '$WHARF_ADMIN_PASSWORD' | docker login -u admin --password-stdin $R && docker tag e2e-auth:base $R/pub/base:v1 && docker push $R/pub/base:v1"
docker logout "$R" >/dev/null
docker rmi -f "$R/pub/base:v1" "$R/team/app:v1" >/dev/null 2>&1
check "anonymous pull of a public project" docker pull "$R/pub/base:v1"
check_output "anonymous pull of a private project is denied" "denied" sh -c "docker pull $R/team/app:v1 2>&1"
check_output "anonymous push to a public project is denied" "denied" sh -c "docker tag e2e-auth:base $R/pub/base:v2 && docker push $R/pub/base:v2 2>&1"

rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
check "skopeo inspect with --creds" skopeo inspect --tls-verify=false --creds "alice:$ALICE_PW" "docker://$R/team/app:v1"
check "skopeo copy out with --creds" skopeo copy --src-tls-verify=false --src-creds "alice:$ALICE_PW" "docker://$R/team/app:v1" "oci:$WORK/oci-out:v1"
check "skopeo copy in with --creds" skopeo copy --dest-tls-verify=false --dest-creds "alice:$ALICE_PW" "oci:$WORK/oci-out:v1" "docker://$R/team/copied:v1"
check_fails "skopeo with a wrong password fails" skopeo inspect --tls-verify=false --creds "alice:wrong" "docker://$R/team/app:v1"
check_output "the audit log records alice's push" '"action": "push"' wharf_cli audit --project team --actor alice

# A token issued to alice must not show up in the logs either.
TOKEN=$(curl -s -u "alice:$ALICE_PW" "http://$R/token?service=wharf&scope=repository:team/app:pull" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
check "the token works" sh -c "curl -sf -H 'Authorization: Bearer $TOKEN' http://$R/v2/team/app/tags/list >/dev/null"
stop_wharf
log="$WHARF_LOG"
check "the server log is not empty" test -s "$log"
for secret in "$WHARF_ADMIN_PASSWORD" "$ALICE_PW" "$ROBOT_SECRET" "$TOKEN" "BEGIN PRIVATE KEY" '$argon2'; do
  check "no secret in logs (${secret:0:6}…)" sh -c "! grep -qF -- '$secret' '$log'"
done

# ---- refresh tokens with real docker -----------------------------------------------------
# Access tokens live 1 s (+5 s leeway): every pull below, 7 s after the last, needs a new one,
# which docker gets with the refresh token it stored at `docker login` — the same token every
# time (docker's credential store ignores a new one, so wharf does not rotate them). A
# password change revokes it: the next pull gets 401.
WHARF_DATA=$WORK/wharf-refresh start_wharf --auth on --token-ttl-secs 1
BOB_PW="bob-$(random_word)"
check "admin creates user bob" wharf_cli user add bob --new-password "$BOB_PW"
check "admin creates project rt" wharf_cli project create rt
check "bob becomes a developer of rt" wharf_cli member add rt bob developer
check "docker login as bob" sh -c "echo '$BOB_PW' | docker login -u bob --password-stdin $R"
check "docker stored a refresh token (identitytoken)" grep -q identitytoken "$DOCKER_CONFIG/config.json"
docker tag e2e-auth:base "$R/rt/app:v1"
check "bob pushes rt/app:v1" docker push "$R/rt/app:v1"
for i in 1 2 3; do
  sleep 7
  docker rmi -f "$R/rt/app:v1" >/dev/null 2>&1
  check "pull $i, one access-token lifetime after the last, refreshes and succeeds" docker pull "$R/rt/app:v1"
done
check "bob's password is reset by the admin" wharf_cli user passwd bob --new-password "bob-new-$(random_word)"
sleep 7
docker rmi -f "$R/rt/app:v1" >/dev/null 2>&1
check_fails "after the password change the refresh token is refused" docker pull "$R/rt/app:v1"
check "the refusal was a 401 at the token endpoint" grep -q 'refresh token was revoked' "$WHARF_LOG"
docker logout "$R" >/dev/null
stop_wharf
finish
