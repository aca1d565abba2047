"""Tests for theanets._blas: PyTensor's C backend is linked to a pip-provided OpenBLAS.

:func:`theanets._blas.configure_blas` only acts before PyTensor is first
imported, and this test process imported PyTensor long ago (``conftest.py``).
So its effect is checked in fresh Python processes: one imports
``theanets`` and then compiles matrix products with the C backend; the
products must become PyTensor's BLAS ops (``Dot22``, ``Gemm``, ``CGemv``)
running as C code, with no warning that PyTensor fell back to NumPy's C-API
or could not find a BLAS. The same probe, run with the link switched off
(``blas__ldflags=``), must be reported as broken: that is how we know the
check can fail.

The settings logic itself is tested in this process, with ``pytensor``
hidden from ``sys.modules`` and ``PYTENSOR_FLAGS`` replaced for the test.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from theanets import _blas

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="theanets links an OpenBLAS on Linux only (macOS PyTensor uses Accelerate)",
)

FALLBACK_WARNINGS = (
    "Using NumPy C-API based implementation for BLAS functions",
    "could not link to a BLAS installation",
)

# Run in a fresh interpreter: import theanets first (as users must), then
# compile products with the C backend and report what PyTensor built.
PROBE = r"""
import json
import sys
import theanets  # sets blas__ldflags before PyTensor is imported
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode

mode = Mode(linker="cvm", optimizer="fast_run")
report = {"ldflags": pytensor.config.blas__ldflags, "graphs": []}
for dtype in sys.argv[1:]:
    x = pt.matrix("x", dtype=dtype)
    y = pt.matrix("y", dtype=dtype)
    z = pt.matrix("z", dtype=dtype)
    v = pt.vector("v", dtype=dtype)
    exprs = {
        "dot": pt.dot(x, y),
        "gemm": np.asarray(2, dtype) * z + np.asarray(3, dtype) * pt.dot(x, y),
        "gemv": pt.dot(x, v),
    }
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=s).astype(dtype) for s in ((7, 5), (5, 3), (7, 3)))
    u = rng.normal(size=5).astype(dtype)
    args = {"dot": (a, b), "gemm": (a, b, c), "gemv": (a, u)}
    ins = {"dot": [x, y], "gemm": [x, y, z], "gemv": [x, v]}
    for name, expr in exprs.items():
        fn = pytensor.function(ins[name], expr, mode=mode)
        nodes = fn.maker.fgraph.toposort()
        report["graphs"].append({
            "dtype": dtype,
            "expr": name,
            "ops": [type(n.op).__name__ for n in nodes],
            "c_code": [getattr(t, "cthunk", None) is not None for t in fn.vm.thunks],
            "value": np.asarray(fn(*args[name])).tolist(),
        })
print("PROBE-REPORT " + json.dumps(report))
"""

DTYPES = ("float64", "float32")
BLAS_OPS = {"dot": {"Dot22"}, "gemm": {"Gemm"}, "gemv": {"CGemv"}}


@pytest.fixture(scope="module")
def compiledir(tmp_path_factory):
    """A compile cache of this module's own, so that modules are built (and warn) afresh.

    Modules built with different ``blas__ldflags`` have different cache keys,
    so the tests may share it.
    """
    return tmp_path_factory.mktemp("compiledir")


def _clean_env(compiledir, flags=""):
    """The environment of a user who has not configured BLAS themselves."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTENSOR", "THEANO"))}
    env["PYTENSORRC"] = os.devnull  # no ~/.pytensorrc
    env["PYTENSOR_FLAGS"] = ",".join(filter(None, [f"compiledir={compiledir}", flags]))
    return env


def _probe(env, dtypes=DTYPES):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *dtypes], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE-REPORT ")][-1]
    return json.loads(line[len("PROBE-REPORT ") :]), proc.stdout + proc.stderr


def _expected(dtype, name):
    """The probe's product, computed by NumPy from the same draws."""
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=s).astype(dtype) for s in ((7, 5), (5, 3), (7, 3)))
    u = rng.normal(size=5).astype(dtype)
    return {"dot": a @ b, "gemm": 2 * c + 3 * (a @ b), "gemv": a @ u}[name]


