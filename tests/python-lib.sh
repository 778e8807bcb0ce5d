# python-lib.sh - sourced by the tests that run Python (tests/reference_*.sh,
# tests/python_binding.sh): sets PYTHON to a python3 that imports the modules
# of PYTHON_NEEDS (default: numpy torch) — $CRL_PYTHON, else /usr/bin/python3
# (Debian's python3-* packages), else the python3 first on PATH — or skips
# the test (exit 77) with the reason (CRL_REQUIRE_TORCH=1, as in CI: a hard
# error instead).
# Python writes no bytecode into the source tree.
export PYTHONDONTWRITEBYTECODE=1
needs=${PYTHON_NEEDS:-numpy torch}
imports=
packages=
for module in $needs; do
    imports=${imports:+$imports,}$module
    packages="$packages python3-$module"
done
PYTHON=
for candidate in ${CRL_PYTHON:-} /usr/bin/python3 python3; do
    if "$candidate" -c "import $imports" >/dev/null 2>&1; then
        PYTHON=$candidate
        break
    fi
done
if [ -z "$PYTHON" ] && [ "${CRL_REQUIRE_TORCH:-0}" = 1 ]; then
    echo "ERROR: $(basename "$0"): CRL_REQUIRE_TORCH=1 but no python3 imports $needs"
    exit 99
fi
if [ -z "$PYTHON" ]; then
    echo "SKIP: $(basename "$0"): no python3 with $needs (tried: ${CRL_PYTHON:+$CRL_PYTHON }/usr/bin/python3 python3);" \
        "install$packages (scripts/packages) or set CRL_PYTHON"
    exit 77
fi

# python_mpi_setup: what the tests that run the binding under mpirun share
# (tests/python_binding.sh, tests/python_ddp.sh): builddir, mpirun, timeout
# and lib (the tested libctrnnloss, exported as CTRNNLOSS_LIBRARY) from
# CRL_BUILDDIR, MPIRUN and CRL_TEST_TIMEOUT (300 s per mpirun), and Open
# MPI's settings for root, oversubscription and one BLAS thread per rank.
python_mpi_setup() {
    builddir=${CRL_BUILDDIR:-$PWD}
    mpirun=${MPIRUN:-mpirun}
    timeout=${CRL_TEST_TIMEOUT:-300}
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_rmaps_base_oversubscribe=1
    export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
    export OMPI_MCA_btl_vader_single_copy_mechanism=none
    lib=$builddir/.libs/libctrnnloss.so
    if [ ! -e "$lib" ]; then
        echo "missing $lib (build first; set CRL_BUILDDIR)"
        exit 99
    fi
    export CTRNNLOSS_LIBRARY="$lib"
}
