"""
_lib.py - finds libctrnnloss and declares the part of its C API
(include/ctrnnloss.h) the binding calls, for ctypes.

The shared library is looked for, in this order:
  1. $CTRNNLOSS_LIBRARY, a path (nothing else is tried when it is set);
  2. when this package is imported from a source tree, that tree's build:
     <repo>/build/.libs (scripts/check, scripts/demo), then <repo>/.libs
     (./configure && make in the source directory);
  3. `pkg-config --variable=libdir ctrnnloss` (ctrnnloss.pc of `make install`;
     PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a prefix of your own);
  4. ctypes.util.find_library("ctrnnloss") (LD_LIBRARY_PATH, ldconfig), then
     the usual install directories.

MPI is initialized (by importing mpi4py.MPI) before the library is loaded:
the library's collective calls need an initialized MPI, and the handle type
of MPI_Comm (a pointer in Open MPI, an int in MPICH) comes from mpi4py.
"""
import ctypes
import ctypes.util
import glob
import os
import subprocess

from mpi4py import MPI

c_int64 = ctypes.c_int64

# MPI_Comm as the C library sees it: Open MPI's is a pointer, MPICH's an int.
COMM_TYPE = ctypes.c_void_p if MPI._sizeof(MPI.Comm) == ctypes.sizeof(ctypes.c_void_p) \
    else ctypes.c_int

# crl_status, crl_dtype and crl_param_kind values.
OK = 0
FLOAT32, FLOAT64 = 1, 2
PARAM_REAL, PARAM_INT, PARAM_BOOL, PARAM_CHOICE = 1, 2, 3, 4
GRAD_ACCUMULATE, GRAD_OVERWRITE = 0, 1
ERR_INVALID = 1
# CRL_TIME_UNIT (a macro, which ctypes cannot read): a time block starts at a
# multiple of it and ends at one or at T.
TIME_UNIT = 512

# The input roles, in the order of crl_tensors: five batched arrays (the
# mask optional, without a gradient), then four replicated matrices.
ROLES = ("states", "states1", "pred", "label", "mask", "w_in", "w_hid", "w_out", "w_hebb")
BATCHED_ROLES = ROLES[:5]


class Array(ctypes.Structure):
    """crl_array: a rank's slice of a (B, T, width) array, strides in elements."""
    _fields_ = [("dtype", ctypes.c_int), ("data", ctypes.c_void_p), ("batch", c_int64),
                ("time", c_int64), ("width", c_int64), ("batch_stride", c_int64),
                ("time_stride", c_int64)]


class Matrix(ctypes.Structure):
    """crl_matrix: a replicated row-major matrix, row stride in elements."""
    _fields_ = [("dtype", ctypes.c_int), ("data", ctypes.c_void_p), ("rows", c_int64),
                ("cols", c_int64), ("row_stride", c_int64)]


class Tensors(ctypes.Structure):
    """crl_tensors: the inputs (or gradient buffers) of an evaluation, by role."""
    _fields_ = [(role, Array) for role in BATCHED_ROLES] + \
               [(role, Matrix) for role in ROLES[len(BATCHED_ROLES):]]


class Block(ctypes.Structure):
    """crl_block: where a rank's chunks lie in the global (batch, time) plane."""
    _fields_ = [("batch", c_int64), ("batch_offset", c_int64), ("time", c_int64),
                ("time_offset", c_int64)]


class ParamInfo(ctypes.Structure):
    """crl_param_info: one parameter of a term type."""
    _fields_ = [("key", ctypes.c_char_p), ("kind", ctypes.c_int),
                ("default_value", ctypes.c_double), ("min", ctypes.c_double),
                ("max", ctypes.c_double), ("choices", ctypes.POINTER(ctypes.c_char_p)),
                ("help", ctypes.c_char_p)]


