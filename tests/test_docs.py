"""The code in the documentation runs, and the documentation builds.

Every ``>>>`` example in the pages under ``docs/`` (not the generated API
pages, whose examples come from docstrings) is run as a doctest: one fresh
namespace per page, the examples of a page in order, in a temporary working
directory (so pages may save model files with plain names). The examples in
the docstrings of every module of the ``theanets`` package are run the same
way, one module at a time. The tests compile with ``mode=FAST_COMPILE``
like the rest of the suite (see ``conftest.py``). An example may be skipped
(``# doctest: +SKIP``) only with a comment on it that says why.

Each regularizer's docstring, from which its API page is generated, must
show what its seed document (the specification of the regularizer API)
shows: the keyword at training and at prediction time, the formula, the
references and the defaults.

When Sphinx and numpydoc are installed, the HTML build is also checked with
warnings as errors, as ``make docs`` runs it.
"""

import doctest
import importlib
import importlib.util
import inspect
import io
import logging
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import theanets
from theanets import regularizers

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


def _page_test(path):
    text = path.read_text(encoding="utf-8")
    name = str(path.relative_to(DOCS))
    return doctest.DocTestParser().get_doctest(text, {"__name__": "__docs__"}, name, str(path), 0)


def _run_tests(tests):
    """Run doctests in order; return (failures, attempts, report)."""
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report = io.StringIO()
    saved = _registries()
    try:
        for test in tests:
            runner.run(test, out=report.write, clear_globs=True)
    finally:
        # user-defined regularizers, layers... register themselves by class
        # name; restore the registries so that pages stay independent
        for registry, entries in saved:
            registry.clear()
            registry.update(entries)
    results = runner.summarize(verbose=False)
    return results.failed, results.attempted, report.getvalue()


def _run_page(path):
    """Run the doctests of one page; return (failures, attempts, report)."""
    return _run_tests([_page_test(path)])


def _package_modules():
    names = ["theanets"]
    names += [m.name for m in pkgutil.walk_packages(theanets.__path__, "theanets.")]
    return sorted(names)


def _module_tests(name):
    """The doctests of one module's docstrings, in source order."""
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    return sorted((t for t in tests if t.examples), key=lambda t: (t.lineno or 0, t.name))


MODULES = _package_modules()
MODULES_WITH_EXAMPLES = [name for name in MODULES if _module_tests(name)]


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


def test_package_modules_found():
    assert {"theanets.regularizers", "theanets.feedforward", "theanets.layers.base"} <= set(
        MODULES_WITH_EXAMPLES
    )


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_module_docstring_examples(name, tmp_path, monkeypatch):
    """The ``>>>`` examples of a module's docstrings run and print what they show."""
    monkeypatch.chdir(tmp_path)
    # progress messages go to standard output while logging is unconfigured
    logger = logging.getLogger("theanets")
    monkeypatch.setattr(logger, "level", logging.WARNING)
    failed, attempted, report = _run_tests(_module_tests(name))
    assert attempted > 0
    assert failed == 0, f"{failed} of {attempted} examples failed in {name}:\n{report}"


def _skips_without_reason(tests):
    offenders = []
    skip = doctest.OPTIONFLAGS_BY_NAME["SKIP"]
    for test in tests:
        for example in test.examples:
            if not example.options.get(skip):
                continue
            # the comment left once the directive itself is taken out
            rest = doctest.DocTestParser._OPTION_DIRECTIVE_RE.sub("", example.source)
            if not re.search(r"#\s*\w", rest):
                where = (test.lineno or 0) + example.lineno + 1
                offenders.append(f"{test.name} line {where}: {example.source.strip()}")
    return offenders


def test_every_skipped_example_says_why():
    """``# doctest: +SKIP`` only with a reason: ``>>> f()  # needs a GPU  # doctest: +SKIP``."""
    offenders = []
    for name in MODULES:
        offenders += _skips_without_reason(_module_tests(name))
    for path in PAGES:
        offenders += _skips_without_reason([_page_test(path)])
    assert not offenders, "skipped examples without a reason:\n" + "\n".join(offenders)


def test_skip_reason_check_flags_bare_skips():
    text = ">>> f()  # doctest: +SKIP\n>>> g()  # needs data  # doctest: +SKIP\n>>> h()\n"
    test = doctest.DocTestParser().get_doctest(text, {}, "sample", None, 0)
    offenders = _skips_without_reason([test])
    assert len(offenders) == 1 and "f()" in offenders[0]


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


# ----------------------------------------------------------------------
# numpydoc validation of every public name

_NUMPYDOC_MISSING = importlib.util.find_spec("numpydoc") is None
needs_numpydoc = pytest.mark.skipif(
    not os.environ.get("CI") and _NUMPYDOC_MISSING,
    reason="numpydoc is not installed (pip install -e '.[test]'); never skipped in CI",
)


