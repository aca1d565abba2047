"""The automatic C mode compiles a new graph's C modules in parallel, with the same results.

Each compiling case runs in a fresh interpreter with an empty PyTensor
compile directory, so that the modules are really missing (as on a machine
that never compiled them) and the cache the case leaves can be checked by a
second process.
"""

import json
import os
import subprocess
import sys

import pytensor
import pytest

from theanets import _parallel_c, backend, util

needs_cxx = pytest.mark.skipif(not pytensor.config.cxx, reason="needs a C++ compiler")

#: Child script: compile three elementwise graphs in one function, check it
#: against NumPy, and report what was compiled where. argv[1] names a variant.
CHILD = r"""
import json, sys, threading, time
import numpy as np
import pytensor, pytensor.tensor as pt
from pytensor.link.c.basic import get_module_cache
from theanets import _parallel_c, backend

variant = sys.argv[1]
spans, calls = [], []
compile_module = _parallel_c._Pending.compile

def timed(self, directory):
    start = time.perf_counter()
    if variant == "failing":  # the compiler runs and fails
        self.source = "#error a module that does not compile"
    compile_module(self, directory)
    spans.append((start, time.perf_counter()))

_parallel_c._Pending.compile = timed
missing = _parallel_c.compile_missing_modules

def counted(nodes, jobs=None, **kwargs):
    calls.append(missing(nodes, jobs, **kwargs))
    return calls[-1]

_parallel_c.compile_missing_modules = counted
loop_threads = []
import_module = _parallel_c.importlib.import_module

def watched(name, *args):
    if name == "pytensor.link.c.cvm":
        loop_threads.append(threading.current_thread() is not threading.main_thread())
    return import_module(name, *args)

_parallel_c.importlib.import_module = watched

# three unconnected graphs of different ranks: three separate fused modules
inputs = [pt.dvector("u"), pt.dvector("v"), pt.dmatrix("x"), pt.dmatrix("y"),
          pt.dtensor3("p"), pt.dtensor3("q")]
u, v, x, y, p, q = inputs
outputs = [pt.exp(u) * v + 1.5, pt.tanh(x) - y ** 2, pt.log1p(p * p) / (1 + q * q)]
fn = pytensor.function(inputs, outputs, mode=backend.choose_mode())
rng = np.random.default_rng(0)
values = [rng.normal(size=(4,) * n) for n in (1, 1, 2, 2, 3, 3)]
a, b, c, d, e, f = values
expected = [np.exp(a) * b + 1.5, np.tanh(c) - d ** 2, np.log1p(e * e) / (1 + f * f)]
error = max(float(np.max(np.abs(o - w))) for o, w in zip(fn(*values), expected))
overlap = any(s1 < e2 and s2 < e1 for i, (s1, e1) in enumerate(spans) for s2, e2 in spans[i + 1:])
print(json.dumps({
    "mode": backend.choose_mode(),
    "linker": type(fn.maker.linker).__name__,
    "entered": calls,
    "compiled_by_pytensor": get_module_cache().stats[2],
    "overlap": overlap,
    "loop_in_worker": loop_threads,
    "error": error,
}))
"""


def _child(script, arguments, cache, jobs=None):
    """Run ``script`` in a fresh interpreter compiling into ``cache``; return its JSON line.

    ``jobs`` sets ``THEANETS_COMPILE_JOBS`` (None: the automatic number).
    """
    env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}", TMPDIR=str(cache))
    env.pop(_parallel_c.JOBS_VAR, None)
    if jobs is not None:
        env[_parallel_c.JOBS_VAR] = jobs
    env.pop(backend.ENV_VAR, None)
    out = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run(variant, cache, jobs="2"):
    return _child(CHILD, [variant], cache, jobs)


