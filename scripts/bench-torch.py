#!/usr/bin/python3
"""
bench-torch.py - the workloads of bench/bench.c in eager PyTorch: the same
global shapes and term parameters, float32, batch-major, forward and
backward through autograd with the loss functions of scripts/reference.py
(the tree's one PyTorch implementation of each loss), on P threads.

    scripts/bench-torch.py [--threads P] [--reps R] [--scale S] [--csv] [WORKLOAD...]

Prints the median of R (>= 10) timed evaluations after two warm-up ones, and
the peak resident memory a workload adds to the process, next to what its
inputs and gradients take.  --scale multiplies B as ctrnn-bench's does; B is
at least P, as ctrnn-bench's is at least its number of ranks, so that
`bench-torch.py --threads P` and `mpirun -np P ctrnn-bench` time the same
problem.  Input validation (NaN scans, the sign check of entropy, the
constant-neuron rule of population_kl) is skipped: this times what a PyTorch
user's training step would run.

Needs python3-torch and python3-numpy (Debian); run it with /usr/bin/python3.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

torch = reference = None   # imported in main, once the thread count is known


def proc_status_kib(key):
    """VmRSS or VmHWM of this process in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def reset_peak():
    """Starts a new VmHWM peak (Linux: "5" to clear_refs), as bench.c does."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def make_inputs(spec, B, generator):
    """The workload's inputs, float32, uniform in [0, 1) (Hebbian weights
    shifted by -1/2, as in bench.c); those with a gradient require it."""
    _, T, N = spec["shape"]

    def uniform(*shape, grad=True):
        return torch.rand(*shape, generator=generator, dtype=torch.float32).requires_grad_(grad)

    inputs = {"states": uniform(B, T, N)}
    if spec.get("states1"):
        inputs["states1"] = uniform(B, T, N)
    if spec.get("K"):
        K, N_in = spec["K"], spec["N_in"]
        inputs.update(pred=uniform(B, T, K), label=uniform(B, T, K, grad=False),
                      w_in=uniform(N, N_in), w_hid=uniform(N, N), w_out=uniform(K, N))
    if spec.get("hebb"):
        with torch.no_grad():
            w = uniform(N, N, grad=False) - 0.5
        inputs["w_hebb"] = w.requires_grad_(True)
    return inputs


def bench(name, scale, threads, reps):
    """(B, T, N, median seconds, peak extra KiB, inputs+gradients MiB)."""
    spec = benchlib.WORKLOADS[name]
    B = benchlib.batch_size(name, scale, threads)
    _, T, N = spec["shape"]
    terms = [reference.make_term(n, t, params, 1.0) for n, t, params in spec["terms"]]
    reset_peak()
    baseline = proc_status_kib("VmRSS")
    inputs = make_inputs(spec, B, torch.Generator().manual_seed(1))
    leaves = [x for x in inputs.values() if x.requires_grad]

    def step():
        for x in leaves:
            x.grad = None
        total, _ = reference.evaluate(terms, inputs, check=False)
        total.backward()

    step()  # warm-up, as in bench.c
    step()
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t0)
    peak = proc_status_kib("VmHWM") - baseline
    data = sum(x.numel() * x.element_size() for x in inputs.values())
    data += sum(x.numel() * x.element_size() for x in leaves)
    return B, T, N, statistics.median(seconds), peak, data / 1048576


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--threads", type=int, default=1, metavar="P",
                        help="torch.set_num_threads(P) (default 1)")
    parser.add_argument("--reps", type=int, default=10, metavar="R",
                        help="timed repetitions, at least 10 (default 10)")
    parser.add_argument("--scale", type=float, default=1.0, metavar="S",
                        help="multiplies each workload's B (default 1)")
    parser.add_argument("--csv", action="store_true", help="CSV instead of text")
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                        help="some of: " + ", ".join(benchlib.WORKLOADS))
    args = parser.parse_args()
    unknown = [w for w in args.workloads if w not in benchlib.WORKLOADS]
    if unknown:
        parser.error("unknown workload %s" % ", ".join(unknown))
    reps = max(args.reps, 10)
    # PyTorch's "generic" BLAS is Debian's libblas.so.3 (OpenBLAS): its own
    # thread pool, sized when the library loads, must use the same P cores.
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
    global torch, reference
    import torch
    import reference
    torch.set_num_threads(args.threads)
    if args.csv:
        print("workload,threads,B,T,N,seconds,peak_extra_rss_KiB,inputs_grads_MiB")
    else:
        print("bench-torch: torch %s, %d thread(s), float32, forward+backward (autograd), "
              "median of %d" % (torch.__version__, torch.get_num_threads(), reps))
    for name in args.workloads or benchlib.WORKLOADS:
        B, T, N, seconds, peak, data = bench(name, args.scale, args.threads, reps)
        if args.csv:
            print("%s,%d,%d,%d,%d,%.6g,%d,%.1f" % (name, args.threads, B, T, N, seconds, peak, data))
        else:
            print("%-16s B=%-4d T=%-5d N=%-5d %9.3f ms  states %6.2f GB/s  memory %7.1f MiB "
                  "(inputs+grads %6.1f)" % (name, B, T, N, seconds * 1e3,
                                            4.0 * B * T * N / seconds / 1e9, peak / 1024, data))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
