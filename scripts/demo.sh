#!/usr/bin/env bash
# The end-to-end demo: local fake job APIs (all five presets), the real
# daemon on a demo config, jobs registered with jobfetchctl, a cancel and a
# retry, and their results.
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

[kind bulk]
preset        = bulk-job
status_url    = http://127.0.0.1:$PORT/bulkjob/{id}/status
header        = x-api-key: \${file:$DEMO/api-key}
poll_interval = 500ms

[kind bulks]
preset        = bulk-process
status_url    = http://127.0.0.1:$PORT/v3/bulks/{id}
header        = api-key: \${file:$DEMO/api-key}
header        = Authorization: Bearer \${file:$DEMO/api-key}-bearer
poll_interval = 500ms

[kind export]
preset        = export
status_url    = http://127.0.0.1:$PORT/export/{id}/status
header        = x-api-key: \${file:$DEMO/api-key}
poll_interval = 500ms

[kind task]
preset        = job
status_url    = http://127.0.0.1:$PORT/jobs/{id}
header        = x-api-key: \${file:$DEMO/api-key}
poll_interval = 500ms
CONF
export JOBFETCH_CONFIG=$DEMO/daemon.conf

echo "== jobfetchd --check-config"
"$BIN/jobfetchd" --check-config
"$BIN/jobfetchd" 2> "$DEMO/daemon.log" &
DAEMON_PID=$!

echo "== jobfetchctl add: one kind after another"
"$BIN/jobfetchctl" add dataset done-2-sales done-3-inventory gz-prices err-blocked fixlater-weekly done-1000-stuck
"$BIN/jobfetchctl" add bulk done-2-orders inline-products fail-costly
"$BIN/jobfetchctl" add bulks partial-catalog
"$BIN/jobfetchctl" add export done-space
"$BIN/jobfetchctl" add task done-render nested-thumbs

echo "== jobfetchctl cancel dataset done-1000-stuck"
"$BIN/jobfetchctl" cancel dataset done-1000-stuck
echo "== waiting for dataset/fixlater-weekly to fail, then jobfetchctl retry"
for _ in $(seq 200); do [ -f "$DEMO/output/dataset/fixlater-weekly/job.json" ] && break; sleep 0.1; done
"$BIN/jobfetchctl" retry dataset fixlater-weekly

echo "== waiting for every job to finish"
python3 - "$BIN/jobfetchctl" <<'PY'
import json, subprocess, sys, time
deadline = time.time() + 120
while time.time() < deadline:
    out = subprocess.run([sys.argv[1], "list", "--json"], capture_output=True, text=True)
    jobs = json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []
    done = [j for j in jobs if j["state"] in ("succeeded", "failed", "cancelled")]
    retried = [j for j in jobs if j["id"] == "fixlater-weekly" and j["state"] == "succeeded"]
    if len(jobs) == 13 and len(done) == 13 and retried:
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
echo "== warnings and summary of bulks/partial-catalog"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(json.dumps({k: j[k] for k in ("outcome","warnings","summary")}, indent=2))' "$DEMO/output/bulks/partial-catalog/job.json"
echo "== first operations of bulks/partial-catalog"
head -2 "$DEMO/output/bulks/partial-catalog/operations.jsonl"
echo
echo "== daemon log"
cat "$DEMO/daemon.log"
