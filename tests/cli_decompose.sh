#!/bin/sh
# cli_decompose.sh - --decompose: bad values refused on every rank with one
# message (status 2), the choice of auto reported in meta.decomposition
# (and in the table), a bad value located at its global
# step when the time is split, and the last, partial unit of T read by
# the rank that holds it.
. "$(dirname "$0")/cli-lib.sh"

mkdir "$WORK/one" && "$TOOL" gen "$WORK/one" --B 1 --T 2600 --N 3 || exit 99
S=$WORK/one/states.npy
NP=$(max_ranks)

echo "== bad values"
bad() {
    mpi_each 2 eval --states "$S" --term fr --decompose "$1"
    expect_failure 2 "$2" 2 eval --decompose "$1"
}
if [ "$NP" -ge 2 ]; then
    bad 3x1 "--decompose '3x1' needs 3 ranks but the run has 2: Pb*Pt must be at most"
    bad 9223372036854775807x2 "needs more ranks but the run has 2"
    for value in 0x2 1x 1x2x3 " 1x2" 1X2 time; do
        bad "$value" "--decompose '$value' is not auto, batch or PbxPt"
    done
fi
mpi_each 1 eval --states "$S" --term fr --decompose
expect_failure 2 "--decompose" 1 eval --decompose

echo "== auto"
# B = 1, T = 2600 (6 units): P = 1 batch, 2 1x2, 3 1x3, 4 1x3 (one rank
# empty: as fast as 1x4); B = 3, 2 units on 4 ranks: 3x1 holds 2 units per
# rank as 2x2 does, with fewer ranks: batch; B = 2, 4 units on 4 ranks: 2x2
# (1x4 as fast, more along the batch wins), on 3 ranks batch (1x2 and 1x3
# as slow: 2 elements x 2 units).
mkdir "$WORK/three" && "$TOOL" gen "$WORK/three" --B 3 --T 1000 --N 3 || exit 99
mkdir "$WORK/two" && "$TOOL" gen "$WORK/two" --B 2 --T 2048 --N 3 || exit 99
for case in "one 2 1 2" "one 4 1 3" "three 4 4 1" "two 4 2 2" "two 3 3 1"; do
    set -- $case
    [ "$2" -gt "$NP" ] && continue
    mpi "$2" eval --states "$WORK/$1/states.npy" --term fr --json
    expect_ok "auto: $1 on $2 rank(s)"
    expect_contains "$WORK/out" "\"decomposition\": {\"batch\": $3, \"time\": $4}}" \
        "auto: $1 on $2 rank(s)"
done
mpi 1 eval --states "$S" --term fr
expect_ok "the table"
expect_contains "$WORK/out" "float64, decomposition 1x1 (batch x time)" "the table's header"

echo "== the partial last unit, and a bad value's global step"
# A change of the last step (in the partial sixth unit) changes the value
# wherever that step is read: the rank holding it reads it.
"$TOOL" set "$S" "$WORK/last.npy" 0.75 0 2599 1 \
    && "$TOOL" set "$S" "$WORK/nan.npy" nan 0 2000 2 || exit 99
mpi 1 eval --states "$S" --term fr --json
expect_ok "fr"
normalize "$WORK/out" "$WORK/before"
mpi 1 eval --states "$WORK/last.npy" --term fr --json
expect_ok "fr of last.npy"
normalize "$WORK/out" "$WORK/after"
if cmp -s "$WORK/before" "$WORK/after"; then
    fail "the value does not change with the last step"
else
    pass
fi
for run in "1 --memory 8K" "2 --decompose 1x2" "4 --decompose 1x4"; do
    set -- $run
    np=$1
    shift
    [ "$np" -gt "$NP" ] && continue
    mpi "$np" eval --states "$WORK/last.npy" --term fr --json "$@"
    expect_ok "fr of last.npy, $np rank(s) $*"
    normalize "$WORK/out" "$WORK/split"
    same "$WORK/after" "$WORK/split" "fr of last.npy, $np rank(s) $* against 1 rank"
    # states[0, 2000] lies in the fourth chunk (1 rank: 512 steps of 24
    # bytes), on the second rank (2 ranks: 1536..2599; 4: 1024..2047).
    mpi_each "$np" eval --states "$WORK/nan.npy" --term fr "$@"
    expect_failure 1 "states[b=0, t=2000, i=2] is NaN" "$np" eval nan.npy "$@"
done

finish
