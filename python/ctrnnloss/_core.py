"""
_core.py - what the NumPy and PyTorch front ends share: contexts per
communicator, the catalogue of term types, parameter text, errors, and
Loss, one crl_loss evaluated on array descriptions.

A front end turns each input into a crl_array / crl_matrix over the input's
own memory (no copy), or into a Problem when it cannot (wrong dtype, device,
layout).  A rank with a Problem refuses the evaluation (crl_loss_refuse)
instead of passing its inputs: the reduction then fails on every rank with
that rank's reason ("rank R: states is a torch.int64 tensor; ..."), so a bad
input on one rank never leaves the others blocked in the reduction.
"""
import ctypes
import inspect
import operator
from collections import namedtuple

import numpy as np
from mpi4py import MPI

from . import _lib
from ._lib import lib

# --------------------------------------------------------------- errors ---


class Error(Exception):
    """A failed library call.  Collective calls fail on every rank with the
    same status and message.

    Attributes: status (the crl_status code), library_message (the library's
    message, identical on every rank)."""

    def __init__(self, status, library_message, detail=None):
        self.status = status
        self.library_message = library_message
        text = library_message or _strerror(status)
        super().__init__(text if detail is None else "%s (%s)" % (text, detail))


class InvalidArgumentError(Error, ValueError):
    """CRL_ERR_INVALID: bad shapes, parameters, dtypes, disagreeing ranks."""


class DomainError(Error, ValueError):
    """CRL_ERR_DOMAIN: e.g. a CV with mean rate 0, a negative rate in entropy."""


class NonFiniteError(Error, ValueError):
    """CRL_ERR_NONFINITE: NaN or infinity in an input."""


class FileError(Error, OSError):
    """CRL_ERR_IO."""


class OutOfMemoryError(Error, MemoryError):
    """CRL_ERR_NOMEM."""


class MPIError(Error, RuntimeError):
    """CRL_ERR_MPI: an MPI call failed."""


for _cls in (Error, InvalidArgumentError, DomainError, NonFiniteError, FileError,
             OutOfMemoryError, MPIError):
    _cls.__module__ = "ctrnnloss"

_ERRORS = {1: InvalidArgumentError, 2: DomainError, 3: NonFiniteError, 4: FileError,
           5: OutOfMemoryError, 6: MPIError}


def _strerror(status):
    text = lib.crl_strerror(status)
    return text.decode() if text else "status %d" % status


def _error(status, message, detail=None):
    return _ERRORS.get(status, Error)(status, message, detail)


# ------------------------------------------------------------- contexts ---


class _Context:
    """A crl_context, and a private duplicate of the communicator on which the
    binding agrees on error details (only ever on the failure path)."""

    def __init__(self, comm):
        self.comm = comm.Dup()
        self.handle = ctypes.c_void_p()
        status = lib.crl_context_create(_lib.COMM_TYPE(MPI._handleof(self.comm)),
                                        ctypes.byref(self.handle))
        if status != _lib.OK:
            raise _error(status, "creating a context: %s" % _strerror(status))

    def message(self):
        return lib.crl_context_error(self.handle).decode(errors="replace")


# Contexts live as long as the process: freeing one is collective, and the
# garbage collector does not run in the same order on every rank.
_contexts = []


def context_for(comm):
    """Collective over comm the first time: the context of a communicator
    (MPI.COMM_WORLD for None), shared by every loss on a congruent one."""
    comm = MPI.COMM_WORLD if comm is None else comm
    if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise TypeError("ctrnnloss: comm must be an mpi4py intracommunicator, not %r" % (comm,))
    for ctx in _contexts:
        if MPI.Comm.Compare(ctx.comm, comm) in (MPI.IDENT, MPI.CONGRUENT):
            return ctx
    ctx = _Context(comm)
    _contexts.append(ctx)
    return ctx


# ------------------------------------------------------------ catalogue ---

ParamSpec = namedtuple("ParamSpec", "key kind default min max choices help")
ParamSpec.__doc__ = """One parameter of a term type: kind is 'real', 'int', 'bool'
or 'choice'; default is a float, int, bool or choice name."""

_KINDS = {_lib.PARAM_REAL: "real", _lib.PARAM_INT: "int", _lib.PARAM_BOOL: "bool",
          _lib.PARAM_CHOICE: "choice"}


