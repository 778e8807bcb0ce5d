#!/usr/bin/python3
"""
reference_check.py - `ctrnn-loss eval --json --grad-dir` against
scripts/reference.py (every loss written from docs/losses.md in PyTorch, float64,
gradients by autograd) on random cases, under each rank count.

Cases come from a fixed seed (--seed, CRL_XCHECK_SEED): odd shapes (N = 1,
T = tau + 1, T = 1, B smaller than the rank count or not divisible by it, a
case large enough for several row tiles per element, single trials whose
time the command splits over the ranks), both layouts, float32
and float64, rates with exact zeros, signed rates, a dead neuron; each case is
one composite of every type the data allows with random parameters (every
metric and option), its weights chosen so that every term moves the gradient
about as much as any other.  Checked:

- values: per reported value (norm-wise for a vector), |c - r| / |r| <= 1e-12
  for float64 files, 1e-5 for float32 files (the reference computes in
  float64 on the float32-rounded inputs);
- gradients: per file, max |c - r| / max |r| under the same bounds, the
  file's dtype and shape those of its input;
- every rank count: the JSON text (bar meta.ranks) and every gradient file
  bitwise identical to the first rank count's (some runs chunked too);
- error cases: the tool fails on every rank with the documented message where
  the reference finds the same error (and its unchecked formula would divide
  by zero);
- `fr_dist` sd/cv with correction=1 equal torch.std of the mean rates (and
  std/mean), as README's "Differences from nn4n" says.

Run by tests/reference_check.sh under `make check` (environment as in
tests/cli-lib.sh); by hand, from the build directory:

    /usr/bin/python3 ../tests/reference_check.py [--seed S] [--case K ...]
        [--ranks "1 2 3 4"] [--keep DIR] [--verbose]
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
import reference as ref  # noqa: E402

DEFAULT_SEED = 20240905
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
ROLES = ("states", "states1", "pred", "label", "mask", "w_in", "w_hid", "w_out", "w_hebb")


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

# index: (B, T, N, dtype, layout, rates, grad).  rates: 'zeros' (non-negative
# with exact zeros), 'signed' (some negative: no entropy term), 'dead' (zeros
# and one neuron always 0).  grad False: values only, with a reduction=none
# population_kl term (which has no gradient).
SHAPES = [
    (1, 2, 1, "float64", "batch", "zeros", True),     # N = 1, T = tau + 1, B = 1
    (2, 5, 6, "float32", "time", "zeros", True),      # T = tau + 1 for tau = 4
    (3, 1, 4, "float64", "time", "signed", True),     # T = 1: no state_pred
    (5, 7, 3, "float32", "batch", "dead", True),      # B divisible by no rank count > 1
    (7, 4, 2, "float64", "batch", "signed", True),
    (6, 3, 9, "float32", "time", "zeros", True),      # B not divisible by 4
    (1, 6, 5, "float32", "batch", "zeros", False),
    (5, 2, 1, "float32", "time", "signed", True),     # N = 1, float32
    (9, 40, 300, "float64", "time", "zeros", True),   # several row tiles per element
    (4, 33, 70, "float32", "batch", "dead", True),
    (11, 3, 8, "float64", "time", "dead", False),
    (3, 10, 13, "float64", "batch", "zeros", True),
    # single trials and B below the rank count over units of 512 steps: the
    # command splits their time over the ranks (batch x time blocks)
    (1, 1300, 4, "float64", "batch", "zeros", True),
    (2, 1100, 3, "float32", "time", "zeros", True),
]

# --stress (not run by make check): long series, where float32 arithmetic
# anywhere in the tool shows against float64 math.  Case numbers from 100.
STRESS = [
    (2, 20000, 32, "float32", "batch", "zeros", True),
    (3, 3000, 96, "float32", "time", "zeros", True),
]


class Case:
    """One input set (written as .npy files) and one composite loss."""

    def __init__(self, index, seed):
        self.index, self.seed = index, seed
        (self.B, self.T, self.N, self.dtype, self.layout, self.rates,
         self.grad) = SHAPES[index] if index < 100 else STRESS[index - 100]
        self.rng = np.random.default_rng([seed, index])
        self.K = int(self.rng.integers(1, 4))
        self.N_in = int(self.rng.integers(1, 5))
        self.B1 = int(self.rng.integers(1, 6))
        self.T1 = int(self.rng.integers(1, 7))
        self.arrays = self._arrays()
        self.specs = []

    def describe(self):
        return ("case %d (seed %d): B=%d T=%d N=%d K=%d N_in=%d B1=%d T1=%d %s %s-major, "
                "rates '%s', %s" % (self.index, self.seed, self.B, self.T, self.N, self.K,
                                    self.N_in, self.B1, self.T1, self.dtype, self.layout,
                                    self.rates, "gradients" if self.grad else "values only"))

    def _rates(self, b, t, n, shift=0.0):
        g = self.rng
        if self.rates == "signed":
            # Mean rate well away from 0 (fr_cv divides by it).
            return g.uniform(-0.5, 1.0, (b, t, n)) + shift
        s = g.uniform(0.0, 1.0, (b, t, n)) + shift
        s[g.random((b, t, n)) < 0.25] = 0.0
        if self.rates == "dead" and n > 1:
            s[:, :, int(g.integers(0, n))] = 0.0
        return s

    def _arrays(self):
        g = self.rng
        B, T, N, K = self.B, self.T, self.N, self.K
        a = {
            "states": self._rates(B, T, N),
            "states1": self._rates(self.B1, self.T1, N, shift=0.2),
            "pred": g.normal(0.0, 1.0, (B, T, K)),
            "label": g.normal(0.0, 1.0, (B, T, K)),
            "w_in": g.normal(0.0, 0.5, (N, self.N_in)),
            "w_hid": g.normal(0.0, 0.5, (N, N)),
            "w_out": g.normal(0.0, 0.5, (K, N)),
            "w_hebb": g.normal(0.0, 1.0, (N, N)),
            # The output mask, per output or broadcast over K, with exact
            # zeros (a masked-out fixation period).
            "mask": g.uniform(0.0, 2.0, (B, T, K if g.random() < 0.5 else 1)),
        }
        a["mask"][g.random(a["mask"].shape) < 0.25] = 0.0
        if self.rates == "signed":
            a["states1"] = np.abs(a["states1"])
        # Hebbian: remove from W its component along the mean correlation so
        # that the h_b have both signs (sign(h_b) per element is what docs/losses.md's
        # absolute value per element means); kept only if no h_b comes near 0.
        if B >= 2:
            s = a["states"].astype(self.dtype).astype(np.float64)
            c = np.einsum("bti,btj->bij", s, s) / T
            mean = c.mean(axis=0)
            w = a["w_hebb"] - (np.sum(a["w_hebb"] * mean) / np.sum(mean * mean)) * mean
            h = np.einsum("ij,bij->b", w.astype(self.dtype).astype(np.float64), c)
            if np.min(np.abs(h)) > 1e-3 * np.max(np.abs(h)):
                a["w_hebb"] = w
        return {k: v.astype(self.dtype) for k, v in a.items()}

    def write(self, directory):
        os.makedirs(directory, exist_ok=True)
        for role, x in self.arrays.items():
            if self.layout == "time" and x.ndim == 3:
                x = np.ascontiguousarray(x.transpose(1, 0, 2))
            np.save(os.path.join(directory, role + ".npy"), x)


def _number(g, low, high):
    """A random positive number with 3 significant digits, log-uniform."""
    return float("%.3g" % 10 ** g.uniform(math.log10(low), math.log10(high)))


def make_terms(case):
    """The composite of a case: (name, TYPE:params) without the weights,
    every type and option the shape and rates allow."""
    g, N, T = case.rng, case.N, case.T
    pick = lambda options: options[int(g.integers(0, len(options)))]  # noqa: E731
    terms = []
    lam = {}
    for part in ref.RNN_PARTS:
        lam[part] = 0.0 if g.random() < 0.25 else _number(g, 0.1, 10)
    lam["fr_sd"] = lam["fr_sd"] or 1.0          # every case has some rate regularizer
    rnn = ",".join("lambda_%s=%g" % (p, v) for p, v in lam.items())
    terms.append(("r", "rnn:%s,correction=%d" % (rnn, pick([0, 1]) if N > 1 else 0)))
    terms += [("fr_l1", "fr:metric=l1"), ("fr_l2", "fr:metric=l2")]
    for metric in ("sd", "cv", "mean_ad", "max_ad"):
        correction = ",correction=%d" % pick([0, 1]) if metric in ("sd", "cv") and N > 1 else ""
        terms.append(("d_" + metric, "fr_dist:metric=%s%s" % (metric, correction)))
    if T >= 2:
        taus = sorted({1, T - 1, int(g.integers(1, T))})
        terms += [("sp%d" % tau, "state_pred:tau=%d" % tau) for tau in taus]
    terms.append(("hebb", "hebbian"))
    if case.rates != "signed":
        reg = pick([0.5, 10.0] if N == 1 else [0.0, 0.5, 10.0])
        eps = pick([None, 1e-3, 1e-12])
        terms.append(("ent", "entropy:reg=%g%s" % (reg, "" if eps is None else ",eps=%g" % eps)))
    # population_kl: var_eps > 0 where a variance is 0 (a dead neuron, one
    # value per neuron), else 0 or not at random.
    needs_eps = any(bool((ref.population_variance(torch.from_numpy(x).double()) <= 0).any())
                    for x in (case.arrays["states"], case.arrays["states1"]))
    reductions = ["mean", "sum"] + (["none"] if not case.grad else [])
    for k, reduction in enumerate(reductions):
        var_eps = _number(g, 1e-4, 1e-1) if needs_eps or g.random() < 0.5 else 0.0
        terms.append(("kl%d" % k, "population_kl:symmetric=%s,reg=%g,reduction=%s,var_eps=%g"
                      % (pick(["true", "false"]), _number(g, 1e-4, 1), reduction, var_eps)))
    terms.append(("fit", "mse"))
    terms.append(("conn", "rnn_conn:layer=%s,metric=%s"
                  % (pick(["all", "input", "hidden", "readout"]), pick(["fro", "l1"]))))
    terms.append(("conn_all", "rnn_conn:layer=all,metric=%s" % pick(["fro", "l1"])))
    # cross_entropy on logits, and on probabilities (a softmax of the logits
    # written as pred would be another input: pred as given, some below the
    # clamp and some negative, where the gradient is 0).
    terms.append(("ce", "cross_entropy:clamp=%g" % pick([1e-12, 1e-6, 0.05])))
    terms.append(("ce_p", "cross_entropy:apply_softmax=false,clamp=%g" % pick([1e-3, 0.05])))
    return terms


def weigh_terms(case, terms, inputs):
    """Specs NAME=TYPE:params,lambda=x with x = u / (the largest gradient
    entry of the term alone), u in [0.5, 2]: no term's gradient hides another's."""
    specs = []
    for name, text in terms:
        u = case.rng.uniform(0.5, 2.0)
        term = ref.parse_term("%s=%s" % (name, text))
        scale = 0.0
        if not (term.type == "population_kl" and term.params["reduction"] == "none"):
            total, _ = ref.evaluate([term], inputs)
            used = [inputs[r] for r in sorted(term.uses())]
            for gr in torch.autograd.grad(total, used, allow_unused=True):
                if gr is not None:
                    scale = max(scale, float(gr.abs().max()))
        weight = u / scale if scale > 0 else u
        specs.append("%s=%s%slambda=%.4g" % (name, text, "," if ":" in text else ":", weight))
    return specs


# --------------------------------------------------------------------------
# Reference and comparison
# --------------------------------------------------------------------------

def load(case, directory):
    paths = {r: os.path.join(directory, r + ".npy") for r in ROLES}
    inputs, _ = ref.load_inputs(paths, case.layout == "time")
    return inputs


def reference_outputs(case, directory, specs):
    """(values: name -> float or np.ndarray, gradients: role -> np.ndarray
    in the file's layout) from scripts/reference.py."""
    inputs = load(case, directory)
    terms = [ref.parse_term(s) for s in specs]
    total, values = ref.evaluate(terms, inputs, want_grad=case.grad)
    out = {"total": float(total)}
    for name, v in values:
        out[name] = v.detach().numpy().copy() if v.dim() else float(v)
    grads = {}
    if case.grad:
        total.backward()
        for role, x in inputs.items():
            if role in ("label", "mask"):
                continue
            gr = x.grad if x.grad is not None else torch.zeros_like(x)
            if role in ref.BATCHED and case.layout == "time":
                gr = gr.transpose(0, 1)
            grads[role] = gr.detach().contiguous().numpy()
    return [name for name, _ in values], out, grads


def relative(c, r):
    """max |c - r| / max |r| over an array (a scalar: |c - r| / |r|); an
    exact 0 must be matched exactly."""
    c, r = np.asarray(c, dtype=np.float64), np.asarray(r, dtype=np.float64)
    if c.shape != r.shape or not np.all(np.isfinite(c)):
        return math.inf
    if r.size == 0:
        return 0.0
    diff, scale = float(np.max(np.abs(c - r))), float(np.max(np.abs(r)))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / scale


class Checker:
    def __init__(self, args):
        self.args = args
        self.failures = []
        self.failed_cases = {}
        self.worst = {}     # (dtype, 'values'|'gradients') -> (relative, where)
        self.runs = 0

    def fail(self, case, message):
        self.failures.append(message)
        print("FAIL: %s" % message)
        if case is not None:
            self.failed_cases[case.index] = case

    def note(self, dtype, kind, rel, where):
        best = self.worst.get((dtype, kind))
        if best is None or rel > best[0]:
            self.worst[(dtype, kind)] = (rel, where)

    def cli(self, np_, argv):
        """Runs ctrnn-loss ARGV on NP ranks: (status, stdout, stderr, command)."""
        a = self.args
        command = ["timeout", str(a.timeout), a.mpirun, "-np", str(np_), a.cli] + argv
        self.runs += 1
        run = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        shown = " ".join("'%s'" % x if any(ch in x for ch in " =;") else x for x in command[2:])
        if run.returncode == 124:
            self.fail(None, "TIMEOUT (a hang) after %d s: %s" % (a.timeout, shown))
        return run.returncode, run.stdout, run.stderr, shown


def input_args(case, directory):
    argv = []
    for role in ROLES:
        argv += ["--" + role.replace("_", "-"), os.path.join(directory, role + ".npy")]
    return argv + (["--time-major"] if case.layout == "time" else [])


def check_case(chk, case, work):
    directory = os.path.join(work, "case%d" % case.index)
    case.write(directory)
    inputs = load(case, directory)
    case.specs = weigh_terms(case, make_terms(case), inputs)
    names, want, want_grads = reference_outputs(case, directory, case.specs)
    tol = TOLERANCE[case.dtype]
    first = None
    for k, np_ in enumerate(chk.args.ranks):
        argv = ["eval"] + input_args(case, directory) + ["--json"]
        for s in case.specs:
            argv += ["--term", s]
        gdir = os.path.join(directory, "grad-%d" % np_)
        if case.grad:
            argv += ["--grad-dir", gdir]
        # Some multi-rank runs read and evaluate their shards in chunks.
        chunk = [None, 1, 2][(case.index + np_) % 3] if np_ > 1 else None
        if chunk:
            argv += ["--chunk-batch", str(chunk)]
        status, out, err, shown = chk.cli(np_, argv)
        where = "%s, %d rank(s)%s" % ("case %d" % case.index, np_,
                                     ", --chunk-batch %d" % chunk if chunk else "")
        if status != 0:
            chk.fail(case, "%s: exit %d: %s\n    %s" % (where, status, shown,
                                                     err.strip().replace("\n", "\n    ")))
            continue
        # meta.ranks and meta.decomposition change with the rank count.
        text = re.sub(r', "decomposition": \{[^}]*\}', '',
                      out.replace('"ranks": %d' % np_, '"ranks": P'))
        grads = {}
        if case.grad:
            for role in want_grads:
                path = os.path.join(gdir, "d_%s.npy" % role)
                if not os.path.exists(path):
                    chk.fail(case, "%s: no %s" % (where, path))
                    continue
                with open(path, "rb") as f:
                    grads[role] = f.read()
            # The command keeps its generations in DIR/.ctrnn-loss; the
            # d_*.npy names are all a reader sees.
            extra = sorted(set(os.listdir(gdir)) - {"d_%s.npy" % r for r in want_grads}
                           - {".ctrnn-loss"})
            if extra:
                chk.fail(case, "%s: unexpected files in --grad-dir: %s" % (where, extra))
        if first is not None:
            # Bitwise identity with the first rank count.
            if text != first[0]:
                chk.fail(case, "%s: the JSON differs from %d rank(s):\n    %s\n    %s"
                         % (where, chk.args.ranks[0], first[0].strip(), text.strip()))
            for role, data in grads.items():
                if data != first[1].get(role):
                    chk.fail(case, "%s: d_%s.npy differs bitwise from %d rank(s)"
                             % (where, role, chk.args.ranks[0]))
            continue
        first = (text, grads)
        compare(chk, case, where, out, names, want, gdir, want_grads, tol)


def compare(chk, case, where, out, names, want, gdir, want_grads, tol):
    """The first rank count's outputs against the reference."""
    try:
        got = json.loads(out)
    except ValueError as e:
        chk.fail(case, "%s: the JSON does not parse (%s): %s" % (where, e, out[:200]))
        return
    if list(got["terms"]) != names:
        chk.fail(case, "%s: terms %s, the reference reports %s" % (where, list(got["terms"]),
                                                                   names))
    meta = got.get("meta", {})
    expected_meta = dict(batch=case.B, time=case.T, neurons=case.N, dtype=case.dtype)
    if any(meta.get(k) != v for k, v in expected_meta.items()):
        chk.fail(case, "%s: meta %s, expected %s" % (where, meta, expected_meta))
    values = dict(got["terms"], total=got["total"])
    for name in ["total"] + names:
        if name not in values:
            continue
        c = values[name]
        finite = c is not None and (not isinstance(c, list) or None not in c)
        rel = relative(c, want[name]) if finite else math.inf   # null: not finite
        chk.note(case.dtype, "values", rel, "%s, %s" % (where, name))
        if not rel <= tol:
            chk.fail(case, "%s: %s = %s, reference %s (relative difference %.3g > %g)"
                     % (where, name, c, np.asarray(want[name]).tolist(), rel, tol))
    for role, r in want_grads.items():
        path = os.path.join(gdir, "d_%s.npy" % role)
        if not os.path.exists(path):
            continue
        c = np.load(path)
        if c.dtype != np.dtype(case.dtype) or c.shape != r.shape:
            chk.fail(case, "%s: d_%s.npy is %s %s, expected %s %s"
                     % (where, role, c.dtype, c.shape, case.dtype, r.shape))
            continue
        rel = relative(c, r)
        chk.note(case.dtype, "gradients", rel, "%s, d_%s" % (where, role))
        if not rel <= tol:
            worst = np.unravel_index(np.argmax(np.abs(c.astype(np.float64) - r)), r.shape)
            chk.fail(case, "%s: d_%s relative difference %.3g > %g (largest at %s: %.17g, "
                     "reference %.17g)" % (where, role, rel, tol, tuple(int(i) for i in worst),
                                           c[worst], r[worst]))


# --------------------------------------------------------------------------
# Errors, and torch.std
# --------------------------------------------------------------------------

def error_cases(seed):
    """(description, arrays, layout, term spec, expected status, needle,
    reference kind, unchecked formula or None, index check or None)."""
    g = np.random.default_rng([seed, 1000])
    cases = []
    # cv and fr_cv of a zero mean rate: neuron 1 is minus neuron 0, exactly.
    s = g.uniform(0.1, 1.0, (5, 3, 2))
    s[:, :, 1] = -s[:, :, 0]
    unchecked_cv = lambda x: ref.sd_across_neurons(ref.rate_means(x)) / ref.rate_means(x).mean()  # noqa: E731
    cases.append(("fr_dist cv of a zero mean rate", dict(states=s), "batch",
                  "c=fr_dist:metric=cv", 1, "term 'c' (fr_dist): cv: the mean rate is 0",
                  "domain", unchecked_cv, None))
    cases.append(("rnn fr_cv of a zero mean rate", dict(states=s.astype(np.float32)), "time",
                  "r=rnn:lambda_mse=0,lambda_fr_cv=1", 1,
                  "term 'r' (rnn): fr_cv: the mean rate is 0", "domain", unchecked_cv, None))
    # population_kl: neuron 1 of states1 constant, var_eps = 0.
    s0, s1 = g.uniform(0.0, 1.0, (3, 4, 3)), g.uniform(0.0, 1.0, (2, 5, 3))
    s1[:, :, 1] = 0.25
    cases.append(("population_kl with a constant neuron, var_eps=0",
                  dict(states=s0, states1=s1), "batch", "k=population_kl", 1,
                  "term 'k' (population_kl): neuron 1 of states1 has variance 0", "domain",
                  lambda x, y: ref.population_kl(x, y, check=False), None))
    # entropy: one negative rate, somewhere in the batch of 7.
    s = g.uniform(0.0, 1.0, (7, 4, 5))
    bad = (int(g.integers(0, 7)), int(g.integers(0, 4)), int(g.integers(0, 5)))
    s[bad] = -0.5
    cases.append(("entropy with a negative rate at %s" % (bad,), dict(states=s), "time",
                  "e=entropy", 1, "is negative", "domain", None, bad))
    # state_pred: T <= tau; rnn/fr_dist: correction >= N.
    cases.append(("state_pred with T = tau", dict(states=g.uniform(0, 1, (4, 3, 2))), "batch",
                  "p=state_pred:tau=3", 1, "T = 3 time steps, but tau = 3 needs T > tau",
                  "invalid", None, None))
    cases.append(("fr_dist sd with correction 1 and N = 1",
                  dict(states=g.uniform(0, 1, (4, 3, 1))), "batch",
                  "d=fr_dist:correction=1", 1, "correction 1 needs more than 1 neurons",
                  "invalid", None, None))
    # cross_entropy: -inf in pred, which the softmax would turn into p = 0.
    pred, label = g.normal(0.0, 1.0, (4, 3, 3)), g.uniform(0.0, 1.0, (4, 3, 3))
    pred[2, 1, 0] = -np.inf
    cases.append(("cross_entropy with -inf in pred", dict(pred=pred, label=label), "time",
                  "c=cross_entropy", 1, "pred[b=", "nonfinite", None, None))
    # A mask of neither width K nor 1.
    cases.append(("mse with a mask of width 2 for K = 3",
                  dict(pred=g.normal(0.0, 1.0, (4, 3, 3)), label=label,
                       mask=g.uniform(0.0, 1.0, (4, 3, 2))), "batch",
                  "m=mse", 1, "must be pred's shape", "invalid", None, None))
    return cases


def check_errors(chk, work):
    ranks = chk.args.ranks
    for k, (what, arrays, layout, spec, status, needle, kind, unchecked, bad) in enumerate(
            error_cases(chk.args.seed)):
        np_ = ranks[k % len(ranks)]
        where = "error case %d (%s), %d rank(s)" % (k, what, np_)
        directory = os.path.join(work, "error%d" % k)
        os.makedirs(directory)
        argv = ["eval", "--json", "--term", spec]
        for role, x in arrays.items():
            path = os.path.join(directory, role + ".npy")
            np.save(path, np.ascontiguousarray(x.transpose(1, 0, 2)) if layout == "time" else x)
            argv += ["--" + role, path]
        if layout == "time":
            argv.append("--time-major")
        code, out, err, shown = chk.cli(np_, argv)
        messages = [line for line in err.splitlines() if line.startswith("ctrnn-loss: error: ")]
        if code != status or len(messages) != 1 or needle not in messages[0]:
            chk.fail(None, "%s: %s: exit %d and messages %s, expected exit %d and one message "
                     "containing '%s'" % (where, shown, code, messages, status, needle))
            continue
        # The reference finds the same error ...
        inputs = {r: torch.from_numpy(x.astype(np.float64)) for r, x in arrays.items()}
        try:
            ref.evaluate([ref.parse_term(spec)], inputs)
            chk.fail(None, "%s: the reference accepts the input" % where)
            continue
        except ref.LossError as e:
            if e.kind != kind:
                chk.fail(None, "%s: the reference's error is '%s' (%s), expected %s"
                         % (where, e, e.kind, kind))
            message = str(e)
        # ... at the same place ...
        if bad is not None:
            c_index, r_index = parse_index(messages[0]), parse_index(message)
            if c_index != bad or r_index != bad:
                chk.fail(None, "%s: the tool names %s, the reference %s, expected %s"
                         % (where, c_index, r_index, bad))
        if "neuron 1 of states1" in needle and "neuron 1 of states1" not in message:
            chk.fail(None, "%s: the reference says '%s'" % (where, message))
        # ... and its formula without the check would divide by zero.
        if unchecked is not None:
            v = unchecked(*inputs.values())
            if bool(torch.isfinite(v).all()):
                chk.fail(None, "%s: the unchecked formula gives %s, not a division by zero"
                         % (where, v))


def parse_index(message):
    """The global (b, t, i) of 'states[b=X, t=Y, i=Z]' in an error message,
    with the tool's '(b counts from batch element O of the file)'; None if
    there is none."""
    m = re.search(r"states\[b=(\d+), t=(\d+), i=(\d+)\]", message)
    if m is None:
        return None
    offset = re.search(r"b counts from batch element (\d+)", message)
    b, t, i = (int(v) for v in m.groups())
    return (b + (int(offset.group(1)) if offset else 0), t, i)


def check_torch_std(chk, work):
    """README: correction=1 reproduces torch.std (nn4n's numbers)."""
    g = np.random.default_rng([chk.args.seed, 2000])
    s = g.uniform(0.0, 1.0, (6, 20, 9))
    directory = os.path.join(work, "std")
    os.makedirs(directory)
    path = os.path.join(directory, "states.npy")
    np.save(path, s)
    np_ = chk.args.ranks[-1]
    code, out, err, shown = chk.cli(np_, [
        "eval", "--states", path, "--json", "--term", "sd=fr_dist:metric=sd,correction=1",
        "--term", "cv=fr_dist:metric=cv,correction=1", "--term", "sd0=fr_dist:metric=sd",
        "--term", "r=rnn:lambda_mse=0,lambda_fr_sd=1,lambda_fr_cv=1,correction=1"])
    if code != 0:
        chk.fail(None, "torch.std check: %s: exit %d: %s" % (shown, code, err))
        return
    got = json.loads(out)["terms"]
    mu = torch.from_numpy(s).mean(dim=(0, 1))
    std = float(torch.std(mu))
    nn4n_cv = float(ref.rnn_fr_cv_nn4n(torch.from_numpy(s)))
    for name, value, want in (("fr_dist sd, correction=1", got["sd"], std),
                              ("rnn fr_sd, correction=1", got["r.fr_sd"], std),
                              ("fr_dist cv, correction=1", got["cv"], std / float(mu.mean())),
                              ("rnn fr_cv, correction=1 (nn4n: std/mean of |S|)",
                               got["r.fr_cv"], nn4n_cv)):
        rel = abs(value - want) / abs(want)
        if not rel <= 1e-12:
            chk.fail(None, "torch.std check: %s = %.17g, torch %.17g" % (name, value, want))
    # The default (1/N) differs: by sqrt((N - 1) / N) exactly.
    if not abs(got["sd0"] - std * math.sqrt(8 / 9)) <= 1e-12 * std:
        chk.fail(None, "torch.std check: sd (correction 0) = %.17g, not torch.std * sqrt(8/9) "
                 "= %.17g" % (got["sd0"], std * math.sqrt(8 / 9)))


# --------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=int(os.environ.get("CRL_XCHECK_SEED",
                                                                   DEFAULT_SEED)))
    p.add_argument("--case", type=int, action="append", help="run only these cases")
    p.add_argument("--ranks", default=os.environ.get("CRL_TEST_RANKS", "1 2 3 4"))
    p.add_argument("--cli", default=os.environ.get("CRL_CLI",
                                                   os.path.join(os.getcwd(), "src/cli/ctrnn-loss")))
    p.add_argument("--mpirun", default=os.environ.get("MPIRUN", "mpirun"))
    p.add_argument("--timeout", type=int, default=int(os.environ.get("CRL_TEST_TIMEOUT", 120)))
    p.add_argument("--keep", metavar="DIR", help="write the cases' files here and keep them")
    p.add_argument("--stress", action="store_true",
                   help="run the long float32 cases of STRESS instead (cases 100...)")
    p.add_argument("--verbose", action="store_true", help="print every case's terms")
    args = p.parse_args()
    args.ranks = [int(x) for x in args.ranks.split()]
    torch.set_default_dtype(torch.float64)
    print("seed %d (CRL_XCHECK_SEED or --seed to change), rank counts %s, torch %s"
          % (args.seed, " ".join(map(str, args.ranks)), torch.__version__))
    work = args.keep or tempfile.mkdtemp(prefix="ctrnn-loss-xcheck.")
    os.makedirs(work, exist_ok=True)
    chk = Checker(args)
    start = time.time()
    try:
        indices = args.case or (range(100, 100 + len(STRESS)) if args.stress
                                else range(len(SHAPES)))
        for index in indices:
            case = Case(index, args.seed)
            check_case(chk, case, work)
            print("%s: %d terms%s" % (case.describe(), len(case.specs),
                                      "" if not args.verbose else
                                      "\n    " + "\n    ".join(case.specs)))
        if not args.case and not args.stress:
            check_errors(chk, work)
            check_torch_std(chk, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("largest relative differences from the reference:")
    for (dtype, kind), (rel, where) in sorted(chk.worst.items()):
        print("  %-7s %-9s %.3g  (%s; bound %g)" % (dtype, kind, rel, where, TOLERANCE[dtype]))
    print("%d runs of ctrnn-loss, %.1f s" % (chk.runs, time.time() - start))
    if chk.failures:
        print("\n%d failure(s); the failing cases:" % len(chk.failures))
        for case in chk.failed_cases.values():
            print("  " + case.describe())
            for s in case.specs:
                print("      --term '%s'" % s)
        print("reproduce: %s %s --seed %d%s --keep DIR --verbose"
              % (sys.executable, os.path.abspath(__file__), args.seed,
                 "".join(" --case %d" % c for c in chk.failed_cases)))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
