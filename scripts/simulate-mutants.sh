#!/usr/bin/env bash
# Proves the simulator bites: puts back past bugs one at a time
# (scripts/mutants/*.patch), runs the CI budget of seeds (SEEDS, default
# 2000) against each, and prints the first seed that caught it. Fails if a
# bug goes unnoticed. The tree is put back after each, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
SEEDS=${SEEDS:-2000}
status=0
current=""
restore() { if [ -n "$current" ]; then git apply -R "$current"; current=""; fi; }
trap restore EXIT
for patch in scripts/mutants/*.patch; do
    name=$(basename "$patch" .patch)
    git apply "$patch"
    current=$patch
    swift build --build-tests >/tmp/jobfetch-mutant-build.log 2>&1 || { echo "$name: does not build (see /tmp/jobfetch-mutant-build.log)"; status=1; restore; continue; }
    started=$SECONDS
    out=$(SIM_SEEDS=$SEEDS swift test --skip-build --filter SimulatorTests.seededRuns 2>&1 || true)
    took=$((SECONDS - started))
    restore
    first=$(grep -o '↳ seed [0-9]* at t=[^:]*: .*' <<<"$out" | head -1 || true)
    if [ -z "$first" ]; then
        echo "$name: NOT FOUND in $SEEDS seeds"
        status=1
    else
        seed=$(awk '{print $3}' <<<"$first")
        echo "$name: caught by seed $seed of $SEEDS (in ${took} s): ${first#*: }"
    fi
done
swift build --build-tests >/dev/null 2>&1
exit $status
