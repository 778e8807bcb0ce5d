#!/usr/bin/python3
"""
python_binding.py - tests of the Python binding (python/ctrnnloss), run by
tests/python_binding.sh in phases, each a separate mpirun:

    mpirun -np 1 python3 python_binding.py record DIR    1 rank: results -> DIR
    ctrnn-loss eval on the files of DIR/cli (1 and 2 ranks; the driver)
    mpirun -np 2 python3 python_binding.py compare DIR   2 ranks: against DIR
    mpirun -np P python3 python_binding.py blocks DIR    P = 3, 4: time blocks only

Both phases also check the training path (gradient buffers reused only
when nothing holds them, calls pending a backward, double backward), nn4n's
call forms against scripts/reference.py, and that every term type of the
library has a criterion class and a case here.

record: the criteria on whole batches (float32 and float64), torch and NumPy
front ends bitwise equal, values and gradients against scripts/reference.py
(where the tree has it), autograd behaviour, one training step; writes the
inputs and results for the command-line comparison.
compare: the same evaluations on every split of the batch (an empty rank
included) and in the time-major layout, bitwise equal to the 1-rank results;
the command-line tool's values and gradients bitwise equal to the binding's;
one training step equal to the 1-rank one (loss and rate gradients bitwise,
weights to 1e-12); the example's loss goes down.
blocks (3 and 4 ranks, also part of both phases above): time sharding, the
cases on long inputs (T = 1300, three CRL_TIME_UNIT units) cut into a block
of the (batch, time) plane per rank (along time only, one trial, an empty
rank where there are more ranks than units; batch x time), values and the
assembled gradients bitwise those of the whole input on one rank; wrong
blocks raise the same error on every rank.
All: bad inputs on the last rank only raise the same error on every rank.

Every check counts; the failures of all ranks are summed at the end.
"""
import json
import os
import re
import sys

from mpi4py import MPI
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(TOP, "python"), os.path.join(TOP, "python", "examples"),
                os.path.join(TOP, "scripts")]

import ctrnnloss  # noqa: E402
import ctrnnloss.numpy as cnp  # noqa: E402
import ctrnnloss.torch as ct  # noqa: E402
import train_ctrnn  # noqa: E402

try:
    import reference  # scripts/reference.py, the independent PyTorch reference
except ImportError:
    reference = None

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
LAST = SIZE - 1
TYPES = ctrnnloss.term_types()
failures = 0
checks = 0


def check(ok, what):
    global failures, checks
    checks += 1
    if not ok:
        failures += 1
        print("FAIL (rank %d): %s" % (RANK, what), flush=True)


def note(text):
    if RANK == 0:
        print(text, flush=True)


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def close(a, b, rtol):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-300)
    return a.shape == b.shape and float(np.max(np.abs(a - b), initial=0.0)) <= rtol * scale


# ---------------------------------------------------------------- cases ---

B, T, N, K, N_IN, B1, T1 = 6, 5, 4, 3, 2, 5, 3

# name: (criterion class name, params, inputs).  A CompositeLoss case has the
# configuration dictionary instead of params.
CASES = {
    "rnn": ("RNNLoss", dict(lambda_mse=1, lambda_in=0.1, lambda_hid=0.2, lambda_out=0.01,
                            lambda_fr=0.5, lambda_fr_sd=2, lambda_fr_cv=3, correction=1),
            ("pred", "label", "states", "w_in", "w_hid", "w_out")),
    "fr_l1": ("FiringRateLoss", dict(metric="l1"), ("states",)),
    "fr_l2": ("FiringRateLoss", {}, ("states",)),
    "fr_dist_sd": ("FiringRateDistLoss", dict(correction=1), ("states",)),
    "fr_dist_cv": ("FiringRateDistLoss", dict(metric="cv"), ("states",)),
    "fr_dist_mean_ad": ("FiringRateDistLoss", dict(metric="mean_ad"), ("states",)),
    "fr_dist_max_ad": ("FiringRateDistLoss", dict(metric="max_ad"), ("states",)),
    "state_pred": ("StatePredictionLoss", dict(tau=2), ("states",)),
    "hebbian": ("HebbianLoss", {}, ("states", "w_hebb")),
    "entropy": ("EntropyLoss", dict(reg=0.5, eps=1e-6), ("states",)),
    "population_kl": ("PopulationKL", dict(symmetric=False, reg=0.01, reduction="sum",
                                           var_eps=0.1), ("states", "states1")),
    "mse": ("MSELoss", {}, ("pred", "label")),
    "mse_mask": ("MSELoss", {}, ("pred", "label", "mask")),
    "rnn_conn": ("RNNConnectivityLoss", dict(layer="all", metric="fro"),
                 ("w_in", "w_hid", "w_out")),
    "rnn_conn_l1": ("RNNConnectivityLoss", dict(layer="hidden", metric="l1"), ("w_hid",)),
    "cross_entropy": ("CrossEntropyLoss", dict(clamp=1e-6), ("pred", "label", "mask")),
    "composite": ("CompositeLoss", {
        "task": {"type": "mse", "lambda": 2.0},
        "act": {"type": "fr", "params": {"metric": "l1"}, "lambda": 0.1},
        "spread": {"type": "fr_dist", "params": {"metric": "cv", "correction": 1},
                   "lambda": 0.3},
        "hebb": {"type": "hebbian", "lambda": 0.05},
        "reg": {"type": "rnn", "params": {"lambda_mse": 0, "lambda_hid": 0.2, "lambda_fr": 1},
                "lambda": 0.5},
    }, ("states", "pred", "label", "w_hid", "w_hebb")),
}


def case_types(case):
    kind, params, _ = CASES[case]
    if kind == "CompositeLoss":
        return {t["type"] for t in params.values()}
    return {ctrnnloss._core.CRITERIA[kind][0]}


def available(case):
    return case_types(case) <= set(TYPES)


def make_criterion(module, case, batch_first=True, comm=None):
    kind, params, _ = CASES[case]
    cls = getattr(module, kind)
    if kind == "CompositeLoss":
        return cls(params, batch_first=batch_first, comm=comm)
    return cls(batch_first=batch_first, comm=comm, **params)


def case_inputs(case, dtype, batch=B, time=T, batch1=B1, time1=T1):
    """The whole batch of every input of a case (the same on every rank),
    batch-major, as float64 NumPy arrays rounded to dtype."""
    rng = np.random.RandomState(sorted(CASES).index(case))
    shapes = dict(states=(batch, time, N), states1=(batch1, time1, N), pred=(batch, time, K),
                  label=(batch, time, K), w_in=(N, N_IN), w_hid=(N, N), w_out=(K, N),
                  w_hebb=(N, N), mask=(batch, time, K))
    out = {}
    for role in CASES[case][2]:
        x = rng.standard_normal(shapes[role])
        if role in ("states", "states1"):
            x = np.abs(x) + 0.1   # rates: positive (entropy), mean away from 0 (cv)
        if role == "mask":
            x = (x > -0.5).astype(np.float64) * 0.75   # a 0 / 0.75 mask
        if role == "label" and case == "cross_entropy":
            x = np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)   # target probabilities
        out[role] = x.astype(dtype)
    return out


def shard(batch, rank, size, split):
    """(lo, hi) of a rank's batch elements: 'even', or 'empty' (rank 0 holds
    none when there are several ranks)."""
    if split == "empty" and size > 1:
        return (0, 0) if rank == 0 else ((rank - 1) * batch // (size - 1),
                                         rank * batch // (size - 1))
    return rank * batch // size, (rank + 1) * batch // size


def local_inputs(whole, split, time_major=False):
    """This rank's torch tensors of whole (no copies: slices), batch-major or
    (T, B, .) views of time-major arrays."""
    out = {}
    for role, x in whole.items():
        t = torch.from_numpy(x)
        if x.ndim == 3:
            lo, hi = shard(x.shape[0], RANK, SIZE, split)
            if time_major:
                t = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))[:, lo:hi]
            else:
                t = t[lo:hi]
        out[role] = t.requires_grad_(role not in ctrnnloss._core.NO_GRADIENT)
    return out


def call(criterion, case, inputs, **options):
    """Evaluates a torch criterion on inputs by role (options: block=);
    returns the total tensor."""
    kind, params, roles = CASES[case]
    if kind == "CompositeLoss":
        return criterion(**inputs, **options)[0]
    names = {role: arg for arg, role, _ in ctrnnloss._core.CRITERIA[kind].arguments}
    out = criterion(**{names[r]: inputs[r] for r in roles}, **options)
    return out[0] if kind == "RNNLoss" else out


def torch_results(case, dtype, split="even", time_major=False):
    """(total, values, {role: gradient}) of this rank's slice, by the torch
    front end, gradients batch-major."""
    criterion = make_criterion(ct, case, batch_first=not time_major)
    inputs = local_inputs(case_inputs(case, dtype), split, time_major)
    call(criterion, case, inputs).backward()
    grads = {}
    for role, t in inputs.items():
        if role in ctrnnloss._core.NO_GRADIENT:
            continue
        g = t.grad.numpy()
        grads[role] = g.transpose(1, 0, 2) if time_major and g.ndim == 3 else g
    return criterion.total, criterion.values, grads


