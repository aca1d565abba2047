"""The compilation-mode choice (theanets.backend): each documented rule, and what it compiles."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytensor
import pytest
from pytensor.link.numba.linker import NumbaLinker
from pytensor.link.vm import VMLinker

import theanets
from theanets import backend


@pytest.fixture
def setting(monkeypatch):
    """No THEANETS_MODE, no set_mode() setting; both restored afterwards."""
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    previous = backend.set_mode(None)
    yield
    backend.set_mode(previous)


def _auto():
    """What the docs say the automatic choice is on this machine."""
    return "CVM_PARALLEL" if pytensor.config.cxx else "NUMBA"


# Each row: (THEANETS_MODE, set_mode() argument, pytensor.config flags, expected choice),
# in the order of the rules in the module docstring.
RULES = [
    # 1. a theanets setting wins over PyTensor's configuration
    (None, "NUMBA", {"mode": "FAST_COMPILE"}, "NUMBA"),
    ("FAST_COMPILE", None, {"mode": "Mode"}, "FAST_COMPILE"),
    ("NUMBA", "CVM", {"mode": "Mode"}, "CVM"),  # set_mode() before the variable
    ("NUMBA", "auto", {"mode": "Mode"}, "AUTO"),  # 'auto' ignores the variable
    (" auto ", None, {"mode": "Mode"}, "AUTO"),
    # 2. an explicit PyTensor choice
    (None, None, {"mode": "FAST_COMPILE"}, "FAST_COMPILE"),
    (None, None, {"mode": "NUMBA"}, "NUMBA"),
    (None, None, {"mode": "FAST_RUN"}, "FAST_RUN"),
    (None, None, {"mode": "Mode", "linker": "cvm"}, "Mode"),
    (None, None, {"mode": "Mode", "linker": "numba"}, "Mode"),
    # 3. nothing chosen: the C backend with a compiler
    (None, None, {"mode": "Mode", "linker": "auto"}, "AUTO"),
]


@pytest.mark.parametrize("env, set_to, flags, expected", RULES)
def test_choose_mode_follows_the_documented_rules(
    setting, monkeypatch, env, set_to, flags, expected
):
    if env is not None:
        monkeypatch.setenv(backend.ENV_VAR, env)
    if set_to is not None:
        backend.set_mode(set_to)
    with pytensor.config.change_flags(**flags):
        chosen = backend.choose_mode()
    assert chosen == (_auto() if expected == "AUTO" else expected)


def test_without_a_compiler_the_automatic_choice_is_numba(setting):
    with pytensor.config.change_flags(mode="Mode", cxx=""):
        assert backend.choose_mode() == "NUMBA"


def test_a_mode_given_for_one_function_wins(setting):
    backend.set_mode("NUMBA")
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        assert backend.choose_mode("CVM") == "CVM"


def test_set_mode_returns_the_previous_setting(setting):
    assert backend.set_mode("FAST_COMPILE") is None
    assert backend.set_mode("auto") == "FAST_COMPILE"
    assert backend.get_mode() is None
    assert backend.set_mode(None) == "auto"


@pytest.mark.parametrize("bad, hint", [("NUBMA", "NUMBA"), ("fast_compiled", "FAST_COMPILE")])
def test_unknown_modes_are_refused_with_a_suggestion(setting, monkeypatch, bad, hint):
    with pytest.raises(theanets.ConfigurationError, match="set_mode.*unknown PyTensor mode"):
        backend.set_mode(bad)
    assert backend.get_mode() is None  # unchanged
    monkeypatch.setenv(backend.ENV_VAR, bad)
    with pytest.raises(theanets.ConfigurationError, match=f"THEANETS_MODE.*Did you mean '{hint}'"):
        backend.choose_mode()


def test_set_mode_refuses_other_types(setting):
    with pytest.raises(theanets.ConfigurationError, match="expected 'auto', a PyTensor mode"):
        backend.set_mode(3)


def test_a_mode_instance_is_accepted(setting):
    mode = pytensor.compile.mode.get_mode("FAST_COMPILE").excluding("fusion")
    backend.set_mode(mode)
    assert backend.choose_mode() is mode


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_networks_compile_in_the_chosen_mode_and_keep_their_results(setting, default_mode):
    """Under the users' mode, predict compiles with the chosen backend and matches NumPy."""
    net = theanets.Classifier([4, (5, "tanh"), 3])
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(pytensor.config.floatX)
    probs = net.predict_proba(x)
    (fn,) = net._functions.values()
    if pytensor.config.cxx:
        assert isinstance(fn.maker.linker, VMLinker) and fn.maker.linker.use_cloop
        # softmax is compiled into the function, not called as an inner function
        ops = {type(node.op).__name__ for node in fn.maker.fgraph.apply_nodes}
        assert "Softmax" not in ops, ops
    else:
        assert isinstance(fn.maker.linker, NumbaLinker)
    w = [p.get_value() for p in net.params]
    expected = _softmax(np.tanh(x @ w[0] + w[1]) @ w[2] + w[3])
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_a_new_mode_compiles_again_and_old_functions_are_kept(setting):
    net = theanets.Regressor([3, 2])
    x = np.ones((2, 3), dtype=pytensor.config.floatX)
    net.predict(x)  # FAST_COMPILE: Python implementations, Python loop
    backend.set_mode("CVM")
    net.predict(x)
    net.predict(x)
    loops = sorted(fn.maker.linker.use_cloop for fn in net._functions.values())
    assert loops == [False, True]


