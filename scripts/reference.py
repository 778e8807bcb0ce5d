#!/usr/bin/python3
"""
reference.py - an independent PyTorch reference of every loss of docs/losses.md.

Each loss is written directly from its formula in docs/losses.md; gradients come from
autograd, never from the C library's gradient formulas, so a cross-check of
the two tests both the values and the hand-derived gradients.  Where nn4n's
code differs from the documentation, the documentation is implemented; the
nn4n behaviours the README lists ("Differences from nn4n") are separate
functions named *_nn4n.

As a library (dtype-generic; use float64 for reference values):

    import reference as ref
    L = ref.fr_dist(S, metric="sd", correction=1)        # == torch.std(S.mean((0, 1)))
    terms = [ref.parse_term("act=fr:metric=l1,lambda=0.1"), ...]
    total, values = ref.evaluate(terms, {"states": S, ...})

Every function takes batch-major tensors: states, states1, pred, label are
(B, T, .); weights are PyTorch Linear.weight matrices (out, in).

As a command (the same --term format and JSON as `ctrnn-loss eval --json`):

    scripts/reference.py DIR --term 'rnn=rnn:lambda_fr=0.1' [--term ...]
                         [--time-major] [--grad-dir OUT] [--nn4n]

reads DIR/{states,states1,pred,label,mask,w_in,w_hid,w_out,w_hebb}.npy (those that
exist; --states FILE etc. name files one by one), computes in float64 and
prints {"total": x, "terms": {...}, "meta": {...}}.  --grad-dir writes
d_<input>.npy (float64, the input's shape and layout) for every given input
but label and mask.  --nn4n prints, for the same inputs, each documented difference from nn4n
side by side instead.  Exit status: 0 success, 1 a bad input or a failed
evaluation, 2 a wrong command line or term specification.

Needs python3-torch and python3-numpy (Debian); run it with /usr/bin/python3.
"""

import argparse
import json
import math
import os
import re
import sys

import torch


class LossError(Exception):
    """An error of docs/losses.md's "Errors" section: kind is 'invalid', 'domain',
    'nonfinite' or 'io'."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _require(condition, kind, message):
    if not condition:
        raise LossError(kind, message)


# --------------------------------------------------------------------------
# Per-neuron statistics (docs/losses.md "Data and notation")
# --------------------------------------------------------------------------

def rate_means(states):
    """mu_i = 1/(B T) sum_{b,t} S[b,t,i], shape (N,)."""
    return states.mean(dim=(0, 1))


def _sqrt_zero_grad(x):
    """sqrt(x) whose derivative at x = 0 is taken as 0 (docs/losses.md: "0 when
    sigma_c = 0") instead of autograd's infinity."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))),
                       torch.zeros_like(x))


def sd_across_neurons(mu, correction=0):
    """sigma_c = sqrt(1/(N - c) sum_i (mu_i - m)^2)."""
    n = mu.shape[-1]
    _require(correction < n, "invalid",
             "correction %g needs more than %g neurons" % (correction, correction))
    return _sqrt_zero_grad(((mu - mu.mean()) ** 2).sum() / (n - correction))


def cv_across_neurons(mu, correction=0):
    """sigma_c / m; m = 0 is a domain error."""
    m = mu.mean()
    _require(float(m) != 0.0, "domain", "the mean rate is 0: the CV is undefined")
    return sd_across_neurons(mu, correction) / m


def population_variance(states, exact_zero=True):
    """Variance over (b, t) with divisor B T, per neuron.  exact_zero: a
    neuron whose values are all equal has variance exactly 0 (not the
    rounding residue of a two-pass formula), as in the C library (two more
    passes; the benchmark skips them)."""
    var = states.var(dim=(0, 1), unbiased=False)
    if not exact_zero:
        return var
    constant = states.amax(dim=(0, 1)) == states.amin(dim=(0, 1))
    return torch.where(constant, torch.zeros_like(var), var)


# --------------------------------------------------------------------------
# The losses, in docs/losses.md's order.  Each returns a 0-d tensor unless noted.
# --------------------------------------------------------------------------

RNN_PARTS = ("mse", "in", "hid", "out", "fr", "fr_sd", "fr_cv")


