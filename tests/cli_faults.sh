#!/bin/sh
# cli_faults.sh - the gradient directory under faults: a run that fails,
# is interrupted (SIGINT, SIGTERM) or killed (SIGKILL of mpirun or of one
# rank) at any moment leaves the earlier set of gradient files whole, or the
# new set whole, never a mix and never less; no temporary file survives a
# signal; what a killed run left is removed by the next run; stale files of
# inputs not given this time go; an input rewritten during a chunked run is
# an error with no output; an input in the gradient directory is refused;
# disagreeing choices are named.  Part of make check (a minute or two).
. "$(dirname "$0")/cli-lib.sh"

cd "$WORK" || exit 99
mkdir f8 big && "$TOOL" gen f8 && "$TOOL" gen big --B 3000 --T 40 --N 40 || exit 99
"$TOOL" scale big/states.npy big/other.npy 0.5 || exit 99
np=$(max_ranks)
A="--states big/states.npy --w-hebb big/w_hebb.npy --term h=hebbian:lambda=1 --term f=fr"
B="--states big/states.npy --w-hebb big/w_hebb.npy --term h=hebbian:lambda=2 --term f=fr"

# sums DIR: the checksums of DIR's gradient files by name ("-" if none).
sums() {
    for f in d_states d_states1 d_pred d_w_in d_w_hid d_w_out d_w_hebb; do
        if [ -e "$1/$f.npy" ]; then echo "$f $(cksum <"$1/$f.npy")"; else echo "$f -"; fi
    done
}

# store_clean DIR WHAT: the store holds the current link and its generation
# only (no temporary file, no unfinished generation).
store_clean() {
    s="$1/.ctrnn-loss"
    want="current
$(readlink "$s/current")"
    if [ "$(ls -A "$s" 2>/dev/null)" = "$want" ]; then pass; else
        fail "$2: the store holds: $(ls -A "$s" 2>/dev/null | tr '\n' ' ')"
        # What each generation holds, to tell a run killed before its
        # clean-up from a clean-up that left a file.
        for gen in "$s"/gen-*; do
            [ -d "$gen" ] && echo "    $(basename "$gen"): $(ls -A "$gen" | tr '\n' ' ')"
        done
    fi
}

# reference_sets NAME: the complete sets of $A and $B, written by runs that
# finished, into NAME"A" and NAME"B"; their checksums into sumsA and sumsB.
reference_sets() {
    # shellcheck disable=SC2086
    mpi "$np" eval $A --grad-dir "$1A" && expect_ok "set A"
    sums "$1A" >sumsA
    # shellcheck disable=SC2086
    mpi "$np" eval $B --grad-dir "$1B" && expect_ok "set B"
    sums "$1B" >sumsB
    cmp -s sumsA sumsB && fail "sets A and B do not differ: the checks below could not fail"
}
reference_sets set

# whole_set DIR WHAT: DIR holds set A or set B, whole.
whole_set() {
    sums "$1" >sumsX
    if cmp -s sumsX sumsA || cmp -s sumsX sumsB; then pass; else
        fail "$2: a mixed or partial set:"
        paste sumsX sumsA sumsB | sed 's/^/    /'
    fi
}

echo "== a failed switch keeps the earlier set"
rm -rf g
mpi "$np" eval --states f8/states.npy --term f=fr --grad-dir g
expect_ok "a set of one file"
sums g >sumsG
# The new set adds d_w_hebb.npy, whose name is taken by a directory.
mkdir g/d_w_hebb.npy
mpi_each "$np" eval --states f8/states.npy --w-hebb f8/w_hebb.npy --term h=hebbian \
    --term f=fr:lambda=2 --grad-dir g
expect_failure 1 "'g/d_w_hebb.npy': it exists and is not a file" "$np" eval "(d_w_hebb.npy a directory)"
rmdir g/d_w_hebb.npy
sums g >sumsX
same sumsG sumsX "a failed run keeps every file of the earlier set"
store_clean g "after a failed switch"

