#!/usr/bin/env python3
"""Claims and polls per second with 100,000 jobs: one daemon on SQLite, one
on PostgreSQL, three on PostgreSQL (one throwaway cluster, initdb on a Unix
socket, fsync on). Every job is polled as often as the daemons can (each
job's `poll_interval` is 1 s, so 100,000 polls a second are wanted) against
nginx answering "processing" for every ID; `max_polls = 256` per daemon.
Prints polls/s (nginx's count), claims/s (lease tokens issued: one per
claim; SQLite claims in memory, one per poll), and the CPU of the daemons
and of PostgreSQL (% of one core; the machine's cores are shared by all).

Usage: queue-bench.py BIN_DIR WORK_DIR [SECONDS]
"""
import glob
import os
import pwd
import shutil
import subprocess
import sys
import time

BIN, WORK = sys.argv[1], os.path.abspath(sys.argv[2])
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 30
JOBS = 100_000
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, start_status_server  # noqa: E402

PGBIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
if not PGBIN:
    sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
PGBIN = os.path.dirname(PGBIN[-1])
AS_PG = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] if os.getuid() == 0 else []


def postgres_cpu(uid):
    """CPU seconds of every process of the server's user (the postmaster, its backends and workers)."""
    total = 0.0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    total += cpu_seconds(d)
            except FileNotFoundError:
                pass
    return total


def polls(access):
    try:
        with open(access, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def pg(root, *args):
    return subprocess.run(AS_PG + list(args), cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def main():
    root = os.path.join(WORK, "queue")
    shutil.rmtree(root, ignore_errors=True)
    nginx, port, access = start_status_server(root, connections=2048)

    # The cluster: as the postgres user when root, fsync on (a daemon's commits are durable).
    cluster = os.path.join(root, "pg")
    os.makedirs(os.path.join(cluster, "sock"))
    uid = pwd.getpwnam("postgres").pw_uid if os.getuid() == 0 else os.getuid()
    if os.getuid() == 0:
        for p in (cluster, os.path.join(cluster, "sock")):
            os.chown(p, uid, pwd.getpwnam("postgres").pw_gid)
    pg(cluster, f"{PGBIN}/initdb", "-D", f"{cluster}/data", "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C")
    pg(cluster, f"{PGBIN}/pg_ctl", "-D", f"{cluster}/data", "-l", f"{cluster}/server.log", "-w",
       "-o", f"-k {cluster}/sock -c listen_addresses='' -c max_connections=50" +
       (" -c shared_preload_libraries=pg_stat_statements" if os.environ.get("QUEUE_BENCH_STATEMENTS") else ""), "start")
    uri = f"postgresql:///jobfetch?host={cluster}/sock&user=postgres"
    psql = [f"{PGBIN}/psql", "-h", f"{cluster}/sock", "-U", "postgres", "-Atc"]

    def run(label, store, nodes):
        if store == "postgresql":
            pg(cluster, f"{PGBIN}/dropdb", "-h", f"{cluster}/sock", "-U", "postgres", "--if-exists", "jobfetch")
            pg(cluster, f"{PGBIN}/createdb", "-h", f"{cluster}/sock", "-U", "postgres", "jobfetch")
            if os.environ.get("QUEUE_BENCH_STATEMENTS"):
                pg(cluster, *psql, "CREATE EXTENSION pg_stat_statements", "-d", "jobfetch")
        base = os.path.join(root, label.replace(" ", "-"))
        shutil.rmtree(base, ignore_errors=True)
        daemons = []
        for n in range(nodes):
            conf = os.path.join(base, f"node{n}.conf")
            os.makedirs(os.path.join(base, f"spool{n}", "dataset"))
            with open(conf, "w") as f:
                f.write(f"""[daemon]
spool_dir = {base}/spool{n}
state_dir = {base}/state{n}
output_dir = {base}/output
log_level = warning
max_polls = 256
{"store = " + uri if store == "postgresql" else ""}
node_name = node{n}

[kind dataset]
preset = dataset
status_url = http://127.0.0.1:{port}/v0/datasets/{{id}}
poll_interval = 1s
max_poll_interval = 1s
timeout = 7d
""")
            daemons.append(subprocess.Popen([os.path.join(BIN, "jobfetchd"), "--config", conf],
                                            stderr=open(os.path.join(base, f"node{n}.log"), "a")))
        while not os.path.isdir(os.path.join(base, "output", "dataset")):
            time.sleep(0.05)
        # All 100,000 jobs in one spool file on the first node.
        spool = os.path.join(base, "spool0", "dataset")
        with open(os.path.join(spool, ".jobs"), "w") as f:
            f.write("".join(f"{label[:2]}-{i}\n" for i in range(JOBS)))
        os.rename(os.path.join(spool, ".jobs"), os.path.join(spool, "jobs"))
        while os.path.exists(os.path.join(spool, "jobs")):
            time.sleep(0.1)
        time.sleep(10)  # every job polled once and the daemons at their pace (a warm-up window, not a sync)

        def tokens():
            if store != "postgresql":
                return 0
            return int(pg(cluster, *psql, "SELECT last_value FROM jobfetch_lease_tokens", "-d", "jobfetch") or 0)

        n0, k0, d0, p0, t0 = polls(access), tokens(), sum(cpu_seconds(d.pid) for d in daemons), postgres_cpu(uid), time.monotonic()
        time.sleep(SECONDS)
        n1, k1, d1, p1, t1 = polls(access), tokens(), sum(cpu_seconds(d.pid) for d in daemons), postgres_cpu(uid), time.monotonic()
        if store == "postgresql" and os.environ.get("QUEUE_BENCH_STATEMENTS"):
            # Where PostgreSQL's time goes: the statements by total time.
            print(pg(cluster, *psql, "SELECT calls, round(total_exec_time::numeric, 0), round(mean_exec_time::numeric, 3), left(regexp_replace(query, '\\s+', ' ', 'g'), 110) "
                     "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8", "-d", "jobfetch"))
        for d in daemons:
            d.terminate()
        for d in daemons:
            d.wait()
        dt = t1 - t0
        claims = (k1 - k0) / dt if store == "postgresql" else (n1 - n0) / dt
        pg_cpu = f"{100 * (p1 - p0) / dt:5.0f} %" if store == "postgresql" else "    -  "
        print(f"| {label:<22} | {(n1 - n0) / dt:9.0f} | {claims:9.0f} | {100 * (d1 - d0) / dt:5.0f} % | {pg_cpu} |", flush=True)

    print(f"{JOBS:,} jobs, each due every second, max_polls 256 per daemon; {SECONDS:.0f} s measured after a 10 s warm-up; {os.cpu_count()} cores")
    print("| store                  |   polls/s |  claims/s | daemons | PostgreSQL |")
    print("|---|---|---|---|---|")
    if not os.environ.get("QUEUE_BENCH_STATEMENTS"):
        run("SQLite, 1 daemon", "sqlite", 1)
    run("PostgreSQL, 1 daemon", "postgresql", 1)
    run("PostgreSQL, 3 daemons", "postgresql", 3)
    pg(cluster, f"{PGBIN}/pg_ctl", "-D", f"{cluster}/data", "-m", "fast", "-w", "stop")
    nginx.kill()


main()
