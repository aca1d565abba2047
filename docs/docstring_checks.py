"""Which numpydoc validation checks the documentation enforces.

Read by ``docs/conf.py`` (as ``numpydoc_validation_checks`` and
``numpydoc_validation_exclude``, so the Sphinx build warns, and with ``-W``
fails, on a docstring that breaks one) and by ``tests/test_docs.py``, which
runs the same checks over every public name of the package without building
the documentation.
"""

#: The numpydoc error codes checked (see ``numpydoc.validate.ERROR_MSGS``).
#: Left out on purpose: ES01 (extended summary), SA01 (See Also), EX01
#: (Examples), which short helpers do not need; SS05, whose "infinitive
#: verb" guess flags nouns such as "Shapes"; PR04 (parameter type), so that
#: a subclass may list the parameters it passes on unchanged on one line
#: (``name, layer, **kwargs``) and refer to its base class for them; and
#: PR07 and RT03 (descriptions of parameters and of returned values). GL01
#: and GL02 (where the quotes stand) are left out as well: for a documented
#: constant (``#:`` comments like these) numpydoc reads them from the
#: docstring of the value's type, ``str`` or ``bool``, which always fails.
CHECKS = frozenset(
    {
        # layout: blank lines, tabs, section names and order, directives
        "GL03",
        "GL05",
        "GL06",
        "GL07",
        "GL08",  # every public name has a docstring
        "GL09",
        "GL10",
        # the one-line summary
        "SS01",
        "SS02",
        "SS03",
        "SS04",
        "SS06",
        # parameters: all documented (PR01), none unknown (PR02), in order (PR03)
        "PR01",
        "PR02",
        "PR03",
        "PR05",
        "PR06",
        "PR08",
        "PR09",
        "PR10",
        # a Returns section where something is returned (RT01), well formed
        "RT01",
        "RT02",
        "RT04",
        "RT05",
        # a Yields section for generators
        "YD01",
        # See Also entries, where there are any, described
        "SA02",
        "SA03",
        "SA04",
    }
)

#: Regular expressions of fully qualified names that are not validated.
EXCLUDE = frozenset(
    {
        # Methods of custom PyTensor Ops implement PyTensor's Op interface:
        # their arguments and results are the ones PyTensor defines and
        # documents, whatever each Op's own docstring says about them.
        r"\.(make_node|perform|infer_shape|connection_pattern|grad|L_op|R_op"
        r"|pullback|pushforward|do_constant_folding|c_code|c_support_code"
        r"|c_code_cache_version)$",
        # A constant documented by a ``#:`` comment is checked against the
        # docstring of its value's type; None's type has none, so the build
        # would report the comment-documented value as undocumented (GL08).
        r"^theanets\.layers\.convolution\.Convolution\.SPATIAL_NDIM$",
        # A do-nothing default written as ``staticmethod(lambda: None)`` and
        # documented by a ``#:`` comment: a lambda has no docstring of its
        # own, and numpydoc's validator fails on it (looking for a ``def``
        # line in its source, it raises StopIteration) instead of reporting.
        r"^theanets\.layers\._dispatch\.BackendOp\.register_backends$",
    }
)
