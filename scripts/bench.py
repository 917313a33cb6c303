#!/usr/bin/env python3
"""jobfetchd against curl, aria2 and igzip on loopback, side by side.

A daemon publishes only durable files, so each peer is timed with
`&& sync FILE` too (the plain figure beside it). Runs alternate between
jobfetchd and its peers; medians and ratios are printed.

1. 1 GiB, uncapped: jobfetchd (registration to published) against
   `curl -o FILE` (+ sync);
2. gzip, 361 MiB -> 1 GiB of CSV: against `curl | igzip -dc > FILE` (+ sync);
3. 1 GiB from a server that caps every connection at 25 MB/s, as many object
   stores and CDNs do (scripts/capserver.py: a token bucket per connection,
   256 KiB deep): against `aria2c -x4 -s4` (+ sync) and, in the first run,
   `curl -o FILE`; and the same from nginx's `limit_rate 25m`, which is per
   request and lets each request send its first second at once (so pieces,
   which are many short requests, would gain from it: shown, not the target;
   nginx_gz and nginx_gz3: the gzip artifacts of case 4 from it);
4. the gzip artifact, capped: against `aria2c -x4 -s4` then `igzip -d` (+ sync);
   and (capped_gz3) a gzip artifact of 1 GiB, three members of the same
   table (3 GiB of CSV), the same way: downloading takes as long as the
   1 GiB of case 3, so what the peer spends after it (decompressing and
   writing 3 GiB) weighs as it does for a gzip artifact of that size;
5. four 1 GiB downloads at once (4 x 4 segments), for the memory figure;
6. kill -9 at a random moment of a 300 MB capped download, restart: the
   bytes the capped server sent twice (its log); and (kill_stall) the same
   with the daemon in a blkio cgroup that holds its writeback to 20 MB/s,
   a disk five times slower than the download (cgroup v1 only);
7. the daemon's peak RSS (VmHWM) and this disk's `dd ... conv=fdatasync`.

Usage: bench.py BIN_DIR WORK_DIR [RUNS]
BENCH_CASES=big,gz,capped,capped_gz,capped_gz3,nginx,nginx_gz,nginx_gz3,four,kill,kill_stall (a comma list; default
all) runs only those cases.
"""
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

BIN, WORK = sys.argv[1], os.path.abspath(sys.argv[2])
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
ALL_CASES = ("big", "gz", "capped", "capped_gz", "capped_gz3", "nginx", "nginx_gz", "nginx_gz3", "four", "kill", "kill_stall")
CASES = [c for c in os.environ.get("BENCH_CASES", ",".join(ALL_CASES)).split(",") if c]
if not CASES or any(c not in ALL_CASES for c in CASES):
    sys.exit(f"BENCH_CASES: a comma list of {', '.join(ALL_CASES)}")
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
    gz3 = os.path.join(www, "table3.csv.gz")
    if not os.path.exists(gz3) or os.path.getsize(gz3) != 3 * os.path.getsize(gz):
        subprocess.run(f"cat {gz} {gz} {gz} > {gz3}.tmp && mv {gz3}.tmp {gz3}", shell=True, check=True)
    return big, gz


WARM_BYTES = 3 << 29


def settle(scratch):
    """Puts every timed run in the same state: nothing of the one before left
    to write back, and memory for the page cache ready to use. On a VM whose
    balloon reports free pages to the host (free page reporting, as here), a
    page freed a few seconds ago must be faulted in by the host again when it
    is next used, and writing 1 GiB into the page cache then takes 3.5 s
    instead of 0.4 s: whichever run came right after a deletion would win.
    Writing 1.5 GiB of zeros into the page cache and deleting it unwritten
    leaves that much freshly backed memory for the run that follows."""
    subprocess.run(["sync"], check=True)
    warm = os.path.join(scratch, "warm")
    zeros = bytes(1 << 20)
    with open(warm, "wb") as f:
        for _ in range(WARM_BYTES >> 20):
            f.write(zeros)
    os.remove(warm)


STALL_BPS = 20_000_000


