#!/usr/bin/python3
"""
bench-torch.py - the workloads of bench/bench.c in eager PyTorch: the same
global shapes and term parameters, float32, batch-major, forward and
backward through autograd with the loss functions of scripts/reference.py
(the tree's one PyTorch implementation of each loss), on P threads.

    scripts/bench-torch.py [--threads P] [--reps R] [--scale S] [--csv]
                           [--plain-malloc] [WORKLOAD...]

Prints the median of R (>= 10) timed evaluations after two warm-up ones, the
peak resident memory a workload adds, next to what its inputs and gradients
take, and the page faults per evaluation.  --scale multiplies B as
ctrnn-bench's does; B is at least P, as ctrnn-bench's is at least its number
of ranks, so that `bench-torch.py --threads P` and `mpirun -np P ctrnn-bench`
time the same problem.  Input validation (NaN scans, the sign check of
entropy, the constant-neuron rule of population_kl) is skipped: this times
what a PyTorch user's training step runs.

Each workload runs in a process of its own (memory peaks do not mix), with
glibc's malloc told to keep and reuse freed memory: eager PyTorch allocates
every temporary afresh, and with the default settings each evaluation would
fault in new pages, which costs more than the arithmetic on some virtual
machines.  That is the usual tuning for PyTorch on CPUs (as jemalloc or
tcmalloc would); --plain-malloc measures the default instead.

Needs python3-torch and python3-numpy (Debian); run it with /usr/bin/python3.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

# Freed memory stays in the heap: no mmap'd chunks, no trimming.
KEEP_FREED_MEMORY = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776"
CSV_HEADER = "workload,threads,B,T,N,seconds,peak_extra_rss_KiB,inputs_grads_MiB," \
             "page_faults_per_eval,malloc"


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


def make_inputs(torch, spec, B, generator):
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
    """Times one workload in this process; returns its CSV fields."""
    import torch
    import reference
    torch.set_num_threads(threads)
    spec = benchlib.WORKLOADS[name]
    B = benchlib.batch_size(name, scale, threads)
    _, T, N = spec["shape"]
    terms = [reference.make_term(n, t, params, 1.0) for n, t, params in spec["terms"]]
    reset_peak()
    baseline = proc_status_kib("VmRSS")
    inputs = make_inputs(torch, spec, B, torch.Generator().manual_seed(1))
    leaves = [x for x in inputs.values() if x.requires_grad]

    def step():
        for x in leaves:
            x.grad = None
        total, _ = reference.evaluate(terms, inputs, check=False)
        total.backward()

    step()  # warm-up, as in bench.c
    step()
    seconds = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t0)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / reps
    peak = proc_status_kib("VmHWM") - baseline
    data = sum(x.numel() * x.element_size() for x in inputs.values())
    data += sum(x.numel() * x.element_size() for x in leaves)
    return [name, threads, B, T, N, "%.6g" % statistics.median(seconds), peak,
            "%.1f" % (data / 1048576), "%.0f" % faults,
            "reuse" if KEEP_FREED_MEMORY in os.environ.get("GLIBC_TUNABLES", "") else "plain"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--threads", type=int, default=1, metavar="P",
                        help="torch.set_num_threads(P) (default 1)")
    parser.add_argument("--reps", type=int, default=10, metavar="R",
                        help="timed repetitions, at least 10 (default 10)")
    parser.add_argument("--scale", type=float, default=1.0, metavar="S",
                        help="multiplies each workload's B (default 1)")
    parser.add_argument("--csv", action="store_true", help="CSV instead of text")
    parser.add_argument("--plain-malloc", action="store_true",
                        help="glibc malloc's default settings")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                        help="some of: " + ", ".join(benchlib.WORKLOADS))
    args = parser.parse_args()
    unknown = [w for w in args.workloads if w not in benchlib.WORKLOADS]
    if unknown:
        parser.error("unknown workload %s" % ", ".join(unknown))
    reps = max(args.reps, 10)
    if args.child:
        print(",".join(map(str, bench(args.workloads[0], args.scale, args.threads, reps))))
        return

    # PyTorch's "generic" BLAS is Debian's libblas.so.3 (OpenBLAS), whose
    # thread pool is sized when it loads: it must use the same P cores.
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads),
               OMP_NUM_THREADS=str(args.threads))
    if not args.plain_malloc:
        env["GLIBC_TUNABLES"] = ":".join(filter(None, (env.get("GLIBC_TUNABLES"),
                                                       KEEP_FREED_MEMORY)))
    if args.csv:
        print(CSV_HEADER)
    else:
        print("bench-torch: %d thread(s), float32, forward+backward (autograd), median of %d, "
              "malloc %s" % (args.threads, reps, "plain" if args.plain_malloc else "reusing"))
    for name in args.workloads or benchlib.WORKLOADS:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                              "--threads", str(args.threads), "--scale", repr(args.scale),
                              "--reps", str(reps), name],
                             env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
        if args.csv:
            print(out.strip())
        else:
            f = out.strip().split(",")
            B, T, N, seconds = int(f[2]), int(f[3]), int(f[4]), float(f[5])
            print("%-16s B=%-4d T=%-5d N=%-5d %9.3f ms  states %6.2f GB/s  memory %7.1f MiB "
                  "(inputs+grads %6s)  %s page faults/evaluation"
                  % (name, B, T, N, seconds * 1e3, 4.0 * B * T * N / seconds / 1e9,
                     int(f[6]) / 1024, f[7], f[8]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
