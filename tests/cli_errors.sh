#!/bin/sh
# cli_errors.sh - bad input to `ctrnn-loss eval`: every case ends with one
# clear message (printed by rank 0) and the same non-zero exit status on every
# rank, never a hang (each run is bounded by timeout).  Each case runs on one
# multi-rank count (rotating over CRL_TEST_RANKS); a few on every count.
# The cases of README.md's bad-input table are tests/cli_bad_inputs.sh's.
# A failed evaluation leaves no gradient file and no temporary behind.
. "$(dirname "$0")/cli-lib.sh"

for d in f8 f4 f8tm other t5 k2 broken; do mkdir "$WORK/$d" || exit 99; done
"$TOOL" gen "$WORK/f8" && "$TOOL" gen "$WORK/f4" --dtype f4 && "$TOOL" gen "$WORK/f8tm" --time-major \
    && "$TOOL" gen "$WORK/other" --B 6 --T 5 --N 4 --K 2 --N-in 3 && "$TOOL" gen "$WORK/t5" --T 5 \
    && "$TOOL" gen "$WORK/k2" --K 2 && "$TOOL" broken "$WORK/broken" \
    && "$TOOL" set "$WORK/f8/states.npy" "$WORK/nan_states.npy" nan 5 2 1 \
    && "$TOOL" set "$WORK/f8/w_hid.npy" "$WORK/nan_w_hid.npy" nan 1 2 \
    && "$TOOL" scale "$WORK/f8/states.npy" "$WORK/zero_states.npy" 0 \
    && "$TOOL" scale "$WORK/f8/states.npy" "$WORK/negative_states.npy" -1 || exit 99
F8=$WORK/f8
BR=$WORK/broken
FR="--term r=rnn:lambda_mse=0,lambda_fr=1"   # reads only the states
RNN="--term r=rnn:lambda_fr=1,lambda_hid=1,lambda_out=1"

# The multi-rank counts the cases rotate over.
rotation=$(multi_ranks)
case_number=0

# run_case NP STATUS NEEDLE ARGS...: ctrnn-loss eval ARGS on NP ranks fails
# with STATUS on every rank and one message containing NEEDLE.
run_case() {
    np=$1 status=$2 needle=$3
    shift 3
    mpi_each "$np" eval "$@"
    expect_failure "$status" "$needle" "$np" eval "$@"
}

# bad STATUS NEEDLE ARGS...: one case on the next rank count of the rotation.
bad() {
    case_number=$((case_number + 1))
    count=$(echo $rotation | wc -w)
    run_case "$(echo $rotation | cut -d' ' -f$(( (case_number - 1) % count + 1 )))" "$@"
}

# bad_everywhere STATUS NEEDLE ARGS...: one case on every rank count.
bad_everywhere() {
    for np in $RANKS; do run_case "$np" "$@"; done
}

echo "== files that cannot be read"
bad_everywhere 1 "--states '$WORK/none.npy': cannot open: No such file or directory" \
    --states "$WORK/none.npy" $FR
bad 1 "--states '$WORK': cannot open: not a regular file" --states "$WORK" $FR
bad 1 "--w-hid '$WORK/none.npy': cannot open: No such file or directory" \
    --states "$F8/states.npy" --w-hid "$WORK/none.npy" $FR

echo "== malformed or truncated .npy files"
bad 1 "--states '$BR/empty.npy': truncated header: the file has only 0 bytes" --states "$BR/empty.npy" $FR
bad 1 "truncated header: the file has only 8 bytes" --states "$BR/short_preamble.npy" $FR
bad_everywhere 1 "--states '$BR/short_data.npy': truncated data: the header describes 192 bytes of data, the file holds 96" \
    --states "$BR/short_data.npy" $FR
bad 1 "not a .npy file (bad magic string)" --states "$BR/text.npy" $FR
bad 1 "unsupported .npy format version 1.1 (1.0 to 3.0)" --states "$BR/version1_1.npy" $FR
bad 1 "header is not a dictionary: '[4, 3, 2]" --states "$BR/not_dict.npy" $FR
bad 1 "malformed header: expected a quoted string at its end" --states "$BR/unclosed.npy" $FR
bad 1 "the header has no 'shape'" --states "$BR/no_shape.npy" $FR
bad 1 "unknown key 'x' in the header" --states "$BR/extra_key.npy" $FR