def throttled_cgroup(path):
    """A cgroup v1 blkio group whose writes to the disk holding `path` are
    held to STALL_BPS (writeback the daemon starts itself is charged to it),
    or None where there is none (cgroup v2 only, a partition, no root)."""
    base = "/sys/fs/cgroup/blkio"
    st = os.stat(path)
    cgroup = os.path.join(base, f"jobfetch-bench-{os.getpid()}")
    try:
        os.mkdir(cgroup)
    except OSError:
        return None
    try:
        with open(os.path.join(cgroup, "blkio.throttle.write_bps_device"), "w") as f:
            f.write(f"{os.major(st.st_dev)}:{os.minor(st.st_dev)} {STALL_BPS}")
        return cgroup
    except OSError:
        os.rmdir(cgroup)
        return None


def timed(cmd, scratch):
    settle(scratch)
    t = time.monotonic()
    subprocess.run(cmd, shell=True, check=True)
    return time.monotonic() - t


def main():
    os.makedirs(WORK, exist_ok=True)
    www = os.path.join(WORK, "www")
    big, gz = make_inputs(www)
    subprocess.run(f"cat {big} {gz} > /dev/null", shell=True, check=True)  # warm the server side
    nginx_root = os.path.join(WORK, "nginx")
    shutil.rmtree(nginx_root, ignore_errors=True)
    os.makedirs(nginx_root)
    port = free_port()
    capped_log = os.path.join(nginx_root, "capped.log")
    nginx = start_nginx(nginx_root, f"""  access_log off; sendfile on; tcp_nopush on;
  default_type application/octet-stream;
  server {{ listen 127.0.0.1:{port}; root {www};
    location /capped/ {{ alias {www}/; limit_rate 25m; }}
  }}""")
    mid = os.path.join(www, "mid.bin")
    if not os.path.exists(mid) or os.path.getsize(mid) != 300_000_000:
        subprocess.run(f"head -c 300000000 {big} > {mid}", shell=True, check=True)
    base = f"http://127.0.0.1:{port}"
    cap = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts/capserver.py"), www, str(25_000_000), capped_log],
                           stdout=subprocess.PIPE, text=True)
    capped = f"http://127.0.0.1:{int(cap.stdout.readline().split()[1])}"

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
log_level = info
max_artifact_size = 4G
max_output_size = 8G

