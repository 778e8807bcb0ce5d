#!/bin/sh
# reference_unit.sh - scripts/test_reference.py: the PyTorch reference against
# values worked out by hand and SPEC's closed-form gradients.  Skipped (77)
# without torch and numpy, and where CRL_SKIP_REFERENCE_UNIT=1 (scripts/check's
# sanitizer phase: this test runs no C code).
if [ "${CRL_SKIP_REFERENCE_UNIT:-0}" = 1 ]; then
    echo "SKIP: $(basename "$0"): CRL_SKIP_REFERENCE_UNIT=1 (it runs no C code)"
    exit 77
fi
. "$(dirname "$0")/python-lib.sh"

exec "$PYTHON" "$(dirname "$0")/../scripts/test_reference.py"