def gather_batch(grads):
    """Rank 0: the batched gradients of all ranks joined along the batch."""
    every = COMM.gather(grads, root=0)
    if RANK != 0:
        return None
    out = {}
    for role in grads:
        parts = [g[role] for g in every]
        out[role] = np.concatenate(parts) if parts[0].ndim == 3 else parts[0]
    return out


# ------------------------------------------------------------ record ---

def record_cases(directory):
    """1 rank: every case in float32 and float64; returns {key: array}."""
    saved = {}
    for case in CASES:
        if not available(case):
            check(False, "case %s: the library has no term type %s" % (
                case, ", ".join(sorted(case_types(case) - set(TYPES)))))
            continue
        for dtype in (np.float32, np.float64):
            key = "%s/%s" % (case, np.dtype(dtype).name)
            total, values, grads = torch_results(case, dtype)
            saved[key + "/total"] = np.float64(total)
            for name, v in values.items():
                saved["%s/value/%s" % (key, name)] = np.float64(v) if np.isscalar(v) else v
            for role, g in grads.items():
                saved["%s/grad/%s" % (key, role)] = g
            check_numpy_front_end(case, dtype, total, values, grads)
            check_reference(case, dtype, total, values, grads)
    note("record: %d cases x 2 dtypes evaluated" % len([c for c in CASES if available(c)]))
    return saved


def check_numpy_front_end(case, dtype, total, values, grads):
    """ctrnnloss.numpy gives the torch front end's bits."""
    kind, _, roles = CASES[case]
    criterion = make_criterion(cnp, case)
    whole = case_inputs(case, dtype)
    if kind == "CompositeLoss":
        result = criterion(grad=True, **whole)
        got = result.grads
    else:
        names = {role: arg for arg, role, _ in ctrnnloss._core.CRITERIA[kind].arguments}
        result = criterion(grad=True, **{names[r]: whole[r] for r in roles})
        got = {r: result.grads[names[r]] for r in roles if names[r] in result.grads}
    check(result.total == total and result.values == values,
          "%s %s: numpy values %s != torch %s" % (case, dtype.__name__, result.values, values))
    for role in grads:
        check(same_bits(got[role], grads[role]), "%s %s: numpy gradient of %s differs"
              % (case, dtype.__name__, role))


def check_reference(case, dtype, total, values, grads, whole=None, what=None):
    """Values and gradients against scripts/reference.py, in float64 from the
    same (rounded) inputs (whole: those of case_inputs by default): 1e-12
    for float64 inputs, 1e-5 for float32."""
    if reference is None:
        return
    kind, params, roles = CASES[case]
    # The reference takes the parameters as Python values, not the binding's text.
    if kind == "CompositeLoss":
        terms = [reference.Term(name, cfg["type"], cfg.get("lambda", 1.0), cfg.get("params"))
                 for name, cfg in params.items()]
    else:
        type_ = ctrnnloss._core.CRITERIA[kind][0]
        terms = [reference.Term(type_, type_, 1.0, params)]
    inputs = {r: torch.tensor(x, dtype=torch.float64,
                              requires_grad=r not in ctrnnloss._core.NO_GRADIENT)
              for r, x in (case_inputs(case, dtype) if whole is None else whole).items()}
    ref_total, ref_values = reference.evaluate(terms, inputs)
    ref_total.backward()
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    what = what or "%s %s" % (case, np.dtype(dtype).name)
    check(close(total, float(ref_total), rtol), "%s: total %r, reference %r"
          % (what, total, float(ref_total)))
    for name, v in ref_values:
        check(close(values[name], v.detach().numpy(), rtol), "%s: %s = %r, reference %r"
              % (what, name, values[name], v.detach().numpy()))
    for role in grads:
        check(close(grads[role], inputs[role].grad.numpy(), 10 * rtol),
              "%s: gradient of %s differs from the reference" % (what, role))


def check_parameter_text():
    """Parameters reach the library as text it reads back exactly."""
    text = ctrnnloss._core.format_params
    cases = [("population_kl", dict(symmetric=False, reg=0.1, reduction="none", var_eps=1e-300),
              "symmetric=false,reg=0.1,reduction=none,var_eps=1e-300"),
             ("population_kl", dict(symmetric=np.bool_(True), reduction=1),
              "symmetric=true,reduction=sum"),
             ("fr_dist", dict(metric="cv", correction=True), "metric=cv,correction=1"),
             ("state_pred", dict(tau=np.int64(3)), "tau=3"),
             ("rnn", dict(lambda_fr=1 / 3), "lambda_fr=%r" % (1 / 3))]
    for type_, params, want in cases:
        check(text(type_, params) == want, "parameters %s: %r, expected %r"
              % (params, text(type_, params), want))


def check_autograd():
    """Backward scales by the incoming gradient, returns the library's
    gradients unchanged when it is 1, computes none under no_grad or for
    tensors that do not require one."""
    states = torch.from_numpy(case_inputs("fr_l1", np.float64)["states"])
    crit = ct.FiringRateDistLoss(metric="cv")
    s1 = states.clone().requires_grad_()
    crit(s1).backward()
    s2 = states.clone().requires_grad_()
    (crit(s2) * 2.5).backward()
    check(torch.equal(s2.grad, s1.grad * 2.5), "backward scales by the incoming gradient")
    s3 = states.clone().requires_grad_()
    (crit(s3) + crit(s3)).backward()
    check(torch.equal(s3.grad, s1.grad * 2), "a loss used twice accumulates")
    s4 = states.clone().requires_grad_()
    with torch.no_grad():
        loss = crit(s4)
    check(not loss.requires_grad, "under no_grad the loss does not require a gradient")
    check(loss.dtype == torch.float64 and float(loss) == crit.total, "the loss is the total")
    loss32 = ct.FiringRateLoss()(states.float())
    check(loss32.dtype == torch.float32, "a float32 input gives a float32 loss")
    # Only the tensors that require a gradient get one; label does not.
    mse = ct.MSELoss()
    data = case_inputs("mse", np.float64)
    pred = torch.from_numpy(data["pred"]).requires_grad_()
    label = torch.from_numpy(data["label"])
    mse(pred, label).backward()
    check(label.grad is None and pred.grad is not None, "only pred gets a gradient")
    # The inputs are read in place: the criterion sees a change made after
    # the tensor was created.
    s5 = states.clone()
    before = float(crit(s5))
    s5[0, 0, 0] += 1
    check(float(crit(s5)) != before, "the criterion reads the tensor's memory")
    # PopulationKL with reduction='none': per-neuron divergences, no gradient.
    p = torch.from_numpy(case_inputs("population_kl", np.float64)["states"]).requires_grad_()
    q = torch.from_numpy(case_inputs("population_kl", np.float64)["states1"])
    if "population_kl" in TYPES:
        kl = ct.PopulationKL(reduction="none")
        d = kl(p, q)
        r = kl.regularizer
        check(d.shape == (N,) and r.dim() == 0 and not d.requires_grad,
              "PopulationKL reduction='none' returns (d (N,), reg), not differentiable")
        d_sum = ct.PopulationKL(reduction="sum")(p, q)
        check(close(float(d.sum() + r), float(d_sum), 1e-14), "sum of the divergences")


def check_torch_path():
    """The training path: gradient buffers are reused once nothing holds
    them and never while a tensor does; calls before a backward keep their
    own statistics; double backward is refused clearly."""
    whole = case_inputs("fr_l1", np.float64)["states"]
    lo, hi = shard(B, RANK, SIZE, "even")
    base = torch.from_numpy(whole[lo:hi].copy())
    crit = ct.FiringRateDistLoss(metric="cv")
    # Non-leaf states (as in training): autograd frees their gradient after
    # use, so the next step gets the same memory back.
    seen, kept = [], []
    for step in range(3):
        leaf = (base + step).requires_grad_()
        x = leaf * 1.0
        x.register_hook(lambda g: seen.append(g.data_ptr()) or (kept.append(g) if step == 1
                                                                 else None))
        crit(x).backward()
    if hi > lo:
        check(seen[2] != seen[1], "a gradient a hook retained was handed out again")
        check(seen[0] == seen[1], "a gradient buffer nothing holds was not reused")
    frozen = kept[0].clone()
    crit((base + 7).requires_grad_() * 1.0).backward()
    check(torch.equal(kept[0], frozen), "a retained gradient changed under the next call")
    # A retained .grad of a leaf is not touched by later calls.
    a = base.clone().requires_grad_()
    crit(a).backward()
    grad_a = a.grad
    copy_a = grad_a.clone()
    for shift in (1.0, 2.0):
        b = (base + shift).requires_grad_()
        crit(b).backward()
        check(b.grad.data_ptr() != grad_a.data_ptr() or b.grad.numel() == 0,
              "two live leaves share a gradient buffer")
    check(torch.equal(grad_a, copy_a), "a retained leaf .grad changed under the next call")
    # Two calls before one backward: each keeps its own statistics.
    c1, c2 = base.clone().requires_grad_(), (base * 2 + 1).requires_grad_()
    (crit(c1) + crit(c2)).backward()
    alone = base.clone().requires_grad_()
    crit(alone).backward()
    check(torch.equal(c1.grad, alone.grad), "a second call before backward changed the first")
    # Double backward: a clear error.
    d = base.clone().requires_grad_()
    try:
        torch.autograd.grad(crit(d), d, create_graph=True)
        got = "no error"
    except RuntimeError as exc:
        got = str(exc)
    check("double backward (create_graph=True) is not supported" in got,
          "create_graph=True: %s" % got)
    # No gradient is computed for a loss that is never back-propagated:
    # the call leaves a crl_loss waiting, the next call takes another one.
    crit(base.clone().requires_grad_())
    check(len(crit.loss.handles) <= 3, "evaluations never back-propagated pile up crl_losses "
          "(%d)" % len(crit.loss.handles))
    note("torch path: buffer reuse, retained gradients, pending calls, double backward")


