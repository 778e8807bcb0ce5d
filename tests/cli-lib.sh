# cli-lib.sh - shared by the command-line tests (tests/cli_*.sh): the
# environment tests/mpi-run sets, mpirun bounded by timeout, a scratch
# directory, and checks that count failures instead of stopping at the first.
#
# Environment (set by `make check`, defaults for running a script by hand
# from the build directory): CRL_CLI, CRL_NPY_TOOL, MPIRUN, CRL_TEST_RANKS
# ("1 2 3 4"), CRL_TEST_TIMEOUT (seconds per mpirun, 120).
set -u

CLI=${CRL_CLI:-$PWD/src/cli/ctrnn-loss}
TOOL=${CRL_NPY_TOOL:-$PWD/tests/npy-tool}
MPIRUN=${MPIRUN:-mpirun}
RANKS=${CRL_TEST_RANKS:-"1 2 3 4"}
TIMEOUT=${CRL_TEST_TIMEOUT:-120}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# A sanitizer build may ask for other ASAN_OPTIONS for the many short
# command runs (scripts/check: no leak detection there, it costs seconds of
# unwinding through MPI_Init per process; leaks have their own checks).
if [ -n "${CRL_CLI_ASAN_OPTIONS:-}" ]; then
    export ASAN_OPTIONS=$CRL_CLI_ASAN_OPTIONS
fi

for f in "$CLI" "$TOOL"; do
    if [ ! -x "$f" ]; then
        echo "missing $f (build first; set CRL_CLI / CRL_NPY_TOOL)"
        exit 99
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ctrnn-loss-test.XXXXXX") || exit 99
trap 'rm -rf "$WORK"' EXIT
failures=0
checks=0

# running PID: PID is a process that has not ended (a zombie has).
running() {
    case $(ps -o stat= -p "$1" 2>/dev/null) in
        "" | Z*) return 1 ;;
    esac
    return 0
}

# timed_out STATUS: STATUS is timeout(1)'s own (124, or 137 after -k's KILL).
timed_out() {
    [ "$1" -eq 124 ] || [ "$1" -eq 137 ]
}

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

pass() {
    checks=$((checks + 1))
}

# The largest rank count of RANKS, and those above 1 (or 1 alone).
max_ranks() {
    m=1
    for np in $RANKS; do [ "$np" -gt "$m" ] && m=$np; done
    echo "$m"
}
multi_ranks() {
    out=
    for np in $RANKS; do [ "$np" -gt 1 ] && out="$out $np"; done
    echo "${out:-1}"
}

# mpi NP ARGS...: ctrnn-loss ARGS on NP ranks, bounded by the timeout;
# stdout in $WORK/out, stderr in $WORK/err, the status in $rc.
mpi() {
    np=$1
    shift
    timeout -k 10 "$TIMEOUT" "$MPIRUN" -np "$np" "$CLI" "$@" </dev/null >"$WORK/out" 2>"$WORK/err"
    rc=$?
    timed_out $rc && fail "TIMEOUT (a hang) after $TIMEOUT s: $np rank(s): ctrnn-loss $*"
    return 0
}

# mpi_each NP ARGS...: as mpi, but every rank records its own exit status;
# the statuses (one line per rank, sorted) are in $WORK/exits.
mpi_each() {
    np=$1
    shift
    : >"$WORK/exits"
    timeout -k 10 "$TIMEOUT" "$MPIRUN" -np "$np" sh -c \
        '"$0" "$@"; echo "$?" >>"'"$WORK"'/exits"' "$CLI" "$@" </dev/null >"$WORK/out" 2>"$WORK/err"
    rc=$?
    timed_out $rc && fail "TIMEOUT (a hang) after $TIMEOUT s: $np rank(s): ctrnn-loss $*"
    sort "$WORK/exits" -o "$WORK/exits"
    return 0
}

# expect_failure STATUS NEEDLE NP ARGS...: the last mpi_each call (ctrnn-loss
# ARGS on NP ranks) ended with STATUS on every rank and exactly one message
# (from rank 0), containing NEEDLE.
expect_failure() {
    status=$1 needle=$2 np=$3
    shift 3
    what="[$np rank(s)] ctrnn-loss $*"
    expected=$(i=0; while [ $i -lt "$np" ]; do echo "$status"; i=$((i + 1)); done)
    if [ "$(cat "$WORK/exits")" = "$expected" ]; then pass; else
        fail "$what: exit statuses per rank: $(tr '\n' ' ' <"$WORK/exits"), expected $status on each"
    fi
    messages=$(grep -c '^ctrnn-loss: error: ' "$WORK/err")
    if [ "$messages" -eq 1 ]; then pass; else
        fail "$what: $messages error messages (expected one, from rank 0)"
        sed 's/^/    /' "$WORK/err" | head -n 10
    fi
    expect_contains "$WORK/err" "$needle" "$what"
}

# expect_ok WHAT: the last mpi call succeeded.
expect_ok() {
    if [ "$rc" -ne 0 ]; then
        fail "$1: exit $rc"
        sed 's/^/    /' "$WORK/err" | head -n 20
    else
        pass
    fi
}

# expect_contains FILE TEXT WHAT
expect_contains() {
    if grep -qF -- "$2" "$1"; then pass; else
        fail "$3: '$2' not found in:"
        sed 's/^/    /' "$1" | head -n 20
    fi
}

# same FILE1 FILE2 WHAT: bitwise identical.
same() {
    if cmp -s "$1" "$2"; then pass; else
        fail "$3: $1 and $2 differ"
        cmp "$1" "$2" | head -n 3
    fi
}

# The JSON with the rank count replaced and the decomposition left out, to
# compare runs on different numbers of ranks, decompositions, and the
# reference (tests/npy-tool ref, which decomposes nothing).
normalize() {
    sed -e 's/"ranks": [0-9]*/"ranks": P/' -e 's/, "decomposition": {[^}]*}//' "$1" >"$2"
}

# Registered term types, from the catalogue.
registered_types() {
    "$MPIRUN" -np 1 "$CLI" types </dev/null | awk '/^[a-z_]/ { print $1 }'
}

finish() {
    echo "$checks checks passed, $failures failed"
    [ "$failures" -eq 0 ]
    exit $?
}
