"""Which PyTensor compilation mode theanets compiles its functions with.

Every function theanets compiles (training steps, validation, ``predict``,
``feed_forward``, ``decode``, ``loss_value``) asks :func:`choose_mode` for its
mode at the moment it is compiled, so the choice lives in one place and
follows settings changed while a program runs.

The rules, in order:

1. a mode set with :func:`set_mode`, or else named by the ``THEANETS_MODE``
   environment variable (any PyTensor mode name such as ``'NUMBA'``,
   ``'CVM'``, ``'FAST_COMPILE'`` or ``'JAX'``; ``'auto'`` means no choice);
2. an explicit PyTensor choice: ``pytensor.config.mode`` other than its
   default ``'Mode'`` (e.g. ``PYTENSOR_FLAGS=mode=NUMBA``), or
   ``pytensor.config.linker`` other than ``'auto'``; the mode named by
   ``pytensor.config.mode`` is then used, as PyTensor would;
3. otherwise PyTensor's C backend when a C++ compiler is available, as the
   mode ``'CVM_PARALLEL'`` (PyTensor's ``'CVM'`` with the C modules of a new
   graph compiled in parallel, :mod:`theanets._parallel_c`), and
   PyTensor's own default, Numba (``'NUMBA'``), when not.

The C backend is the automatic choice because it compiles each operation
into a module that is cached on disk and shared by every graph that uses the
same operation, so a new or changed model only compiles what is new, while
Numba compiles each whole graph anew; compiling those modules in parallel
divides the wait for a new model by the number of cores. See the "Backend"
section of the README and the performance guide for the measurements.

In the package this module sits above :mod:`theanets.layers` (it hands JAX
modes to :mod:`theanets.layers.jax_dispatch`, imported only when a JAX mode
is chosen) and below :mod:`theanets.optimizers` and :mod:`theanets.graph`,
which compile with the mode it chooses.
"""

import concurrent.futures
import contextlib
import hashlib
import json
import os
import shutil

import pytensor

from . import _parallel_c, _pch, _size_one_c, util

__all__ = [
    "ENV_VAR",
    "choose_mode",
    "compile_functions",
    "get_mode",
    "mode_key",
    "parameters_on_device",
    "set_mode",
]

#: Environment variable read by :func:`get_mode` when :func:`set_mode` was not called.
ENV_VAR = "THEANETS_MODE"

#: The mode of the automatic choice when a C++ compiler is available:
#: PyTensor's ``'CVM'`` whose linker compiles missing C modules in parallel.
C_MODE = "CVM_PARALLEL"
#: The mode of the automatic choice without a C++ compiler.
NUMBA_MODE = "NUMBA"

_AUTO = "auto"

if C_MODE not in pytensor.compile.mode.predefined_modes:
    pytensor.compile.mode.register_mode(
        C_MODE,
        pytensor.compile.mode.Mode(
            linker=_parallel_c.ParallelCVMLinker(use_cloop=True), optimizer="fast_run"
        )
        .excluding("local_inline_composite_constants")
        .including(_size_one_c.REWRITE),
    )
#: What :func:`set_mode` set: None (follow ``THEANETS_MODE``), ``'auto'`` or a mode.
_setting = None
_rewrites_registered = False
_pch_checked = False


def _check(mode, where):
    """Return ``mode`` checked: ``'auto'``, a mode name, or a Mode instance."""
    if isinstance(mode, pytensor.compile.mode.Mode):
        return mode
    if not isinstance(mode, str):
        raise util.ConfigurationError(
            f"{where}: expected 'auto', a PyTensor mode name or a pytensor Mode, got {mode!r}"
        )
    mode = mode.strip()
    if mode.lower() == _AUTO:
        return _AUTO
    try:
        pytensor.compile.mode.get_mode(mode)
    except (ValueError, KeyError):
        names = [*pytensor.compile.mode.predefined_modes, "FAST_RUN", "Mode", _AUTO]
        hint = util.closest_match(mode.upper(), [n.upper() for n in names])
        for name in names:  # PyTensor accepts any case; suggest the usual spelling
            hint = hint.replace(repr(name.upper()), repr(name))
        raise util.ConfigurationError(
            f"{where}: unknown PyTensor mode {mode!r}.{hint} Known: {', '.join(names)}"
        ) from None
    return mode


