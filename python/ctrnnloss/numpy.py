"""
ctrnnloss.numpy - the criteria of docs/losses.md on NumPy arrays, for analysis scripts:
each call returns the global values and, on request, the gradients of this
rank's arrays.

    from ctrnnloss.numpy import FiringRateDistLoss
    result = FiringRateDistLoss(metric="cv")(rates, grad=True)
    result.total, result.values["fr_dist"], result.grads["states"]

Arrays are float32 or float64 (native byte order), read in place: batched
ones (B, T, N) (or (T, B, N) with batch_first=False) with unit stride along
the last dimension, matrices with contiguous rows.  Every call is collective
over the criterion's communicator (MPI.COMM_WORLD by default).

Time sharding: block=ctrnnloss.Block(B, b0, T, t0) on a call says that this
rank's batched arrays are global elements b0.. and global steps t0.. of a
(B, T, .) input (see ctrnnloss.Block: every rank passes one, with the same B
and T; time boundaries at multiples of ctrnnloss.TIME_UNIT or at T):

    s = ctrnnloss.time_slice(T, comm.size, comm.rank)
    FiringRateLoss()(rates[:, s], grad=True, block=ctrnnloss.Block(B, 0, T, s.start))
"""
from collections import namedtuple

import numpy as np

from . import _core, _lib
from ._core import (Error, InvalidArgumentError, DomainError, NonFiniteError,
                    MPIError, OutOfMemoryError, FileError, Block, TIME_UNIT, time_slice)

__all__ = list(_core.CRITERIA) + ["CompositeLoss", "Result", "Error", "InvalidArgumentError",
                                  "DomainError", "NonFiniteError", "MPIError",
                                  "OutOfMemoryError", "FileError", "Block", "TIME_UNIT",
                                  "time_slice"]

_DTYPES = {np.dtype(np.float32): _lib.FLOAT32, np.dtype(np.float64): _lib.FLOAT64}

Result = namedtuple("Result", "total values grads")
Result.__doc__ = """total: the total loss (float); values: {name: float, or ndarray
for a vector} as the library reports them; grads: {input name: ndarray of the
input's shape and dtype} for the inputs asked for."""