def _docstring_checks():
    """The check set and exclusions of docs/docstring_checks.py, as conf.py reads them."""
    spec = importlib.util.spec_from_file_location("docstring_checks", DOCS / "docstring_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.CHECKS), re.compile("|".join(module.EXCLUDE))


def _public_objects(module_name):
    """``(qualified name, object)`` of the public names a module defines.

    Functions and classes whose ``__module__`` is this module (re-exports,
    from the package or from elsewhere, are left to the module that defines
    them), and the public methods and properties of each class: those it
    defines and those it inherits from a private base of the package (a
    mixin such as ``_WeightPenalty``, whose methods the documentation shows
    on the public class); what it inherits from a public base is checked
    there. Decorated functions are checked as the function they wrap; names
    starting with ``_`` (``__init__`` included: the class documents its
    parameters) are not public.
    """
    module = importlib.import_module(module_name)
    found = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        if inspect.isclass(obj):
            found.append((f"{module_name}.{name}", obj))
            seen = set()
            for klass in obj.__mro__:
                here = klass is obj or (
                    klass.__name__.startswith("_") and klass.__module__.startswith("theanets.")
                )
                for attr, member in vars(klass).items():
                    if attr in seen:
                        continue  # overridden further down the hierarchy
                    seen.add(attr)
                    if not here or attr.startswith("_"):
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member) or isinstance(member, property):
                        found.append((f"{module_name}.{name}.{attr}", member))
        elif callable(obj) and inspect.isfunction(inspect.unwrap(obj)):
            found.append((f"{module_name}.{name}", inspect.unwrap(obj)))
    return found


def _validation_failures(objects, checks, exclude):
    """``'name: code message'`` for each enforced numpydoc error of the objects."""
    from numpydoc.docscrape import get_doc_object
    from numpydoc.validate import validate

    failures = []
    for name, obj in objects:
        if exclude.search(name):
            continue
        for code, message in validate(get_doc_object(obj))["errors"]:
            if code in checks:
                failures.append(f"{name}: {code} {message}")
    return failures


MODULES_WITH_PUBLIC_NAMES = [name for name in MODULES if _public_objects(name)]


def test_public_objects_are_found_where_defined():
    names = {name for name, _ in _public_objects("theanets.layers.base")}
    assert {
        "theanets.layers.base.Layer",
        "theanets.layers.base.Layer.connect",
        "theanets.layers.base.Layer.output_name",  # a property
        "theanets.layers.base.dot_last_axis",
    } <= names
    assert not any(n.endswith(("._add_param", ".__init__")) for n in names)
    # methods of a private mixin are checked on the public classes using it
    names = {name for name, _ in _public_objects("theanets.regularizers.penalties")}
    assert "theanets.regularizers.penalties.WeightL2.loss" in names
    assert "theanets.regularizers.penalties.WeightL2.log" not in names  # Regularizer.log
    # a package that only re-exports defines nothing of its own
    assert _public_objects("theanets.layers") == []
    assert {"theanets.layers.base", "theanets.activations"} <= set(MODULES_WITH_PUBLIC_NAMES)


@needs_numpydoc
def test_validation_flags_missing_sections():
    def sample(a, b):
        """Add two numbers."""
        return a + b

    def lines(n):
        """Yield numbers.

        Parameters
        ----------
        n : int
            How many.
        c : int
            Not a parameter.
        """
        yield from range(n)

    checks, exclude = _docstring_checks()
    failures = _validation_failures([("sample", sample), ("lines", lines)], checks, exclude)
    codes = {f.split(": ")[0] + " " + f.split(": ")[1].split()[0] for f in failures}
    assert codes == {"sample PR01", "sample RT01", "lines PR02", "lines YD01"}
    assert exclude.search("theanets.layers.fused.RNNForward.make_node")
    assert not exclude.search("theanets.layers.base.Layer.connect")


@needs_numpydoc
@pytest.mark.parametrize("name", MODULES_WITH_PUBLIC_NAMES)
def test_public_docstrings_pass_numpydoc_validation(name):
    """The docstrings of a module pass the checks that the Sphinx build applies.

    The check set and the names left out are those of
    ``docs/docstring_checks.py``, which ``docs/conf.py`` reads; unlike the
    build, this also covers the private modules' public names.
    """
    checks, exclude = _docstring_checks()
    failures = _validation_failures(_public_objects(name), checks, exclude)
    assert not failures, f"{len(failures)} numpydoc failures in {name}:\n" + "\n".join(failures)


# ----------------------------------------------------------------------
# regularizer API pages against the seed documents

