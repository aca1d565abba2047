"""PyTensor's C backend with the C modules of a new graph compiled in parallel.

PyTensor's C backend (its ``'CVM'`` mode) compiles one C module per
operation that has no cached module yet, one after the other, while holding
the lock of the compile directory. A model never compiled on the machine
needs a few dozen modules, about a second of compiler time each, so almost
all of its first ``train()`` is spent waiting for the compiler on one core.

:class:`ParallelCVMLinker` is PyTensor's ``VMLinker`` with one step added
before it links a graph: it finds the operations whose modules are not in
the cache, runs the compiler for them in parallel (the compiler is a
separate process, so threads suffice), and enters the finished modules into
PyTensor's cache. The linker then finds every module cached and links the
graph as usual. The modules are the ones PyTensor would have compiled, from
the same source and with the same flags, so every result is the same.

Anything unexpected in that step (a module that fails to compile, an
operation whose key or source cannot be computed) leaves that operation to
PyTensor's own, sequential path, which compiles it again and reports its
errors as PyTensor always does.

:func:`compile_functions` compiles several functions with one such batch
for all their graphs (a training run's training and validation functions).
:func:`run_before_compiling` holds back the first module key until a task
(theanets' compiler set-up, which runs in a thread) is done.

The number of compiler processes is :func:`compile_jobs`: the
``THEANETS_COMPILE_JOBS`` environment variable, or else the number of CPUs
this process may use; ``1`` turns the parallel step off.
"""

import concurrent.futures
import importlib
import os
import shutil
import sys
import threading

import pytensor
from pytensor.compile.compilelock import lock_ctx
from pytensor.compile.mode import get_mode
from pytensor.compile.rebuild import construct_function_ins_and_outs
from pytensor.graph.basic import Constant
from pytensor.graph.fg import FunctionGraph
from pytensor.link.c.basic import CLinker, get_module_cache
from pytensor.link.c.cmodule import (
    dlimport,
    dlimport_workdir,
    get_lib_extension,
    get_module_hash,
    std_include_dirs,
)
from pytensor.link.c.op import COp
from pytensor.link.vm import VMLinker

from . import util

__all__ = [
    "JOBS_VAR",
    "ParallelCVMLinker",
    "compile_functions",
    "compile_jobs",
    "compile_missing_modules",
    "forget_tasks_before_compiling",
    "run_before_compiling",
]

#: Environment variable read by :func:`compile_jobs`.
JOBS_VAR = "THEANETS_COMPILE_JOBS"

#: PyTensor's C loop, which it compiles on first import on a machine.
_LOOP_MODULE = "pytensor.link.c.cvm"
#: PyTensor's helper that runs a C thunk, compiled likewise; every C graph needs it.
_THUNK_MODULE = "pytensor.link.c.cutils"


#: Tasks to run, once, before this module next computes a module key
#: (:func:`run_before_compiling`), and the lock that runs them one at a time.
_before_compiling = []
_before_compiling_lock = threading.Lock()


def run_before_compiling(task):
    """Have ``task()`` called, once, before the next C module key is computed here.

    :func:`compile_missing_modules` (which :meth:`ParallelCVMLinker.make_all`
    calls before linking) runs the waiting tasks, in the order given, before
    anything else; a task that raises is not run again.

    Parameters
    ----------
    task : callable
        Called without arguments, e.g. to wait for compiler settings being
        found in another thread.
    """
    with _before_compiling_lock:
        _before_compiling.append(task)


def forget_tasks_before_compiling():
    """Drop the tasks given to :func:`run_before_compiling` and not run yet (after a fork)."""
    global _before_compiling_lock
    _before_compiling.clear()
    _before_compiling_lock = threading.Lock()  # a lock held by a thread the fork did not copy


def _run_tasks_before_compiling():
    with _before_compiling_lock:
        while _before_compiling:
            _before_compiling.pop(0)()


def compile_jobs():
    """Return how many C modules :class:`ParallelCVMLinker` compiles at once.

    Returns
    -------
    int
        ``THEANETS_COMPILE_JOBS`` if set, else the number of CPUs this
        process may run on.

    Raises
    ------
    ConfigurationError
        If ``THEANETS_COMPILE_JOBS`` is not an integer >= 1.
    """
    value = os.environ.get(JOBS_VAR, "").strip()
    if not value:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):  # pragma: no cover - not Linux
            return os.cpu_count() or 1
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise util.ConfigurationError(f"{JOBS_VAR} must be an integer >= 1. Received: {value!r}")
    return jobs