def term_params(term_type):
    """The parameters of a term type, from the library's catalogue ([] for a
    type without parameters or an unknown one)."""
    out = []
    while True:
        p = lib.crl_term_type_param(term_type.encode(), len(out))
        if not p:
            return out
        p = p.contents
        choices = ()
        if p.kind == _lib.PARAM_CHOICE:
            while p.choices[len(choices)] is not None:
                choices += (p.choices[len(choices)].decode(),)
        default = p.default_value
        default = {_lib.PARAM_INT: int, _lib.PARAM_BOOL: bool}.get(p.kind, float)(default)
        if p.kind == _lib.PARAM_CHOICE:
            default = choices[int(p.default_value)]
        out.append(ParamSpec(p.key.decode(), _KINDS.get(p.kind, "?"), default, p.min, p.max,
                             choices, (p.help or b"").decode()))


def term_types():
    """{type: (summary, [ParamSpec, ...])} for every term type the library has."""
    out = {}
    for k in range(lib.crl_term_type_count()):
        name = lib.crl_term_type_name(k).decode()
        out[name] = (lib.crl_term_type_summary(k).decode(), term_params(name))
    return out


def _format_value(spec, key, value):
    """One parameter value as the library's text: booleans true/false, choices
    by name, numbers with repr() (which reads back exactly), integers as such."""
    kind = spec.kind if spec else None
    if isinstance(value, str):
        if "," in value or "=" in value:
            raise ValueError("ctrnnloss: parameter %s: %r may not contain ',' or '='"
                             % (key, value))
        return value
    is_bool = isinstance(value, (bool, np.bool_))
    if (is_bool and kind in ("bool", None)) or (kind == "bool" and value in (0, 1)):
        return "true" if value else "false"
    if kind == "choice" and isinstance(value, (int, np.integer)) \
            and 0 <= value < len(spec.choices):
        return spec.choices[value]
    try:
        number = float(value)
        return repr(int(number)) if kind == "int" and number.is_integer() else repr(number)
    except (TypeError, ValueError, OverflowError):
        raise TypeError("ctrnnloss: parameter %s: %r is not a number, boolean or choice name"
                        % (key, value)) from None


def format_params(term_type, params):
    """The "key=value,..." text of crl_loss_add.  Unknown keys and values are
    passed on for the library to refuse, with its message."""
    specs = {s.key: s for s in term_params(term_type)}
    return ",".join("%s=%s" % (key, _format_value(specs.get(key), key, value))
                    for key, value in params.items())


# --------------------------------------------------------------- inputs ---


class Problem:
    """An input a front end cannot hand to the library, and why."""

    def __init__(self, reason):
        self.reason = reason


def describe(role, dtype, data, shape, strides, batch_first=True):
    """The crl_array (batched roles) or crl_matrix (weights) of an array in
    memory, or a Problem.  dtype is _lib.FLOAT32 or FLOAT64, data the address
    of the first element, strides in elements.  Batched inputs are (B, T, W),
    or (T, B, W) when not batch_first, with any batch and time strides; the
    last dimension must have unit stride."""
    if role in _lib.BATCHED_ROLES:
        if len(shape) != 3:
            return Problem("a %d-D array; %s is %s" % (
                len(shape), role, "(B, T, N)" if batch_first else "(T, B, N)"))
        if batch_first:
            (batch, time, width), (sb, st, sw) = shape, strides
        else:
            (time, batch, width), (st, sb, sw) = shape, strides
        if width > 1 and sw != 1:
            return Problem("an array whose last dimension has stride %d; it must be "
                           "contiguous along its last dimension (use .contiguous())" % sw)
        # A dimension of size 1 has no meaningful stride (numpy may make it
        # anything): 0 tells the library so.
        return _lib.Array(dtype, data or None, batch, time, width,
                          sb if batch > 1 else 0, st if time > 1 else 0)
    if len(shape) != 2:
        return Problem("a %d-D array; %s is a 2-D matrix" % (len(shape), role))
    (rows, cols), (sr, sc) = shape, strides
    if cols > 1 and sc != 1:
        return Problem("a matrix whose rows are not contiguous (column stride %d; use "
                       ".contiguous())" % sc)
    return _lib.Matrix(dtype, data or None, rows, cols, sr if rows > 1 else cols)


# ---------------------------------------------------------- time blocks ---

TIME_UNIT = _lib.TIME_UNIT

