# scripts/lib.sh - shared by scripts/demo and scripts/check: install missing
# Debian packages, then build (idempotent; fast when nothing changed).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

# ensure_packages FILE...: apt-get install what the lists name and dpkg lacks.
ensure_packages() {
    missing=
    for list in "$@"; do
        for p in $(grep -v '^#' "$list"); do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
                || missing="$missing $p"
        done
    done
    [ -z "$missing" ] && return 0
    echo "installing:$missing"
    sudo=
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
}

# unconfigure_in_place: a source tree configured in place (./configure run in
# it, as when building by hand) makes every out-of-tree build refuse to
# configure ("source directory already configured").  Say so, and undo it
# with make distclean: the builds of these scripts replace the in-place one.
unconfigure_in_place() {
    [ -f "$ROOT/config.status" ] || return 0
    {
        echo "$(basename "$0"): the source tree $ROOT was configured in place (./configure there);"
        echo "  the out-of-tree builds of this script need it unconfigured, so running"
        echo "  'make distclean' in $ROOT (its in-place build is removed; this script builds in $ROOT/build)."
    } >&2
    (cd "$ROOT" && { [ -f Makefile ] && make distclean >/dev/null; } ) || {
        echo "$(basename "$0"): 'make distclean' in $ROOT failed: remove config.status, Makefile and the" >&2
        echo "  objects there by hand (git clean -xdf, if nothing of yours is untracked), then rerun." >&2
        exit 1
    }
    rm -f "$ROOT/config.status"
}

# ensure_built [DIR [CONFIGURE-ARGS...]]: autoreconf, configure (out of tree,
# in DIR, default build/) and make, each only when needed.
ensure_built() {
    dir=${1:-build}
    [ $# -gt 0 ] && shift
    cd "$ROOT"
    if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
        autoreconf -fi
    fi
    unconfigure_in_place
    mkdir -p "$dir"
    cd "$dir"
    if [ ! -f Makefile ] || [ ../configure -nt config.status ]; then
        ../configure --enable-werror "$@"
    fi
    make -j"$(nproc)"
    cd "$ROOT"
}
