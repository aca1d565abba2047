"""Sphinx configuration for the theanets documentation.

The build must work offline and without warnings (``make docs`` runs
``sphinx-build -W --keep-going``): no intersphinx inventories are fetched,
and math is rendered by MathJax in the reader's browser.
"""

import ast
import importlib.util
import os
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# Importing theanets (for autodoc) configures PyTensor; keep the build quiet
# and fast: nothing is compiled while the documentation is built.
os.environ.setdefault("PYTENSOR_FLAGS", "mode=FAST_COMPILE")

import theanets  # noqa: E402

project = "theanets"
author = "the theanets developers"
copyright = "the theanets developers, MIT license"
version = release = theanets.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

master_doc = root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "_templates", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# API pages of modules that a checkout may not have yet: while such a
# module cannot be imported its page says so, instead of failing the build.
_OPTIONAL_API_PAGES = {
    "api/convolution": "theanets.convolution",
    "api/layers_convolution": "theanets.layers.convolution",
}


def _missing(module):
    try:
        return importlib.util.find_spec(module) is None
    except ImportError:
        return True


def _stub_missing_modules(app, docname, source):
    module = _OPTIONAL_API_PAGES.get(docname)
    if module and _missing(module):
        title = source[0].strip().splitlines()[1]
        line = "=" * len(title)
        source[0] = (
            f"{line}\n{title}\n{line}\n\n"
            f"The module ``{module}`` is not part of this build of theanets.\n"
        )


class ExampleList(Directive):
    """``.. example-list::`` lists the scripts in ``examples/`` with their summaries.

    The list is read from the scripts when the documentation is built, so a
    new example appears without editing the page: its name, the first
    paragraph of its module docstring, the command that runs it and, when
    ``docs/_static/<script name>*.png`` exists, its figures.
    """

    has_content = False

    def run(self):
        root = Path(HERE).parent / "examples"
        static = Path(HERE) / "_static"
        lines = []
        for script in sorted(root.glob("*.py")):
            if script.name.startswith("_"):
                continue
            doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
            summary = " ".join(doc.strip().split("\n\n")[0].split()) or "(no description)"
            lines += [
                f".. rubric:: {script.stem}",
                "",
                summary,
                "",
                ".. code-block:: sh",
                "",
                f"   python examples/{script.name} --output examples/output",
                "",
            ]
            for figure in sorted(static.glob(f"{script.stem}*.png")):
                lines += [
                    f".. image:: /_static/{figure.name}",
                    f"   :alt: figure written by examples/{script.name}",
                    "   :width: 90%",
                    "",
                ]
        if not lines:
            lines = ["There are no example scripts in this build."]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="examples/"), 0, container)
        return container.children


def _public_bases(app, name, obj, options, bases):
    """Leave private mixins (``_WeightPenalty``...) out of "Bases:" lines."""
    bases[:] = [b for b in bases if not getattr(b, "__name__", "").startswith("_")]


def setup(app):
    app.connect("source-read", _stub_missing_modules)
    app.connect("autodoc-process-bases", _public_bases)
    app.add_directive("example-list", ExampleList)


# -- autodoc / autosummary / numpydoc -------------------------------------
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"
# Only the regularizers page has one page per class (see api/regularizers.rst).
autosummary_generate = ["api/regularizers.rst"]
autosummary_imported_members = False

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True


def _docstring_checks():
    """Return the checks and exclusions that tests/test_docs.py applies as well."""
    spec = importlib.util.spec_from_file_location(
        "docstring_checks", os.path.join(HERE, "docstring_checks.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.CHECKS), set(module.EXCLUDE)


# Every docstring autodoc renders is validated; a failure is a warning, so
# the -W build fails on it. The lists live in docs/docstring_checks.py.
numpydoc_validation_checks, numpydoc_validation_exclude = _docstring_checks()

# -- HTML -----------------------------------------------------------------
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"theanets {release}"
html_theme_options = {
    "description": "Neural network models on PyTensor",
    "fixed_sidebar": True,
}

pygments_style = "sphinx"
