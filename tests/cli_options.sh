#!/bin/sh
# cli_options.sh - every option of ctrnn-loss: --help, --version, the types
# command, each eval option (inputs, --time-major, --term, --config, --json,
# the table, --grad-dir, --memory, --chunk-batch, --progress, --timing) and its misuse, and the
# demo with its options (identical numbers on every rank count).  The round
# trip and the bad-input cases are in cli_roundtrip.sh and cli_errors.sh.
. "$(dirname "$0")/cli-lib.sh"

mkdir "$WORK/f8" && "$TOOL" gen "$WORK/f8" || exit 99
F8=$WORK/f8
FR="--term r=rnn:lambda_mse=0,lambda_fr=1"
types=$(registered_types)

# usage STATUS NEEDLE ARGS...: ctrnn-loss ARGS on 2 ranks exits with STATUS
# on every rank and prints one message containing NEEDLE.
usage() {
    status=$1 needle=$2
    shift 2
    mpi_each 2 "$@"
    expect_failure "$status" "$needle" 2 "$@"
}

echo "== help, version, types"
for h in --help -h help; do
    mpi 2 $h
    expect_ok "ctrnn-loss $h"
    expect_contains "$WORK/out" "usage: mpirun -np P ctrnn-loss COMMAND" "ctrnn-loss $h"
    [ "$(grep -c '^usage:' "$WORK/out")" -eq 1 ] && pass || fail "ctrnn-loss $h: printed more than once"
done
for v in --version -V; do
    mpi 1 $v
    expect_ok "ctrnn-loss $v"
    expect_contains "$WORK/out" "ctrnn-loss 0.1.0 (library 0.1.0)" "ctrnn-loss $v"
done
mpi 1 types
expect_ok "ctrnn-loss types"
for t in $types; do expect_contains "$WORK/out" "$t " "types lists $t"; done
expect_contains "$WORK/out" "    lambda        real" "types shows the weight lambda"
expect_contains "$WORK/out" "    lambda_fr_sd  real" "types shows the parameters"
mpi 1 eval --help
expect_ok "eval --help"
for o in --states --states1 --pred --label --w-in --w-hid --w-out --w-hebb --time-major \
    --term --config --json --grad-dir --memory --chunk-batch --progress --timing "exit status"; do
    expect_contains "$WORK/out" "$o" "eval --help mentions $o"
done
for t in $types; do expect_contains "$WORK/out" "$t " "eval --help lists type $t"; done
mpi 1 demo --help
expect_ok "demo --help"
for o in --batch --time --neurons --inputs --outputs --dtype --repeat --seed; do
    expect_contains "$WORK/out" "$o" "demo --help mentions $o"
done
usage 2 "no command given"
usage 2 "unknown command 'evaluate'" evaluate
usage 2 "types takes no arguments" types rnn

echo "== eval: command-line mistakes"
usage 2 "unknown option '--bogus'" eval --states "$F8/states.npy" $FR --bogus
usage 2 "option '--state' is ambiguous: it could be --states, --states1" eval --state "$F8/states.npy" $FR
usage 2 "option '--w' is ambiguous: it could be --w-in, --w-hid, --w-out, --w-hebb" eval --w=x --states "$F8/states.npy" $FR
usage 2 "--states needs a value" eval $FR --states
usage 2 "--states is given twice" eval --states "$F8/states.npy" --states "$F8/states.npy" $FR
usage 2 "unexpected argument 'extra'" eval --states "$F8/states.npy" $FR extra
usage 2 "no terms: give --term" eval --states "$F8/states.npy"
usage 2 "no input files" eval $FR
usage 2 "--chunk-batch 'x' is not a whole number >= 1" eval --states "$F8/states.npy" $FR --chunk-batch x
usage 2 "--chunk-batch '0'" eval --states "$F8/states.npy" $FR --chunk-batch 0
for m in x 0 -5 " 64M" +64M 64Q 64MB 64Mi 1.5G K 9999999999T 9223372036854775808; do
    usage 2 "--memory '$m' is not a size: a whole number of bytes >= 1, optionally with K, M, G or T (powers of 1024), e.g. 64M" \
        eval --states "$F8/states.npy" $FR --memory "$m"