echo "== stale files of inputs not given this time"
# shellcheck disable=SC2086
mpi "$np" eval --states big/states.npy --term f=fr --grad-dir g
expect_ok "a smaller set"
[ ! -e g/d_w_hebb.npy ] && [ ! -L g/d_w_hebb.npy ] && pass \
    || fail "d_w_hebb.npy of the earlier run is still there"
[ -s g/d_states.npy ] && pass || fail "d_states.npy missing"
store_clean g "after a smaller set"
# Regular files written in place (an earlier version) are adopted, then
# replaced as a set.
rm -rf legacy && mkdir legacy && cp setA/d_states.npy setA/d_w_hebb.npy legacy/ \
    && cp setA/d_states.npy legacy/d_pred.npy
# shellcheck disable=SC2086
mpi "$np" eval $B --grad-dir legacy
expect_ok "a directory of regular files"
whole_set legacy "regular files replaced"
[ ! -e legacy/d_pred.npy ] && pass || fail "the stale regular d_pred.npy is still there"

echo "== an input in the gradient directory"
# shellcheck disable=SC2086
mpi_each "$np" eval --states g/d_states.npy --term f=fr --grad-dir g
expect_failure 1 "--states 'g/d_states.npy' is in the gradient directory --grad-dir 'g'" "$np" \
    eval --states g/d_states.npy --grad-dir g

echo "== an input rewritten during a chunked run"
cp big/states.npy changing.npy
# shellcheck disable=SC2086
timeout -k 10 "$TIMEOUT" "$MPIRUN" -np 1 "$CLI" eval --states changing.npy --w-hebb big/w_hebb.npy \
    --term h=hebbian --chunk-batch 1 --grad-dir changed --progress always </dev/null >out 2>err &
pid=$!
i=0
while ! grep -q "chunk" err 2>/dev/null && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
dd if=big/other.npy of=changing.npy conv=notrunc bs=1M 2>/dev/null
wait $pid
rc=$?
if grep -q "done\|100%.*backward chunk" err && [ $rc -eq 0 ]; then
    echo "NOTE: the run ended before the rewrite; the case did not test anything"
    fail "rewrite during the run: the run was too fast to rewrite its input in time"
elif [ $rc -eq 1 ] && grep -qF "changed while it was read" err; then pass; else
    fail "rewrite during the run: exit $rc, $(grep error err)"
fi
[ ! -e changed/d_states.npy ] && pass || fail "rewrite during the run: gradients written"

# still_running PID...: those of the PIDs that still run, each after a space.
still_running() {
    for p in "$@"; do running "$p" && printf ' %s' "$p"; done
}

