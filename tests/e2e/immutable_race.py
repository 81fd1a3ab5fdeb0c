"""Racing pushes of one immutable tag over HTTP: ROUNDS rounds, in each THREADS threads
PUT a manifest of their own to the same new tag at once. Exactly one may win each round
(201) and every other must get 403 DENIED naming the rule; the tag then points at the
winner. Prints one line per round and exits non-zero on any other outcome.

usage: immutable_race.py REGISTRY REPO USER PASSWORD
"""
import base64, hashlib, json, sys, threading, urllib.request, urllib.error

reg, repo, user, password = sys.argv[1:5]
ROUNDS, THREADS = 10, 8
basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def req(method, path, body=None, headers=None, auth=None):
    r = urllib.request.Request(f"http://{reg}{path}", data=body, method=method, headers=headers or {})
    if auth:
        r.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


_, body, _ = req("GET", f"/token?service=wharf&scope=repository:{repo}:pull,push", auth=basic)
bearer = "Bearer " + json.loads(body)["token"]
config = b"{}"
cd = "sha256:" + hashlib.sha256(config).hexdigest()
status, _, _ = req("POST", f"/v2/{repo}/blobs/uploads/?digest={cd}", config, auth=bearer)
assert status == 201, status

bad = 0
for rnd in range(ROUNDS):
    tag = f"v-race-{rnd}"
    results = [None] * THREADS
    gate = threading.Barrier(THREADS)

    def push(i):
        m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
             "layers": [], "annotations": {"pusher": str(i), "round": str(rnd)}}
        data = json.dumps(m).encode()
        gate.wait()
        status, out, _ = req("PUT", f"/v2/{repo}/manifests/{tag}", data,
                             {"Content-Type": m["mediaType"]}, bearer)
        results[i] = (status, "sha256:" + hashlib.sha256(data).hexdigest(), out)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [r for r in results if r[0] == 201]
    lost = [r for r in results if r[0] == 403 and b"DENIED" in r[2] and b"immutability rule" in r[2]]
    _, _, h = req("HEAD", f"/v2/{repo}/manifests/{tag}",
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, auth=bearer)
    now = h.get("Docker-Content-Digest")
    ok = len(won) == 1 and len(lost) == THREADS - 1 and now == won[0][1]
    bad += not ok
    print(f"round {rnd}: {len(won)} won, {len(lost)} denied, tag at the winner: {bool(won) and now == won[0][1]}"
          + ("" if ok else f"  UNEXPECTED {[(r[0], r[2][:120]) for r in results]}"))
sys.exit(1 if bad else 0)