def rnn(pred=None, label=None, states=None, w_in=None, w_hid=None, w_out=None, *, mask=None,
        lambda_mse=1.0, lambda_in=0.0, lambda_hid=0.0, lambda_out=0.0, lambda_fr=0.0,
        lambda_fr_sd=0.0, lambda_fr_cv=0.0, correction=0):
    """RNNLoss.  Returns (total, parts): parts maps each name of
    RNN_PARTS to its weighted component; a component whose lambda is 0 is not
    computed (its inputs may be None) and is 0."""
    lambdas = dict(mse=lambda_mse, **{"in": lambda_in}, hid=lambda_hid, out=lambda_out,
                   fr=lambda_fr, fr_sd=lambda_fr_sd, fr_cv=lambda_fr_cv)
    needs = dict(mse=(pred, label), hid=(w_hid,), fr=(states,), fr_sd=(states,),
                 fr_cv=(states,), out=(w_out,), **{"in": (w_in,)})
    for part in RNN_PARTS:
        _require(lambdas[part] == 0 or all(x is not None for x in needs[part]), "invalid",
                 "lambda_%s is not 0 but its inputs are missing" % part)

    def frobenius(w):
        return (w ** 2).sum() / w.numel()

    unweighted = {
        "mse": lambda: mse(pred, label, mask),
        "in": lambda: frobenius(w_in),
        "hid": lambda: frobenius(w_hid),
        "out": lambda: frobenius(w_out),
        "fr": lambda: (states ** 2).mean(),
        "fr_sd": lambda: sd_across_neurons(rate_means(states), correction),
        "fr_cv": lambda: cv_across_neurons(rate_means(states), correction),
    }
    like = next(x for x in (pred, states, w_in, w_hid, w_out, torch.zeros((), dtype=torch.float64))
                if x is not None)
    parts = {}
    for part in RNN_PARTS:
        parts[part] = (lambdas[part] * unweighted[part]() if lambdas[part] != 0
                       else torch.zeros((), dtype=like.dtype))
    return sum(parts.values()), parts


def fr(states, metric="l2"):
    """FiringRateLoss: mean |mu_i| (l1) or mean mu_i^2 (l2)."""
    mu = rate_means(states)
    if metric == "l1":
        return mu.abs().mean()
    _require(metric == "l2", "invalid", "unknown metric '%s'" % metric)
    return (mu ** 2).mean()


def fr_dist(states, metric="sd", correction=0):
    """FiringRateDistLoss: sd, cv, mean_ad or max_ad of the mean rates
    across neurons (correction applies to sd and cv)."""
    mu = rate_means(states)
    if metric == "sd":
        return sd_across_neurons(mu, correction)
    if metric == "cv":
        return cv_across_neurons(mu, correction)
    deviation = (mu - mu.mean()).abs()
    if metric == "mean_ad":
        return deviation.mean()
    _require(metric == "max_ad", "invalid", "unknown metric '%s'" % metric)
    # The smallest index attaining the maximum carries the gradient.
    return deviation[torch.argmax(deviation)]


def state_pred(states, tau=1):
    """StatePredictionLoss: the lag tau runs along time (axis 1)."""
    time = states.shape[1]
    _require(tau >= 1 and time > tau, "invalid",
             "tau = %d needs more than %d time steps (T = %d)" % (tau, tau, time))
    return ((states[:, :-tau] - states[:, tau:]) ** 2).mean()


def hebbian(states, w_hebb):
    """HebbianLoss: C_b = 1/T sum_t s s^T, h_b = sum W * C_b,
    L = mean_b |h_b| (absolute value per batch element)."""
    correlation = torch.einsum("bti,btj->bij", states, states) / states.shape[1]
    h = (correlation * w_hebb).sum(dim=(1, 2))
    return h.abs().mean()


def entropy(states, reg=10.0, eps=1e-8, check=True):
    """EntropyLoss: Z = sum_j S_j + eps, p = S / Z,
    H = -sum_i p_i log(p_i + eps), L = mean_{b,t} H + reg mean_{b,t} |s|^2.
    check: refuse negative rates (a full pass; the benchmark skips it)."""
    if check:
        negative = (states < 0).nonzero()
        _require(len(negative) == 0, "domain",
                 "negative rate at states%s" % _index_text(negative[:1]))
    z = states.sum(dim=-1, keepdim=True) + eps
    p = states / z
    h = -(p * torch.log(p + eps)).sum(dim=-1)
    return h.mean() + reg * (states ** 2).sum(dim=-1).mean()


def _gaussian_kl(mu_p, var_p, mu_q, var_q):
    """KL(P || Q) of two Gaussians, per neuron (PopulationKL)."""
    return 0.5 * (torch.log(var_q / var_p) + (var_p + (mu_p - mu_q) ** 2) / var_q - 1)