class _Pending:
    """One module to compile: its cache key, source and compiler arguments."""

    def __init__(self, linker, key, source, module_hash, signature):
        self.signature = signature
        self.key = key
        self.source = source
        self.module_hash = module_hash
        self.name = linker.get_dynamic_module().code_hash
        self.compiler = linker.c_compiler()
        self.arguments = {
            "include_dirs": linker.header_dirs(),
            "lib_dirs": linker.lib_dirs(),
            "libs": linker.libraries(),
            "preargs": linker.compile_args(),
        }
        self.location = None

    def compile(self, directory):
        """Run the compiler into a new folder of ``directory`` (thread-safe: no import)."""
        self.location = dlimport_workdir(directory)
        try:
            self.compiler.compile_str(
                module_name=self.name,
                src_code=self.source,
                location=self.location,
                py_module=False,
                **self.arguments,
            )
        except BaseException:
            self.discard()
            raise

    def load(self):
        """Import the compiled module (in the main thread, as PyTensor does)."""
        with open(os.path.join(self.location, "__init__.py"), "w"):
            pass
        return dlimport(os.path.join(self.location, f"{self.name}.{get_lib_extension()}"))

    def discard(self):
        """Remove the compiled files (when the module is not entered into the cache)."""
        if self.location is not None:
            shutil.rmtree(self.location, ignore_errors=True)


#: Per compile directory, the node signatures (:func:`_signature`) whose modules
#: were found in or entered into the cache by this process: checked once, not
#: again for each new graph that has the same operations.
_known = {}


def _signature(node):
    """What a node's module key depends on: the op, the types, the constants' values."""
    parts = [node.op]
    for var in node.inputs:
        parts.append(var.type)
        if isinstance(var, Constant):
            parts.append(var.signature())
    parts.extend(var.type for var in node.outputs)
    return tuple(parts)


def _pending_module(node, cache, known):
    """The module ``node`` needs if PyTensor's cache lacks it, else None.

    The linker is built as :meth:`pytensor.link.c.op.COp.make_c_thunk`
    builds it for the VM (a graph of the node alone, no recycling), so key
    and source are the ones PyTensor looks up when it links the node.
    Signatures of nodes found cached are added to ``known``.
    """
    if not isinstance(node.op, COp):
        return None
    try:
        signature = _signature(node)
        if signature in known:
            return None
        linker = CLinker().accept(FunctionGraph(node.inputs, node.outputs), no_recycling=[])
        key = linker.cmodule_key()
        if key is None or not key[0]:
            return None
        if cache._get_from_key(key) is not None:
            known.add(signature)
            return None
        for inner in linker.node_order:
            inner.op.prepare_node(inner, None, None, "c")
        source = linker.get_src_code()
        module_hash = get_module_hash(source, key)
        if module_hash in cache.module_hash_to_key_data:
            known.add(signature)
            return None
        return _Pending(linker, key, source, module_hash, signature)
    except Exception:  # no C code, unhashable parts, anything else: PyTensor's path decides
        return None


def _register(cache, item):
    """Enter a compiled module into PyTensor's cache as its ``module_from_key`` would.

    Expects the compile lock to be held. A module that another process
    cached meanwhile is discarded and PyTensor's copy is kept.
    """
    hashes = cache.module_hash_to_key_data
    if cache._get_from_key(item.key) is not None or item.module_hash in hashes:
        item.discard()
        return False
    module = item.load()
    cache.module_from_name[module.__file__] = module
    cache.module_hash_to_key_data[item.module_hash] = cache._add_to_cache(
        module, item.key, item.module_hash
    )
    return True


def _import_what_compiling_imports():
    """Import, in this thread, the modules PyTensor imports when it first compiles.

    ``compile_str`` and PyTensor's helper modules import setuptools (for its
    ``distutils``) on first use; two threads importing it for the first time
    at once can deadlock in setuptools' import hook, so the workers must find
    it imported.
    """
    importlib.import_module("pytensor.link.c.exceptions")  # imports setuptools.errors
    std_include_dirs()  # imports setuptools._distutils.sysconfig


def _import_in_turn(names):
    """Import the modules ``names`` one after the other, in this thread.

    PyTensor compiles each helper module while holding its compile lock, so
    a second helper imported from another thread would only keep a worker
    waiting for that lock; in turn, the other workers go on compiling.
    """
    for name in names:
        importlib.import_module(name)


