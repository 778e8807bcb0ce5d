#!/bin/sh
# python_binding.sh - the Python binding's tests (tests/python_binding.py):
# 1 rank records results, ctrnn-loss evaluates the same inputs at 1 and 2
# ranks (when this build has it), 2 ranks compare against both; time blocks
# (part of both phases) once more at 3 and 4 ranks, where the tilings have
# an empty rank and cut the batch and time both.
#
# Environment (set by `make check`): CRL_BUILDDIR (the build tree whose
# libctrnnloss and ctrnn-loss are tested), MPIRUN, CRL_TEST_TIMEOUT (seconds
# per mpirun, 300), CRL_PYTHON (tried first, see tests/python-lib.sh).
# Exit status 77 (skipped) where no python3 has torch, numpy and mpi4py.
set -u
here=$(cd "$(dirname "$0")" && pwd)
PYTHON_NEEDS="numpy torch mpi4py"
. "$here/python-lib.sh"
python=$PYTHON
python_mpi_setup
# A sanitizer build's library needs the ASan runtime loaded first.  Python
# and PyTorch leak by design, so leaks are not looked for here, nor is the
# slow full unwinding on every allocation (scripts/check's setting for them)
# needed.
preload=
if ldd "$lib" | grep -q libasan; then
    fast=detect_leaks=0:fast_unwind_on_malloc=1
    # libstdc++ too, at start-up: else ASan's __cxa_throw interceptor finds
    # no real function and aborts when PyTorch's autograd engine throws (an
    # exception raised in a backward, as the tests of refused backwards do).
    preload="-x LD_PRELOAD=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libstdc++.so.6)"
    preload="$preload -x ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}$fast"
    preload="$preload -x LSAN_OPTIONS=${LSAN_OPTIONS:+$LSAN_OPTIONS:}$fast"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ctrnn-loss-python.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT

# run NP ARGS...: the test script on NP ranks, bounded by the timeout; a
# failure is remembered (the phases after it still run, for their reports).
failed=0
run() {
    np=$1
    shift
    echo "=== $np rank(s): python_binding.py $*"
    # shellcheck disable=SC2086 # $preload: -x options or nothing
    timeout -k 10 "$timeout" "$mpirun" $preload -np "$np" "$python" "$here/python_binding.py" "$@"
    rc=$?
    { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && echo "TIMEOUT after $timeout s with $np rank(s)"
    [ $rc -eq 0 ] || { echo "FAILED with $np rank(s) (exit $rc)"; failed=1; }
}

run 1 record "$work"
[ $failed -eq 0 ] || exit 1   # nothing recorded to compare against

cli=$builddir/src/cli/ctrnn-loss
if [ -x "$cli" ]; then
    for case in "$work"/cli/*/; do
        for np in 1 2; do
            out=$case/np$np
            mkdir -p "$out"
            # args.txt: one argument a line (paths without spaces).
            # shellcheck disable=SC2046
            timeout -k 10 "$timeout" "$mpirun" -np $np "$cli" eval $(cat "$case/args.txt") \
                --json --grad-dir "$out" >"$out/out.json" 2>"$out/err" \
                || { echo "ctrnn-loss failed on $case at $np rank(s):"; cat "$out/err"; }
        done
    done
else
    rm -rf "$work/cli"
fi

run 2 compare "$work"
run 3 blocks "$work"
run 4 blocks "$work"
exit $failed
