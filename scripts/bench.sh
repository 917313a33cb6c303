#!/usr/bin/env bash
# The benchmarks: a release build of jobfetchd against curl, aria2 and igzip
# on a local nginx (inputs of 1 GiB are made once under ./bench/), then the
# 10,000-job scale run (scripts/scale.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
EXTRA_PKGS="aria2 isal" scripts/install-deps.sh
swift build -c release
BIN=$(swift build -c release --show-bin-path)
python3 scripts/bench.py "$BIN" bench "${RUNS:-3}"
python3 scripts/scale.py "$BIN" bench
