#!/usr/bin/env python3
"""A front for `cargo lambda watch` that hands requests on the way AWS function URLs do.

usage: url_front.py LISTEN_PORT UPSTREAM_PORT

cargo-lambda 1.9.2's function-URL emulator differs from AWS in two ways that break docker
(not wharf): it keeps only the first value of a repeated header (docker sends one `Accept`
line per manifest type; AWS joins them with commas), and it decodes a body without
`Content-Type` as UTF-8 text and answers 500 for binary (docker's layer PATCH has no
`Content-Type`; AWS base64-encodes such bodies). This front joins repeated headers with
", ", gives a body without a type `application/octet-stream`, and passes everything else
through unchanged (chunked request bodies are de-chunked, as the emulator buffers them
anyway). Responses come back as they are.
"""
import http.client
import http.server
import sys

from relay import HOP, Server, read_body, send_back

UPSTREAM = ("127.0.0.1", int(sys.argv[2]))


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def relay(self):
        data = read_body(self)
        headers = {}
        for k in self.headers.keys():
            if k.lower() in HOP or k.lower() == "content-length" or k.lower() in headers:
                continue
            headers[k.lower()] = ", ".join(self.headers.get_all(k))
        if data and "content-type" not in headers:
            headers["content-type"] = "application/octet-stream"
        headers["content-length"] = str(len(data))
        up = http.client.HTTPConnection(*UPSTREAM, timeout=600)
        up.request(self.command, self.path, body=data, headers=headers)
        send_back(self, up.getresponse())
        up.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = relay


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Front).serve_forever()
