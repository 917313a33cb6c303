#!/usr/bin/env bash
# The download benchmark: a release build of jobfetchd against curl, gzip and
# pigz on a local nginx. Inputs (1 GiB) are made once under ./bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
EXTRA_PKGS="pigz" scripts/install-deps.sh
swift build -c release
python3 scripts/bench.py "$(swift build -c release --show-bin-path)" bench "${RUNS:-3}"
