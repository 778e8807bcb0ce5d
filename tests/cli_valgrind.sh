#!/bin/sh
# cli_valgrind.sh - one evaluation with gradients on 2 ranks under valgrind
# memcheck: any invalid access or use of uninitialised memory fails the test
# (--error-exitcode=1 on each rank).  Open MPI's runtime noise is suppressed
# by tests/valgrind.supp, whose rules only match stacks inside PMIx, so an
# error in our code (or in MPI-IO on our buffers) still counts: this test
# found composite.c comparing a struct's padding with memcmp.  Leaks are
# checked elsewhere (LeakSanitizer in scripts/check, the cycle test in
# tests/test_composite.c): MPI's own are too many to suppress by library.
# Skipped without valgrind, and in a sanitizer build (valgrind cannot run
# AddressSanitizer's binaries).
. "$(dirname "$0")/cli-lib.sh"

if ! command -v valgrind >/dev/null 2>&1; then
    echo "SKIP: valgrind is not installed (scripts/packages has it)"
    exit 77
fi
if [ -n "${CRL_CLI_ASAN_OPTIONS:-}" ] || nm -D "$CLI" 2>/dev/null | grep -q __asan_init \
    || nm "$CLI" 2>/dev/null | grep -q __asan_init; then
    echo "SKIP: a sanitizer build"
    exit 77
fi
# Components stay loaded, so that frames have names.
export OMPI_MCA_mca_base_component_disable_dlclose=1 PMIX_MCA_mca_base_component_disable_dlclose=1
supp=${srcdir:-$(dirname "$0")/..}/tests/valgrind.supp
mkdir "$WORK/f8" && "$TOOL" gen "$WORK/f8" --B 5 --T 4 --N 3 --K 2 --N-in 2 || exit 99
F=$WORK/f8
: >"$WORK/exits"
timeout -k 10 "$TIMEOUT" "$MPIRUN" -np 2 sh -c \
    'valgrind -q --error-exitcode=1 --leak-check=no --suppressions="$0" "$@"; echo "$?" >>"'"$WORK"'/exits"' \
    "$supp" "$CLI" eval --states "$F/states.npy" --pred "$F/pred.npy" --label "$F/label.npy" \
    --w-in "$F/w_in.npy" --w-hid "$F/w_hid.npy" --w-out "$F/w_out.npy" \
    --term r=rnn:lambda_in=1,lambda_hid=1,lambda_out=1,lambda_fr=1,lambda_fr_sd=1 \
    --term f=fr_dist --chunk-batch 2 --grad-dir "$WORK/grads" --json </dev/null >"$WORK/out" 2>"$WORK/err"
rc=$?
[ $rc -eq 124 ] && fail "TIMEOUT under valgrind"
if [ "$(sort "$WORK/exits" | tr '\n' ' ')" = "0 0 " ]; then pass; else
    fail "valgrind: exit statuses per rank: $(tr '\n' ' ' <"$WORK/exits")"
    grep '^==' "$WORK/err" | head -n 60
fi
[ -s "$WORK/grads/d_states.npy" ] && pass || fail "no d_states.npy written"
finish
