#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora, Fuzz/Corpus/<Target>/.

Deterministic (gzip mtime 0, fixed zip dates), so running it again changes
nothing unless this script or Tests/Fixtures changed. Run from anywhere:
    python3 Fuzz/make-seeds.py
The corpora are committed; Fuzz/run.sh fuzzes a copy of them.
"""
import gzip
import io
import os
import shutil
import zipfile
import zlib

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "Corpus")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")

# Preset.names, in order: the StatusReader target's first byte picks one (byte % 6).
PRESETS = ["bulk-job", "dataset", "bulk-process", "export", "job", "custom"]


def target(name):
    d = os.path.join(CORPUS, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def write(d, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixtures():
    """(preset directory, file name, bytes) of every status document fixture."""
    out = []
    for preset in sorted(os.listdir(FIXTURES)):
        pdir = os.path.join(FIXTURES, preset)
        if not os.path.isdir(pdir):
            continue
        for name in sorted(os.listdir(pdir)):
            with open(os.path.join(pdir, name), "rb") as f:
                out.append((preset, name, f.read()))
    return out


# Numbers a server may send that no Double or Int holds, or only just.
EXTREME_JSON = {
    "count-1e400.json": '{"count": 1e400}',
    "estimated-completion-1e300.json": '{"status": "Pending", "estimated_completion": 1e300}',
    "estimated-completion-minus-1e300.json": '{"status": "Pending", "estimated_completion": -1e300}',
    "estimated-completion-1e400.json": '{"status": "In Progress", "estimated_completion": 1e400}',
    "estimated-completion-string.json": '{"status": "Pending", "estimated_completion": "99999-01-01T00:00:00Z"}',
    "progress-huge.json": '{"status": "running", "progress": 1e309}',
    "page-total-huge.json": '{"status": "COMPLETED", "count": 1e300, "operations": []}',
    "unicode.json": '{"s": "\\u00e9\\ud83d\\ude00\\u0000\\n", "k\\"": [true, false, null, -0.0e-0]}',
    "nested.json": "[" * 40 + "]" * 40,
}


def json_seeds():
    d = target("FuzzJSON")
    for preset, name, data in fixtures():
        write(d, f"{preset}-{name}", data)
    for name, text in EXTREME_JSON.items():
        write(d, name, text)


def status_seeds():
    d = target("FuzzStatusReader")
    for preset, name, data in fixtures():
        index = PRESETS.index(preset) if preset in PRESETS else 5
        write(d, f"{preset}-{name}", str(index).encode() + data)
    for name, text in EXTREME_JSON.items():
        for index in (0, 2, 3):  # bulk-job, bulk-process, export
            write(d, f"{PRESETS[index]}-{name}", str(index) + text)


def config_seeds():
    d = target("FuzzConfig")
    with open(os.path.join(ROOT, "daemon.conf"), "rb") as f:
        write(d, "daemon.conf", f.read())
    write(d, "minimal.conf", "[kind a]\npreset = dataset\nstatus_url = https://api.example.com/v1/datasets/{id}\n")
    write(d, "references.conf",
          "[daemon]\nmax_output_size = 5G\nconnect_timeout = 500ms\n"
          "[kind b]\npreset = bulk-process\nstatus_url = https://h.example/bulks/{id}\n"
          "header = x-api-key: ${credential:api-key}\nheader = Authorization: Bearer ${env:TOKEN}\n"
          "rate_limit = 5/2s\npoll_interval = 10s\nmax_poll_interval = 1h\n"
          "pages_url = {status_url}/operations?offset={offset}&limit={limit}\n"
          "pages_items_field = /operations\npage_size = 250\n")
    write(d, "custom.conf",
          "[kind c]\npreset = custom\nstatus_url = http://127.0.0.1:8080/{id}\nallow_insecure_http = yes\n"
          "status_field = /state\nrunning = queued, running\nsuccess = done\nfailure = failed\n"
          "result_url_field = /result/url\nerror_field = /error, /errors\n")


def spool_seeds():
    # Byte 0: length of the file's name, then the name, then the contents.
    d = target("FuzzSpoolFile")
    def seed(name, contents):
        n = name.encode()
        return bytes([len(n)]) + n + contents.encode()
    write(d, "list", seed("batch-1", "job-1\njob-2\n# a comment\n\n  job:3  \r\njob-1\n"))
    write(d, "empty-file-name-is-id", seed("bj_01HZX3K9Q2", ""))
    write(d, "bad-lines", seed("x", "../etc/passwd\n.hidden\nok.id\n" + "a" * 201 + "\nsp ace\n\u00e9\n"))
    write(d, "comments-only", seed("y", "# nothing\n\n"))


URLS = {
    "absolute-relative": "https://api.example.com/v1/jobs/123?x=1\n../results/out.csv",
    "amz-presigned": "https://api.example.com/v1/jobs/1\n"
    "https://bucket.s3.amazonaws.com/r.jsonl.gz?X-Amz-Date=20261122T100240Z&X-Amz-Expires=900&X-Amz-Signature=ab",
    "amz-expires-minus-1e300": "https://h.example/\n"
    "https://b.example/r?X-Amz-Date=20261122T100240Z&X-Amz-Expires=-1e300&X-Amz-Signature=ab",
    "goog": "https://h.example/\nhttps://storage.googleapis.com/b/o?X-Goog-Date=20261122T100240Z&X-Goog-Expires=3600",
    "expires-1e400": "https://h.example/\nhttps://d111.cloudfront.net/r.csv?Expires=1e400&Signature=x&Key-Pair-Id=K",
    "azure-se": "https://h.example/\nhttps://a.blob.core.windows.net/c/r.csv?sv=2022-11-02&se=2026-11-22T10%3A00%3A00Z&sig=abc",
    "userinfo-fragment": "http://user:pass@127.0.0.1:8080/a/b?q#frag\n//other.example:8443/x?y#z",
    "protocol-relative-ipv6": "https://[::1]:9/\n/abs/path?q=%2F",
    "query-only": "https://h.example/a/b/c\n?page=2",
}

HEADERS = {
    # First line: the download's URL; then header values / lines.
    "content-range": "https://h.example/files/result.csv\nbytes 100-199/1000\nbytes */1000\nbytes 0-0/*\n"
    "Content-Range: bytes 9223372036854775806-9223372036854775807/9223372036854775807",
    "content-disposition": "https://h.example/dl?id=1\nattachment; filename=\"report.csv\"\n"
    "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%20final.json; filename=\"fallback.json\"\n"
    "inline; filename=\"..\\\\..\\\\job.json\"\nContent-Type: application/x-ndjson; charset=utf-8",
    "retry-after": "https://h.example/\n120\nSun, 06 Nov 1994 08:49:37 GMT\nretry-after: Wed, 21 Oct 2026 07:28:00 GMT\n"
    "x-ratelimit-reset: 1795000060\nratelimit-reset: 1e300\n-1",
    "names": "https://h.example/a/.hidden.part\n.artifact.part\njob.json\n_.x\n" + "n" * 300 + "\napplication/gzip",
}

TIMESTAMPS = {
    "amz": "https://b.example/r?X-Amz-Date=20261122T100240Z&X-Amz-Expires=900",
    "amz-minus-1e300": "https://b.example/r?X-Amz-Date=20261122T100240Z&X-Amz-Expires=-1e300",
    "expires-1e400": "https://d.example/r?Expires=1e400&Signature=x",
    "expires": "https://d.example/r?Expires=1795000000&Signature=x",
    "se": "https://a.example/c?se=2026-11-22T10%3A00%3A00Z&sig=x",
    "se-offset": "https://a.example/c?se=2026-11-22T10:00:00.123+05:30",
    "rfc3339": "2026-11-22T10:00:00.5-00:30",
    "rfc3339-space": "9999-12-31 23:59:60z",
    "unix": "1795000000",
}


def text_seeds(name, seeds):
    d = target(name)
    for k, v in seeds.items():
        write(d, k, v)


def inflate_seeds():
    # Byte 0: format (0 gzip, 1 zlib, 2 deflate, 3 sniff); byte 1: how many
    # piece sizes follow (mod 16); then the sizes; then the compressed body.
    d = target("FuzzInflate")
    text = b"id,status\n" + b"".join(b"%d,ok\n" % i for i in range(40))
    gz = gzip.compress(text, mtime=0)
    gz2 = gzip.compress(b"first member\n", mtime=0) + gzip.compress(b"second member\n", mtime=0)
    zl = zlib.compress(text)
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = co.compress(text) + co.flush()
    write(d, "gzip-whole", bytes([0, 0]) + gz)
    write(d, "gzip-pieces", bytes([0, 3, 0, 6, 1]) + gz)
    write(d, "gzip-two-members", bytes([0, 2, 9, 30]) + gz2)
    write(d, "zlib", bytes([1, 1, 4]) + zl)
    write(d, "deflate", bytes([2, 0]) + raw)
    write(d, "sniff-gzip", bytes([3, 0]) + gz)
    write(d, "sniff-zlib", bytes([3, 0]) + zl)
    write(d, "gzip-truncated", bytes([0, 0]) + gz[:-5])
    write(d, "gzip-bomb-ish", bytes([0, 0]) + gzip.compress(b"\0" * (2 << 20), mtime=0))


def zip_info(name, mode, compress=zipfile.ZIP_STORED):
    zi = zipfile.ZipInfo(name, date_time=(2026, 11, 22, 10, 0, 0))
    zi.create_system = 3  # Unix: the mode in the high bits of external_attr
    zi.external_attr = mode << 16
    if name.endswith("/"):
        zi.external_attr |= 0x10  # MS-DOS directory bit
    zi.compress_type = compress
    return zi


def zip_bytes(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, mode, data, compress in entries:
            z.writestr(zip_info(name, mode, compress), data)
    return buf.getvalue()


def zip_seeds():
    d = target("FuzzZip")
    write(d, "file-dir-symlinks.zip", zip_bytes([
        ("result.csv", 0o100644, b"id,status\n1,ok\n" * 20, zipfile.ZIP_DEFLATED),
        ("dir/", 0o040755, b"", zipfile.ZIP_STORED),
        ("dir/inner.txt", 0o100644, b"inner\n", zipfile.ZIP_STORED),
        ("l", 0o120777, b".", zipfile.ZIP_STORED),
        ("l/m", 0o120777, b"..", zipfile.ZIP_STORED),
    ]))
    write(d, "files.zip", zip_bytes([
        ("a.json", 0o100644, b'{"a": 1}\n', zipfile.ZIP_DEFLATED),
        ("job.json", 0o100644, b"{}", zipfile.ZIP_STORED),
        ("sub/dir/b.txt", 0o100644, b"b" * 100, zipfile.ZIP_DEFLATED),
    ]))
    write(d, "empty.zip", zip_bytes([]))
    # "../" then a combining mark: in Swift's Characters "/\u0301" is not "/",
    # so a check that splits on Characters sees no ".." component.
    write(d, "dotdot-combining-mark.zip", zip_bytes([
        ("../\u0301x.txt", 0o100644, b"outside?\n", zipfile.ZIP_STORED),
        ("d/../\u0301y.txt", 0o100644, b"outside?\n", zipfile.ZIP_STORED),
    ]))


def main():
    json_seeds()
    status_seeds()
    config_seeds()
    spool_seeds()
    text_seeds("FuzzURL", URLS)
    text_seeds("FuzzHTTPHeaders", HEADERS)
    text_seeds("FuzzTimestamp", TIMESTAMPS)
    inflate_seeds()
    zip_seeds()
    for name in sorted(os.listdir(CORPUS)):
        print(f"{name}: {len(os.listdir(os.path.join(CORPUS, name)))} seeds")


if __name__ == "__main__":
    main()