def set_mode(mode):
    """Choose the compilation mode of every function theanets compiles from now on.

    Parameters
    ----------
    mode : str, :class:`pytensor.compile.mode.Mode` or None
        A PyTensor mode name (``'CVM'``, ``'NUMBA'``, ``'FAST_COMPILE'``,
        ...) or a mode instance; ``'auto'`` for the automatic choice whatever
        ``THEANETS_MODE`` says; None to follow ``THEANETS_MODE`` again (the
        initial state).

    Returns
    -------
    str, Mode or None
        The previous setting, so that ``set_mode(previous)`` restores it.

    Raises
    ------
    ConfigurationError
        If ``mode`` is not a mode PyTensor knows.

    Notes
    -----
    Functions already compiled are kept; a model compiles its functions
    again, once, the first time it is used under a new mode.

    Examples
    --------
    >>> from theanets import backend
    >>> previous = backend.set_mode('FAST_COMPILE')
    >>> backend.choose_mode()
    'FAST_COMPILE'
    >>> _ = backend.set_mode(previous)
    """
    global _setting
    previous = _setting
    _setting = None if mode is None else _check(mode, "set_mode()")
    return previous


def get_mode():
    """Return the theanets mode setting: from :func:`set_mode`, else ``THEANETS_MODE``.

    Returns
    -------
    str, Mode or None
        None when the choice is left to the other rules of :func:`choose_mode`.

    Raises
    ------
    ConfigurationError
        If ``THEANETS_MODE`` names a mode PyTensor does not know.
    """
    setting = _setting
    if setting is None:
        value = os.environ.get(ENV_VAR, "").strip()
        setting = _check(value, ENV_VAR) if value else None
    return None if setting == _AUTO else setting


def _pytensor_choice():
    """The mode the user chose through PyTensor's configuration, or None."""
    config = pytensor.config
    mode = config.mode
    if not isinstance(mode, str) or mode != "Mode" or config.linker != "auto":
        return mode
    return None


def choose_mode(mode=None):
    """Return the mode to compile a theanets function with, following the module's rules.

    Parameters
    ----------
    mode : str or :class:`pytensor.compile.mode.Mode`, optional
        A mode given for this one function (e.g. the ``mode`` argument of an
        optimizer); it wins over every setting.

    Returns
    -------
    str or :class:`pytensor.compile.mode.Mode`
        A value for the ``mode`` argument of :func:`pytensor.function`:
        ``mode`` if given, else the :func:`set_mode`/``THEANETS_MODE``
        setting, else an explicit ``pytensor.config.mode`` (``'Mode'`` when
        only ``pytensor.config.linker`` was changed: PyTensor then uses that
        linker), else ``'CVM_PARALLEL'`` with a C++ compiler
        (``pytensor.config.cxx``) and ``'NUMBA'`` without.

    Examples
    --------
    >>> import pytensor
    >>> from theanets import backend
    >>> with pytensor.config.change_flags(mode='NUMBA'):
    ...     backend.choose_mode()
    'NUMBA'
    """
    if mode is None:
        mode = get_mode()
    if mode is None:
        mode = _pytensor_choice()
    if mode is None:
        mode = C_MODE if pytensor.config.cxx else NUMBA_MODE
    if _uses_jax(mode):
        # imported here, not at the top, because it imports JAX (optional)
        from .layers import jax_dispatch

        return jax_dispatch.mode(mode)
    _prepare(mode)
    return mode


def compile_functions(requests, mode):
    """Compile several functions in ``mode``, as one batch where that helps.

    With the automatic C mode the C modules that the functions' graphs miss
    are compiled in one parallel batch
    (:func:`theanets._parallel_c.compile_functions`); otherwise each is
    ``pytensor.function(mode=mode, **request)``.

    Parameters
    ----------
    requests : sequence of dict
        Keyword arguments of ``pytensor.function`` for each function
        (``inputs``, ``outputs``, and optionally ``updates``, ``name``,
        ``on_unused_input``).
    mode : str or :class:`pytensor.compile.mode.Mode`
        The mode, as :func:`choose_mode` returned it.

    Returns
    -------
    list of :class:`pytensor.compile.executor.Function`
    """
    return _parallel_c.compile_functions(requests, mode)


