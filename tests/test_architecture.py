"""The package's import structure: no cycles, imports point one way, every module imports alone.

The import graph is read from the source with :mod:`ast`, so it sees every
``import`` statement: at module level and inside functions, relative and
absolute. Imports made with :func:`importlib.import_module` are not seen (the
Theano-era reader finds old model classes that way, downwards).
"""

import ast
import concurrent.futures
import fnmatch
import json
import os
import pathlib
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import theanets

ROOT = "theanets"
PACKAGE_DIR = pathlib.Path(theanets.__file__).resolve().parent

#: The intended order of the package, lowest first. A module may import
#: modules of its own group or of lower groups, never of a higher one.
LAYER_ORDER = [
    ("foundations", ["theanets._blas", "theanets.util", "theanets._unpickle"]),
    ("elementwise functions", ["theanets.activations", "theanets.losses"]),
    ("layers", ["theanets.layers", "theanets.layers.*"]),
    ("regularizers", ["theanets.regularizers", "theanets.regularizers.*"]),
    (
        "compilation backend",
        ["theanets._parallel_c", "theanets._pch", "theanets._size_one_c", "theanets.backend"],
    ),
    ("optimizers", ["theanets.optimizers", "theanets.optimizers.*"]),
    ("network", ["theanets.graph"]),
    ("models", ["theanets.feedforward", "theanets.recurrent", "theanets.convolution"]),
    ("Theano-era files", ["theanets.legacy"]),
    ("services", ["theanets.trainer", "theanets.serialization", "theanets.main"]),
    ("public surface", ["theanets"]),
]


# ----------------------------------------------------------------------
# reading the graph


def _modules(package_dir=PACKAGE_DIR):
    """Map every module's dotted name to (path, is_package)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = (ROOT, *path.relative_to(package_dir).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def _targets(node, importer, is_package, modules):
    """The dotted names an ``import``/``from ... import`` node names explicitly.

    ``from pkg import name`` names ``pkg.name`` when that is a module, else ``pkg``.
    """
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    names = [f"{module}.{alias.name}" for alias in node.names]
    return [name if name in modules else module for name in names]


def import_graph(package_dir=PACKAGE_DIR):
    """Return ``{module: set of package modules it imports}``, from the source.

    Importing ``a.b.c`` first loads the package ``a.b``, so an import of a
    submodule also counts as an import of each enclosing package that does
    not contain the importer. The root package counts only where it is named
    itself (``import theanets``, ``from theanets import Network``): it is
    always loaded before any of its modules.
    """
    modules = _modules(package_dir)
    graph = {}
    for name, (path, is_package) in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, name, is_package, modules):
                parts = target.split(".")
                for end in range(2, len(parts)):
                    package = ".".join(parts[:end])
                    inside = name == package or name.startswith(package + ".")
                    if package in modules and not inside:
                        deps.add(package)
                if target in modules and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycles(graph):
    """Return the strongly connected components with more than one module, each sorted."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _cycle_path(graph, component):
    """The shortest closed path through the first module of a cycle, for messages."""
    members = set(component)
    start = component[0]
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for dep in sorted(graph[path[-1]] & members):
            if dep == start:
                return path + [start]
            if dep not in path:
                paths.append(path + [dep])
    return component


def _group_of(module):
    for rank, (label, patterns) in enumerate(LAYER_ORDER):
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return rank, label
    return None


def dependency_order(graph):
    """The modules sorted so that each comes after everything it imports."""
    order, done = [], set()

    def visit(node, trail):
        if node in done or node in trail:
            return
        for dep in sorted(graph[node]):
            visit(dep, trail | {node})
        done.add(node)
        order.append(node)

    for node in sorted(graph):
        visit(node, frozenset())
    return order


# ----------------------------------------------------------------------
# the checks of the checker itself, on a small made-up package


def _write_package(tmp_path, files):
    pkg = tmp_path / ROOT
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return pkg


