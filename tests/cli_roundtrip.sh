#!/bin/sh
# cli_roundtrip.sh - every term type through .npy files: `ctrnn-loss eval
# --json --grad-dir` at 1-4 ranks gives JSON and gradient files bitwise
# identical to the in-memory reference (tests/npy-tool ref); time-major and
# float32 files with chunked evaluation too; a composite of every type given
# by --term and by --config gives the same result, chunked or not, batch- or
# time-major; .npy format versions 2.0 and 3.0 read like 1.0.
#
# The cases cover every registered type: a registered type without a case,
# or a case of a type that is not registered, fails the test.
. "$(dirname "$0")/cli-lib.sh"

mkdir "$WORK/f8" && "$TOOL" gen "$WORK/f8" || exit 99
mkdir "$WORK/f4tm" && "$TOOL" gen "$WORK/f4tm" --dtype f4 --time-major || exit 99
mkdir "$WORK/f8tm" && "$TOOL" gen "$WORK/f8tm" --time-major || exit 99
types=$(registered_types)
[ -n "$types" ] || { echo "no term types registered?"; exit 99; }

# case TYPE SPEC INPUTS: one term of TYPE; INPUTS are the input roles it reads.
CASES="
rnn|r=rnn:lambda=0.5,lambda_mse=1,lambda_in=0.1,lambda_hid=0.2,lambda_out=0.3,lambda_fr=0.5,lambda_fr_sd=0.2,lambda_fr_cv=0.3,correction=1|states pred label w_in w_hid w_out
fr|f=fr:lambda=0.5,metric=l1|states
fr_dist|d=fr_dist:lambda=2,metric=cv,correction=1|states
state_pred|s=state_pred:tau=2|states
hebbian|h=hebbian:lambda=0.3|states w_hebb
entropy|e=entropy:reg=0.5,eps=1e-6|states
population_kl|k=population_kl:symmetric=false,reg=0.01,reduction=sum,var_eps=0|states states1
mse|m=mse:lambda=1.5|pred label
rnn_conn|a=rnn_conn:layer=all,metric=fro|w_in w_hid w_out
cross_entropy|c=cross_entropy|pred label
"

is_registered() {
    echo "$types" | grep -qx "$1"
}

# input_args DIR ROLES: --states DIR/states.npy ...
input_args() {
    dir=$1
    shift
    args=
    for role in $*; do
        option=$(echo "$role" | tr _ -)
        args="$args --$option $dir/$role.npy"
    done
    echo "$args"
}

# check_against_ref NAME DIR ROLES SPEC NP [EXTRA...]: eval on NP ranks
# equals the reference, JSON and every gradient file.
check_against_ref() {
    name=$1 dir=$2 roles=$3 spec=$4 np=$5
    shift 5
    layout=
    case "$dir" in *tm) layout=--time-major ;; esac
    ref="$WORK/ref-$name-$(basename "$dir")"
    if [ ! -d "$ref" ]; then
        mkdir "$ref"
        # shellcheck disable=SC2046
        if ! "$TOOL" ref $layout $(input_args "$dir" $roles) --term "$spec" --grad-dir "$ref" \
            >"$ref/ref.json"; then
            fail "$name: the reference failed"
            return
        fi
        normalize "$ref/ref.json" "$ref/ref.norm"
    fi
    out="$WORK/out-$name-$(basename "$dir")-$np"
    rm -rf "$out"
    # shellcheck disable=SC2046
    mpi "$np" eval $layout $(input_args "$dir" $roles) --term "$spec" --json --grad-dir "$out" "$@"
    expect_ok "$name ($(basename "$dir"), $np rank(s) $*)"
    [ "$rc" -eq 0 ] || return
    normalize "$WORK/out" "$WORK/out.norm"
    same "$ref/ref.norm" "$WORK/out.norm" "$name: JSON ($(basename "$dir"), $np rank(s) $*)"
    for g in "$ref"/d_*.npy; do
        same "$g" "$out/$(basename "$g")" "$name: $(basename "$g") ($(basename "$dir"), $np rank(s) $*)"
    done
    extra=$(ls -A "$out" | grep -v '^d_.*\.npy$' | grep -vx '.ctrnn-loss')
    [ -z "$extra" ] && pass || fail "$name: unexpected files in the gradient directory: $extra"
}