def mode_key(mode):
    """A hashable description of ``mode`` for caches of compiled functions.

    Parameters
    ----------
    mode : str or Mode
        As returned by :func:`choose_mode`.

    Returns
    -------
    tuple
        Differs between modes that compile differently; for ``'Mode'`` and
        ``'FAST_RUN'`` it includes ``pytensor.config.linker``.
    """
    if isinstance(mode, str):
        name = mode.upper()
        return (name, pytensor.config.linker if name in ("MODE", "FAST_RUN") else None)
    return ("instance", id(mode))


def parameters_on_device(mode=None):
    """A context in which functions compiled in ``mode`` keep shared values on their device.

    For the JAX backend this is
    :func:`theanets.layers.jax_dispatch.parameters_on_device`: parameters and
    optimizer state stay on JAX's device (a GPU when there is one) between
    the calls made inside it, and are NumPy arrays again when it ends. The
    trainer enters it around each epoch. For every other backend shared
    values always live in host memory and the context does nothing.

    Parameters
    ----------
    mode : str or :class:`pytensor.compile.mode.Mode`, optional
        The mode the functions are compiled in, as for :func:`choose_mode`.

    Returns
    -------
    context manager
    """
    if _uses_jax(choose_mode(mode)):
        from .layers import jax_dispatch

        return jax_dispatch.parameters_on_device()
    return contextlib.nullcontext()


def _uses_jax(mode):
    """Whether ``mode`` is PyTensor's JAX backend (the name ``'JAX'`` or a mode with its linker).

    Such a mode is handed to :func:`theanets.layers.jax_dispatch.mode`,
    which registers JAX versions of theanets' own operations; see the GPU
    guide.
    """
    if isinstance(mode, str):
        return mode.strip().upper() == "JAX"
    linker = getattr(mode, "linker", None)
    return any(cls.__module__.startswith("pytensor.link.jax") for cls in type(linker).__mro__)


def _uses_c(mode):
    """Whether functions compiled in ``mode`` run PyTensor's C implementations."""
    from pytensor.link.c.basic import CLinker, OpWiseCLinker
    from pytensor.link.vm import VMLinker

    linker = pytensor.compile.mode.get_mode(mode).linker
    if isinstance(linker, VMLinker):
        return linker.c_thunks is not False and bool(pytensor.config.cxx)
    return isinstance(linker, (CLinker, OpWiseCLinker))


def _prepare(mode):
    """Make ``mode`` ready before its first compilation (C modes: BLAS, rewrites, compiler)."""
    if not _uses_c(mode):
        return
    _register_rewrites()
    _link_blas()
    _compile_without_debug_info()
    _set_up_compiler(
        background=isinstance(
            pytensor.compile.mode.get_mode(mode).linker, _parallel_c.ParallelCVMLinker
        )
    )


#: The compiler set-up of this process (:func:`_set_up_compiler`), once started.
_compiler_setup = None
_fork_handler_registered = False


def _set_up_compiler(background):
    """Find the compiler's flags, precompiled header and linker, once per process.

    These steps run the compiler (about two seconds on a machine's first
    use, a few file reads later). With ``background`` they run in a thread
    while the caller goes on building and rewriting its graphs, and
    :mod:`theanets._parallel_c` waits for them before it computes the first
    module key (the flags are part of every key); otherwise they are done
    before this returns. A process forked while they run does them again
    itself (:func:`_forget_unfinished_setup`).
    """
    global _compiler_setup, _fork_handler_registered
    if _compiler_setup is None:
        if not _fork_handler_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_unfinished_setup)
            _fork_handler_registered = True
        pool = concurrent.futures.ThreadPoolExecutor(1, "theanets-compiler-setup")
        _compiler_setup = pool.submit(_find_compiler_settings)
        pool.shutdown(wait=False)  # its thread ends with the task
        _parallel_c.run_before_compiling(_compiler_setup.result)
    if not background:
        _compiler_setup.result()