def test_optimizers_compile_in_the_chosen_mode(setting):
    import pytensor.tensor as pt

    w = pytensor.shared(np.zeros(2), name="w")
    x, y = pt.matrix("x"), pt.vector("y")
    opt = theanets.optimizers.build("sgd", pt.sqr(x.dot(w) - y).mean(), [w], [x, y])
    data = [np.eye(2), np.array([1.0, -1.0])]
    opt.minimize(data, learning_rate=0.5, max_updates=2, batch_size=2)
    fns = list(opt._step_fns.values()) + list(opt._eval_fns.values())
    assert len(fns) == 2
    assert all(type(fn.maker.linker).__name__ == "VMLinker" for fn in fns)  # FAST_COMPILE
    assert all(not fn.maker.linker.use_cloop for fn in fns)


def test_validation_is_compiled_only_when_needed(setting):
    import pytensor.tensor as pt

    w = pytensor.shared(np.zeros(2), name="w")
    x, y = pt.matrix("x"), pt.vector("y")
    opt = theanets.optimizers.build("sgd", pt.sqr(x.dot(w) - y).mean(), [w], [x, y])
    run = opt.iterate([np.eye(2), np.array([1.0, -1.0])], batch_size=2, learning_rate=0.1)
    assert not opt._step_fns and not opt._eval_fns  # nothing compiled before iteration
    next(run)
    assert len(opt._step_fns) == 1 and len(opt._eval_fns) == 1


def _run(code, **env):
    full = dict(os.environ)
    full.pop("PYTENSOR_FLAGS", None)
    full.pop(backend.ENV_VAR, None)
    full.update(env)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


SETTINGS = """
    import pytensor  # imported before theanets, as scripts that set floatX first do
    import theanets
    import pytensor.tensor as pt
    from theanets import backend
    x = pt.dvector("x")
    pytensor.function([x], pt.exp(x), mode=backend.choose_mode())  # set-up done by now
    print(bool(pytensor.config.blas__ldflags), ",".join(pytensor.config.gcc__cxxflags.split()))
"""


@pytest.mark.skipif(not pytensor.config.cxx, reason="needs a C++ compiler for the C backend")
def test_c_mode_links_blas_and_drops_debug_information_unless_the_user_chose():
    linked, flags = _run(SETTINGS)
    first, *rest = flags.split(",")
    assert linked == "True" and first == "-g0"
    # then the precompiled header's folder (theanets._pch), where one could be
    # built, and the gold linker, where the compiler can use it
    include = [flag for flag in rest if flag.startswith("-I")]
    assert include == [] or (len(include) == 1 and "theanets-pch-" in include[0])
    assert set(rest) - set(include) <= {"-fuse-ld=gold"}
    _, flags = _run(SETTINGS, PYTENSOR_FLAGS="gcc__cxxflags=-O2")
    assert flags == "-O2"
    linked, _ = _run(SETTINGS, PYTENSOR_FLAGS="blas__ldflags=")
    assert linked == "False"


GOLD_CHILD = """
    import glob, json, os, subprocess
    import numpy as np
    import pytensor, pytensor.tensor as pt
    import theanets
    from theanets import backend
    x = pt.dmatrix("x")
    fn = pytensor.function([x], pt.tanh(x) * 2 + 1, mode=backend.choose_mode())
    value = np.linspace(-1, 1, 6).reshape(2, 3)
    error = float(np.max(np.abs(fn(value) - (np.tanh(value) * 2 + 1))))
    libraries = glob.glob(os.path.join(pytensor.config.compiledir, "tmp*", "m*.so"))
    sections = [subprocess.run(["readelf", "-W", "-S", lib], capture_output=True, text=True).stdout
                for lib in libraries]
    stored = glob.glob(os.path.join(pytensor.config.compiledir, "theanets-linker-*.json"))
    print(json.dumps({"flags": pytensor.config.gcc__cxxflags, "error": error,
                      "gold": [".note.gnu.gold-version" in s for s in sections],
                      "stored": [json.load(open(p)) for p in stored]}))
"""


