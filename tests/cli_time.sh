#!/bin/sh
# cli_time.sh - time sharding: a single long trial (B = 1, T = 2600: five
# units of 512 steps and a partial sixth) and two shorter ones (B = 2,
# T = 1100: three units; and B = 1 with --states1 of B1 = 2, T1 = 700)
# split over 1-4 ranks along the time (--decompose auto, 1xPt, 2x2), with
# empty ranks and uneven ranges, and along chunks
# (--memory too small for one element's steps), batch- and time-major: the
# JSON and every gradient file bitwise those of the in-memory reference
# (tests/npy-tool ref: one process, whole elements), and meta.decomposition
# the grid expected.  The terms: CORE, every type that reads batched inputs
# but hebbian and state_pred, whose sums couple steps (products over time,
# differences tau steps apart): those are COUPLED, in cli_time_coupled.sh
# (CRL_TIME_TERMS=COUPLED).
. "$(dirname "$0")/cli-lib.sh"

# gen NAME B T [OPTIONS]: the inputs, states1 of the same shape unless
# OPTIONS say otherwise.
gen() {
    name=$1 b=$2 t=$3
    shift 3
    mkdir "$WORK/$name" && "$TOOL" gen "$WORK/$name" --B "$b" --T "$t" --N 4 --K 2 --B1 "$b" \
        --T1 "$t" "$@" || exit 99
}
gen one 1 2600
gen onetm 1 2600 --time-major
gen two 2 1100
gen other 1 2600 --B1 2 --T1 700               # states1 split over its own plane

INPUTS="states states1 pred label mask w_in w_hid w_out w_hebb"
CORE="--term r=rnn:lambda_mse=1,lambda_in=0.1,lambda_hid=0.2,lambda_out=0.3,lambda_fr=0.5,lambda_fr_sd=0.2,lambda_fr_cv=0.3,correction=1
      --term a=fr:metric=l1 --term b=fr --term c=fr_dist:metric=sd --term d=fr_dist:metric=cv
      --term e=fr_dist:metric=mean_ad --term m=mse --term x=cross_entropy
      --term k=population_kl:symmetric=true,reg=0.01 --term n=entropy:reg=0.5"
COUPLED="--term h=hebbian:lambda=0.3 --term q=state_pred:tau=3 --term p=state_pred:tau=600"

input_args() {
    for role in $INPUTS; do
        printf ' --%s %s/%s.npy' "$(echo "$role" | tr _ -)" "$1" "$role"
    done
}

# check SET TERMS NP "OPTIONS" PB PT: eval of SET (one, onetm, two) with the
# terms TERMS (CORE or COUPLED) on NP ranks with OPTIONS equals the
# reference, and meta reports the decomposition PB x PT.
check() {
    set=$1 terms=$2 np=$3 options=$4 pb=$5 pt=$6
    [ "$np" -gt "$(max_ranks)" ] && return
    layout=
    case $set in *tm) layout=--time-major ;; esac
    ref=$WORK/ref-$set-$terms
    eval "spec=\$$terms"
    if [ ! -d "$ref" ]; then
        mkdir "$ref"
        # shellcheck disable=SC2046,SC2086
        "$TOOL" ref $layout $(input_args "$WORK/$set") $spec --grad-dir "$ref" >"$ref/json" \
            || { fail "$set $terms: the reference failed"; return; }
        normalize "$ref/json" "$ref/norm"
    fi
    what="$set $terms, $np rank(s) $options"
    out=$WORK/grads
    rm -rf "$out"
    # shellcheck disable=SC2046,SC2086
    mpi "$np" eval $layout $(input_args "$WORK/$set") $spec $options --json --grad-dir "$out"
    expect_ok "$what"
    [ "$rc" -eq 0 ] || return
    expect_contains "$WORK/out" "\"ranks\": $np," "$what: meta.ranks"
    expect_contains "$WORK/out" "\"decomposition\": {\"batch\": $pb, \"time\": $pt}}" \
        "$what: meta.decomposition"
    normalize "$WORK/out" "$WORK/norm"
    same "$ref/norm" "$WORK/norm" "$what: JSON"
    n=0
    for g in "$ref"/d_*.npy; do
        same "$g" "$out/$(basename "$g")" "$what: $(basename "$g")"
        n=$((n + 1))
    done
    [ $n -eq 7 ] && pass || fail "$what: $n gradient files in the reference, expected 7"
}

# The chunk buffers of one step of one: states, states1 and pred with their
# gradients, label and mask: 4 * 8 * 4 + 2 * 8 * 4 = 192 bytes; 48K holds
# 256 steps, less than a unit: chunks of one unit each.
SMALL="--memory 48K"

# cli_time_coupled.sh runs this script for COUPLED.
TERMS=${CRL_TIME_TERMS:-CORE}
check one $TERMS 1 "$SMALL" 1 1           # the time split along chunks
check one $TERMS 2 "" 1 2                  # units 3, 3 (the second partial)
check one $TERMS 4 "" 1 3                  # 2, 2, 2 and an empty rank
check one $TERMS 4 "--decompose 1x4" 1 4   # 2, 2, 1, 1
check one $TERMS 4 "--decompose 2x2" 2 2   # the second batch slice empty
check one $TERMS 3 "--decompose 1x2 $SMALL" 1 2
check two $TERMS 4 "--decompose 1x4" 1 4   # 3 units: rank 3 has no steps
check two $TERMS 4 "--decompose 2x2 --chunk-batch 1" 2 2
if [ "$TERMS" = CORE ]; then
    check one CORE 3 "" 1 3                # 2, 2, 2
    check one CORE 2 "--decompose batch" 2 1 # rank 1 empty
    check onetm CORE 1 "$SMALL" 1 1
    check onetm CORE 4 "--decompose 2x2 $SMALL" 2 2
    check other CORE 1 "$SMALL" 1 1
    check other CORE 4 "" 1 3                  # states1: 2 units over 3 ranks
    check other CORE 4 "--decompose 2x2" 2 2
fi

finish
