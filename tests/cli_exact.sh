#!/bin/sh
# cli_exact.sh - bitwise identical results for crafted inputs at 1-8 ranks
# (docs/losses.md "Exactness"): values from 2^-80 to 2^70 with exact
# cancellation and sums on a rounding tie, where a double-double
# combination of the ranks' partial sums gives different bits at different
# rank counts.  Every term type that reads states, pred and label, chunked
# and not; the JSON and every gradient file must be the same at every rank
# count (CRL_EXACT_RANKS, default 1-8: more ranks than elements too).
. "$(dirname "$0")/cli-lib.sh"

EXACT_RANKS=${CRL_EXACT_RANKS:-"1 2 3 4 5 6 7 8"}

# The issue's case: 2^60, 1, 2^-53, 2^-80, -2^60 as five batch elements.
# Their mean (1 + 2^-53 + 2^-80) / 5 rounds to 0.2's double; a
# double-double reduction gave 0.20000000000000004 at 3, 6 and 8 ranks.
"$TOOL" sparse "$WORK/tie.npy" f8 5 1 1 0=0x1p60 1=1 2=0x1p-53 3=0x1p-80 4=-0x1p60 || exit 99
for np in $EXACT_RANKS; do
    mpi "$np" eval --states "$WORK/tie.npy" --term a=fr:metric=l1 --json
    expect_ok "tie at $np ranks"
    expect_contains "$WORK/out" '"total": 0.20000000000000001' "the tie's mean at $np ranks"
done