def compile_missing_modules(nodes, jobs=None, c_loop=False):
    """Compile, in parallel, the C modules of ``nodes`` that PyTensor has not cached.

    Parameters
    ----------
    nodes : iterable of Apply
        The nodes of a graph about to be linked by a C linker.
    jobs : int, optional
        Compiler processes to run at once (default :func:`compile_jobs`).
    c_loop : bool, optional
        The graph will run in PyTensor's C loop: import its module
        (``pytensor.link.c.cvm``, which PyTensor compiles on a machine's first
        use) alongside the other compilations when it is not loaded yet, as
        is always done for ``pytensor.link.c.cutils``, which runs every C
        operation.

    Returns
    -------
    int
        How many modules were compiled and entered into PyTensor's cache;
        0 when none was missing or ``jobs`` is 1 (PyTensor then compiles
        what is missing itself), or when only one was, with nothing to
        compile beside it.
    """
    _run_tasks_before_compiling()
    jobs = compile_jobs() if jobs is None else jobs
    if jobs < 2:
        return 0
    cache = get_module_cache()
    known = _known.setdefault(cache.dirname, set())
    pending, seen = [], set()
    for node in nodes:
        item = _pending_module(node, cache, known)
        if item is not None and item.module_hash not in seen:
            seen.add(item.module_hash)
            pending.append(item)
    helpers = (_THUNK_MODULE, _LOOP_MODULE) if c_loop else (_THUNK_MODULE,)
    helpers = [name for name in helpers if name not in sys.modules]
    if not pending or len(pending) + len(helpers) < 2:
        return 0
    # longest source first (a proxy for compiler time), so that no long module
    # starts last and keeps the others waiting; PyTensor's helpers (about
    # half a second each) first
    pending.sort(key=lambda item: len(item.source), reverse=True)
    _import_what_compiling_imports()
    with concurrent.futures.ThreadPoolExecutor(min(jobs, len(pending) + len(helpers))) as pool:
        if helpers:  # errors surface when PyTensor imports them itself
            pool.submit(_import_in_turn, helpers)
        futures = [pool.submit(item.compile, cache.dirname) for item in pending]
        compiled = []
        for item, future in zip(pending, futures, strict=True):
            try:
                future.result()
                compiled.append(item)
            except Exception:  # left to PyTensor, which reports the compiler's error
                pass
    entered = 0
    with lock_ctx():
        cache.refresh(cleanup=False)
        for item in compiled:
            try:
                entered += _register(cache, item)
                known.add(item.signature)
            except Exception:  # as above: PyTensor's own path compiles it
                item.discard()
    return entered


class ParallelCVMLinker(VMLinker):
    """PyTensor's C virtual-machine linker, compiling missing C modules in parallel first.

    Takes the arguments of :class:`pytensor.link.vm.VMLinker`, with the same
    meaning; only linking changes (see the module's description).

    Parameters
    ----------
    allow_gc : bool, optional
        Free intermediate results during a call (default
        ``pytensor.config.allow_gc``).
    use_cloop : bool, optional
        Run the operations with PyTensor's C loop (True in the mode theanets
        chooses, as in PyTensor's ``'CVM'``).
    callback, callback_input : callable, optional
        Called after each operation, as in ``VMLinker``.
    lazy : bool, optional
        Allow lazy evaluation (``ifelse``); default: when the graph needs it.
    schedule : callable, optional
        Orders the graph's nodes (default: topological order).
    c_thunks : bool, optional
        False runs Python implementations only (nothing is compiled then).
    allow_partial_eval : bool, optional
        As in ``VMLinker``.
    """

    def make_all(self, *args, **kwargs):
        """Compile the graph's missing C modules in parallel, then link as ``VMLinker`` does.

        Parameters
        ----------
        *args, **kwargs
            As for :meth:`pytensor.link.vm.VMLinker.make_all`.

        Returns
        -------
        tuple
            What :meth:`pytensor.link.vm.VMLinker.make_all` returns.
        """
        if self.c_thunks is not False:
            compile_missing_modules(self.schedule(self.fgraph), c_loop=self.use_cloop)
        return super().make_all(*args, **kwargs)


def compile_functions(requests, mode):
    """Compile several PyTensor functions, with the missing C modules of all of them in one batch.

    In a mode whose linker is a :class:`ParallelCVMLinker`, every function's
    graph is rewritten first; the modules none of the graphs finds cached
    are then compiled together (:func:`compile_missing_modules`), so that
    the few modules only a second function needs do not wait, one by one,
    for the first function to be linked. Then each function is linked as
    ``pytensor.function`` links it. In any other mode, and while PyTensor is
    profiling, this is ``pytensor.function`` called for each request.

    Parameters
    ----------
    requests : sequence of dict
        Keyword arguments of ``pytensor.function`` for each function:
        ``inputs``, ``outputs`` and optionally ``updates``, ``name`` and
        ``on_unused_input``.
    mode : str or Mode
        The mode of every function.

    Returns
    -------
    list of :class:`pytensor.compile.executor.Function`
        One compiled function per request, in order.
    """
    instance = get_mode(mode)
    linker = getattr(instance, "linker", None)
    config = pytensor.config
    if (
        not isinstance(linker, ParallelCVMLinker)
        or linker.c_thunks is False
        or len(requests) < 2
        or config.profile
        or config.print_global_stats
    ):
        return [pytensor.function(mode=mode, **request) for request in requests]
    makers = []
    for request in requests:
        inputs, outputs = construct_function_ins_and_outs(
            request["inputs"], request["outputs"], updates=request.get("updates")
        )
        makers.append(
            instance.function_maker(
                inputs,
                outputs,
                instance,
                on_unused_input=request.get("on_unused_input"),
                name=request.get("name"),
            )
        )
    nodes = [node for maker in makers for node in maker.linker.schedule(maker.fgraph)]
    compile_missing_modules(nodes, c_loop=linker.use_cloop)
    return [maker.create() for maker in makers]
