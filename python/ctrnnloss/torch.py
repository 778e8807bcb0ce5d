"""
ctrnnloss.torch - the SPEC's criteria as torch.nn.Module losses, computed by
libctrnnloss over MPI: each rank passes its slice of the batch and gets the
GLOBAL loss; backward gives d(global loss)/d(this rank's tensors).

    from ctrnnloss.torch import RNNLoss
    criterion = RNNLoss(lambda_fr=1e-3, lambda_fr_sd=1e-2)     # comm=MPI.COMM_WORLD
    loss = criterion(out, target, states=rates)                 # the global loss
    loss.backward()

Data parallelism: a parameter's gradient that flows back through this rank's
rates or outputs is this rank's share of the global gradient; SUM it over the
ranks (allreduce).  The gradient of a weight matrix passed to the criterion
itself (w_in, w_hid, w_out of RNNLoss, the HebbianLoss weights) is already the
global one, the same on every rank: add it once, do not sum it.  See
python/examples/train_ctrnn.py.

Inputs are float32 or float64 CPU tensors, read in place (no copy): batched
ones (B, T, N) (or (T, B, N) with batch_first=False) with unit stride along
the last dimension (any batch and time strides), matrices with contiguous
rows.  Gradients are computed in forward, only for the tensors that require
one, into new zeroed tensors; backward returns them (scaled by the incoming
gradient unless it is exactly 1, so they stay bitwise the library's).
"""
import torch
from torch.autograd.function import once_differentiable

from . import _core, _lib
from ._core import (Error, InvalidArgumentError, DomainError, NonFiniteError,
                    MPIError, OutOfMemoryError, FileError)

__all__ = list(_core.CRITERIA) + ["CompositeLoss", "Error", "InvalidArgumentError",
                                  "DomainError", "NonFiniteError", "MPIError",
                                  "OutOfMemoryError", "FileError"]

_DTYPES = {torch.float32: _lib.FLOAT32, torch.float64: _lib.FLOAT64}
# The role whose dtype the returned loss takes, first found.
_RESULT_ROLES = ("states", "pred", "states1", "label", "w_hebb", "w_in", "w_hid", "w_out")


def _describe(role, x, batch_first):
    """x as the library's crl_array / crl_matrix, or a _core.Problem."""
    if not isinstance(x, torch.Tensor):
        return _core.Problem("a %s, not a torch.Tensor" % type(x).__name__)
    if x.device.type != "cpu":
        return _core.Problem("a tensor on device '%s'; ctrnnloss reads CPU memory "
                             "(move it with .cpu())" % x.device)
    if x.layout != torch.strided:
        return _core.Problem("a %s tensor; ctrnnloss takes dense tensors" % x.layout)
    if x.dtype not in _DTYPES:
        return _core.Problem("a %s tensor; ctrnnloss takes float32 or float64" % x.dtype)
    return _core.describe(role, _DTYPES[x.dtype], x.data_ptr(), tuple(x.shape), x.stride(),
                          batch_first)


class _Evaluation:
    """One call of a criterion: its inputs by role and which gradients it wants."""

    def __init__(self, loss, roles, want, batch_first, dtype):
        self.loss, self.roles, self.want = loss, roles, want
        self.batch_first, self.dtype = batch_first, dtype
        self.total, self.values = None, None

    def run(self, tensors):
        """Collective.  Evaluates; returns the gradient buffers (None where not wanted)."""
        inputs, grads, buffers = {}, {}, []
        for role, x, want in zip(self.roles, tensors, self.want):
            inputs[role] = _describe(role, x, self.batch_first)
            buffer = None
            if want and not isinstance(inputs[role], _core.Problem):
                buffer = torch.zeros(x.shape, dtype=x.dtype)
                grads[role] = _describe(role, buffer, self.batch_first)
            buffers.append(buffer)
        self.total, self.values = self.loss.evaluate(inputs, grads)
        return buffers