printf '%s\n' "$CASES" >"$WORK/cases"
for type in $types; do
    grep -q "^$type|" "$WORK/cases" && pass || fail "term type '$type' has no round-trip case"
done
while IFS='|' read -r type spec roles; do
    [ -n "$type" ] || continue
    if ! is_registered "$type"; then
        fail "the case of term type '$type' names a type that is not registered"
        continue
    fi
    echo "== $type: $spec"
    for np in $RANKS; do
        check_against_ref "$type" "$WORK/f8" "$roles" "$spec" "$np"
    done
    # float32, time-major, in chunks of 2 batch elements, on the most ranks.
    check_against_ref "$type" "$WORK/f4tm" "$roles" "$spec" "$(max_ranks)" --chunk-batch 2
done <"$WORK/cases"

# population_kl with reduction=none: the per-neuron list and the regularizer.
mpi "$(max_ranks)" eval --states "$WORK/f8/states.npy" --states1 "$WORK/f8/states1.npy" \
    --term kn=population_kl:reduction=none --json
expect_ok "population_kl reduction=none"
expect_contains "$WORK/out" '"kn": [' "population_kl reduction=none lists the divergences"
expect_contains "$WORK/out" '"kn.reg": ' "population_kl reduction=none reports the regularizer"
"$TOOL" ref --states "$WORK/f8/states.npy" --states1 "$WORK/f8/states1.npy" \
    --term kn=population_kl:reduction=none >"$WORK/kn.ref"
normalize "$WORK/kn.ref" "$WORK/kn.ref.norm"
normalize "$WORK/out" "$WORK/kn.norm"
same "$WORK/kn.ref.norm" "$WORK/kn.norm" "population_kl reduction=none: JSON"

# --mask of width 1 (broadcast over K) for the terms that take one: the
# reference reads the same file.
for src in f8 f4tm; do
    dst="$WORK/mask1-$src"   # a name ending in tm reads time-major
    mkdir "$dst" && cp "$WORK/$src/pred.npy" "$WORK/$src/label.npy" "$dst/" \
        && cp "$WORK/$src/mask1.npy" "$dst/mask.npy" || exit 99
done
echo "== --mask (B, T, 1): cross_entropy, mse, rnn"
spec_m="c=cross_entropy:clamp=1e-6"
for np in $RANKS; do
    check_against_ref masked "$WORK/mask1-f8" "pred label mask" "$spec_m" "$np"
done
check_against_ref masked "$WORK/mask1-f4tm" "pred label mask" "$spec_m" "$(max_ranks)" --chunk-batch 2
check_against_ref masked-mse "$WORK/mask1-f8" "pred label mask" "m=mse:lambda=2" "$(max_ranks)"

# ---------------------------------------------------------------------------
# A composite of every registered type: --term and --config, chunks, layouts.
specs=
ini="$WORK/all.ini"
: >"$ini"
echo "# every registered term type" >>"$ini"
while IFS='|' read -r type spec roles; do
    [ -n "$type" ] && echo "$spec"
done <"$WORK/cases" >"$WORK/specs"
while read -r spec; do
    name=${spec%%=*}
    rest=${spec#*=}
    type=${rest%%:*}
    printf '\n[%s]\ntype = %s\n' "$name" "$type" >>"$ini"
    case "$rest" in
    *:*) echo "${rest#*:}" | tr ',' '\n' | sed 's/=/ = /' >>"$ini" ;;
    esac
    specs="$specs --term $spec"
done <"$WORK/specs"
all_inputs="states states1 pred label mask w_in w_hid w_out w_hebb"
echo "== composite of every registered type"
np=$(max_ranks)
# shellcheck disable=SC2086,SC2046
mpi "$np" eval $(input_args "$WORK/f8" $all_inputs) $specs --json --grad-dir "$WORK/all-term"
expect_ok "composite by --term"
normalize "$WORK/out" "$WORK/all-term.json"
# shellcheck disable=SC2046
mpi "$np" eval $(input_args "$WORK/f8" $all_inputs) --config "$ini" --json --grad-dir "$WORK/all-ini"
expect_ok "composite by --config"
normalize "$WORK/out" "$WORK/all-ini.json"
same "$WORK/all-term.json" "$WORK/all-ini.json" "--config and --term give the same JSON"
for g in "$WORK"/all-term/d_*.npy; do
    same "$g" "$WORK/all-ini/$(basename "$g")" "--config and --term: $(basename "$g")"
