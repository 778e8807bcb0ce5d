#!/bin/sh
# install_python.sh - the package as a user adopts it, offline: configure the
# source tree with --prefix=P (a temporary directory) and `make install`,
# then in a venv made with --system-site-packages (Debian's numpy, mpi4py,
# torch, setuptools, wheel) `pip install --no-build-isolation` the Python
# package, and from another directory import ctrnnloss.torch and run a
# criterion on 2 ranks: it must find the installed library through
# pkg-config (PKG_CONFIG_PATH=P/lib/pkgconfig), the version must be the
# header's, and a missing library must give a message that says what to do.
#
# Environment (set by `make check`): MPIRUN, CRL_TEST_TIMEOUT (seconds per
# step, 300), CRL_PYTHON (tried first, see tests/python-lib.sh).  Skipped
# (77) where no python3 has torch, numpy, mpi4py, venv and setuptools.
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
mpirun=${MPIRUN:-mpirun}
timeout=${CRL_TEST_TIMEOUT:-300}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

PYTHON_NEEDS="numpy torch mpi4py venv setuptools wheel pip"
. "$here/python-lib.sh"
# Nothing of the build tree or the caller may help the installed package.
unset CTRNNLOSS_LIBRARY PYTHONPATH LD_LIBRARY_PATH PKG_CONFIG_PATH

work=$(mktemp -d "${TMPDIR:-/tmp}/ctrnn-loss-install.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# step NAME COMMAND...: runs it bounded by the timeout, its output in the log.
step() {
    name=$1
    shift
    echo "=== $name"
    timeout -k 10 "$timeout" "$@" >"$work/step.log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || { tail -n 40 "$work/step.log"; fail "$name (exit $rc)"; }
}

prefix=$work/prefix
# The source tree is read-only in make distcheck and may be configured in
# place: configure it from a build directory of our own (a VPATH build needs
# an unconfigured source tree, as scripts/lib.sh checks).
if [ -f "$src/config.status" ]; then
    echo "SKIP: the source tree $src is configured in place; a VPATH build of it is impossible (make distclean there)"
    exit 77
fi
mkdir "$work/build"
start=$(date +%s)
# -O1: this test is about installing, not numbers; it shortens the build.
(cd "$work/build" && step "configure --prefix=P" "$src/configure" --prefix="$prefix" CFLAGS=-O1) || exit 1
step "make install" make -C "$work/build" -j2 install
echo "configure + make install: $(( $(date +%s) - start )) s"
[ -f "$prefix/lib/pkgconfig/ctrnnloss.pc" ] || fail "make install wrote no ctrnnloss.pc"
[ -f "$prefix/share/man/man1/ctrnn-loss.1" ] || fail "make install wrote no man page"
[ -f "$prefix/share/doc/ctrnn-loss/losses.md" ] || fail "make install wrote no docs/losses.md"

# The Python package from a copy of its files (pip builds in the directory it
# is given, and the source tree may be read-only).
pkg=$work/pkg
mkdir -p "$pkg/include" "$pkg/python"
cp "$src/pyproject.toml" "$src/setup.py" "$src/README.md" "$src/LICENSE" "$pkg/" || exit 99
cp "$src/include/ctrnnloss.h" "$pkg/include/" || exit 99
cp -R "$src/python/ctrnnloss" "$pkg/python/" || exit 99
venv=$work/venv
# Debian's pip from the system site-packages: no network, no ensurepip.
step "python3 -m venv --system-site-packages" "$PYTHON" -m venv --system-site-packages --without-pip "$venv"
step "pip install --no-build-isolation" env PIP_NO_INDEX=1 "$venv/bin/python" -m pip install \
    --no-build-isolation --no-cache-dir "$pkg"
echo "install test so far: $(( $(date +%s) - start )) s"

cd "$work" || exit 99
version=$(sed -n 's/^#define CRL_VERSION_STRING "\(.*\)"$/\1/p' "$src/include/ctrnnloss.h")
meta=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("ctrnnloss"))') \
    || fail "no installed distribution ctrnnloss"
[ "$meta" = "$version" ] || fail "installed version $meta, header $version"
pcver=$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --modversion ctrnnloss)
[ "$pcver" = "$version" ] || fail "ctrnnloss.pc version $pcver, header $version"

# The installed package, not the source tree's: imported from $work, with
# only pkg-config to say where the library is.
cat >"$work/criterion.py" <<'PY'
import sys
from mpi4py import MPI
import torch
import ctrnnloss
import ctrnnloss.torch as ct

prefix, version = sys.argv[1], sys.argv[2]
comm = MPI.COMM_WORLD
assert ctrnnloss.__file__.startswith(sys.prefix), ctrnnloss.__file__
assert ctrnnloss.library_path.startswith(prefix + "/lib/"), ctrnnloss.library_path
assert ctrnnloss.__version__ == version, (ctrnnloss.__version__, version)
B, T, N = 5, 4, 3
g = torch.Generator().manual_seed(1)
rates = torch.rand(B, T, N, generator=g, dtype=torch.float64)
mine = rates[comm.rank * B // comm.size:(comm.rank + 1) * B // comm.size].clone().requires_grad_()
loss = ct.FiringRateLoss(metric="l2")(mine)
loss.backward()
want = (rates.mean(dim=(0, 1)) ** 2).mean().item()
assert abs(loss.item() - want) <= 1e-12 * want, (loss.item(), want)
total = comm.allreduce(loss.item())
assert total == comm.size * loss.item()  # the same global value on every rank
if comm.rank == 0:
    print("criterion ok:", loss.item(), "library", ctrnnloss.library_path)
PY
step "import ctrnnloss.torch, a criterion on 2 ranks" env PKG_CONFIG_PATH="$prefix/lib/pkgconfig" \
    "$mpirun" -np 2 "$venv/bin/python" "$work/criterion.py" "$prefix" "$version"
cat "$work/step.log"

# No library: the message says what was tried and what to do.
CTRNNLOSS_LIBRARY=$work/none.so "$venv/bin/python" -c "import ctrnnloss" >"$work/none.log" 2>&1 \
    && fail "import ctrnnloss succeeded without a library"
grep -q "none.so (no such file)" "$work/none.log" && grep -q "PKG_CONFIG_PATH=PREFIX/lib/pkgconfig" "$work/none.log" \
    || { cat "$work/none.log"; fail "the message for a missing library"; }
echo "total: $(( $(date +%s) - start )) s"
exit 0
