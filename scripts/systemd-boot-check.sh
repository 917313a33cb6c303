#!/usr/bin/env bash
# jobfetchd under a real systemd as PID 1: a Debian 12 container booted with
# systemd-nspawn, jobfetchd installed into it by `make install`, its unit
# enabled as shipped (hardening, sysusers, tmpfiles), a drop-in that adds
# LoadCredential= and a short WatchdogSec=, and the fake API on the host's
# loopback (the container shares the host's network). A check unit inside
# registers a job, waits for its result, reloads, stops the daemon and
# records what systemd saw; this script prints it and fails on any miss.
#
# Needs root, debootstrap and systemd-container (installed here) and a
# Debian mirror; the root file system is made once under $ROOTFS.
# Not part of `make test`: it downloads a Debian base system.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOTFS=${ROOTFS:-/var/tmp/jobfetch-nspawn}
export PATH=/opt/swift/usr/bin:$PATH

command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null ||
    apt-get install -y debootstrap systemd-container >/dev/null
# What the installed binaries need at run time (the Swift runtime is linked in).
RUNTIME="libcurl4 libsqlite3-0 zlib1g libisal2 libssl3"
if [ ! -x "$ROOTFS/usr/bin/systemctl" ]; then
    debootstrap --variant=minbase --include="systemd,systemd-sysv,dbus,${RUNTIME// /,}" \
        bookworm "$ROOTFS" http://deb.debian.org/debian
fi
# A root file system made by an older version of this script may lack a newer one.
chroot "$ROOTFS" dpkg -s $RUNTIME >/dev/null 2>&1 ||
    chroot "$ROOTFS" apt-get install -y --no-install-recommends $RUNTIME >/dev/null

make install DESTDIR="$ROOTFS" PREFIX=/usr >/dev/null

WORK=$(mktemp -d)
echo "nspawn-key-$$" > "$WORK/api-key"
python3 Tests/FakeAPI/fake_api.py --api-key "$(cat "$WORK/api-key")" > "$WORK/fake-api.log" 2>&1 &
API_PID=$!
trap 'kill $API_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do grep -q '^PORT ' "$WORK/fake-api.log" 2>/dev/null && break; sleep 0.1; done
PORT=$(awk '/^PORT /{print $2; exit}' "$WORK/fake-api.log")
[ -n "$PORT" ] || { echo "the fake API did not start"; exit 1; }

install -d -m 0750 "$ROOTFS/etc/jobfetchd"
install -m 0600 "$WORK/api-key" "$ROOTFS/etc/jobfetchd/api-key"
cat > "$ROOTFS/etc/jobfetchd/daemon.conf" <<CONF
[daemon]
spool_dir  = /var/spool/jobfetchd
state_dir  = /var/lib/jobfetchd
output_dir = /var/lib/jobfetchd/output
min_free_space = 1M

[kind dataset]
preset        = dataset
status_url    = http://127.0.0.1:$PORT/v0/datasets/{id}
header        = x-api-key: \${credential:api-key}
poll_interval = 200ms
CONF
install -d "$ROOTFS/etc/systemd/system/jobfetchd.service.d"
cat > "$ROOTFS/etc/systemd/system/jobfetchd.service.d/check.conf" <<'UNIT'
[Service]
LoadCredential=api-key:/etc/jobfetchd/api-key
WatchdogSec=2s
UNIT
ln -sf /usr/lib/systemd/system/jobfetchd.service "$ROOTFS/etc/systemd/system/multi-user.target.wants/jobfetchd.service"