[kind dataset]
preset = dataset
status_url = http://127.0.0.1:{api_port}/v0/datasets/{{id}}
header = x-api-key: ${{file:{inst}/api-key}}
poll_interval = 100ms
""")
    env = dict(os.environ, JOBFETCH_CONFIG=conf)
    out = os.path.join(inst, "output", "dataset")
    state = {"daemon": None, "hwm": 0}

    def start_daemon():
        d = subprocess.Popen([os.path.join(BIN, "jobfetchd"), "--config", conf],
                             stderr=open(os.path.join(inst, "daemon.log"), "a"), env=env)
        state["daemon"] = d
        while not os.path.isdir(out):
            time.sleep(0.02)
        return d

    def note_hwm():
        with open(f"/proc/{state['daemon'].pid}/status") as f:
            state["hwm"] = max(state["hwm"], next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")))

    start_daemon()

    def register(job, path):
        with open(os.path.join(inst, "data", job + ".url"), "w") as f:
            f.write(path if path.startswith("http") else base + path)
        subprocess.run([os.path.join(BIN, "jobfetchctl"), "add", "dataset", job], check=True, env=env, stdout=subprocess.DEVNULL)

    def wait_done(job):
        done = os.path.join(out, job, "job.json")
        while not os.path.exists(done):
            time.sleep(0.005)
        with open(done) as f:
            if '"outcome": "succeeded"' not in f.read():
                sys.exit(f"job {job} did not succeed: see {inst}/daemon.log")

    counter = [0]
    splits = {}  # downloads split over several connections, by path

    def jobfetchd(path, at_once=1):
        jobs = []
        for _ in range(at_once):
            counter[0] += 1
            jobs.append(f"ext-{counter[0]}")
        settle(scratch)
        t = time.monotonic()
        for job in jobs:
            register(job, path)
        for job in jobs:
            wait_done(job)
        elapsed = time.monotonic() - t
        note_hwm()
        with open(os.path.join(inst, "daemon.log")) as f:
            log = f.read()
        split_lines = [l for l in log.splitlines() if "splitting " in l]
        for job in jobs:
            if any(re.search(rf"dataset/{re.escape(job)}\b", l) for l in split_lines):
                splits[path] = splits.get(path, 0) + 1
        for job in jobs:
            shutil.rmtree(os.path.join(out, job))
        return elapsed

    scratch = os.path.join(WORK, "scratch")
    os.makedirs(scratch, exist_ok=True)
    f_big, f_x = f"{scratch}/big.bin", f"{scratch}/x"
    aria2 = f"aria2c -q -x4 -s4 --allow-overwrite=true --auto-file-renaming=false -d {scratch}"
    keys = ("jf_big", "curl_big", "curl_sync", "jf_gz", "igzip_pipe", "igzip_pipe_sync",
            "jf_capped", "aria2", "aria2_sync", "curl_capped", "jf_nginx_capped", "aria2_nginx_sync", "jf_capped_gz", "aria2_igzip", "aria2_igzip_sync",
            "jf_capped_gz3", "aria2_igzip3", "aria2_igzip3_sync", "jf_nginx_gz", "aria2_nginx_igzip_sync",
            "jf_nginx_gz3", "aria2_nginx_igzip3", "aria2_nginx_igzip3_sync", "jf_four")
    results = {k: [] for k in keys}

    def peer(key, cmd, *files):
        results[key].append(timed(cmd, scratch))
        for f in files:
            if os.path.exists(f):
                os.remove(f)

    for run in range(RUNS):
        print(f"run {run + 1}/{RUNS} ...", flush=True)
        if "big" in CASES:
            results["jf_big"].append(jobfetchd("/big.bin"))
            peer("curl_big", f"curl -s -o {f_big} {base}/big.bin", f_big)
            peer("curl_sync", f"curl -s -o {f_big} {base}/big.bin && sync {f_big}", f_big)
        if "gz" in CASES:
            results["jf_gz"].append(jobfetchd("/table.csv.gz"))
            peer("igzip_pipe", f"curl -s {base}/table.csv.gz | igzip -dc > {f_x}", f_x)
            peer("igzip_pipe_sync", f"curl -s {base}/table.csv.gz | igzip -dc > {f_x} && sync {f_x}", f_x)
        if "capped" in CASES:
            results["jf_capped"].append(jobfetchd(f"{capped}/capped/big.bin"))
            peer("aria2", f"{aria2} -o big.bin {capped}/capped/big.bin", f_big)
            peer("aria2_sync", f"{aria2} -o big.bin {capped}/capped/big.bin && sync {f_big}", f_big)
            if run == 0:
                peer("curl_capped", f"curl -s -o {f_big} {capped}/capped/big.bin", f_big)
        if "capped_gz" in CASES:
            results["jf_capped_gz"].append(jobfetchd(f"{capped}/capped/table.csv.gz"))
            peer("aria2_igzip", f"{aria2} -o x.gz {capped}/capped/table.csv.gz && igzip -d -f {f_x}.gz", f_x, f_x + ".gz")
            peer("aria2_igzip_sync", f"{aria2} -o x.gz {capped}/capped/table.csv.gz && igzip -d -f {f_x}.gz && sync {f_x}", f_x, f_x + ".gz")
        if "capped_gz3" in CASES:
            results["jf_capped_gz3"].append(jobfetchd(f"{capped}/capped/table3.csv.gz"))
            peer("aria2_igzip3", f"{aria2} -o x.gz {capped}/capped/table3.csv.gz && igzip -d -f {f_x}.gz", f_x, f_x + ".gz")
            peer("aria2_igzip3_sync", f"{aria2} -o x.gz {capped}/capped/table3.csv.gz && igzip -d -f {f_x}.gz && sync {f_x}", f_x, f_x + ".gz")
        if "nginx" in CASES:
            results["jf_nginx_capped"].append(jobfetchd("/capped/big.bin"))
            peer("aria2_nginx_sync", f"{aria2} -o big.bin {base}/capped/big.bin && sync {f_big}", f_big)
        if "nginx_gz" in CASES:
            results["jf_nginx_gz"].append(jobfetchd("/capped/table.csv.gz"))
            peer("aria2_nginx_igzip_sync", f"{aria2} -o x.gz {base}/capped/table.csv.gz && igzip -d -f {f_x}.gz && sync {f_x}", f_x, f_x + ".gz")
        if "nginx_gz3" in CASES:
            results["jf_nginx_gz3"].append(jobfetchd("/capped/table3.csv.gz"))
            peer("aria2_nginx_igzip3", f"{aria2} -o x.gz {base}/capped/table3.csv.gz && igzip -d -f {f_x}.gz", f_x, f_x + ".gz")
            peer("aria2_nginx_igzip3_sync", f"{aria2} -o x.gz {base}/capped/table3.csv.gz && igzip -d -f {f_x}.gz && sync {f_x}", f_x, f_x + ".gz")
        if "four" in CASES:
            results["jf_four"].append(jobfetchd("/big.bin", at_once=4))

    # kill -9 at a random moment of a capped 300 MB download; what the capped server sent twice.
    rnd = random.Random()

    def kill_once(cgroup=None):
        counter[0] += 1
        job = f"ext-{counter[0]}"
        open(capped_log, "w").close()
        if cgroup:
            # The daemon's own writeback (its sync_file_range and fsyncs) is
            # held to the cgroup's rate: a disk slower than the download.
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(state["daemon"].pid))
        register(job, f"{capped}/capped/mid.bin")
        time.sleep(rnd.uniform(0.8, 2.6))  # the random moment of the kill
        note_hwm()
        state["daemon"].kill()
        state["daemon"].wait()
        start_daemon()  # outside the cgroup: the disk is fast again
        wait_done(job)
        shutil.rmtree(os.path.join(out, job))
        time.sleep(0.5)  # a request is logged when its connection closes
        with open(capped_log) as f:
            sent = sum(int(l.split()[2]) for l in f if l.startswith("/capped/mid.bin "))
        return sent - 300_000_000

    resent = [kill_once() for _ in range(RUNS if "kill" in CASES else 0)]
    stall_resent, stall_note = [], ""
    if "kill_stall" in CASES:
        cgroup = throttled_cgroup(inst)
        if cgroup is None:
            stall_note = "skipped: no cgroup v1 blkio throttle for this disk"
        else:
            try:
                stall_resent = [kill_once(cgroup) for _ in range(RUNS)]
            finally:
                os.rmdir(cgroup)

    note_hwm()
    state["daemon"].send_signal(signal.SIGTERM)
    state["daemon"].wait()
    api.kill()
    cap.kill()
    nginx.kill()

    dd = subprocess.run(f"dd if=/dev/zero of={scratch}/dd bs=1M count=1024 conv=fdatasync 2>&1", shell=True,
                        capture_output=True, text=True).stdout
    os.remove(f"{scratch}/dd")
    dd_rate = re.search(r"([0-9.,]+ [MG]B/s)", dd)

    med = {k: statistics.median(v) for k, v in results.items() if v}

    def paired(num, den):
        # Each jobfetchd run sits beside its peer's, so the ratio of a pair is
        # taken in the same state of the disk; their median is the figure
        # that judges a target (the ratio of medians is shown beside it).
        return statistics.median(a / b for a, b in zip(results[num], results[den]))
    gz_size = os.path.getsize(gz)
    print()
    print(f"runs: {RUNS} each, alternating; medians (seconds); a ratio 'paired' is the median of each run's ratio to the peer run beside it; this disk: dd 1 GiB conv=fdatasync {dd_rate.group(1) if dd_rate else dd.strip()}")
    if "big" in CASES:
        print(f"1 GiB, uncapped     jobfetchd {med['jf_big']:.3f}  curl {med['curl_big']:.3f}  curl && sync {med['curl_sync']:.3f}")
        print(f"                    throughput vs durable curl {paired('curl_sync', 'jf_big'):.3f} paired, {med['curl_sync'] / med['jf_big']:.3f} of medians (target >= 1.0), vs plain curl {med['curl_big'] / med['jf_big']:.3f}")
    if "gz" in CASES:
        print(f"gzip {gz_size / 2**20:.0f} MiB -> 1 GiB   jobfetchd {med['jf_gz']:.3f}  curl | igzip -dc {med['igzip_pipe']:.3f}  && sync {med['igzip_pipe_sync']:.3f}")
        print(f"                    time vs durable pipeline {paired('jf_gz', 'igzip_pipe_sync'):.3f} paired, {med['jf_gz'] / med['igzip_pipe_sync']:.3f} of medians (target <= 1.0), vs plain {med['jf_gz'] / med['igzip_pipe']:.3f}")
    if "capped" in CASES:
        print(f"1 GiB, 25 MB/s/conn jobfetchd {med['jf_capped']:.3f}  aria2c -x4 -s4 {med['aria2']:.3f}  && sync {med['aria2_sync']:.3f}  curl {med['curl_capped']:.3f} (1 run)")
        print(f"                    throughput vs durable aria2 {paired('aria2_sync', 'jf_capped'):.3f} paired, {med['aria2_sync'] / med['jf_capped']:.3f} of medians (target >= 1.0), vs plain aria2 {med['aria2'] / med['jf_capped']:.3f}, "
              f"vs curl {med['curl_capped'] / med['jf_capped']:.3f} (target >= 3.5)")
    if "nginx" in CASES:
        print(f"nginx limit_rate 25m (per request, first second at once)  jobfetchd {med['jf_nginx_capped']:.3f}  aria2c -x4 -s4 && sync {med['aria2_nginx_sync']:.3f}"
              f"  throughput {med['aria2_nginx_sync'] / med['jf_nginx_capped']:.3f}")
    if "nginx_gz" in CASES:
        print(f"gzip {gz_size / 2**20:.0f} MiB, nginx limit_rate 25m  jobfetchd {med['jf_nginx_gz']:.3f}  aria2c then igzip -d && sync {med['aria2_nginx_igzip_sync']:.3f}"
              f"  time {paired('jf_nginx_gz', 'aria2_nginx_igzip_sync'):.3f} paired, {med['jf_nginx_gz'] / med['aria2_nginx_igzip_sync']:.3f} of medians")
    if "capped_gz" in CASES:
        print(f"gzip, 25 MB/s/conn  jobfetchd {med['jf_capped_gz']:.3f}  aria2c then igzip -d {med['aria2_igzip']:.3f}  && sync {med['aria2_igzip_sync']:.3f}")
        print(f"                    time vs durable {paired('jf_capped_gz', 'aria2_igzip_sync'):.3f} paired, {med['jf_capped_gz'] / med['aria2_igzip_sync']:.3f} of medians (target <= 0.6), vs plain {med['jf_capped_gz'] / med['aria2_igzip']:.3f}")
    if "capped_gz3" in CASES:
        print(f"gzip {3 * gz_size / 2**30:.2f} GiB -> 3 GiB, 25 MB/s/conn  jobfetchd {med['jf_capped_gz3']:.3f}  aria2c then igzip -d {med['aria2_igzip3']:.3f}  && sync {med['aria2_igzip3_sync']:.3f}")
        print(f"                    time vs durable {paired('jf_capped_gz3', 'aria2_igzip3_sync'):.3f} paired, {med['jf_capped_gz3'] / med['aria2_igzip3_sync']:.3f} of medians (target <= 0.6), vs plain {med['jf_capped_gz3'] / med['aria2_igzip3']:.3f}")
    if "nginx_gz3" in CASES:
        print(f"gzip {3 * gz_size / 2**30:.2f} GiB -> 3 GiB, nginx limit_rate 25m  jobfetchd {med['jf_nginx_gz3']:.3f}  aria2c then igzip -d {med['aria2_nginx_igzip3']:.3f}  && sync {med['aria2_nginx_igzip3_sync']:.3f}")
        print(f"                    time vs durable {paired('jf_nginx_gz3', 'aria2_nginx_igzip3_sync'):.3f} paired, {med['jf_nginx_gz3'] / med['aria2_nginx_igzip3_sync']:.3f} of medians (target <= 0.6), vs plain {med['jf_nginx_gz3'] / med['aria2_nginx_igzip3']:.3f}")
    if "four" in CASES:
        print(f"4 x 1 GiB at once   jobfetchd {med['jf_four']:.3f}")
    if "kill_stall" in CASES:
        print(f"kill -9 during 300 MB, the daemon's writeback held to {STALL_BPS / 1e6:.0f} MB/s: " + (stall_note or
              f"re-sent {', '.join(f'{b / 2**20:.2f} MiB' for b in stall_resent)}; median {statistics.median(stall_resent) / 2**20:.2f} MiB (target <= 1 MiB)"))
    if "kill" in CASES:
        print(f"kill -9 during 300 MB (25 MB/s/conn): re-sent {', '.join(f'{b / 2**20:.2f} MiB' for b in resent)}; median {statistics.median(resent) / 2**20:.2f} MiB (target <= 1 MiB)")
    print(f"daemon peak RSS (VmHWM): {state['hwm'] / 1024:.1f} MiB (target <= 64)")
    print("downloads split over several connections, by path:", splits)
    print("all runs:", {k: [round(x, 3) for x in v] for k, v in results.items() if v})

main()
