"""Compiled helpers shared by the fused recurrent and convolution operations.

Nothing here is imported by ``import theanets``: :mod:`theanets.layers.fused`
and :mod:`theanets.layers._conv_ops` import it when a model first uses them.

* :func:`gemm` -- a BLAS matrix product callable from Numba-compiled code,
  on row-major blocks (strided column blocks too), with ``beta`` to
  accumulate (see the notes in the source on which library runs it);
* :func:`step_threads` / :func:`restore_threads` -- one BLAS thread for the
  small products of a time loop;
* :func:`sigmoid`, :func:`tanh` -- the logistic function and ``tanh`` of a
  float32 or float64 scalar, written so that loops over them vectorise;
* :func:`output_buffers` -- output arrays of an operation, reused between
  calls once nothing refers to them;
* :data:`jit` -- the Numba decorator of the compiled loops (cached on disk,
  NumPy's error model, fused multiply-adds allowed).
"""

import ctypes
import math
import sys

import numba
import numpy as np

# ``numba_xxgemm`` finds SciPy's ``?gemm`` functions in this module
import scipy.linalg.cython_blas  # noqa: F401
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

#: A time step whose matrix product has fewer multiply-adds than this runs
#: it on one BLAS thread. 64 x 128 x 512 (the LSTM of the benchmarks) is
#: below it; batches of several thousand are above.
SINGLE_THREAD_MACS = 1 << 26

# ----------------------------------------------------------------------
# BLAS from compiled code
#
# Two libraries are called directly from compiled code:
#
# * SciPy's OpenBLAS, through Numba's own ``numba_xxgemm`` (the function
#   behind ``np.dot`` in compiled code, which calls the Fortran ``?gemm`` of
#   ``scipy.linalg.cython_blas``). PyTensor's C backend links the same
#   library (see :mod:`theanets._blas`) and its Numba backend calls it the
#   same way, so the large products share one pool of BLAS threads with the
#   rest of the graph: two pools of spinning threads on the same cores slow
#   each other down.
# * The OpenBLAS that NumPy's wheels bundle (``cblas_?gemm64_``, 64-bit
#   integers), for the small per-step products of the time loops. It runs
#   them about 20% faster than SciPy's copy (a newer release), and on one
#   thread it wakes no pool. Where NumPy has no such library those products
#   go to SciPy's as well.
#
# Strided blocks are multiplied in place and ``beta = 1`` accumulates, so no
# step copies its operands. Compiled code refers to the functions by name
# and is cached on disk, so the names are bound here, in every process,
# before any cached code can be loaded; names whose library is missing are
# bound to Python stand-ins (matrix products in NumPy; a thread count of 0,
# which the loops read as "leave the threads alone"), so that cached code
# compiled elsewhere stays correct.

_ORDER_ROW, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enumerations


def _library_functions(path, names):
    """Look up ctypes functions in a shared library, or return None.

    Parameters
    ----------
    path : str
        A shared object; ``dlsym`` on it also searches the libraries it
        links to.
    names : dict
        Maps keys to candidate lists of symbol names (first found wins).

    Returns
    -------
    dict or None
        Key -> ctypes function, or None if any key has no symbol.
    """
    try:
        library = ctypes.CDLL(path)
    except OSError:  # pragma: no cover - unusual builds
        return None
    found = {}
    for key, candidates in names.items():
        for name in candidates:
            if hasattr(library, name):
                found[key] = getattr(library, name)
                break
        else:
            return None
    return found


def _numpy_blas():
    """NumPy's ILP64 OpenBLAS: ``sgemm``, ``dgemm``, ``get`` and ``set`` (threads), or None."""
    try:
        from numpy._core import _multiarray_umath as module
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import _multiarray_umath as module
    prefixes = ("scipy_", "")
    return _library_functions(
        module.__file__,
        {
            "sgemm": [f"{p}cblas_sgemm64_" for p in prefixes],
            "dgemm": [f"{p}cblas_dgemm64_" for p in prefixes],
            "get": [f"{p}openblas_get_num_threads64_" for p in prefixes],
            "set": [f"{p}openblas_set_num_threads64_" for p in prefixes],
        },
    )