Block = namedtuple("Block", "batch batch_offset time time_offset")
Block.__module__ = "ctrnnloss"
Block.__doc__ = """Block(batch, batch_offset, time, time_offset): where the batched
tensors a rank passes lie in the global (batch, time) plane (time sharding).

A call with block=Block(B, b0, T, t0) says that this rank's batched inputs
(states, states1, pred, label, mask), of local shape (B_local, T_local, .),
hold global batch elements b0 .. b0 + B_local - 1 of B and global time steps
t0 .. t0 + T_local - 1 of T.  Without a block (block=None, the default) every
rank passes whole batch elements, all T steps of each.

- The blocks of all ranks must tile the plane: every (element, step) in
  exactly one rank's block (the reduction checks that they cover B * T rows).
- A block starts at a multiple of ctrnnloss.TIME_UNIT (512) and ends at one
  or at T; ctrnnloss.time_slice(T, parts, k) gives such boundaries.
- Every rank passes a block, or none does, with the same B and T.
- The results are bitwise those of any other decomposition of the same
  global input (whole batch elements on one rank included); the gradients
  are those of this rank's tensors, the local block.

states1 (PopulationKL's second population, which may have its own B1 and
T1) follows the block unless the call also gives block1=Block(B1, ..., T1,
...), its own block under the same rules (with block= for the other
inputs, an empty block where a rank holds none of them).

Checked at the call, collectively: wrong types (TypeError) and negative
offsets or B, T < 1 (ValueError) by the binding, the rest by the library
(InvalidArgumentError on every rank)."""


# What the criteria's docstrings say of time sharding.
BLOCK_NOTE = """

        Every call also takes block=ctrnnloss.Block(B, b0, T, t0) when the
        batched inputs are a block of the global (batch, time) plane (time
        sharding; see ctrnnloss.Block)."""