def check_plan_path():
    """The short path of a call (per signature a plan: the crl_tensors built
    once, only the data pointers set, the values' layout read once) gives
    the NumPy front end's bits for each signature a criterion meets in turn
    (contiguous, a strided view, float32, the first again); keyword and
    positional calls agree, a None argument is left out; an input the
    library cannot read still fails on every rank once plans exist."""
    whole = case_inputs("fr_l1", np.float64)["states"]
    lo, hi = shard(B, RANK, SIZE, "even")
    base = whole[lo:hi].copy()
    wide = np.zeros((base.shape[0], 2 * base.shape[1], base.shape[2]))
    wide[:, ::2] = base
    crit, ncrit = ct.FiringRateDistLoss(metric="cv"), cnp.FiringRateDistLoss(metric="cv")
    for what, arr in (("contiguous", base), ("a strided view", wide[:, ::2]),
                      ("float32", base.astype(np.float32)), ("contiguous again", base)):
        x = torch.from_numpy(arr).requires_grad_()
        crit(x).backward()
        mine = ncrit(arr, grad=True)
        check(float(crit.total) == mine.total and crit.values == mine.values,
              "plan path, %s: values differ from the NumPy front end's" % what)
        check(x.grad.numpy().tobytes() == mine.grads["states"].tobytes(),
              "plan path, %s: gradient differs from the NumPy front end's" % what)
    a, b = torch.from_numpy(base).requires_grad_(), torch.from_numpy(base).requires_grad_()
    ta, tb = crit(a), crit(states=b)
    (ta + tb).backward()
    check(torch.equal(ta, tb) and torch.equal(a.grad, b.grad),
          "a keyword call differs from the positional one")
    data = case_inputs("mse", np.float64)
    pred, label = (torch.from_numpy(data[r][lo:hi].copy()) for r in ("pred", "label"))
    mse = ct.MSELoss()
    check(torch.equal(mse(pred, label, None), mse(pred, label)),
          "MSELoss(pred, label, None) differs from MSELoss(pred, label)")
    try:
        crit(torch.from_numpy(base).transpose(1, 2))
        got = "no error"
    except ct.InvalidArgumentError as exc:
        got = str(exc)
    check("contiguous along its last dimension" in got,
          "a transposed input after plans exist: %s" % got)
    note("plan path: signatures in turn bitwise against NumPy, call forms, refusal")


class Nn4nModel(torch.nn.Module):
    """The attributes an nn4n CTRNN holds its three weight matrices in."""

    def __init__(self, w_in, w_hid, w_out):
        super().__init__()
        self.recurrent_layer = torch.nn.Module()
        self.recurrent_layer.input_layer = torch.nn.Module()
        self.recurrent_layer.hidden_layer = torch.nn.Module()
        self.readout_layer = torch.nn.Module()
        self.recurrent_layer.input_layer.weight = torch.nn.Parameter(w_in.clone())
        self.recurrent_layer.hidden_layer.weight = torch.nn.Parameter(w_hid.clone())
        self.readout_layer.weight = torch.nn.Parameter(w_out.clone())