def test_the_reader_sees_local_relative_and_absolute_imports(tmp_path):
    pkg = _write_package(
        tmp_path,
        {
            "__init__.py": "from . import a\n",
            "a.py": "def f():\n    from . import b\n",
            "b.py": "import theanets.sub.c\n",
            "sub/__init__.py": "from .c import name\n",
            "sub/c.py": "from .. import a as _a\nfrom ..sub import d\n",
            "sub/d.py": "",
            "e.py": "def f():\n    from theanets import name\n",
        },
    )
    graph = import_graph(pkg)
    assert graph["theanets"] == {"theanets.a"}
    assert graph["theanets.a"] == {"theanets.b"}
    assert graph["theanets.b"] == {"theanets.sub", "theanets.sub.c"}
    assert graph["theanets.sub"] == {"theanets.sub.c"}
    assert graph["theanets.sub.c"] == {"theanets.a", "theanets.sub.d"}
    assert graph["theanets.e"] == {"theanets"}
    (cycle,) = find_cycles(graph)
    assert cycle == ["theanets.a", "theanets.b", "theanets.sub", "theanets.sub.c"]
    assert _cycle_path(graph, cycle)[0] == _cycle_path(graph, cycle)[-1]


# ----------------------------------------------------------------------
# the package


def test_there_is_no_import_cycle():
    graph = import_graph()
    cycles = find_cycles(graph)
    described = [f"{' -> '.join(_cycle_path(graph, c))} (modules {', '.join(c)})" for c in cycles]
    assert not cycles, "import cycles in the package:\n" + "\n".join(described)


def test_every_module_has_a_place_in_the_layer_order():
    unplaced = sorted(name for name in import_graph() if _group_of(name) is None)
    assert not unplaced, f"add these modules to LAYER_ORDER: {unplaced}"


def test_imports_point_down_the_layer_order():
    graph = import_graph()
    wrong = []
    for module, deps in sorted(graph.items()):
        mine = _group_of(module)
        for dep in sorted(deps):
            theirs = _group_of(dep)
            if mine and theirs and theirs[0] > mine[0]:
                wrong.append(f"{module} ({mine[1]}) imports {dep} ({theirs[1]})")
    assert not wrong, "lower modules import higher ones:\n" + "\n".join(wrong)


_IMPORT_ALONE = """
import importlib, json, sys, types
# load one module without running the package's __init__, which imports everything
root = types.ModuleType({root!r})
root.__path__ = [{path!r}]
sys.modules[{root!r}] = root
importlib.import_module({module!r})
print(json.dumps(sorted(m for m in sys.modules if m.startswith({root!r} + "."))))
"""


def _loaded_alone(module):
    if module == ROOT:
        code = f"import json, sys; import {ROOT}; print(json.dumps(sorted(sys.modules)))"
    else:
        code = _IMPORT_ALONE.format(root=ROOT, path=str(PACKAGE_DIR), module=module)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_DIR.parent), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )


def _reachable(graph, module):
    """``module`` and everything its imports (and their enclosing packages) load."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(graph.get(name, ()))
        parts = name.split(".")
        todo.extend(".".join(parts[:end]) for end in range(2, len(parts)))
    return seen


def test_each_module_imports_on_its_own_in_dependency_order():
    """Lowest first, each module imports in a fresh interpreter, loading only what it imports."""
    graph = import_graph()
    order = dependency_order(graph)
    # the interpreters run side by side; their results are read lowest first
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_loaded_alone, order))
    for module, result in zip(order, results):
        if result.returncode != 0:
            pytest.fail(f"importing {module} on its own failed:\n{result.stderr[-3000:]}")
        if module == ROOT:
            continue
        loaded = set(json.loads(result.stdout.splitlines()[-1]))
        extra = sorted(loaded - _reachable(graph, module))
        assert not extra, f"importing {module} also loaded {extra}, which it does not import"


def test_import_theanets_wires_training_and_persistence_into_network():
    from theanets import graph

    assert set(graph._IMPLEMENTATIONS) == set(graph._ROLES)


@pytest.mark.parametrize(
    "call, module",
    [
        (lambda net: net.train([np.zeros((2, 3)), np.zeros((2, 2))]), "theanets.trainer"),
        (lambda net: net.save("unused.pkl"), "theanets.serialization"),
        (lambda net: theanets.Network.load("unused.pkl"), "theanets.serialization"),
        (lambda net: pickle.dumps(net), "theanets.serialization"),
    ],
)
def test_an_unwired_network_method_names_the_module_it_needs(monkeypatch, call, module):
    from theanets import graph

    net = theanets.Regressor([3, 2])
    monkeypatch.setattr(graph, "_IMPLEMENTATIONS", {})
    with pytest.raises(RuntimeError, match=f"needs {module}, which has not been imported"):
        call(net)