done
usage 2 "--progress 'sometimes' is not auto, always or never" eval --states "$F8/states.npy" $FR --progress sometimes
usage 2 "--grad-dir needs a directory name" eval --states "$F8/states.npy" $FR --grad-dir ""
usage 2 "--term 'r=rnn:lambda_mse': 'lambda_mse' is not key=value" eval --states "$F8/states.npy" --term r=rnn:lambda_mse

echo "== eval: every input, --term, --json, the table"
ALL="--states $F8/states.npy --states1 $F8/states1.npy --pred $F8/pred.npy --label $F8/label.npy
     --w-in $F8/w_in.npy --w-hid $F8/w_hid.npy --w-out $F8/w_out.npy --w-hebb $F8/w_hebb.npy"
RNN="--term r=rnn:lambda_in=0.1,lambda_hid=0.1,lambda_out=0.1,lambda_fr=0.5"
# shellcheck disable=SC2086
mpi 3 eval $ALL $RNN --json
expect_ok "eval with every input"
cp "$WORK/out" "$WORK/all.json"
expect_contains "$WORK/out" '{"total": ' "JSON starts with the total"
expect_contains "$WORK/out" '"terms": {"r": ' "JSON terms"
for part in mse in hid out fr fr_sd fr_cv; do
    expect_contains "$WORK/out" "\"r.$part\": " "JSON reports r.$part"
done
expect_contains "$WORK/out" '"meta": {"ranks": 3, "batch": 7, "time": 6, "neurons": 5, "dtype": "float64", "decomposition": {"batch": 3, "time": 1}}}' \
    "JSON meta"
[ "$(wc -l <"$WORK/out")" -eq 1 ] && pass || fail "--json printed more than one line"
# 17 significant digits: the total reads back exactly (checked by printf).
total=$(sed 's/^{"total": \([^,]*\),.*/\1/' "$WORK/out")
[ "$(printf '%.17g' "$total")" = "$total" ] && pass || fail "total $total is not printed with 17 digits"
# shellcheck disable=SC2086
mpi 2 eval $ALL $RNN
expect_ok "eval, table"
expect_contains "$WORK/out" "ctrnn-loss eval: 2 rank(s), batch 7, time 6, neurons 5, float64, decomposition 2x1 (batch x time)" "table header"
expect_contains "$WORK/out" "    r.fr_sd " "table lists the parts"
expect_contains "$WORK/out" "  total " "table total"
# A term named after its type; lambda scales the whole term.
mpi 1 eval --states "$F8/states.npy" --term rnn:lambda_mse=0,lambda_fr=1 --json
expect_ok "--term TYPE:..."
expect_contains "$WORK/out" '"terms": {"rnn": ' "a term named after its type"
cp "$WORK/out" "$WORK/one.json"
mpi 1 eval --states "$F8/states.npy" --term rnn:lambda_mse=0,lambda_fr=1,lambda=2 --json
v1=$(sed 's/^{"total": \([^,]*\),.*/\1/' "$WORK/one.json")
v2=$(sed 's/^{"total": \([^,]*\),.*/\1/' "$WORK/out")
awk -v a="$v1" -v b="$v2" 'BEGIN { exit !(b == 2 * a) }' && pass || fail "lambda=2 doubles $v1 (got $v2)"
# Several --term and --config arguments add terms in command-line order.
printf '[c]\ntype = rnn\nlambda_mse = 0\nlambda_fr_sd = 1\n' >"$WORK/c.ini"
mpi 2 eval --states "$F8/states.npy" --term a=rnn:lambda_mse=0,lambda_fr=1 --config "$WORK/c.ini" \
    --term b=rnn:lambda_mse=0,lambda_fr_cv=1 --json
expect_ok "--term, --config, --term"
names=$(grep -o '"[abc]": ' "$WORK/out" | tr -d '": \n')
[ "$names" = "acb" ] && pass || fail "terms not in command-line order: $names"

echo "== eval: --grad-dir"
# shellcheck disable=SC2086
mpi 3 eval $ALL $RNN --grad-dir "$WORK/grads/new"
expect_ok "--grad-dir (created)"
for g in d_states d_states1 d_pred d_w_in d_w_hid d_w_out d_w_hebb; do
    [ -s "$WORK/grads/new/$g.npy" ] && pass || fail "--grad-dir: $g.npy missing"