done

# Chunked evaluation equals unchunked: one element at a time on every rank
# count, three at a time (a short last chunk) on the most ranks.
for np_k in $(for np in $RANKS; do echo "$np:1"; done) "$(max_ranks):3"; do
    np=${np_k%:*} k=${np_k#*:}
    # shellcheck disable=SC2046
    mpi "$np" eval $(input_args "$WORK/f8" $all_inputs) --config "$ini" --json \
        --chunk-batch "$k" --grad-dir "$WORK/all-chunk-$np-$k"
    expect_ok "composite, $np rank(s), --chunk-batch $k"
    normalize "$WORK/out" "$WORK/chunk.json"
    same "$WORK/all-term.json" "$WORK/chunk.json" "composite, $np rank(s), --chunk-batch $k: JSON"
    for g in "$WORK"/all-term/d_*.npy; do
        same "$g" "$WORK/all-chunk-$np-$k/$(basename "$g")" \
            "composite, $np rank(s), --chunk-batch $k: $(basename "$g")"
    done
done
np=$(max_ranks)

# A batch smaller than the rank count: some ranks hold no element of states
# (B = 2) and most none of states1 (B1 = 1); they still take part.
mkdir "$WORK/small" && "$TOOL" gen "$WORK/small" --B 2 --B1 1 || exit 99
# shellcheck disable=SC2046
"$TOOL" ref $(input_args "$WORK/small" $all_inputs) --config "$ini" --grad-dir "$WORK/small" \
    >"$WORK/small.ref" || fail "reference for the small batch"
normalize "$WORK/small.ref" "$WORK/small.norm"
for np in $RANKS; do
    # shellcheck disable=SC2046
    mpi "$np" eval $(input_args "$WORK/small" $all_inputs) --config "$ini" --json \
        --grad-dir "$WORK/small-$np"
    expect_ok "batch of 2 on $np rank(s)"
    normalize "$WORK/out" "$WORK/out.norm"
    same "$WORK/small.norm" "$WORK/out.norm" "batch of 2 on $np rank(s): JSON"
    for g in "$WORK"/small/d_*.npy; do
        same "$g" "$WORK/small-$np/$(basename "$g")" "batch of 2 on $np rank(s): $(basename "$g")"
    done
done

# --time-major on the same arrays stored (T, B, .): the same values, and the
# gradients are the batch-major ones transposed.
# shellcheck disable=SC2046
mpi "$np" eval --time-major $(input_args "$WORK/f8tm" $all_inputs) --config "$ini" --json \
    --grad-dir "$WORK/all-tm"
expect_ok "composite, --time-major"
normalize "$WORK/out" "$WORK/all-tm.json"
same "$WORK/all-term.json" "$WORK/all-tm.json" "--time-major gives the batch-major values"
for g in "$WORK"/all-tm/d_*.npy; do
    base=$(basename "$g")
    case "$base" in
    d_states.npy | d_states1.npy | d_pred.npy)
        "$TOOL" transpose "$g" "$WORK/transposed.npy"
        same "$WORK/transposed.npy" "$WORK/all-term/$base" "--time-major: $base transposed"
        ;;
    *) same "$g" "$WORK/all-term/$base" "--time-major: $base" ;;
    esac
done

# .npy format versions 2.0 and 3.0 and another way of writing the header.
mkdir "$WORK/variants" && "$TOOL" variants "$WORK/variants" "$WORK/f8/states.npy" || exit 99
mpi 1 eval --states "$WORK/f8/states.npy" --term r=rnn:lambda_mse=0,lambda_fr=1,lambda_fr_sd=1 --json
cp "$WORK/out" "$WORK/v1.json"
for v in v2 v3 reordered; do
    mpi 2 eval --states "$WORK/variants/$v.npy" --term r=rnn:lambda_mse=0,lambda_fr=1,lambda_fr_sd=1 --json
    expect_ok "format variant $v"
    normalize "$WORK/out" "$WORK/variant.json"
    normalize "$WORK/v1.json" "$WORK/v1.norm"
    same "$WORK/v1.norm" "$WORK/variant.json" "format variant $v reads like 1.0"
done

finish
