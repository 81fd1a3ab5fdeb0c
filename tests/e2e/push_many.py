#!/usr/bin/env python3
"""Many small images and idle uploads, for the jobs that must work through them in steps.

usage: push_many.py BASE REPO IMAGES UPLOADS USER PASSWORD

Pushes IMAGES images tagged t0 … t<IMAGES-1> into REPO, oldest first: one shared layer, and
per image its own config blob (monolithic POST ?digest=) and manifest. Then starts UPLOADS
uploads, each holding a few bytes, and leaves them idle. Exits non-zero, saying why, on any
answer the spec does not name.
"""
import hashlib
import json
import sys
import urllib.parse

from chunked_push import call, push_token  # the same client calls, in this directory

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def blob(base, repo, token, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    st, _, body = call("POST", f"{base}/v2/{repo}/blobs/uploads/?digest={digest}", token, data,
                       {"Content-Type": "application/octet-stream"})
    if st != 201:
        sys.exit(f"blob POST: {st} {body[:300]!r}")
    return {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)}


def main():
    base, repo, images, uploads, user, password = sys.argv[1:7]
    token = push_token(base, repo, user, password)

    layer = blob(base, repo, token, b"a layer every image shares\n")
    layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
    for i in range(int(images)):
        config = blob(base, repo, token, json.dumps({"image": i}).encode())
        config["mediaType"] = "application/vnd.oci.image.config.v1+json"
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                               "config": config, "layers": [layer]}).encode()
        st, _, body = call("PUT", f"{base}/v2/{repo}/manifests/t{i}", token, manifest,
                           {"Content-Type": MANIFEST})
        if st != 201:
            sys.exit(f"manifest PUT t{i}: {st} {body[:300]!r}")

    for i in range(int(uploads)):
        st, h, body = call("POST", f"{base}/v2/{repo}/blobs/uploads/", token, b"")
        if st != 202:
            sys.exit(f"upload POST: {st} {body[:300]!r}")
        loc = urllib.parse.urljoin(base + "/", h["Location"])
        st, _, body = call("PATCH", loc, token, f"idle {i}\n".encode(),
                           {"Content-Type": "application/octet-stream"})
        if st != 202:
            sys.exit(f"upload PATCH: {st} {body[:300]!r}")
    print(f"pushed {images} images and left {uploads} uploads idle in {repo}")


if __name__ == "__main__":
    main()