def check_call_forms():
    """nn4n's call forms (its code's and its documentation's argument names,
    positional parameters) give the keyword forms' bits and the reference's
    values and gradients."""
    data = {c: case_inputs(c, np.float64) for c in ("rnn", "population_kl", "mse")}
    lo, hi = shard(B, RANK, SIZE, "even")
    lo1, hi1 = shard(B1, RANK, SIZE, "even")

    def mine(x, first=(lo, hi)):
        return torch.from_numpy(x[first[0]:first[1]].copy()).requires_grad_()

    states = data["rnn"]["states"]
    forms = [  # (what, nn4n form, keyword form, reference function of the whole batch)
        ("FiringRateLoss('l1')(state=)", lambda s: ct.FiringRateLoss("l1")(state=s),
         lambda s: ct.FiringRateLoss(metric="l1")(states=s),
         lambda s: reference.fr(s, metric="l1")),
        ("FiringRateDistLoss('cv')(states)", lambda s: ct.FiringRateDistLoss("cv")(s),
         lambda s: ct.FiringRateDistLoss(metric="cv")(states=s),
         lambda s: reference.fr_dist(s, metric="cv")),
        ("StatePredictionLoss(2)(state=)", lambda s: ct.StatePredictionLoss(2)(state=s),
         lambda s: ct.StatePredictionLoss(tau=2)(states=s),
         lambda s: reference.state_pred(s, tau=2)),
        ("EntropyLoss(5.0)(states)", lambda s: ct.EntropyLoss(5.0)(s),
         lambda s: ct.EntropyLoss(reg=5.0)(states=s),
         lambda s: reference.entropy(s, reg=5.0)),
    ]
    for what, nn4n, keyword, ref in forms:
        a, b = mine(states), mine(states)
        la, lb = nn4n(a), keyword(b)
        la.backward()
        lb.backward()
        check(float(la) == float(lb) and torch.equal(a.grad, b.grad),
              "%s differs from the keyword form" % what)
        if reference is not None:
            whole = torch.from_numpy(states.copy()).requires_grad_()
            r = ref(whole)
            r.backward()
            check(close(float(la), float(r), 1e-12), "%s = %r, reference %r"
                  % (what, float(la), float(r)))
            check(close(a.grad.numpy(), whole.grad[lo:hi].numpy(), 1e-11),
                  "%s: gradient differs from the reference" % what)
    # PopulationKL(False, 1e-3, 'sum')(state_0=, state_1=)
    kl_data = data["population_kl"]
    p, q = mine(kl_data["states"]), mine(kl_data["states1"], (lo1, hi1))
    loss = ct.PopulationKL(False, 1e-3, "sum")(state_0=p, state_1=q)
    loss.backward()
    p2, q2 = mine(kl_data["states"]), mine(kl_data["states1"], (lo1, hi1))
    ct.PopulationKL(symmetric=False, reg=1e-3, reduction="sum")(states_0=p2,
                                                                states_1=q2).backward()
    check(torch.equal(p.grad, p2.grad) and torch.equal(q.grad, q2.grad),
          "PopulationKL(False, 1e-3, 'sum') differs from the keyword form")
    if reference is not None:
        wp = torch.from_numpy(kl_data["states"].copy()).requires_grad_()
        wq = torch.from_numpy(kl_data["states1"].copy()).requires_grad_()
        r = reference.population_kl(wp, wq, symmetric=False, reg=1e-3, reduction="sum")
        r.backward()
        check(close(float(loss), float(r), 1e-12), "PopulationKL positional: value")
        check(close(p.grad.numpy(), wp.grad[lo:hi].numpy(), 1e-11)
              and close(q.grad.numpy(), wq.grad[lo1:hi1].numpy(), 1e-11),
              "PopulationKL positional: gradients")
    # MSELoss with nn4n's names (input, target) and ours (pred, label).
    m = data["mse"]
    x1, x2 = mine(m["pred"]), mine(m["pred"])
    y = torch.from_numpy(m["label"][lo:hi].copy())
    l1, l2 = ct.MSELoss()(input=x1, target=y), ct.MSELoss()(pred=x2, label=y)
    l1.backward()
    l2.backward()
    check(float(l1) == float(l2) and torch.equal(x1.grad, x2.grad), "MSELoss(input=, target=)")
    # RNNLoss(model, **lambdas): weights read from the model at each call,
    # (total, components) as nn4n returns them.
    r = data["rnn"]
    lambdas = dict(lambda_in=0.1, lambda_hid=0.2, lambda_fr=0.5, lambda_fr_sd=2)
    w = {k: torch.from_numpy(r[k].copy()) for k in ("w_in", "w_hid", "w_out")}
    model = Nn4nModel(w["w_in"], w["w_hid"], w["w_out"])
    crit = ct.RNNLoss(model, **lambdas)
    s1, o1 = mine(r["states"]), mine(r["pred"])
    label = torch.from_numpy(r["label"][lo:hi].copy())
    total, losses = crit(pred=o1, label=label, states=s1)
    check(losses.shape == (5,), "RNNLoss components: shape %s (mse, in, hid, fr, fr_sd)"
          % (tuple(losses.shape),))
    losses.sum().backward()   # the components are differentiable
    wl = {k: v.clone().requires_grad_() for k, v in w.items()}
    s2, o2 = mine(r["states"]), mine(r["pred"])
    total2, _ = ct.RNNLoss(**lambdas)(o2, label, states=s2, **wl)
    total2.backward()
    check(float(total) == float(total2), "RNNLoss(model) total differs from passing weights")
    check(close(float(losses.sum()), float(total), 1e-14), "components do not add up")
    check(torch.equal(s1.grad, s2.grad) and torch.equal(o1.grad, o2.grad),
          "RNNLoss(model): gradients of states and pred")
    check(torch.equal(model.recurrent_layer.hidden_layer.weight.grad, wl["w_hid"].grad)
          and torch.equal(model.recurrent_layer.input_layer.weight.grad, wl["w_in"].grad),
          "RNNLoss(model): the model's weights get the weight gradients")
    with torch.no_grad():
        model.recurrent_layer.hidden_layer.weight.mul_(2)
    again, _ = crit(pred=o1.detach(), label=label, states=s1.detach())
    check(float(again) != float(total), "RNNLoss(model) reads the weights at each call")
    # RNNConnectivityLoss(layer, metric)(model), nn4n's form, against the
    # weights passed and the reference.
    if "rnn_conn" in TYPES:
        for layer, metric in (("all", "fro"), ("hidden", "l1")):
            conn_model = Nn4nModel(w["w_in"], w["w_hid"], w["w_out"])
            by_model = ct.RNNConnectivityLoss(layer, metric)(conn_model)
            by_model.backward()
            wc = {k: v.clone().requires_grad_() for k, v in w.items()}
            by_weights = ct.RNNConnectivityLoss(layer=layer, metric=metric)(**wc)
            by_weights.backward()
            check(float(by_model) == float(by_weights)
                  and torch.equal(conn_model.recurrent_layer.hidden_layer.weight.grad,
                                  wc["w_hid"].grad),
                  "RNNConnectivityLoss(%r, %r)(model) differs from the weights' form"
                  % (layer, metric))
            if reference is not None:
                check(close(float(by_model), float(reference.rnn_conn(
                    **w, layer=layer, metric=metric)), 1e-12),
                      "RNNConnectivityLoss(%r, %r): value against the reference"
                      % (layer, metric))
    # CompositeLoss with nn4n's input dictionary (code's and docs' keys);
    # per-term values are differentiable.
    comp = ct.CompositeLoss({"act": {"type": "fr", "lambda": 0.1},
                             "task": {"type": "mse", "lambda": 2.0}})
    sa, xa = mine(states), mine(m["pred"])
    total, parts = comp({"act": {"state": sa}, "task": {"input": xa, "target": y}})
    sb, xb = mine(states), mine(m["pred"])
    total_b, _ = comp(states=sb, pred=xb, label=y)
    check(float(total) == float(total_b), "CompositeLoss with nn4n's dictionary")
    (parts["act"] + parts["task"]).backward()
    total_b.backward()
    check(torch.equal(sa.grad, sb.grad) and torch.equal(xa.grad, xb.grad),
          "CompositeLoss parts back-propagate as the total")
    # One part alone, or the parts with other weights: the gradient of
    # that combination of the terms, bitwise that of a loss so weighted.
    for w_act, w_task, use in ((1, 0, lambda p: p["act"]), (0, 1, lambda p: p["task"]),
                               (2, -0.5, lambda p: 2 * p["act"] - 0.5 * p["task"])):
        sa, xa = mine(states), mine(m["pred"])
        _, parts = comp(states=sa, pred=xa, label=y)
        use(parts).backward()
        cfg = {"act": {"type": "fr", "lambda": 0.1 * w_act},
               "task": {"type": "mse", "lambda": 2.0 * w_task}}
        sb, xb = mine(states), mine(m["pred"])
        ct.CompositeLoss(cfg)(states=sb, pred=xb, label=y)[0].backward()
        check(torch.equal(sa.grad, sb.grad) and torch.equal(xa.grad, xb.grad),
              "CompositeLoss parts weighted (%g, %g) in backward: the gradient of the loss "
              "weighted so" % (w_act, w_task))
    # Terms on different tensors in one role (two populations): each set of
    # inputs its own loss, one reduction; values, total and gradients those
    # of the terms alone, bitwise.
    cfg = {"a": {"type": "fr", "params": {"metric": "l1"}, "lambda": 0.5},
           "b": {"type": "fr", "lambda": 2.0}, "d": {"type": "fr_dist", "lambda": 0.3},
           "task": {"type": "mse", "lambda": 1.5}}
    two = ct.CompositeLoss(cfg)
    other = torch.from_numpy(data["population_kl"]["states1"][lo1:hi1].copy())
    sets = ((("a", "d"), lambda: {"states": mine(states)}),
            (("b",), lambda: {"states": other.clone().requires_grad_()}),
            (("task",), lambda: {"pred": mine(m["pred"]), "label": y}))
    for only in (None, "b"):
        s1, s2, xt = mine(states), other.clone().requires_grad_(), mine(m["pred"])
        total, parts = two({"a": {"states": s1}, "b": {"state": s2}, "d": {"states": s1},
                            "task": {"input": xt, "target": y}})
        expect = 0.0
        for name in cfg:
            expect += float(parts[name])
        check(float(total) == expect, "two populations: the total is the sum in order")
        (total if only is None else parts[only]).backward()
        got = {"a": s1.grad, "b": s2.grad, "task": xt.grad}
        for names, inputs in sets:
            sub = {n: dict(cfg[n], **({"lambda": 0.0} if only not in (None, n) else {}))
                   for n in names}
            x = inputs()
            _, p_alone = ct.CompositeLoss(sub)(**x)
            sum(p_alone.values()).backward()
            check(all(float(parts[n]) == float(p_alone[n]) or only for n in names),
                  "two populations: %s's values are those of the terms alone" % (names,))
            g = next(v for v in x.values() if v.requires_grad).grad
            check(torch.equal(got[names[0]], g),
                  "two populations: the gradient of %s (back-propagating %s) is that of "
                  "the terms alone" % (names, only or "the total"))
    # The components of one term (RNNLoss) cannot be weighted apart.
    crit_c = ct.RNNLoss(lambda_fr=0.5)
    _, losses = crit_c(mine(r["pred"]), label, states=mine(r["states"]),
                       **{k: v.clone().requires_grad_() for k, v in w.items()})
    try:
        losses[1].backward()
        got = "no error"
    except RuntimeError as exc:
        got = str(exc)
    check("back-propagate the total" in got, "RNNLoss losses[1].backward(): %s" % got)
    single = ct.CompositeLoss({"a": {"type": "fr", "lambda": 0.5}})
    sc = mine(states)
    single(states=sc)[1]["a"].backward()
    check(sc.grad is not None, "parts['a'].backward() of a one-term CompositeLoss")
    note("call forms: nn4n's positional parameters, argument names, RNNLoss(model), "
         "CompositeLoss dictionaries")


def check_catalogue():
    """Every term type of the library has a criterion class in both front
    ends and a test case here."""
    tested = set().union(*(case_types(c) for c in CASES))
    for t in TYPES:
        name = ctrnnloss._core.CRITERION_OF_TYPE.get(t)
        check(name is not None and isinstance(getattr(ct, name, None), type)
              and isinstance(getattr(cnp, name, None), type),
              "term type %s has no criterion class" % t)
        check(t in tested, "term type %s has no test case in python_binding.py" % t)


# ------------------------------------------------------------ compare ---

def compare_cases(saved):
    """Every split and the time-major layout give the 1-rank bits."""
    count = 0
    for case in CASES:
        if not available(case):
            continue
        for dtype in (np.float32, np.float64):
            key = "%s/%s" % (case, np.dtype(dtype).name)
            for split, time_major in (("even", False), ("empty", False), ("even", True)):
                what = "%s %s split %s%s" % (case, np.dtype(dtype).name, split,
                                             " time-major" if time_major else "")
                total, values, grads = torch_results(case, dtype, split, time_major)
                check(total == saved[key + "/total"], "%s: total %r, 1 rank %r"
                      % (what, total, saved[key + "/total"]))
                for name, v in values.items():
                    check(same_bits(np.float64(v) if np.isscalar(v) else v,
                                    saved["%s/value/%s" % (key, name)]),
                          "%s: value %s differs from 1 rank" % (what, name))
                for role, g in grads.items():
                    if g.ndim == 2:   # replicated weights: the same global gradient everywhere
                        check(same_bits(g, saved["%s/grad/%s" % (key, role)]),
                              "%s: gradient of %s differs from 1 rank" % (what, role))
                whole = gather_batch({r: g for r, g in grads.items() if g.ndim == 3})
                for role, g in (whole or {}).items():
                    check(same_bits(g, saved["%s/grad/%s" % (key, role)]),
                          "%s: gradient of %s differs from 1 rank" % (what, role))
                count += 1
    note("compare: %d evaluations bitwise against 1 rank" % count)


# --------------------------------------------------------------- errors ---

def expect_error(what, cls, needle, run):
    """run() must raise cls on every rank, with the same message everywhere,
    containing needle."""
    try:
        run()
        got = ("no error", "")
    except Exception as exc:  # noqa: BLE001 - the class is what is checked
        got = (type(exc).__name__, str(exc))
        check(isinstance(exc, cls), "%s: raised %s (%s), expected %s"
              % (what, type(exc).__name__, exc, cls.__name__))
    check(got[0] != "no error", "%s: no error raised, expected %s" % (what, cls.__name__))
    every = COMM.allgather(got)
    check(all(g == every[0] for g in every), "%s: ranks disagree: %s" % (what, every))
    check(needle in got[1], "%s: message %r lacks %r" % (what, got[1], needle))