def time_slice(time, parts, index):
    """The slice of global time steps of part index of parts along a time
    axis of length time: consecutive runs of whole TIME_UNIT units (the last
    unit ends at time), as even as possible in units; a part beyond the
    number of units is empty, slice(t, t) at a unit boundary.  With
    s = time_slice(T, size, rank): x[:, s] and Block(B, 0, T, s.start)."""
    time, parts, index = operator.index(time), operator.index(parts), operator.index(index)
    if time < 0 or parts < 1 or not 0 <= index < parts:
        raise ValueError("ctrnnloss.time_slice: time %d >= 0, parts %d >= 1 and index %d in "
                         "0 .. parts - 1 needed" % (time, parts, index))
    units = -(-time // TIME_UNIT)
    return slice(min(index * units // parts * TIME_UNIT, time),
                 min((index + 1) * units // parts * TIME_UNIT, time))


_BLOCK_FIELDS = (("batch", 1), ("batch_offset", 0), ("time", 1), ("time_offset", 0))
_blocks = {}   # Block: its crl_block (the blocks of recent calls)


def block_of(block):
    """The crl_block of a call's block= (a Block, or a tuple of its four
    integers); TypeError or ValueError for what the binding can tell is
    wrong without the inputs' shapes (the library checks the rest)."""
    try:
        made = _blocks.get(block)
    except TypeError:   # unhashable: not a tuple of integers
        made = None
    if made is not None:
        # Only blocks of Python ints are kept; an equal tuple of other
        # numbers (1.0 == 1) is checked afresh.
        for value in block:
            if value.__class__ is not int:
                break
        else:
            return made
    if not isinstance(block, tuple) or len(block) != 4:
        raise TypeError("ctrnnloss: block must be a ctrnnloss.Block(batch, batch_offset, "
                        "time, time_offset), not %r" % (block,))
    values = []
    for (name, least), value in zip(_BLOCK_FIELDS, block):
        try:
            if isinstance(value, (bool, np.bool_)):
                raise TypeError
            value = operator.index(value)
        except TypeError:
            raise TypeError("ctrnnloss: block.%s must be an integer, not %r"
                            % (name, value)) from None
        if not least <= value < 2 ** 63:
            raise ValueError("ctrnnloss: block.%s = %d; it must be %s" % (
                name, value, ">= 1" if least else ">= 0") if value < least else
                "ctrnnloss: block.%s = %d is too large" % (name, value))
        values.append(value)
    made = _lib.Block(*values)
    if all(value.__class__ is int for value in block):
        if len(_blocks) >= 32:
            _blocks.clear()
        _blocks[block] = made
    return made


def blocks_of(block, block1=None):
    """The blocks of a call's block= and block1= (states1's own): block_of
    of block, or (that, block_of of block1) where block1 is given."""
    main = None if block is None else block_of(block)
    if block1 is None:
        return main
    if main is None:
        raise ValueError("ctrnnloss: block1 (the block of states1) needs block= as well, the "
                         "block of the other inputs (an empty one where a rank holds none)")
    return main, block_of(block1)


def apply_block(ptr, block):
    """Not collective.  crl_loss_set_block (and, for a pair from blocks_of,
    crl_loss_set_block_states1) of a crl_loss; the first failing status."""
    one = None
    if block.__class__ is tuple:
        block, one = block
    status = lib.crl_loss_set_block(ptr, ctypes.byref(block))
    if status == _lib.OK:
        status = lib.crl_loss_set_block_states1(ptr, None if one is None else ctypes.byref(one))
    return status


def set_block(handle, block, context):
    """Not collective.  The block of the chunk a crl_loss handle accumulates
    or back-propagates next (a crl_block, a pair from blocks_of, or None for
    whole elements, set only when the handle holds another); False, the
    handle's evaluation refused with the library's message, where the
    library refuses it."""
    if block is None:
        if handle.blocked:
            lib.crl_loss_set_block(handle.ptr, None)
            handle.blocked = False
        return True
    handle.blocked = True
    status = apply_block(handle.ptr, block)
    if status != _lib.OK:
        lib.crl_loss_refuse(handle.ptr, status, context.message().encode(errors="replace"))
        return False
    return True


# ----------------------------------------------------------------- loss ---


def forward_group(parts, keep=True, block=None):
    """Collective.  Loss.forward of several losses on one context, parts
    [(loss, tin, problems, announced)], with one reduction for all
    (crl_loss_reduce_group); a list of (total, values, Evaluation or None).
    block: the crl_block of every part's inputs, or None."""
    handles = [loss._begin(tin, problems, announced, block)
               for loss, tin, problems, announced in parts]
    if len(handles) == 1:
        status = lib.crl_loss_reduce(handles[0].ptr)
    else:
        status = lib.crl_loss_reduce_group((ctypes.c_void_p * len(handles))(
            *[h.ptr for h in handles]), len(handles))
    if status != _lib.OK:
        every = {}
        for _, _, problems, _ in parts:
            every.update({k: v for k, v in problems.items() if k not in every})
        parts[0][0]._fail(status, every)
    return [loss._end(h, tin, problems, keep, block)
            for (loss, tin, problems, _), h in zip(parts, handles)]


def _refusal(problems):
    """The reason a rank gives crl_loss_refuse for its problems (the first
    one): "states is a torch.int64 tensor; ...", or the refused call's."""
    role, reason = next(iter(problems.items()))
    return str(reason) if role == "call" else "%s is %s" % (role, reason)


def _is_forward_only(term_type, params):
    """A term whose loss has no gradient (PopulationKL, reduction=none)."""
    if term_type != "population_kl" or "reduction" not in params:
        return False
    specs = {s.key: s for s in term_params(term_type)}
    return _format_value(specs.get("reduction"), "reduction", params["reduction"]) == "none"


Term = namedtuple("Term", "name type weight params")


def agree(context, error):
    """Collective.  Raises, on every rank, the error (an exception or None)
    of the lowest rank that has one, so that an error a front end finds on
    one rank only (a call's arguments, a parameter) never leaves the other
    ranks waiting in the next collective.  One MPI_Allreduce when no rank
    has one."""
    code = _lib.OK if error is None else getattr(error, "status", _lib.ERR_INVALID)
    text = None if error is None else str(error).encode(errors="replace")
    status = lib.crl_context_agree(context.handle, code, text)
    if status == _lib.OK:
        return
    # The class the lowest failing rank raised (TypeError for a call's
    # arguments, the library's classes for its errors), on every rank.
    kinds = context.comm.allgather(None if error is None else type(error).__name__)
    first = next(k for k in kinds if k is not None)
    if first in ("TypeError", "ValueError"):
        raise {"TypeError": TypeError, "ValueError": ValueError}[first](context.message())
    raise _error(status, context.message())


class _Handle:
    """One crl_loss of a Loss's terms, and whether an evaluation (its reduced
    statistics, waiting for a backward pass) holds it."""

    def __init__(self, context, terms):
        self.ptr = ctypes.c_void_p()
        status = lib.crl_loss_create(context.handle, ctypes.byref(self.ptr))
        if status != _lib.OK:
            self.error = _error(status, context.message())
            return
        self.error = None
        for t in terms:
            text = format_params(t.type, t.params)
            status = lib.crl_loss_add(self.ptr, str(t.name).encode(), str(t.type).encode(),
                                      float(t.weight), text.encode())
            if status != _lib.OK:
                self.error = _error(status, context.message())
                return
        lib.crl_loss_set_grad_mode(self.ptr, _lib.GRAD_OVERWRITE)
        self.busy = False
        # Whether the crl_loss may hold a block (crl_loss_set_block): a call
        # without one sets NULL only then.
        self.blocked = False
        # The crl_loss's gradient scale (crl_loss_set_grad_scale; it stays
        # until changed; None: unknown): set only when it changes.
        self.scale = 1.0

    def __del__(self, destroy=lib.crl_loss_destroy):
        # Not collective; the context (never freed) outlives the loss.
        if getattr(self, "ptr", None):
            destroy(ctypes.byref(self.ptr))


class Evaluation:
    """A reduced evaluation of a Loss, waiting for its backward pass: the
    crl_loss that holds the global statistics (not handed to another call
    until this object is gone), the inputs as passed and their block."""

    block = None   # the crl_block of the inputs, or None (whole elements)

    def __init__(self, loss, handle, tin, problems):
        self.loss, self.handle, self.tin, self.problems = loss, handle, tin, problems
        self.backward_done = False

    def backward(self, grads, scale, term_scales=None):
        """Not collective.  Writes scale * d(total)/d(input) into the buffer
        descriptions grads (a crl_tensors, or {role: crl_array/crl_matrix};
        overwriting them; announced ones included).  term_scales {term name:
        s}: the gradient of sum_k s_k lambda_k L_k instead (times scale)."""
        if self.backward_done:
            raise RuntimeError("ctrnnloss: backward through the same call twice "
                               "(retain_graph=True) is not supported; call the criterion again")
        self.backward_done = True
        tgrad = grads if isinstance(grads, _lib.Tensors) else self.loss.inputs(grads)[0]
        handle = self.handle
        ptr = handle.ptr
        # Equal non-zero doubles have equal bits (a zero may be -0.0).
        if scale != handle.scale or scale == 0.0:
            handle.scale = None
            if lib.crl_loss_set_grad_scale(ptr, scale) == _lib.OK:
                handle.scale = scale
        if term_scales:
            for name, s in term_scales.items():
                lib.crl_loss_set_term_grad_scale(ptr, name.encode(), s)
        if self.block is not None:
            # Set again before the chunk's backward (crl_loss_set_block).
            apply_block(ptr, self.block)
        status = lib.crl_loss_backward(ptr, ctypes.byref(self.tin), ctypes.byref(tgrad))
        if term_scales:
            for name in term_scales:
                lib.crl_loss_set_term_grad_scale(ptr, name.encode(), 1.0)
        if status != _lib.OK:
            raise _error(status, self.loss.context.message())

    def __del__(self):
        handle = getattr(self, "handle", None)
        if handle is not None:
            handle.busy = False


class Loss:
    """Named terms (name, type, lambda, params dict) in order, evaluated with
    one MPI_Allreduce on the communicator comm.

    Construction is collective: a parameter refused on one rank raises the
    same error on every rank."""

    def __init__(self, terms, comm=None, error=None):
        """error: what the front end refused in the constructor's arguments
        on this rank (raised on every rank)."""
        self.context = context_for(comm)
        first = None
        if error is None:
            try:
                self.terms = tuple(Term(*t) for t in (terms() if callable(terms) else terms))
                first = _Handle(self.context, self.terms)
                error = first.error
            except (TypeError, ValueError) as exc:   # parameters the binding refused
                error = exc
        agree(self.context, error)
        self.handles = [first]
        # With a forward-only term the library refuses every gradient request.
        self.forward_only = any(_is_forward_only(t.type, t.params) for t in self.terms)
        self.vector_names = {t.name for t in self.terms if _is_forward_only(t.type, t.params)}
        self._tensors = {}   # the crl_tensors of a call's signature, built once

    def _free_handle(self):
        for h in self.handles:
            if not h.busy:
                return h
        # Every crl_loss holds an evaluation that waits for its backward
        # pass: one more (not collective; its terms were accepted already).
        h = _Handle(self.context, self.terms)
        if h.error is not None:
            raise h.error
        self.handles.append(h)
        return h

    def tensors(self, signature, make):
        """The crl_tensors of a call signature (a hashable description of
        the inputs' roles, dtypes, shapes and strides), built by make() the
        first time; the caller sets the data pointers."""
        t = self._tensors.get(signature)
        if t is None:
            if len(self._tensors) >= 32:
                self._tensors.clear()
            t = self._tensors[signature] = make()
        return t

    def forward(self, tin, problems, announced=None, keep=True, block=None):
        """Collective.  The accumulate pass and the reduction (values only)
        of the inputs tin (a crl_tensors; problems {role: reason} for those
        the front end could not pass); announced: a crl_tensors of the
        gradient buffers that must be known now (hebbian's w_hebb), or None;
        block: the crl_block of the batched inputs (block_of), or None for
        whole batch elements.  Returns (total, values, Evaluation or None):
        the evaluation, for the backward pass, when keep."""
        return forward_group([(self, tin, problems, announced)], keep, block)[0]

    def _begin(self, tin, problems, announced, block=None):
        """Not collective: the accumulate pass of this rank's inputs, or its
        refusal; the crl_loss handle that holds it."""
        handle = self._free_handle()
        if problems:
            # What this rank could not pass (or its refused call arguments):
            # the reduction fails on every rank with the reason, and _fail
            # raises it on every rank.
            lib.crl_loss_refuse(handle.ptr, _lib.ERR_INVALID, _refusal(problems).encode())
        elif set_block(handle, block, self.context):
            lib.crl_loss_accumulate(handle.ptr, ctypes.byref(tin),
                                    ctypes.byref(announced) if announced is not None else None)
        return handle

    def _end(self, handle, tin, problems, keep, block=None):
        """After a successful reduction: (total, values, Evaluation or None)."""
        ptr = handle.ptr
        total, values = lib.crl_loss_total(ptr), self._values(ptr)
        if not keep:
            return total, values, None
        handle.busy = True
        evaluation = Evaluation(self, handle, _lib.Tensors.from_buffer_copy(tin), problems)
        evaluation.total, evaluation.values, evaluation.block = total, values, block
        return total, values, evaluation

    def evaluate(self, inputs, grads, block=None, block1=None):
        """Collective.  inputs: {role: crl_array/crl_matrix or Problem};
        grads: {role: gradient buffer description} (the library writes the
        gradient into them); block: a Block of the batched inputs, or None;
        block1: states1's own, or None.
        Returns (total, {value name: float or ndarray}); raises Error on
        every rank if the library fails."""
        tin, problems = self.inputs(inputs)
        if block is not None or block1 is not None:
            try:
                block = blocks_of(block, block1)
            except (TypeError, ValueError) as exc:
                problems["call"], block = exc, None
        announced = None
        if grads:
            announced = _lib.Tensors()
            for role, desc in grads.items():
                if role not in problems:
                    setattr(announced, role, desc)
        total, values, evaluation = self.forward(tin, problems, announced, keep=bool(grads),
                                                 block=block)
        if grads:
            evaluation.backward({r: d for r, d in grads.items() if r not in problems}, 1.0)
        return total, values

    @staticmethod
    def inputs(inputs):
        """(crl_tensors, {role: reason}) of {role: description or Problem}
        (a Problem's role is left out of the crl_tensors)."""
        tin = _lib.Tensors()
        problems = {}
        for role, desc in inputs.items():
            if isinstance(desc, Problem):
                problems[role] = desc.reason
            else:
                setattr(tin, role, desc)
        return tin, problems

    def _fail(self, status, problems):
        """Collective, on the failure path only (every rank is on it): raises
        the library's error, with the reason a front end gave for an input it
        could not pass if that input is what the library refused."""
        message = self.context.message()
        every = self.context.comm.allgather(problems)
        calls = [(rank, found["call"]) for rank, found in enumerate(every) if "call" in found]
        if calls:
            # The exception a front end found in a call's arguments (a
            # TypeError, a ValueError), raised on every rank.
            texts = {str(why) for _, why in calls}
            rank, first = calls[0]
            same = len(calls) == len(every) and len(texts) == 1
            raise type(first)(str(first) if same else "rank %d: %s" % (rank, first))
        # The library names the lowest refusing rank; the others' reasons,
        # where they differ, follow.
        refused = [(rank, _refusal(found)) for rank, found in enumerate(every) if found]
        others = ["rank %d: %s" % (rank, why) for rank, why in refused[1:]
                  if why != refused[0][1]]
        raise _error(status, message, "; ".join(others) or None)

    def _values(self, ptr):
        out = {}
        length = ctypes.c_int64()
        for k in range(lib.crl_loss_value_count(ptr)):
            name = lib.crl_loss_value_name(ptr, k).decode()
            value = lib.crl_loss_value(ptr, k, ctypes.byref(length))
            if length.value == 1 and name not in self.vector_names:
                out[name] = value[0]
            else:
                out[name] = np.ctypeslib.as_array(value, shape=(length.value,)).copy()
        return out


# ------------------------------------- the criteria (docs/losses.md) ---

Criterion = namedtuple("Criterion", "type arguments positional doc")

# Each criterion: its term type; its call's arguments in order, each
# (name, input role, other accepted names) with the names of nn4n's code
# first and those of its documentation as aliases; its constructor's
# positional parameters in nn4n's order; what to say about it.
CRITERIA = {
    "RNNLoss": Criterion("rnn", (("pred", "pred", ()), ("label", "label", ()),
                                 ("states", "states", ("state",)), ("w_in", "w_in", ()),
                                 ("w_hid", "w_hid", ()), ("w_out", "w_out", ()),
                                 ("mask", "mask", ())), (), """
        RNNLoss(model=None, **lambdas), called as
        (pred, label, states=None, w_in=None, w_hid=None, w_out=None).
        Parameters lambda_mse (1), lambda_in, lambda_hid, lambda_out, lambda_fr,
        lambda_fr_sd, lambda_fr_cv (0), correction (0; 1 gives torch.std's SD).
        With an nn4n-style model, the weights not passed are read at each
        call from model.recurrent_layer.input_layer.weight,
        model.recurrent_layer.hidden_layer.weight and model.readout_layer.weight.
        An input no non-zero lambda needs may be left out.  Returns
        (total, components) as nn4n does: components stacks the weighted
        mse and each component whose lambda is not 0, in the order
        mse, in, hid, out, fr, fr_sd, fr_cv.  The weights' gradients are
        global (the same on every rank)."""),
    "FiringRateLoss": Criterion("fr", (("states", "states", ("state",)),), ("metric",), """
        FiringRateLoss(metric='l2'): (states).  metric 'l2' or 'l1'."""),
    "FiringRateDistLoss": Criterion("fr_dist", (("states", "states", ("state",)),),
                                    ("metric",), """
        FiringRateDistLoss(metric='sd', correction=0): (states).  metric
        'sd', 'cv', 'mean_ad' or 'max_ad'; correction 1 gives torch.std's SD."""),
    "StatePredictionLoss": Criterion("state_pred", (("states", "states", ("state",)),),
                                     ("tau",), """
        StatePredictionLoss(tau=1): (states); tau is the lag along time."""),
    "HebbianLoss": Criterion("hebbian", (("states", "states", ("state",)),
                                         ("weights", "w_hebb", ())), (), """
        HebbianLoss(): (states, weights), weights (N, N) replicated: its
        gradient is global (the same on every rank)."""),
    "EntropyLoss": Criterion("entropy", (("states", "states", ("state",)),), ("reg",), """
        EntropyLoss(reg=10, eps=1e-8): (states), every rate >= 0."""),
    "PopulationKL": Criterion("population_kl", (("states_0", "states", ("state_0",)),
                                                ("states_1", "states1", ("state_1",))),
                              ("symmetric", "reg", "reduction"), """
        PopulationKL(symmetric=True, reg=1e-3, reduction='mean', var_eps=0):
        (states_0, states_1), each batch-sharded with its own B and T.  With
        reduction='none' the result is the (N,) vector of weighted per-neuron
        divergences, without gradient; the regularizer is the criterion's
        .regularizer (and .values['population_kl.reg'])."""),
    "MSELoss": Criterion("mse", (("input", "pred", ("pred",)), ("target", "label", ("label",)),
                                 ("mask", "mask", ())), (), """
        MSELoss(): (input, target, mask=None), (B, T, K) and batch-sharded;
        the optional mask (B, T, K) or (B, T, 1) weights the error (docs/losses.md
        "Output masks"), without a gradient."""),
    "RNNConnectivityLoss": Criterion("rnn_conn", (("w_in", "w_in", ()), ("w_hid", "w_hid", ()),
                                                  ("w_out", "w_out", ())),
                                     ("layer", "metric"), """
        RNNConnectivityLoss(layer='all', metric='fro'): called as nn4n's
        (model) or with the weights (w_in=, w_hid=, w_out=).  layer 'all',
        'input', 'hidden' or 'readout'; metric 'fro' or 'l1'."""),
    "CrossEntropyLoss": Criterion("cross_entropy", (("input", "pred", ("pred",)),
                                                    ("target", "label", ("label",)),
                                                    ("mask", "mask", ())),
                                  ("apply_softmax", "clamp"), """
        CrossEntropyLoss(apply_softmax=True, clamp=1e-12): (input, target),
        logits (or probabilities) and target probabilities, both (B, T, K)."""),
}

# Inputs that never get a gradient.
NO_GRADIENT = ("mask",)

# The criterion of each term type.
CRITERION_OF_TYPE = {c.type: name for name, c in CRITERIA.items()}


def bind_params(criterion, positional, args, params):
    """The parameters of a constructor call: positional ones in nn4n's order."""
    if len(args) > len(positional):
        raise TypeError("%s takes at most %d positional parameters (%s), %d given"
                        % (criterion, len(positional), ", ".join(positional), len(args)))
    out = dict(zip(positional, args))
    for key, value in params.items():
        if key in out:
            raise TypeError("%s got parameter %r twice" % (criterion, key))
        out[key] = value
    return out


# The argument names a CompositeLoss accepts for a role: the roles
# themselves and the criteria's (nn4n's) names.
ARGUMENT_ROLES = dict({role: role for role in _lib.ROLES},
                      **{name: role for c in CRITERIA.values() for arg, role, aliases in c.arguments
                         for name in (arg,) + aliases})


def bind_arguments(criterion, arguments, args, kwargs):
    """{role: value} of a call, like Python binds a signature whose
    arguments all default to None (each also known by its aliases)."""
    names = [a for a, _, _ in arguments]
    if len(args) > len(names):
        raise TypeError("%s takes at most %d inputs (%s), %d given"
                        % (criterion, len(names), ", ".join(names), len(args)))
    bound = {role: value for (_, role, _), value in zip(arguments, args)}
    for key, value in kwargs.items():
        role = next((r for a, r, aliases in arguments if key == a or key in aliases), None)
        if role is None:
            raise TypeError("%s got an unexpected input %r (its inputs: %s)"
                            % (criterion, key, ", ".join(names)))
        if role in bound:
            raise TypeError("%s got input %r twice" % (criterion, key))
        bound[role] = value
    return {k: v for k, v in bound.items() if v is not None}


def composite_terms(loss_cfg):
    """Terms from nn4n's configuration {name: {'type', 'params', 'lambda'}}."""
    terms = []
    for name, cfg in loss_cfg.items():
        unknown = set(cfg) - {"type", "params", "lambda"}
        if "type" not in cfg or unknown:
            raise ValueError("CompositeLoss: term %r needs 'type' and may have 'params' and "
                             "'lambda' (got %s)" % (name, ", ".join(sorted(cfg))))
        terms.append((name, cfg["type"], cfg.get("lambda", 1.0), dict(cfg.get("params") or {})))
    return terms


def composite_inputs(loss_input_dict, kwargs):
    """{role: value} for a CompositeLoss call whose terms all read one set of
    inputs (see composite_groups)."""
    return composite_groups(loss_input_dict, kwargs, None)[0][1]


def composite_groups(loss_input_dict, kwargs, names):
    """The sets of inputs of a CompositeLoss call: [(term names, {role:
    value})], in the terms' order.  Keyword arguments (by role or argument
    name) go to every term, nn4n's {term name: {argument: value}} to its
    term; terms that read the same tensors (or different roles) share a
    set, a term that reads another tensor in a role already taken starts a
    new one.  A term without inputs of its own joins the first set.  names:
    the terms' names in order (None: every input in one set)."""
    def roles_of(pairs, what):
        out = {}
        for key, value in pairs:
            role = ARGUMENT_ROLES.get(key)
            if role is None:
                raise TypeError("CompositeLoss: unknown input %r (roles: %s)"
                                % (key, ", ".join(_lib.ROLES)))
            if value is None:
                continue
            if role in out and out[role] is not value:
                raise ValueError("CompositeLoss: two different values for input %r%s"
                                 % (role, what))
            out[role] = value
        return out

    shared = roles_of(kwargs.items(), "")
    entries = dict(loss_input_dict or {})
    if names is None:
        pairs = list(kwargs.items()) + [p for e in entries.values() for p in e.items()]
        return [((), roles_of(pairs, ": the terms are evaluated together on one set of "
                              "inputs"))]
    unknown = sorted(set(entries) - set(names), key=str)
    if unknown:
        raise TypeError("CompositeLoss: no term named %r (terms: %s)"
                        % (unknown[0], ", ".join(names)))
    groups = []
    for name in names:
        own = roles_of(list(kwargs.items()) + list(entries.get(name, {}).items()),
                       " of term %r" % name)
        if name not in entries and groups:
            home = groups[0]
        else:
            home = next((g for g in groups
                         if all(g[1].get(r, v) is v for r, v in own.items())), None)
        if home is None:
            home = ([], dict(shared))
            groups.append(home)
        home[0].append(name)
        home[1].update(own)
    return [(tuple(members), roles) for members, roles in groups]