# The check, run by systemd inside once jobfetchd is up; then it powers off.
cat > "$ROOTFS/usr/local/bin/jobfetch-check" <<'CHECK'
#!/bin/bash
out=/root/check.txt
exec > "$out" 2>&1
say() { echo "== $*"; }
say active: "$(systemctl is-active jobfetchd)"
say "$(systemctl show jobfetchd -p Type -p NotifyAccess -p WatchdogUSec -p User -p NRestarts | tr '\n' ' ')"
say status: "$(systemctl show jobfetchd -p StatusText --value)"
say user: "$(id jobfetchd)"
pid=$(systemctl show -p MainPID --value jobfetchd)
say nice: "$(awk '{print $19}' /proc/$pid/stat)" "$(grep -i 'nice' /proc/$pid/limits)" sched: "$(awk '{print $41}' /proc/$pid/stat)"
say spool: "$(stat -c '%a %U %G' /var/spool/jobfetchd)" state: "$(stat -c '%a %U %G' /var/lib/jobfetchd)"
jobfetchctl --config /etc/jobfetchd/daemon.conf add dataset done-2-nspawn
say ctl-list:
jobfetchctl --config /etc/jobfetchd/daemon.conf list
for _ in $(seq 150); do [ -e /var/lib/jobfetchd/output/dataset/done-2-nspawn/job.json ] && break; sleep 0.2; done
say inbox: "$(stat -c '%a %G' /var/spool/jobfetchd/dataset /var/spool/jobfetchd/.rejected | tr '\n' ' ')" db: "$(stat -c '%a %G' /var/lib/jobfetchd/jobfetchd.sqlite)"
say outcome: "$(grep -o '"outcome" *: *"[a-z]*"' /var/lib/jobfetchd/output/dataset/done-2-nspawn/job.json)"
say files: "$(ls /var/lib/jobfetchd/output/dataset/done-2-nspawn | tr '\n' ' ')"
# An operator in jobfetchd-submit (not root) registers a job with jobfetchctl.
useradd -m -G jobfetchd-submit alice 2>/dev/null || true
runuser -u alice -- jobfetchctl add dataset done-1-alice
for _ in $(seq 150); do [ -e /var/lib/jobfetchd/output/dataset/done-1-alice/job.json ] && break; sleep 0.2; done
say alice: "$(grep -o '"outcome" *: *"[a-z]*"' /var/lib/jobfetchd/output/dataset/done-1-alice/job.json)"
# Three watchdog periods (WatchdogSec=2s): a loop that stopped pinging would be restarted.
sleep 6
say after-watchdog: "$(systemctl show jobfetchd -p NRestarts -p ActiveState | tr '\n' ' ')"
systemctl reload jobfetchd
for _ in $(seq 50); do journalctl -u jobfetchd -o cat | grep -q 'configuration reloaded' && break; sleep 0.2; done
say reload: "$(journalctl -u jobfetchd -o cat | grep -c 'configuration reloaded')"
say priorities: "$(journalctl -u jobfetchd -o json --output-fields=PRIORITY,MESSAGE | grep -c '"PRIORITY":"5"')" notice line\(s\)
say security: "$(systemd-analyze security jobfetchd 2>/dev/null | tail -1)"
systemctl stop jobfetchd
say stopped: "$(systemctl show jobfetchd -p Result -p ExecMainCode -p ExecMainStatus | tr '\n' ' ')"
say journal:
journalctl -u jobfetchd -o short-precise --no-pager | tail -15
say CHECK-DONE
systemctl poweroff
CHECK
chmod 0755 "$ROOTFS/usr/local/bin/jobfetch-check"
cat > "$ROOTFS/etc/systemd/system/jobfetch-check.service" <<'UNIT'
[Unit]
Description=jobfetchd check under systemd
Wants=jobfetchd.service
After=jobfetchd.service

[Service]
Type=oneshot
ExecStart=/usr/local/bin/jobfetch-check

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/jobfetch-check.service "$ROOTFS/etc/systemd/system/multi-user.target.wants/jobfetch-check.service"
rm -f "$ROOTFS/root/check.txt"
# A persistent journal, read from the host afterwards when something fails.
rm -rf "$ROOTFS/var/log/journal"
install -d "$ROOTFS/var/log/journal"
rm -rf "$ROOTFS/var/lib/jobfetchd" "$ROOTFS/var/lib/private/jobfetchd" "$ROOTFS/var/spool/jobfetchd"

timeout "${BOOT_TIMEOUT:-180}" systemd-nspawn -q -D "$ROOTFS" --boot --keep-unit --register=no --console=pipe \
    </dev/null > "$WORK/boot.log" 2>&1 || true
if ! grep -q CHECK-DONE "$ROOTFS/root/check.txt" 2>/dev/null; then
    echo "the container did not complete the check; what it wrote and its journal:"
    cat "$ROOTFS/root/check.txt" 2>/dev/null || true
    journalctl -D "$ROOTFS/var/log/journal" --no-pager 2>/dev/null | grep -E "jobfetch|Failed|failed" | tail -40
    exit 1
fi
cat "$ROOTFS/root/check.txt"
fail=0
expect() { grep -q -- "$1" "$ROOTFS/root/check.txt" || { echo "MISSING: $1"; fail=1; }; }
expect "== active: active"
expect "Type=notify"
expect "== status: .*job(s) polling"
expect '== outcome: "outcome" *: *"succeeded"'
expect '== alice: "outcome" *: *"succeeded"'
expect "NRestarts=0 ActiveState=active"
expect "== reload: 1"
expect "== inbox: 770 jobfetchd-submit 770 jobfetchd-submit"
expect "db: 640 jobfetchd"
expect "Result=success ExecMainCode=1 ExecMainStatus=0"
expect "== CHECK-DONE"
[ $fail = 0 ] && echo "jobfetchd under systemd: all checks passed" || exit 1
