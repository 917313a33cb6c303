#!/usr/bin/env python3
"""Local stand-ins for the five job APIs jobfetchd knows, plus a sixth
(custom) one and a second origin serving presigned result files.

Each API needs its credentials (401 otherwise), answers 404 for unknown
endpoints and behaves the way the real service does where the daemon can
tell. A job's behaviour is chosen by its ID prefix (see each route).

  dataset       GET /v0/datasets/{id}, /v0/datasets/{id}/csv   (x-api-key)
      done-N-*  processing for N polls, then completed (csv_url relative)
      err-*     processing once, then error with a reason
      flaky-*   first poll 503 + Retry-After: 1, then as done-1
      slow-*    completed at once; the CSV is streamed slowly
      gz-*      completed at once; the CSV is sent gzip-compressed
      missing-* always 404
      garbage-* K bodies that are not JSON (garbage-K-*), then as done-1
      nocsv-*   completed, but the CSV answers 404 twice (not ready yet)
      quota-*   completed, but the CSV answers 429 with X-RateLimit-Reset once
      fixlater-* processing, then error once; completed from then on (retry)
      delay-*   every status answer takes 0.3 s (for concurrency limits)
      ext-*     completed; csv_url is DATA_DIR/<id>.url (a file on another server)
      expiring-* as ext-*, presigned: X-Amz-Date is the poll's time, X-Amz-Expires=1
      redir-*   completed; the CSV answers 302 to DATA_DIR/<id>.url
      odd-*     a status value no mapping knows ("throttled") 3 times, then completed
    Hostile answers (SPEC "Hostile input"):
      hugeodd-* a different unknown status of 100 KiB with control characters
                on each of 3 polls, then completed
      ctrl-*    error, the reason full of terminal escapes, CR/LF, BEL, a NUL
      negexp-*  completed; csv_url presigned with X-Amz-Expires=-1e300
      zipchain-* completed; the CSV is a zip whose links chain out of the
                job directory (l -> ., l/m -> .., l/m/n -> ..) with files
                written "through" them
      trickle-* completed; the CSV trickles 1 KiB every 0.2 s for a minute
      ftpredir-* completed; the CSV answers 302 to an ftp:// URL
  bulk-job      GET /bulkjob/{id}/status                      (x-api-key)
      done-N-*  HTTP 202 InProgress for N polls, then 200 Success with a
                presigned gzipped JSONL url on the files origin
      inline-*  Success with raw_result and gql_errors (a JSON string)
      partial-* PartialSuccess with raw_result
      fail-*    Failure, gql_errors the reason;  expired-*: ResultsExpired
      empty202-* HTTP 202 with an empty body twice, then as done-0
  bulk-process  GET /v3/bulks/{id}, /v3/bulks/{id}/operations  (api-key + Bearer)
      done-*    RUNNING once, then COMPLETED; 250 operations in pages
      paused-*  SUBMITTED, PAUSED twice, then COMPLETED
      partial-* PARTIALLY_COMPLETED with operationStatusCounts
      fail-*    FAILED;  bad-*: HTTP 400 with syntaxErrors
      slowops-* as done-*, but each operations page takes 0.5 s
      bignum-*  as done-*, but every page says "count": 1e400
  export        GET /export/{id}/status, /export/{id}/file    (x-api-key)
      done-*    Pending (estimated_completion 1.5 s ahead), In Progress,
                then Successful with results and a download_url
      fail-*    Failed with error and failure_time
      eta-*     as done-*, but estimated_completion is the number 1e300
  job           GET /jobs/{id}, /jobs/{id}/download            (x-api-key)
      done-*    {"job": processing}, then success with response.url
      fail-*    failure, reason in response.detail
      nested-*  error, reason in response.response.error
  custom        GET /api/v2/tasks/{id}                         (x-api-key)
      done-*    WORKING, then DONE with output.href on the files origin
      fail-*    BROKEN with problem.text
  files origin  GET /files/{name}?X-Amz-Signature=...  (no credentials wanted)

Every request is printed to stdout as one line (REQ/FILE/STATUS/PAGE...),
so tests wait on events instead of sleeping. Listens on 127.0.0.1 only; the
ports are printed first: "FILES-PORT n", then "PORT n".
"""
import argparse
import gzip
import hashlib
import json
import os
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
COUNTS = {}
ACTIVE = [0]
SECRET_SIG = "sig-5ecret-do-not-log"