def _scipy_threads():
    """OpenBLAS thread functions behind ``scipy.linalg.cython_blas`` (``get``, ``set``), or None."""
    try:
        import scipy.linalg.cython_blas as cython_blas
    except ImportError:  # pragma: no cover - SciPy is a dependency
        return None
    return _library_functions(
        cython_blas.__file__,
        {
            "get": ["scipy_openblas_get_num_threads", "openblas_get_num_threads"],
            "set": ["scipy_openblas_set_num_threads", "openblas_set_num_threads"],
        },
    )


_INT64 = ctypes.c_int64
_GEMM_ARGS = [ctypes.c_int] * 3 + [_INT64] * 3


def _gemm_prototype(real):
    pointer = ctypes.c_void_p
    return ctypes.CFUNCTYPE(
        None, *_GEMM_ARGS, real, pointer, _INT64, pointer, _INT64, real, pointer, _INT64
    )


def _blocks(address, dtype, rows, cols, lead):
    """A NumPy view of a row-major block at ``address``."""
    size = np.dtype(dtype).itemsize
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols), dtype=dtype)
    buffer = (ctypes.c_char * (((rows - 1) * lead + cols) * size)).from_address(address)
    flat = np.frombuffer(buffer, dtype=dtype)
    return np.lib.stride_tricks.as_strided(flat, (rows, cols), (lead * size, size))


def _numpy_gemm(dtype):
    """A stand-in for ``cblas_?gemm64_`` (row-major only) that multiplies with NumPy.

    Parameters
    ----------
    dtype : str
        ``'float32'`` or ``'float64'``.

    Returns
    -------
    callable
        ``gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
        beta, c, ldc)`` with CBLAS semantics: ``c = alpha op(a) op(b) + beta c``.
    """

    def gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        if order != _ORDER_ROW:
            raise ValueError("only row-major products are supported")
        left = _blocks(a, dtype, k, m, lda).T if trans_a == _TRANS else _blocks(a, dtype, m, k, lda)
        right = (
            _blocks(b, dtype, n, k, ldb).T if trans_b == _TRANS else _blocks(b, dtype, k, n, ldb)
        )
        out = _blocks(c, dtype, m, n, ldc)
        product = alpha * (left @ right)
        out[...] = product if beta == 0 else product + beta * out

    return gemm


def _no_threads():
    return 0


def _ignore(count):
    pass


def _bind_blas():
    """Bind the names compiled code calls; return whether NumPy's OpenBLAS was found."""
    found = _numpy_blas()
    threads = found or _scipy_threads()
    functions = {}
    if found:
        functions["theanets_cblas_sgemm64"] = found["sgemm"]
        functions["theanets_cblas_dgemm64"] = found["dgemm"]
    else:
        functions["theanets_cblas_sgemm64"] = _gemm_prototype(ctypes.c_float)(
            _numpy_gemm("float32")
        )
        functions["theanets_cblas_dgemm64"] = _gemm_prototype(ctypes.c_double)(
            _numpy_gemm("float64")
        )
    if threads:
        functions["theanets_blas_get_threads"] = threads["get"]
        functions["theanets_blas_set_threads"] = threads["set"]
    else:  # pragma: no cover - another BLAS
        functions["theanets_blas_get_threads"] = ctypes.CFUNCTYPE(ctypes.c_int)(_no_threads)
        functions["theanets_blas_set_threads"] = ctypes.CFUNCTYPE(None, ctypes.c_int)(_ignore)
    for name, function in functions.items():
        llvm.add_symbol(name, ctypes.cast(function, ctypes.c_void_p).value)
    _BOUND.update(functions)  # ctypes callbacks must stay alive
    return found is not None


_BOUND = {}
_CBLAS = _bind_blas()


def _cblas_function(name, dtype):
    pointer = types.CPointer(dtype)
    signature = types.void(
        *(types.intc,) * 3,
        *(types.int64,) * 3,
        dtype,
        pointer,
        types.int64,
        pointer,
        types.int64,
        dtype,
        pointer,
        types.int64,
    )
    return types.ExternalFunction(name, signature)


