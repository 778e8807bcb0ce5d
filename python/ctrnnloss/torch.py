"""
ctrnnloss.torch - the criteria of docs/losses.md as torch.nn.Module losses, computed by
libctrnnloss over MPI: each rank passes its slice of the batch and gets the
GLOBAL loss; backward gives d(global loss)/d(this rank's tensors).

    from ctrnnloss.torch import RNNLoss
    criterion = RNNLoss(lambda_fr=1e-3, lambda_fr_sd=1e-2)     # comm=MPI.COMM_WORLD
    loss, components = criterion(out, target, states=rates)    # the global loss
    loss.backward()

The criteria take nn4n's call forms: positional parameters in nn4n's order
(FiringRateLoss('l1'), PopulationKL(False, 1e-3, 'sum')), the argument names
of nn4n's code and of its documentation (states or state, states_0 or
state_0), RNNLoss(model, **lambdas) reading the model's weights at each call.

Data parallelism: a parameter's gradient that flows back through this rank's
rates or outputs is this rank's share of the global gradient; SUM it over the
ranks (allreduce).  The gradient of a weight matrix passed to the criterion
itself (w_in, w_hid, w_out of RNNLoss, the HebbianLoss weights) is already the
global one, the same on every rank: add it once, do not sum it.  Under
torch's DistributedDataParallel, which AVERAGES gradients, build the
criterion with ddp=True: the rank shares are then multiplied by the number
of ranks and the weight gradients left as they are, so that DDP's average is
the exact global gradient.  See python/examples/train_ctrnn.py.

Inputs are float32 or float64 CPU tensors, read in place (no copy): batched
ones (B, T, N) (or (T, B, N) with batch_first=False) with unit stride along
the last dimension (any batch and time strides), matrices with contiguous
rows.  A call runs the library's forward pass and its reduction (values
only); the backward pass runs in autograd's backward, only for the inputs
that need a gradient, with the incoming gradient folded in (scaled as each
element is stored), written into buffers that are reused from step to step
once nothing holds them any more.  Double backward (create_graph=True) is
not supported.

Time sharding: a rank may hold a block of the (batch, time) plane instead of
whole batch elements.  Pass block=ctrnnloss.Block(B, b0, T, t0) with the
call: this rank's batched tensors (B_local, T_local, .) are global elements
b0 .. b0 + B_local - 1 and global steps t0 .. t0 + T_local - 1 of a (B, T, .)
input.  Every rank passes a block (or none) with the same B and T, the
blocks tile the plane, and time boundaries lie at multiples of
ctrnnloss.TIME_UNIT (512) or at T.  The loss is bitwise that of the whole
input; backward gives d(global loss)/d(this rank's block):

    s = ctrnnloss.time_slice(T, comm.size, comm.rank)   # unit-aligned steps
    loss = criterion(rates[:, s], block=ctrnnloss.Block(B, 0, T, s.start))
"""
import ctypes
import math
import mmap
import sys

import numpy as np
import torch

from . import _core, _lib
from ._core import (Error, InvalidArgumentError, DomainError, NonFiniteError,
                    MPIError, OutOfMemoryError, FileError, Block, TIME_UNIT, time_slice)

__all__ = list(_core.CRITERIA) + ["CompositeLoss", "Error", "InvalidArgumentError",
                                  "DomainError", "NonFiniteError", "MPIError",
                                  "OutOfMemoryError", "FileError", "Block", "TIME_UNIT",
                                  "time_slice"]

_DTYPES = {torch.float32: _lib.FLOAT32, torch.float64: _lib.FLOAT64}
# What a call uses on the fast path, looked up once.
lib_accumulate, lib_reduce = _lib.lib.crl_loss_accumulate, _lib.lib.crl_loss_reduce
lib_total, lib_value = _lib.lib.crl_loss_total, _lib.lib.crl_loss_value
_set_block = _core.set_block
# Where a tensor lives, for a call's signature (older torch: its device).
_WHERE = "is_cpu" if hasattr(torch.Tensor, "is_cpu") else "device"
_STRIDED = torch.strided
_tensors_copy, _grad_enabled = _lib.Tensors.from_buffer_copy, torch.is_grad_enabled
_scalar_tensor = torch.scalar_tensor
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
# The role whose dtype the returned loss takes, first found.
_RESULT_ROLES = ("states", "pred", "states1", "label", "w_hebb", "w_in", "w_hid", "w_out",
                 "mask")


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


