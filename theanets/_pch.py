"""A precompiled header for the C modules that PyTensor's C backend compiles.

Every C module PyTensor generates starts with the same six headers
(Python's, PyTensor's helper, ``math.h`` and three of NumPy's), and most
then include ``<vector>`` and ``<algorithm>``. Parsing these headers is
about half of the compiler's time for a typical module. :func:`prepare`
compiles them once per machine into a GCC precompiled header,
``Python.h.gch``, kept in a folder of the compile directory whose name
hashes everything the header depends on (compiler, flags, processor, Python,
NumPy and PyTensor versions and header files). Putting that folder first on
the include path (``-I``) makes GCC read the precompiled state instead of
parsing the headers again.

The folder also holds ``Python.h``, a plain header that includes the same
files (:data:`HEADERS`), so a module is compiled from the same declarations
whether GCC reads the precompiled state or the headers themselves. Modules
that do not include the two C++ standard headers get their declarations
too; these live in namespace ``std``, which such modules do not use, so no
name they use changes meaning. GCC checks a precompiled header before it
uses it and silently parses the plain header instead when the header does
not fit a module's flags, so the cost of a mismatch is only the time saved.
The header is built into a new folder, checked (GCC must report using it
for a typical module) and only then renamed into place, so no process ever
sees a partial one. When it cannot be built or GCC will not use it, an empty
``theanets-pch-<hash>.unusable`` file says so, and later processes compile
without it instead of trying again (delete the file to retry).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
import pytensor
from pytensor.compile.compilelock import lock_ctx

__all__ = ["HEADERS", "prepare"]

#: The headers every PyTensor C module includes first, in this order, and
#: the two C++ standard headers most of them include next.
HEADERS = (
    "Python.h",
    "pytensor_mod_helper.h",
    "math.h",
    "numpy/arrayobject.h",
    "numpy/arrayscalars.h",
    "numpy/npy_math.h",
    "vector",
    "algorithm",
)

#: Headers that come with the compiler; its identity in the key covers them.
_SYSTEM = ("math.h", "vector", "algorithm")

_GUARD = "THEANETS_PRECOMPILED_PYTHON_H"


def _typical_module():
    """Flags and include folders of a typical PyTensor C module (an elementwise op).

    The folders are the module's own, then NumPy's, Python's and PyTensor's,
    as :func:`pytensor.link.c.cmodule.std_include_dirs` adds them; they are
    found here without that function, which imports setuptools (a tenth of
    a second of every process, even when nothing is compiled).
    """
    import pytensor.link.c.cmodule as cmodule
    import pytensor.tensor as pt
    from pytensor.graph.fg import FunctionGraph
    from pytensor.link.c.basic import CLinker

    x = pt.vector("x", dtype="float64")
    linker = CLinker().accept(FunctionGraph([x], [pt.exp(x)]))
    paths = sysconfig.get_paths()
    python = [paths["include"]] + (
        [paths["platinclude"]] if paths["platinclude"] != paths["include"] else []
    )
    standard = [
        np.get_include(),
        *python,
        os.path.join(os.path.dirname(cmodule.__file__), "c_code"),
    ]
    return linker.compile_args(), [d for d in linker.header_dirs() + standard if d]


def _find(header, folders):
    for folder in folders:
        path = os.path.join(folder, header)
        if os.path.isfile(path):
            return path
    return None


def _key(compiler, flags, folders, paths):
    parts = [compiler, sys.version, np.__version__, pytensor.__version__, flags, folders]
    for path in [shutil.which(compiler) or compiler, *paths]:
        try:
            info = os.stat(path)
            parts.append((path, info.st_size, info.st_mtime))
        except OSError:
            parts.append((path, None))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _wrapper(python_h):
    lines = [f"#ifndef {_GUARD}", f"#define {_GUARD}", f'#include "{python_h}"']
    lines += [f"#include <{h}>" for h in HEADERS[1:]]
    return "\n".join([*lines, "#endif", ""])


def _accepted(base, folder):
    """Whether GCC uses the header in ``folder`` for a module compiled with ``base`` flags."""
    source = os.path.join(folder, "check.cpp")
    with open(source, "w") as handle:
        handle.write(
            '#include <Python.h>\n#include "pytensor_mod_helper.h"\nint main() { return 0; }\n'
        )
    check = [*base[:1], f"-I{folder}", *base[1:], "-fsyntax-only", "-H", source]
    done = subprocess.run(check, capture_output=True, text=True, check=False)
    os.unlink(source)
    used = os.path.join(folder, "Python.h.gch")
    return done.returncode == 0 and any(
        line.startswith("!") and line.split(None, 1)[-1] == used
        for line in done.stderr.splitlines()
    )


def prepare(compiledir=None):
    """Return the folder of the precompiled header for this machine, building it if needed.

    Parameters
    ----------
    compiledir : str, optional
        The compile directory (default ``pytensor.config.compiledir``).

    Returns
    -------
    str or None
        The folder to put first on the include path, or None when no header
        could be built (no GCC, a header not found, the compiler failed);
        the modules are then compiled as PyTensor always does.
    """
    compiledir = compiledir or pytensor.config.compiledir
    compiler = pytensor.config.cxx
    if not compiler or "g++" not in os.path.basename(compiler):
        return None
    try:
        flags, folders = _typical_module()
    except Exception:  # PyTensor could not describe a module: leave the flags alone
        return None
    python_h = _find("Python.h", folders)
    paths = [python_h, *(_find(h, folders) for h in HEADERS[1:] if h not in _SYSTEM)]
    if None in paths:
        return None
    folder = os.path.join(compiledir, f"theanets-pch-{_key(compiler, flags, folders, paths)}")
    # a header that could not be built here is not tried again by every process
    unusable = f"{folder}.unusable"
    if os.path.isfile(os.path.join(folder, "Python.h.gch")):
        return folder
    if os.path.exists(unusable):
        return None
    os.makedirs(compiledir, exist_ok=True)
    with lock_ctx(compiledir):  # one process builds it; the others wait and reuse it
        if os.path.isfile(os.path.join(folder, "Python.h.gch")):
            return folder
        if os.path.exists(unusable):
            return None
        work = tempfile.mkdtemp(prefix="theanets-pch-build-", dir=compiledir)
        try:
            header = os.path.join(work, "Python.h")
            with open(header, "w") as handle:
                handle.write(_wrapper(python_h))
            base = [compiler, "-g", *flags, *(f"-I{d}" for d in folders), "-fvisibility=hidden"]
            build = [*base, "-x", "c++-header", header, "-o", f"{header}.gch"]
            built = subprocess.run(build, capture_output=True, check=False).returncode == 0
            if not (built and _accepted(base, work)):
                with open(unusable, "w"):
                    pass
                return None
            os.replace(work, folder)
            work = None
        except OSError:
            return None
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
    return folder
