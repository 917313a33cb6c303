#!/usr/bin/env python3
"""jobfetchd against curl (and gzip, pigz) on loopback, side by side.

1. a 1 GiB file: jobfetchd from registration to published file, against
   `curl -s -o FILE URL`;
2. a gzip artifact of 1 GiB uncompressed: jobfetchd (download plus
   decompression), against `curl -o x.gz URL && gzip -d x.gz` and against
   `pigz -dc x.gz > FILE` alone;
3. the daemon's peak RSS over all of it (VmHWM).

Several runs each; prints medians and ratios. Usage: bench.py BIN_DIR WORK_DIR [RUNS]
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

BIN, WORK = sys.argv[1], os.path.abspath(sys.argv[2])
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1 << 30
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, start_nginx  # noqa: E402


def make_inputs(www):
    os.makedirs(www, exist_ok=True)
    big = os.path.join(www, "big.bin")
    if not os.path.exists(big) or os.path.getsize(big) != GIB:
        print("making a 1 GiB file of random bytes ...", flush=True)
        subprocess.run(f"head -c {GIB} /dev/urandom > {big}.tmp && mv {big}.tmp {big}", shell=True, check=True)
    gz = os.path.join(www, "table.csv.gz")
    if not os.path.exists(gz):
        print("making a gzip artifact of 1 GiB of CSV ...", flush=True)
        import random
        rnd = random.Random(7)
        words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
        with open(gz[:-3] + ".tmp", "w") as f:
            f.write("id,name,city,score,amount\n")
            written, i = 0, 0
            while written < GIB:
                rows = []
                for _ in range(10000):
                    i += 1
                    rows.append(f"{i},{rnd.choice(words)}-{rnd.randrange(100000)},{rnd.choice(words).upper()},"
                                f"{rnd.randrange(1000)},{rnd.random() * 10000:.2f}\n")
                chunk = "".join(rows)
                if written + len(chunk) > GIB:
                    chunk = chunk[:GIB - written]
                f.write(chunk)
                written += len(chunk)
        subprocess.run(f"gzip -6 -n -c {gz[:-3]}.tmp > {gz}.tmp && mv {gz}.tmp {gz} && rm {gz[:-3]}.tmp", shell=True, check=True)
    return big, gz


def timed(cmd):
    t = time.monotonic()
    subprocess.run(cmd, shell=True, check=True)
    return time.monotonic() - t


def drop_caches_of(path):
    # Not the page cache of the whole machine: only what the runs wrote, so each starts alike.
    subprocess.run(["sync"], check=True)


def main():
    os.makedirs(WORK, exist_ok=True)
    www = os.path.join(WORK, "www")
    big, gz = make_inputs(www)
    subprocess.run(f"cat {big} {gz} > /dev/null", shell=True, check=True)  # warm the server side
    nginx_root = os.path.join(WORK, "nginx")
    shutil.rmtree(nginx_root, ignore_errors=True)
    os.makedirs(nginx_root)
    port = free_port()
    nginx = start_nginx(nginx_root, f"""  access_log off; sendfile on; tcp_nopush on;
  default_type application/octet-stream;
  server {{ listen 127.0.0.1:{port}; root {www}; }}""")
    base = f"http://127.0.0.1:{port}"

    inst = os.path.join(WORK, "daemon")
    shutil.rmtree(inst, ignore_errors=True)
    os.makedirs(os.path.join(inst, "data"))
    key = "bench-key"
    with open(os.path.join(inst, "api-key"), "w") as f:
        f.write(key + "\n")
    api = subprocess.Popen([sys.executable, os.path.join(ROOT, "Tests/FakeAPI/fake_api.py"), "--api-key", key,
                            "--data-dir", os.path.join(inst, "data")], stdout=subprocess.PIPE, text=True)
    api_port = None
    for line in api.stdout:
        if line.startswith("PORT "):
            api_port = int(line.split()[1])
            break
    subprocess.Popen(["cat"], stdin=api.stdout, stdout=subprocess.DEVNULL)  # keep its pipe drained
    conf = os.path.join(inst, "daemon.conf")
    with open(conf, "w") as f:
        f.write(f"""[daemon]
spool_dir = {inst}/spool
state_dir = {inst}/state
output_dir = {inst}/output
log_level = warning
max_artifact_size = 4G
max_output_size = 8G