# ------------------------------------------------------ gradient buffers ---

_HUGE = 2 << 20   # buffers from this size on are asked to use huge pages


class _BufferPool:
    """Gradient buffers reused across calls.  Each buffer's memory is a NumPy
    array of the gradient's shape the pool keeps (per dtype and shape, so
    that handing one out is a dictionary look-up and torch.from_numpy, no
    view); the tensors handed out wrap it (torch.from_numpy),
    and their storage holds a reference to it, so the array's reference count
    says whether any tensor (a retained .grad, a view, anything autograd
    keeps) still uses the memory: only a buffer no tensor holds is handed out
    again.  New buffers of 2 MiB or more are anonymous mappings advised to use
    transparent huge pages (fewer page faults when they are first touched)."""

    def __init__(self, keep=4):
        self.keep = keep
        self.free = {}   # (dtype, shape): arrays of that shape

    def arrays(self, shape, dtype):
        """The list of the arrays of a shape and dtype (the pool's own)."""
        arrays = self.free.get((dtype, shape))
        if arrays is None:
            arrays = self.free[(dtype, tuple(shape))] = []
        return arrays

    def take(self, shape, dtype, _refs=sys.getrefcount, _wrap=torch.from_numpy):
        """A tensor of shape and dtype over a buffer nothing else holds."""
        arrays = self.arrays(shape, dtype)
        for array in arrays:
            # References: the list, this loop's variable, getrefcount's argument.
            if _refs(array) == 3:
                return _wrap(array)
        array = self._fresh(tuple(shape), _NUMPY[dtype])
        if len(arrays) < self.keep:
            arrays.append(array)
        return _wrap(array)

    @staticmethod
    def _fresh(shape, dtype):
        count = math.prod(shape)
        size = count * np.dtype(dtype).itemsize
        if size < _HUGE:
            return np.empty(shape, dtype=dtype)
        memory = mmap.mmap(-1, size)
        if hasattr(memory, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
            memory.madvise(mmap.MADV_HUGEPAGE)
        return np.frombuffer(memory, dtype=dtype, count=count).reshape(shape)


_pool = _BufferPool()


# ------------------------------------------------------------- autograd ---


class _Call:
    """One call of a criterion: its inputs, the library's reduced evaluation,
    and how the results map to autograd outputs."""

    def __init__(self, module, roles, tensors, evaluation, parts):
        self.module, self.roles, self.tensors = module, roles, tensors
        self.evaluation, self.parts = evaluation, parts
        self.total, self.values = evaluation.total, evaluation.values
        self.dtype = module.result_dtype

    def backward_from(self, needs, grad_outputs):
        """The input gradients from the outputs' incoming gradients."""
        if len(grad_outputs) == 1:   # the total alone
            return self.backward(needs, float(grad_outputs[0]))
        return self.backward(needs, *self.scale(grad_outputs))

    def scale(self, grad_outputs):
        """(scale, term scales) of the backward pass: the incoming gradient
        of the total plus that of a part, one factor when every part's
        agrees; else, where the parts are whole terms' values (CompositeLoss),
        each term's own factor."""
        total = float(grad_outputs[0])
        factors = [total + float(g) for g in grad_outputs[1:]]
        if len(set(factors)) <= 1:
            return (factors[0] if factors else total), None
        terms = {t.name for t in self.module.loss.terms}
        if not all(name in terms for name in self.parts):
            raise RuntimeError(
                "ctrnnloss: the components of one term were back-propagated with different "
                "weights (%s); the library computes the gradient of each term's weighted "
                "value only: back-propagate the total (or the sum of the components), or "
                "call a criterion per component"
                % ", ".join(sorted(map(repr, set(factors)))))
        return 1.0, dict(zip(self.parts, factors))

    def backward(self, needs, scale, term_scales=None):
        """The gradients of the inputs that need one (None for the others)."""
        out, tgrad = self._buffers(needs)
        batched = self.module.ddp_factor
        self.evaluation.backward(tgrad, scale * batched, term_scales)
        return _unbatch(out, self.roles, batched)

    def _buffers(self, needs):
        """(gradients, their crl_tensors) of the general path: pool buffers
        (or those announced at accumulate) of the inputs that need one."""
        module, batch_first = self.module, self.module.batch_first
        announced = self.evaluation.announced
        out = []
        for role, x, need in zip(self.roles, self.tensors, needs):
            g = None
            if (need and role not in _core.NO_GRADIENT) or role in announced:
                g = announced.get(role)
                if g is None:
                    g = _pool.take(tuple(x.shape), x.dtype)
            out.append(g)
        # The crl_tensors of these buffers (contiguous, of the inputs'
        # shapes): built once per signature, only the pointers set.
        present = [(role, g) for role, g in zip(self.roles, out) if g is not None]
        signature = ("grads", batch_first) + tuple((role, g.dtype, tuple(g.shape))
                                                   for role, g in present)
        tgrad = module.loss.tensors(signature, lambda: module.loss.inputs(
            {role: _describe(role, g, batch_first) for role, g in present})[0])
        for role, g in present:
            getattr(tgrad, role).data = g.data_ptr() or None
        return [g if need else None for g, need in zip(out, needs)], tgrad


def _empty_chunks(inputs, batch_first):
    """inputs {role: value} with each batched tensor without time steps
    (x[:, s] of a block's empty s) as the library's empty chunk, no elements
    of one step: a view of it (autograd still reaches x, whose gradient is
    as empty); inputs itself when there is none."""
    out = inputs
    for role, x in inputs.items():
        if role in _lib.BATCHED_ROLES and isinstance(x, torch.Tensor) and x.dim() == 3:
            if x.shape[1 if batch_first else 0] == 0:
                if out is inputs:
                    out = dict(inputs)
                out[role] = x.as_strided((0, 1, x.shape[2]) if batch_first
                                         else (1, 0, x.shape[2]), (1, 1, 1))
    return out


def _unbatch(out, roles, batched):
    """Under DDP (batched: the number of ranks) the weight gradients, global
    already, are not multiplied: DDP's average of equal values is the value."""
    if batched == 1:
        return out
    return [g / batched if g is not None and role not in _lib.BATCHED_ROLES else g
            for role, g in zip(roles, out)]


class _PlanCall(_core.Evaluation):
    """A call on the short path (its signature has a _Plan): the reduced
    evaluation and what _Call keeps of a call, in one object."""

    problems, backward_done = {}, False   # class defaults of Evaluation's fields

    def __init__(self, module, plan, handle, tin, tensors, total, values, parts):
        # Evaluation's fields (its __init__ is not called: one object less).
        self.handle, self.tin, self.module, self.plan = handle, tin, module, plan
        self.tensors, self.total, self.values, self.parts = tensors, total, values, parts
        self.dtype = plan.dtype

    loss = property(lambda self: self.plan.loss)
    roles = property(lambda self: self.plan.roles)
    scale = _Call.scale

    def backward_from(self, needs, grad_outputs):
        """The input gradients from the outputs' incoming gradients."""
        if len(grad_outputs) == 1:   # the total alone
            scale, term_scales = float(grad_outputs[0]), None
        else:
            scale, term_scales = self.scale(grad_outputs)
        out, tgrad = self.plan.buffers(needs)
        batched = self.module.ddp_factor
        self.backward(tgrad, scale * batched, term_scales)
        return out if batched == 1 else _unbatch(out, self.plan.roles, batched)


def _signature(batch_first, tensors, roles=None, _tensor=torch.Tensor):
    """The key of a call's signature: batch_first, then per tensor (with its
    role, when roles are given) dtype, device, shape and strides; None when
    one is not a strided tensor (no stride(): the general path)."""
    key = [batch_first]
    for k, x in enumerate(tensors):
        if not isinstance(x, _tensor) or x.layout is not _STRIDED:
            return None
        if roles is not None:
            key.append(roles[k])
        key += (x.dtype, getattr(x, _WHERE), x.shape, x.stride())
    return tuple(key)


def _memo(cache, key, make):
    """cache[key], made by make() the first time (32 kept at most)."""
    value = cache.get(key, False)
    if value is False:
        if len(cache) >= 32:
            cache.clear()
        value = cache[key] = make()
    return value


class _Plan:
    """What a call signature (roles in call order, dtypes, devices, shapes,
    strides) fixes, built once: the crl_tensors of the inputs, one per
    crl_loss handle, with their fields at hand (only the data pointers set
    per call, no copy), the result dtype,
    the layout of the library's values, and per set of gradients asked for
    the crl_tensors of the gradient buffers."""

    def __init__(self, loss, roles, tensors, tin, dtype):
        self.loss, self.roles, self.tin, self.dtype = loss, roles, tin, dtype
        self.inputs = {}   # handle: (its crl_tensors, their fields by role, a byref)
        self.gradable = tuple(role not in _core.NO_GRADIENT for role in roles)
        self.shapes = tuple((tuple(x.shape), x.dtype) for x in tensors)
        self.batch_first = None
        self.stepless = False   # a batched tensor without time steps (_empty_chunks)
        self.scalars = None   # [(index, name)] of the values, when all are numbers
        self.grads = {}       # needs: (crl_tensors, [(input index, its field)])

    def inputs_for(self, handle):
        """The crl_tensors of the inputs for a handle, a copy of the plan's."""
        tin = _tensors_copy(self.tin)
        mine = self.inputs[handle] = (tin, tuple(getattr(tin, r) for r in self.roles),
                                      ctypes.byref(tin))
        return mine

    def values(self, ptr):
        """{name: value} of a reduced evaluation, as Loss._values gives it.
        Which values a loss reports (their names, order and lengths) follows
        from its terms, their parameters and the inputs' widths, all fixed by
        the signature: read once, then only the numbers are."""
        scalars = self.scalars
        if scalars is None:
            values = self.loss._values(ptr)
            if all(isinstance(v, float) for v in values.values()):
                self.scalars = tuple(enumerate(values))
            return values
        values = {}   # a loop, not a comprehension: no function object per call
        for k, name in scalars:
            values[name] = lib_value(ptr, k, None)[0]
        return values

    def buffers(self, needs, _refs=sys.getrefcount, _wrap=torch.from_numpy):
        """(gradients, crl_tensors): pool buffers for the inputs that need a
        gradient (None for the others), the crl_tensors pointing at them."""
        if needs.__class__ is not tuple:
            needs = tuple(needs)
        entry = self.grads.get(needs)
        if entry is None:
            entry = self.grads[needs] = self._grad_tensors(needs)
        tgrad, fields = entry
        out = [None] * len(needs)
        for k, field, arrays, shape, dtype in fields:
            for array in arrays:
                # As _BufferPool.take: free when only the pool, this loop and
                # getrefcount hold it.
                if _refs(array) == 3:
                    g = _wrap(array)
                    break
            else:
                g = _pool.take(shape, dtype)
            out[k] = g
            field.data = g.data_ptr()
        return out, tgrad

    def _grad_tensors(self, needs):
        """The crl_tensors of the gradient buffers of the inputs needs says
        (contiguous, of the inputs' shapes) and, per buffer, (input index,
        its field, the pool's arrays of that shape, shape, dtype)."""
        tgrad, fields = _lib.Tensors(), []
        for k, (role, need, able) in enumerate(zip(self.roles, needs, self.gradable)):
            if need and able:
                shape, dtype = self.shapes[k]
                strides = tuple(math.prod(shape[j + 1:]) for j in range(len(shape)))
                setattr(tgrad, role, _core.describe(role, _DTYPES[dtype], None, shape, strides,
                                                    self.batch_first))
                fields.append((k, getattr(tgrad, role), _pool.arrays(shape, dtype), shape,
                               dtype))
        return tgrad, fields


class _GroupCall:
    """A call of a CompositeLoss whose terms read different tensors in one
    role: one _Call per set of inputs (a loss of its terms), reduced
    together; the autograd function's inputs are the distinct tensors."""

    def __init__(self, calls, tensors, slots, parts, total, values):
        self.calls, self.tensors, self.slots, self.parts = calls, tensors, slots, parts
        self.module, self.total, self.values = calls[0].module, total, values
        self.dtype = self.module.result_dtype

    def backward_from(self, needs, grad_outputs):
        """Each call's gradients from the incoming gradients of its own
        parts (a call's parts are whole terms, so _Call.scale's rule gives
        each term its factor), summed per distinct tensor."""
        incoming = {name: float(g) for name, g in zip(self.parts, grad_outputs[1:])}
        out = [None] * len(self.tensors)
        for call, slots in zip(self.calls, self.slots):
            grads = call.backward_from(
                [needs[k] for k in slots],
                (grad_outputs[0],) + tuple(incoming.get(n, 0.0) for n in call.parts))
            for k, g in zip(slots, grads):
                if g is not None:
                    out[k] = g if out[k] is None else out[k] + g
        return out


class _LossFunction(torch.autograd.Function):
    """The library's loss (and its parts) as an autograd function of the
    input tensors; the evaluation is already reduced."""

    @staticmethod
    def forward(ctx, call, *tensors):
        ctx.call = call
        ctx.save_for_backward(*tensors)   # refuses inputs changed in place since
        dtype = call.dtype
        out = (_scalar_tensor(call.total, dtype=dtype),)
        if not call.parts:
            return out
        return out + tuple(_scalar_tensor(call.values[name], dtype=dtype)
                           for name in call.parts)

    @staticmethod
    def backward(ctx, *grad_outputs):
        if _grad_enabled():
            raise RuntimeError("ctrnnloss: double backward (create_graph=True) is not "
                               "supported: the library computes first derivatives only")
        ctx.saved_tensors   # noqa: B018 - the version check of the inputs
        call = ctx.call
        ctx.call = None     # the evaluation's crl_loss is free again
        return (None,) + tuple(call.backward_from(ctx.needs_input_grad[1:], grad_outputs))


class _Module(torch.nn.Module):
    """What every criterion shares: a Loss and the evaluation of it.

    After each call, .values holds the library's values (exact doubles) by
    name, e.g. {'rnn': ..., 'rnn.mse': ..., 'rnn.fr': ...}, and .total the
    total as a double."""

    def __init__(self, terms, comm, batch_first, ddp=False):
        """terms: a function returning the terms (what it raises is raised on
        every rank)."""
        super().__init__()
        self.batch_first = batch_first
        self.loss = _core.Loss(terms, comm)
        self.ddp_factor = float(self.loss.context.comm.Get_size()) if ddp else 1.0
        self.values, self.total, self.result_dtype = {}, None, torch.float64
        self._plans = {}   # call signature: _Plan, or None for the general path

    def _signature(self, roles, tensors):
        return (self.batch_first,) + tuple(
            (role, x.dtype, tuple(x.shape), x.stride()) for role, x in zip(roles, tensors))

    def _inputs(self, roles, tensors, loss=None):
        """(crl_tensors, problems) of the inputs; the structure is built once
        per signature (roles, dtypes, shapes, strides) and only its data
        pointers are set on later calls."""
        loss = loss or self.loss
        if all(isinstance(x, torch.Tensor) and x.dtype in _DTYPES and x.device.type == "cpu"
               and x.layout == torch.strided for x in tensors):
            def make():
                tin, problems = loss.inputs(
                    {r: _describe(r, x, self.batch_first) for r, x in zip(roles, tensors)})
                return tin if not problems else None
            tin = loss.tensors(self._signature(roles, tensors), make)
            if tin is not None:
                for role, x in zip(roles, tensors):
                    getattr(tin, role).data = x.data_ptr() or None
                return tin, {}
        return loss.inputs({r: _describe(r, x, self.batch_first)
                            for r, x in zip(roles, tensors)})

    def _evaluate(self, inputs, parts=(), call_error=None, block=None, block1=None):
        """Collective.  (total, parts...) as 0-d tensors, differentiable where
        inputs require gradients; parts are value names; block, block1: the
        call's block= and block1= (Blocks), or None.  A call whose signature
        has a _Plan takes the short path; the others (an input the library
        cannot read, a gradient that must be known at accumulate, a loss
        without gradient) the general one."""
        if block is not None or block1 is not None:
            try:
                block = _core.blocks_of(block, block1)
            except (TypeError, ValueError) as exc:
                block, call_error = None, call_error or exc
            inputs = _empty_chunks(inputs, self.batch_first)
        if call_error is None:
            plan = self._plan_of(inputs)
            if plan is not None:
                return self._evaluate_plan(plan, tuple(inputs.values()), parts, block)
        return self._evaluate_groups([(self.loss, inputs)], parts, call_error, block)

    def _plan_of(self, inputs):
        """The _Plan of the signature of inputs {role: value} (roles in call
        order, dtypes, devices, shapes, strides of strided tensors), made the
        first time; None for the general path."""
        key = _signature(self.batch_first, tuple(inputs.values()), tuple(inputs))
        if key is None:
            return None
        return _memo(self._plans, key, lambda: self._make_plan(inputs))

    def _make_plan(self, inputs):
        loss = self.loss
        if loss.forward_only or "w_hebb" in inputs:
            return None
        roles = tuple(inputs)
        tensors = tuple(inputs.values())
        tin, problems = loss.inputs({r: _describe(r, x, self.batch_first)
                                     for r, x in inputs.items()})
        if problems:
            return None
        dtype = next((inputs[r].dtype for r in _RESULT_ROLES if r in inputs), torch.float64)
        plan = _Plan(loss, roles, tensors, tin, dtype)
        plan.batch_first = self.batch_first
        plan.stepless = _empty_chunks(inputs, self.batch_first) is not inputs
        return plan

    def _evaluate_plan(self, plan, tensors, parts, block=None):
        """Collective.  _evaluate of a call whose signature has a plan: one
        loss, inputs the library reads as they are (tensors: in the order of
        plan.roles); block: their crl_block, or None."""
        loss = self.loss
        for handle in loss.handles:
            if not handle.busy:
                break
        else:
            handle = loss._free_handle()
        # The crl_tensors of this handle's evaluations of the plan: no other
        # call writes them while the handle is busy.
        tin, fields, ref = plan.inputs.get(handle) or plan.inputs_for(handle)
        for field, x in zip(fields, tensors):
            field.data = x.data_ptr()
        keep = False
        if _grad_enabled():
            for x, able in zip(tensors, plan.gradable):
                if able and x.requires_grad:
                    keep = True
                    break
        ptr = handle.ptr
        if block is not None or handle.blocked:
            if _set_block(handle, block, loss.context):
                lib_accumulate(ptr, ref, None)
        else:
            lib_accumulate(ptr, ref, None)
        status = lib_reduce(ptr)
        if status:   # not CRL_OK
            loss._fail(status, {})
        total = lib_total(ptr)
        values = plan.values(ptr)
        attributes = self.__dict__   # plain attributes, without Module.__setattr__
        attributes["result_dtype"] = dtype = plan.dtype
        attributes["values"], attributes["total"] = values, total
        if not keep:
            return (_scalar_tensor(total, dtype=dtype),) + tuple(
                torch.tensor(values[name], dtype=dtype) for name in parts)
        handle.busy = True
        call = _PlanCall(self, plan, handle, tin, tensors, total, values, tuple(parts))
        if block is not None:
            call.block = block
        return _LossFunction.apply(call, *tensors)

    def _evaluate_groups(self, groups, parts=(), call_error=None, block=None):
        """Collective.  _evaluate of [(loss, inputs)], one loss per set of
        inputs, with one reduction for all; parts are the values by name,
        the total is the sum of the terms' values in order (bitwise the
        total of one loss of every term); block: the crl_block of every
        set's batched inputs, or None."""
        if block is not None:
            groups = [(loss, _empty_chunks(inputs, self.batch_first)) for loss, inputs in groups]
        grad_on = torch.is_grad_enabled() and not any(g[0].forward_only for g in groups)
        dtype = torch.float64
        batches, keep = [], False
        for loss, inputs in groups:
            roles = [r for r in _lib.ROLES if r in inputs]
            tensors = [inputs[r] for r in roles]
            dtype = next((inputs[r].dtype for r in _RESULT_ROLES if r in inputs
                          and isinstance(inputs[r], torch.Tensor)
                          and inputs[r].dtype in _DTYPES), dtype)
            want = [grad_on and isinstance(x, torch.Tensor) and x.requires_grad
                    and r not in _core.NO_GRADIENT for r, x in zip(roles, tensors)]
            keep = keep or any(want)
            tin, problems = self._inputs(roles, tensors, loss)
            if call_error is not None:
                problems["call"] = call_error
            announced, announce = {}, None
            if "w_hebb" in roles and want[roles.index("w_hebb")] and not problems:
                # A gradient that is a sum over the ranks is known to the
                # reduction.
                x = inputs["w_hebb"]
                announced["w_hebb"] = torch.empty(x.shape, dtype=x.dtype)
                announce = _lib.Tensors()
                announce.w_hebb = _describe("w_hebb", announced["w_hebb"], self.batch_first)
            batches.append((loss, roles, tensors, tin, problems, announced, announce))
        attributes = self.__dict__   # plain attributes, without Module.__setattr__
        attributes["result_dtype"] = dtype
        results = _core.forward_group([(b[0], b[3], b[4], b[6]) for b in batches], keep,
                                      block)
        values = {}
        for _, v, _ in results:
            values.update(v)
        if len(results) == 1:
            total = results[0][0]
        else:
            # In the terms' order (parts: every term's name), as one loss adds.
            vector = set().union(*(b[0].vector_names for b in batches))
            total = 0.0
            for name in parts:
                if name not in vector:
                    total += values[name]
        attributes["values"], attributes["total"] = values, total
        if results[0][2] is None:
            return (torch.scalar_tensor(total, dtype=dtype),) + tuple(
                torch.tensor(values[name], dtype=dtype) for name in parts)
        calls = []
        for (loss, roles, tensors, _, _, announced, _), (_, _, evaluation) in zip(batches,
                                                                                   results):
            evaluation.announced = announced
            names = tuple(t.name for t in loss.terms if t.name in parts) \
                if len(batches) > 1 else tuple(parts)
            calls.append(_Call(self, roles, tensors, evaluation, names))
        if len(calls) == 1:
            return _LossFunction.apply(calls[0], *calls[0].tensors)
        distinct, slots = [], []
        for call in calls:
            mine = []
            for x in call.tensors:
                k = next((j for j, y in enumerate(distinct) if y is x), None)
                if k is None:
                    k = len(distinct)
                    distinct.append(x)
                mine.append(k)
            slots.append(mine)
        group = _GroupCall(calls, distinct, slots, tuple(parts), total, values)
        return _LossFunction.apply(group, *distinct)


def _bound(module, args, kwargs):
    """The roles of a call's arguments, or the binding error (raised by the
    evaluation on every rank, so that no rank is left waiting).  Where each
    role's value comes from is worked out once per call form (the number of
    positional arguments, the keywords in order)."""
    form = (len(args),) + tuple(kwargs) if kwargs else len(args)
    forms = module._forms
    sources = forms.get(form)
    if sources is None:
        try:
            sources = _core.bind_arguments(type(module).__name__, module.arguments,
                                           tuple(range(len(args))), {k: k for k in kwargs})
        except TypeError as exc:
            return {}, exc
        if len(forms) >= 32:
            forms.clear()
        sources = forms[form] = tuple(sources.items())
    bound = {}
    for role, source in sources:
        value = args[source] if source.__class__ is int else kwargs[source]
        if value is not None:
            bound[role] = value
    return bound, None


class _Criterion(_Module):
    """One criterion, a loss of one term (named after its type, lambda
    1): Criterion(*params, comm=None, batch_first=True, ddp=False,
    **params), called with its inputs (and block=, see ctrnnloss.Block),
    returns the global loss as a 0-d tensor."""
    term_type = None
    arguments = ()    # (argument name, role, aliases), in call order
    positional = ()   # the constructor's positional parameters (nn4n's order)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        spec = _core.CRITERIA[cls.__name__]
        cls.term_type, cls.arguments, cls.positional = spec.type, spec.arguments, spec.positional
        cls.__doc__ = _core.inspect.cleandoc(spec.doc + _core.BLOCK_NOTE)

    def __init__(self, *args, comm=None, batch_first=True, ddp=False, **params):
        def terms():
            self.params = _core.bind_params(type(self).__name__, self.positional, args, params)
            return [(self.term_type, self.term_type, 1.0, self.params)]
        super().__init__(terms, comm, batch_first, ddp)
        self._forms = {}   # call form: ((role, argument index or keyword), ...)
        self._positional = {}   # signature of positional tensors: _Plan or None

    def forward(self, *args, block=None, block1=None, **kwargs):
        if not kwargs and block1 is None:
            # Tensors passed by position (the usual call): the plan found
            # from the arguments themselves, without binding them to roles.
            key = _signature(self.batch_first, args)
            if key is not None:
                plan = _memo(self._positional, key, lambda: self._positional_plan(args))
                if plan is not None:   # its roles are the arguments' order
                    if block is None:
                        return self._evaluate_plan(plan, args, ())[0]
                    try:
                        made = _core.block_of(block)
                    except (TypeError, ValueError):
                        made = None   # raised on every rank by the general path
                    if made is not None and not plan.stepless:
                        return self._evaluate_plan(plan, args, (), made)[0]
        bound, error = _bound(self, args, kwargs)
        return self._evaluate(bound, call_error=error, block=block, block1=block1)[0]

    def _positional_plan(self, args):
        """The plan of positional tensors, through the roles they bind to."""
        bound, error = _bound(self, args, {})
        return None if error else self._plan_of(bound)

    def extra_repr(self):
        return ", ".join("%s=%r" % kv for kv in self.params.items())


# nn4n's model attributes holding the three weight matrices, by role.
_MODEL_WEIGHTS = {"w_in": ("recurrent_layer", "input_layer", "weight"),
                  "w_hid": ("recurrent_layer", "hidden_layer", "weight"),
                  "w_out": ("readout_layer", "weight")}


def _model_weights(model, bound):
    """The weights a call did not pass, read from an nn4n-style model."""
    for role, path in _MODEL_WEIGHTS.items():
        if role not in bound and model is not None:
            x = model
            for name in path:
                x = getattr(x, name)
            bound[role] = x
    return bound


class RNNLoss(_Criterion):
    _PARTS = ("mse", "in", "hid", "out", "fr", "fr_sd", "fr_cv")

    def __init__(self, model=None, *, comm=None, batch_first=True, ddp=False, **params):
        super().__init__(comm=comm, batch_first=batch_first, ddp=ddp, **params)
        # Held outside the module's children: the criterion does not own it.
        self.__dict__["model"] = model
        self.components = ("mse",) + tuple(p for p in self._PARTS[1:]
                                           if float(self.params.get("lambda_" + p, 0)) != 0)

    def forward(self, *args, block=None, block1=None, **kwargs):
        bound, error = _bound(self, args, kwargs)
        bound = _model_weights(self.model, bound) if error is None else bound
        total, *parts = self._evaluate(bound, ["rnn." + p for p in self.components], error,
                                       block, block1)
        return total, torch.stack(parts)


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
    def forward(self, *args, **kwargs):
        total = super().forward(*args, **kwargs)
        if not self.loss.forward_only:
            return total
        name = self.term_type
        self.regularizer = torch.tensor(self.values[name + ".reg"], dtype=total.dtype)
        return torch.tensor(self.values[name], dtype=total.dtype)


class MSELoss(_Criterion):
    pass


class RNNConnectivityLoss(_Criterion):
    def forward(self, model=None, **kwargs):
        if model is not None and not isinstance(model, torch.Tensor):
            return super().forward(**_model_weights(model, dict(kwargs)))
        return super().forward(*(() if model is None else (model,)), **kwargs)


class CrossEntropyLoss(_Criterion):
    pass


class CompositeLoss(_Module):
    """CompositeLoss with nn4n's configuration:

        CompositeLoss({'fr': {'type': 'fr', 'params': {'metric': 'l2'}, 'lambda': 0.1},
                       'mse': {'type': 'mse', 'lambda': 1.0}})

    forward(loss_input_dict=None, **inputs) takes nn4n's
    {name: {'states': ..., 'input': ..., 'target': ..., 'weights': ...}}
    (any argument name of the criteria, nn4n's documentation's too) and/or
    the inputs by role (states, states1, pred, label, w_in, w_hid, w_out,
    w_hebb).  All terms are evaluated in one reduction; terms given
    different tensors in one role (two 'fr' terms on two populations) are
    evaluated on their own sets of inputs, still in that one reduction (the
    same pattern of tensors to terms on every rank).  block=ctrnnloss.Block
    (and block1=) as the criteria take them: every set of inputs lies in
    that block.  Returns
    (total, {name: weighted value}), each a differentiable 0-d tensor."""

    def __init__(self, loss_cfg, *, comm=None, batch_first=True, ddp=False):
        super().__init__(lambda: _core.composite_terms(loss_cfg), comm, batch_first, ddp)
        self._group_losses = {}

    def _group_loss(self, members):
        """The loss of the terms `members` (collective when first made)."""
        loss = self._group_losses.get(members)
        if loss is None:
            loss = self._group_losses[members] = _core.Loss(
                [t for t in self.loss.terms if t.name in members], self.loss.context.comm)
        return loss

    def forward(self, loss_input_dict=None, *, block=None, block1=None, **inputs):
        names = [t.name for t in self.loss.terms]
        try:
            groups, error = _core.composite_groups(loss_input_dict, inputs, names), None
        except (TypeError, ValueError) as exc:
            groups, error = [(tuple(names), {})], exc
        if len(groups) == 1:
            total, *parts = self._evaluate(groups[0][1], names, error, block, block1)
        else:
            try:
                block = _core.blocks_of(block, block1)
            except (TypeError, ValueError) as exc:
                block, error = None, exc
            total, *parts = self._evaluate_groups(
                [(self._group_loss(members), roles) for members, roles in groups], names,
                error, block)
        return total, dict(zip(names, parts))
