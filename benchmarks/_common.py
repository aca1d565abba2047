"""Shared helpers for the benchmark scripts: timing, machine description, results."""

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_JSON = os.path.join(HERE, "results.json")


def set_float32():
    """Make PyTensor build float32 graphs (must run before models are built)."""
    import pytensor

    pytensor.config.floatX = "float32"


def torch_or_none():
    """Import torch limited to this machine's cores, or return None if absent."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def interleaved_times(contenders, repeats=7, warmup=1):
    """Time several callables in interleaved rounds; return every timing.

    Each round starts with the next contender in turn, so that each one
    follows every other equally often: a contender that leaves threads
    spinning or caches full (PyTorch's OpenMP pool, say) does not always
    slow down the same neighbour.

    Parameters
    ----------
    contenders : dict
        Maps a label to a zero-argument callable (None entries are skipped).
    repeats : int
        Number of timed rounds.
    warmup : int
        Untimed rounds first (compilation, caches).

    Returns
    -------
    dict
        Label -> list of seconds, one per round.
    """
    contenders = {k: v for k, v in contenders.items() if v is not None}
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times = {k: [] for k in contenders}
    labels = list(contenders)
    for round_ in range(repeats):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            start = time.perf_counter()
            contenders[label]()
            times[label].append(time.perf_counter() - start)
    return times


def interleaved(contenders, repeats=7, warmup=1):
    """Like :func:`interleaved_times`, but return the median seconds per label."""
    times = interleaved_times(contenders, repeats=repeats, warmup=warmup)
    return {k: statistics.median(v) for k, v in times.items()}


def machine():
    """A one-line description of this machine and the library versions."""
    import numpy
    import pytensor

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    parts = [
        f"{cpu}, {os.cpu_count()} cores",
        f"Python {platform.python_version()}",
        f"numpy {numpy.__version__}",
        f"pytensor {pytensor.__version__}",
    ]
    torch = torch_or_none()
    if torch is not None:
        parts.append(f"torch {torch.__version__}")
    return "; ".join(parts)


def record(section, values):
    """Merge one script's results into ``results.json`` under ``section``."""
    data = {}
    if os.path.exists(RESULTS_JSON):
        with open(RESULTS_JSON) as handle:
            data = json.load(handle)
    data[section] = values
    data["machine"] = machine()
    tmp = RESULTS_JSON + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(tmp, RESULTS_JSON)


def run_python(code, env=None):
    """Run Python code in a fresh interpreter; return its stdout."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, check=True
    )
    return out.stdout


def ratio(a, b):
    """a / b rounded for display (None when either is missing)."""
    if a is None or b is None:
        return None
    return round(a / b, 2)


def thread_limit(threads):
    """Limit every BLAS/OpenMP pool in the process (NumPy's, SciPy's); None: no limit."""
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    return ThreadpoolController().limit(limits=threads)
