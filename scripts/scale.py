#!/usr/bin/env python3
"""jobfetchd at scale: 10,000 registered jobs polled every 10 s (1,000 polls/s)
against a local status endpoint (nginx serving a "processing" document for
every ID), measuring the daemon's CPU (% of one core) and peak RSS; then the
CPU of an idle minute with nothing due, and the latency from a spool drop to
the first status request. Usage: scale.py BIN_DIR WORK_DIR
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

BIN, WORK = sys.argv[1], os.path.abspath(sys.argv[2])
JOBS = 10_000
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, start_status_server  # noqa: E402


def hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024


def access_lines(path):
    try:
        with open(path) as f:
            return f.readlines()
    except FileNotFoundError:
        return []


def main():
    root = os.path.join(WORK, "scale")
    shutil.rmtree(root, ignore_errors=True)
    nginx, port, access = start_status_server(root, connections=1024)

    def start_daemon(interval):
        conf = os.path.join(root, "daemon.conf")
        with open(conf, "w") as f:
            f.write(f"""[daemon]
spool_dir = {root}/spool
state_dir = {root}/state
output_dir = {root}/output
log_level = warning
max_polls = 32

[kind dataset]
preset = dataset
status_url = http://127.0.0.1:{port}/v0/datasets/{{id}}
poll_interval = {interval}
max_poll_interval = {interval}
timeout = 7d
""")
        d = subprocess.Popen([os.path.join(BIN, "jobfetchd"), "--config", conf], stderr=open(os.path.join(root, "daemon.log"), "a"))
        while not os.path.isdir(os.path.join(root, "output", "dataset")):
            time.sleep(0.02)
        return d

    def drop(ids):
        spool = os.path.join(root, "spool", "dataset")
        name = f"bench-{time.monotonic_ns()}"
        tmp = os.path.join(spool, "." + name)
        with open(tmp, "w") as f:
            f.write("".join(i + "\n" for i in ids))
        t = time.time()
        os.rename(tmp, os.path.join(spool, name))
        return t

    # 1. Load: 10,000 jobs, each polled every 10 s.
    print(f"registering {JOBS} jobs, polled every 10 s ...", flush=True)
    daemon = start_daemon("10s")
    drop([f"load-{i}" for i in range(JOBS)])
    time.sleep(15)  # registration and the first round of polls settle (a measurement window, not a sync)
    n0, c0, t0 = len(access_lines(access)), cpu_seconds(daemon.pid), time.monotonic()
    time.sleep(60)
    n1, c1, t1 = len(access_lines(access)), cpu_seconds(daemon.pid), time.monotonic()
    load_cpu = 100 * (c1 - c0) / (t1 - t0)
    polls_per_s = (n1 - n0) / (t1 - t0)
    load_rss = hwm_mib(daemon.pid)
    daemon.terminate()
    daemon.wait()

    # 2. Idle: the same 10,000 jobs, nothing due for an hour.
    shutil.rmtree(os.path.join(root, "state"))
    daemon = start_daemon("1h")
    drop([f"idle-{i}" for i in range(JOBS)])
    while sum(1 for l in access_lines(access) if "/idle-" in l) < JOBS:
        time.sleep(0.2)
    time.sleep(2)
    c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
    time.sleep(60)
    idle_cpu = cpu_seconds(daemon.pid) - c0

    # 3. Drop to first status request (nginx logs the time each request ended).
    latencies = []
    for i in range(20):
        job = f"lat-{i}"
        t = drop([job])
        deadline = time.time() + 5
        seen = None
        while seen is None and time.time() < deadline:
            for l in access_lines(access)[-200:]:
                if l.rstrip().endswith("/" + job):
                    seen = float(l.split()[0])
            time.sleep(0.01)
        if seen is not None:
            latencies.append((seen - t) * 1000)
    idle_rss = hwm_mib(daemon.pid)
    daemon.terminate()
    daemon.wait()
    nginx.kill()

    print()
    print(f"10,000 jobs every 10 s: {polls_per_s:.0f} polls/s, daemon CPU {load_cpu:.1f}% of one core (target <= 25%), "
          f"peak RSS {load_rss:.1f} MiB (target <= 64)")
    print(f"idle minute with 10,000 jobs and nothing due: {idle_cpu:.3f} s CPU (target < 0.05), peak RSS {idle_rss:.1f} MiB")
    if latencies:
        print(f"spool drop to first status request: median {statistics.median(latencies):.1f} ms, "
              f"max {max(latencies):.1f} ms over {len(latencies)} drops (target < 50 ms)")


main()
