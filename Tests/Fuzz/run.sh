#!/usr/bin/env bash
# Builds the libFuzzer harnesses and runs each for a bounded time from its corpus.
# Usage: Tests/Fuzz/run.sh [seconds per harness, default 60] [harness...]
# CAUSEWAY_FUZZ_SMOKE=1 (what scripts/test.sh sets): start from the seeds alone, with a fixed
# random seed, so a CI run repeats what was run before landing instead of exploring anew.
# Builds with libFuzzer and AddressSanitizer (Tests/Fuzz/.build, apart from the gateway's own).
# Harnesses: FuzzGraphQLDocument (prescan → parse → validate → limits → plan), FuzzJSON (the
# JSON tape parser), FuzzHTTP1Head (llhttp heads → framing checks → HTTPRequest).
# Seeds live in Tests/Fuzz/seeds/<harness>; what libFuzzer learns goes to Tests/Fuzz/corpus
# (ignored by git); crashes and timeouts are written to Tests/Fuzz/findings and fail the run.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(FuzzGraphQLDocument FuzzJSON FuzzHTTP1Head)
# AddressSanitizer beside libFuzzer: an out-of-bounds write is reported where it happens, not
# as a crash somewhere later (the first JSON finding was a "double free" without it).
# (Swift takes the last -sanitize= it is given, and SwiftPM passes one per --sanitize: the
# combined flag after them is what keeps both coverage and ASan in Swift code.)
flags=(-c release --sanitize=fuzzer --sanitize=address)
if ! swift build "${flags[@]}" -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library > .build-log 2>&1; then
    grep -E "error" .build-log || tail -n 30 .build-log
    echo "fuzz: the harnesses did not build"
    exit 1
fi
bin=$(swift build "${flags[@]}" --show-bin-path)
# Let libFuzzer, not Swift's backtracer, handle a crash, so the input is saved.
export SWIFT_BACKTRACE=enable=no
here=$(pwd)
mkdir -p findings
status=0
smoke=()
for harness in "${harnesses[@]}"; do
    corpus="$here/corpus/$harness"
    if [ "${CAUSEWAY_FUZZ_SMOKE:-0}" = 1 ]; then
        corpus=$(mktemp -d)
        smoke=(-seed=1)
    fi
    mkdir -p "$corpus"
    echo "fuzz: $harness for ${seconds}s"
    # -timeout: one input taking over 2 s is a hang; -rss_limit_mb: memory without bound.
    if ! (cd ../.. && "$bin/$harness" "$corpus" "$here/seeds/$harness" "${smoke[@]}" \
            -max_total_time="$seconds" -timeout=2 -rss_limit_mb=2048 -max_len=1048576 \
            -artifact_prefix="$here/findings/$harness-" -print_final_stats=1 2>&1 | tail -n 15); then
        echo "fuzz: $harness FAILED (see Tests/Fuzz/findings)"
        status=1
    fi
done
exit $status