# interrupt SIG WHO WHAT: starts set B over set A in g, sends SIG to WHO
# (mpirun, or rank0/rank1: one rank's process) once the backward pass has
# begun (or after a delay of $delay s, or once a file matching the pattern
# $until exists), and checks what remains.
interrupt() {
    sig=$1 who=$2 what=$3 ranks=${4:-$np}
    rm -rf g && mkdir g
    # shellcheck disable=SC2086
    "$MPIRUN" -np "$ranks" "$CLI" eval $A --grad-dir g </dev/null >/dev/null 2>&1
    # shellcheck disable=SC2086
    timeout -k 10 "$TIMEOUT" "$MPIRUN" -np "$ranks" "$CLI" eval $B --chunk-batch 1 --grad-dir g \
        --progress always </dev/null >out 2>err &
    pid=$!
    if [ -n "${delay:-}" ]; then sleep "$delay"
    elif [ -n "${until:-}" ]; then
        i=0
        # shellcheck disable=SC2086
        while ! ls $until >/dev/null 2>&1 && [ $i -lt 500 ]; do
            sleep 0.01
            i=$((i + 1))
        done
    else
        i=0
        while ! grep -q "backward chunk" err 2>/dev/null && [ $i -lt 500 ]; do
            sleep 0.01
            i=$((i + 1))
        done
    fi
    # $pid is timeout's; its child is mpirun, whose children are the ranks
    # (in rank order: mpirun starts them so).  Early on they may not exist
    # yet: wait for them (up to 5 s).
    i=0 target=
    while [ -z "$target" ] && [ $i -lt 500 ] && kill -0 "$pid" 2>/dev/null; do
        target=$(ps -o pid= --ppid "$pid" | tr -d ' ')
        case $who in
            rank*) [ -n "$target" ] && target=$(ps -o pid= --ppid "$target" --sort=pid \
                                                | sed -n "$((${who#rank} + 1))p" | tr -d ' ') ;;
        esac
        [ -n "$target" ] || sleep 0.01
        i=$((i + 1))
    done
    ranks_of_run=$(ps -o pid= --ppid "$(ps -o pid= --ppid "$pid" | tr -d ' ')" 2>/dev/null)
    if [ -n "$target" ] && kill -s "$sig" "$target" 2>/dev/null; then :; else
        # Already finished: nothing was interrupted (the checks below would
        # pass without testing anything).  A moment given as a delay may
        # lie past the end of a run faster than the one measured: try
        # again at half the delay (three times at most) before failing.
        wait $pid 2>/dev/null
        if [ -n "${delay:-}" ] && [ "${retries:-0}" -lt 3 ]; then
            retries=$((${retries:-0} + 1))
            delay=$(awk -v d="$delay" 'BEGIN { print d / 2 }')
            interrupt "$@"
            retries=0
            return
        fi
        retries=0
        fail "$what: no process to signal (the run ended first, or $who was not found)"
        return
    fi
    # mpirun ends soon after its ranks.  Open MPI's own can hang for good
    # when a rank is killed at some moments (its main thread deadlocked, the
    # dead rank never reaped): once no rank runs, it gets 20 s, then it is
    # killed, with a note; the checks below still apply.
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 400 ]; do
        alive=$(still_running $ranks_of_run)
        [ -z "$alive" ] && i=$((i + 1))
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "NOTE: $what: mpirun still ran 20 s after its ranks had ended (an Open MPI hang): killed"
        pkill -KILL -P "$pid" 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
    fi
    wait $pid 2>/dev/null
    # Ranks whose mpirun was killed find out within a second or two (Open
    # MPI's runtime), and may finish first: what they leave counts.
    i=0
    while [ $i -lt 200 ]; do
        alive=$(still_running $ranks_of_run)
        [ -z "$alive" ] && break
        sleep 0.05
        i=$((i + 1))
    done
    [ -z "$alive" ] && pass || fail "$what: ranks$alive still run 10 s after the end of mpirun"
    whole_set g "$what"
    if [ "$sig" != KILL ] || [ "$who" = mpirun ]; then
        [ "$sig" = KILL ] || store_clean g "$what: temporary files"
    fi
    # The next run removes what a killed run left, and says so.
    # shellcheck disable=SC2086
    mpi "$ranks" eval $A --grad-dir g
    expect_ok "$what: the next run"
    store_clean g "$what: after the next run"
    whole_set g "$what: after the next run"
}

echo "== SIGKILL at any moment"
# run_seconds RANKS: how long set B takes at RANKS ranks here; the kills
# come at fractions of it, so that each one lands inside the run whatever
# the machine's speed.
run_seconds() {
    rm -rf t && mkdir t
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$MPIRUN" -np "$1" "$CLI" eval $B --chunk-batch 1 --grad-dir t </dev/null >/dev/null 2>&1
    t1=$(date +%s.%N)
    rm -rf t
    echo "$t0 $t1" | awk '{ print $2 - $1 }'
}
at() { echo "$1 $2" | awk '{ printf "%.3f", $1 * $2 }'; }
one=$(run_seconds 1)
two=$(run_seconds 2)
echo "(set B takes $one s at 1 rank, $two s at 2 ranks)"
for f in 0.1 0.25 0.4 0.55 0.7 0.85; do
    delay=$(at "$one" $f)
    interrupt KILL rank0 "SIGKILL of rank 0 after $delay s" 1