[kind dataset]
preset = dataset
status_url = http://127.0.0.1:{api_port}/v0/datasets/{{id}}
header = x-api-key: ${{file:{inst}/api-key}}
poll_interval = 100ms
""")
    env = dict(os.environ, JOBFETCH_CONFIG=conf)
    daemon = subprocess.Popen([os.path.join(BIN, "jobfetchd"), "--config", conf], stderr=open(os.path.join(inst, "daemon.log"), "w"), env=env)
    out = os.path.join(inst, "output", "dataset")
    while not os.path.isdir(out):
        time.sleep(0.02)

    def jobfetchd(n, path):
        job = f"ext-{n}"
        with open(os.path.join(inst, "data", job + ".url"), "w") as f:
            f.write(base + path)
        t = time.monotonic()
        subprocess.run([os.path.join(BIN, "jobfetchctl"), "add", "dataset", job], check=True, env=env, stdout=subprocess.DEVNULL)
        done = os.path.join(out, job, "job.json")
        while not os.path.exists(done):
            time.sleep(0.005)
        elapsed = time.monotonic() - t
        with open(done) as f:
            if '"outcome": "succeeded"' not in f.read():
                sys.exit(f"job {job} did not succeed: see {inst}/daemon.log")
        shutil.rmtree(os.path.join(out, job))
        return elapsed

    scratch = os.path.join(WORK, "scratch")
    os.makedirs(scratch, exist_ok=True)
    have_pigz = shutil.which("pigz") is not None
    results = {k: [] for k in ("jf_big", "curl_big", "curl_sync", "jf_gz", "curl_gzip", "pigz")}
    n = 0
    for run in range(RUNS):
        print(f"run {run + 1}/{RUNS} ...", flush=True)
        n += 1
        results["jf_big"].append(jobfetchd(n, "/big.bin"))
        results["curl_big"].append(timed(f"curl -s -o {scratch}/big.bin {base}/big.bin"))
        os.remove(f"{scratch}/big.bin")
        # The same download made durable, as jobfetchd makes it before publishing.
        results["curl_sync"].append(timed(f"curl -s -o {scratch}/big.bin {base}/big.bin && sync {scratch}/big.bin"))
        os.remove(f"{scratch}/big.bin")
        n += 1
        results["jf_gz"].append(jobfetchd(n, "/table.csv.gz"))
        results["curl_gzip"].append(timed(f"curl -s -o {scratch}/x.gz {base}/table.csv.gz && gzip -d -f {scratch}/x.gz"))
        os.remove(f"{scratch}/x")
        if have_pigz:
            subprocess.run(f"curl -s -o {scratch}/x.gz {base}/table.csv.gz", shell=True, check=True)
            results["pigz"].append(timed(f"pigz -dc {scratch}/x.gz > {scratch}/x"))
            os.remove(f"{scratch}/x")
            os.remove(f"{scratch}/x.gz")

    with open(f"/proc/{daemon.pid}/status") as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    daemon.send_signal(signal.SIGTERM)
    daemon.wait()
    api.kill()
    nginx.kill()

    med = {k: statistics.median(v) for k, v in results.items() if v}
    gz_size = os.path.getsize(gz)
    print()
    print(f"runs: {RUNS} each; medians (seconds)")
    print(f"1 GiB file        jobfetchd {med['jf_big']:.3f}  curl {med['curl_big']:.3f}  "
          f"throughput jobfetchd/curl = {med['curl_big'] / med['jf_big']:.3f} (target >= 0.95)")
    print(f"                  curl + sync FILE {med['curl_sync']:.3f}  "
          f"throughput jobfetchd/(curl made durable) = {med['curl_sync'] / med['jf_big']:.3f}")
    print(f"gzip ({gz_size / 2**20:.0f} MiB -> 1 GiB)  jobfetchd {med['jf_gz']:.3f}  curl+gzip -d {med['curl_gzip']:.3f}  "
          f"ratio = {med['jf_gz'] / med['curl_gzip']:.3f} (target <= 0.6)")
    if "pigz" in med:
        print(f"                  pigz -dc alone {med['pigz']:.3f}  ratio = {med['jf_gz'] / med['pigz']:.3f} (target <= 1.15)")
    print(f"daemon peak RSS (VmHWM): {hwm / 1024:.1f} MiB (target <= 64)")
    print("all runs:", {k: [round(x, 3) for x in v] for k, v in results.items()})


main()
