"""The suite compiles in FAST_COMPILE, except where a test asks for the default mode.

``conftest.py`` sets ``mode=FAST_COMPILE`` for the whole suite and provides
the ``default_mode`` fixture for the tests that must run under the mode users
get (PyTensor's ``Mode`` preset, for which :func:`theanets.backend.choose_mode`
picks the C backend when a C++ compiler is available, Numba otherwise).
These tests look at the functions a network really compiles, and check that
every test named after the default mode requests the fixture and that no
module replaces it with a local one.
"""

import ast
from pathlib import Path

import numpy as np
import pytensor
import pytest
from pytensor.link.numba.linker import NumbaLinker
from pytensor.link.vm import VMLinker

import theanets

TESTS = Path(__file__).resolve().parent


def _compiled_functions(net):
    """Predict once and return the functions the network compiled for it."""
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(pytensor.config.floatX)
    net.predict(x)
    fns = list(net._functions.values())
    assert fns, "the network compiled nothing"
    return fns


def _is_users_linker(linker):
    """Whether ``linker`` is the one theanets picks without settings (see theanets.backend)."""
    if pytensor.config.cxx:
        return isinstance(linker, VMLinker) and linker.use_cloop and linker.c_thunks is not False
    return isinstance(linker, NumbaLinker)


def test_network_compiles_with_the_default_linker_in_default_mode(default_mode):
    assert pytensor.config.mode == "Mode" == default_mode
    if pytensor.config.linker != "auto":
        pytest.fail(f"the suite runs with linker={pytensor.config.linker}, not PyTensor's default")
    for fn in _compiled_functions(theanets.Regressor([4, (5, "tanh"), 2])):
        assert _is_users_linker(fn.maker.linker), fn.maker.linker


def test_other_tests_compile_with_fast_compile():
    """Outside the fixture (and after it: it restores the mode) FAST_COMPILE applies."""
    assert pytensor.config.mode == "FAST_COMPILE"
    for fn in _compiled_functions(theanets.Regressor([4, (5, "tanh"), 2])):
        linker = fn.maker.linker
        assert isinstance(linker, VMLinker) and not linker.use_cloop, linker


def test_functions_compiled_in_one_mode_are_not_reused_in_another():
    """A network used in both modes (a module-scoped fixture) compiles for each."""
    net = theanets.Regressor([4, (5, "tanh"), 2])
    fast = {id(fn) for fn in _compiled_functions(net)}
    with pytensor.config.change_flags(mode="Mode"):
        again = [fn for fn in _compiled_functions(net) if id(fn) not in fast]
    assert again and all(_is_users_linker(fn.maker.linker) for fn in again)


def _test_functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            yield node


def _requested_fixtures(fn):
    names = {a.arg for a in fn.args.args}
    for deco in fn.decorator_list:
        if isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("usefixtures"):
            names.update(a.value for a in deco.args if isinstance(a, ast.Constant))
    return names


def _is_fixture(fn):
    return any("fixture" in ast.unparse(d) for d in fn.decorator_list)


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_tests_named_after_the_users_mode_request_its_fixture(path):
    """A test named after the default mode must get it from ``conftest.default_mode``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    offenders = [
        f"{fn.name} (line {fn.lineno})"
        for fn in _test_functions(tree)
        if "default_mode" in fn.name and "default_mode" not in _requested_fixtures(fn)
    ]
    assert not offenders, f"tests named default_mode without the fixture: {offenders}"
    local = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "default_mode" and _is_fixture(node)
    ]
    assert not local, f"a local default_mode fixture (line {local}) hides the one in conftest.py"
