"""What the test and benchmark HTTP relays share (url_front.py, bench/s3_count_proxy.py):
reading a request body whole, handing an upstream response back, a threaded server."""
import http.server
import socketserver

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-connection"}


def read_body(handler):
    """The request body of a BaseHTTPRequestHandler, de-chunked if it came chunked."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()
    n = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(n) if n else b""


def send_back(handler, resp):
    """Answers with an http.client response as it is: status, end-to-end headers, body
    (a HEAD keeps the upstream Content-Length)."""
    payload = resp.read()
    handler.send_response_only(resp.status, resp.reason)
    for k, v in resp.getheaders():
        if k.lower() not in HOP and k.lower() != "content-length":
            handler.send_header(k, v)
    length = resp.getheader("Content-Length")
    if handler.command == "HEAD" and length is not None:
        handler.send_header("Content-Length", length)
    else:
        handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