def _describe(role, x, batch_first):
    """x as the library's crl_array / crl_matrix, or a _core.Problem."""
    if not isinstance(x, np.ndarray):
        return _core.Problem("a %s, not a numpy.ndarray" % type(x).__name__)
    if x.dtype not in _DTYPES:
        return _core.Problem("an array of dtype %s; ctrnnloss takes float32 or float64 in "
                             "native byte order" % x.dtype.str)
    if any(s % x.itemsize for s in x.strides):
        return _core.Problem("an array whose strides %s are not multiples of its element size"
                             % (x.strides,))
    return _core.describe(role, _DTYPES[x.dtype], x.ctypes.data, x.shape,
                          tuple(s // x.itemsize for s in x.strides), batch_first)


def _empty_chunk(role, x, batch_first):
    """A batched array without time steps (x[:, s] of a block's empty s) as
    the library's empty chunk, no elements of one step; x itself otherwise."""
    if role in _lib.BATCHED_ROLES and isinstance(x, np.ndarray) and x.ndim == 3:
        if x.shape[1 if batch_first else 0] == 0:
            return np.lib.stride_tricks.as_strided(
                x, (0, 1, x.shape[2]) if batch_first else (1, 0, x.shape[2]), (x.itemsize,) * 3)
    return x


class _Evaluator:
    """What every criterion shares: a Loss and the evaluation of it."""

    def __init__(self, terms, comm, batch_first):
        self.batch_first = batch_first
        self.loss = _core.Loss(terms, comm)

    def _evaluate(self, named, grad, call_error=None, block=None, block1=None):
        """Collective.  named: {input name: (role, array)}; grad: False, True
        (every input given) or input names; block, block1: Blocks, or None."""
        if block is not None or block1 is not None:
            try:
                block = _core.blocks_of(block, block1)
            except (TypeError, ValueError) as exc:
                block, call_error = None, call_error or exc
        if grad is True:   # every input that has a gradient
            grad = [n for n, (role, _) in named.items() if role not in _core.NO_GRADIENT]
        elif not grad:
            grad = []
        unknown = [g for g in grad if g not in named]
        if unknown and call_error is None:
            call_error = ValueError("ctrnnloss: gradient asked for %s, not among the inputs "
                                    "given (%s)" % (", ".join(map(repr, unknown)),
                                                    ", ".join(named)))
        inputs, grads, buffers = {}, {}, {}
        for name, (role, x) in named.items():
            shape = getattr(x, "shape", None)
            if block is not None:
                x = _empty_chunk(role, x, self.batch_first)
            inputs[role] = _describe(role, x, self.batch_first)
            if name in grad and not isinstance(inputs[role], _core.Problem):
                # Overwritten by the library: no zeroing.
                buffers[name] = np.empty(x.shape, dtype=x.dtype)
                grads[role] = _describe(role, buffers[name], self.batch_first)
                buffers[name] = buffers[name].reshape(shape)   # x's own, where x was stepless
        tin, problems = self.loss.inputs(inputs)
        if call_error is not None:
            problems["call"] = call_error
        announced = None
        if grads:
            announced = self.loss.inputs(grads)[0]
        total, values, evaluation = self.loss.forward(tin, problems, announced,
                                                      keep=bool(grads), block=block)
        if grads:
            evaluation.backward(grads, 1.0)
        return Result(total, values, buffers)


class _Criterion(_Evaluator):
    """One criterion, a loss of one term (named after its type, lambda
    1): Criterion(*params, comm=None, batch_first=True, **parameters) with
    positional parameters in nn4n's order, called with its inputs (and
    grad=..., block=...), returns a Result."""
    term_type = None
    arguments = ()    # (argument name, role, aliases), in call order
    positional = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        spec = _core.CRITERIA[cls.__name__]
        cls.term_type, cls.arguments, cls.positional = spec.type, spec.arguments, spec.positional
        cls.__doc__ = _core.inspect.cleandoc(spec.doc + _core.BLOCK_NOTE)

    def __init__(self, *args, comm=None, batch_first=True, **params):
        def terms():
            self.params = _core.bind_params(type(self).__name__, self.positional, args, params)
            return [(self.term_type, self.term_type, 1.0, self.params)]
        super().__init__(terms, comm, batch_first)

    def __call__(self, *args, grad=False, block=None, block1=None, **kwargs):
        """Collective.  The criterion's inputs; grad=True for the gradients of
        all of them, or a list of input names; block: a ctrnnloss.Block when
        the batched arrays are a block of the global (batch, time) plane
        (block1: states1's own, PopulationKL's second population).
        Returns a Result (gradients keyed by the criterion's argument
        names, of this rank's arrays)."""
        try:
            bound, error = _core.bind_arguments(type(self).__name__, self.arguments, args,
                                                kwargs), None
        except TypeError as exc:
            bound, error = {}, exc
        names = {role: a for a, role, _ in self.arguments}
        return self._evaluate({names[r]: (r, x) for r, x in bound.items()}, grad, error, block,
                              block1)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__,
                           ", ".join("%s=%r" % kv for kv in self.params.items()))


class RNNLoss(_Criterion):
    pass


class FiringRateLoss(_Criterion):
    pass


class FiringRateDistLoss(_Criterion):
    pass


class StatePredictionLoss(_Criterion):
    pass


class HebbianLoss(_Criterion):
    pass


class EntropyLoss(_Criterion):
    pass


class PopulationKL(_Criterion):
    pass


class MSELoss(_Criterion):
    pass


class RNNConnectivityLoss(_Criterion):
    pass


class CrossEntropyLoss(_Criterion):
    pass


class CompositeLoss(_Evaluator):
    """CompositeLoss with nn4n's configuration {name: {'type': ...,
    'params': {...}, 'lambda': ...}}.  Called with the inputs by role
    (states, states1, pred, label, w_in, w_hid, w_out, w_hebb) and/or nn4n's
    {name: {argument: array}} (and block=, as the criteria); gradients are
    keyed by role."""

    def __init__(self, loss_cfg, *, comm=None, batch_first=True):
        super().__init__(lambda: _core.composite_terms(loss_cfg), comm, batch_first)

    def __call__(self, loss_input_dict=None, *, grad=False, block=None, block1=None, **inputs):
        try:
            roles, error = _core.composite_inputs(loss_input_dict, inputs), None
        except (TypeError, ValueError) as exc:
            roles, error = {}, exc
        return self._evaluate({role: (role, x) for role, x in roles.items()}, grad, error,
                              block, block1)
