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
import socketserver
import sys
import threading
import urllib.parse

UPSTREAM = ("127.0.0.1", int(sys.argv[2]))
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-connection"}
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

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

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
        data = self.body()
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
        resp = up.getresponse()
        payload = resp.read()
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        length = resp.getheader("Content-Length")
        if self.command == "HEAD" and length is not None:
            self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        up.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = relay


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Proxy).serve_forever()