def _xxgemm_function(dtype):
    pointer = types.CPointer(dtype)
    signature = types.intc(
        types.char,  # kind: s or d
        types.char,  # transa
        types.char,  # transb
        types.intp,  # m
        types.intp,  # n
        types.intp,  # k
        pointer,  # alpha
        pointer,  # a
        types.intp,  # lda
        pointer,  # b
        types.intp,  # ldb
        pointer,  # beta
        pointer,  # c
        types.intp,  # ldc
    )
    return types.ExternalFunction("numba_xxgemm", signature)


_GEMMS = {
    types.float32: (_cblas_function("theanets_cblas_sgemm64", types.float32), ord("s")),
    types.float64: (_cblas_function("theanets_cblas_dgemm64", types.float64), ord("d")),
}
_XXGEMM = _xxgemm_function(types.float32), _xxgemm_function(types.float64)
_get_threads = types.ExternalFunction("theanets_blas_get_threads", types.intc())
_set_threads = types.ExternalFunction("theanets_blas_set_threads", types.void(types.intc))


@numba.njit(cache=True)
def _lead(x):  # pragma: no cover - compiled
    """BLAS leading dimension of a row-major matrix whose columns are adjacent."""
    if x.shape[0] > 1:
        return x.strides[0] // x.itemsize
    return max(x.shape[1], 1)  # any value >= the row length will do


def gemm(a, b, c, trans_a, trans_b, beta, small=False):  # pragma: no cover - replaced
    """Compute ``c = op(a) op(b) + beta c`` in place, from compiled code only.

    Parameters
    ----------
    a, b : 2-D arrays
        Row-major blocks whose columns are adjacent (C-contiguous arrays,
        or column slices of them); ``op`` transposes where ``trans_a`` /
        ``trans_b`` say so.
    c : 2-D array
        The result, written in place (same layout rule).
    trans_a, trans_b : bool
        Whether ``op`` transposes ``a``, respectively ``b``.
    beta : float
        0 overwrites ``c``; 1 adds the product to it.
    small : bool, optional
        True for the products of a time loop that :func:`step_threads` has
        put on one thread: they run on NumPy's OpenBLAS. Other products run
        on SciPy's, the library PyTensor's own matrix products use in both
        its C and its Numba backend, so that one pool of BLAS threads serves
        the whole graph.

    Raises
    ------
    NotImplementedError
        When called from Python: Numba compiles calls to it in jitted code.
    """
    raise NotImplementedError("only callable from compiled code")


@overload(gemm)
def _gemm_impl(a, b, c, trans_a, trans_b, beta, small=False):
    if c.dtype not in _GEMMS:
        return None
    cblas, kind = _GEMMS[c.dtype]
    xxgemm = _XXGEMM[0 if c.dtype == types.float32 else 1]
    real = c.dtype

    def impl(a, b, c, trans_a, trans_b, beta, small=False):  # pragma: no cover - compiled
        rows, cols = c.shape
        inner = a.shape[0] if trans_a else a.shape[1]
        if rows == 0 or cols == 0:
            return
        if inner == 0:
            for r in range(rows):
                for q in range(cols):
                    c[r, q] = c[r, q] * beta if beta != 0 else 0
            return
        if _CBLAS and small:
            cblas(
                _ORDER_ROW,
                _TRANS if trans_a else _NO_TRANS,
                _TRANS if trans_b else _NO_TRANS,
                rows,
                cols,
                inner,
                real(1),
                a.ctypes,
                _lead(a),
                b.ctypes,
                _lead(b),
                real(beta),
                c.ctypes,
                _lead(c),
            )
            return
        scalars = np.empty(2, dtype=c.dtype)
        scalars[0] = 1
        scalars[1] = beta
        # row-major c = op(a) op(b) is column-major c^T = op(b)^T op(a)^T
        status = xxgemm(
            np.int8(kind),
            np.int8(ord("t") if trans_b else ord("n")),
            np.int8(ord("t") if trans_a else ord("n")),
            cols,
            rows,
            inner,
            scalars[:1].ctypes,
            b.ctypes,
            _lead(b),
            a.ctypes,
            _lead(a),
            scalars[1:].ctypes,
            c.ctypes,
            _lead(c),
        )
        if status != 0:
            raise RuntimeError("BLAS gemm failed")

    return impl


