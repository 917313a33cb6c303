#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/Package.swift, runs each for SECONDS
# (default 60; also $FUZZ_SECONDS) on a writable copy of its seed corpus,
# then replays every regression fixture in Fuzz/Regressions/<Target>/.
# Exits non-zero when a target crashed, leaked, timed out or ran out of
# memory, or when a regression fixture fails.
#
#   Fuzz/run.sh [SECONDS]         FUZZ_TARGETS="FuzzJSON FuzzURL" Fuzz/run.sh 30
#
# Everything it makes is under .build-fuzz/ (ignored by git):
#   corpus/<Target>/     the working corpus (seeded from Fuzz/Corpus/<Target>, grows across runs)
#   artifacts/<Target>/  crash-*, leak-*, timeout-*, oom-* inputs libFuzzer wrote
#   logs/<Target>.log    libFuzzer's output (the stack trace of a finding)
#   tmp/                 $TMPDIR of the targets (FuzzZip's scratch directories)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

SECONDS_PER_TARGET="${1:-${FUZZ_SECONDS:-60}}"
ALL_TARGETS="FuzzJSON FuzzConfig FuzzSpoolFile FuzzStatusReader FuzzURL FuzzURLAgreement FuzzTimestamp FuzzHTTPHeaders FuzzInflate FuzzZip"
TARGETS="${FUZZ_TARGETS:-$ALL_TARGETS}"
SCRATCH=.build-fuzz
BIN="$SCRATCH/debug"
LOCK=/tmp/jobfetch-build.lock   # one Swift build at a time on this machine

max_len() {
    case "$1" in
        FuzzZip | FuzzInflate) echo $((1 << 20)) ;;
        # A config is a few KiB; 64 KiB of unknown keys (each gets a typo
        # suggestion) takes over -timeout in this debug+ASan build: a false hang.
        FuzzConfig) echo $((16 << 10)) ;;
        # A base URL and a reference: longer inputs only slow the comparison with libcurl.
        FuzzURLAgreement) echo 4096 ;;
        *) echo $((64 << 10)) ;;
    esac
}

# The fuzz package pins what the root package pins (both files are ignored by git).
if [ -e Package.resolved ] && [ Package.resolved -nt Fuzz/Package.resolved ]; then
    cp Package.resolved Fuzz/Package.resolved
fi

echo "== building the fuzz targets (waiting for $LOCK)"
mkdir -p "$SCRATCH/logs"
build() {
    flock "$LOCK" swift build -c debug --package-path Fuzz --scratch-path "$SCRATCH" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library >"$SCRATCH/logs/build.log" 2>&1
}
for attempt in 1 2 3; do
    if build; then break; fi
    # Sources edited while the build read them: build again. Any other failure is final.
    if [ "$attempt" -lt 3 ] && grep -q "was modified during the build" "$SCRATCH/logs/build.log"; then
        echo "   sources changed during the build; building again"
        sleep 5
        continue
    fi
    grep -E "error:" "$SCRATCH/logs/build.log" | sort -u | head -40 >&2 || true
    echo "fuzz build failed; see $SCRATCH/logs/build.log" >&2
    exit 1
done

# LeakSanitizer: leaks in dependencies that are not ours, each by one frame (see Fuzz/lsan.supp).
export LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# The Swift runtime's own crash handler (backtracer) would run inside
# AddressSanitizer's and trip it: libFuzzer reports crashes, with symbols.
export SWIFT_BACKTRACE=enable=no
# FuzzZip leaves its scratch directory behind only when it crashed: from an earlier run.
rm -rf "$SCRATCH/tmp"
mkdir -p "$SCRATCH/tmp"
export TMPDIR="$PWD/$SCRATCH/tmp"

# The top of a finding's report: the error lines, then the first frames
# that are not libFuzzer's, the sanitizers', libc's, the Swift runtime's or
# the targets' entry plumbing.
report() {
    grep -E "Precondition failed|Fatal error|ERROR: " "$1" | head -3 | sed 's/^/    /' || true
    grep -E "^ *#[0-9]+ " "$1" \
        | grep -vE "compiler-rt|libc\.so|libswiftCore\.so|libc_start|LLVMFuzzerTestOneInput|jobfetch_fuzzer_main|fuzzerMain|Fuzz[A-Za-z]+_main| _start " \
        | head -"$2" | sed 's/^/    /' || true
}

failed=0
echo "== fuzzing each target for ${SECONDS_PER_TARGET}s"
for t in $TARGETS; do
    corpus="$SCRATCH/corpus/$t"
    artifacts="$SCRATCH/artifacts/$t"
    log="$SCRATCH/logs/$t.log"
    dict=()
    [ -e "Fuzz/Dictionaries/$t.dict" ] && dict=("-dict=Fuzz/Dictionaries/$t.dict")
    mkdir -p "$corpus" "$artifacts"
    cp -n "Fuzz/Corpus/$t"/* "$corpus"/ 2>/dev/null || true
    marker="$SCRATCH/logs/$t.start"
    touch "$marker"
    set +e
    "$BIN/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" "$corpus" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # crash-*, leak-*, timeout-*, oom-* (slow-unit-* is only a note).
    found=$(find "$artifacts" -type f -newer "$marker" ! -name 'slow-unit-*' | head -1)
    if [ "$rc" -eq 0 ] && [ -z "$found" ]; then
        printf '%-18s %10s executions  nothing found\n' "$t" "${execs:-?}"
    else
        failed=1
        kind=$(basename "${found:-unknown-}"); kind=${kind%%-*}
        printf '%-18s %10s executions  FOUND: %s (exit %d) %s\n' "$t" "${execs:-?}" "$kind" "$rc" "${found:-(no input saved; see $log)}"
        report "$log" 8
    fi
done

echo "== replaying Fuzz/Regressions"
for t in $TARGETS; do
    dir="Fuzz/Regressions/$t"
    [ -d "$dir" ] || continue
    for f in "$dir"/*; do
        [ -f "$f" ] || continue
        case "$(basename "$f")" in README*) continue ;; esac
        log="$SCRATCH/logs/regression-$t-$(basename "$f").log"
        if "$BIN/$t" -timeout=10 -rss_limit_mb=2048 "$f" >"$log" 2>&1; then
            echo "ok      $f"
        else
            failed=1
            echo "FAILS   $f (see $log)"
            report "$log" 6
        fi
    done
done

if [ "$failed" -ne 0 ]; then
    echo "fuzzing found problems: inputs in $SCRATCH/artifacts/, logs in $SCRATCH/logs/" >&2
    exit 1
fi
echo "fuzzing found nothing"