@needs_cxx
def test_new_modules_compile_in_parallel_and_later_processes_reuse_them(tmp_path):
    # three compilers: one of them first compiles PyTensor's helper modules
    first = _run("normal", tmp_path, jobs="3")
    assert first["mode"] == "CVM_PARALLEL"
    assert first["linker"] == "ParallelCVMLinker"
    assert first["entered"][0] >= 3  # the three fused elementwise graphs at least
    assert first["overlap"], "no two compilations ran at the same time"
    assert first["compiled_by_pytensor"] == 0  # PyTensor found every module cached
    assert first["loop_in_worker"] == [True]  # PyTensor's C loop, beside the modules
    assert first["error"] < 1e-12
    again = _run("normal", tmp_path)
    assert again["entered"] == [0] and again["loop_in_worker"] == []
    assert again["compiled_by_pytensor"] == 0
    assert again["error"] < 1e-12


@needs_cxx
def test_a_failed_parallel_compilation_is_left_to_pytensor(tmp_path):
    result = _run("failing", tmp_path)
    assert result["entered"] == [0]
    assert result["compiled_by_pytensor"] >= 3  # compiled again, one by one
    assert result["error"] < 1e-12
    modules = [p.parent for p in tmp_path.rglob("tmp*/mod.cpp")]
    assert modules and all((p / "key.pkl").exists() for p in modules)  # no failed leftovers


@needs_cxx
def test_one_compile_job_leaves_compiling_to_pytensor(tmp_path):
    result = _run("normal", tmp_path, jobs="1")
    assert result["entered"] == [0]
    assert result["compiled_by_pytensor"] >= 3
    assert result["error"] < 1e-12


def test_compile_jobs_reads_the_environment(monkeypatch):
    monkeypatch.setenv(_parallel_c.JOBS_VAR, " 3 ")
    assert _parallel_c.compile_jobs() == 3
    monkeypatch.delenv(_parallel_c.JOBS_VAR)
    assert _parallel_c.compile_jobs() == len(os.sched_getaffinity(0))
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv(_parallel_c.JOBS_VAR, bad)
        with pytest.raises(util.ConfigurationError, match="THEANETS_COMPILE_JOBS must be an"):
            _parallel_c.compile_jobs()


def test_the_linker_keeps_its_class_for_every_graph():
    from pytensor.graph.fg import FunctionGraph

    x = pytensor.tensor.dvector("x")
    linker = _parallel_c.ParallelCVMLinker(use_cloop=True)
    first = linker.accept(FunctionGraph([x], [x * 2]))
    second = first.accept(FunctionGraph([x], [x + 1]))
    assert first is linker
    assert type(second) is _parallel_c.ParallelCVMLinker
    assert second.use_cloop and second is not first


#: Child script: train a small classifier (argv[1] hidden units) and report
#: what each parallel batch entered and what PyTensor compiled itself.
TRAINING_CHILD = r"""
import json, sys
import numpy as np
from pytensor.link.c.basic import get_module_cache
import theanets
from theanets import _parallel_c

calls = []
missing = _parallel_c.compile_missing_modules

def counted(nodes, jobs=None, **kwargs):
    calls.append(missing(nodes, jobs, **kwargs))
    return calls[-1]

_parallel_c.compile_missing_modules = counted
rng = np.random.default_rng(0)
x = rng.normal(size=(60, 5))
y = rng.integers(0, 3, size=60).astype("int32")
net = theanets.Classifier([5, (int(sys.argv[1]), "tanh"), 3])
net.train([x[:40], y[:40]], [x[40:], y[40:]], algo="adam", max_updates=3, weight_l2=1e-3)
print(json.dumps({"entered": calls, "compiled_by_pytensor": get_module_cache().stats[2]}))
"""


@needs_cxx
def test_training_compiles_its_validation_modules_in_the_same_batch(tmp_path):
    def train(hidden):
        return _child(TRAINING_CHILD, [str(hidden)], tmp_path)

    first = train(7)
    # one batch for the training and the validation function (the second
    # function's linking finds everything cached), and nothing left to PyTensor
    assert first["entered"][0] > 10
    assert set(first["entered"][1:]) <= {0}
    assert first["compiled_by_pytensor"] == 0
    # another hidden size changes constants (the weight penalty's mean), not
    # the modules' source: nothing new to compile
    other = train(11)
    assert set(other["entered"]) == {0} and other["compiled_by_pytensor"] == 0
