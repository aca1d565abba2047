"""The precompiled header of the C backend: used by GCC, the same results, a safe fallback.

Every case runs in a fresh interpreter with an empty PyTensor compile
directory, as on a machine that never compiled anything.
"""

import json
import os
import subprocess
import sys

import pytensor
import pytest

from theanets import backend

pytestmark = pytest.mark.skipif(
    not pytensor.config.cxx or "g++" not in os.path.basename(pytensor.config.cxx),
    reason="precompiled headers are built for GCC only",
)

#: Child script: compile an elementwise function, record the compiler call of
#: its module, and print the function's outputs and where the header lives.
CHILD = r"""
import json, os
import numpy as np
import pytensor, pytensor.tensor as pt
from pytensor.link.c.cmodule import GCC_compiler, std_include_dirs
from theanets import backend

calls = []
compile_str = GCC_compiler.compile_str

def recorded(module_name, src_code, location=None, include_dirs=None, lib_dirs=None,
             libs=None, preargs=None, **kwargs):
    if os.path.basename(location).startswith("tmp"):  # an operation's module
        calls.append((os.path.join(location, "mod.cpp"), list(preargs or []),
                      list(include_dirs or [])))
    return compile_str(module_name, src_code, location, include_dirs, lib_dirs, libs, preargs,
                       **kwargs)

GCC_compiler.compile_str = staticmethod(recorded)
# elementwise, reduction, matrix product (BLAS, with its own flags) and indexing modules
x, m = pt.dvector("x"), pt.dmatrix("m")
outputs = [pt.exp(x) * 0.25 + pt.tanh(x) ** 3, (pt.dot(m, m.T) + 1.5)[1:, :2].sum(axis=0)]
fn = pytensor.function([x, m], outputs, mode=backend.choose_mode())
values = np.linspace(-2.0, 3.0, 7), np.linspace(-1.0, 1.0, 12).reshape(4, 3)
flags = pytensor.config.gcc__cxxflags.split()
folder = [f[2:] for f in flags if f.startswith("-I") and "theanets-pch-" in f]
print(json.dumps({"out": [o.tolist() for o in fn(*values)], "flags": flags, "folder": folder,
                  "calls": calls, "dirs": std_include_dirs()}))
"""


def _run(cache, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", backend.ENV_VAR)}
    full.update(env)
    full.setdefault("PYTENSOR_FLAGS", f"base_compiledir={cache}")
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, env=full, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_gcc_uses_the_header_and_results_do_not_change(tmp_path):
    with_header = _run(tmp_path / "a")
    (folder,) = with_header["folder"]
    assert os.path.isfile(os.path.join(folder, "Python.h.gch"))
    assert folder.startswith(str(tmp_path / "a"))

    # GCC itself reports (-H, "!") that it reads the precompiled header for
    # each module just compiled, with that module's own flags
    assert len(with_header["calls"]) >= 3
    for source, preargs, include_dirs in with_header["calls"]:
        command = [pytensor.config.cxx, "-g", *preargs]
        command += [f"-I{d}" for d in include_dirs + with_header["dirs"]]
        command += ["-fvisibility=hidden", "-fsyntax-only", "-H", source]
        report = subprocess.run(command, capture_output=True, text=True, check=False)
        assert report.returncode == 0, report.stderr[-2000:]
        used = [line for line in report.stderr.splitlines() if line.startswith("!")]
        assert used and used[0].endswith(os.path.join(folder, "Python.h.gch")), source

    # user-chosen flags: no header, and the same numbers to the last bit
    plain = _run(
        tmp_path / "b", PYTENSOR_FLAGS=f"base_compiledir={tmp_path / 'b'},gcc__cxxflags=-g0"
    )
    assert plain["folder"] == [] and plain["flags"] == ["-g0"]
    assert plain["out"] == with_header["out"]


def test_a_second_process_reuses_the_header(tmp_path):
    first = _run(tmp_path)
    (folder,) = first["folder"]
    built = os.stat(os.path.join(folder, "Python.h.gch")).st_mtime_ns
    second = _run(tmp_path)
    assert second["folder"] == [folder]
    assert os.stat(os.path.join(folder, "Python.h.gch")).st_mtime_ns == built
    assert not [p for p in (tmp_path).rglob("theanets-pch-build-*")]  # no build leftovers


def test_an_unusable_header_falls_back_to_parsing_the_headers(tmp_path):
    first = _run(tmp_path)
    (folder,) = first["folder"]
    with open(os.path.join(folder, "Python.h.gch"), "w") as handle:
        handle.write("not a precompiled header")
    for path in tmp_path.rglob("key.pkl"):  # forget the compiled modules
        path.unlink()
    second = _run(tmp_path)
    assert second["calls"]  # the modules were compiled again
    assert second["out"] == first["out"]


def test_a_header_gcc_will_not_use_is_not_built_again(tmp_path, monkeypatch):
    from theanets import _pch

    monkeypatch.setattr(_pch, "_accepted", lambda base, folder: False)
    assert _pch.prepare(str(tmp_path)) is None
    assert len(list(tmp_path.glob("theanets-pch-*.unusable"))) == 1
    assert not list(tmp_path.glob("theanets-pch-*/"))  # neither a header nor a build folder
    compiler_runs = []
    monkeypatch.setattr(_pch.subprocess, "run", lambda *a, **k: compiler_runs.append(a))
    assert _pch.prepare(str(tmp_path)) is None
    assert compiler_runs == []


def test_the_header_folders_are_the_ones_pytensor_compiles_with():
    from pytensor.link.c.cmodule import std_include_dirs

    from theanets import _pch

    _, folders = _pch._typical_module()
    standard = [d for d in std_include_dirs() if d]
    assert folders[-len(standard) :] == standard