def _forget_unfinished_setup():
    """After a fork: a set-up still running in the parent has no thread in the child.

    The child forgets it (waiting for it would wait forever) and starts its
    own set-up at its next :func:`choose_mode`.
    """
    global _compiler_setup, _pch_checked, _linker_checked
    if _compiler_setup is not None and not _compiler_setup.done():
        _compiler_setup = None
        _pch_checked = _linker_checked = False
        _parallel_c.forget_tasks_before_compiling()


def _find_compiler_settings():
    _reuse_march_flags()
    _use_precompiled_header()
    _use_fast_linker()


def _register_rewrites():
    """Register, once, the graph rewrites that C modes need to run our graphs fast.

    PyTensor 3 keeps ``softmax`` and ``log_softmax`` as ops with an inner
    graph. Numba compiles that inner graph into the function; the C backend
    instead calls a separately compiled inner function at every evaluation
    (compiled, lazily, in ``pytensor.config.mode``, i.e. with Numba unless
    told otherwise), which costs a millisecond or more per call. Replacing
    these ops by their inner graphs (max, exp, sum, division) lets the C
    backend fuse and compile them like any other elementwise work. The
    rewrite is tagged ``cxx_only``, so Numba and Python modes skip it.
    """
    global _rewrites_registered
    if _rewrites_registered:
        return
    from pytensor.compile import optdb
    from pytensor.graph.rewriting.basic import node_rewriter
    from pytensor.tensor.rewriting.ofg import inline_ofg_node
    from pytensor.tensor.special import LogSoftmax, Softmax

    @node_rewriter([Softmax, LogSoftmax])
    def theanets_inline_softmax(fgraph, node):
        return inline_ofg_node(node)

    optdb["specialize"].register(
        "theanets_inline_softmax", theanets_inline_softmax, "fast_run", "cxx_only"
    )
    _size_one_c.register(optdb)
    _rewrites_registered = True


def _link_blas():
    """Point PyTensor's C BLAS calls at SciPy's OpenBLAS if PyTensor was imported first.

    ``import theanets`` normally does this before PyTensor is imported
    (:func:`theanets._blas.configure_blas`). A script that imports PyTensor
    first (say, to set ``floatX``) would otherwise compile matrix products
    without BLAS. The setting is made only while PyTensor has not read
    ``blas__ldflags`` yet and the user has not chosen it.
    """
    from . import _blas

    param = type(pytensor.config).__dict__.get("blas__ldflags")
    if param is None or hasattr(param, "val") or _blas._user_chose_blas_flags():
        return
    library = _blas._find_openblas()
    if library is not None and not any(c in str(library) for c in ',"\\'):
        pytensor.config.blas__ldflags = _blas._ldflags(library)


def _compile_without_debug_info():
    """Compile C modules without debug information unless the user set compiler flags.

    PyTensor always passes ``-g`` to the compiler; the debug information it
    produces serves only debugging of PyTensor's generated C code, and costs
    about a quarter of the compilation time of each module. ``-g0`` in
    ``gcc__cxxflags`` turns it off; the code itself (and every result) is the
    same. Nothing changes when ``gcc__cxxflags`` was given in
    ``PYTENSOR_FLAGS``, a configuration file, or already set to a value.
    """
    param = type(pytensor.config).__dict__.get("gcc__cxxflags")
    if param is not None and param.is_default and pytensor.config.gcc__cxxflags == "":
        _set_our_flags("-g0")


def _use_precompiled_header():
    """Put theanets' precompiled header first on the C modules' include path.

    Done once per process, and only while ``gcc__cxxflags`` is the ``-g0``
    set by :func:`_compile_without_debug_info` (a user who sets compiler
    flags gets exactly those). See :mod:`theanets._pch`: the header halves
    the compiler time of a typical module and changes no result.
    """
    global _pch_checked
    if _pch_checked:
        return
    _pch_checked = True
    if not _flags_are_ours() or pytensor.config.gcc__cxxflags != "-g0":
        return
    folder = _pch.prepare()
    if folder is not None and " " not in folder:
        _set_our_flags(f"-g0 -I{folder}")