def check_errors():
    """A bad input on the last rank only: every rank raises the library's
    error, and the criterion works again afterwards."""
    whole = case_inputs("hebbian", np.float64)
    lo, hi = shard(B, RANK, SIZE, "even")
    states = torch.from_numpy(whole["states"][lo:hi])
    weights = torch.from_numpy(whole["w_hebb"])
    hebb = ct.HebbianLoss()

    def on_last(bad):
        return bad if RANK == LAST else states

    expect_error("int64 states", ctrnnloss.InvalidArgumentError,
                 "rank %d: states is a torch.int64 tensor; ctrnnloss takes float32 or float64"
                 % LAST,
                 lambda: hebb(on_last(states.long()), weights))
    expect_error("float16 weights", ctrnnloss.InvalidArgumentError,
                 "rank %d: w_hebb is a torch.float16 tensor" % LAST,
                 lambda: hebb(states, weights.half() if RANK == LAST else weights))
    wide = torch.zeros(hi - lo, T, 2 * N, dtype=torch.float64)
    expect_error("non-contiguous states", ctrnnloss.InvalidArgumentError,
                 "last dimension has stride 2",
                 lambda: hebb(on_last(wide[:, :, ::2]), weights))
    expect_error("non-contiguous weights", ctrnnloss.InvalidArgumentError,
                 "w_hebb is a matrix whose rows are not contiguous",
                 lambda: hebb(states, torch.zeros(N, 2 * N, dtype=torch.float64)[:, ::2]))
    if SIZE > 1:
        expect_error("weights bad in different ways", ctrnnloss.InvalidArgumentError,
                     "rank 0: w_hebb is a torch.int64 tensor; ctrnnloss takes float32 or "
                     "float64 (rank 1: w_hebb is a torch.float16 tensor",
                     lambda: hebb(states, weights.long() if RANK == 0 else weights.half()))
    # CUDA tensors take the same path as any other device: the meta device
    # stands in where there is no GPU.
    device = "cuda" if torch.cuda.is_available() else "meta"
    expect_error("%s states" % device, ctrnnloss.InvalidArgumentError,
                 "a tensor on device '%s" % device,
                 lambda: hebb(on_last(states.to(device)), weights))
    expect_error("2-D states", ctrnnloss.InvalidArgumentError, "a 2-D array; states is (B, T, N)",
                 lambda: hebb(on_last(states[:, 0]), weights))
    expect_error("weights of the wrong size", ctrnnloss.InvalidArgumentError, "w_hebb",
                 lambda: hebb(states, torch.zeros(N + 1, N + 1, dtype=torch.float64)))
    bad = states.clone()
    if hi > lo:
        bad[0, 1, 2] = float("nan")
    # HebbianLoss checks its rates itself (no moments pass): the message
    # names the term, as cross_entropy's do.
    expect_error("NaN in states", ctrnnloss.NonFiniteError,
                 "rank %d: term 'hebbian' (hebbian): states[b=0, t=1, i=2] is NaN" % LAST,
                 lambda: hebb(on_last(bad), weights))
    mse = ct.MSELoss()
    data = case_inputs("mse", np.float64)
    pred, label = torch.from_numpy(data["pred"][lo:hi]), torch.from_numpy(data["label"][lo:hi])
    expect_error("pred and label differ", ctrnnloss.InvalidArgumentError,
                 "rank %d: pred (%d, %d, %d) and label (%d, %d, %d) differ"
                 % (LAST, hi - lo, T, K, hi - lo, T, K + 1),
                 lambda: mse(pred, torch.zeros(hi - lo, T, K + 1, dtype=torch.float64)
                             if RANK == LAST else label))
    if SIZE > 1:
        expect_error("time steps differ across ranks", ctrnnloss.InvalidArgumentError, "time",
                     lambda: hebb(on_last(states[:, :T - 1]), weights))
    expect_error("a missing input", ctrnnloss.InvalidArgumentError, "w_hebb",
                 lambda: hebb(states))
    expect_error("a NumPy array given to the torch criterion", ctrnnloss.InvalidArgumentError,
                 "not a torch.Tensor", lambda: hebb(states.numpy(), weights))
    expect_error("big-endian NumPy array", ctrnnloss.InvalidArgumentError,
                 "native byte order",
                 lambda: cnp.HebbianLoss()(states.numpy().astype(">f8"), weights.numpy()))
    # Parameters: the library's messages, when the criterion is made.
    expect_error("unknown parameter", ctrnnloss.InvalidArgumentError,
                 "unknown parameter 'metrc' (known: metric)",
                 lambda: ct.FiringRateLoss(metrc="l1"))
    expect_error("unknown choice", ctrnnloss.InvalidArgumentError,
                 "parameter metric: unknown value 'l3' (one of: l2, l1)",
                 lambda: ct.FiringRateLoss(metric="l3"))
    expect_error("a parameter out of range", ctrnnloss.InvalidArgumentError,
                 "parameter reg", lambda: ct.PopulationKL(reg=-1.0))
    expect_error("an unknown type", ctrnnloss.InvalidArgumentError, "unknown type 'frr'",
                 lambda: ct.CompositeLoss({"x": {"type": "frr"}}))
    # A call's arguments wrong on one rank only: the same TypeError on
    # every rank, nobody left waiting.
    expect_error("too many arguments on one rank", TypeError,
                 "HebbianLoss takes at most 2 inputs",
                 lambda: hebb(states, weights, weights) if RANK == LAST else hebb(states, weights))
    expect_error("an unknown argument on one rank", TypeError, "unexpected input 'rates'",
                 lambda: hebb(rates=states, weights=weights) if RANK == LAST
                 else hebb(states, weights))
    expect_error("an unknown argument (numpy) on one rank", TypeError, "unexpected input",
                 lambda: cnp.HebbianLoss()(rates=states.numpy(), weights=weights.numpy())
                 if RANK == LAST else cnp.HebbianLoss()(states.numpy(), weights.numpy()))
    comp = ct.CompositeLoss({"a": {"type": "fr"}, "b": {"type": "fr_dist"}})
    expect_error("two tensors for one term's role on one rank", ValueError,
                 "two different values for input 'states' of term 'a'",
                 lambda: comp({"a": {"states": states}}, states=states.clone())
                 if RANK == LAST else comp(states=states))
    expect_error("an input for a term that is not there", TypeError,
                 "no term named 'c' (terms: a, b)",
                 lambda: comp({"c": {"states": states}}))
    # A bad parameter on one rank only, at construction.
    expect_error("a bad parameter on one rank", ctrnnloss.InvalidArgumentError,
                 "unknown value 'l3'",
                 lambda: ct.FiringRateLoss(metric="l3" if RANK == LAST else "l1"))
    expect_error("too many positional parameters on one rank", TypeError,
                 "takes at most 1 positional parameters",
                 lambda: ct.FiringRateLoss("l1", 2) if RANK == LAST else ct.FiringRateLoss("l1"))
    # After all of that the criterion works, and agrees with a fresh one.
    good = float(hebb(states, weights))
    check(good == float(ct.HebbianLoss()(states, weights)), "a criterion works after errors")
    note("errors: checked on rank %d of %d" % (LAST, SIZE))


# ---------------------------------------------------------- time blocks ---

# Time sharding: long inputs (several CRL_TIME_UNIT units) cut into blocks of
# the (batch, time) plane, one per rank.  TIME_B = 1: a single trial split
# along time; BLOCK_B elements: a batch x time split.
TIME_T, TIME_B, BLOCK_B = 1300, 1, 3
UNIT = ctrnnloss.TIME_UNIT
# Every case with a batched input (a new term type's case joins by itself).
BLOCK_CASES = [c for c in CASES if set(CASES[c][2]) & set(ctrnnloss._lib.BATCHED_ROLES)]


def tiling(kind, size):
    """[(b_lo, b_hi, t_lo, t_hi)] of each rank: 'time' (one trial, the units
    shared out by time_slice, an empty rank where there are more ranks than
    units) or 'batch x time' (BLOCK_B elements: at 2 ranks a time split of
    the whole batch, at 3 a whole-time block beside a time-split one, at 4 a
    2 x 2 grid, beyond that 2 x (size // 2) and empty ranks)."""
    if kind == "time":
        return [(0, TIME_B, s.start, s.stop) for s in
                (ctrnnloss.time_slice(TIME_T, size, k) for k in range(size))]
    b, t = BLOCK_B, TIME_T
    tilings = {1: [(0, b, 0, t)], 2: [(0, b, 0, 2 * UNIT), (0, b, 2 * UNIT, t)],
               3: [(0, 1, 0, t), (1, b, 0, UNIT), (1, b, UNIT, t)],
               4: [(0, 1, 0, 2 * UNIT), (0, 1, 2 * UNIT, t), (1, b, 0, 2 * UNIT),
                   (1, b, 2 * UNIT, t)]}
    if size in tilings:
        return tilings[size]
    columns = size // 2
    out = [(rb, hb, s.start, s.stop) for rb, hb in ((0, 1), (1, b))
           for s in (ctrnnloss.time_slice(t, columns, k) for k in range(columns))]
    return out + [(0, 0, 0, 0)] * (size - len(out))