done
for f in 0.2 0.5 0.8; do
    delay=$(at "$two" $f)
    interrupt KILL rank1 "SIGKILL of rank 1 after $delay s" 2
    interrupt KILL mpirun "SIGKILL of mpirun after $delay s" 2
done
delay=

echo "== a full disk"
# A file-size limit makes every write past the header fail, as a full disk
# does: the earlier set stays whole.
rm -rf g && mkdir g
# shellcheck disable=SC2086
"$MPIRUN" -np "$np" "$CLI" eval $A --grad-dir g </dev/null >/dev/null 2>&1
: >exits
# shellcheck disable=SC2086
timeout -k 10 "$TIMEOUT" "$MPIRUN" -np "$np" sh -c \
    'trap "" XFSZ; ulimit -f 1; "$0" "$@"; echo "$?" >>exits' "$CLI" eval $B --grad-dir g \
    </dev/null >out 2>err
sort exits -o exits
expect_failure 1 "write failed at byte" "$np" eval "(writes fail)"
# MPI-IO says only how many bytes it wrote; the message also says why.
expect_contains err "File too large" "a short write names the system's reason"
whole_set g "writes failing"
sums g >sumsX
same sumsA sumsX "writes failing keep the earlier set"
store_clean g "writes failing"

echo "== disagreeing choices are named"
: >exits
timeout -k 10 "$TIMEOUT" "$MPIRUN" -np 1 sh -c '"$0" "$@"; echo "$?" >>exits' "$CLI" eval \
    --states f8/states.npy --term f=fr:metric=l1 : -np 1 sh -c '"$0" "$@"; echo "$?" >>exits' \
    "$CLI" eval --states f8/states.npy --term f=fr:metric=l2 </dev/null >out 2>err
sort exits -o exits
expect_failure 1 "ranks disagree on term 'f' (fr): metric (from l2 to l1)" 2 eval "(metric l1 / l2)"

echo "== signals"
# The sets above run their backward and writing in a few tens of
# milliseconds on a fast machine, less than it takes to see the progress
# line and find the process: the signals go to runs of heavier sets
# (hebbian's products on 768 neurons, 121 MB of rates; 0.4 s or more of
# backward and writing on 2 cores at 1 to 4 ranks), their own complete sets
# beside them.  Last, since they replace A, B and their checksums.  A signal
# to mpirun reaches the ranks as SIGTERM a second later (see below): in a
# build without sanitizers the run has often finished by then, and the case
# checks that the set stands whole either way.
mkdir heavy && "$TOOL" gen heavy --B 40 --T 512 --N 768 || exit 99
A="--states heavy/states.npy --w-hebb heavy/w_hebb.npy --term h=hebbian:lambda=1 --term f=fr"
B="--states heavy/states.npy --w-hebb heavy/w_hebb.npy --term h=hebbian:lambda=2 --term f=fr"
reference_sets heavy
for sig in INT TERM; do
    interrupt "$sig" mpirun "SIG$sig to mpirun during the backward pass"
    interrupt "$sig" rank0 "SIG$sig to rank 0 during the backward pass"
done
# Ranks on more than one host keep Open MPI's shared file pointers in lock
# files beside each open file (its sharedfp/lockedfile component, chosen here
# by hand): the clean-up removes them with the set.  The signal comes once
# they are there (the files are open: the backward pass), to rank 0 itself:
# mpirun passes a SIGINT or SIGTERM on to the ranks only a second later (a
# SIGCONT first, then SIGTERM after odls_base_sigkill_timeout, SIGKILL a
# second after that), when a run this size has mostly ended.
OMPI_MCA_sharedfp=lockedfile
export OMPI_MCA_sharedfp
until='g/.ctrnn-loss/gen-*/*.lock'
for sig in INT TERM; do
    interrupt "$sig" rank0 "SIG$sig to rank 0 while MPI-IO's lock files are beside the set"
done
until=
unset OMPI_MCA_sharedfp

finish
