#!/usr/bin/env bash
# The end-to-end demo: a local fake dataset API, the real daemon on a demo
# config, a few jobs registered with jobfetchctl, and their results.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
BIN=${BIN:-.build/debug}
DEMO=${DEMO_DIR:-$PWD/demo}

rm -rf "$DEMO"
mkdir -p "$DEMO"
echo "demo-token-$$" > "$DEMO/api-key"

# The fake API picks a free loopback port and prints it.
python3 Tests/FakeAPI/fake_api.py --api-key "$(cat "$DEMO/api-key")" > "$DEMO/fake-api.log" 2>&1 &
API_PID=$!
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
    kill "$API_PID" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q '^PORT ' "$DEMO/fake-api.log" 2>/dev/null && break; sleep 0.1; done
PORT=$(awk '/^PORT /{print $2; exit}' "$DEMO/fake-api.log")
[ -n "$PORT" ] || { echo "the fake API did not start:"; cat "$DEMO/fake-api.log"; exit 1; }

cat > "$DEMO/daemon.conf" <<CONF
[daemon]
spool_dir  = $DEMO/spool
state_dir  = $DEMO/state
output_dir = $DEMO/output
log_level  = info

[kind dataset]
preset        = dataset
status_url    = http://127.0.0.1:$PORT/v0/datasets/{id}
header        = x-api-key: \${file:$DEMO/api-key}
poll_interval = 500ms
max_poll_interval = 2s
timeout       = 5m
CONF
export JOBFETCH_CONFIG=$DEMO/daemon.conf

echo "== jobfetchd --check-config"
"$BIN/jobfetchd" --check-config
"$BIN/jobfetchd" 2> "$DEMO/daemon.log" &
DAEMON_PID=$!

echo "== jobfetchctl add dataset done-2-sales done-3-inventory gz-prices err-blocked"
"$BIN/jobfetchctl" add dataset done-2-sales done-3-inventory gz-prices err-blocked

echo "== waiting for the four jobs to finish"
python3 - "$BIN/jobfetchctl" <<'PY'
import json, subprocess, sys, time
deadline = time.time() + 120
while time.time() < deadline:
    out = subprocess.run([sys.argv[1], "list", "--json"], capture_output=True, text=True)
    jobs = json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []
    if len(jobs) == 4 and all(j["state"] in ("succeeded", "failed", "cancelled") for j in jobs):
        sys.exit(0)
    time.sleep(0.2)
sys.exit("the demo jobs did not finish within 120 s")
PY
echo "== jobfetchctl list"
"$BIN/jobfetchctl" list
echo
echo "== results in $DEMO/output"
find "$DEMO/output" -path '*/.incoming' -prune -o -type f -print | sort
echo
echo "== $DEMO/output/dataset/done-2-sales/job.json"
cat "$DEMO/output/dataset/done-2-sales/job.json"
echo "== first lines of the CSV"
head -3 "$DEMO/output/dataset/done-2-sales/done-2-sales.csv"
echo "== jobfetchctl status dataset err-blocked"
"$BIN/jobfetchctl" status dataset err-blocked
echo
echo "== daemon log"
cat "$DEMO/daemon.log"