def block_inputs(whole, box, time_major=False):
    """This rank's torch views of the box (b_lo, b_hi, t_lo, t_hi) of whole,
    batch-major, or (T, B, .) views of time-major copies."""
    b_lo, b_hi, t_lo, t_hi = box
    out = {}
    for role, x in whole.items():
        t = torch.from_numpy(x)
        if x.ndim == 3:
            if time_major:
                t = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))[t_lo:t_hi,
                                                                                b_lo:b_hi]
            else:
                t = t[b_lo:b_hi, t_lo:t_hi]
        out[role] = t.requires_grad_(role not in ctrnnloss._core.NO_GRADIENT)
    return out


def evaluate_torch(case, inputs, time_major=False, comm=None, criterion=None, **options):
    """(total, values, {role: gradient (batch-major)}) of the torch criterion
    of a case on inputs by role; options: block=."""
    criterion = criterion or make_criterion(ct, case, batch_first=not time_major, comm=comm)
    call(criterion, case, inputs, **options).backward()
    grads = {}
    for role, t in inputs.items():
        if role not in ctrnnloss._core.NO_GRADIENT:
            g = t.grad.numpy()
            grads[role] = g.transpose(1, 0, 2) if time_major and g.ndim == 3 else g
    return criterion.total, criterion.values, grads


def same_results(what, got, want):
    """Bitwise equal (total, values, gradients); the batched gradients only
    where got has them of the same shape (the caller assembles blocks)."""
    total, values, grads = got
    check(total == want[0], "%s: total %r, whole input %r" % (what, total, want[0]))
    check(set(values) == set(want[1]), "%s: values %s, whole input %s"
          % (what, sorted(values), sorted(want[1])))
    for name, v in values.items():
        check(name in want[1] and same_bits(np.float64(v) if np.isscalar(v) else v,
                                            np.float64(want[1][name]) if np.isscalar(
                                                want[1][name]) else want[1][name]),
              "%s: value %s = %r, whole input %r" % (what, name, v, want[1].get(name)))
    for role, g in grads.items():
        check(same_bits(g, want[2][role]), "%s: gradient of %s differs from the whole input's"
              % (what, role))


def assemble(what, boxes, grads, shape_of):
    """Rank 0: the batched gradients of every rank's box put in place in
    global arrays ({role: array}); an element covered twice or never fails."""
    every = COMM.gather(grads, root=0)
    if RANK != 0:
        return None
    out = {}
    for role in grads:
        full = np.full(shape_of[role], np.nan, dtype=grads[role].dtype)
        count = np.zeros(shape_of[role][:2], dtype=np.int64)
        for (b_lo, b_hi, t_lo, t_hi), mine in zip(boxes, every):
            check(mine[role].shape == (b_hi - b_lo, t_hi - t_lo, shape_of[role][2]),
                  "%s: rank gradient of %s has shape %s" % (what, role, mine[role].shape))
            full[b_lo:b_hi, t_lo:t_hi] = mine[role]
            count[b_lo:b_hi, t_lo:t_hi] += 1
        check(bool(np.all(count == 1)), "%s: the blocks do not tile the plane" % what)
        out[role] = full
    return out


def check_time_blocks(kinds=("time", "batch x time")):
    """Every case on the blocks of each tiling at this rank count: values
    and assembled gradients bitwise those of the whole input on one rank
    (MPI.COMM_SELF), NumPy's bitwise torch's, time-major too (float64); the
    whole input against scripts/reference.py; the criterion used for blocks
    then gives whole-element calls their usual bits."""
    count = 0
    for kind in kinds:
        boxes = tiling(kind, SIZE)
        box = boxes[RANK]
        batch = TIME_B if kind == "time" else BLOCK_B
        block = ctrnnloss.Block(batch, box[0], TIME_T, box[2])
        for case in BLOCK_CASES:
            if not available(case):
                continue
            for dtype in (np.float32, np.float64):
                what = "%s %s, %s blocks at %d ranks" % (case, np.dtype(dtype).name, kind, SIZE)
                whole = case_inputs(case, dtype, batch, TIME_T, batch, TIME_T)
                shapes = {r: x.shape for r, x in whole.items() if x.ndim == 3}
                want = evaluate_torch(case, block_inputs(whole, (0, batch, 0, TIME_T)),
                                      comm=MPI.COMM_SELF)
                if RANK == 0:
                    check_reference(case, dtype, *want, whole=whole, what="%s %s, %s input "
                                    "(%d, %d)" % (case, np.dtype(dtype).name, kind, batch,
                                                  TIME_T))
                layouts = (False, True) if dtype == np.float64 else (False,)
                for time_major in layouts:
                    label = what + (" time-major" if time_major else "")
                    criterion = make_criterion(ct, case, batch_first=not time_major)
                    try:
                        got = evaluate_torch(case, block_inputs(whole, box, time_major),
                                             time_major, criterion=criterion, block=block)
                    except ctrnnloss.Error as exc:
                        check(False, "%s: %s: %s" % (label, type(exc).__name__, exc))
                        continue
                    count += 1
                    replicated = {r: g for r, g in got[2].items() if g.ndim == 2}
                    same_results(label, got[:2] + (replicated,), want)
                    full = assemble(label, boxes, {r: g for r, g in got[2].items()
                                                   if g.ndim == 3}, shapes)
                    for role, g in (full or {}).items():
                        check(same_bits(g, want[2][role]), "%s: gradient of %s, assembled "
                              "from the blocks, differs from the whole input's" % (label, role))
                    if time_major:
                        continue
                    check_numpy_block(case, whole, box, block, got, label)
                    # The same criterion on whole elements again, no block.
                    lo, hi = shard(batch, RANK, SIZE, "even")
                    again = evaluate_torch(case, block_inputs(whole, (lo, hi, 0, TIME_T)),
                                           criterion=criterion)
                    fresh = evaluate_torch(case, block_inputs(whole, (lo, hi, 0, TIME_T)))
                    same_results(label + ", then whole elements without a block", again, fresh)
    note("time blocks: %d block evaluations bitwise against the whole input" % count)


def check_group_block():
    """A CompositeLoss whose terms read different tensors in one role (two
    populations, several losses reduced together) on blocks: the values
    and gradients of the whole input on one rank."""
    cfg = {"a": {"type": "fr", "params": {"metric": "l1"}, "lambda": 0.5},
           "b": {"type": "fr_dist", "lambda": 2.0}}
    box = tiling("batch x time", SIZE)[RANK]
    block = ctrnnloss.Block(BLOCK_B, box[0], TIME_T, box[2])
    whole = case_inputs("population_kl", np.float64, BLOCK_B, TIME_T, BLOCK_B, TIME_T)

    def run(box, comm=None, block=None):
        mine = block_inputs(whole, box)
        total, parts = ct.CompositeLoss(cfg, comm=comm)(
            {"a": {"states": mine["states"]}, "b": {"states": mine["states1"]}}, block=block)
        total.backward()
        return float(total), {k: float(v) for k, v in parts.items()}, \
            mine["states"].grad.numpy(), mine["states1"].grad.numpy()

    want = run((0, BLOCK_B, 0, TIME_T), comm=MPI.COMM_SELF)
    try:
        got = run(box, block=block)
    except ctrnnloss.Error as exc:
        check(False, "two populations on blocks: %s: %s" % (type(exc).__name__, exc))
        return
    check(got[:2] == want[:2], "two populations on blocks: %s, whole input %s"
          % (got[:2], want[:2]))
    b_lo, b_hi, t_lo, t_hi = box
    check(same_bits(got[2], want[2][b_lo:b_hi, t_lo:t_hi])
          and same_bits(got[3], want[3][b_lo:b_hi, t_lo:t_hi]),
          "two populations on blocks: gradients differ from the whole input's")


def check_empty_blocks():
    """Rank 0 holds the whole input, the others empty blocks of every form
    (no steps, no elements, neither): the whole input's bits, torch and
    NumPy."""
    whole = case_inputs("fr_dist_cv", np.float64, TIME_B, TIME_T)["states"]
    forms = [whole, whole[:, :0], whole[:0, :0], whole[:0, :5]]
    mine = forms[RANK % len(forms)] if RANK else whole
    block = ctrnnloss.Block(TIME_B, 0, TIME_T, 0)
    want = evaluate_torch("fr_dist_cv", {"states": torch.from_numpy(whole).requires_grad_()},
                          comm=MPI.COMM_SELF)
    try:
        x = torch.from_numpy(mine).requires_grad_()
        got = evaluate_torch("fr_dist_cv", {"states": x}, block=block)
        result = cnp.FiringRateDistLoss(metric="cv")(mine, grad=True, block=block)
    except ctrnnloss.Error as exc:
        check(False, "empty blocks: %s: %s" % (type(exc).__name__, exc))
        return
    check(got[0] == want[0] and result.total == want[0],
          "empty blocks: total %r (numpy %r), whole input %r" % (got[0], result.total, want[0]))
    check(got[2]["states"].shape == mine.shape and result.grads["states"].shape == mine.shape,
          "empty blocks: gradient shapes %s (numpy %s), input %s" % (
              got[2]["states"].shape, result.grads["states"].shape, mine.shape))
    if RANK == 0:
        check(same_bits(got[2]["states"], want[2]["states"])
              and same_bits(result.grads["states"], want[2]["states"]),
              "empty blocks: rank 0's gradient differs from the whole input's")


