#!/bin/sh
# python_ddp.sh - the DistributedDataParallel recipe (tests/python_ddp.py):
# parameter gradients after one step at 1 rank, then at 2 ranks against them
# (1e-12, float64).  Environment as tests/python_binding.sh's; exit status 77
# (skipped) where no python3 has torch (with torch.distributed), numpy and
# mpi4py.
set -u
here=$(cd "$(dirname "$0")" && pwd)
PYTHON_NEEDS="numpy torch mpi4py"
. "$here/python-lib.sh"
python_mpi_setup
if ldd "$lib" | grep -q libasan; then
    echo "SKIP: the DDP recipe is not run on a sanitizer build (gloo's threads under ASan)"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/ctrnn-loss-ddp.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
# A free TCP port on the loopback interface for gloo's rendezvous.
port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for phase in "1 record" "2 compare"; do
    set -- $phase
    echo "=== $1 rank(s): python_ddp.py $2"
    timeout -k 10 "$timeout" "$mpirun" -np "$1" -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT="$port" \
        "$PYTHON" "$here/python_ddp.py" "$2" "$work/grads.npz" \
        || { echo "FAILED with $1 rank(s)"; exit 1; }
done
exit 0