#: The ``gcc__cxxflags`` theanets set last (None: none set by theanets).
_our_flags = None
_linker_checked = False


def _set_our_flags(flags):
    global _our_flags
    pytensor.config.gcc__cxxflags = _our_flags = flags


def _flags_are_ours():
    """Whether ``gcc__cxxflags`` still holds what theanets set (the user chose none)."""
    param = type(pytensor.config).__dict__.get("gcc__cxxflags")
    return param is not None and param.is_default and pytensor.config.gcc__cxxflags == _our_flags


def _use_fast_linker():
    """Link C modules with GNU gold when the compiler can, unless the user set compiler flags.

    Linking a module with the default linker (GNU ld) takes about a tenth of
    a second; gold takes a third of that, which is a sixth of a typical
    module's compiler time. The modules are the same code (only the linker
    that wrote the shared library differs). Whether ``-fuse-ld=gold`` links
    a library that loads is tried once per machine and remembered in the
    compile directory (:func:`_machine_value`).
    """
    global _linker_checked
    if _linker_checked:
        return
    _linker_checked = True
    if not _flags_are_ours():
        return
    if _machine_value("linker", _gold_links):
        _set_our_flags(f"{pytensor.config.gcc__cxxflags} -fuse-ld=gold")


def _gold_links():
    """Whether the C++ compiler links, with ``-fuse-ld=gold``, a shared library that loads."""
    import ctypes
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="theanets-gold-") as scratch:
        source = os.path.join(scratch, "probe.cpp")
        library = os.path.join(scratch, "probe.so")
        with open(source, "w") as handle:
            handle.write('extern "C" int theanets_probe(void) { return 42; }\n')
        command = [pytensor.config.cxx, "-shared", "-fPIC", "-fuse-ld=gold", "-o", library, source]
        try:
            done = subprocess.run(command, capture_output=True, timeout=60, check=False)
            return done.returncode == 0 and ctypes.CDLL(library).theanets_probe() == 42
        except (OSError, subprocess.SubprocessError, AttributeError):
            return False


def _machine_key():
    """A short hash of the compiler, its flags and this processor, or None if unknown."""
    try:
        compiler = shutil.which(pytensor.config.cxx) or pytensor.config.cxx
        info = os.stat(compiler)
        with open("/proc/cpuinfo") as handle:
            cpu = [line for line in handle if line.startswith(("model name", "flags"))][:2]
    except OSError:
        return None
    parts = [compiler, info.st_size, info.st_mtime, *cpu, pytensor.config.gcc__cxxflags]
    parts.append(pytensor.__version__)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _reuse_march_flags():
    """Keep the compiler's ``-march`` flags in the compile directory for later processes.

    Before its first C compilation in a process, PyTensor runs the compiler
    twice to find the flags equivalent to ``-march=native`` (about half a
    second, even when every module is already cached). The flags found are
    kept with :func:`_machine_value` and read back by later processes.
    """
    from pytensor.link.c.cmodule import GCC_compiler

    if GCC_compiler.march_flags is not None:
        return

    def detect():
        GCC_compiler.compile_args()  # detects the flags
        return GCC_compiler.march_flags

    flags = _machine_value("march", detect)
    if isinstance(flags, list) and all(isinstance(f, str) for f in flags):
        GCC_compiler.march_flags = flags


def _machine_value(name, compute, directory=None):
    """Return ``compute()``, computed once per machine and kept in the compile directory.

    The value (JSON) is stored next to the cached modules, in a file whose
    name hashes the compiler, its flags and the processor
    (:func:`_machine_key`), and written atomically; later processes read it
    back. A value of None is not stored. Without a key (unknown compiler or
    processor) ``compute()`` runs every time. ``directory`` replaces the
    compile directory.
    """
    key = _machine_key()
    if key is None:
        return compute()
    directory = pytensor.config.compiledir if directory is None else directory
    path = os.path.join(directory, f"theanets-{name}-{key}.json")
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        pass
    value = compute()
    if value is None:
        return None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as handle:
            json.dump(value, handle)
        os.replace(tmp, path)
    except OSError:
        pass
    return value
