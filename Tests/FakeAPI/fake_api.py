#!/usr/bin/env python3
"""A local stand-in for the dataset collection API (GetDatasetJobStatus200Response).

It behaves like the real service where the daemon can tell: it needs the
x-api-key header (401 otherwise), answers 404 for unknown jobs, 503 with
Retry-After when overloaded, and serves csv_url relative to the status URL
with the same auth. A job's behaviour is chosen by its ID prefix:

  done-N-*   processing for N polls (progress rising), then completed
  err-*      processing once, then error with a reason
  flaky-*    first poll 503 + Retry-After: 1, then as done-1
  slow-*     completed at once; the CSV is streamed slowly (for kill -9 tests)
  gz-*       completed at once; the CSV is sent gzip-compressed
  missing-*  always 404
  garbage-*  a body that is not JSON, then as done-1 (garbage-K-*: K such bodies)
  anything else: completed at the first poll

The CSV body is DATA_DIR/<id>.csv when that file exists, else generated.
Every request is printed to stdout as one line, so tests wait on events
instead of sleeping. Listens on 127.0.0.1 only; the port is printed first.
"""
import argparse
import gzip
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
POLLS = {}


def log(line):
    with LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def csv_body(data_dir, job_id):
    path = os.path.join(data_dir, job_id + ".csv") if data_dir else None
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    rows = ["id,name,score"]
    n = 20000 if job_id.startswith("slow-") else 50
    for i in range(n):
        h = hashlib.sha256(f"{job_id}:{i}".encode()).hexdigest()
        rows.append(f"{i},{h[:12]},{int(h[12:16], 16) % 1000}")
    return ("\n".join(rows) + "\n").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeDatasetAPI/1.0"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        authed = self.headers.get("x-api-key") == self.server.api_key
        log(f"REQ GET {path} key={'yes' if authed else 'no'}")
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "v0" or parts[1] != "datasets":
            return self.send_json(404, {"error": "no such endpoint"})
        if not authed:
            return self.send_json(401, {"error": "invalid or missing API key"})
        job_id = parts[2]
        if len(parts) == 4 and parts[3] == "csv":
            return self.serve_csv(job_id)
        if len(parts) != 3:
            return self.send_json(404, {"error": "no such endpoint"})
        return self.serve_status(job_id)

    def serve_status(self, job_id):
        with LOCK:
            POLLS[job_id] = POLLS.get(job_id, 0) + 1
            n = POLLS[job_id]
        doc = {"id": job_id, "created_at": "2026-11-22T10:00:00Z", "extra": None}
        if job_id.startswith("missing-"):
            return self.send_json(404, {"error": f"dataset job {job_id} not found"})
        if job_id.startswith("flaky-") and n == 1:
            return self.send_json(503, {"error": "overloaded"}, {"Retry-After": "1"})
        garbage = 0
        if job_id.startswith("garbage-"):
            try:
                garbage = int(job_id.split("-")[1])
            except (IndexError, ValueError):
                garbage = 1
        if n <= garbage:
            body = b"<html>502 Bad Gateway</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        wait = 0
        if job_id.startswith("done-"):
            try:
                wait = int(job_id.split("-")[1])
            except (IndexError, ValueError):
                wait = 1
        elif job_id.startswith(("flaky-", "err-", "garbage-")):
            wait = 1 if not job_id.startswith("flaky-") else 0
        if job_id.startswith("flaky-"):
            n -= 1
        n -= garbage
        if n <= wait:
            doc.update(status="processing", progress=round(n / (wait + 1), 2), csv_url=None)
        elif job_id.startswith("err-"):
            doc.update(status="error", error="collection failed: the source site refused access", csv_url=None)
        else:
            doc.update(status="completed", progress=1.0, rows=50, csv_url=f"/v0/datasets/{job_id}/csv")
        log(f"STATUS {job_id} {doc['status']}")
        return self.send_json(200, doc)

    def serve_csv(self, job_id):
        body = csv_body(self.server.data_dir, job_id)
        name = f"{job_id}.csv"
        ctype = "text/csv"
        if job_id.startswith("gz-"):
            body = gzip.compress(body)
            name += ".gz"
            ctype = "application/gzip"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Disposition", f'attachment; filename="{name}"')
        self.end_headers()
        log(f"CSV-START {job_id} {len(body)}")
        try:
            if job_id.startswith("slow-"):
                step = 16 * 1024
                for i in range(0, len(body), step):
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                    time.sleep(0.05)
            else:
                self.wfile.write(body)
            log(f"CSV-END {job_id}")
        except (BrokenPipeError, ConnectionResetError):
            log(f"CSV-ABORT {job_id}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.api_key = args.api_key
    server.data_dir = args.data_dir
    log(f"PORT {server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