# What each regularizer's seed document (or, for those without one, the
# "Regularizers" guide seed) shows: the keywords it names and uses for
# training, whether it shows use at prediction time, its references, its
# constructor defaults.
SEEDS = {
    "WeightL2": dict(keywords=["weight_l2"], predict=False),
    "WeightL1": dict(keywords=["weight_l1"], predict=False),
    "HiddenL1": dict(
        keywords=["hidden_sparsity"],
        names=["hidden_l1", "hidden_sparsity"],
        pattern_example="hidden_sparsity",
        predict=True,
        references=["Ng11"],
        defaults=dict(pattern=None, weight=0.0),
    ),
    "Contractive": dict(
        keywords=["contractive"],
        pattern_example="contractive",
        wrt_example=True,
        predict=True,
        references=["Rif11"],
        defaults=dict(pattern=None, weight=0.0, wrt="*"),
    ),
    # the seed's default pattern '*' is replaced by a required pattern (see
    # docs/migration.rst); the seed itself says a pattern must be provided
    "RecurrentNorm": dict(
        keywords=["recurrent_norm"],
        pattern_example="recurrent_norm",
        predict=True,
        references=["Kru15"],
        defaults=dict(weight=0.0),
    ),
    "BernoulliDropout": dict(keywords=["input_dropout", "hidden_dropout"], predict=False),
    "GaussianNoise": dict(keywords=["input_noise", "hidden_noise"], predict=False),
}


def _section(doc, title):
    """The text of a numpydoc section (up to the next section heading)."""
    lines = inspect.cleandoc(doc).splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() == title and set(lines[i + 1].strip()) == {"-"}:
            body = []
            for j in range(i + 2, len(lines)):
                if (
                    j + 1 < len(lines)
                    and lines[j + 1].strip()
                    and set(lines[j + 1].strip()) == {"-"}
                ):
                    break
                body.append(lines[j])
            return "\n".join(body)
    return ""


def _calls(examples, method):
    """The ``>>>`` statements of an Examples section that call ``.method(``."""
    statements, current = [], None
    for line in examples.splitlines():
        line = line.strip()
        if line.startswith(">>> "):
            current = line[4:]
            statements.append(current)
        elif line.startswith("... ") and statements:
            statements[-1] += " " + line[4:]
    return [s for s in statements if f".{method}(" in s]


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_regularizer_docstring_carries_its_seed(name):
    seed = SEEDS[name]
    cls = getattr(regularizers, name)
    doc = cls.__doc__
    examples = _section(doc, "Examples")
    assert examples, f"{name} has no Examples section"
    trains = _calls(examples, "train")
    for keyword in seed.get("names", []):
        assert f"``{keyword}``" in doc, f"{name}: keyword {keyword} not named"
    for keyword in seed["keywords"]:
        assert any(f"{keyword}=" in s for s in trains), f"{name}: no net.train(..., {keyword}=...)"
    if "pattern_example" in seed:
        key = seed["pattern_example"]
        assert any(f"{key}=dict(" in s and "pattern=" in s for s in trains), (
            f"{name}: no training example with {key}=dict(..., pattern=...)"
        )
    if seed.get("wrt_example"):
        assert any("wrt=" in s for s in trains), f"{name}: no training example with wrt=..."
    if seed["predict"]:
        predicts = _calls(examples, "predict")
        assert any(any(f"{k}=" in s for k in seed["keywords"]) for s in predicts), (
            f"{name}: no net.predict(..., {seed['keywords'][0]}=...) example"
        )
        if "pattern_example" in seed and name == "RecurrentNorm":
            assert any("pattern=" in s for s in predicts), f"{name}: predict needs a pattern"
    assert ".. math::" in _section(doc, "Notes"), f"{name}: no formula in Notes"
    for ref in seed.get("references", []):
        assert f"[{ref}]" in _section(doc, "References"), f"{name}: reference [{ref}] missing"
    params = inspect.signature(cls).parameters
    for arg, default in seed.get("defaults", {}).items():
        assert params[arg].default == default, f"{name}({arg}=...) default"
        assert re.search(rf"^{arg} :", _section(doc, "Parameters"), re.M), (
            f"{name}: {arg} undocumented"
        )


def test_base_regularizer_docstring_carries_its_seed():
    """Seed 004: pattern and weight; log, loss, modify_graph; dropout rewrites the graph."""
    base = regularizers.Regularizer
    params = inspect.signature(base).parameters
    assert [(p, params[p].default) for p in params] == [("pattern", None), ("weight", 0.0)]
    for section in ("Parameters", "Attributes"):
        text = _section(base.__doc__, section)
        assert re.search(r"^pattern :", text, re.M) and re.search(r"^weight :", text, re.M)
    assert "modify_graph" in base.__doc__ and "loss" in base.__doc__
    assert base.log.__doc__
    for arg in ("layers", "outputs"):
        assert re.search(rf"^{arg} :", _section(base.loss.__doc__, "Parameters"), re.M)
    assert re.search(r"^outputs :", _section(base.modify_graph.__doc__, "Parameters"), re.M)
    notes = _section(base.modify_graph.__doc__, "Notes")
    assert "BernoulliDropout" in notes, "modify_graph does not name BernoulliDropout as its example"
    # a custom regularizer is shown in use, at training time
    assert _calls(_section(base.__doc__, "Examples"), "train")


def test_regularizer_api_page_lists_every_regularizer():
    page = (DOCS / "api" / "regularizers.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^   (\w+)$", page, re.M))
    public = {
        name
        for name in regularizers.__all__
        if inspect.isclass(getattr(regularizers, name))
        and issubclass(getattr(regularizers, name), regularizers.Regularizer)
    }
    assert public | set(SEEDS) <= listed
