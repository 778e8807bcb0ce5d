"""
ctrnnloss - exact, MPI-sharded CTRNN losses and gradients from libctrnnloss,
for PyTorch (ctrnnloss.torch) and NumPy (ctrnnloss.numpy).

Run under MPI (mpirun -np P python3 script.py): every rank passes its slice
of the batch and gets the global loss, bitwise identical whatever the number
of ranks.  The library is loaded with ctypes (see _lib.py for where it is
looked for; $CTRNNLOSS_LIBRARY overrides); importing this package imports
mpi4py.MPI first, which initializes MPI.

This module holds what both front ends share:
  Loss(terms, comm)      a loss of named terms on library array descriptions
  Block, TIME_UNIT,      time sharding: where a rank's tensors lie in the
  time_slice()           global (batch, time) plane (block= of every call)
  term_types()           the catalogue {type: (summary, [ParamSpec])}
  Error and subclasses   the library's errors (the same on every rank)
"""

from ._lib import path as library_path
from . import _core
from ._core import (Error, InvalidArgumentError, DomainError, NonFiniteError,
                    FileError, OutOfMemoryError, MPIError, Loss, ParamSpec, term_types,
                    term_params, Block, TIME_UNIT, time_slice)

library_version = _core.lib.crl_version().decode()
__version__ = library_version

__all__ = ["Error", "InvalidArgumentError", "DomainError", "NonFiniteError", "FileError",
           "OutOfMemoryError", "MPIError", "Loss", "ParamSpec", "term_types", "term_params",
           "library_path", "library_version", "Block", "TIME_UNIT", "time_slice"]
