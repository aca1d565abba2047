"""Compile latency as a user meets it: fresh processes, cold and warm compile caches.

Every case runs in a fresh Python process. "Cold" means an empty PyTensor
compile directory and Numba cache (``PYTENSOR_FLAGS=base_compiledir=<new
folder>``, ``NUMBA_CACHE_DIR``), i.e. a machine that never compiled anything;
later cases of a series reuse that folder, as later runs on the same machine
would.

1. ``new``: the first ``train()`` (adam, 100 updates) of a 64-64-10
   classifier, cold; then, in the same process, its first ``predict()``;
2. ``changed``: the same after changing the hidden layer's size (64 -> 80)
   and activation (relu -> tanh), with the cache left by case 1;
3. ``rerun``: case 1's script again (everything cached);
4. ``demo``: ``examples/digits_classifier.py`` (what ``make demo`` runs),
   cold and then warm, as wall time of the whole process;
5. ``layerwise``: a tied autoencoder 784-256-100-64 trained with
   ``algo='layerwise'`` (short stages, so compiling dominates) and then
   fine-tuned, first with the cache the demo left (a machine that has
   compiled other models before) and then again.

Cases 1-3 run for theanets' automatic backend choice
(:func:`theanets.backend.choose_mode`) and for PyTensor's default Numba
backend (``THEANETS_MODE=NUMBA``); cases 4-5 run for the automatic choice,
and also for Numba with ``--all``. Each figure is the wall time of the call
and, in brackets in the printout, the CPU seconds of the process and the
compilers it started (less sensitive to a busy machine). Results go to
``benchmarks/results.json`` under ``compile``.

Run ``python benchmarks/bench_compile.py [--all]``.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from _common import record

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: Start of every child script: CPU-time helper, imports (timed), float32.
PREAMBLE = """
import json, resource, sys, time

def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

t0, c0 = time.perf_counter(), cpu()
import numpy as np
import theanets
import pytensor
pytensor.config.floatX = 'float32'
t1, c1 = time.perf_counter(), cpu()
"""

#: Child script: train a classifier, then predict; print timings as JSON.
CLASSIFIER = (
    PREAMBLE
    + """
hidden, activation = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
x = rng.random((512, 64)).astype('float32')
y = rng.integers(0, 10, 512).astype('int32')
net = theanets.Classifier([64, (hidden, activation), 10])
net.train([x[:384], y[:384]], [x[384:], y[384:]], algo='adam', learning_rate=3e-3,
          max_updates=100, weight_l2=1e-5)
t2, c2 = time.perf_counter(), cpu()
net.predict(x)
t3, c3 = time.perf_counter(), cpu()
print(json.dumps({'import': [t1 - t0, c1 - c0], 'train': [t2 - t1, c2 - c1],
                  'predict': [t3 - t2, c3 - c2], 'mode': str(theanets.backend.choose_mode())}))
"""
)

#: Child script: layer-wise training of a tied autoencoder, then fine-tuning.
LAYERWISE = (
    PREAMBLE
    + """
rng = np.random.default_rng(0)
x = rng.random((256, 784)).astype('float32')
net = theanets.Autoencoder([784, (256, 'sigmoid'), (100, 'sigmoid'), (64, 'sigmoid'),
                            ('tied', 100, 'sigmoid'), ('tied', 256, 'sigmoid'), ('tied', 784)])
net.train([x], algo='layerwise', max_updates=20, batch_size=64)
t2, c2 = time.perf_counter(), cpu()
net.train([x], algo='rmsprop', max_updates=20, batch_size=64)
t3, c3 = time.perf_counter(), cpu()
print(json.dumps({'import': [t1 - t0, c1 - c0], 'layerwise': [t2 - t1, c2 - c1],
                  'finetune': [t3 - t2, c3 - c2]}))
"""
)


def _env(cache, mode):
    env = dict(os.environ)
    env["PYTENSOR_FLAGS"] = f"base_compiledir={cache}"
    env["NUMBA_CACHE_DIR"] = os.path.join(cache, "numba-cache")
    env.pop("THEANETS_MODE", None)
    if mode != "auto":
        env["THEANETS_MODE"] = mode
    return env


def _child(code, args, cache, mode):
    """Run ``code`` in a fresh interpreter; return its JSON line as a dict."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=_env(cache, mode),
        cwd=ROOT,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def _demo(cache, mode, output):
    """Wall time of ``examples/digits_classifier.py`` and its accuracy line."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "examples/digits_classifier.py", "--output", output],
        capture_output=True,
        text=True,
        env=_env(cache, mode),
        cwd=ROOT,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"demo failed:\n{out.stderr[-3000:]}")
    match = re.search(r"validation accuracy: .*", out.stdout)
    return elapsed, match.group(0) if match else out.stdout[-200:]


def _round(pair):
    return {"wall_s": round(pair[0], 2), "cpu_s": round(pair[1], 2)}


def _series(mode, cases, results):
    with tempfile.TemporaryDirectory(prefix="theanets-compile-") as cache:
        runs = {
            "new": ("64", "relu"),
            "changed": ("80", "tanh"),
            "rerun": ("64", "relu"),
        }
        for name, args in runs.items():
            if name not in cases:
                continue
            data = _child(CLASSIFIER, args, cache, mode)
            results[f"{name}.first_train"] = _round(data["train"])
            results[f"{name}.first_predict"] = _round(data["predict"])
            results["chosen_mode"] = data["mode"]
            print(
                f"  {mode:>5} {name:8} train {data['train'][0]:6.2f} s "
                f"[cpu {data['train'][1]:6.2f}]  predict {data['predict'][0]:5.2f} s",
                flush=True,
            )


def _heavy(mode, results):
    with tempfile.TemporaryDirectory(prefix="theanets-compile-") as cache:
        output = os.path.join(cache, "demo-output")
        for when in ("cold", "warm"):
            elapsed, line = _demo(cache, mode, output)
            results[f"demo.{when}_s"] = round(elapsed, 2)
            results["demo.result"] = line
            print(f"  {mode:>5} demo {when}: {elapsed:6.2f} s  ({line})", flush=True)
        # with the modules the demo compiled, as on a machine used before
        for when in ("first", "again"):
            data = _child(LAYERWISE, [], cache, mode)
            results[f"layerwise.{when}"] = _round(data["layerwise"])
            results[f"layerwise.finetune_{when}"] = _round(data["finetune"])
            print(
                f"  {mode:>5} layerwise {when}: {data['layerwise'][0]:6.2f} s "
                f"[cpu {data['layerwise'][1]:6.2f}], fine-tuning {data['finetune'][0]:5.2f} s",
                flush=True,
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="demo and layerwise with Numba too")
    args = parser.parse_args(argv)
    results = {}
    for mode in ("auto", "NUMBA"):
        values = results.setdefault(mode, {})
        _series(mode, ("new", "changed", "rerun"), values)
        if mode == "auto" or args.all:
            _heavy(mode, values)
    record("compile", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
