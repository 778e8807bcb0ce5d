#!/bin/sh
# fuzz_replay.sh - every seed input (tests/fuzz/corpus/TARGET) and every
# input a fuzzer ever crashed on (tests/fuzz/regressions/TARGET) through the
# fuzz targets, built without libFuzzer by make (tests/fuzz/replay.c).
set -u
src=${srcdir:-.}/tests/fuzz
status=0
for target in npy_header term ini; do
    set -- "$src/corpus/$target"
    [ -d "$src/regressions/$target" ] && set -- "$@" "$src/regressions/$target"
    printf '%s: ' "$target"
    "./tests/fuzz/replay_$target" "$@" || { echo "FAIL: replay_$target $*"; status=1; }
done
exit $status
