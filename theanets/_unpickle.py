"""The allow-list unpickler that every theanets model file is read with.

Both readers of model files build on :class:`AllowListUnpickler`:
:class:`theanets.serialization.RestrictedUnpickler` (this package's own
files, which may also name a network class) and
:class:`theanets.legacy.LegacyUnpickler` (Theano-era files, whose ``theano``
and ``theanets`` globals become inert stand-ins). This module imports nothing
from theanets, so both can use it without importing each other.

Only NumPy arrays, dtypes, scalars and random states and the built-in
containers can be rebuilt; any other global raises :class:`UnsafePickleError`
before it can run.
"""

import importlib
import pickle

__all__ = [
    "AllowListUnpickler",
    "LegacyPickleError",
    "UnsafePickleError",
    "python3_name",
]

_SAFE_GLOBALS = {
    ("builtins", name)
    for name in ("dict", "list", "tuple", "set", "frozenset", "complex", "bytearray", "slice")
} | {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.random", "__RandomState_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random.mtrand", "RandomState"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}


class LegacyPickleError(pickle.UnpicklingError):
    """Raised while unpickling when the data turns out to be a Theano-era model file.

    :class:`~theanets.serialization.RestrictedUnpickler` raises it on the
    first ``theano.*`` global, or ``theanets.*`` name that is not a network
    class of this package, and :func:`~theanets.serialization.restore_network`
    on a network state in the old ``(layers, losses)`` form.
    :func:`~theanets.serialization.loads` catches it and reads the data again
    with :class:`theanets.legacy.LegacyUnpickler`.
    """


class UnsafePickleError(pickle.UnpicklingError):
    """Raised when a pickle refers to a global outside the allow-list.

    :class:`~theanets.serialization.RestrictedUnpickler` (and the Theano-era
    reader) raise it before anything the global names could run. It is a
    :class:`pickle.UnpicklingError`, so code catching that keeps working.
    """


# Both errors are part of the public surface of theanets.serialization, which
# re-exports them; present them (in reprs, tracebacks and the API pages) there.
LegacyPickleError.__module__ = UnsafePickleError.__module__ = "theanets.serialization"


def _latin1_encode(text, encoding="latin1"):
    """Stand-in for ``_codecs.encode`` as used by protocol-2 pickles of bytes."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"refusing to decode bytes with codec {encoding!r}")
    return text.encode("latin1")


def _numpy_core(module):
    """NumPy 2 moved ``numpy.core`` to ``numpy._core``; avoid the deprecated alias."""
    if module.startswith("numpy.core."):
        modern = "numpy._core." + module[len("numpy.core.") :]
        try:
            return importlib.import_module(modern)
        except ImportError:
            pass
    return importlib.import_module(module)


#: Modules renamed in Python 3 that Python 2 pickles refer to.
_PYTHON2_MODULES = {"copy_reg": "copyreg", "__builtin__": "builtins"}


def python3_name(module, name):
    """Translate a Python 2 global (``copy_reg``, ``__builtin__``) to its Python 3 name.

    :meth:`pickle.Unpickler.find_class` does this itself for old protocols;
    unpicklers that override it call this first.

    Parameters
    ----------
    module, name : str
        The global as written in the pickle.

    Returns
    -------
    (str, str)
        The module and name to look up.
    """
    return _PYTHON2_MODULES.get(module, module), name


class AllowListUnpickler(pickle.Unpickler):
    """An unpickler that only builds NumPy arrays and plain containers.

    A Theano global, or any ``theanets.*`` name that :meth:`theanets_global`
    does not accept (by default none), raises :class:`LegacyPickleError`;
    every other global outside the allow-list raises
    :class:`UnsafePickleError` naming it, so a crafted file cannot run code
    while it is being loaded.

    Parameters
    ----------
    file : binary file object
        Where the pickle is read from (anything with ``read`` and
        ``readline`` methods returning bytes).
    fix_imports, encoding, errors, buffers
        As for :class:`pickle.Unpickler`: whether Python 2 module names are
        mapped to their Python 3 names, how 8-bit strings of Python 2
        pickles are decoded, and the out-of-band buffers of protocol 5.
    """

    #: Extra ``(module, name) -> object`` globals, looked up before the allow-list.
    #:
    #: Subclasses use them, for example, for inert stand-ins of the classes
    #: of Theano-era files.
    extra_globals = {}

    def theanets_global(self, module, name):
        """Return the object a ``theanets.*`` global of the pickle names, if it is allowed.

        Subclasses accept the classes their files may hold; this base class
        accepts none.

        Parameters
        ----------
        module, name : str
            The global, with its Python 3 module name.

        Returns
        -------
        object or None
            The object to use, or None to treat the data as a Theano-era file.
        """
        return None

    def find_class(self, module, name):
        """Return an allowed global, or raise :class:`UnsafePickleError`.

        Parameters
        ----------
        module, name : str
            The global as written in the pickle (Python 2 names are
            translated first).

        Returns
        -------
        object
            The class or function the pickle may call: an entry of
            :attr:`extra_globals`, an allowed NumPy or built-in object, or a
            ``theanets`` object accepted by :meth:`theanets_global`.

        Raises
        ------
        LegacyPickleError
            For a Theano global, or a theanets name that is not allowed.
        UnsafePickleError
            For any other global outside the allow-list.
        """
        module, name = python3_name(module, name)
        if (module, name) in self.extra_globals:
            return self.extra_globals[(module, name)]
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in _SAFE_GLOBALS:
            return getattr(_numpy_core(module), name)
        if module == "numpy" and name.endswith("Dtype") or module == "numpy.dtypes":
            return super().find_class(module, name)
        if module == "theano" or module.startswith("theano."):
            raise LegacyPickleError(f"{module}.{name} is a Theano class")
        if module.startswith("theanets.") or module == "theanets":
            obj = self.theanets_global(module, name)
            if obj is not None:
                return obj
            raise LegacyPickleError(f"{module}.{name} is not a network class of this theanets")
        raise UnsafePickleError(
            f"refusing to load {module}.{name}: only NumPy arrays, plain containers and "
            "theanets network classes may appear in a theanets model file"
        )
