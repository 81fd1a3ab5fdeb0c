"""Replication lag between two registries: pushes a small image to A (one blob and one
manifest of its own each time), then polls B until it serves the manifest's digest. Prints
p50/p99 of the lag, and of the same poll against A (the harness's own overhead)."""
import base64, hashlib, json, sys, time, urllib.request

a, b, creds, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
basic = "Basic " + base64.b64encode(creds.encode()).decode()
ACCEPT = "application/vnd.oci.image.manifest.v1+json"

def call(method, url, token=None, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()

def token(reg, repo, actions):
    _, _, body = call("GET", f"http://{reg}/token?service=wharf&scope=repository:{repo}:{actions}",
                      headers={"Authorization": basic})
    return json.loads(body)["token"]

def push(repo, tag, i):
    t = token(a, repo, "pull,push")
    layer = f"lag layer {i} {time.time()}".encode()
    descs = []
    for blob in (b"{}", layer):
        d = "sha256:" + hashlib.sha256(blob).hexdigest()
        s, _, _ = call("POST", f"http://{a}/v2/{repo}/blobs/uploads/?digest={d}", t, blob,
                       {"Content-Type": "application/octet-stream"})
        assert s == 201, s
        descs.append({"digest": d, "size": len(blob)})
    m = json.dumps({"schemaVersion": 2, "mediaType": ACCEPT,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **descs[0]},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **descs[1]}]}).encode()
    s, _, _ = call("PUT", f"http://{a}/v2/{repo}/manifests/{tag}", t, m, {"Content-Type": ACCEPT})
    assert s == 201, s
    return time.monotonic(), "sha256:" + hashlib.sha256(m).hexdigest()

def until_served(reg, repo, tag, digest, t, limit=30):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        s, h, _ = call("HEAD", f"http://{reg}/v2/{repo}/manifests/{tag}", t, headers={"Accept": ACCEPT})
        if s == 200 and {k.lower(): v for k, v in h.items()}.get("docker-content-digest") == digest:
            return time.monotonic()
        time.sleep(0.02)
    return None

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

lags, overhead, ok = [], [], 0
tb, ta = token(b, "lag/app", "pull"), token(a, "lag/app", "pull")
for i in range(n):
    done, digest = push("lag/app", f"t{i}", i)
    seen_a = until_served(a, "lag/app", f"t{i}", digest, ta)
    overhead.append(seen_a - done)
    done = time.monotonic()
    seen_b = until_served(b, "lag/app", f"t{i}", digest, tb)
    if seen_b is not None:
        ok += 1
        lags.append(seen_b - done + overhead[-1])
print(f"replicated {ok}/{n}")
if lags:
    print(f"lag p50 {pct(lags, 50)*1000:.0f} ms, p99 {pct(lags, 99)*1000:.0f} ms; "
          f"harness overhead (the same poll against A) p50 {pct(overhead, 50)*1000:.1f} ms")