jit = numba.njit(cache=True, error_model="numpy", fastmath={"contract"})


@jit
def step_threads(macs):  # pragma: no cover - compiled
    """Put the BLAS of small per-step products on one thread.

    Parameters
    ----------
    macs : int
        Multiply-adds of one step's product.

    Returns
    -------
    int
        -1 when the product is not small (call :func:`gemm` with
        ``small=False``; nothing was changed), else the previous thread
        count, to hand to :func:`restore_threads` afterwards.
    """
    if macs >= SINGLE_THREAD_MACS:
        return -1
    count = _get_threads()
    if count > 1:
        _set_threads(1)
    return max(count, 0)


@jit
def restore_threads(count):  # pragma: no cover - compiled
    """Undo :func:`step_threads`, given what it returned.

    Parameters
    ----------
    count : int
        The value :func:`step_threads` returned; BLAS goes back to that many
        threads if it is above one and differs from the current count.
    """
    if count > 1 and _get_threads() != count:
        _set_threads(count)


# ----------------------------------------------------------------------
# elementwise functions
#
# Written so that LLVM vectorises loops over them (no branches, no calls).


@intrinsic
def _pow2(typingctx, k):
    """2**k for a float32 holding an integer in [-126, 127], from its exponent bits."""
    if k != types.float32:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.fptosi(args[0], ir.IntType(32))
        bits = builder.add(bits, ir.Constant(ir.IntType(32), 127))
        bits = builder.shl(bits, ir.Constant(ir.IntType(32), 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(types.float32), codegen


_f32 = np.float32


@jit
def _exp32(x):  # pragma: no cover - compiled
    """exp(x) in float32: x = k log 2 + r with |r| <= log(2) / 2, then 2^k p(r)."""
    x = min(max(x, _f32(-87.33654)), _f32(88.72283))
    k = np.floor(x * _f32(1.4426950408889634) + _f32(0.5))
    r = x - k * _f32(0.693359375)  # log 2 in two parts, so that k log 2 is exact
    r = r - k * _f32(-2.12194440e-4)
    p = _f32(1.9875691500e-4)
    p = p * r + _f32(1.3981999507e-3)
    p = p * r + _f32(8.3334519073e-3)
    p = p * r + _f32(4.1665795894e-2)
    p = p * r + _f32(1.6666665459e-1)
    p = p * r + _f32(5.0000001201e-1)
    p = p * r * r + r + _f32(1)
    return p * _pow2(k)


@jit
def _sigmoid32(x):  # pragma: no cover - compiled
    return _f32(1) / (_f32(1) + _exp32(-x))


@jit
def _tanh32(x):  # pragma: no cover - compiled
    """tanh in float32: an odd polynomial below 0.625, else 1 - 2 / (exp(2|x|) + 1)."""
    a = abs(x)
    z = x * x
    p = _f32(-5.70498872745e-3)
    p = p * z + _f32(2.06390887954e-2)
    p = p * z - _f32(5.37397155531e-2)
    p = p * z + _f32(1.33314422036e-1)
    p = p * z - _f32(3.33332819422e-1)
    small = p * z * x + x
    large = _f32(1) - _f32(2) / (_exp32(a + a) + _f32(1))
    large = large if x >= 0 else -large
    return small if a < _f32(0.625) else large


@jit
def _sigmoid64(x):  # pragma: no cover - compiled
    return 1.0 / (1.0 + math.exp(-x))


def sigmoid(x):  # pragma: no cover - replaced when compiled
    """Return the logistic function of a float32 or float64 scalar.

    Parameters
    ----------
    x : float32 or float64
        The argument; float64 goes through the C library's ``exp``, float32
        through a vectorisable ``exp`` of its own.

    Returns
    -------
    float32 or float64
        :math:`1 / (1 + e^{-x})`, of the dtype of ``x``.

    Raises
    ------
    NotImplementedError
        When called from Python; Numba compiles the calls in jitted code.
    """
    raise NotImplementedError("only callable from compiled code")


def tanh(x):  # pragma: no cover - replaced when compiled
    """Return the hyperbolic tangent of a float32 or float64 scalar.

    Parameters
    ----------
    x : float32 or float64
        The argument: float64 uses the C library's ``tanh``, float32 a
        polynomial below 0.625 and the vectorisable ``exp`` of
        :func:`sigmoid` above.

    Returns
    -------
    float32 or float64
        :math:`\\tanh x`, of the dtype of ``x``.

    Raises
    ------
    NotImplementedError
        If called from Python rather than from jitted code.
    """
    raise NotImplementedError("only callable from compiled code")


@overload(sigmoid)
def _sigmoid_impl(x):
    if x == types.float32:
        return lambda x: _sigmoid32(x)
    if x == types.float64:
        return lambda x: _sigmoid64(x)
    return None


@overload(tanh)
def _tanh_impl(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    if x == types.float64:
        return lambda x: math.tanh(x)
    return None


# ----------------------------------------------------------------------
# output arrays that are used again
#
# A training step allocates the same large outputs at every call. glibc
# gives blocks of several megabytes back to the system when they are freed,
# and taking them again costs a page fault for every 4 KiB touched: for the
# LSTM of the benchmarks, about a third of a training step. The operations
# therefore write their outputs into arrays kept from earlier calls when
# nothing else refers to those any more.


def _count(arrays, index):
    """The reference count of ``arrays[index]``, as this function sees it."""
    return sys.getrefcount(arrays[index])


class _Pool:
    """Arrays that one operation has returned, kept for reuse.

    An array is handed out again only when its reference count is what it
    is for an array that only the pool holds (measured the same way, once),
    i.e. when no result, view or storage cell of any graph still refers to
    it.
    """

    #: Arrays kept per output.
    KEEP = 2

    def __init__(self):
        self._arrays = {}
        probe = [np.empty(0)]
        self._unused = _count(probe, 0)

    def get(self, key, shape, dtype):
        arrays = self._arrays.setdefault(key, [])
        for index in range(len(arrays)):
            # compare before taking a reference of our own
            if _count(arrays, index) == self._unused:
                if arrays[index].shape == shape and arrays[index].dtype == dtype:
                    return arrays[index]
        array = np.empty(shape, dtype=dtype)
        arrays.append(array)
        del arrays[: -self.KEEP]
        return array


def output_buffers(op, node, output_storage, shapes):
    """Return arrays for an operation to write its outputs into.

    Parameters
    ----------
    op : Op
        The operation (it keeps a :class:`_Pool` of its earlier outputs).
    node : Apply
        Gives the outputs' dtypes.
    output_storage : list
        PyTensor's output cells: an array left there by the previous call
        (when the function keeps its intermediate results) is used again, as
        PyTensor's own operations do.
    shapes : list of tuples
        The outputs' shapes.

    Returns
    -------
    list of ndarray
        C-contiguous, writeable, uninitialised arrays.
    """
    pool = op.__dict__.get("_pool")
    if pool is None:
        pool = op.__dict__["_pool"] = _Pool()
    result = []
    for key, (cell, shape, variable) in enumerate(zip(output_storage, shapes, node.outputs)):
        shape = tuple(int(n) for n in shape)
        dtype = np.dtype(variable.dtype)
        current = cell[0]
        if (
            isinstance(current, np.ndarray)
            and current.shape == shape
            and current.dtype == dtype
            and current.flags.c_contiguous
            and current.flags.writeable
        ):
            result.append(current)
        else:
            result.append(pool.get(key, shape, dtype))
    return result


def drop_buffers(state):
    """Return an operation's ``__dict__`` without its pool of arrays (for pickling).

    Parameters
    ----------
    state : dict
        The operation's ``__dict__``.

    Returns
    -------
    dict
        A copy without the ``_pool`` entry.
    """
    return {k: v for k, v in state.items() if k != "_pool"}