def population_kl(states, states1, symmetric=True, reg=1e-3, reduction="mean", var_eps=0.0,
                  check=True):
    """PopulationKL between P = states and Q = states1 (each with its
    own B and T).  reduction 'mean' or 'sum' returns a 0-d tensor; 'none'
    returns (d, R): the per-neuron divergences and the regularizer.
    check: constant neurons have variance exactly 0, and a variance <= 0 is
    refused (the benchmark skips both)."""
    _require(states.shape[-1] == states1.shape[-1], "invalid",
             "states has %d neurons, states1 %d" % (states.shape[-1], states1.shape[-1]))
    mu_p, mu_q = rate_means(states), rate_means(states1)
    var_p = population_variance(states, check) + var_eps
    var_q = population_variance(states1, check) + var_eps
    for what, var in ((("states", var_p), ("states1", var_q)) if check else ()):
        bad = (var <= 0).nonzero()
        _require(len(bad) == 0, "domain",
                 "the variance of neuron %d of %s is 0" % (int(bad[0]) if len(bad) else -1, what))
    d = _gaussian_kl(mu_p, var_p, mu_q, var_q)
    if symmetric:
        d = 0.5 * (d + _gaussian_kl(mu_q, var_q, mu_p, var_p))
    r = reg * ((states ** 2).sum(dim=-1).mean() + (states1 ** 2).sum(dim=-1).mean())
    if reduction == "none":
        return d, r
    if reduction == "sum":
        return d.sum() + r
    _require(reduction == "mean", "invalid", "unknown reduction '%s'" % reduction)
    return d.mean() + r


def _check_mask(pred, mask):
    """docs/losses.md "Output masks": (B, T, K) or (B, T, 1), broadcast over K."""
    if mask is not None:
        _require(mask.dim() == 3 and mask.shape[:2] == pred.shape[:2]
                 and mask.shape[2] in (1, pred.shape[2]), "invalid",
                 "mask %s must be pred's shape %s or have width 1"
                 % (tuple(mask.shape), tuple(pred.shape)))


def mse(pred, label, mask=None):
    """MSE: 1/(B T K) sum (pred - label)^2; with a mask (docs/losses.md "Output
    masks", PsychRNN's form) 1/(B T K) sum (m (pred - label))^2."""
    _require(pred.shape == label.shape, "invalid",
             "pred is %s but label is %s" % (tuple(pred.shape), tuple(label.shape)))
    _check_mask(pred, mask)
    d = pred - label if mask is None else mask * (pred - label)
    return (d ** 2).mean()


def rnn_conn(w_in=None, w_hid=None, w_out=None, layer="all", metric="fro"):
    """RNNConnectivityLoss: ||W||_F = sqrt(sum W^2) (not squared, not
    normalised; gradient 0 at W = 0) or sum |W|, summed over the layer's
    matrices (all: w_in, w_hid, w_out)."""
    chosen = {"all": (w_in, w_hid, w_out), "input": (w_in,), "hidden": (w_hid,),
              "readout": (w_out,)}
    _require(layer in chosen, "invalid", "unknown layer '%s'" % layer)
    _require(metric in ("fro", "l1"), "invalid", "unknown metric '%s'" % metric)
    _require(all(w is not None for w in chosen[layer]), "invalid",
             "layer=%s needs its weight matrices" % layer)
    norms = [_sqrt_zero_grad((w ** 2).sum()) if metric == "fro" else w.abs().sum()
             for w in chosen[layer]]
    return sum(norms[1:], norms[0])


def cross_entropy(pred, label, mask=None, apply_softmax=True, clamp=1e-12):
    """CrossEntropyLoss: p = softmax(pred) along K (or pred),
    q = max(p, clamp), L = -1/(B T) sum m y log q; autograd's clamp passes
    the gradient where p >= clamp only, as docs/losses.md says."""
    _require(pred.shape == label.shape, "invalid",
             "pred is %s but label is %s" % (tuple(pred.shape), tuple(label.shape)))
    _require(clamp > 0, "invalid", "clamp must be > 0")
    _check_mask(pred, mask)
    p = torch.softmax(pred, dim=-1) if apply_softmax else pred
    terms = label * torch.log(torch.clamp(p, min=clamp))
    if mask is not None:
        terms = mask * terms
    return -terms.sum(dim=-1).mean()


# --------------------------------------------------------------------------
# nn4n's behaviour where the documentation differs (README "Differences from nn4n")
# --------------------------------------------------------------------------

def rnn_fr_nn4n(states):
    """nn4n's RNNLoss fr: mean_i mu_i^2 (docs/losses.md: mean of S^2 over all elements)."""
    return (rate_means(states) ** 2).mean()


def sd_nn4n(states):
    """nn4n's fr_sd / FiringRateDistLoss sd: torch.std of the mean rates,
    the 1/(N-1) form; equals fr_dist(states, 'sd', correction=1)."""
    return torch.std(rate_means(states))


