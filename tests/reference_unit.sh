#!/bin/sh
# reference_unit.sh - scripts/test_reference.py: the PyTorch reference against
# values worked out by hand and docs/losses.md's closed-form gradients, and its
# parameter table against the library's catalogue.  Skipped (77)
# without torch and numpy, and where CRL_SKIP_REFERENCE_UNIT=1 (scripts/check's
# sanitizer phase: this test runs no C code).
if [ "${CRL_SKIP_REFERENCE_UNIT:-0}" = 1 ]; then
    echo "SKIP: $(basename "$0"): CRL_SKIP_REFERENCE_UNIT=1 (it runs no C code)"
    exit 77
fi
. "$(dirname "$0")/python-lib.sh"

"$PYTHON" "$(dirname "$0")/../scripts/test_reference.py" || exit 1
# The reference's parameter table must be the C catalogue's.
lib=${CRL_BUILDDIR:-$PWD}/.libs/libctrnnloss.so
[ -e "$lib" ] || { echo "missing $lib (build first; set CRL_BUILDDIR)"; exit 99; }
exec "$PYTHON" "$(dirname "$0")/../scripts/reference.py" --check-catalogue "$lib"
