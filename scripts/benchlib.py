"""
benchlib.py - what scripts/bench, scripts/bench-scaling and
scripts/bench-torch.py share: the workloads of bench/bench.c, the machine
description printed next to every number, the build, and running
ctrnn-bench under mpirun.
"""

import csv
import io
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "bench", "ctrnn-bench")

# The workloads of bench/bench.c (keep the two tables in step): global
# (B, T, N), the terms (name, type, params; weight 1), K outputs and N_in
# inputs (rnn_loss), a second population, Hebbian weights.
_ALL_STATE = (("fr_l1", "fr", "metric=l1"), ("fr_l2", "fr", "metric=l2"),
              ("sd", "fr_dist", "metric=sd"), ("cv", "fr_dist", "metric=cv"),
              ("mean_ad", "fr_dist", "metric=mean_ad"), ("max_ad", "fr_dist", "metric=max_ad"),
              ("pred", "state_pred", "tau=1"), ("entropy", "entropy", "reg=10"))
WORKLOADS = {
    "rnn_loss": dict(shape=(128, 500, 256), K=2, N_in=16, terms=(
        ("rnn", "rnn", "lambda_mse=1,lambda_in=0.01,lambda_hid=0.01,lambda_out=0.01,"
                       "lambda_fr=0.1,lambda_fr_sd=0.05,lambda_fr_cv=0.02"),)),
    "all_state": dict(shape=(128, 500, 256), terms=_ALL_STATE),
    "population_kl": dict(shape=(128, 500, 256), states1=True,
                          terms=(("kl", "population_kl", "symmetric=true,reg=1e-3"),)),
    "hebbian": dict(shape=(64, 200, 512), hebb=True, terms=(("hebb", "hebbian", ""),)),
    "all_state_large": dict(shape=(32, 1000, 2048), terms=_ALL_STATE),
}


def batch_size(workload, scale, minimum):
    """The global B of a workload at --scale, as ctrnn-bench computes it
    (llround, at least one element per rank)."""
    return max(int(WORKLOADS[workload]["shape"][0] * scale + 0.5), minimum)


def _first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def _package_version(pattern):
    """'name version' of the installed Debian packages matching pattern."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f",
                              "${db:Status-Abbrev} ${Package} ${Version}\n", pattern],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    found = [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("ii")]
    return "; ".join(found) or "unknown"


def _blas_library():
    """The libblas.so.3 Debian's alternatives select (PyTorch's "generic"
    BLAS calls it)."""
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"):
        path = os.path.join(d, "libblas.so.3")
        if os.path.exists(path):
            return os.path.realpath(path)
    return "unknown"


def machine(torch_too=False):
    """(key, value) pairs describing the machine and the libraries."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        mem = "%.1f GiB" % (kib / 1048576)
    except (OSError, StopIteration):
        pass
    load = "%.2f %.2f %.2f" % os.getloadavg()
    commit = _first_line(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    rows = [("cpu", model), ("cores", "%d online (os.cpu_count)" % os.cpu_count()),
            ("memory", mem), ("load average", load),
            ("kernel", platform.release()), ("tree", commit),
            ("compiler", _first_line(["gcc", "--version"])),
            ("mpi", _first_line(["mpirun", "--version"])),
            ("openblas", _package_version("libopenblas0*"))]
    if torch_too:
        import numpy
        import torch
        config = torch.__config__.show().replace(",", " ").split()
        build = [w for w in config if w.split("=")[0] in ("BLAS_INFO", "USE_OPENMP", "USE_MKLDNN")]
        backend = [line.split(":", 1)[1].strip()
                   for line in torch.__config__.parallel_info().splitlines()
                   if line.startswith("ATen parallel backend")]
        rows += [("python", sys.version.split()[0]), ("torch", torch.__version__),
                 ("torch build", " ".join(build + ["parallel=" + "".join(backend)])),
                 ("libblas.so.3", _blas_library()), ("numpy", numpy.__version__)]
    return rows


def print_machine(rows, out=sys.stdout):
    for key, value in rows:
        print("# %-13s %s" % (key + ":", value), file=out)


def mpi_env(oversubscribe):
    """The environment for mpirun: scripts/lib.sh's Open MPI settings, but
    oversubscription only when asked for, and one BLAS thread per rank (the
    ranks are the parallelism, as in tests/mpi-run)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    env.pop("OMPI_MCA_rmaps_base_oversubscribe", None)
    return env


def ensure_built():
    """scripts/lib.sh's ensure_built (configure and make only when needed),
    its output on stderr."""
    script = '. "$(dirname "$0")/lib.sh" && ensure_built build >&2'
    subprocess.run(["sh", "-c", script, os.path.join(ROOT, "scripts", "bench")], check=True,
                   stdout=sys.stderr)


def check_ranks(ranks, oversubscribe):
    """Refuses more ranks than cores unless oversubscription was asked for."""
    cores = os.cpu_count() or 1
    if ranks > cores and not oversubscribe:
        sys.exit("%s: %d ranks but %d cores: pass --oversubscribe to run anyway "
                 "(the times then measure the scheduler)" % (os.path.basename(sys.argv[0]),
                                                             ranks, cores))


def run_ctrnn_bench(ranks, scale, reps, workloads=(), oversubscribe=False):
    """Runs ctrnn-bench --csv; returns {workload: row dict} ('skipped' rows
    hold the reason)."""
    cmd = ["mpirun", "-np", str(ranks)]
    if oversubscribe:
        cmd.append("--oversubscribe")
    cmd += [BENCH, "--csv", "--scale", repr(scale), "--reps", str(reps), *workloads]
    print("$ " + " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(oversubscribe))
    if out.returncode != 0:
        sys.exit("ctrnn-bench failed (%d):\n%s%s" % (out.returncode, out.stdout, out.stderr))
    return parse_csv(out.stdout)


def parse_csv(text):
    """{workload: row} from a --csv output with a header line; lines that
    are not CSV rows ('NAME skipped: reason') become {'skipped': reason}."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("workload,"))
    rows = {}
    for line in lines:
        if line == header:
            continue
        if " skipped: " in line:
            name, _, reason = line.partition(" skipped: ")
            rows[name.strip()] = {"skipped": reason.strip()}
        elif line.count(",") == header.count(","):
            row = next(csv.DictReader(io.StringIO(header + "\n" + line)))
            rows[row["workload"]] = row
    return rows