@pytest.mark.skipif(
    not (pytensor.config.cxx and shutil.which("ld.gold") and shutil.which("readelf")),
    reason="needs a C++ compiler, GNU gold and readelf",
)
def test_c_modules_are_linked_with_gold_where_it_works(tmp_path):
    import json

    out = _run(GOLD_CHILD, PYTENSOR_FLAGS=f"base_compiledir={tmp_path}")
    result = json.loads(" ".join(out))
    assert result["flags"].endswith(" -fuse-ld=gold")
    assert result["gold"] and all(result["gold"])  # gold wrote every module's library
    assert result["stored"] == [True]  # the probe's answer, kept for later processes
    assert result["error"] < 1e-12
    # a compiler that cannot link with gold: the modules are linked as PyTensor links them
    marker = next(tmp_path.rglob("theanets-linker-*.json"))
    marker.write_text("false")
    result = json.loads(" ".join(_run(GOLD_CHILD, PYTENSOR_FLAGS=f"base_compiledir={tmp_path}")))
    assert "gold" not in result["flags"] and result["error"] < 1e-12


def test_a_value_per_machine_is_computed_once_and_kept(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"answer": 42}

    assert backend._machine_value("probe", compute, tmp_path) == {"answer": 42}
    assert backend._machine_value("probe", compute, tmp_path) == {"answer": 42}
    assert len(calls) == 1
    (stored,) = tmp_path.glob("theanets-probe-*.json")
    assert stored.read_text() == '{"answer": 42}'
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, no leftovers
    # None means "unknown": not stored, asked again
    assert backend._machine_value("nothing", lambda: calls.append(1), tmp_path) is None
    assert backend._machine_value("nothing", lambda: calls.append(1), tmp_path) is None
    assert len(calls) == 3 and not list(tmp_path.glob("theanets-nothing-*"))
    # a damaged file is computed again
    stored.write_text("{not json")
    assert backend._machine_value("probe", compute, tmp_path) == {"answer": 42} and len(calls) == 4


def test_the_compiler_set_up_runs_beside_graph_building_and_ends_before_any_key(monkeypatch):
    import threading

    from theanets import _parallel_c

    started, release, order = threading.Event(), threading.Event(), []

    def find_settings():
        started.set()
        release.wait(10)
        order.append("settings found")

    monkeypatch.setattr(backend, "_compiler_setup", None)
    monkeypatch.setattr(_parallel_c, "_before_compiling", [])
    monkeypatch.setattr(backend, "_find_compiler_settings", find_settings)
    backend._set_up_compiler(background=True)
    assert started.wait(10) and order == []  # running, and the caller went on
    waiter = threading.Thread(target=_parallel_c._run_tasks_before_compiling)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # compiling waits for the settings ...
    release.set()
    waiter.join(10)
    assert order == ["settings found"] and not _parallel_c._before_compiling
    backend._set_up_compiler(background=False)  # ... which are found once per process
    assert order == ["settings found"]


def test_a_compiler_set_up_that_fails_fails_the_compilation_that_needs_it(monkeypatch):
    from theanets import _parallel_c

    def find_settings():
        raise OSError("no compiler")

    monkeypatch.setattr(backend, "_compiler_setup", None)
    monkeypatch.setattr(_parallel_c, "_before_compiling", [])
    monkeypatch.setattr(backend, "_find_compiler_settings", find_settings)
    backend._set_up_compiler(background=True)
    with pytest.raises(OSError, match="no compiler"):
        _parallel_c._run_tasks_before_compiling()
    with pytest.raises(OSError, match="no compiler"):
        backend._set_up_compiler(background=False)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_during_the_set_up_does_not_wait_for_it(monkeypatch):
    import threading
    import time
    import warnings

    from theanets import _parallel_c

    started, release = threading.Event(), threading.Event()

    def find_settings():
        started.set()
        release.wait(10)

    monkeypatch.setattr(backend, "_compiler_setup", None)
    monkeypatch.setattr(_parallel_c, "_before_compiling", [])
    monkeypatch.setattr(backend, "_find_compiler_settings", find_settings)
    backend._set_up_compiler(background=True)
    assert started.wait(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # forking with a thread running
        pid = os.fork()
    if pid == 0:  # the child: the set-up's thread was not copied
        code = 1
        try:
            _parallel_c._run_tasks_before_compiling()  # returns at once: nothing to wait for
            code = 0 if backend._compiler_setup is None else 2
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + 20
        while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        if done == (0, 0):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        assert done != (0, 0), "the forked process waited for the parent's set-up"
        assert os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        release.set()
        backend._compiler_setup.result(10)
