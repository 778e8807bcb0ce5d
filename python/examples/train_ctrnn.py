#!/usr/bin/python3
"""
train_ctrnn.py - a small CTRNN trained with BPTT on a perceptual decision
task, data-parallel over MPI ranks, with ctrnnloss's RNNLoss (output MSE,
firing-rate regularizers and a recurrent-weight penalty).

    mpirun -np 2 python3 python/examples/train_ctrnn.py [--epochs 10 ...]

(PYTHONPATH=python from the repository root, or the package installed.)

The network: x <- (1 - alpha) x + alpha (W_hid r + W_in u + b), r = relu(x),
y = W_out r + b_out, alpha = 0.1.  The task: a noisy evidence signal of
coherence c in [-1, 1] during the stimulus period, a go cue; after the go cue
the output must be sign(c), before it 0.

Data parallelism, and why the gradients are SUMMED:
  * every step draws the same global batch on every rank (same seed) and each
    rank keeps its slice (sizes may differ; a rank may hold none);
  * the criterion returns the GLOBAL loss (the mean over the whole batch) on
    every rank, and backward gives d(global loss)/d(this rank's rates and
    outputs);
  * so the gradient a parameter receives through this rank's rates is this
    rank's share of the global gradient: summing the shares over the ranks
    (MPI allreduce SUM) gives the exact gradient of the global loss.  (Plain
    DDP averages instead because there each rank's loss is the mean over its
    own slice; here the criterion already divides by the global batch.)
  * the weight-penalty term (lambda_hid) reads W_hid itself: its gradient is
    already global and the same on every rank.  W_hid goes into the criterion
    as a detached leaf of its own, so that this direct gradient is kept apart
    from the shares and added once, after the allreduce, not summed.
Every rank then applies the same update, and the replicas stay equal.
"""
import argparse
import sys

from mpi4py import MPI  # before ctrnnloss: initializes MPI
import torch

from ctrnnloss.torch import RNNLoss


class CTRNN(torch.nn.Module):
    """A rate network: (B, T, n_in) inputs -> (B, T, n) rates, (B, T, n_out) outputs."""

    def __init__(self, n_in, n, n_out, alpha=0.1):
        super().__init__()
        self.alpha = alpha
        self.w_in = torch.nn.Linear(n_in, n)               # weight n x n_in
        self.w_hid = torch.nn.Linear(n, n, bias=False)     # weight n x n
        self.w_out = torch.nn.Linear(n, n_out)             # weight n_out x n

    def forward(self, u):
        x = torch.zeros(u.shape[0], self.w_hid.weight.shape[0], dtype=u.dtype)
        r = torch.relu(x)
        rates = []
        for t in range(u.shape[1]):
            x = (1 - self.alpha) * x + self.alpha * (self.w_hid(r) + self.w_in(u[:, t]))
            r = torch.relu(x)
            rates.append(r)
        rates = torch.stack(rates, dim=1)
        return rates, self.w_out(rates)


def decision_task(batch, time, generator, dtype):
    """Inputs (batch, time, 2): evidence c + noise during the stimulus, a go
    cue after it; targets (batch, time, 1): 0, then sign(c) after the cue."""
    stim0, stim1, go = time // 8, time // 2, (5 * time) // 8
    coherence = torch.rand(batch, generator=generator, dtype=dtype) * 2 - 1
    u = torch.zeros(batch, time, 2, dtype=dtype)
    noise = torch.randn(batch, stim1 - stim0, generator=generator, dtype=dtype)
    u[:, stim0:stim1, 0] = coherence[:, None] + 0.5 * noise
    u[:, go:, 1] = 1
    y = torch.zeros(batch, time, 1, dtype=dtype)
    y[:, go:, 0] = torch.sign(coherence)[:, None]
    return u, y


def shard(batch, rank, size):
    """This rank's slice of the batch (whole elements, contiguous)."""
    return slice(rank * batch // size, (rank + 1) * batch // size)


def train_step(model, criterion, optimizer, u, y, comm):
    """One BPTT step on this rank's slice (u, y).  Returns the global loss."""
    optimizer.zero_grad()
    rates, out = model(u)
    # W_hid's own leaf: the penalty's gradient lands here, apart from the
    # gradient through the rates (this rank's share).
    w_hid = model.w_hid.weight.detach().requires_grad_()
    loss, _ = criterion(out, y, states=rates, w_hid=w_hid)   # (total, components)
    loss.backward()
    allreduce_sum([p.grad for p in model.parameters()], comm)   # shares -> global gradient
    model.w_hid.weight.grad += w_hid.grad                       # already global: added once
    optimizer.step()
    return criterion.total   # the global loss as an exact double, equal on every rank


def allreduce_sum(tensors, comm):
    """Sums tensors over the ranks in place, in one MPI_Allreduce."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    comm.Allreduce(MPI.IN_PLACE, flat.numpy(), op=MPI.SUM)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def make(args, comm):
    """The model (the same initial weights on every rank), the criterion and
    the optimizer."""
    torch.manual_seed(args.seed)
    model = CTRNN(2, args.hidden, 1).to(args.dtype)
    criterion = RNNLoss(lambda_mse=1.0, lambda_hid=args.lambda_hid, lambda_fr=args.lambda_fr,
                        lambda_fr_sd=args.lambda_fr_sd, comm=comm)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    return model, criterion, optimizer


def train(args, comm=MPI.COMM_WORLD, log=print):
    """Trains; returns the mean global loss of each epoch."""
    model, criterion, optimizer = make(args, comm)
    generator = torch.Generator().manual_seed(args.seed + 1)
    mine = shard(args.batch, comm.Get_rank(), comm.Get_size())
    losses = []
    for epoch in range(args.epochs):
        total = 0.0
        for _ in range(args.steps):
            u, y = decision_task(args.batch, args.time, generator, args.dtype)
            total += train_step(model, criterion, optimizer, u[mine], y[mine], comm)
        losses.append(total / args.steps)
        if comm.Get_rank() == 0:
            log("epoch %3d  loss %.6f  (mse %.6f, fr %.2e, fr_sd %.2e)" % (
                epoch + 1, losses[-1], criterion.values["rnn.mse"],
                criterion.values["rnn.fr"], criterion.values["rnn.fr_sd"]))
    return losses


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=10, help="steps per epoch")
    p.add_argument("--batch", type=int, default=32, help="global batch, split over the ranks")
    p.add_argument("--time", type=int, default=40)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--lambda-fr", type=float, default=1e-3)
    p.add_argument("--lambda-fr-sd", type=float, default=1e-3)
    p.add_argument("--lambda-hid", type=float, default=1e-3)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    args.dtype = getattr(torch, args.dtype)
    return args


if __name__ == "__main__":
    torch.set_num_threads(1)   # the ranks are the parallelism
    losses = train(parse())
    if MPI.COMM_WORLD.Get_rank() == 0 and not losses[-1] < losses[0]:
        sys.exit("the loss did not go down")
