"""Point PyTensor's C backend at an OpenBLAS that came from pip.

PyTensor's C implementations of matrix products (``Dot22``, ``Gemm``,
``CGemv``, ``CGer``) call the Fortran BLAS routines ``sgemm_``, ``dgemv_``
and so on. When PyTensor is installed with pip there is usually no system
BLAS for it to link against, so it warns "PyTensor could not link to a BLAS
installation" and runs those products through slower Python fallbacks.

An OpenBLAS is nevertheless already on disk in a pip-only environment:

* the ``scipy-openblas32`` package (``scipy_openblas32/lib``), the build that
  NumPy and SciPy themselves are compiled against, and
* the copy that SciPy's Linux wheels carry in ``site-packages/scipy.libs``.

Both use 32-bit integers (the LP64 interface PyTensor's C code expects), but
they export every routine under a ``scipy_`` prefix (``scipy_sgemm_``), so a
plain ``-lopenblas`` style flag is not enough. :func:`configure_blas` links
the library and adds one preprocessor macro per BLAS routine
(``-Dsgemm_=scipy_sgemm_``), so that PyTensor's generated C code calls the
prefixed symbols. NumPy's own bundled OpenBLAS is not used: it is built with
64-bit integers, which PyTensor's C code does not expect.

The function only writes ``blas__ldflags`` into the ``PYTENSOR_FLAGS``
environment variable, so it must run before :mod:`pytensor` is first
imported. It never raises and changes nothing when

* the user already chose ``blas__ldflags`` (in ``PYTENSOR_FLAGS`` or a
  ``.pytensorrc`` file); setting ``blas__ldflags=`` to an empty value is the
  way to opt out,
* :mod:`pytensor` has already been imported,
* the platform is not Linux (on macOS PyTensor finds Accelerate by itself), or
* no suitable library is found.
"""

import importlib.util
import os
import shlex
import sys
from configparser import RawConfigParser
from pathlib import Path

__all__ = ["configure_blas"]

# Real-valued Fortran BLAS routines, without the "s"/"d" precision letter.
# PyTensor's C ops only call a few of these (gemm, gemv, ger, dot, ...), but
# mapping the whole level 1-3 set keeps a future PyTensor op from meeting an
# unresolved symbol.
_ROUTINES = (
    "axpy copy dot nrm2 asum scal swap rot rotg rotm rotmg "
    "gemv gbmv symv sbmv spmv trmv tbmv tpmv trsv tbsv tpsv ger syr spr syr2 spr2 "
    "gemm symm syrk syr2k trmm trsm"
).split()
_PREFIX = "scipy_"


def _user_chose_blas_flags():
    """Tell whether the user has set ``blas__ldflags`` themselves.

    Returns
    -------
    bool
        True if ``PYTENSOR_FLAGS`` or one of the PyTensor configuration files
        names ``blas__ldflags`` (an empty value counts), or if those settings
        cannot be read.
    """
    try:
        # PyTensor splits PYTENSOR_FLAGS on commas, honouring shell quotes.
        lexer = shlex.shlex(os.environ.get("PYTENSOR_FLAGS", ""), posix=True)
        lexer.whitespace = ","
        lexer.whitespace_split = True
        for item in lexer:
            if item.split("=", 1)[0].strip() == "blas__ldflags":
                return True
        rc_files = os.environ.get("PYTENSORRC", "~/.pytensorrc")
        parser = RawConfigParser()
        parser.read([Path(p).expanduser() for p in rc_files.split(os.pathsep)])
        return parser.has_option("blas", "ldflags")
    except Exception:
        return True  # unreadable settings: better to leave them alone


def _package_dir(name):
    """Locate an installed package without importing it.

    Parameters
    ----------
    name : str
        Top-level package name.

    Returns
    -------
    pathlib.Path or None
        The package's directory, or None if it is not installed.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _find_openblas():
    """Find a pip-installed 32-bit-integer OpenBLAS with ``scipy_`` symbols.

    Returns
    -------
    pathlib.Path or None
        Path of the shared library, or None if none was found.
    """
    candidates = []
    pkg = _package_dir("scipy_openblas32")
    if pkg is not None:
        candidates.append(pkg / "lib" / "libscipy_openblas.so")
    pkg = _package_dir("scipy")
    if pkg is not None:
        # auditwheel names the copy libscipy_openblas-<hash>.so; the 64-bit
        # integer build would be libscipy_openblas64_-<hash>.so instead.
        candidates.extend(sorted(pkg.parent.glob("scipy.libs/libscipy_openblas-*.so")))
    for path in candidates:
        if path.is_file():
            return path
    return None


def _ldflags(library):
    """Build a ``blas__ldflags`` value for a ``scipy_``-prefixed OpenBLAS.

    Parameters
    ----------
    library : pathlib.Path
        Path of the shared library, named ``lib<name>.so``.

    Returns
    -------
    str
        Linker flags plus one ``-D`` macro per BLAS routine. PyTensor turns
        the ``-L`` directory into a run-time search path itself.
    """
    name = library.name[len("lib") : -len(".so")]
    flags = [f"-L{shlex.quote(str(library.parent))}", f"-l{name}"]
    flags += [f"-D{p}{r}_={_PREFIX}{p}{r}_" for p in "sd" for r in _ROUTINES]
    return " ".join(flags)


def configure_blas():
    """Let PyTensor's C backend use a pip-installed OpenBLAS.

    Appends a ``blas__ldflags`` entry to ``os.environ["PYTENSOR_FLAGS"]``
    pointing at the OpenBLAS of the ``scipy-openblas32`` package or, failing
    that, the one bundled in SciPy's wheel. Call it before :mod:`pytensor`
    is imported; see the module docstring for when it does nothing.

    Returns
    -------
    str or None
        The ``blas__ldflags`` value that was set, or None if nothing changed.
    """
    try:
        if not sys.platform.startswith("linux") or "pytensor" in sys.modules:
            return None
        if _user_chose_blas_flags():
            return None
        library = _find_openblas()
        # PyTensor passes the directory on as "-Wl,-rpath,DIR", which a comma
        # would split; quotes and backslashes would upset its flag parsing.
        if library is None or any(c in str(library) for c in ',"\\'):
            return None
        value = _ldflags(library)
        entry = f'blas__ldflags="{value}"'
        current = os.environ.get("PYTENSOR_FLAGS", "").strip().strip(",")
        os.environ["PYTENSOR_FLAGS"] = f"{current},{entry}" if current else entry
        return value
    except Exception:
        return None