def log(line):
    with LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def bump(key):
    with LOCK:
        COUNTS[key] = COUNTS.get(key, 0) + 1
        return COUNTS[key]


def number_after(job_id, prefix, default):
    try:
        return int(job_id[len(prefix):].split("-")[0])
    except ValueError:
        return default


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def hostile_zip(job_id):
    """Links that chain out of the directory, then files written through them."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        def link(name, target):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
            z.writestr(info, target)
        link("l", ".")
        link("l/m", "..")
        link("l/m/n", "..")
        z.writestr("l/m/escaped-1.txt", b"written through l/m\n")
        z.writestr("l/m/n/escaped-2.txt", b"written through l/m/n\n")
        z.writestr("ok.csv", b"id,name\n1,first\n")
    return buf.getvalue()


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


def jsonl_body(job_id, n=40):
    lines = [json.dumps({"id": f"gid://item/{i}", "job": job_id, "title": f"item {i}"}) for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_body(self, code, body, ctype, headers=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code, obj, headers=None):
        self.send_body(code, json.dumps(obj).encode(), "application/json", headers)

    def has_credentials(self):
        return any(self.headers.get(h) for h in ("x-api-key", "api-key", "authorization"))


class FilesHandler(Base):
    """The second origin: an object store serving presigned URLs."""
    server_version = "FakeObjectStore/1.0"

    def do_GET(self):
        url = urlsplit(self.path)
        log(f"FILE GET {url.path} cred={'yes' if self.has_credentials() else 'no'}")
        if "X-Amz-Signature" not in parse_qs(url.query):
            return self.send_body(403, b"<Error><Code>AccessDenied</Code></Error>", "application/xml")
        name = url.path.rsplit("/", 1)[-1]
        job_id = name.split(".")[0]
        if name.endswith(".jsonl.gz"):
            return self.send_body(200, gzip.compress(jsonl_body(job_id)), "application/octet-stream")
        if name.endswith(".csv"):
            return self.send_body(200, csv_body(self.server.data_dir, job_id), "text/csv")
        return self.send_body(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")


class Handler(Base):
    server_version = "FakeJobAPI/1.0"

    def presigned(self, name):
        return (f"http://127.0.0.1:{self.server.files_port}/files/{name}"
                f"?X-Amz-Expires=3600&X-Amz-Signature={SECRET_SIG}")

    def do_GET(self):
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        parts = path.strip("/").split("/")
        key = self.server.api_key
        if parts[:2] == ["v3", "bulks"]:
            authed = self.headers.get("api-key") == key and self.headers.get("authorization") == f"Bearer {key}-bearer"
        else:
            authed = self.headers.get("x-api-key") == key
        log(f"REQ GET {path} key={'yes' if authed else 'no'}")
        if not authed:
            return self.send_json(401, {"error": "invalid or missing API key"})
        if parts[:2] == ["v0", "datasets"] and len(parts) == 3:
            return self.dataset_status(parts[2])
        if parts[:2] == ["v0", "datasets"] and len(parts) == 4 and parts[3] == "csv":
            return self.dataset_csv(parts[2])
        if parts[0] == "bulkjob" and len(parts) == 3 and parts[2] == "status":
            return self.bulk_job(parts[1])
        if parts[:2] == ["v3", "bulks"] and len(parts) == 3:
            return self.bulk_process(parts[2])
        if parts[:2] == ["v3", "bulks"] and len(parts) == 4 and parts[3] == "operations":
            return self.operations(parts[2], query)
        if parts[0] == "export" and len(parts) == 3 and parts[2] == "status":
            return self.export(parts[1])
        if parts[0] == "export" and len(parts) == 3 and parts[2] == "file":
            return self.send_body(200, csv_body(self.server.data_dir, parts[1]), "text/csv",
                                  {"Content-Disposition": f'attachment; filename="{parts[1]}-export.csv"'})
        if parts[0] == "jobs" and len(parts) == 2:
            return self.job(parts[1])
        if parts[0] == "jobs" and len(parts) == 3 and parts[2] == "download":
            return self.send_body(200, jsonl_body(parts[1], 3), "application/x-ndjson")
        if parts[:3] == ["api", "v2", "tasks"] and len(parts) == 4:
            return self.custom(parts[3])
        return self.send_json(404, {"error": "no such endpoint"})

    # dataset ---------------------------------------------------------------

    def dataset_status(self, job_id):
        log(f"T {time.time():.4f} {job_id}")
        if job_id.startswith("delay-"):
            with LOCK:
                ACTIVE[0] += 1
                active = ACTIVE[0]
            log(f"CONCURRENT {active}")
            time.sleep(0.3)
            with LOCK:
                ACTIVE[0] -= 1
        n = bump(("dataset", job_id))
        doc = {"id": job_id, "created_at": "2026-11-22T10:00:00Z", "extra": None}
        if job_id.startswith("missing-"):
            return self.send_json(404, {"error": f"dataset job {job_id} not found"})
        if job_id.startswith("flaky-") and n == 1:
            return self.send_json(503, {"error": "overloaded"}, {"Retry-After": "1"})
        garbage = number_after(job_id, "garbage-", 1) if job_id.startswith("garbage-") else 0
        if n <= garbage:
            return self.send_body(200, b"<html>502 Bad Gateway</html>", "text/html")
        wait = 0
        if job_id.startswith("done-"):
            wait = number_after(job_id, "done-", 1)
        elif job_id.startswith(("err-", "garbage-", "fixlater-")):
            wait = 1
        if job_id.startswith("flaky-"):
            n -= 1
        n -= garbage
        if job_id.startswith("odd-") and n <= 3:
            doc.update(status="throttled", csv_url=None)
        elif job_id.startswith("hugeodd-") and n <= 3:
            doc.update(status=f"weird-{n}-\x1b[31m\r\n" + "x" * (100 * 1024), csv_url=None)
        elif job_id.startswith("ctrl-"):
            reason = ("bad\x00tail \x1b]0;pwned\x07\x1b[2J\x1b[1A\rFAKE LINE\n\u009b31m\u202egnp.exe " + "y" * 5000)
            doc.update(status="error", error=reason, csv_url=None)
        elif n <= wait:
            doc.update(status="processing", progress=round(n / (wait + 1), 2), csv_url=None)
        elif job_id.startswith("err-") or (job_id.startswith("fixlater-") and n == wait + 1):
            doc.update(status="error", error="collection failed: the source site refused access", csv_url=None)
        else:
            doc.update(status="completed", progress=1.0, rows=50, csv_url=f"/v0/datasets/{job_id}/csv")
            if job_id.startswith(("ext-", "expiring-")):
                doc["csv_url"] = self.external_url(job_id)
            if job_id.startswith("negexp-"):
                doc["csv_url"] = (f"/v0/datasets/{job_id}/csv?X-Amz-Date=20261122T100240Z&X-Amz-Expires=-1e300"
                                  f"&X-Amz-Signature={SECRET_SIG}")
            if job_id.startswith("expiring-"):
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                doc["csv_url"] += f"?X-Amz-Date={stamp}&X-Amz-Expires=1&X-Amz-Signature={SECRET_SIG}"
        shown = doc["status"] if len(doc["status"]) < 100 else doc["status"][:12].encode("unicode_escape").decode() + "..."
        log(f"STATUS {job_id} {shown}")
        return self.send_json(200, doc)

    def external_url(self, job_id):
        with open(os.path.join(self.server.data_dir, job_id + ".url")) as f:
            return f.read().strip()

    def dataset_csv(self, job_id):
        n = bump(("csv", job_id))
        if job_id.startswith("redir-"):
            log(f"CSV-302 {job_id}")
            return self.send_body(302, b"", "text/plain", {"Location": self.external_url(job_id)})
        if job_id.startswith("nocsv-") and n <= 2:
            log(f"CSV-404 {job_id}")
            return self.send_json(404, {"error": "the CSV is not ready yet"})
        if job_id.startswith("ftpredir-"):
            log(f"CSV-302 {job_id}")
            return self.send_body(302, b"", "text/plain", {"Location": "ftp://127.0.0.1/pub/result.csv"})
        if job_id.startswith("zipchain-"):
            log(f"CSV-ZIP {job_id}")
            return self.send_body(200, hostile_zip(job_id), "application/zip",
                                  {"Content-Disposition": f'attachment; filename="{job_id}.zip"'})
        if job_id.startswith("trickle-"):
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(300 * 1024))
            self.end_headers()
            log(f"CSV-START {job_id} trickle")
            try:
                for _ in range(300):
                    self.wfile.write(b"t" * 1024)
                    self.wfile.flush()
                    time.sleep(0.2)
                log(f"CSV-END {job_id}")
            except (BrokenPipeError, ConnectionResetError):
                log(f"CSV-ABORT {job_id}")
            return
        if job_id.startswith("liar-"):
            return self.lying_ranges(job_id, n)
        if job_id.startswith("badhdr-") and n == 1:
            # badhdr-nul / badhdr-huge: a first answer libcurl cannot read as HTTP.
            mode = job_id.split("-")[1]
            bad = (b'Content-Disposition: attachment; filename="a\x00b.csv"\r\n' if mode == "nul"
                   else b"X-Huge: " + b"a" * (200 * 1024) + b"\r\n")
            log(f"CSV-BADHDR {job_id}")
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 8\r\n" + bad + b"\r\npayload\n")
            return
        if job_id.startswith("quota-") and n == 1:
            log(f"CSV-429 {job_id}")
            return self.send_json(429, {"error": "download quota exhausted"}, {"X-RateLimit-Reset": str(int(time.time()) + 2)})
        body = csv_body(self.server.data_dir, job_id)
        name, ctype = f"{job_id}.csv", "text/csv"
        if job_id.startswith("gz-"):
            body, name, ctype = gzip.compress(body), name + ".gz", "application/gzip"
        if job_id.startswith("gzjobjson-"):  # decompressed, its name would be the report's
            body, name, ctype = gzip.compress(body), "job.json.gz", "application/gzip"
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

    def lying_ranges(self, job_id, n):
        """liar-<mode>-N: a 256 KiB CSV whose first answer breaks off halfway;
        the resume's answer lies as <mode> says (shortrange: a 206 that stops
        1000 bytes on; longbody: a 206 with 700 bytes of garbage past the
        object's end; noetag: a 206 without the ETag, of another object;
        lie416: a 416 giving the length the client has); whole answers after
        the first are honest. Logs LIAR-SHA with the object's sha256."""
        mode = job_id.split("-")[1]
        rows, i = ["id,value"], 0
        while sum(len(r) + 1 for r in rows) < 256 * 1024:
            rows.append(f"{i},{hashlib.sha256(f'{job_id}:{i}'.encode()).hexdigest()}")
            i += 1
        body = ("\n".join(rows) + "\n").encode()
        if n == 1:
            log(f"LIAR-SHA {job_id} {hashlib.sha256(body).hexdigest()}")
        rng = self.headers.get("Range")
        common = {"ETag": '"v1"', "Accept-Ranges": "bytes", "Content-Disposition": f'attachment; filename="{job_id}.csv"'}
        if rng is None:
            self.send_response(200)
            for k, v in common.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            log(f"LIAR-200 {job_id}")
            self.wfile.write(body if n > 1 else body[:len(body) // 2])
            self.wfile.flush()
            if n == 1:
                self.close_connection = True
            return
        a = int(rng.split("=")[1].split("-")[0])
        log(f"LIAR-RANGE {job_id} {a}")
        total = len(body)
        if mode == "lie416":
            return self.send_body(416, b"", "text/plain", {"Content-Range": f"bytes */{a}"})
        if mode == "noetag":
            other = bytes(reversed(body))
            headers = {"Content-Range": f"bytes {a}-{total - 1}/{total}"}
            return self.send_body(206, other[a:], "text/csv", headers)
        if mode == "shortrange":
            headers = dict(common, **{"Content-Range": f"bytes {a}-{a + 999}/{total}"})
            return self.send_body(206, body[a:a + 1000], "text/csv", headers)
        headers = dict(common, **{"Content-Range": f"bytes {a}-{total - 1}/{total}"})
        return self.send_body(206, body[a:] + b"GARBAGE" * 100, "text/csv", headers)

    # bulk-job (BulkJobStatusResponse) ----------------------------------------

    def bulk_job(self, job_id):
        n = bump(("bulkjob", job_id))
        doc = {"id": job_id, "status": "InProgress", "progress": 0.5, "url": None, "raw_result": None,
               "gql_errors": None, "created_at": "2026-11-22T10:00:00.000Z", "object_count": None}
        code = 200
        gql = json.dumps([{"message": "Field 'sku' doesn't exist on type 'Product'",
                           "locations": [{"line": 3, "column": 5}], "path": ["products", "sku"]}])
        if job_id.startswith("empty202-") and n <= 2:
            log(f"STATUS {job_id} 202 (empty)")
            return self.send_body(202, b"", "application/json")
        if job_id.startswith("empty202-"):
            doc.update(status="Success", progress=1.0, raw_result="{}\n")
        elif job_id.startswith("done-") and n <= number_after(job_id, "done-", 1):
            code = 202
        elif job_id.startswith("done-"):
            doc.update(status="Success", progress=1.0, object_count=40, url=self.presigned(f"{job_id}.jsonl.gz"))
        elif job_id.startswith("inline-"):
            doc.update(status="Success", progress=1.0, raw_result=jsonl_body(job_id, 3).decode(), gql_errors=gql)
        elif job_id.startswith("partial-"):
            doc.update(status="PartialSuccess", progress=1.0, raw_result=jsonl_body(job_id, 2).decode(), gql_errors=gql)
        elif job_id.startswith("fail-"):
            doc.update(status="Failure", gql_errors=json.dumps([{"message": "Query cost 12000 exceeds the maximum of 10000"}]))
        elif job_id.startswith("expired-"):
            doc.update(status="ResultsExpired")
        log(f"STATUS {job_id} {code} {doc['status']}")
        return self.send_json(code, doc)

    # bulk-process (GET /bulks/{id}, v3) -------------------------------------

    def bulk_process(self, job_id):
        n = bump(("bulks", job_id))
        if job_id.startswith("bad-"):
            log(f"STATUS {job_id} 400")
            return self.send_json(400, {"message": "The bulk request is invalid", "syntaxErrors": {"invalidFields": [
                {"field": "operations[3].price", "error": "must be a positive number"},
                {"field": "operations[7].sku", "error": "must not be empty"}]}})
        doc = {"bulkId": job_id, "status": "RUNNING", "createdAt": "2026-11-22T10:00:00Z", "operationsCount": 250}
        if job_id.startswith("paused-"):
            doc["status"] = ["SUBMITTED", "PAUSED", "PAUSED"][n - 1] if n <= 3 else "COMPLETED"
        elif n >= 2:
            if job_id.startswith("partial-"):
                doc.update(status="PARTIALLY_COMPLETED", operationStatusCounts={"SUCCESS": 240, "FAILED": 10})
            elif job_id.startswith("fail-"):
                doc.update(status="FAILED", message="the bulk process was aborted: catalog locked")
            else:
                doc.update(status="COMPLETED", operationStatusCounts={"SUCCESS": 250})
        log(f"STATUS {job_id} {doc['status']}")
        return self.send_json(200, doc)

    def operations(self, job_id, query):
        offset = int(query.get("offset", ["0"])[0])
        limit = min(int(query.get("limit", ["50"])[0]), 100)
        total = 250
        ops = [{"operationId": f"{job_id}-op-{i}", "status": "FAILED" if i % 25 == 0 and job_id.startswith("partial-") else "SUCCESS",
                "sku": f"SKU-{i:04d}", "errors": None} for i in range(offset, min(offset + limit, total))]
        log(f"PAGE {job_id} {offset} {limit}")
        if job_id.startswith("slowops-"):
            time.sleep(0.5)
        if job_id.startswith("bignum-"):
            body = json.dumps({"operations": ops, "count": 0, "responseCount": len(ops)}).replace('"count": 0', '"count": 1e400')
            return self.send_body(200, body.encode(), "application/json")
        return self.send_json(200, {"operations": ops, "count": total, "responseCount": len(ops)})

    # export (ExportStatus) -------------------------------------------------

    def export(self, job_id):
        n = bump(("export", job_id))
        now = time.time()
        doc = {"export_id": job_id, "status": "Pending", "created_time": iso(now - 5), "estimated_completion": None,
               "results": None, "error": None, "failure_time": None, "download_url": None}
        if n == 1 and job_id.startswith("eta-"):
            doc["estimated_completion"] = 0
        elif n == 1:
            doc["estimated_completion"] = iso(now + 1.5)
        elif n == 2:
            doc["status"] = "In Progress"
        elif job_id.startswith("fail-"):
            doc.update(status="Failed", error="export aborted: source space was archived", failure_time=iso(now - 1))
        else:
            doc.update(status="Successful", results={"successful": 98, "warnings": 2, "errors": 0},
                       download_url=f"/export/{job_id}/file")
        log(f"STATUS {job_id} {doc['status']} at={now:.3f} eta={doc['estimated_completion']}")
        if n == 1 and job_id.startswith("eta-"):
            body = json.dumps(doc).replace('"estimated_completion": 0', '"estimated_completion": 1e300')
            return self.send_body(200, body.encode(), "application/json")
        return self.send_json(200, doc)

    # job (JobSchema) ----------------------------------------------------------

    def job(self, job_id):
        n = bump(("jobs", job_id))
        inner = {"id": job_id, "status": "processing", "created": 1763805600, "response": None}
        if n >= 2:
            if job_id.startswith("fail-"):
                inner.update(status="failure", response={"error": None, "detail": "worker crashed: out of memory"})
            elif job_id.startswith("nested-"):
                inner.update(status="error", response={"response": {"error": "upstream timeout after 300s"}})
            else:
                inner.update(status="success", response={"url": f"/jobs/{job_id}/download", "rows": 3, "format": "jsonl"})
        log(f"STATUS {job_id} {inner['status']}")
        return self.send_json(200, {"job": inner})

    # a sixth API, mapped purely in the config ------------------------------

    def custom(self, job_id):
        n = bump(("tasks", job_id))
        task = {"state": "WORKING", "percent": 40, "output": None, "problem": None, "notes": []}
        if n >= 2:
            if job_id.startswith("fail-"):
                task.update(state="BROKEN", problem={"text": "renderer ran out of disk"})
            else:
                task.update(state="DONE", percent=100, output={"href": self.presigned(f"{job_id}.csv")},
                            notes=["2 rows were truncated"])
        log(f"STATUS {job_id} {task['state']}")
        return self.send_json(200, {"data": {"task": task}, "meta": {"api": "v2"}})


class Server(ThreadingHTTPServer):
    # A real API's listen backlog is large; the default 5 drops the SYNs of
    # several daemons' hundreds of connections at once (connect timeouts).
    request_queue_size = 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    files = Server(("127.0.0.1", 0), FilesHandler)
    files.daemon_threads = True
    files.data_dir = args.data_dir
    server = Server(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.api_key = args.api_key
    server.data_dir = args.data_dir
    server.files_port = files.server_address[1]
    threading.Thread(target=files.serve_forever, daemon=True).start()
    log(f"FILES-PORT {files.server_address[1]}")
    log(f"PORT {server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
