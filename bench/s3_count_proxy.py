#!/usr/bin/env python3
"""A pass-through in front of an S3 endpoint that counts requests by S3 operation.

usage: s3_count_proxy.py LISTEN_PORT UPSTREAM_PORT

Requests are relayed byte for byte (headers, including Host, unchanged, so SigV4 still
verifies upstream). Each is counted under its S3 operation name, with presigned requests
(a query signature, no Authorization header: a client following a 307) counted apart as
`presigned:GetObject` etc. `GET /__counts` answers the counts as JSON and resets them;
it is not relayed. Used by bench/aws.sh to count the S3 calls of wharf and of Distribution
the same way, and the S3 GETs their clients make on the presigned URLs.
"""
import http.client
import http.server
import json
import os
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from relay import HOP, Server, read_body, send_back  # noqa: E402

UPSTREAM = ("127.0.0.1", int(sys.argv[2]))
COUNTS = {}
LOCK = threading.Lock()


def operation(method, path, query, headers):
    q = urllib.parse.parse_qs(query, keep_blank_values=True)
    key = path.strip("/").partition("/")[2]  # path style: /bucket/key
    if method == "GET":
        if not key:
            return "ListObjects" if "list-type" not in q else "ListObjectsV2"
        return "ListParts" if "uploadId" in q else "GetObject"
    if method == "HEAD":
        return "HeadObject" if key else "HeadBucket"
    if method == "PUT":
        if "partNumber" in q:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        if not key:
            return "CreateBucket"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
        if "delete" in q:
            return "DeleteObjects"
        return "POST"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    return method


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def relay(self):
        path, _, query = self.path.partition("?")
        if path == "/__counts":
            with LOCK:
                payload = json.dumps(COUNTS, sort_keys=True).encode()
                COUNTS.clear()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        data = read_body(self)
        lower = {k.lower() for k in self.headers.keys()}
        op = operation(self.command, path, query, lower)
        if "authorization" not in lower and "X-Amz-Signature" in query:
            op = "presigned:" + op
        with LOCK:
            COUNTS[op] = COUNTS.get(op, 0) + 1
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP]
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            headers.append(("Content-Length", str(len(data))))
        up = http.client.HTTPConnection(*UPSTREAM, timeout=600)
        up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            up.putheader(k, v)
        up.endheaders(data if data else None)
        send_back(self, up.getresponse())
        up.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = relay


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Proxy).serve_forever()
