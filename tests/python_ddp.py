#!/usr/bin/python3
"""
python_ddp.py - the data-parallel recipe with PyTorch's DistributedDataParallel
(run by tests/python_ddp.sh):

    mpirun -np P python3 python_ddp.py record|compare FILE

torch.distributed (gloo) is initialised from Open MPI's environment
(OMPI_COMM_WORLD_RANK / _SIZE, MASTER_ADDR 127.0.0.1, MASTER_PORT from the
driver); the example's CTRNN is wrapped in DistributedDataParallel, and an
RNNLoss with ddp=True on the same ranks (MPI.COMM_WORLD) reads W_hid from
the model itself.  DDP averages parameter gradients over the ranks; the
criterion multiplies this rank's shares by the number of ranks and leaves
the (already global) weight gradients alone, so the average is the exact
gradient of the global loss.  record (1 rank) saves the parameter gradients
after one step; compare (P ranks) checks they agree to 1e-12 (float64), and
that without ddp=True they would not (the trap the option avoids).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(TOP, "python"), os.path.join(TOP, "python", "examples")]

from mpi4py import MPI  # noqa: E402  (initialises MPI before ctrnnloss)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from ctrnnloss.torch import RNNLoss  # noqa: E402
import train_ctrnn  # noqa: E402

ARGS = ["--dtype", "float64", "--batch", "6", "--time", "12", "--hidden", "8",
        "--lambda-hid", "0.1", "--lambda-fr", "0.01", "--lambda-fr-sd", "0.01"]


def init_from_open_mpi():
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    dist.init_process_group("gloo", rank=rank, world_size=size)
    return rank, size


def gradients(ddp):
    """The parameter gradients after one DDP step on this rank's slice."""
    args = train_ctrnn.parse(ARGS)
    torch.manual_seed(args.seed)
    model = train_ctrnn.CTRNN(2, args.hidden, 1).to(args.dtype)
    wrapped = torch.nn.parallel.DistributedDataParallel(model)
    criterion = RNNLoss(lambda_mse=1.0, lambda_hid=args.lambda_hid, lambda_fr=args.lambda_fr,
                        lambda_fr_sd=args.lambda_fr_sd, ddp=ddp)
    u, y = train_ctrnn.decision_task(args.batch, args.time, torch.Generator().manual_seed(7),
                                     args.dtype)
    mine = train_ctrnn.shard(args.batch, dist.get_rank(), dist.get_world_size())
    rates, out = wrapped(u[mine])
    loss, _ = criterion(out, y[mine], states=rates, w_hid=model.w_hid.weight)
    loss.backward()
    return {name: p.grad.detach().numpy().copy() for name, p in model.named_parameters()}


def main():
    phase, path = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    rank, size = init_from_open_mpi()
    assert size == MPI.COMM_WORLD.Get_size()
    got = gradients(ddp=True)
    failures = 0
    if phase == "record":
        np.savez(path, **got)
    else:
        with np.load(path) as f:
            saved = dict(f)
        for name, g in got.items():
            err = float(np.max(np.abs(g - saved[name])))
            scale = float(np.max(np.abs(saved[name])))
            if not err <= 1e-12 * scale:
                failures += 1
                print("FAIL (rank %d): %s differs from 1 rank by %g (scale %g)"
                      % (rank, name, err, scale), flush=True)
        if size > 1:
            plain = gradients(ddp=False)
            trapped = all(np.max(np.abs(plain[n] - saved[n])) <= 1e-12 * np.max(np.abs(saved[n]))
                          for n in plain)
            if trapped:
                failures += 1
                print("FAIL (rank %d): without ddp=True the gradients agree too: the test "
                      "cannot see the double scaling" % rank, flush=True)
    failures = MPI.COMM_WORLD.allreduce(failures)
    if rank == 0:
        print("ddp %s at %d rank(s): %d failures" % (phase, size, failures), flush=True)
    dist.destroy_process_group()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
