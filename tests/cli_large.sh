#!/bin/sh
# cli_large.sh - an evaluation of more than 2^31 elements gives the exact
# value: no index, offset or count on the way (file offsets, MPI-IO counts,
# batch splits, chunking, reductions) is 32-bit.  The states are a sparse
# float32 file of zeros (8 GiB apparent, a few KiB on disk), shape
# (2^15 + 1, 2^15, 2): 2^31 + 2^16 elements, read in chunks (--chunk-batch)
# to bound memory, non-zero at flat index 2^31 (neuron 0, where a 32-bit
# index wraps to 0 or below) and at the last one (neuron 1).
# Skipped in a sanitizer build: reading 8 GiB of holes is slow there and
# proves nothing more.
. "$(dirname "$0")/cli-lib.sh"

if [ -n "${CRL_CLI_ASAN_OPTIONS:-}" ]; then
    echo "SKIP: a sanitizer build"
    exit 77
fi
B=32769 T=32768 N=2
big=$WORK/big.npy
if ! "$TOOL" sparse "$big" f4 $B $T $N 2147483648=1 2147549183=3 2>"$WORK/err"; then
    echo "SKIP: cannot write an 8 GiB sparse file here: $(cat "$WORK/err")"
    exit 77
fi
if [ "$(du -k "$big" | cut -f1)" -gt 65536 ]; then
    echo "SKIP: this file system does not keep files sparse"
    exit 77
fi
np=$(multi_ranks | awk '{ print $1 }')
start=$(date +%s)
mpi "$np" eval --states "$big" --term f=fr:metric=l1 --chunk-batch 64 --json
expect_ok "$np rank(s): fr l1 over 2^31 + 2^16 elements"
# fr l1 = (|mu_0| + |mu_1|)/2, mu_0 = 1/(B T), mu_1 = 3/(B T): to the last
# bit or two (a misplaced element changes it entirely).
value=$(sed -n 's/^{"total": \([^,]*\), "terms": {"f": \([^}]*\)}.*/\1 \2/p' "$WORK/out")
if echo "$value" | awk -v bt=$((B * T)) '{
        want = (1 / bt + 3 / bt) / 2
        exit !($1 == $2 && $1 - want <= 4e-16 * want && want - $1 <= 4e-16 * want) }'; then
    pass
else
    fail "fr l1 over 2^31 + 2^16 elements: got '$value', want $(awk -v bt=$((B * T)) \
        'BEGIN { printf "%.17g", (1 / bt + 3 / bt) / 2 }')"
fi
expect_contains "$WORK/out" "\"batch\": $B, \"time\": $T, \"neurons\": $N" "the shape"
echo "$np rank(s): $(($(date +%s) - start)) s"
finish