echo "== unsupported dtypes and orders"
bad 1 "unsupported dtype: a structured array" --states "$BR/structured.npy" $FR
bad_everywhere 1 "--w-hid '$WORK/f4/w_hid.npy' is float32 but --states '$F8/states.npy' is float64: all inputs must have the same dtype" \
    --states "$F8/states.npy" --w-hid "$WORK/f4/w_hid.npy" $FR

echo "== shapes"
bad 1 "--states '$BR/two_d.npy': expected 3 dimensions (B, T, N), got shape (4, 6)" \
    --states "$BR/two_d.npy" $FR
bad 1 "--w-hid '$F8/states.npy': expected 2 dimensions (N, N), got shape (7, 6, 5)" \
    --states "$F8/states.npy" --w-hid "$F8/states.npy" $FR
bad 1 "--pred '$WORK/other/pred.npy' has B = 6 (batch elements) but --states '$F8/states.npy' has B = 7 (batch elements): the shapes disagree" \
    --states "$F8/states.npy" --pred "$WORK/other/pred.npy" --label "$F8/label.npy" $RNN
bad 1 "--pred '$WORK/t5/pred.npy' has T = 5 (time steps) but --states '$F8/states.npy' has T = 6 (time steps)" \
    --states "$F8/states.npy" --pred "$WORK/t5/pred.npy" --label "$WORK/t5/label.npy" $RNN
bad 1 "--label '$WORK/k2/label.npy' has K = 2 (outputs) but --pred '$F8/pred.npy' has K = 3 (outputs)" \
    --pred "$F8/pred.npy" --label "$WORK/k2/label.npy" $RNN
bad 1 "--states1 '$WORK/other/states1.npy' has N = 4 (neurons) but --states '$F8/states.npy' has N = 5 (neurons)" \
    --states "$F8/states.npy" --states1 "$WORK/other/states1.npy" $FR
bad 1 "--w-hid '$WORK/other/w_hid.npy' has N = 4 (rows) but --states '$F8/states.npy' has N = 5 (neurons)" \
    --states "$F8/states.npy" --w-hid "$WORK/other/w_hid.npy" $FR
bad 1 "--w-in '$WORK/other/w_in.npy' has N = 4 (rows) but --states '$F8/states.npy' has N = 5" \
    --states "$F8/states.npy" --w-in "$WORK/other/w_in.npy" $FR
bad 1 "--w-out '$WORK/k2/w_out.npy' has K = 2 (rows) but --pred '$F8/pred.npy' has K = 3 (outputs)" \
    --states "$F8/states.npy" --pred "$F8/pred.npy" --label "$F8/label.npy" --w-out "$WORK/k2/w_out.npy" $RNN
bad 1 "--w-hebb '$WORK/other/w_hebb.npy' has N = 4 (rows) but --states '$F8/states.npy' has N = 5" \
    --states "$F8/states.npy" --w-hebb "$WORK/other/w_hebb.npy" $FR
# --time-major reads (T, B, .): batch-major pred then has B and T swapped.
bad 1 "--pred '$F8/pred.npy' has B = 6 (batch elements) but --states '$WORK/f8tm/states.npy' has B = 7" \
    --time-major --states "$WORK/f8tm/states.npy" --pred "$F8/pred.npy" --label "$F8/label.npy" $RNN

echo "== loss errors (collective, from the library)"
for np in $RANKS; do
    mpi_each "$np" eval --states "$WORK/nan_states.npy" $FR --chunk-batch 1
    # The element is batch element 5 of the file, whichever rank and chunk
    # held it: the same message at every rank count.
    expect_failure 1 "error: states[b=5, t=2, i=1] is NaN" "$np" eval --states nan_states.npy --chunk-batch 1
done
# A replicated weight: no rank named, at one rank as at several.
for np in $RANKS; do
    mpi_each "$np" eval --states "$F8/states.npy" --w-hid "$WORK/nan_w_hid.npy" \
        --term r=rnn:lambda_mse=0,lambda_hid=1
    expect_failure 1 "ctrnn-loss: error: w_hid[1, 2] is NaN" "$np" eval --w-hid nan_w_hid.npy
done
bad 1 "w_hid[1, 2] is NaN" --states "$F8/states.npy" --w-hid "$WORK/nan_w_hid.npy" \
    --term r=rnn:lambda_mse=0,lambda_hid=1
bad 1 "term 'r' (rnn): fr_cv: the mean rate is 0" --states "$WORK/zero_states.npy" \
    --term r=rnn:lambda_mse=0,lambda_fr_cv=1
