#!/bin/sh
# reference_check.sh - ctrnn-loss against the PyTorch reference
# (scripts/reference.py, gradients by autograd) on random cases under each
# rank count of CRL_XCHECK_RANKS (default CRL_TEST_RANKS): values and
# gradients within 1e-12 (float64) or 1e-5 (float32) relative, every rank
# count bitwise identical; see tests/reference_check.py.  Skipped (77)
# without torch and numpy.  CRL_XCHECK_SEED changes the cases' seed.
# (The library runs hebbian's BLAS products on one thread whatever
# OPENBLAS_NUM_THREADS says: test_hebbian checks the bits do not depend on it.)
. "$(dirname "$0")/cli-lib.sh"
. "$(dirname "$0")/python-lib.sh"

"$PYTHON" "$(dirname "$0")/reference_check.py" --cli "$CLI" --mpirun "$MPIRUN" \
    --ranks "${CRL_XCHECK_RANKS:-$RANKS}" --timeout "$TIMEOUT" --keep "$WORK/cases"