class _LossFunction(torch.autograd.Function):
    """The library's loss as an autograd function of the input tensors."""

    @staticmethod
    def forward(ctx, evaluation, *tensors):
        ctx.gradients = evaluation.run(tensors)
        return torch.tensor(evaluation.total, dtype=evaluation.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        if bool(grad_output == 1):
            return (None,) + tuple(ctx.gradients)
        return (None,) + tuple(None if g is None else g * grad_output.to(g.dtype)
                               for g in ctx.gradients)


class _Module(torch.nn.Module):
    """What every criterion shares: a Loss and the evaluation of it.

    After each call, .values holds the library's values (exact doubles) by
    name, e.g. {'rnn': ..., 'rnn.mse': ..., 'rnn.fr': ...}, and .total the
    total as a double."""

    def __init__(self, terms, comm, batch_first):
        super().__init__()
        self.batch_first = batch_first
        self.loss = _core.Loss(terms, comm)
        self.values, self.total = {}, None

    def _evaluate(self, inputs):
        """Collective.  The total as a 0-d tensor (differentiable where inputs
        require gradients) and the values {name: float or ndarray}."""
        roles = [r for r in _lib.ROLES if r in inputs]
        tensors = [inputs[r] for r in roles]
        dtype = next((inputs[r].dtype for r in _RESULT_ROLES if r in inputs
                      and isinstance(inputs[r], torch.Tensor) and inputs[r].dtype in _DTYPES),
                     torch.float64)
        grad_on = torch.is_grad_enabled() and not self.loss.forward_only
        want = [grad_on and isinstance(x, torch.Tensor) and x.requires_grad for x in tensors]
        evaluation = _Evaluation(self.loss, roles, want, self.batch_first, dtype)
        if any(want):
            total = _LossFunction.apply(evaluation, *tensors)
        else:
            evaluation.run(tensors)
            total = torch.tensor(evaluation.total, dtype=dtype)
        self.values, self.total = evaluation.values, evaluation.total
        return total, dtype


class _Criterion(_Module):
    """One SPEC criterion, a loss of one term (named after its type, lambda
    1): Criterion(comm=None, batch_first=True, **parameters), called with its
    inputs, returns the global loss as a 0-d tensor (for PopulationKL with
    reduction='none', the pair (divergences, regularizer))."""
    term_type = None
    arguments = ()   # (argument name, role), in call order

    def __init__(self, *, comm=None, batch_first=True, **params):
        super().__init__([(self.term_type, self.term_type, 1.0, params)], comm, batch_first)
        self.params = params

    def forward(self, *args, **kwargs):
        bound = _core.bind_arguments(type(self).__name__, self.arguments, args, kwargs)
        total = self._evaluate({role: bound[a] for a, role in self.arguments if a in bound})[0]
        if not self.loss.forward_only:
            return total
        name = self.term_type
        return (torch.tensor(self.values[name], dtype=total.dtype),
                torch.tensor(self.values[name + ".reg"], dtype=total.dtype))

    def extra_repr(self):
        return ", ".join("%s=%r" % kv for kv in self.params.items())


# RNNLoss, FiringRateLoss, FiringRateDistLoss, StatePredictionLoss,
# HebbianLoss, EntropyLoss, PopulationKL, MSELoss.
globals().update(_core.criterion_classes(_Criterion, __name__))


class CompositeLoss(_Module):
    """SPEC CompositeLoss with nn4n's configuration:

        CompositeLoss({'fr': {'type': 'fr', 'params': {'metric': 'l2'}, 'lambda': 0.1},
                       'mse': {'type': 'mse', 'lambda': 1.0}})

    Types: rnn, fr, fr_dist, state_pred, hebbian, entropy, population_kl, mse.
    forward(loss_input_dict=None, **inputs) takes the inputs by role (states,
    states1, pred, label, w_in, w_hid, w_out, w_hebb) and/or nn4n's
    {name: {'states': ..., 'input': ..., 'target': ..., 'weights': ...}};
    all terms are evaluated together (one reduction) on one set of inputs.
    Returns (total, {name: weighted value}), the values not differentiable."""

    def __init__(self, loss_cfg, *, comm=None, batch_first=True):
        super().__init__(_core.composite_terms(loss_cfg), comm, batch_first)

    def forward(self, loss_input_dict=None, **inputs):
        total, dtype = self._evaluate(_core.composite_inputs(loss_input_dict, inputs))
        return total, {t.name: torch.tensor(self.values[t.name], dtype=dtype)
                       for t in self.loss.terms}
