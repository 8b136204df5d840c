#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (address and undefined sanitizers,
# Debian's wolfSSL, libsecmsg instrumented for coverage) in BUILD_DIR and
# runs each for SECONDS over a scratch copy of its committed corpus.
#
#   run_fuzzers.sh SOURCE_DIR BUILD_DIR [SECONDS [TARGET...]]
#
# SECONDS defaults to $SECMSG_FUZZ_SECONDS, else 20.  Exit 0 when every
# target ran without a crash, leak, timeout or out-of-memory; 1 otherwise
# (the reproducer is under BUILD_DIR/artifacts/TARGET/: copy it into
# tests/fuzz/corpus/TARGET/ as a regression seed once fixed); 77 (skipped)
# without clang++ or its libFuzzer runtime.  Nice'd: the machine is shared.
set -euo pipefail

src=${1:?usage: run_fuzzers.sh SOURCE_DIR BUILD_DIR [SECONDS [TARGET...]]}
build=${2:?usage: run_fuzzers.sh SOURCE_DIR BUILD_DIR [SECONDS [TARGET...]]}
seconds=${3:-${SECMSG_FUZZ_SECONDS:-20}}
shift $(( $# < 3 ? $# : 3 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frames client psk config proxy)

if ! command -v clang++ >/dev/null; then
    echo "run_fuzzers: no clang++: skipped"
    exit 77
fi
if [ ! -f "$(clang++ --print-runtime-dir)/libclang_rt.fuzzer-$(uname -m).a" ] &&
   [ ! -f "$(clang++ -print-file-name=libclang_rt.fuzzer-$(uname -m).a)" ]; then
    echo "run_fuzzers: clang++ without its libFuzzer runtime (Debian: libclang-rt-dev): skipped"
    exit 77
fi

if [ ! -f "$build/build.ninja" ]; then
    mkdir -p "$build"
    CXX=clang++ nice -n 19 meson setup "$build" "$src" \
        -Dwolfssl=system -Dsystem_tests=false -Dbuildtype=debugoptimized \
        -Db_sanitize=address,undefined -Db_lundef=false \
        -Dcpp_args=-fsanitize=fuzzer-no-link >"$build/setup.log" 2>&1 ||
        { cat "$build/setup.log"; echo "run_fuzzers: meson setup failed"; exit 1; }
fi
nice -n 19 ninja -C "$build" "${targets[@]/#/tests/fuzz/fuzz-}"

# UBSan stops at its first report (a crash to libFuzzer); ASan's leak
# check is on at the end of each input.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
status=0
for t in "${targets[@]}"; do
    scratch=$build/corpus-run/$t
    artifacts=$build/artifacts/$t/
    rm -rf "$scratch"
    mkdir -p "$scratch" "$artifacts"
    echo "=== fuzz-$t: ${seconds}s"
    # New inputs go to the scratch folder; the committed corpus is read only.
    # An input runs in well under a millisecond; the 60 s per-input limit
    # still catches a hang, but not a niced process starved by a busy
    # machine (-timeout=10 reported such starvation as a hang).
    if nice -n 19 "$build/tests/fuzz/fuzz-$t" -max_total_time="$seconds" -timeout=60 \
        -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
        -artifact_prefix="$artifacts" "$scratch" "$src/tests/fuzz/corpus/$t" \
        >"$build/fuzz-$t.log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
            "$build/fuzz-$t.log" | tr '\n' ' '
        echo
        echo "fuzz-$t: no crash, leak or timeout in ${seconds}s"
    else
        status=1
        tail -n 60 "$build/fuzz-$t.log"
        echo "fuzz-$t: FAILED; reproducer: $(ls "$artifacts" | sed "s|^|$artifacts|" | tr '\n' ' ')"
    fi
done
exit $status