def check_states1_block():
    """PopulationKL with states1 on a plane of its own (B1 = 2, T1 = 700,
    split along time, block1=) beside states on the batch x time tiling:
    the whole inputs' bits, torch and NumPy; block1 alone is refused."""
    b1, t1 = 2, 700
    box = tiling("batch x time", SIZE)[RANK]
    steps = ctrnnloss.time_slice(t1, SIZE, RANK)
    block = ctrnnloss.Block(BLOCK_B, box[0], TIME_T, box[2])
    block1 = ctrnnloss.Block(b1, 0, t1, steps.start)
    whole = case_inputs("population_kl", np.float64, BLOCK_B, TIME_T, b1, t1)
    params = CASES["population_kl"][1]
    want = evaluate_torch("population_kl", block_inputs(whole, (0, BLOCK_B, 0, TIME_T)),
                          comm=MPI.COMM_SELF)
    b_lo, b_hi, t_lo, t_hi = box
    p = torch.from_numpy(whole["states"][b_lo:b_hi, t_lo:t_hi]).requires_grad_()
    q = torch.from_numpy(whole["states1"][:, steps]).requires_grad_()
    criterion = ct.PopulationKL(**params)
    try:
        criterion(p, q, block=block, block1=block1).backward()
        result = cnp.PopulationKL(**params)(p.detach().numpy(), q.detach().numpy(), grad=True,
                                            block=block, block1=block1)
    except ctrnnloss.Error as exc:
        check(False, "states1's own block: %s: %s" % (type(exc).__name__, exc))
        return
    check(criterion.total == want[0] and result.total == want[0],
          "states1's own block: total %r (numpy %r), whole inputs %r"
          % (criterion.total, result.total, want[0]))
    for what, grads in (("torch", {"states": p.grad.numpy(), "states1": q.grad.numpy()}),
                        ("numpy", {"states": result.grads["states_0"],
                                   "states1": result.grads["states_1"]})):
        check(same_bits(grads["states"], want[2]["states"][b_lo:b_hi, t_lo:t_hi])
              and same_bits(grads["states1"], want[2]["states1"][:, steps]),
              "states1's own block (%s): gradients differ from the whole inputs'" % what)
    expect_error("block1 without block", ValueError, "block1 (the block of states1) needs "
                 "block= as well", lambda: criterion(p, q, block1=block1))


def check_numpy_block(case, whole, box, block, got, what):
    """ctrnnloss.numpy on the same block gives the torch front end's bits."""
    kind, _, roles = CASES[case]
    b_lo, b_hi, t_lo, t_hi = box
    mine = {r: x[b_lo:b_hi, t_lo:t_hi] if x.ndim == 3 else x for r, x in whole.items()}
    criterion = make_criterion(cnp, case)
    if kind == "CompositeLoss":
        result = criterion(grad=True, block=block, **mine)
        grads = result.grads
    else:
        names = {role: arg for arg, role, _ in ctrnnloss._core.CRITERIA[kind].arguments}
        result = criterion(grad=True, block=block, **{names[r]: mine[r] for r in roles})
        grads = {r: result.grads[names[r]] for r in roles if names[r] in result.grads}
    same_results(what + " (numpy)", (result.total, result.values, grads), got)


def check_time_slice():
    """TIME_UNIT is the header's CRL_TIME_UNIT; time_slice: unit-aligned,
    consecutive, covering, empty parts at unit boundaries; refuses nonsense."""
    with open(os.path.join(TOP, "include", "ctrnnloss.h")) as f:
        header = re.search(r"^#define CRL_TIME_UNIT (\d+)", f.read(), re.M)
    check(header is not None and int(header.group(1)) == UNIT,
          "ctrnnloss.TIME_UNIT %d is not CRL_TIME_UNIT of include/ctrnnloss.h (%s)"
          % (UNIT, header and header.group(1)))
    for time in (1, UNIT - 1, UNIT, UNIT + 1, 3 * UNIT, 1300):
        for parts in (1, 2, 3, 4, 7):
            slices = [ctrnnloss.time_slice(time, parts, k) for k in range(parts)]
            ok = slices[0].start == 0 and slices[-1].stop == time and all(
                a.stop == b.start for a, b in zip(slices, slices[1:])) and all(
                s.start % UNIT == 0 and (s.stop % UNIT == 0 or s.stop == time)
                and s.stop >= s.start for s in slices)
            check(ok, "time_slice(%d, %d, k): %s" % (time, parts, slices))
    check(ctrnnloss.time_slice(1300, 4, 0) == slice(0, 0), "time_slice(1300, 4, 0) is empty")
    for args in ((1300, 0, 0), (1300, 2, 2), (-1, 1, 0)):
        try:
            ctrnnloss.time_slice(*args)
            got = "no error"
        except ValueError as exc:
            got = str(exc)
        check("time_slice" in got, "time_slice%s: %s" % (args, got))