def rnn_fr_cv_nn4n(states):
    """nn4n's RNNLoss fr_cv: torch.std / mean of the mean of |S|; equals
    fr_dist(states, 'cv', correction=1) for non-negative rates."""
    mu = rate_means(states.abs())
    return torch.std(mu) / mu.mean()


def hebbian_nn4n(states, w_hebb):
    """nn4n's HebbianLoss: |s^T W s| per (batch, time) step, then the mean
    (docs/losses.md: the absolute value per batch element after averaging over time)."""
    return ((states @ w_hebb.T) * states).sum(dim=-1).abs().mean()


def state_pred_nn4n(states, tau=1):
    """nn4n's StatePredictionLoss with batch-first data: it slices the first
    axis (the batch) while checking the second (docs/losses.md: lag along time)."""
    _require(states.shape[1] > tau, "invalid", "T <= tau")
    return ((states[:-tau] - states[tau:]) ** 2).mean()


def entropy_nn4n(states, reg=10.0):
    """nn4n's EntropyLoss: eps = 1e-8 in both places and the squared
    torch.norm of each rate vector; the same values as entropy()."""
    eps = 1e-8
    p = states / (states.sum(dim=-1, keepdim=True) + eps)
    h = -(p * torch.log(p + eps)).sum(dim=-1)
    return h.mean() + reg * (torch.norm(states, dim=-1) ** 2).mean()


# --------------------------------------------------------------------------
# Composite of named terms: the term specifications of the C library
# --------------------------------------------------------------------------

INPUTS = ("states", "states1", "pred", "label", "mask", "w_in", "w_hid", "w_out", "w_hebb")
BATCHED = ("states", "states1", "pred", "label", "mask")
# Types whose output error the optional mask weighs (when they read pred).
MASKED = ("rnn", "mse", "cross_entropy")
INF = float("inf")

# type -> {key: (kind, default, choices or (min, max))}, in the C tables' order.
PARAMS = {
    "rnn": dict(**{"lambda_" + p: ("real", 1.0 if p == "mse" else 0.0, (-INF, INF))
                   for p in RNN_PARTS},
                correction=("int", 0, (0, 1e9))),
    "fr": dict(metric=("choice", "l2", ("l2", "l1"))),
    "fr_dist": dict(metric=("choice", "sd", ("sd", "cv", "mean_ad", "max_ad")),
                    correction=("int", 0, (0, 1e9))),
    "state_pred": dict(tau=("int", 1, (1, 1e15))),
    "hebbian": {},
    "entropy": dict(reg=("real", 10.0, (0.0, INF)), eps=("real", 1e-8, (sys.float_info.min, INF))),
    "population_kl": dict(symmetric=("bool", True, None), reg=("real", 1e-3, (0, INF)),
                          reduction=("choice", "mean", ("mean", "sum", "none")),
                          var_eps=("real", 0.0, (0, INF))),
    "mse": {},
    "rnn_conn": dict(layer=("choice", "all", ("all", "input", "hidden", "readout")),
                     metric=("choice", "fro", ("fro", "l1"))),
    "cross_entropy": dict(apply_softmax=("bool", True, None),
                          clamp=("real", 1e-12, (sys.float_info.min, 1.0))),
}


def catalogue_mismatches(library):
    """The differences between PARAMS and the C library's catalogue of term
    types (crl_term_type_param), read through ctypes from the shared library
    at path `library`: types in order, and per parameter key, kind, default,
    range (+-DBL_MAX reads as +-inf) and choices.  [] when they agree."""
    import ctypes

    class ParamInfo(ctypes.Structure):
        _fields_ = [("key", ctypes.c_char_p), ("kind", ctypes.c_int),
                    ("default_value", ctypes.c_double), ("min", ctypes.c_double),
                    ("max", ctypes.c_double), ("choices", ctypes.POINTER(ctypes.c_char_p)),
                    ("help", ctypes.c_char_p)]

    lib = ctypes.CDLL(library)
    lib.crl_term_type_name.restype = ctypes.c_char_p
    lib.crl_term_type_param.restype = ctypes.POINTER(ParamInfo)
    lib.crl_term_type_param.argtypes = [ctypes.c_char_p, ctypes.c_int]
    kinds = {1: "real", 2: "int", 3: "bool", 4: "choice"}

    def unbounded(x):
        return INF if x >= sys.float_info.max else -INF if x <= -sys.float_info.max else x

    problems = []
    types = [lib.crl_term_type_name(k).decode() for k in range(lib.crl_term_type_count())]
    if types != list(PARAMS):
        problems.append("types: C %s, reference.py %s" % (types, list(PARAMS)))
    for t in types:
        c_params = {}
        k = 0
        while True:
            info = lib.crl_term_type_param(t.encode(), k)
            if not info:
                break
            i = info.contents
            choices = None
            if i.kind == 4:
                choices, j = [], 0
                while i.choices[j] is not None:
                    choices.append(i.choices[j].decode())
                    j += 1
            default = i.default_value
            if i.kind == 4:
                default = choices[int(default)]
            elif i.kind == 3:
                default = bool(default)
            limits = (tuple(choices) if i.kind == 4 else None if i.kind == 3
                      else (unbounded(i.min), unbounded(i.max)))
            c_params[i.key.decode()] = (kinds.get(i.kind, "?"), default, limits)
            k += 1
        mine = PARAMS.get(t, {})
        if list(c_params) != list(mine):
            problems.append("%s: parameters C %s, reference.py %s" % (t, list(c_params), list(mine)))
        for key in c_params:
            if key in mine and tuple(c_params[key]) != tuple(mine[key]):
                problems.append("%s.%s: C %r, reference.py %r" % (t, key, c_params[key], mine[key]))
    return problems


