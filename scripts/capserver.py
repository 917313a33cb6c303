#!/usr/bin/env python3
"""A file server that caps every TCP connection at a fixed rate.

nginx's `limit_rate` is per request and lets each request send one second's
worth at once (its allowance is rate x (elapsed + 1)), so a client that
splits a download into many short requests is not held to the cap at all.
Object stores and CDNs that cap a connection hold it to the cap whatever it
asks; this server does the same, so the benchmark compares jobfetchd's
pieces with aria2's four long ranges fairly.

Serves WWW/NAME as /capped/NAME: GET and HEAD, one `Range: bytes=A-B` (or
`A-`) honoured when `If-Range` is absent or matches, a strong ETag,
Last-Modified, Accept-Ranges, keep-alive. Each connection has a token
bucket two chunks deep (256 KiB, 10 ms at 25 MB/s): over any time T a
connection sends at most RATE x T + 256 KiB, idle or not. One chunk deep,
as this server first was, it lost the tokens of every wake-up of its
thread later than due, and its threads wake later the busier the
machine's two cores are: a client that decompresses and hashes while it
downloads (jobfetchd) got 24.1 MB/s of the 25, one that only downloads
(aria2) 24.5, a difference a server on another machine would not make.
Appends `PATH STATUS SENT CLIENT_PORT BEGAN ENDED WALL` to LOG when a request
ends (or its client goes); BEGAN and ENDED are this server's monotonic
clock, WALL the end on the wall clock (to set beside the daemon's log).

Usage: capserver.py WWW RATE_BYTES_PER_SECOND LOG   (prints "PORT n")
"""
import os
import re
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

WWW, RATE, LOG = sys.argv[1], float(sys.argv[2]), sys.argv[3]
CHUNK = 128 << 10
DEPTH = 2 * CHUNK
log_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.tokens, self.last = 0.0, time.monotonic()

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.serve(False)

    def do_GET(self):
        self.serve(True)

    def serve(self, body):
        self.began = time.monotonic()
        path = unquote(urlsplit(self.path).path)
        name = path[len("/capped/"):] if path.startswith("/capped/") else ""
        fpath = os.path.join(WWW, name)
        if not name or "/" in name or not os.path.isfile(fpath):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        st = os.stat(fpath)
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        modified = formatdate(st.st_mtime, usegmt=True)
        start, end, status = 0, size - 1, 200
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", (rng or "").strip())
        if m and (if_range is None or if_range in (etag, modified)):
            start = int(m.group(1))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.note(path, 416, 0)
                return
            end = min(size - 1, int(m.group(2))) if m.group(2) else size - 1
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", modified)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        self.wfile.flush()
        if not body:
            return
        sent = 0
        try:
            with open(fpath, "rb") as f:
                offset, left = start, end - start + 1
                while left > 0:
                    now = time.monotonic()
                    self.tokens = min(DEPTH, self.tokens + (now - self.last) * RATE)
                    self.last = now
                    want = min(left, CHUNK)
                    if self.tokens < want:
                        time.sleep((want - self.tokens) / RATE)
                        continue
                    n = os.sendfile(self.connection.fileno(), f.fileno(), offset, want)
                    if n == 0:
                        break
                    self.tokens -= n
                    offset, left, sent = offset + n, left - n, sent + n
        except OSError:
            self.close_connection = True
        finally:
            self.note(path, status, sent)

    def note(self, path, status, sent):
        with log_lock, open(LOG, "a") as log:
            log.write(f"{path} {status} {sent} {self.client_address[1]} {self.began:.4f} {time.monotonic():.4f} {time.time():.4f}\n")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
