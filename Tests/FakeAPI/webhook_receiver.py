#!/usr/bin/env python3
"""A webhook receiver for the tests, checking every signature the way the
README tells a user to: HMAC-SHA256 of the raw body, keyed by the secret,
compared in constant time with X-Jobfetch-Signature.

Prints "PORT n" once listening on 127.0.0.1, then one line per request:
  DELIVERY <kind>/<id> <valid|INVALID> <answer> sha256=<body digest> headers=<names>
It answers 500 to the first delivery of each job whose ID contains
--fail-first (then 204), 302 to every delivery of a job whose ID contains
--redirect, and 204 otherwise.
"""
import argparse
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def signature_ok(secret: bytes, body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header or "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--fail-first", default="\0")
    ap.add_argument("--redirect", default="\0")
    args = ap.parse_args()
    with open(args.secret_file, "rb") as f:
        secret = f.read().rstrip(b"\n")
    seen = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            valid = signature_ok(secret, body, self.headers.get("X-Jobfetch-Signature"))
            try:
                job = json.loads(body)
                key = f"{job['kind']}/{job['id']}"
            except (ValueError, KeyError, TypeError):
                key = "?/?"
            answer = 204
            if args.fail_first in key and key not in seen:
                seen.add(key)
                answer = 500
            elif args.redirect in key:
                answer = 302
            names = ",".join(sorted(h.lower() for h in self.headers.keys()))
            print(f"DELIVERY {key} {'valid' if valid else 'INVALID'} {answer} "
                  f"sha256={hashlib.sha256(body).hexdigest()} headers={names}", flush=True)
            self.send_response(answer)
            if answer == 302:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