class Term:
    """One named term: type, weight lambda_k, parameters (all filled in)."""

    def __init__(self, name, type, weight=1.0, params=None):
        _require(re.fullmatch(r"[A-Za-z0-9_-]{1,63}", name or "") is not None, "invalid",
                 "term name '%s' is not 1-63 letters, digits, '_' or '-'" % name)
        _require(type in PARAMS, "invalid", "term '%s': unknown type '%s' (one of: %s)"
                 % (name, type, ", ".join(PARAMS)))
        _require(math.isfinite(weight), "invalid", "term '%s': weight %g is not finite"
                 % (name, weight))
        self.name, self.type, self.weight = name, type, float(weight)
        self.params = {k: spec[1] for k, spec in PARAMS[type].items()}
        for key, value in (params or {}).items():
            self.params[key] = _param_value(name, type, key, value)

    def uses(self):
        """The inputs the term reads with its parameters."""
        if self.type == "rnn":
            p = self.params
            on = {part for part in RNN_PARTS if p["lambda_" + part] != 0}
            used = set()
            if "mse" in on:
                used |= {"pred", "label"}
            for part, w in (("in", "w_in"), ("hid", "w_hid"), ("out", "w_out")):
                if part in on:
                    used.add(w)
            if on & {"fr", "fr_sd", "fr_cv"}:
                used.add("states")
            return used
        if self.type == "rnn_conn":
            return {"all": {"w_in", "w_hid", "w_out"}, "input": {"w_in"}, "hidden": {"w_hid"},
                    "readout": {"w_out"}}[self.params["layer"]]
        return {"fr": {"states"}, "fr_dist": {"states"}, "state_pred": {"states"},
                "hebbian": {"states", "w_hebb"}, "entropy": {"states"},
                "population_kl": {"states", "states1"}, "mse": {"pred", "label"},
                "cross_entropy": {"pred", "label"}}[self.type]

    def takes_mask(self):
        """Whether the optional mask weighs this term's output error."""
        return self.type in MASKED and "pred" in self.uses()

    def __repr__(self):
        return "Term(%r, %r, %r, %r)" % (self.name, self.type, self.weight, self.params)


def _param_value(name, type, key, value):
    """Checks (and parses, from text) one parameter value."""
    where = "term '%s' (%s): parameter %s" % (name, type, key)
    _require(key in PARAMS[type], "invalid", "term '%s' (%s): unknown parameter '%s' (known: %s)"
             % (name, type, key, ", ".join(["lambda"] + list(PARAMS[type])) or "lambda"))
    kind, _, limits = PARAMS[type][key]
    if kind == "bool":
        if isinstance(value, str):
            text = value.lower()
            _require(text in ("true", "1", "yes", "false", "0", "no"), "invalid",
                     "%s: '%s' is not a boolean (true or false)" % (where, value))
            return text in ("true", "1", "yes")
        return bool(value)
    if kind == "choice":
        _require(value in limits, "invalid", "%s: unknown value '%s' (one of: %s)"
                 % (where, value, ", ".join(limits)))
        return value
    try:
        number = float(value)
    except ValueError:
        raise LossError("invalid", "%s: '%s' is not a number" % (where, value)) from None
    _require(math.isfinite(number) and limits[0] <= number <= limits[1], "invalid",
             "%s: %.17g is outside [%g, %g]" % (where, number, limits[0], limits[1]))
    if kind == "int":
        _require(number == math.floor(number), "invalid", "%s: %g is not an integer"
                 % (where, number))
        return int(number)
    return number