bad 1 "term 'r' (rnn): correction 5 needs more than 5 neurons" --states "$F8/states.npy" \
    --term r=rnn:lambda_mse=0,lambda_fr_sd=1,correction=5
bad 1 "pred: required input is missing (give --pred FILE)" --states "$F8/states.npy" --term r=rnn
bad 1 "term 's' (state_pred)" --states "$F8/states.npy" --term s=state_pred:tau=6
bad 1 "term 'e' (entropy)" --states "$WORK/negative_states.npy" --term e=entropy
mkdir "$WORK/kl-grads"
bad 1 "population_kl" --states "$F8/states.npy" --states1 "$F8/states1.npy" \
    --term k=population_kl:reduction=none --grad-dir "$WORK/kl-grads"
[ -z "$(ls -A "$WORK/kl-grads")" ] && pass || fail "population_kl reduction=none left files"

echo "== terms and config files (exit status 2)"
bad_everywhere 2 "--term 'x=nosuch': term 'x': unknown type 'nosuch' (one of: rnn" \
    --states "$F8/states.npy" --term x=nosuch
bad 2 "--term 'r=rnn:lambda_foo=1': term 'r': unknown parameter 'lambda_foo' for type rnn (known: lambda," \
    --states "$F8/states.npy" --term r=rnn:lambda_foo=1
bad 2 "--term 'r=rnn:correction=x': term 'r': parameter correction: 'x' is not a number" \
    --states "$F8/states.npy" --term r=rnn:correction=x
bad 2 "term 'r': lambda: 'big' is not a number" --states "$F8/states.npy" --term r=rnn:lambda=big
printf '[a]\ntype = rnn\nfoo = 1\n' >"$WORK/bad.ini"
bad 2 "$WORK/bad.ini:3: term 'a': unknown parameter 'foo' for type rnn" \
    --states "$F8/states.npy" --config "$WORK/bad.ini"
printf '[a]\ntype = rnn\n[b]\ntype = nosuch\n' >"$WORK/bad-type.ini"
bad 2 "$WORK/bad-type.ini:3: term 'b': unknown type 'nosuch'" \
    --states "$F8/states.npy" --config "$WORK/bad-type.ini"
bad 2 "--config '$WORK/none.ini': cannot open: No such file or directory" \
    --states "$F8/states.npy" --config "$WORK/none.ini"
printf '[r]\ntype = rnn\n' >"$WORK/r.ini"
bad 2 "$WORK/r.ini:1: term name 'r' is already used (by --term 'r=rnn')" \
    --states "$F8/states.npy" --term r=rnn --config "$WORK/r.ini"

echo "== gradient directories"
: >"$WORK/a-file"
bad 1 "--grad-dir '$WORK/a-file': not a directory" --states "$F8/states.npy" $FR --grad-dir "$WORK/a-file"
bad 1 "--grad-dir '$WORK/a-file/sub': cannot create: Not a directory" \
    --states "$F8/states.npy" $FR --grad-dir "$WORK/a-file/sub"
# A failed evaluation writes no gradient file.
bad 1 "is NaN" --states "$WORK/nan_states.npy" $FR --grad-dir "$WORK/nan-grads"
[ ! -e "$WORK/nan-grads" ] || [ -z "$(ls -A "$WORK/nan-grads")" ] && pass \
    || fail "a failed evaluation left files in its gradient directory: $(ls -A "$WORK/nan-grads")"
# Writes that fail half-way (a file size limit, SIGXFSZ ignored; TCP instead
# of shared memory, whose files the limit would hit too): the temporary
# files are removed, no d_*.npy appears, every rank fails.
np=$(max_ranks)
: >"$WORK/exits"
OMPI_MCA_btl=self,tcp timeout -k 10 "$TIMEOUT" "$MPIRUN" -np "$np" sh -c \
    'trap "" XFSZ; ulimit -f 1; "$0" "$@"; echo "$?" >>"'"$WORK"'/exits"' "$CLI" eval \
    --states "$F8/states.npy" $FR --grad-dir "$WORK/small" </dev/null >"$WORK/out" 2>"$WORK/err"
[ $? -eq 124 ] && fail "TIMEOUT (a hang) with failing writes"
sort "$WORK/exits" -o "$WORK/exits"
expect_failure 1 "gradient file '$WORK/small/d_states.npy': write failed at byte" "$np" \
    eval "(writes fail)"
[ -d "$WORK/small" ] && [ -z "$(ls -A "$WORK/small")" ] && pass \
    || fail "failed writes left files behind: $(ls -A "$WORK/small")"

finish
