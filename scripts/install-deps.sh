#!/usr/bin/env bash
# Installs the Debian packages jobfetch builds and tests with (nginx-light and
# curl for the download tests, systemd for systemd-analyze; EXTRA_PKGS for the
# benchmark), if any is missing.
set -euo pipefail
PKGS="libcurl4-openssl-dev zlib1g-dev libisal-dev libsqlite3-dev libssl-dev libpq-dev postgresql binutils pkg-config python3 gzip curl nginx-light systemd ${EXTRA_PKGS:-}"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
if ! command -v swift >/dev/null 2>&1 && [ ! -x /opt/swift/usr/bin/swift ]; then
    echo "Swift 6 is needed (expected at /opt/swift/usr/bin or on PATH)" >&2
    exit 1
fi