# crafted OUT B T W SEED: a (B, T, W) float64 array whose rows mix
# magnitudes 2^-80 .. 2^70 and 1 + 2^-52 (1 + 2^-53 and 2^-80 make sums on
# and next to a tie); with an odd SEED also negative values, each 2^70
# cancelled exactly by a -2^70 of the same neuron in the next element, and
# neuron 0 holding the tie above, one value per element.
crafted() {
    out=$1 b=$2 t=$3 w=$4 seed=$5 top=${6:-70} exps=${7:-"70 0 -53 -80 60 -1 -27 1 30 -60"}
    "$TOOL" sparse "$out" f8 "$b" "$t" "$w" $(awk -v B="$b" -v T="$t" -v W="$w" -v S="$seed" \
            -v TOP="$top" -v EXPS="$exps" '
        BEGIN {
            split(EXPS, e, " ")
            split("0x1p" TOP " 1 0x1p-53 0x1p-80 -0x1p" TOP " 0", tie, " ")
            n = B * T * W
            for (k = 0; k < n; k++) {
                x = e[(k * 7 + S) % 10 + 1]
                v = sprintf("0x1p%d", x)
                if (S % 2 && k % W == 0) {   # neuron 0: the tie, constant in time
                    printf "%d=%s ", k, tie[int(k / (T * W)) % 6 + 1]
                    continue
                }
                if (S % 2 && x == TOP && k + T * W < n) {
                    printf "%d=-0x1p%d ", k + T * W, TOP
                    skip[k + T * W] = 1
                }
                if (skip[k]) continue
                if (S % 2 && (k * 13 + S) % 5 == 0) v = "-" v
                if (k % 9 == 4) v = "0x1.0000000000001p0"
                printf "%d=%s ", k, v
            }
        }') || exit 99
}
# Two sets: magnitudes 2^-80 .. 2^70 (within a packed slot's range), and
# 2^-1074 .. 2^500 (beyond it: the second, wide reduction of spilled
# values).
wide_exps="500 0 -53 -600 400 -1 -1074 1 300 -1000"
for set in narrow wide; do
    top=70 exps=
    [ $set = wide ] && top=500 exps=$wide_exps
    mkdir "$WORK/$set"
    crafted "$WORK/$set/s.npy" 6 4 3 1 $top "$exps"
    crafted "$WORK/$set/sp.npy" 6 4 3 0 $top "$exps"
    crafted "$WORK/$set/s1.npy" 5 4 3 2 $top "$exps"
    crafted "$WORK/$set/p.npy" 6 4 2 1 $top "$exps"
    crafted "$WORK/$set/l.npy" 6 4 2 3 $top "$exps"
done
mkdir "$WORK/w" && "$TOOL" gen "$WORK/w" --N 3 --K 2 || exit 99

# run_all SET NP [OPTIONS]: the composite and the entropy run into
# $WORK/SET/gNP[OPTIONS].
run_all() {
    set=$1 np=$2
    shift 2
    in=$WORK/$set g="$WORK/$set/g$np$*"
    mkdir -p "$g/entropy"
    mpi "$np" eval --states "$in/s.npy" --states1 "$in/s1.npy" --pred "$in/p.npy" \
        --label "$in/l.npy" --w-hebb "$WORK/w/w_hebb.npy" --w-in "$WORK/w/w_in.npy" \
        --w-hid "$WORK/w/w_hid.npy" --w-out "$WORK/w/w_out.npy" \
        --term 'r=rnn:lambda_fr=0.5,lambda_fr_sd=0.2,lambda_fr_cv=0.3' \
        --term 'a=fr' --term 'b=fr:metric=l1' --term 'c=fr_dist:metric=sd' \
        --term 'd=fr_dist:metric=cv' --term 'e=fr_dist:metric=mean_ad' \
        --term 'q=state_pred:tau=1' --term 'h=hebbian' \
        --term 'k=population_kl' --term 'm=mse' --term 'x=cross_entropy' \
        --json --grad-dir "$g" "$@"
    expect_ok "crafted ($set) composite at $np ranks $*"
    normalize "$WORK/out" "$g/json"
    # EntropyLoss reads non-negative rates: its own file.
    mpi "$np" eval --states "$in/sp.npy" --term 'n=entropy' --term 'a=fr:metric=l1' \
        --json --grad-dir "$g/entropy" "$@"
    expect_ok "crafted ($set) entropy at $np ranks $*"
    normalize "$WORK/out" "$g/entropy/json"
}

for set in narrow wide; do
    run_all $set 1
    for np in $EXACT_RANKS; do
        for chunk in "" "--chunk-batch 1" "--chunk-batch 4"; do
            [ "$np$chunk" = 1 ] && continue
            run_all $set "$np" $chunk
            for f in json d_states.npy d_states1.npy d_pred.npy d_w_hebb.npy entropy/json \
                entropy/d_states.npy; do
                same "$WORK/$set/g1/$f" "$WORK/$set/g$np$chunk/$f" \
                    "crafted ($set) composite, $f, $np ranks $chunk vs 1"
            done
        done
    done
done

# A single trial whose time the command splits over the ranks (batch x time
# blocks, an empty rank where there are fewer units than ranks): the crafted
# values fall in each of its five units of 512 steps, the last one partial.
mkdir "$WORK/trial"
crafted "$WORK/trial/s.npy" 1 2148 3 1
crafted "$WORK/trial/sp.npy" 1 2148 3 0
crafted "$WORK/trial/p.npy" 1 2148 2 1
crafted "$WORK/trial/l.npy" 1 2148 2 3
run_trial() {
    np=$1
    shift
    in=$WORK/trial g="$WORK/trial/g$np$*"
    mkdir -p "$g/entropy"
    mpi "$np" eval --states "$in/s.npy" --pred "$in/p.npy" --label "$in/l.npy" \
        --w-hebb "$WORK/w/w_hebb.npy" --w-hid "$WORK/w/w_hid.npy" \
        --term 'r=rnn:lambda_hid=0.1,lambda_fr=0.5,lambda_fr_sd=0.2' \
        --term 'b=fr:metric=l1' --term 'c=fr_dist:metric=sd' \
        --term 'q=state_pred:tau=1' --term 'q6=state_pred:tau=600' --term 'h=hebbian' \
        --term 'm=mse' --term 'x=cross_entropy' --json --grad-dir "$g" "$@"
    expect_ok "crafted single trial at $np ranks $*"
    normalize "$WORK/out" "$g/json"
    mpi "$np" eval --states "$in/sp.npy" --term 'n=entropy' --json --grad-dir "$g/entropy" "$@"
    expect_ok "crafted single trial, entropy, at $np ranks $*"
    normalize "$WORK/out" "$g/entropy/json"
}
run_trial 1
for np in $EXACT_RANKS; do
    # --memory 24K: chunks of one unit along time.
    for chunk in "" "--memory 24K"; do
        [ "$np$chunk" = 1 ] && continue
        run_trial "$np" $chunk
        for f in json d_states.npy d_pred.npy d_w_hebb.npy d_w_hid.npy entropy/json \
            entropy/d_states.npy; do
            same "$WORK/trial/g1/$f" "$WORK/trial/g$np$chunk/$f" \
                "crafted single trial, $f, $np ranks $chunk vs 1"
        done
    done
done

finish
