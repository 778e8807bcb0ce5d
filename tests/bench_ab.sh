#!/bin/sh
# bench_ab.sh - bench/ctrnn-ab, the side-by-side benchmark of two builds:
# two copies of this build's library, loaded into one process, evaluate a
# composite of the state terms and give bitwise the same gradients; a term
# it cannot parse or the library does not know is refused with a message.
#
# Skipped where the build has no shared library to load (configure
# --disable-shared).
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
# The sanitizer build's setting for short runs (scripts/check).
if [ -n "${CRL_CLI_ASAN_OPTIONS:-}" ]; then
    export ASAN_OPTIONS=$CRL_CLI_ASAN_OPTIONS
fi
ab=./bench/ctrnn-ab
lib=./.libs/libctrnnloss.so.0
[ -x "$ab" ] || { echo "FAIL: no $ab (build first)"; exit 1; }
[ -e "$lib" ] || { echo "SKIP: no shared library $lib (a static-only build)"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ctrnn-loss-ab.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
mkdir "$work/a" "$work/b" && cp -L "$lib" "$work/a/" && cp -L "$lib" "$work/b/" || exit 99
status=0

terms="e=entropy:reg=0.5 r=fr:metric=l2 s=fr_dist:metric=cv p=state_pred:tau=2"
# shellcheck disable=SC2086 # $terms: one word a term
if ! "$ab" --reps 3 --shape 3,40,37 "$work/a/libctrnnloss.so.0" "$work/b/libctrnnloss.so.0" \
    $terms >"$work/out" 2>&1; then
    echo "FAIL: ctrnn-ab exited with an error:"; cat "$work/out"; status=1
elif ! grep -q '^gradients bitwise the same: yes$' "$work/out"; then
    echo "FAIL: the two copies' gradients differ:"; cat "$work/out"; status=1
elif [ "$(grep -c 'forward min [0-9.]* median [0-9.]* ' "$work/out")" != 2 ]; then
    echo "FAIL: no timings for both libraries:"; cat "$work/out"; status=1
fi

# refused: "$ab" LIB LIB TERM must fail and print NEEDLE
refused() {
    if "$ab" --reps 1 --shape 1,4,3 "$work/a/libctrnnloss.so.0" "$work/b/libctrnnloss.so.0" \
        "$1" >"$work/bad" 2>&1; then
        echo "FAIL: ctrnn-ab accepted the term '$1'"; status=1
    elif ! grep -q "$2" "$work/bad"; then
        echo "FAIL: term '$1': no message '$2':"; cat "$work/bad"; status=1
    fi
}
refused "no-type" "a term is NAME=TYPE"
refused "x=nosuch" "unknown type 'nosuch'"
[ $status = 0 ] && echo "PASS: two copies, the same bits; bad terms refused"
exit $status
