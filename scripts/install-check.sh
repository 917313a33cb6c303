#!/usr/bin/env bash
# Checks `make install`: it installs into a DESTDIR, and the installed
# binaries run with the Swift toolchain out of reach (/opt/swift hidden
# under an empty tmpfs in a private mount namespace), so they carry their
# Swift runtime (--static-swift-stdlib) and need only Debian's libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=$(mktemp -d /tmp/jobfetch-install-XXXXXX)
trap 'rm -rf "$dest"' EXIT
make --no-print-directory install DESTDIR="$dest" PREFIX=/usr >/dev/null
for f in usr/bin/jobfetchd usr/bin/jobfetchctl usr/lib/systemd/system/jobfetchd.service \
         usr/lib/sysusers.d/jobfetchd.conf usr/lib/tmpfiles.d/jobfetchd.conf usr/share/doc/jobfetch/daemon.conf \
         usr/share/doc/jobfetch/README.md usr/share/man/man1/jobfetchctl.1 usr/share/man/man8/jobfetchd.8 \
         usr/share/bash-completion/completions/jobfetchctl usr/share/zsh/vendor-completions/_jobfetchctl \
         usr/share/fish/vendor_completions.d/jobfetchctl.fish usr/share/bash-completion/completions/jobfetchd; do
    [ -e "$dest/$f" ] || { echo "install-check: $f was not installed" >&2; exit 1; }
done
# The man page lists every subcommand the parser has (it is generated from it).
for sub in add list status wait history cancel retry; do
    grep -q "^\.SS $sub\$" "$dest/usr/share/man/man1/jobfetchctl.1" || { echo "install-check: jobfetchctl.1 lacks $sub" >&2; exit 1; }
done
grep -q 'wait' "$dest/usr/share/bash-completion/completions/jobfetchctl" || { echo "install-check: the bash completion lacks wait" >&2; exit 1; }
grep -q '^ExecStart=/usr/bin/jobfetchd$' "$dest/usr/lib/systemd/system/jobfetchd.service" \
    || { echo "install-check: the unit's ExecStart is not /usr/bin/jobfetchd" >&2; exit 1; }
if ldd "$dest/usr/bin/jobfetchd" "$dest/usr/bin/jobfetchctl" | grep -E 'swift|Foundation|dispatch'; then
    echo "install-check: the installed binaries still need the Swift toolchain's libraries" >&2; exit 1
fi
creds=$(mktemp -d); echo key > "$creds/qoery-key"
run='/opt/swift/usr/bin/swift --version >/dev/null 2>&1 && { echo "the toolchain is still reachable" >&2; exit 1; };
     CREDENTIALS_DIRECTORY='"$creds"' '"$dest"'/usr/bin/jobfetchd --check-config --config '"$dest"'/usr/share/doc/jobfetch/daemon.conf &&
     '"$dest"'/usr/bin/jobfetchctl --version'
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
    unshare -m sh -c "mount -t tmpfs none /opt/swift && $run"
else
    echo "install-check: not root (or no mount namespaces): checked with ldd only" >&2
    sh -c "CREDENTIALS_DIRECTORY=$creds $dest/usr/bin/jobfetchd --check-config --config $dest/usr/share/doc/jobfetch/daemon.conf"
fi
rm -rf "$creds"
echo "install-check: installed binaries run without the Swift toolchain"