_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_PROTOTYPES = {
    # name: (return type, argument types)
    "crl_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "crl_version": (ctypes.c_char_p, []),
    "crl_context_create": (ctypes.c_int, [COMM_TYPE, _PP]),
    "crl_context_error": (ctypes.c_char_p, [_P]),
    "crl_context_rank": (ctypes.c_int, [_P]),
    "crl_context_size": (ctypes.c_int, [_P]),
    "crl_loss_create": (ctypes.c_int, [_P, _PP]),
    "crl_loss_destroy": (None, [_PP]),
    "crl_loss_add": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_double,
                                    ctypes.c_char_p]),
    "crl_loss_evaluate": (ctypes.c_int, [_P, ctypes.POINTER(Tensors), ctypes.POINTER(Tensors)]),
    "crl_loss_total": (ctypes.c_double, [_P]),
    "crl_loss_value_count": (c_int64, [_P]),
    "crl_loss_value_name": (ctypes.c_char_p, [_P, c_int64]),
    "crl_loss_value": (ctypes.POINTER(ctypes.c_double), [_P, c_int64, ctypes.POINTER(c_int64)]),
    "crl_term_type_count": (ctypes.c_int, []),
    "crl_term_type_name": (ctypes.c_char_p, [ctypes.c_int]),
    "crl_term_type_summary": (ctypes.c_char_p, [ctypes.c_int]),
    "crl_term_type_param": (ctypes.POINTER(ParamInfo), [ctypes.c_char_p, ctypes.c_int]),
    "crl_loss_accumulate": (ctypes.c_int, [_P, ctypes.POINTER(Tensors), ctypes.POINTER(Tensors)]),
    "crl_loss_reduce": (ctypes.c_int, [_P]),
    "crl_loss_backward": (ctypes.c_int, [_P, ctypes.POINTER(Tensors), ctypes.POINTER(Tensors)]),
    "crl_loss_set_block": (ctypes.c_int, [_P, ctypes.POINTER(Block)]),
    "crl_loss_set_block_states1": (ctypes.c_int, [_P, ctypes.POINTER(Block)]),
    "crl_loss_set_grad_mode": (ctypes.c_int, [_P, ctypes.c_int]),
    "crl_loss_set_grad_scale": (ctypes.c_int, [_P, ctypes.c_double]),
    "crl_loss_set_term_grad_scale": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_double]),
    "crl_loss_refuse": (ctypes.c_int, [_P, ctypes.c_int, ctypes.c_char_p]),
    "crl_loss_reduce_group": (ctypes.c_int, [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]),
    "crl_context_agree": (ctypes.c_int, [_P, ctypes.c_int, ctypes.c_char_p]),
}


def _existing(where, directory):
    """(where, path) for the library files in directory: the unversioned link
    first, then any versioned file."""
    found = [os.path.join(directory, "libctrnnloss.so")] + \
        sorted(glob.glob(os.path.join(directory, "libctrnnloss.so.*")))
    return [(where, path) for path in found if os.path.exists(path)]


def _pkg_config_libdir():
    """The libdir of ctrnnloss.pc, or None (no pkg-config, no such package)."""
    try:
        done = subprocess.run(["pkg-config", "--variable=libdir", "ctrnnloss"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = done.stdout.strip()
    return libdir if done.returncode == 0 and libdir else None


def _candidates():
    """(where, path) pairs to try, in order; path None: nothing found there."""
    explicit = os.environ.get("CTRNNLOSS_LIBRARY")
    if explicit:
        return [("$CTRNNLOSS_LIBRARY", explicit)]
    out = []
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.exists(os.path.join(repo, "include", "ctrnnloss.h")):
        for sub in ("build", "."):
            where = "the source tree's build (%s)" % os.path.normpath(os.path.join(repo, sub))
            out += _existing(where, os.path.normpath(os.path.join(repo, sub, ".libs"))) or [(where, None)]
    libdir = _pkg_config_libdir()
    if libdir:
        out += _existing("pkg-config's libdir", libdir) or \
            [("pkg-config's libdir", os.path.join(libdir, "libctrnnloss.so"))]
    else:
        out.append(("pkg-config ctrnnloss", None))
    out.append(("find_library('ctrnnloss')", ctypes.util.find_library("ctrnnloss")))
    for d in ("/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        out.append(("installed", os.path.join(d, "libctrnnloss.so.0")))
    return out


def _load():
    tried = []
    for where, path in _candidates():
        if path is None:
            tried.append("%s: not found" % where)
            continue
        if os.path.isabs(path) and not os.path.exists(path):
            tried.append("%s: %s (no such file)" % (where, path))
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            tried.append("%s: %s (%s)" % (where, path, exc))
            continue
        for name, (restype, argtypes) in _PROTOTYPES.items():
            try:
                fn = getattr(lib, name)
            except AttributeError:
                tried.append("%s: %s (no symbol %s: not libctrnnloss or too old)"
                             % (where, path, name))
                break
            fn.restype, fn.argtypes = restype, argtypes
        else:
            return lib, path
    raise ImportError("ctrnnloss: cannot load the C library libctrnnloss; tried:\n  "
                      + "\n  ".join(tried)
                      + "\nBuild it (scripts/demo or scripts/check in the source tree), or "
                        "install it (make install) and, for a prefix PREFIX of your own, set "
                        "PKG_CONFIG_PATH=PREFIX/lib/pkgconfig or LD_LIBRARY_PATH=PREFIX/lib; "
                        "or set CTRNNLOSS_LIBRARY to the path of libctrnnloss.so.")


lib, path = _load()