done
[ ! -e "$WORK/grads/new/d_label.npy" ] && pass || fail "--grad-dir wrote d_label.npy"
[ "$(ls -A "$WORK/grads/new" | grep -vx .ctrnn-loss | wc -l)" -eq 7 ] && pass || fail "--grad-dir: temporaries left: $(ls -A "$WORK/grads/new")"
[ "$(ls -A "$WORK/grads/new/.ctrnn-loss")" = "current
$(readlink "$WORK/grads/new/.ctrnn-loss/current")" ] && pass \
    || fail "--grad-dir: the store holds more than the current set: $(ls -A "$WORK/grads/new/.ctrnn-loss")"
expect_contains "$WORK/out" "gradients written to $WORK/grads/new: d_states.npy d_states1.npy d_pred.npy" \
    "table names the gradient files"
# Gradient files mirror their inputs' headers (shape and dtype).
for g in states states1 pred w_in w_hid w_out w_hebb; do
    head -c 128 "$F8/$g.npy" >"$WORK/h1"
    head -c 128 "$WORK/grads/new/d_$g.npy" >"$WORK/h2"
    same "$WORK/h1" "$WORK/h2" "d_$g.npy has the header of $g.npy"
done
# An existing directory is reused; files are replaced whole.
# shellcheck disable=SC2086
mpi 2 eval $ALL $RNN --grad-dir "$WORK/grads/new" --json
expect_ok "--grad-dir (existing)"
normalize "$WORK/all.json" "$WORK/a"
normalize "$WORK/out" "$WORK/b"
same "$WORK/a" "$WORK/b" "JSON does not depend on --grad-dir or the rank count"

echo "== eval: --chunk-batch and --progress"
mpi 2 eval --states "$F8/states.npy" $FR --chunk-batch 2 --grad-dir "$WORK/g2" --progress always
expect_ok "--progress always"
expect_contains "$WORK/err" "forward chunk 1/4" "progress bar, forward pass"
expect_contains "$WORK/err" "backward chunk 4/4" "progress bar, backward pass"
expect_contains "$WORK/err" "100%" "progress bar reaches 100%"
mpi 2 eval --states "$F8/states.npy" $FR --chunk-batch 2 --progress never
[ ! -s "$WORK/err" ] && pass || fail "--progress never printed: $(cat "$WORK/err")"
mpi 2 eval --states "$F8/states.npy" $FR --chunk-batch 100 --progress auto
expect_ok "--chunk-batch larger than the batch"
[ ! -s "$WORK/err" ] && pass || fail "--progress auto printed to a non-terminal"

echo "== eval: --memory"
# chunks NP WANT ARGS...: the progress bar of ctrnn-loss eval ARGS on NP
# ranks ends at WANT ("backward chunk 4/4": rank 0's shard in 2 chunks).
chunks() {
    np=$1 want=$2
    shift 2
    mpi "$np" eval "$@" --progress always
    expect_ok "eval $*"
    expect_contains "$WORK/err" "$want" "eval $* on $np rank(s): the chunks"
}
# F8: B 7, T 6, N 5, float64: batch elements of 240 bytes, 480 with their
# gradients; rank 0 of 2 holds 4 of them.
for m in 64M 1G 2048 4KiB 1t; do chunks 1 "forward chunk 1/1" --states "$F8/states.npy" $FR --memory "$m"; done
chunks 1 "forward chunk 2/2" --states "$F8/states.npy" $FR --memory 1k
chunks 2 "backward chunk 2/2" --states "$F8/states.npy" $FR --grad-dir "$WORK/gm"
chunks 2 "backward chunk 8/8" --states "$F8/states.npy" $FR --grad-dir "$WORK/gm" --memory 1
chunks 2 "backward chunk 8/8" --states "$F8/states.npy" $FR --grad-dir "$WORK/gm" --memory 959
chunks 2 "backward chunk 4/4" --states "$F8/states.npy" $FR --grad-dir "$WORK/gm" --memory 960
chunks 2 "backward chunk 4/4" --states "$F8/states.npy" $FR --grad-dir "$WORK/gm" --memory 1K
chunks 2 "backward chunk 2/2" --states "$F8/states.npy" $FR --grad-dir "$WORK/gm" --memory 1920
# Without gradients an element takes half: 960 bytes hold the shard.
chunks 2 "forward chunk 1/1" --states "$F8/states.npy" $FR --memory 960
chunks 2 "forward chunk 2/2" --states "$F8/states.npy" $FR --memory 959
# Every batched input counts (states 240, pred and label 6 x 3 x 8 = 144
# each): 1055 bytes hold one element, 1056 two.
PL="--states $F8/states.npy --pred $F8/pred.npy --label $F8/label.npy"
# shellcheck disable=SC2086
chunks 2 "forward chunk 4/4" $PL --term r=rnn --memory 1055
# shellcheck disable=SC2086
chunks 2 "forward chunk 2/2" $PL --term r=rnn --memory 1056
# --chunk-batch decides when given, before or after --memory.
chunks 2 "backward chunk 4/4" --states "$F8/states.npy" $FR --grad-dir "$WORK/gm" --memory 1 --chunk-batch 2
chunks 2 "backward chunk 4/4" --states "$F8/states.npy" $FR --grad-dir "$WORK/gm" --chunk-batch 2 --memory 1
chunks 2 "backward chunk 8/8" --states "$F8/states.npy" $FR --grad-dir "$WORK/gm" --memory 1G --chunk-batch 1
# Any budget gives the bits of one chunk: the JSON and every gradient file,
# on uneven shards (7 over 3 ranks, 2 over 4).
for np in 3 4; do
    for m in 1G 1 1000 3000; do
        # shellcheck disable=SC2086
        mpi "$np" eval $ALL $RNN --term h=hebbian --term k=population_kl --term e=entropy \
            --term p=state_pred --json --grad-dir "$WORK/mem-$m" --memory "$m"
        expect_ok "[$np rank(s)] --memory $m"
        cp "$WORK/out" "$WORK/mem-$m.json"
    done
    for m in 1 1000 3000; do
        same "$WORK/mem-1G.json" "$WORK/mem-$m.json" "[$np rank(s)] --memory $m: the JSON"
        for g in d_states d_states1 d_pred d_w_in d_w_hid d_w_out d_w_hebb; do
            same "$WORK/mem-1G/$g.npy" "$WORK/mem-$m/$g.npy" "[$np rank(s)] --memory $m: $g.npy"
        done
    done
done
# 2 elements of 3 ranks' shards in the file of B = 2: ranks without any.
mkdir "$WORK/b2" && "$TOOL" gen "$WORK/b2" --B 2 --dtype f4 || exit 99
for m in 1G 1; do
    mpi 3 eval --states "$WORK/b2/states.npy" --term e=entropy --term f=fr_dist --json \
        --grad-dir "$WORK/b2-$m" --memory "$m"
    expect_ok "[3 rank(s)] B = 2, --memory $m"
    cp "$WORK/out" "$WORK/b2-$m.json"
done
same "$WORK/b2-1G.json" "$WORK/b2-1.json" "B = 2 on 3 ranks, --memory 1: the JSON"
same "$WORK/b2-1G/d_states.npy" "$WORK/b2-1/d_states.npy" "B = 2 on 3 ranks, --memory 1: d_states.npy"

echo "== eval: --timing"
PHASES="startup read accumulate reduce backward write total"
# json_check FILE PYTHON WHAT: the Python expression PYTHON, on j (the JSON
# object of FILE), is true.
json_check() {
    if python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"; then pass; else
        fail "$3: $(cat "$1")"
    fi
}
TIMED="--states $F8/states.npy $FR --chunk-batch 2 --progress never"
for np in 1 3; do
    what="[$np rank(s)] --timing"
    # Without --timing: no "timing" key and nothing on stderr.
    # shellcheck disable=SC2086
    mpi "$np" eval $TIMED --grad-dir "$WORK/gt" --json
    expect_ok "$what: --json alone"
    cp "$WORK/out" "$WORK/untimed.json"
    [ ! -s "$WORK/err" ] && pass || fail "$what: stderr without --timing: $(cat "$WORK/err")"
    json_check "$WORK/untimed.json" '"timing" not in j' "$what: a \"timing\" key without --timing"
    expect_contains "$WORK/untimed.json" '"decomposition": {"batch": '"$np"', "time": 1}}}' "$what: JSON ends with meta"
    # shellcheck disable=SC2086
    mpi "$np" eval $TIMED --grad-dir "$WORK/gt" --json --timing
    expect_ok "$what --json"
    expect_contains "$WORK/err" "ctrnn-loss eval: timing in seconds, the maximum over $np rank(s):" \
        "$what: stderr header"
    for p in $PHASES; do
        grep -q "^  $p  *[0-9][0-9.]*\$" "$WORK/err" && pass || fail "$what: no '$p' line on stderr: $(cat "$WORK/err")"
    done
    json_check "$WORK/out" 'sorted(j["timing"]) == sorted("'"$PHASES"'".split())' "$what: the seven keys"
    json_check "$WORK/out" 'all(type(v) in (int, float) and v >= 0 for v in j["timing"].values())' \
        "$what: non-negative numbers"
    json_check "$WORK/out" 'j["timing"]["total"] >= j["timing"]["startup"]' "$what: total covers startup"
    # The rest of the output is what it is without --timing, byte for byte.
    sed 's/, "timing": {[^}]*}}$/}/' "$WORK/out" >"$WORK/stripped.json"
    same "$WORK/untimed.json" "$WORK/stripped.json" "$what: the JSON besides \"timing\""
    # The table: the same stdout, the times on stderr only.
    # shellcheck disable=SC2086
    mpi "$np" eval $TIMED
    expect_ok "$what: table alone"
    cp "$WORK/out" "$WORK/untimed.txt"
    [ ! -s "$WORK/err" ] && pass || fail "$what: stderr without --timing: $(cat "$WORK/err")"
    # shellcheck disable=SC2086
    mpi "$np" eval $TIMED --timing
    expect_ok "$what, table"
    same "$WORK/untimed.txt" "$WORK/out" "$what: the table's stdout"
    for p in $PHASES; do expect_contains "$WORK/err" "  $p " "$what: table run, '$p' on stderr"; done
done
usage 2 "unknown option '--timings'" eval --states "$F8/states.npy" $FR --timings

echo "== demo"
DEMO="demo -B 5 -T 12 -N 10 --inputs 3 --outputs 2 --dtype float64 --repeat 2 --seed 7"
for np in $RANKS; do
    # shellcheck disable=SC2086
    mpi "$np" $DEMO
    expect_ok "demo on $np rank(s)"
    expect_contains "$WORK/out" "ctrnn-loss demo: a simulated CTRNN on $np MPI rank(s), float64" "demo header"
    expect_contains "$WORK/out" "batch 5, time 12 (+ 6 later steps for population_kl), neurons 10, inputs 3, outputs 2" \
        "demo sizes"
    for t in $types; do expect_contains "$WORK/out" "  $t " "demo evaluates $t"; done
    expect_contains "$WORK/out" "gradient norms" "demo gradient norms"
    expect_contains "$WORK/out" "time per evaluation" "demo timing"
    expect_contains "$WORK/out" "over 2 evaluation(s)" "demo --repeat"
    expect_contains "$WORK/out" "(ok, tolerance" "demo finite-difference check"
    # The loss values do not depend on the number of ranks.
    sed -n '/^  term /,/^  total /p' "$WORK/out" >"$WORK/demo-$np"
    [ -s "$WORK/demo-$np" ] || fail "demo printed no table"
    same "$WORK/demo-$(echo "$RANKS" | cut -d' ' -f1)" "$WORK/demo-$np" "demo values on $np rank(s)"
done
mpi 1 demo -B 3 -T 8 -N 6 --repeat 1
expect_ok "demo, float32"
expect_contains "$WORK/out" "float32" "demo default dtype"
usage 2 "--dtype 'float16' is not float32 or float64" demo --dtype float16
usage 2 "--neurons '1' must be a whole number in [2, 65536]" demo -N 1
usage 2 "--batch 'x' must be a whole number" demo --batch x
usage 2 "unknown option '--bogus'" demo --bogus

finish
