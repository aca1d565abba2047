"""The code in the documentation runs, and the documentation builds.

Every ``>>>`` example in the pages under ``docs/`` (not the generated API
pages, whose examples come from docstrings) is run as a doctest: one fresh
namespace per page, the examples of a page in order, in a temporary working
directory (so pages may save model files with plain names). The tests
compile with ``mode=FAST_COMPILE`` like the rest of the suite (see
``conftest.py``).

When Sphinx and numpydoc are installed, the HTML build is also checked with
warnings as errors, as ``make docs`` runs it.
"""

import doctest
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
SKIP_DIRS = {"_build", "_templates", "_static", "generated"}
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _pages():
    return sorted(
        path
        for path in DOCS.rglob("*.rst")
        if not SKIP_DIRS.intersection(path.relative_to(DOCS).parts)
    )


PAGES = _pages()
PAGES_WITH_CODE = [p for p in PAGES if ">>>" in p.read_text(encoding="utf-8")]


def _run_page(path):
    """Run the doctests of one page; return (failures, attempts, report)."""
    text = path.read_text(encoding="utf-8")
    name = str(path.relative_to(DOCS))
    test = doctest.DocTestParser().get_doctest(text, {"__name__": "__docs__"}, name, str(path), 0)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report = io.StringIO()
    saved = _registries()
    try:
        runner.run(test, out=report.write, clear_globs=True)
    finally:
        # user-defined regularizers, layers... register themselves by class
        # name; restore the registries so that pages stay independent
        for registry, entries in saved:
            registry.clear()
            registry.update(entries)
    results = runner.summarize(verbose=False)
    return results.failed, results.attempted, report.getvalue()


def _registries():
    """Return (registry, copy of its entries) for every class registry."""
    import theanets
    import theanets.optimizers

    bases = (
        theanets.Layer,
        theanets.Activation,
        theanets.Loss,
        theanets.Regularizer,
        theanets.optimizers.Optimizer,
    )
    return [(base._registry, dict(base._registry)) for base in bases]


def test_docs_pages_found():
    names = {str(p.relative_to(DOCS)) for p in PAGES}
    for required in (
        "index.rst",
        "quickstart.rst",
        "migration.rst",
        "changelog.rst",
        "examples.rst",
        "guide/models.rst",
        "guide/training.rst",
        "guide/regularizers.rst",
        "guide/losses.rst",
        "guide/using.rst",
        "guide/performance.rst",
        "api/index.rst",
    ):
        assert required in names


@pytest.mark.parametrize("path", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failed, attempted, report = _run_page(path)
    assert attempted > 0
    assert failed == 0, f"{failed} of {attempted} examples failed in {path.name}:\n{report}"


def test_every_page_with_prose_code_is_tested():
    """Python shown as a literal block must be runnable (``>>>``) or marked as not run.

    ``.. code-block:: python`` is allowed only with ``:class: no-run``; shell
    commands use ``.. code-block:: sh``.
    """
    offenders = []
    for path in PAGES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.strip() in (".. code-block:: python", ".. code:: python"):
                following = lines[i + 1 : i + 3]
                if not any("no-run" in f for f in following):
                    offenders.append(f"{path.relative_to(DOCS)}:{i + 1}")
    assert not offenders, f"untested python blocks: {offenders}"


@pytest.mark.skipif(
    not os.environ.get("CI")
    and (
        importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("numpydoc") is None
    ),
    reason="Sphinx and numpydoc are not installed (pip install -e '.[test]'); never skipped in CI",
)
def test_sphinx_build_has_no_warnings(tmp_path):
    env = dict(os.environ)
    env.setdefault("PYTENSOR_FLAGS", "mode=FAST_COMPILE")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert (tmp_path / "html" / "index.html").exists()
