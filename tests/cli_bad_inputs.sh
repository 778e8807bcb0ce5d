#!/bin/sh
# cli_bad_inputs.sh - the bad-input table of README.md, row by row: the
# input of each row (named in the first column, built here) on 2 ranks gives
# exactly the row's message (rank 0 only), the row's exit status on every
# rank, no hang, and no file in the gradient directory.  A row without a case
# here, or a case without its row, fails: the table cannot drift from the
# messages.
. "$(dirname "$0")/cli-lib.sh"

readme=$(cd "${srcdir:-$(dirname "$0")/..}" && pwd)/README.md
cd "$WORK" || exit 99
mkdir f8 ro && "$TOOL" broken . && "$TOOL" gen f8 \
    && "$TOOL" set f8/states.npy nan_states.npy nan 5 2 1 \
    && "$TOOL" set f8/states.npy inf_states.npy inf 1 0 3 || exit 99
chmod 555 ro
: >a-file
mkfifo fifo || exit 99
FR="--term r=rnn:lambda_mse=0,lambda_fr=1"
unwritable=ro
if [ "$(id -u)" -eq 0 ]; then
    # Root writes anywhere permissions say not: sysfs refuses it files.
    unwritable=/sys
fi

# case_args WHAT: the rank-0 arguments in args0 and the others' in args1.
case_args() {
    args1=
    case $1 in
        "missing file") args0="--states none.npy $FR" ;;
        "file readable on rank 0 only") args0="--states f8/states.npy $FR"
            args1="--states none.npy $FR" ;;
        "wrong magic string") args0="--states bad_magic.npy $FR" ;;
        "unsupported format version") args0="--states version4.npy $FR" ;;
        "header shorter than its length field") args0="--states short_header.npy $FR" ;;
        "truncated data") args0="--states short_data.npy $FR" ;;
        "header claiming data the file lacks") args0="--states no_data.npy $FR" ;;
        "shape product overflowing 64 bits") args0="--states overflow.npy $FR" ;;
        "dimension overflowing 64 bits") args0="--states huge_dim.npy $FR" ;;
        "zero dimension") args0="--states zero_batch.npy $FR" ;;
        "negative dimension") args0="--states negative.npy $FR" ;;
        "unsupported dtype") args0="--states int32.npy $FR" ;;
        "big-endian data") args0="--states big_endian.npy $FR" ;;
        "Fortran order") args0="--states fortran.npy $FR" ;;
        "NaN in one rank's slice only") args0="--states nan_states.npy $FR" ;;
        "Inf in one rank's slice only") args0="--states inf_states.npy $FR" ;;
        "parameters that differ between ranks")
            args0="--states f8/states.npy --term r=rnn:lambda_mse=0,lambda_fr=1"
            args1="--states f8/states.npy --term r=rnn:lambda_mse=0,lambda_fr=2" ;;
        "output directory not writable") args0="--states f8/states.npy $FR --grad-dir $unwritable" ;;
        "output directory is a file") args0="--states f8/states.npy $FR --grad-dir a-file" ;;
        "parameter that is not a number") args0="--states f8/states.npy --term r=rnn:correction=x" ;;
        "number in hexadecimal") args0="--states f8/states.npy --term r=rnn:lambda_fr=0x10" ;;
        "option that is a prefix of two") args0="--state f8/states.npy $FR" ;;
        "config file that is a FIFO without a writer") args0="--states f8/states.npy --config fifo" ;;
        "input in the gradient directory") args0="--states f8/states.npy $FR --grad-dir f8" ;;
        *) return 1 ;;
    esac
    case $args0 in *--grad-dir*) ;; *) args0="$args0 --grad-dir g" ;; esac
    [ -n "$args1" ] || args1=$args0
    case $args1 in *--grad-dir*) ;; *) args1="$args1 --grad-dir g" ;; esac
    return 0
}
expected_rows=24

# The table: "| what | `message` | status |" between the markers.
sed -n '/^<!-- bad-input-table/,/^<!-- \/bad-input-table/p' "$readme" \
    | grep '^| [^-]' | tail -n +2 >table
rows=$(wc -l <table)
if [ "$rows" -eq "$expected_rows" ]; then pass; else
    fail "README.md's bad-input table has $rows rows, this test knows $expected_rows"
fi
wrap='"$0" "$@"; echo "$?" >>exits'
while IFS='|' read -r _ what message status _; do
    what=$(echo "$what" | sed 's/^ *//; s/ *$//')
    message=$(echo "$message" | sed 's/^ *`//; s/` *$//')
    status=$(echo "$status" | tr -d ' ')
    if ! case_args "$what"; then
        fail "README.md row '$what' has no case in tests/cli_bad_inputs.sh"
        continue
    fi
    rm -rf g
    : >exits
    # shellcheck disable=SC2086
    timeout -k 10 "$TIMEOUT" "$MPIRUN" -np 1 sh -c "$wrap" "$CLI" eval $args0 : \
        -np 1 sh -c "$wrap" "$CLI" eval $args1 </dev/null >out 2>err
    [ $? -eq 124 ] && fail "TIMEOUT (a hang): $what"
    what="[$what] ctrnn-loss eval $args0 (rank 1: $args1)"
    sort exits -o exits
    if [ "$(tr '\n' ' ' <exits)" = "$status $status " ]; then pass; else
        fail "$what: exit statuses $(tr '\n' ' ' <exits), expected $status on both ranks"
    fi
    [ "$unwritable" != ro ] && message=$(echo "$message" | sed "s|'ro/|'$unwritable/|g; s|'ro'|'$unwritable'|g")
    got=$(grep '^ctrnn-loss: error: ' err)
    if [ "$got" = "ctrnn-loss: error: $message" ]; then pass; else
        case $what in
            "[output directory not writable]"*)
                # /sys may refuse with another errno (read-only mounts).
                echo "$got" | grep -qF "ctrnn-loss: error: ${message%: *}: " && pass && continue ;;
        esac
        fail "$what: expected the one message 'ctrnn-loss: error: $message', got:"
        sed 's/^/    /' err | head -n 10
    fi
    if [ ! -e g ] || [ -z "$(ls -A g)" ]; then pass; else
        fail "$what: left files in its gradient directory: $(ls -A g)"
    fi
    [ ! -e "$unwritable/d_states.npy" ] && pass || fail "$what: $unwritable/d_states.npy exists"
done <table
finish
