#!/usr/bin/python3
"""
test_reference.py - checks scripts/reference.py against values computed by
hand and gradients written from docs/losses.md's closed forms (independent of both
autograd and the C library).  Run: /usr/bin/python3 scripts/test_reference.py
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference.py")


def rates(*shape, seed=0, low=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) + low).requires_grad_(True)


def grad(loss, x):
    (g,) = torch.autograd.grad(loss, x)
    return g


class HandValues(unittest.TestCase):
    """Small inputs whose losses are worked out on paper."""

    def setUp(self):
        # B=1, T=2, N=2: mu = (2, 4), m = 3.
        self.s = torch.tensor([[[1.0, 3.0], [3.0, 5.0]]], dtype=torch.float64, requires_grad=True)

    def test_fr(self):
        self.assertAlmostEqual(float(ref.fr(self.s, "l1")), 3.0)
        self.assertAlmostEqual(float(ref.fr(self.s, "l2")), (4 + 16) / 2)
        # l1: g_i = sign(mu_i)/N, spread over B T = 2 elements.
        self.assertTrue(torch.allclose(grad(ref.fr(self.s, "l1"), self.s),
                                       torch.full((1, 2, 2), 0.25, dtype=torch.float64)))

    def test_fr_dist(self):
        self.assertAlmostEqual(float(ref.fr_dist(self.s, "sd")), 1.0)           # sqrt(2/2)
        self.assertAlmostEqual(float(ref.fr_dist(self.s, "sd", 1)), math.sqrt(2))
        self.assertAlmostEqual(float(ref.fr_dist(self.s, "cv")), 1 / 3)
        self.assertAlmostEqual(float(ref.fr_dist(self.s, "mean_ad")), 1.0)
        self.assertAlmostEqual(float(ref.fr_dist(self.s, "max_ad")), 1.0)

    def test_correction_1_is_torch_std(self):
        s = rates(3, 4, 7)
        self.assertAlmostEqual(float(ref.fr_dist(s, "sd", correction=1)),
                               float(torch.std(s.mean(dim=(0, 1)))), places=14)
        self.assertAlmostEqual(float(ref.fr_dist(s, "sd", correction=1)), float(ref.sd_nn4n(s)),
                               places=14)
        self.assertAlmostEqual(float(ref.fr_dist(s, "cv", correction=1)),
                               float(ref.rnn_fr_cv_nn4n(s)), places=14)

    def test_max_ad_tie_goes_to_the_smallest_index(self):
        # mu = (0, 2, 4): |mu - m| = (2, 0, 2); i* = 0, s = -1.
        s = torch.tensor([[[0.0, 2.0, 4.0]]], dtype=torch.float64, requires_grad=True)
        g = grad(ref.fr_dist(s, "max_ad"), s).reshape(-1)
        expected = torch.tensor([-1 + 1 / 3, 1 / 3, 1 / 3], dtype=torch.float64)  # s(delta - 1/N)
        self.assertTrue(torch.allclose(g, expected))

    def test_sd_of_equal_means_has_zero_gradient(self):
        s = torch.ones(2, 3, 4, dtype=torch.float64, requires_grad=True)
        loss = ref.fr_dist(s, "sd")
        self.assertEqual(float(loss), 0.0)
        self.assertTrue(torch.equal(grad(loss, s), torch.zeros_like(s)))

    def test_state_pred_lags_time(self):
        # Differences along time: (2, 2) -> mean of squares 4; along the
        # first axis there is nothing to compare with B = 1.
        self.assertAlmostEqual(float(ref.state_pred(self.s, 1)), 4.0)
        s = rates(2, 5, 3)
        tau = 2
        d = s[:, :-tau] - s[:, tau:]
        n = 2 * 3 * 3
        expected = torch.zeros_like(s)
        expected[:, :-tau] += 2 * d / n
        expected[:, tau:] -= 2 * d / n
        self.assertTrue(torch.allclose(grad(ref.state_pred(s, tau), s), expected))
        with self.assertRaises(ref.LossError):
            ref.state_pred(s, 5)

    def test_state_pred_nn4n_slices_the_batch(self):
        s = rates(3, 4, 2)
        self.assertAlmostEqual(float(ref.state_pred_nn4n(s, 1)),
                               float(((s[1:] - s[:-1]) ** 2).mean()), places=14)

    def test_hebbian(self):
        # W = I: h_b = 1/T sum_t |s_t|^2 = (10 + 34)/2 = 22.
        w = torch.eye(2, dtype=torch.float64, requires_grad=True)
        self.assertAlmostEqual(float(ref.hebbian(self.s, w)), 22.0)
        # Signs differ per time step but not per element: the two placements
        # of |.| differ.
        s = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
        w = torch.tensor([[1.0, 0.0], [0.0, -3.0]], dtype=torch.float64)
        self.assertAlmostEqual(float(ref.hebbian(s, w)), 1.0)        # |(1 - 3)/2|
        self.assertAlmostEqual(float(ref.hebbian_nn4n(s, w)), 2.0)   # (1 + 3)/2

    def test_hebbian_gradients_match_spec(self):
        s, w = rates(3, 4, 5, seed=1), rates(5, 5, seed=2, low=-0.5)
        B, T = 3, 4
        loss = ref.hebbian(s, w)
        gs, gw = torch.autograd.grad(loss, (s, w))
        c = torch.einsum("bti,btj->bij", s, s).detach() / T
        sign = torch.sign((c * w.detach()).sum(dim=(1, 2)))
        expected_s = sign[:, None, None] / (B * T) * (s.detach() @ (w + w.T).detach().T)
        expected_w = (sign[:, None, None] * c).sum(0) / B
        self.assertTrue(torch.allclose(gs, expected_s))
        self.assertTrue(torch.allclose(gw, expected_w))

    def test_entropy(self):
        # Uniform rates over N neurons: H = log N (up to eps), plus reg |s|^2.
        n = 4
        s = torch.full((2, 3, n), 0.5, dtype=torch.float64, requires_grad=True)
        self.assertAlmostEqual(float(ref.entropy(s, reg=0)), math.log(n), places=6)
        self.assertAlmostEqual(float(ref.entropy(s, reg=2)), math.log(n) + 2 * n * 0.25, places=6)
        with self.assertRaises(ref.LossError) as e:
            ref.entropy(s - 1)
        self.assertEqual(e.exception.kind, "domain")

    def test_entropy_gradient_matches_spec(self):
        s, reg, eps = rates(2, 3, 5, seed=3), 0.7, 1e-8
        g = grad(ref.entropy(s, reg, eps), s)
        x = s.detach()
        z = x.sum(-1, keepdim=True) + eps
        p = x / z
        q = -torch.log(p + eps) - p / (p + eps)
        dh = (q - (p * q).sum(-1, keepdim=True)) / z
        self.assertTrue(torch.allclose(g, (dh + 2 * reg * x) / 6, rtol=1e-10, atol=1e-14))
        self.assertAlmostEqual(float(ref.entropy(s, reg)), float(ref.entropy_nn4n(s, reg)),
                               places=13)

    def test_population_kl(self):
        p = torch.tensor([[[0.0], [2.0]]], dtype=torch.float64, requires_grad=True)  # mu 1, v 1
        q = torch.tensor([[[0.0], [4.0]]], dtype=torch.float64, requires_grad=True)  # mu 2, v 4
        kl_pq = 0.5 * (math.log(4) + (1 + 1) / 4 - 1)
        kl_qp = 0.5 * (math.log(1 / 4) + (4 + 1) / 1 - 1)
        reg = 1e-3 * (2 + 8)
        self.assertAlmostEqual(float(ref.population_kl(p, q, symmetric=False)), kl_pq + reg)
        self.assertAlmostEqual(float(ref.population_kl(p, q)), 0.5 * (kl_pq + kl_qp) + reg)
        d, r = ref.population_kl(p, q, reduction="none", reg=0)
        self.assertEqual(tuple(d.shape), (1,))
        self.assertEqual(float(r), 0.0)
        with self.assertRaises(ref.LossError) as e:
            ref.population_kl(p, torch.ones(1, 3, 1, dtype=torch.float64))
        self.assertEqual(e.exception.kind, "domain")
        # var_eps admits a constant neuron.
        ref.population_kl(p, torch.full((1, 3, 1), 0.1, dtype=torch.float64), var_eps=1e-3)

    def test_population_kl_gradient_matches_spec(self):
        s0, s1, reg = rates(2, 3, 4, seed=4), rates(3, 2, 4, seed=5), 0.01
        g0, g1 = torch.autograd.grad(ref.population_kl(s0, s1, symmetric=False, reg=reg,
                                                       reduction="sum"), (s0, s1))
        x0, x1 = s0.detach(), s1.detach()
        m0, m1 = x0.mean((0, 1)), x1.mean((0, 1))
        v0, v1 = x0.var((0, 1), unbiased=False), x1.var((0, 1), unbiased=False)
        dm0, dm1 = (m0 - m1) / v1, -(m0 - m1) / v1
        dv0 = 0.5 * (1 / v1 - 1 / v0)
        dv1 = 0.5 * (1 / v1 - (v0 + (m0 - m1) ** 2) / v1 ** 2)
        e0 = (dm0 + 2 * dv0 * (x0 - m0) + 2 * reg * x0) / 6
        e1 = (dm1 + 2 * dv1 * (x1 - m1) + 2 * reg * x1) / 6
        self.assertTrue(torch.allclose(g0, e0))
        self.assertTrue(torch.allclose(g1, e1))

    def test_rnn(self):
        s = rates(2, 3, 4, seed=6)
        pred, label = rates(2, 3, 2, seed=7), rates(2, 3, 2, seed=8)
        w_in, w_hid, w_out = rates(4, 3, seed=9), rates(4, 4, seed=10), rates(2, 4, seed=11)
        lam = dict(lambda_mse=2, lambda_in=0.1, lambda_hid=0.2, lambda_out=0.3, lambda_fr=0.4,
                   lambda_fr_sd=0.5, lambda_fr_cv=0.6, correction=1)
        total, parts = ref.rnn(pred, label, s, w_in, w_hid, w_out, **lam)
        mu = s.mean((0, 1))
        expected = [2 * ((pred - label) ** 2).mean(), 0.1 * (w_in ** 2).sum() / 12,
                    0.2 * (w_hid ** 2).sum() / 16, 0.3 * (w_out ** 2).sum() / 8,
                    0.4 * (s ** 2).mean(), 0.5 * mu.std(), 0.6 * mu.std() / mu.mean()]
        for got, want in zip(parts.values(), expected):
            self.assertAlmostEqual(float(got), float(want), places=14)
        self.assertAlmostEqual(float(total), float(sum(expected)), places=14)
        # fr_sd gradient: g_i = lambda (mu_i - m)/((N - c) sigma_c), over B T.
        g = grad(parts["fr_sd"], s)
        sigma = mu.detach().std()
        want = 0.5 * (mu.detach() - mu.detach().mean()) / (3 * sigma) / 6
        self.assertTrue(torch.allclose(g, want.expand_as(g)))
        # A zero lambda needs no input.
        total, parts = ref.rnn(pred, label)
        self.assertEqual(float(parts["fr_cv"]), 0.0)
        self.assertNotAlmostEqual(float(ref.rnn_fr_nn4n(s)), float((s ** 2).mean()))

    def test_rnn_conn(self):
        w_in = torch.tensor([[1.0], [-2.0]], dtype=torch.float64, requires_grad=True)
        w_hid = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64, requires_grad=True)
        w_out = torch.tensor([[3.0, 4.0]], dtype=torch.float64, requires_grad=True)
        fro = ref.rnn_conn(w_in, w_hid, w_out)
        self.assertAlmostEqual(float(fro), 2 * math.sqrt(5) + 5, places=14)
        # d ||W||_F / dW = W / ||W||_F (docs/losses.md), not 2 W.
        self.assertTrue(torch.allclose(grad(fro, w_out), w_out.detach() / 5))
        l1 = ref.rnn_conn(w_in, w_hid, w_out, metric="l1")
        self.assertEqual(float(l1), 13.0)
        self.assertTrue(torch.equal(grad(l1, w_hid), torch.tensor([[1.0, 0.0], [0.0, 1.0]],
                                                                  dtype=torch.float64)))
        self.assertEqual(float(ref.rnn_conn(w_in=w_in, layer="input", metric="l1")), 3.0)
        zero = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
        loss = ref.rnn_conn(w_hid=zero, layer="hidden")
        self.assertEqual(float(loss), 0.0)
        self.assertTrue(torch.equal(grad(loss, zero), torch.zeros(2, 2, dtype=torch.float64)))

    def test_cross_entropy(self):
        # Logits (0, ln 3) -> p = (1/4, 3/4); (0, 0) -> (1/2, 1/2).
        pred = torch.tensor([[[0.0, math.log(3)], [0.0, 0.0]]], dtype=torch.float64,
                            requires_grad=True)
        label = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]], dtype=torch.float64, requires_grad=True)
        loss = ref.cross_entropy(pred, label)
        self.assertAlmostEqual(float(loss), 1.5 * math.log(2), places=14)
        # dL/dpred = (p sum(y) - y) / (B T)
        want = torch.tensor([[[-0.375, 0.375], [0.0, 0.0]]], dtype=torch.float64)
        self.assertTrue(torch.allclose(grad(loss, pred), want))
        mask = torch.tensor([[[1.0], [0.0]]], dtype=torch.float64)
        self.assertAlmostEqual(float(ref.cross_entropy(pred, label, mask)), math.log(2), places=14)
        # Probabilities, clamp 0.1: no gradient where p < clamp.
        p = torch.tensor([[[0.5, 0.05, 0.45]]], dtype=torch.float64, requires_grad=True)
        y = torch.tensor([[[0.2, 0.3, 0.5]]], dtype=torch.float64)
        loss = ref.cross_entropy(p, y, apply_softmax=False, clamp=0.1)
        self.assertAlmostEqual(float(loss), -(0.2 * math.log(0.5) + 0.3 * math.log(0.1)
                                              + 0.5 * math.log(0.45)), places=14)
        g = grad(loss, p).reshape(-1)
        self.assertAlmostEqual(float(g[0]), -0.4, places=14)
        self.assertEqual(float(g[1]), 0.0)
        with self.assertRaises(ref.LossError):
            ref.cross_entropy(pred, label, torch.ones(1, 2, 3, dtype=torch.float64))

    def test_masked_mse(self):
        pred = torch.tensor([[[0.5], [-1.0]], [[2.0], [0.0]]], dtype=torch.float64)
        label = torch.tensor([[[0.0], [0.0]], [[1.0], [1.0]]], dtype=torch.float64)
        mask = torch.tensor([[[1.0], [0.5]], [[0.0], [2.0]]], dtype=torch.float64)
        self.assertAlmostEqual(float(ref.mse(pred, label, mask)), 4.5 / 4, places=15)
        total, parts = ref.rnn(pred, label, mask=mask)
        self.assertAlmostEqual(float(parts["mse"]), 4.5 / 4, places=15)
        # evaluate() hands the mask to the terms that take one, not to others.
        terms = [ref.parse_term("m=mse"), ref.parse_term("c=cross_entropy")]
        _, values = ref.evaluate(terms, dict(pred=pred, label=label, mask=mask))
        self.assertAlmostEqual(float(dict(values)["m"]), 4.5 / 4, places=15)

    def test_cv_of_zero_mean_is_a_domain_error(self):
        s = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
        with self.assertRaises(ref.LossError) as e:
            ref.fr_dist(s, "cv")
        self.assertEqual(e.exception.kind, "domain")


class Composite(unittest.TestCase):
    def test_parse_term(self):
        t = ref.parse_term("act=fr:metric=l1,lambda=0.1")
        self.assertEqual((t.name, t.type, t.weight, t.params), ("act", "fr", 0.1, {"metric": "l1"}))
        t = ref.parse_term("kl=population_kl:symmetric=no,reduction=none")
        self.assertEqual(t.params, {"symmetric": False, "reg": 1e-3, "reduction": "none",
                                    "var_eps": 0.0})
        self.assertEqual(ref.parse_term("h=hebbian").params, {})
        for bad in ("x", "x=nosuch", "x=fr:metric=l3", "x=fr:bogus=1", "x=state_pred:tau=1.5",
                    "x=state_pred:tau=0", "x=population_kl:symmetric=maybe", "a.b=fr",
                    "x=fr:lambda=inf", "x=fr:metric=l1,metric=l2"):
            with self.assertRaises(ref.LossError, msg=bad):
                ref.parse_term(bad)

    def test_values_in_the_c_librarys_order(self):
        s, s1 = rates(2, 3, 4, seed=12), rates(2, 3, 4, seed=13)
        terms = [ref.parse_term(x) for x in ("r=rnn:lambda_fr=1,lambda_mse=0,lambda=2",
                                             "kl=population_kl:reduction=none,lambda=3",
                                             "a=fr:lambda=0.5")]
        total, values = ref.evaluate(terms, {"states": s, "states1": s1})
        names = [n for n, _ in values]
        self.assertEqual(names, ["r", "r.mse", "r.in", "r.hid", "r.out", "r.fr", "r.fr_sd",
                                 "r.fr_cv", "kl", "kl.reg", "a"])
        value = dict(values)
        self.assertAlmostEqual(float(value["r"]), 2 * float((s ** 2).mean()), places=14)
        self.assertAlmostEqual(float(value["r.fr"]), float(value["r"]), places=14)
        d, r = ref.population_kl(s, s1, reduction="none")
        self.assertTrue(torch.allclose(value["kl"], 3 * d))
        self.assertAlmostEqual(float(value["kl.reg"]), 3 * float(r), places=14)
        # reduction=none is not in the total.
        self.assertAlmostEqual(float(total), float(value["r"] + value["a"]), places=14)
        with self.assertRaises(ref.LossError):
            ref.evaluate(terms, {"states": s, "states1": s1}, want_grad=True)

    def test_input_checks(self):
        s = rates(2, 3, 4).detach().clone()
        s[1, 2, 3] = float("nan")
        with self.assertRaises(ref.LossError) as e:
            ref.evaluate([ref.parse_term("a=fr")], {"states": s})
        self.assertEqual(e.exception.kind, "nonfinite")
        self.assertIn("states[b=1, t=2, i=3] is NaN", str(e.exception))
        with self.assertRaises(ref.LossError):
            ref.evaluate([ref.parse_term("a=mse")], {"states": s})
        with self.assertRaises(ref.LossError):
            ref.evaluate([ref.parse_term("a=fr"), ref.parse_term("a=fr")], {"states": rates(1, 2, 3)})


class CommandLine(unittest.TestCase):
    def run_tool(self, *args):
        return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)

    def test_json_and_gradients_in_both_layouts(self):
        g = np.random.default_rng(0)
        arrays = dict(states=g.random((3, 5, 4)), states1=g.random((2, 6, 4)),
                      pred=g.random((3, 5, 2)), label=g.random((3, 5, 2)),
                      w_in=g.random((4, 3)), w_hid=g.random((4, 4)), w_out=g.random((2, 4)),
                      w_hebb=g.random((4, 4)) - 0.5)
        terms = ["--term", "r=rnn:lambda_in=0.1,lambda_hid=0.1,lambda_out=0.1,lambda_fr=0.1,"
                 "lambda_fr_sd=0.1,lambda_fr_cv=0.1,lambda=0.5",
                 "--term", "h=hebbian", "--term", "p=state_pred:tau=2",
                 "--term", "e=entropy:reg=1", "--term", "kl=population_kl",
                 "--term", "d=fr_dist:metric=max_ad"]
        outputs = []
        with tempfile.TemporaryDirectory() as tmp:
            for layout in ("batch", "time"):
                d = os.path.join(tmp, layout)
                os.makedirs(d)
                for role, a in arrays.items():
                    if layout == "time" and a.ndim == 3:
                        a = a.transpose(1, 0, 2)
                    np.save(os.path.join(d, role + ".npy"), a.astype(np.float32))
                extra = ["--time-major"] if layout == "time" else []
                run = self.run_tool(d, *terms, *extra, "--grad-dir", os.path.join(d, "grad"))
                self.assertEqual(run.returncode, 0, run.stderr)
                out = json.loads(run.stdout)
                self.assertEqual(out["meta"]["dtype"], "float32")
                self.assertEqual(sorted(os.listdir(os.path.join(d, "grad"))),
                                 sorted("d_%s.npy" % r for r in arrays if r != "label"))
                grads = {r: np.load(os.path.join(d, "grad", "d_%s.npy" % r))
                         for r in arrays if r != "label"}
                for r, gr in grads.items():
                    self.assertEqual(gr.dtype, np.float64)
                    if layout == "time" and gr.ndim == 3:
                        gr = gr.transpose(1, 0, 2)
                    grads[r] = gr
                outputs.append((out, grads))
        (a, ga), (b, gb) = outputs
        self.assertEqual(list(a["terms"]), list(b["terms"]))
        for k in a["terms"]:   # the layout changes only the order of additions
            self.assertAlmostEqual(a["terms"][k], b["terms"][k], delta=1e-14 * abs(a["terms"][k]))
        self.assertEqual(list(a["terms"])[:8], ["r", "r.mse", "r.in", "r.hid", "r.out", "r.fr",
                                                "r.fr_sd", "r.fr_cv"])
        self.assertAlmostEqual(a["total"], sum(a["terms"][k] for k in ("r", "h", "p", "e", "kl",
                                                                       "d")), places=12)
        for r in ga:
            np.testing.assert_allclose(ga[r], gb[r], rtol=1e-12, atol=1e-15)
        # The gradient agrees with the library functions' autograd.
        s = torch.tensor(arrays["states"].astype(np.float32), dtype=torch.float64,
                         requires_grad=True)
        (g,) = torch.autograd.grad(ref.state_pred(s, 2), s)
        self.assertFalse(np.allclose(ga["states"], g.numpy()))   # other terms add to it

    def test_exit_statuses(self):
        with tempfile.TemporaryDirectory() as tmp:
            np.save(os.path.join(tmp, "states.npy"), -np.ones((1, 2, 3)))
            self.assertEqual(self.run_tool(tmp, "--term", "x=nosuch").returncode, 2)
            run = self.run_tool(tmp, "--term", "e=entropy")
            self.assertEqual(run.returncode, 1)
            self.assertIn("term 'e' (entropy): negative rate at states[b=0, t=0, i=0]", run.stderr)
            run = self.run_tool(tmp, "--term", "f=fr:metric=l1")
            self.assertEqual(run.returncode, 0, run.stderr)
            self.assertEqual(json.loads(run.stdout)["terms"], {"f": 1.0})


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    unittest.main()