def check_block_errors():
    """Blocks wrong on one rank (or disagreeing) raise the same error on
    every rank; the criterion works afterwards."""
    boxes = tiling("time", SIZE)
    b_lo, b_hi, t_lo, t_hi = boxes[RANK]
    whole = case_inputs("fr_dist_cv", np.float64, TIME_B, TIME_T)["states"]
    states = torch.from_numpy(whole[:, t_lo:t_hi])
    good = ctrnnloss.Block(TIME_B, 0, TIME_T, t_lo)
    crit = ct.FiringRateDistLoss(metric="cv")
    ncrit = cnp.FiringRateDistLoss(metric="cv")

    def on_last(bad, usual=good):
        return bad if RANK == LAST else usual

    expect_error("a negative time offset on one rank", ValueError,
                 "ctrnnloss: block.time_offset = -1; it must be >= 0",
                 lambda: crit(states, block=on_last(good._replace(time_offset=-1))))
    expect_error("a negative time offset on one rank (numpy)", ValueError,
                 "ctrnnloss: block.time_offset = -1; it must be >= 0",
                 lambda: ncrit(states.numpy(), block=on_last(good._replace(time_offset=-1))))
    expect_error("T = 0 in a block", ValueError, "block.time = 0; it must be >= 1",
                 lambda: crit(states, block=good._replace(time=0)))
    expect_error("a float offset", TypeError, "block.batch_offset must be an integer, not 0.0",
                 lambda: crit(states, block=on_last(good._replace(batch_offset=0.0))))
    expect_error("a block that is not one", TypeError, "block must be a ctrnnloss.Block",
                 lambda: crit(states, block=on_last((TIME_B, 0, TIME_T))))
    expect_error("CompositeLoss, a bad block", ValueError, "block.batch = 0",
                 lambda: ct.CompositeLoss({"a": {"type": "fr"}})(
                     states=states, block=good._replace(batch=0)))
    # What the library checks: alignment, disagreement, tiling, bounds.
    halves = [(0, UNIT // 2), (UNIT // 2, TIME_T)]
    if SIZE >= 2:
        lo, hi = halves[RANK] if RANK < 2 else (0, 0)
        mis = torch.from_numpy(whole[:, lo:hi])
        expect_error("a block boundary off the units", ctrnnloss.InvalidArgumentError,
                     "rank 0: states: block steps 0 .. %d: a block starts at a multiple of %d "
                     "steps and ends at one or at T = %d" % (UNIT // 2 - 1, UNIT, TIME_T),
                     lambda: crit(mis, block=good._replace(time_offset=lo)))
        # The library's agreement names the blocks (its label for the check).
        expect_error("a block on some ranks, none on the others",
                     ctrnnloss.InvalidArgumentError, "blocks (crl_loss_set_block)",
                     lambda: crit(states, block=None if RANK == LAST else good))
        expect_error("ranks' blocks with different B", ctrnnloss.InvalidArgumentError,
                     "ranks disagree on states: batch of the blocks (from %d to %d)"
                     % (TIME_B, TIME_B + 1), lambda: crit(states, block=on_last(good._replace(
                         batch=TIME_B + 1))))
        full = torch.from_numpy(whole)
        expect_error("blocks that overlap (all the whole input)",
                     ctrnnloss.InvalidArgumentError, "the plane of B = %d and T = %d has %d"
                     % (TIME_B, TIME_T, TIME_B * TIME_T),
                     lambda: crit(full, block=ctrnnloss.Block(TIME_B, 0, TIME_T, 0)))
    expect_error("a block past T", ctrnnloss.InvalidArgumentError,
                 "lie beyond T = %d" % (TIME_T - 1),
                 lambda: crit(states, block=good._replace(time=TIME_T - 1)))
    expect_error("a block past B", ctrnnloss.InvalidArgumentError,
                 "rank %d: states: block elements %d .. %d lie beyond the batch of %d"
                 % (LAST, TIME_B, TIME_B, TIME_B),
                 lambda: crit(states, block=on_last(good._replace(batch_offset=TIME_B))))
    # After all of that, blocks and whole elements still work.
    want = evaluate_torch("fr_dist_cv", {"states": torch.from_numpy(whole).requires_grad_()},
                          comm=MPI.COMM_SELF)
    got = evaluate_torch("fr_dist_cv", {"states": states.clone().requires_grad_()},
                         block=good, criterion=crit)
    same_results("a block after errors", got[:2] + ({},), want)
    note("block errors: checked on rank %d of %d" % (LAST, SIZE))


# ------------------------------------------------------------- training ---

TRAIN_ARGS = ["--dtype", "float64", "--batch", "6", "--time", "12", "--hidden", "8",
              "--lambda-hid", "0.1", "--lambda-fr", "0.01", "--lambda-fr-sd", "0.01"]
LR = 0.5


def training_step():
    """One step of the example's training at this rank count: the loss and
    the rate and output gradients of the criterion on the network's rates
    (the same inputs at every rank count), the direct W_hid gradient, and
    the loss and weights of one real step of train_step."""
    args = train_ctrnn.parse(TRAIN_ARGS)
    model, criterion, _ = train_ctrnn.make(args, COMM)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    u, y = train_ctrnn.decision_task(args.batch, args.time, torch.Generator().manual_seed(7),
                                     args.dtype)
    mine = train_ctrnn.shard(args.batch, RANK, SIZE)
    out = {}
    # The criterion on the rates of the whole batch (computed the same way at
    # every rank count), this rank's slice as leaves.
    with torch.no_grad():
        rates, outputs = model(u)
    r = rates[mine].clone().requires_grad_()
    o = outputs[mine].clone().requires_grad_()
    w = model.w_hid.weight.detach().clone().requires_grad_()
    criterion(o, y[mine], states=r, w_hid=w)[0].backward()
    out["loss"] = np.float64(criterion.total)
    out["d_w_hid"] = w.grad.numpy()
    whole = gather_batch({"rates": r.grad.numpy(), "outputs": o.grad.numpy()})
    out.update({"d_" + k: v for k, v in (whole or {}).items()})
    # One real step: forward on the slice, backward, allreduce, update.
    out["step_loss"] = np.float64(train_ctrnn.train_step(model, criterion, optimizer,
                                                         u[mine], y[mine], COMM))
    for name, p in model.named_parameters():
        out["weight/" + name] = p.detach().numpy().copy()
    return out


def compare_training(saved):
    got = training_step()
    check(got["loss"] == saved["loss"], "training: loss %r, 1 rank %r"
          % (got["loss"], saved["loss"]))
    check(same_bits(got["d_w_hid"], saved["d_w_hid"]),
          "training: the direct W_hid gradient differs from 1 rank")
    every = COMM.allgather(got["d_w_hid"])
    check(all(same_bits(g, every[0]) for g in every),
          "training: the direct W_hid gradient differs between ranks")
    if RANK == 0:
        for k in ("d_rates", "d_outputs"):
            check(same_bits(got[k], saved[k]), "training: %s differs from 1 rank" % k)
    check(got["step_loss"] == saved["step_loss"], "training: step loss %r, 1 rank %r"
          % (got["step_loss"], saved["step_loss"]))
    for key in saved:
        if key.startswith("weight/"):
            check(close(got[key], saved[key], 1e-12), "training: %s after one step differs "
                  "from 1 rank by more than 1e-12" % key)
    # The test would see the direct gradient summed over the ranks (a
    # mistake): W_hid would move (P - 1) times that gradient further.
    wrong = got["weight/w_hid.weight"] - LR * (SIZE - 1) * got["d_w_hid"]
    check(SIZE == 1 or not close(wrong, saved["weight/w_hid.weight"], 1e-12),
          "training: summing the direct W_hid gradient would go unnoticed")
    note("training: one step at %d ranks against 1 rank" % SIZE)


def check_example_learns():
    args = train_ctrnn.parse(["--epochs", "4", "--steps", "6", "--batch", "16", "--time", "30",
                              "--hidden", "16"])
    losses = train_ctrnn.train(args, COMM, log=lambda line: None)
    check(losses[-1] < losses[0], "the example's loss did not go down: %s" % losses)
    note("example: epoch losses %s" % ", ".join("%.4f" % x for x in losses))


# ------------------------------------------------------ command line ---

CLI_CASES = ("rnn", "fr_dist_cv", "hebbian", "population_kl", "composite", "entropy",
             "state_pred")


def cli_terms(case):
    """The ctrnn-loss --term options of a case."""
    kind, params, _ = CASES[case]
    if kind == "CompositeLoss":
        items = [(name, cfg["type"], cfg.get("lambda", 1.0), cfg.get("params", {}))
                 for name, cfg in params.items()]
    else:
        type_ = ctrnnloss._core.CRITERIA[kind][0]
        items = [(type_, type_, 1.0, params)]
    out = []
    for name, type_, weight, p in items:
        text = ctrnnloss._core.format_params(type_, p)
        out += ["--term", "%s=%s:%slambda=%r" % (name, type_, text + "," if text else "",
                                                  float(weight))]
    return out


def write_cli_inputs(directory, saved):
    """DIR/cli/<case>-<dtype>/: the inputs as .npy and the ctrnn-loss
    arguments, one per line, in args.txt."""
    for case in CLI_CASES:
        if not available(case):
            continue
        for dtype in (np.float32, np.float64):
            d = os.path.join(directory, "cli", "%s-%s" % (case, np.dtype(dtype).name))
            os.makedirs(d, exist_ok=True)
            args = []
            for role, x in case_inputs(case, dtype).items():
                np.save(os.path.join(d, role + ".npy"), x)
                args += ["--" + role.replace("_", "-"), os.path.join(d, role + ".npy")]
            with open(os.path.join(d, "args.txt"), "w") as f:
                f.write("\n".join(args + cli_terms(case)) + "\n")


def compare_cli(directory, saved):
    """The command-line tool's JSON values and gradient files (written by the
    driver at each rank count to DIR/cli/<case>/np<P>/) equal the binding's."""
    root = os.path.join(directory, "cli")
    if not os.path.isdir(root):
        note("SKIP: command-line comparison (no ctrnn-loss in this build)")
        return
    if RANK != 0:
        return
    runs = 0
    for entry in sorted(os.listdir(root)):
        case, dtype = entry.rsplit("-", 1)
        key = "%s/%s" % (case, dtype)
        for run in sorted(os.listdir(os.path.join(root, entry))):
            d = os.path.join(root, entry, run)
            if not run.startswith("np") or not os.path.isdir(d):
                continue
            what = "ctrnn-loss %s %s" % (entry, run)
            try:
                with open(os.path.join(d, "out.json")) as f:
                    result = json.load(f)
            except (OSError, ValueError) as exc:
                check(False, "%s: no JSON output (%s)" % (what, exc))
                continue
            check(result["total"] == saved[key + "/total"], "%s: total %r, binding %r"
                  % (what, result["total"], saved[key + "/total"]))
            for name, v in result["terms"].items():
                check(same_bits(np.asarray(v, dtype=np.float64),
                                saved["%s/value/%s" % (key, name)]),
                      "%s: %s = %r, binding %r" % (what, name, v,
                                                   saved["%s/value/%s" % (key, name)]))
            for role in CASES[case][2]:
                if role == "label":
                    continue
                path = os.path.join(d, "d_%s.npy" % role)
                check(os.path.exists(path) and same_bits(np.load(path),
                                                          saved["%s/grad/%s" % (key, role)]),
                      "%s: d_%s.npy differs from the binding's gradient" % (what, role))
            runs += 1
    check(runs > 0, "no command-line results to compare")
    note("command line: %d runs bitwise against the binding" % runs)


# ----------------------------------------------------------------- main ---

def check_blocks():
    """Every check of time blocks (block=, block1=, time_slice)."""
    check_time_slice()
    check_time_blocks()
    check_empty_blocks()
    check_states1_block()
    check_group_block()
    check_block_errors()


def finish(phase):
    """The failures of every rank, summed; the exit status."""
    total = COMM.allreduce(failures)
    note("%s: %d checks on rank 0, %d failures on %d rank(s)" % (phase, checks, total, SIZE))
    return 1 if total else 0


def main():
    phase, directory = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    note("library %s (%s), %d rank(s); types: %s" % (
        ctrnnloss.library_version, ctrnnloss.library_path, SIZE, ", ".join(TYPES)))
    if reference is None:
        note("SKIP: reference comparison (no scripts/reference.py in this tree)")
    saved_path = os.path.join(directory, "record.npz")
    if phase == "blocks":
        check_blocks()
        return finish(phase)
    if phase == "record":
        check(SIZE == 1, "record runs on 1 rank")
        saved = record_cases(directory)
        saved.update({"train/" + k: v for k, v in training_step().items()})
        np.savez(saved_path, **saved)
        write_cli_inputs(directory, saved)
        check_autograd()
        check_parameter_text()
    else:
        with np.load(saved_path) as f:
            saved = dict(f)
        compare_cases(saved)
        compare_training({k[len("train/"):]: v for k, v in saved.items()
                          if k.startswith("train/")})
        compare_cli(directory, saved)
        check_example_learns()
    check_torch_path()
    check_plan_path()
    check_call_forms()
    check_catalogue()
    check_errors()
    check_blocks()
    return finish(phase)


if __name__ == "__main__":
    sys.exit(main())
