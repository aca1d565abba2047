"""One-element loops compiled with -O1 (theanets._size_one_c): which nodes, flags, results."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.tensor.elemwise import Elemwise

from theanets import _parallel_c, _size_one_c, backend

needs_cxx = pytest.mark.skipif(not pytensor.config.cxx, reason="needs a C++ compiler")


def _bias_corrected(t, w, v):
    """Adam-like: scalar arithmetic on a step count broadcast over a matrix, and a vector loop.

    Only operators, so the same function builds the graph and, on NumPy
    values, computes the reference.
    """
    scale = (1 - 0.9**t) / (1 - 0.99 ** (t + 1))
    return [w * scale, (v + 1) * 2, t + 1]


def _compile(mode):
    t = pt.scalar("t", dtype="float64")
    w = pt.matrix("w", dtype="float64", shape=(3, 4))
    v = pt.vector("v", dtype="float64", shape=(None,))
    return pytensor.function([t, w, v], _bias_corrected(t, w, v), mode=mode)


def _light_nodes(fn):
    return [n for n in fn.maker.fgraph.toposort() if isinstance(n.op, _size_one_c.SizeOneElemwise)]


@needs_cxx
def test_only_loops_over_one_element_become_light_in_the_automatic_c_mode():
    backend.choose_mode(backend.C_MODE)  # registers the rewrite, as theanets' compilations do
    fn = _compile(backend.C_MODE)
    light = _light_nodes(fn)
    assert light
    for node in light:
        for var in (*node.inputs, *node.outputs):
            assert None not in var.type.shape and int(np.prod(var.type.shape)) == 1
    # the loops over the matrix and the vector of unknown length keep PyTensor's op
    others = [
        n
        for n in fn.maker.fgraph.toposort()
        if type(n.op) is Elemwise and n.outputs[0].type.shape in ((3, 4), (None,))
    ]
    assert len(others) >= 2
    rng = np.random.default_rng(0)
    args = (3.0, rng.normal(size=(3, 4)), rng.normal(size=5))
    for got, want in zip(fn(*args), _bias_corrected(*args), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


@needs_cxx
def test_pytensor_s_own_modes_are_left_alone():
    backend.choose_mode(backend.C_MODE)
    for mode in ("CVM", "NUMBA"):
        assert not _light_nodes(_compile(mode))


@needs_cxx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_light_modules_compute_what_pytensor_s_modules_compute_bit_for_bit(dtype):
    # Adam's bias correction and step on scalars: products that -O3 fuses with
    # a following addition into an FMA instruction, which -O1 alone would not
    backend.choose_mode(backend.C_MODE)
    t, b1, b2, d, lr, m, v = (pt.scalar(n, dtype=dtype) for n in "t b1 b2 d lr m v".split())
    c1 = 1 - b1**t * d ** (t * (t - 1) / 2)
    c2 = 1 - b2**t
    step = lr * (m / c1) / (pt.sqrt(v / c2) + 1e-8) + b1 * m + (1 - b1) * v
    inputs, outputs = [t, b1, b2, d, lr, m, v], [c1, c2, step]
    light = pytensor.function(inputs, outputs, mode=backend.C_MODE)
    plain = pytensor.function(inputs, outputs, mode="CVM")
    assert _light_nodes(light) and not _light_nodes(plain)
    rng = np.random.default_rng(1)
    for _ in range(300):
        args = [rng.integers(1, 500), *rng.uniform(0.5, 0.999, 3), *rng.uniform(1e-4, 1, 3)]
        args = [np.asarray(a, dtype=dtype) for a in args]
        for got, want in zip(light(*args), plain(*args), strict=True):
            assert got.tobytes() == want.tobytes(), (args, got, want)


def test_the_light_op_swaps_minus_o3_for_minus_o1_with_fma_and_keeps_elemwise_s_flags():
    op = _size_one_c.SizeOneElemwise(pytensor.scalar.add)
    plain = Elemwise(pytensor.scalar.add)
    assert op.c_compile_args() == [*plain.c_compile_args(), "-O1", "-fexpensive-optimizations"]
    assert op.c_no_compile_args() == [*plain.c_no_compile_args(), "-O3"]
    assert op != plain and hash(op) != hash(plain)  # never shares a module with PyTensor's op


CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import pytensor, pytensor.tensor as pt
    from pytensor.link.c.cmodule import GCC_compiler
    from theanets import _size_one_c, backend

    flags = []
    compile_str = GCC_compiler.compile_str

    def recording(module_name, src_code, *args, preargs=None, **kwargs):
        flags.append([f for f in preargs or [] if f.startswith("-O")])
        return compile_str(module_name, src_code, *args, preargs=preargs, **kwargs)

    GCC_compiler.compile_str = staticmethod(recording)
    t = pt.scalar("t", dtype="float64")
    w = pt.matrix("w", dtype="float64", shape=(3, 4))
    scale = (1 - 0.9**t) / (1 - 0.99 ** (t + 1))
    fn = pytensor.function([t, w], [w * scale, t + 1], mode=backend.choose_mode())
    light = {n.op for n in fn.maker.fgraph.toposort()
             if isinstance(n.op, _size_one_c.SizeOneElemwise)}
    got = fn(3.0, np.ones((3, 4)))[0]
    want = (1 - 0.9**3) / (1 - 0.99**4)
    print(json.dumps({"flags": flags, "light": len(light),
                      "error": float(np.max(np.abs(got - want)))}))
    """
)


def _child(cache, jobs):
    env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}", TMPDIR=str(cache))
    env[_parallel_c.JOBS_VAR] = jobs
    env.pop(backend.ENV_VAR, None)
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_cxx
@pytest.mark.parametrize("jobs", ["1", "2"])  # PyTensor's own compilation, then the parallel one
def test_light_modules_compile_with_minus_o1_and_later_processes_reuse_them(tmp_path, jobs):
    first = _child(tmp_path, jobs)
    assert first["error"] < 1e-15 and first["light"] >= 1
    light = [f for f in first["flags"] if "-O1" in f]
    assert len(light) == first["light"]
    assert all("-O3" not in f for f in light)
    assert any(f == ["-O3"] for f in first["flags"])  # the matrix loop keeps -O3
    again = _child(tmp_path, jobs)
    assert again["flags"] == [] and again["error"] < 1e-15  # every module found cached