def _blas_problems(report, output):
    """Every way in which the probe shows products not running in BLAS."""
    problems = []
    if "scipy_" not in report["ldflags"]:
        problems.append(f"blas__ldflags is {report['ldflags']!r}, not theanets' OpenBLAS link")
    for graph in report["graphs"]:
        where = f"{graph['dtype']} {graph['expr']}"
        missing = BLAS_OPS[graph["expr"]] - set(graph["ops"])
        if missing:
            problems.append(f"{where}: no {sorted(missing)} in {graph['ops']}")
        for op, c_code in zip(graph["ops"], graph["c_code"]):
            if not c_code:
                problems.append(f"{where}: {op} runs in Python, not C")
        rtol = 1e-12 if graph["dtype"] == "float64" else 1e-5
        np.testing.assert_allclose(graph["value"], _expected(graph["dtype"], graph["expr"]), rtol)
    for warning in FALLBACK_WARNINGS:
        if warning in output:
            problems.append(f"PyTensor warned: {warning!r}")
    return problems


def test_c_backend_products_use_blas(compiledir):
    report, output = _probe(_clean_env(compiledir))
    assert _blas_problems(report, output) == []


def test_probe_reports_a_missing_blas_link(compiledir):
    """With the link switched off the same checks find the Python fallbacks."""
    report, output = _probe(_clean_env(compiledir, "blas__ldflags="), dtypes=["float64"])
    problems = _blas_problems(report, output)
    assert any("blas__ldflags is ''" in p for p in problems)
    assert any("Dot22 runs in Python" in p for p in problems)
    assert any("no ['CGemv']" in p for p in problems)
    assert any("Using NumPy C-API" in p for p in problems)


# ----------------------------------------------------------------------
# the settings logic, in this process


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """Pretend PyTensor is not imported yet and the user set no BLAS flags."""
    monkeypatch.delitem(sys.modules, "pytensor")
    monkeypatch.setenv("PYTENSORRC", str(tmp_path / "missing.rc"))
    monkeypatch.setenv("PYTENSOR_FLAGS", "floatX=float32")
    return monkeypatch


def _flag_items():
    lexer = shlex.shlex(os.environ["PYTENSOR_FLAGS"], posix=True)
    lexer.whitespace, lexer.whitespace_split = ",", True
    return dict(item.split("=", 1) for item in lexer)


def test_configure_blas_links_scipy_openblas(fresh):
    value = _blas.configure_blas()
    assert value is not None
    items = _flag_items()
    assert items == {"floatX": "float32", "blas__ldflags": value}
    words = value.split()
    libdir = Path(words[0][len("-L") :])
    libname = words[1][len("-l") :]
    library = libdir / f"lib{libname}.so"
    assert library.is_file()
    assert library.name.startswith("libscipy_openblas") and "64_" not in library.name
    macros = dict(w[len("-D") :].split("=") for w in words[2:])
    for routine in ("sgemm_", "dgemm_", "sgemv_", "dgemv_", "sger_", "ddot_"):
        assert macros[routine] == "scipy_" + routine
    # a second call sees the user-level setting and changes nothing
    assert _blas.configure_blas() is None
    assert _flag_items() == items


@pytest.mark.parametrize("flags", ["blas__ldflags=", "floatX=float32,blas__ldflags=-lblas"])
def test_configure_blas_respects_user_flags(fresh, flags):
    fresh.setenv("PYTENSOR_FLAGS", flags)
    assert _blas.configure_blas() is None
    assert os.environ["PYTENSOR_FLAGS"] == flags


def test_configure_blas_respects_pytensorrc(fresh, tmp_path):
    rc = tmp_path / "pytensorrc"
    rc.write_text("[blas]\nldflags = -lopenblas\n")
    fresh.setenv("PYTENSORRC", str(rc))
    assert _blas.configure_blas() is None
    assert os.environ["PYTENSOR_FLAGS"] == "floatX=float32"


def test_configure_blas_does_nothing_once_pytensor_is_imported(fresh):
    fresh.setitem(sys.modules, "pytensor", object())
    assert _blas.configure_blas() is None
    assert os.environ["PYTENSOR_FLAGS"] == "floatX=float32"