def parse_term(spec):
    """'NAME=TYPE[:key=value,...]' (the C tool's --term) -> Term; the key
    'lambda' is the term's weight (default 1)."""
    name, eq, rest = spec.partition("=")
    _require(eq == "=" and rest, "invalid",
             "term '%s': expected NAME=TYPE[:key=value,...]" % spec)
    type, _, text = rest.partition(":")
    return make_term(name, type, text)


def make_term(name, type, params_text="", weight=None):
    """A term from the arguments of crl_loss_add: "key=value,..." text
    (which may hold 'lambda' unless weight is given)."""
    params, seen = {}, set()
    lam = 1.0 if weight is None else weight
    for item in filter(None, (s.strip() for s in params_text.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        _require(eq == "=" and key and value, "invalid",
                 "term '%s': '%s' is not key=value" % (name, item))
        _require(key not in seen, "invalid", "term '%s': parameter %s given twice" % (name, key))
        seen.add(key)
        if key == "lambda" and weight is None:
            try:
                lam = float(value)
            except ValueError:
                raise LossError("invalid", "term '%s': lambda '%s' is not a finite number"
                                % (name, value)) from None
        else:
            params[key] = value
    return Term(name, type, lam, params)


def check_inputs(terms, inputs, want_grad=False):
    """The checks of docs/losses.md "Errors" the loss functions do not make themselves:
    required inputs present, shapes agreeing, no NaN or infinity in an input
    any term reads, no gradient of a reduction=none term."""
    names = set()
    for t in terms:
        _require(t.name not in names, "invalid", "term '%s': the name is already used" % t.name)
        names.add(t.name)
    used = set().union(*(t.uses() for t in terms)) if terms else set()
    if inputs.get("mask") is not None and any(t.takes_mask() for t in terms):
        used.add("mask")
    for t in terms:
        for role in sorted(t.uses()):
            _require(inputs.get(role) is not None, "invalid",
                     "term '%s' (%s): %s is needed but not given" % (t.name, t.type, role))
        _require(not (want_grad and t.type == "population_kl"
                      and t.params["reduction"] == "none"), "invalid",
                 "term '%s' (population_kl): reduction=none has no gradient" % t.name)
    for role in INPUTS:
        x = inputs.get(role)
        if x is None or role not in used:
            continue
        _require(x.dim() == (3 if role in BATCHED else 2), "invalid",
                 "%s has %d dimensions, expected %d" % (role, x.dim(), 3 if role in BATCHED else 2))
        bad = (~torch.isfinite(x)).nonzero()
        if len(bad):
            value = float(x[tuple(bad[0])])
            raise LossError("nonfinite", "%s%s is %s" % (role, _index_text(bad[:1]),
                                                         "NaN" if math.isnan(value) else "infinite"))
    s = inputs.get("states")
    n = s.shape[-1] if s is not None else None
    for role in ("states1",):
        x = inputs.get(role)
        if x is not None and role in used and n is not None:
            _require(x.shape[-1] == n, "invalid", "%s has %d neurons, states %d"
                     % (role, x.shape[-1], n))
    p, y = inputs.get("pred"), inputs.get("label")
    if "pred" in used:
        _require(p.shape == y.shape, "invalid", "pred is %s but label is %s"
                 % (tuple(p.shape), tuple(y.shape)))
        if "mask" in used:
            _check_mask(p, inputs["mask"])
        if s is not None and "states" in used:
            _require(p.shape[:2] == s.shape[:2], "invalid",
                     "pred is %s but states is %s" % (tuple(p.shape), tuple(s.shape)))
    if n is not None:
        for role, shape in (("w_hid", (n, n)), ("w_hebb", (n, n))):
            w = inputs.get(role)
            if w is not None and role in used:
                _require(tuple(w.shape) == shape, "invalid", "%s is %s, expected %s"
                         % (role, tuple(w.shape), shape))
        for role, axis in (("w_in", 0), ("w_out", 1)):
            w = inputs.get(role)
            if w is not None and role in used:
                _require(w.shape[axis] == n, "invalid", "%s is %s, expected N = %d on axis %d"
                         % (role, tuple(w.shape), n, axis))


def evaluate_term(term, inputs, check=True):
    """The unweighted value of one term: a 0-d tensor, or for population_kl
    with reduction=none a pair (d, R); and the unweighted rnn parts."""
    p, x = term.params, inputs
    mask = x.get("mask") if term.takes_mask() else None
    if term.type == "rnn":
        return rnn(x.get("pred"), x.get("label"), x.get("states"), x.get("w_in"), x.get("w_hid"),
                   x.get("w_out"), mask=mask, **p)
    if term.type == "rnn_conn":
        return rnn_conn(x.get("w_in"), x.get("w_hid"), x.get("w_out"), **p)
    if term.type == "cross_entropy":
        return cross_entropy(x["pred"], x["label"], mask, **p)
    if term.type == "fr":
        return fr(x["states"], **p)
    if term.type == "fr_dist":
        return fr_dist(x["states"], **p)
    if term.type == "state_pred":
        return state_pred(x["states"], **p)
    if term.type == "hebbian":
        return hebbian(x["states"], x["w_hebb"])
    if term.type == "entropy":
        return entropy(x["states"], check=check, **p)
    if term.type == "population_kl":
        return population_kl(x["states"], x["states1"], check=check, **p)
    return mse(x["pred"], x["label"], mask)


def evaluate(terms, inputs, check=True, want_grad=False):
    """CompositeLoss.  inputs: role -> batch-major tensor (or None).
    Returns (total, values): total = sum_k lambda_k L_k as a 0-d tensor (to
    call .backward() on), values the list of (name, tensor) the C library
    reports, in its order: NAME = lambda_k L_k; for rnn also NAME.mse ...
    NAME.fr_cv; for population_kl with reduction=none NAME = lambda_k d
    (a vector, not in the total) and NAME.reg = lambda_k R.
    check=False skips the input checks and the loss functions' own full
    passes over the data for checks (for timing eager PyTorch alone)."""
    if check:
        check_inputs(terms, inputs, want_grad)
    total, values = None, []
    for t in terms:
        try:
            out = evaluate_term(t, inputs, check)
        except LossError as e:
            raise LossError(e.kind, "term '%s' (%s): %s" % (t.name, t.type, e)) from None
        if t.type == "rnn":
            value, parts = out
            values.append((t.name, t.weight * value))
            values += [("%s.%s" % (t.name, k), t.weight * v) for k, v in parts.items()]
        elif isinstance(out, tuple):
            values += [(t.name, t.weight * out[0]), (t.name + ".reg", t.weight * out[1])]
            continue
        else:
            value = out
            values.append((t.name, t.weight * value))
        total = t.weight * value if total is None else total + t.weight * value
    if total is None:
        total = torch.zeros((), dtype=torch.float64)
    return total, values


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def _index_text(index_rows):
    """'[b=0, t=2, i=5]' or '[r, c]' for the first row of a nonzero() result."""
    if len(index_rows) == 0:
        return ""
    idx = [int(v) for v in index_rows[0]]
    if len(idx) == 3:
        return "[b=%d, t=%d, i=%d]" % tuple(idx)
    return "[" + ", ".join(map(str, idx)) + "]"


def _number(x):
    return format(x, ".17g") if math.isfinite(x) else "null"


def to_json(total, values, meta):
    """One line, as `ctrnn-loss eval --json` prints it (17 digits, null if
    not finite)."""
    items = []
    for name, v in values:
        v = v.detach().reshape(-1).tolist() if v.dim() else float(v)
        text = ("[" + ", ".join(_number(e) for e in v) + "]") if isinstance(v, list) else _number(v)
        items.append('"%s": %s' % (name, text))
    return '{"total": %s, "terms": {%s}, "meta": %s}' % (
        _number(float(total)), ", ".join(items), json.dumps(meta))


def load_inputs(paths, time_major):
    """(role -> float64 batch-major tensor requiring grad, role -> the
    file's dtype name), from .npy files."""
    import numpy as np
    inputs, dtypes = {}, {}
    for role, path in paths.items():
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise LossError("io", "%s: %s" % (path, e)) from None
        _require(array.dtype in (np.float32, np.float64), "io",
                 "%s: dtype %s, expected float32 or float64" % (path, array.dtype))
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
        if role in BATCHED and time_major:
            _require(x.dim() == 3, "io", "%s: %d dimensions, expected 3" % (path, x.dim()))
            x = x.transpose(0, 1)
        inputs[role] = x.clone().requires_grad_(True)
        dtypes[role] = str(array.dtype)
    return inputs, dtypes


def _meta(inputs, dtypes, time_major):
    s = inputs.get("states")
    first = s if s is not None else inputs.get("pred")
    neurons = (s.shape[-1] if s is not None else
               next((inputs[w].shape[0] for w in ("w_hebb", "w_hid", "w_in") if w in inputs), 0))
    dtypes = sorted(set(dtypes.values()))
    return {"ranks": 1, "batch": first.shape[0] if first is not None else 0,
            "time": first.shape[1] if first is not None else 0, "neurons": neurons,
            "dtype": dtypes[0] if len(dtypes) == 1 else "mixed",
            "reference": "pytorch", "torch": torch.__version__, "compute": "float64",
            "layout": "time-major" if time_major else "batch-major"}


def write_gradients(inputs, grad_dir, time_major):
    """d_<role>.npy for every given input but label and mask (as ctrnn-loss
    writes them): float64, the input file's shape; zeros for an unused input."""
    import numpy as np
    os.makedirs(grad_dir, exist_ok=True)
    for role, x in inputs.items():
        if role in ("label", "mask"):
            continue
        g = x.grad if x.grad is not None else torch.zeros_like(x)
        if role in BATCHED and time_major:
            g = g.transpose(0, 1)
        np.save(os.path.join(grad_dir, "d_%s.npy" % role), g.detach().contiguous().numpy())


def nn4n_differences(inputs, tau=1, reg=10.0):
    """For the README's "Differences from nn4n": each difference docs/losses.md lists,
    our value next to nn4n's, on the given inputs."""
    s, w = inputs.get("states"), inputs.get("w_hebb")
    rows = {}
    if s is not None:
        mu = rate_means(s)
        rows["fr_sd correction=0 (the documented default)"] = (sd_across_neurons(mu), sd_nn4n(s))
        rows["fr_sd correction=1 vs torch.std"] = (sd_across_neurons(mu, 1), sd_nn4n(s))
        rows["fr_cv correction=1 vs std/mean of |S|"] = (cv_across_neurons(mu, 1),
                                                         rnn_fr_cv_nn4n(s))
        rows["rnn fr: mean(S^2) vs mean_i(mu_i^2)"] = ((s ** 2).mean(), rnn_fr_nn4n(s))
        if s.shape[1] > tau and s.shape[0] > tau:
            rows["state_pred tau=%d: time axis vs first axis" % tau] = (
                state_pred(s, tau), state_pred_nn4n(s, tau))
        if bool((s >= 0).all()):
            rows["entropy reg=%g" % reg] = (entropy(s, reg), entropy_nn4n(s, reg))
        if w is not None:
            rows["hebbian: |.| per element vs per (b, t)"] = (hebbian(s, w), hebbian_nn4n(s, w))
    return {k: {"spec": float(a), "nn4n": float(b)} for k, (a, b) in rows.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="reference.py", description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="term types and parameters (default):\n" + "\n".join(
            "  %-14s %s" % (t, ", ".join("%s (%s)" % (k, v[1]) for k, v in p.items()) or "-")
            for t, p in PARAMS.items()))
    parser.add_argument("dir", nargs="?", help="directory of <input>.npy files")
    for role in INPUTS:
        parser.add_argument("--" + role.replace("_", "-"), dest=role, metavar="FILE",
                            help="%s.npy from this file instead" % role)
    parser.add_argument("--term", action="append", default=[], metavar="SPEC",
                        help="NAME=TYPE[:key=value,...]; 'lambda' is the weight (default 1)")
    parser.add_argument("--time-major", action="store_true",
                        help="batched inputs are (T, B, .) instead of (B, T, .)")
    parser.add_argument("--grad-dir", metavar="DIR", help="write d_<input>.npy (float64) here")
    parser.add_argument("--check-catalogue", metavar="LIBRARY",
                        help="compare the parameter table with libctrnnloss's catalogue and "
                             "exit (status 1 on a difference)")
    parser.add_argument("--nn4n", action="store_true",
                        help="print the documented values next to nn4n's, each difference")
    args = parser.parse_args(argv)
    if args.check_catalogue:
        problems = catalogue_mismatches(args.check_catalogue)
        for line in problems:
            print("catalogue: " + line, file=sys.stderr)
        return 1 if problems else 0
    torch.set_default_dtype(torch.float64)

    def fail(kind, message):
        print("reference.py: error: %s" % message, file=sys.stderr)
        return 2 if kind == "usage" else 1

    paths = {}
    for role in INPUTS:
        path = getattr(args, role) or (args.dir and os.path.join(args.dir, role + ".npy"))
        if path and (getattr(args, role) or os.path.exists(path)):
            paths[role] = path
    if not paths:
        return fail("usage", "no input files (give DIR or --states FILE ...)")
    try:
        terms = [parse_term(spec) for spec in args.term]
    except LossError as e:
        return fail("usage", str(e))
    if not terms and not args.nn4n:
        return fail("usage", "no --term given")
    try:
        inputs, dtypes = load_inputs(paths, args.time_major)
        if args.nn4n:
            print(json.dumps(nn4n_differences(inputs), indent=1))
            return 0
        total, values = evaluate(terms, inputs, want_grad=bool(args.grad_dir))
        if args.grad_dir:
            if total.requires_grad:
                total.backward()
            write_gradients(inputs, args.grad_dir, args.time_major)
    except LossError as e:
        return fail(e.kind, str(e))
    print(to_json(float(total), values, _meta(inputs, dtypes, args.time_major)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
