#!/usr/bin/env python3
"""The spec's chunked upload, as a client that honours Content-Range would do it.

usage: chunked_push.py BASE REPO FILE CHUNK_BYTES USER PASSWORD   (USER "-": no auth)

POST, then PATCH chunks of CHUNK_BYTES with Content-Range (following each Location), then
PUT ?digest=. Then reads the blob back through the registry (following a 307 to object
storage without the registry's Authorization, as docker does) and compares digests.
Exits non-zero, saying why, on any deviation.
"""
import base64
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)


def call(method, url, token=None, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with opener.open(req, timeout=300) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def push_token(base, repo, user, password):
    """A bearer token for pull and push on `repo`, from the registry's token endpoint."""
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    scope = urllib.parse.quote(f"repository:{repo}:pull,push")
    st, _, body = call("GET", f"{base}/token?service=wharf&scope={scope}",
                       headers={"Authorization": f"Basic {basic}"})
    if st != 200:
        sys.exit(f"token: {st} {body[:200]!r}")
    return json.loads(body)["token"]


def main():
    base, repo, path, chunk, user, password = sys.argv[1:7]
    chunk = int(chunk)
    data = open(path, "rb").read()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    token = push_token(base, repo, user, password) if user != "-" else None

    st, h, body = call("POST", f"{base}/v2/{repo}/blobs/uploads/", token, b"")
    if st != 202:
        sys.exit(f"POST: {st} {body[:300]!r}")
    loc = urllib.parse.urljoin(base + "/", h["Location"])
    sent = 0
    chunks = 0
    while sent < len(data):
        part = data[sent:sent + chunk]
        st, h, body = call("PATCH", loc, token, part, {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{sent}-{sent + len(part) - 1}",
        })
        if st != 202:
            sys.exit(f"PATCH {sent}-{sent + len(part) - 1}: {st} {body[:300]!r}")
        if h.get("Range") != f"0-{sent + len(part) - 1}":
            sys.exit(f"PATCH: Range {h.get('Range')!r} after {sent + len(part)} bytes")
        sent += len(part)
        chunks += 1
        loc = urllib.parse.urljoin(loc, h["Location"])
    sep = "&" if "?" in loc else "?"
    st, h, body = call("PUT", f"{loc}{sep}digest={digest}", token, b"",
                       {"Content-Type": "application/octet-stream"})
    if st != 201:
        sys.exit(f"PUT: {st} {body[:300]!r}")

    st, h, body = call("GET", f"{base}/v2/{repo}/blobs/{digest}", token)
    redirected = st == 307
    if redirected:
        st, h, body = call("GET", h["Location"])
    if st != 200:
        sys.exit(f"GET blob: {st} {body[:300]!r}")
    got = "sha256:" + hashlib.sha256(body).hexdigest()
    if got != digest:
        sys.exit(f"read back {got}, pushed {digest}")
    how = "via a 307 to object storage" if redirected else "directly"
    print(f"pushed {len(data)} bytes in {chunks} chunks as {digest}; read back {how}, digest verified")


if __name__ == "__main__":
    main()
