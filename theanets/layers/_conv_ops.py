"""Compiled patch and pooling operations behind the convolution layers.

:func:`theanets.layers.convolution.convolve` and
:func:`theanets.layers.convolution.pool` use these operations by default
(``impl='fused'``); the module is imported then, not by ``import theanets``.

* :class:`Im2col` cuts the (implicitly zero-padded) input into the matrix of
  patches, one row per output position, that one matrix product with the
  filter bank turns into the convolution; :class:`Col2im` is its adjoint,
  which adds patch values back onto the positions they came from. Each is
  the other's gradient, so derivatives of any order are exact.
* :class:`Pool` reduces windows (max, sum or average); :class:`PoolGrad`
  sends a window's gradient to its maximal elements (all of them when
  several are equal) or spreads it over the window; :class:`MaxGather`
  collects from the maximal elements, the adjoint of :class:`PoolGrad` for
  max pooling.

Each operation is one compiled Numba loop over the data: PyTensor's Numba
backend compiles it into the graph's own function, and the C backend and
the Python linker call it from :meth:`perform`. Compared with building the
patches from ``prod(filter_size)`` strided slices joined together (the
``'slices'`` implementation), this replaces dozens of small operations --
each of which the C backend compiles into a module and Numba into a
function on first use -- with one, and reads each input once.

Both layouts are handled with two spatial axes: one-dimensional data
``(batch, time, channels)`` is viewed as ``(batch, 1, time, channels)``.
PyTensor's JAX backend has no implementation of these operations, so a
graph rewrite that only JAX modes run replaces them by the slice-based
expressions of :mod:`theanets.layers._conv_slices` (see :func:`_reference`).
The Numba implementations and that rewrite are registered when the first
operation is made (see :mod:`theanets.layers._dispatch`).
"""

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply

from . import _conv_slices
from ._compiled import drop_buffers, jit, output_buffers
from ._dispatch import BackendOp, numba_dispatch, once

__all__ = ["Im2col", "Col2im", "FilterBank", "FilterBankGrad", "Pool", "PoolGrad", "MaxGather"]

#: Pooling modes, by the codes the compiled loops use.
_POOL_CODES = {"max": 0, "sum": 1, "average": 2}

#: The code of :func:`_pool_grad` for :class:`MaxGather`'s map.
_GATHER = 3

#: Bumped whenever the compiled code changes (PyTensor's Numba cache key).
_NUMBA_VERSION = 5


def _out_length(n, k, s, before, after):
    """Number of windows of length ``k``, ``s`` apart, in ``n`` values with padding."""
    if n is None:
        return None
    return (n + before + after - k) // s + 1


# ----------------------------------------------------------------------
# compiled loops (two spatial axes, channels last; results written into
# the last argument)


# Indices into the flattened arrays are unsigned: Numba then need not check
# for negative (wrap-around) indices, and LLVM vectorises the inner loops
# (several times faster than signed or per-row indexing).
_U = np.uintp


@jit
def _patch_map(image, rows, k1, k2, s1, s2, p1, p2, m1, m2, adjoint):  # pragma: no cover
    """Copy the patches of ``image`` into ``rows``, or (``adjoint``) add them back.

    Row ``(b, i, j)`` of ``rows`` holds ``image[b, s1 i + u - p1, s2 j + v
    - p2, c]`` at column ``(u k2 + v) C + c``, and 0 where that position lies
    in the padding. The adjoint adds each row value onto its position
    (padding positions are dropped), into an ``image`` it first zeroes.
    """
    batch, n1, n2, channels = image.shape
    run = k2 * channels
    img, col = image.reshape(image.size), rows.reshape(rows.size)
    zero = image.dtype.type(0)
    if adjoint:
        img[:] = 0
    at = 0
    for b in range(batch):
        for i in range(m1):
            for j in range(m2):
                first = j * s2 - p2
                inside = first >= 0 and first + k2 <= n2
                for u in range(k1):
                    r = i * s1 + u - p1
                    c0 = _U(at)
                    if r < 0 or r >= n1:
                        if not adjoint:
                            for q in range(run):
                                col[c0 + _U(q)] = zero
                    elif inside:
                        i0 = _U(((b * n1 + r) * n2 + first) * channels)
                        if adjoint:
                            for q in range(run):
                                img[i0 + _U(q)] += col[c0 + _U(q)]
                        else:
                            for q in range(run):
                                col[c0 + _U(q)] = img[i0 + _U(q)]
                    else:
                        for v in range(k2):
                            pos = first + v
                            here = c0 + _U(v * channels)
                            if 0 <= pos < n2:
                                i0 = _U(((b * n1 + r) * n2 + pos) * channels)
                                if adjoint:
                                    for q in range(channels):
                                        img[i0 + _U(q)] += col[here + _U(q)]
                                else:
                                    for q in range(channels):
                                        col[here + _U(q)] = img[i0 + _U(q)]
                            elif not adjoint:
                                for q in range(channels):
                                    col[here + _U(q)] = zero
                    at += run


@jit
def _im2col(x, k1, k2, s1, s2, p1, p2, m1, m2, rows):  # pragma: no cover - compiled
    """Rows of patches of ``x``, zero-padded by ``p1``/``p2`` before each axis."""
    _patch_map(x, rows, k1, k2, s1, s2, p1, p2, m1, m2, False)


@jit
def _col2im(rows, k1, k2, s1, s2, p1, p2, m1, m2, out):  # pragma: no cover - compiled
    """The adjoint of :func:`_im2col`: patch values added back onto their positions."""
    _patch_map(out, rows, k1, k2, s1, s2, p1, p2, m1, m2, True)


@jit
def _pool(x, k1, k2, s1, s2, code, out):  # pragma: no cover - compiled
    """Reduce the windows of ``x`` (max, sum or average for ``code`` 0, 1, 2)."""
    batch, n1, n2, channels = x.shape
    m1, m2 = out.shape[1], out.shape[2]
    src, dst = x.reshape(x.size), out.reshape(out.size)
    size = x.dtype.type(k1 * k2)
    at = 0
    for b in range(batch):
        for i in range(m1):
            for j in range(m2):
                d0 = _U(at)
                s0 = _U(((b * n1 + i * s1) * n2 + j * s2) * channels)
                for c in range(channels):
                    dst[d0 + _U(c)] = src[s0 + _U(c)]
                for u in range(k1):
                    for v in range(k2):
                        if u == 0 and v == 0:
                            continue
                        s0 = _U(((b * n1 + i * s1 + u) * n2 + j * s2 + v) * channels)
                        if code == 0:
                            for c in range(channels):
                                dst[d0 + _U(c)] = max(dst[d0 + _U(c)], src[s0 + _U(c)])
                        else:
                            for c in range(channels):
                                dst[d0 + _U(c)] += src[s0 + _U(c)]
                if code == 2:
                    for c in range(channels):
                        dst[d0 + _U(c)] = dst[d0 + _U(c)] / size
                at += channels


@jit
def _pool_grad(x, out, grad, k1, k2, s1, s2, code, dx):  # pragma: no cover - compiled
    """Gradient ``dx`` of :func:`_pool` with respect to ``x``, given ``grad`` of ``out``.

    With ``code`` :data:`_GATHER` it computes the adjoint map instead: for
    each window of ``x``, the sum of ``grad`` (then shaped like ``x``) where
    ``x`` equals the window's maximum, into ``dx`` shaped like ``out``.
    """
    batch, n1, n2, channels = x.shape
    m1, m2 = out.shape[1], out.shape[2]
    xs, top = x.reshape(x.size), out.reshape(out.size)
    g, dst = grad.reshape(grad.size), dx.reshape(dx.size)
    size = grad.dtype.type(k1 * k2)
    zero = grad.dtype.type(0)
    dst[:] = 0
    at = 0
    for b in range(batch):
        for i in range(m1):
            for j in range(m2):
                o0 = _U(at)
                for u in range(k1):
                    for v in range(k2):
                        d0 = _U(((b * n1 + i * s1 + u) * n2 + j * s2 + v) * channels)
                        if code == 0:
                            for c in range(channels):
                                hit = xs[d0 + _U(c)] == top[o0 + _U(c)]
                                dst[d0 + _U(c)] += g[o0 + _U(c)] if hit else zero
                        elif code == 1:
                            for c in range(channels):
                                dst[d0 + _U(c)] += g[o0 + _U(c)]
                        elif code == 2:
                            for c in range(channels):
                                dst[d0 + _U(c)] += g[o0 + _U(c)] / size
                        else:
                            for c in range(channels):
                                hit = xs[d0 + _U(c)] == top[o0 + _U(c)]
                                dst[o0 + _U(c)] += g[d0 + _U(c)] if hit else zero
                at += channels


# ----------------------------------------------------------------------
# operations


@once
def _register_backends():
    """Register the Numba implementations and the JAX expansion of the operations."""
    _register_jax_expansion()
    numba = numba_dispatch()
    if numba is not None:
        _register_numba(*numba)


class _ConvOp(BackendOp):
    """Base of the operations here: the backends learn of them when the first one is made."""

    register_backends = staticmethod(_register_backends)


def _float_tensors(*inputs):
    inputs = [pt.as_tensor_variable(i) for i in inputs]
    dtype = inputs[0].dtype
    if not dtype.startswith("float"):
        dtype = "float64"
    return [i if i.dtype == dtype else pt.cast(i, dtype) for i in inputs]


def _check_ndim(op, x, ndim=4):
    if x.ndim != ndim:
        raise TypeError(f"{type(op).__name__} needs a {ndim}-D input, got {x.ndim}-D")


class _CompiledOp(_ConvOp):
    """Runs a compiled loop from :meth:`perform`, into a reused output array.

    Subclasses name the loop in ``_kernel``, the inputs it reads in
    :meth:`_arguments` and its static arguments in :meth:`_static`.
    """

    _kernel = None

    def _arguments(self, arrays):
        return arrays

    def _static(self, shapes):
        return ()

    def perform(self, node, inputs, output_storage):
        """Run the compiled loop on the input arrays."""
        arrays = [np.ascontiguousarray(x) for x in inputs]
        shapes = [a.shape for a in arrays]
        (out,) = output_buffers(self, node, output_storage, self.infer_shape(None, node, shapes))
        type(self)._kernel(*self._arguments(arrays), *self._static(shapes), out)
        output_storage[0][0] = out

    def __getstate__(self):
        return drop_buffers(self.__dict__)


class _PatchOp(_CompiledOp):
    __props__ = ("window", "stride", "padding")

    def __init__(self, window, stride, padding):
        self.window = tuple(int(k) for k in window)
        self.stride = tuple(int(s) for s in stride)
        self.padding = tuple((int(a), int(b)) for a, b in padding)
        super().__init__()

    def out_lengths(self, shape):
        """Number of output positions along both spatial axes for an input ``shape``.

        Parameters
        ----------
        shape : sequence
            Shape ``(batch, n_1, n_2, C)`` of the input; the spatial lengths
            may be None (unknown) or symbolic.

        Returns
        -------
        (m_1, m_2)
            The number of (padded) patch positions, ``stride`` apart, along
            each spatial axis; None where the input length is None.
        """
        return tuple(
            _out_length(shape[1 + i], k, s, *pad)
            for i, (k, s, pad) in enumerate(zip(self.window, self.stride, self.padding))
        )

    def _loop_arguments(self, shape):
        (k1, k2), (s1, s2), ((p1, _), (p2, _)) = self.window, self.stride, self.padding
        return (k1, k2, s1, s2, p1, p2, *self.out_lengths(shape))


class Im2col(_PatchOp):
    """The matrix of patches of a channels-last 4-D input, zero-padded.

    For ``x`` of shape ``(batch, n_1, n_2, C)`` the output has one row per
    output position ``(b, i, j)``, ``batch * m_1 * m_2`` rows in row-major
    order, and ``k_1 k_2 C`` columns: column ``(u k_2 + v) C + c`` holds
    :math:`\\tilde x_{b,\\, s_1 i + u,\\, s_2 j + v,\\, c}` where
    :math:`\\tilde x` is ``x`` with ``padding`` zeros around each spatial
    axis and :math:`m = \\lfloor (n + \\text{before} + \\text{after} - k) / s
    \\rfloor + 1`.

    Parameters
    ----------
    window : (int, int)
        ``(k_1, k_2)``.
    stride : (int, int)
        ``(s_1, s_2)``.
    padding : ((int, int), (int, int))
        Zeros ``(before, after)`` for each spatial axis.
    """

    _kernel = _im2col

    def _static(self, shapes):
        return self._loop_arguments(shapes[0])

    def make_node(self, x):
        """Build the node for a 4-D input ``x``."""
        (x,) = _float_tensors(x)
        _check_ndim(self, x)
        m1, m2 = self.out_lengths(x.type.shape)
        batch, channels = x.type.shape[0], x.type.shape[3]
        rows = batch * m1 * m2 if None not in (batch, m1, m2) else None
        width = None if channels is None else self.window[0] * self.window[1] * channels
        return Apply(self, [x], [pt.tensor(dtype=x.dtype, shape=(rows, width))])

    def infer_shape(self, fgraph, node, shapes):
        """Rows ``batch * m_1 * m_2`` and columns ``k_1 k_2 C``."""
        (shape,) = shapes
        m1, m2 = self.out_lengths(shape)
        return [(shape[0] * m1 * m2, self.window[0] * self.window[1] * shape[3])]

    def pullback(self, inputs, outputs, cotangents):
        """The gradient is :class:`Col2im` of the rows' gradient."""
        (x,), (g,) = inputs, cotangents
        if isinstance(g.type, DisconnectedType):
            return [pt.zeros_like(x)]
        return [Col2im(self.window, self.stride, self.padding)(g, x)]


class Col2im(_PatchOp):
    """The adjoint of :class:`Im2col`: patch rows added back onto an input-shaped array.

    Inputs: ``rows`` (as :class:`Im2col` makes them) and ``like``, an array
    of the input's shape whose values are not used.

    Parameters
    ----------
    window, stride, padding
        As for the :class:`Im2col` whose rows are added back.
    """

    _kernel = _col2im

    def _arguments(self, arrays):
        return arrays[:1]  # the values of ``like`` are not used

    def _static(self, shapes):
        return self._loop_arguments(shapes[1])

    def make_node(self, rows, like):
        """Build the node; the output has the type of ``like`` (with the rows' dtype)."""
        rows, like = _float_tensors(rows, like)
        _check_ndim(self, rows, 2)
        _check_ndim(self, like)
        return Apply(self, [rows, like], [like.type()])

    def infer_shape(self, fgraph, node, shapes):
        """The shape of ``like``."""
        return [shapes[1]]

    def connection_pattern(self, node):
        """Only ``rows`` flows into the output; ``like`` gives its shape."""
        return [[True], [False]]

    def pullback(self, inputs, outputs, cotangents):
        """The gradient of the rows is :class:`Im2col` of the output's gradient."""
        rows, like = inputs
        (g,) = cotangents
        if isinstance(g.type, DisconnectedType):
            grad = pt.zeros_like(rows)
        else:
            grad = Im2col(self.window, self.stride, self.padding)(g)
        return [grad, disconnected_type()]


class _PoolOp(_CompiledOp):
    __props__ = ("window", "stride", "mode")

    def __init__(self, window, stride, mode):
        if mode not in _POOL_CODES:
            raise ValueError(f"unknown pooling mode {mode!r}; expected one of {tuple(_POOL_CODES)}")
        self.window = tuple(int(k) for k in window)
        self.stride = tuple(int(s) for s in stride)
        self.mode = mode
        super().__init__()

    def out_lengths(self, shape):
        """Number of whole windows along both spatial axes for an input ``shape``.

        Parameters
        ----------
        shape : sequence
            The input's ``(batch, n_1, n_2, C)``, with None (unknown) or
            symbolic spatial lengths allowed.

        Returns
        -------
        tuple
            ``(n - k) // s + 1`` for each spatial axis: the windows, ``s``
            apart, that fit entirely inside the input (None for None).
        """
        return tuple(
            _out_length(shape[1 + i], k, s, 0, 0)
            for i, (k, s) in enumerate(zip(self.window, self.stride))
        )

    def _static(self, shapes):
        return (*self.window, *self.stride, _POOL_CODES[self.mode])


class Pool(_PoolOp):
    """Reduce the windows of a channels-last 4-D input that lie entirely inside it.

    ``out[b, i, j, c]`` reduces ``x[b, s_1 i + u, s_2 j + v, c]`` over
    ``u < k_1``, ``v < k_2`` by max, sum or mean.

    Parameters
    ----------
    window, stride : (int, int)
    mode : {'max', 'sum', 'average'}
    """

    _kernel = _pool

    def make_node(self, x):
        """Build the node for a 4-D input ``x``."""
        (x,) = _float_tensors(x)
        _check_ndim(self, x)
        m1, m2 = self.out_lengths(x.type.shape)
        shape = (x.type.shape[0], m1, m2, x.type.shape[3])
        return Apply(self, [x], [pt.tensor(dtype=x.dtype, shape=shape)])

    def infer_shape(self, fgraph, node, shapes):
        """``(batch, m_1, m_2, C)``."""
        (shape,) = shapes
        return [(shape[0], *self.out_lengths(shape), shape[3])]

    def pullback(self, inputs, outputs, cotangents):
        """:class:`PoolGrad` of the output's gradient."""
        (x,), (out,), (g,) = inputs, outputs, cotangents
        if isinstance(g.type, DisconnectedType):
            return [pt.zeros_like(x)]
        return [PoolGrad(self.window, self.stride, self.mode)(x, out, g)]


class _WindowMap(_PoolOp):
    """Shared code of :class:`PoolGrad` and :class:`MaxGather`.

    Both are linear maps of their third input, between arrays of the shapes
    of ``x`` and of the pooled ``out``; ``x`` and ``out`` only select the
    maximal elements. Subclasses say which of the two the output is shaped
    like (``_LIKE``) and give the adjoint map (:meth:`_adjoint`).
    """

    #: The input the output takes its type and shape from: 0 for ``x``, 1 for ``out``.
    _LIKE = 0

    def make_node(self, x, out, values):
        """Build the node for 4-D ``x``, ``out`` and ``values``."""
        inputs = _float_tensors(x, out, values)
        for value in inputs:
            _check_ndim(self, value)
        return Apply(self, inputs, [inputs[self._LIKE].type()])

    def infer_shape(self, fgraph, node, shapes):
        """The shape of ``x`` or of ``out``."""
        return [shapes[self._LIKE]]

    def connection_pattern(self, node):
        """Values flow from the third input only."""
        return [[False], [False], [True]]

    def pullback(self, inputs, outputs, cotangents):
        """The adjoint map applied to the output's gradient."""
        x, out, values = inputs
        (e,) = cotangents
        if isinstance(e.type, DisconnectedType):
            grad = pt.zeros_like(values)
        else:
            grad = self._adjoint(x, out, e)
        return [disconnected_type(), disconnected_type(), grad]

    def _adjoint(self, x, out, e):
        raise NotImplementedError


class PoolGrad(_WindowMap):
    """Gradient of :class:`Pool` with respect to its input.

    Inputs ``x``, the pooled ``out`` and the gradient ``g`` of ``out``. For
    max pooling each window's gradient goes to every element equal to the
    window's maximum; for sum and average it goes to every element (divided
    by the window size for average). It is linear in ``g``; its own
    gradient (for second derivatives) is :class:`MaxGather` or a sum
    pooling, and does not depend on ``x`` and ``out`` otherwise (they only
    select the maximal elements).

    Parameters
    ----------
    window, stride, mode
        As for the :class:`Pool` whose gradient this is.
    """

    _kernel = _pool_grad
    _LIKE = 0

    def _adjoint(self, x, out, e):
        if self.mode == "max":
            return MaxGather(self.window, self.stride, self.mode)(x, out, e)
        grad = Pool(self.window, self.stride, "sum")(e)
        if self.mode == "average":
            grad = grad / np.asarray(self.window[0] * self.window[1], dtype=grad.dtype)
        return grad


class MaxGather(_WindowMap):
    """For each window, the sum of ``values`` over the elements where ``x`` equals ``out``.

    The adjoint of :class:`PoolGrad` for max pooling (and its gradient):
    inputs ``x``, the pooled ``out`` and ``values`` of the shape of ``x``;
    the output has the shape of ``out``.

    Parameters
    ----------
    window, stride, mode
        As for the max :class:`Pool` that made ``out``; the mode itself is
        not used (the map always gathers at the maxima).
    """

    _kernel = _pool_grad
    _LIKE = 1

    def _static(self, shapes):
        return (*self.window, *self.stride, _GATHER)

    def _adjoint(self, x, out, e):
        # PoolGrad of the output's gradient: the two are adjoint
        return PoolGrad(self.window, self.stride, "max")(x, out, e)


def _bank(w):
    """The flipped filter bank of ``w`` (F, C, k...) as a contiguous (F, prod(k) C) matrix."""
    nd = w.ndim - 2
    flipped = w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd]
    return np.ascontiguousarray(flipped.transpose(0, *range(2, 2 + nd), 1)).reshape(w.shape[0], -1)


def _unbank(bank, shape):
    """The inverse of :func:`_bank`: a (F, prod(k) C) matrix back to the layout ``shape``."""
    nd = len(shape) - 2
    blocks = bank.reshape((shape[0], *shape[2:], shape[1]))
    moved = blocks.transpose(0, nd + 1, *range(1, nd + 1))
    return np.ascontiguousarray(moved[(slice(None), slice(None)) + (slice(None, None, -1),) * nd])


class FilterBank(_ConvOp):
    """A filter bank ``w`` of shape ``(F, C, k_1, ..., k_d)`` as the matrix the patches multiply.

    Row ``f`` holds the flipped filter with its offsets in row-major order
    and the channels fastest, matching the columns of :class:`Im2col`:
    ``bank[f, (u k_2 + v) C + c] = w[f, c, k_1 - 1 - u, k_2 - 1 - v]`` for two
    spatial axes. One operation instead of a flip, a transpose and a
    reshape: the C backend compiles a module for each distinct one of those
    (a training graph needs them and their gradients), and this one needs
    none. The map is a permutation, so its gradient is its inverse,
    :class:`FilterBankGrad`.
    """

    __props__ = ()

    def make_node(self, w):
        """Build the node for a filter bank of 3 or 4 axes."""
        (w,) = _float_tensors(w)
        if w.ndim not in (3, 4):
            raise TypeError(f"FilterBank needs a 3-D or 4-D filter bank, got {w.ndim}-D")
        shape = w.type.shape
        width = None if None in shape[1:] else int(np.prod(shape[1:]))
        return Apply(self, [w], [pt.tensor(dtype=w.dtype, shape=(shape[0], width))])

    def perform(self, node, inputs, output_storage):
        """Flip, move the channels last and flatten, in NumPy."""
        output_storage[0][0] = _bank(inputs[0])

    def infer_shape(self, fgraph, node, shapes):
        """``(F, prod of the other axes)``."""
        (shape,) = shapes
        width = shape[1]
        for n in shape[2:]:
            width = width * n
        return [(shape[0], width)]

    def pullback(self, inputs, outputs, cotangents):
        """:class:`FilterBankGrad` of the gradient."""
        ((w,), (g,)) = inputs, cotangents
        if isinstance(g.type, DisconnectedType):
            return [pt.zeros_like(w)]
        return [FilterBankGrad()(g, w)]


class FilterBankGrad(_ConvOp):
    """The inverse (and adjoint) of :class:`FilterBank`.

    Inputs: a bank matrix and a filter bank ``like`` whose shape (not
    values) the result takes.
    """

    __props__ = ()

    def make_node(self, bank, like):
        """Build the node; the output has the type of ``like``."""
        bank, like = _float_tensors(bank, like)
        _check_ndim(self, bank, 2)
        return Apply(self, [bank, like], [like.type()])

    def perform(self, node, inputs, output_storage):
        """Unflatten, move the channels back and flip, in NumPy."""
        bank, like = inputs
        output_storage[0][0] = _unbank(np.asarray(bank), like.shape)

    def infer_shape(self, fgraph, node, shapes):
        """The shape of ``like``."""
        return [shapes[1]]

    def connection_pattern(self, node):
        """Only ``bank`` flows into the output; ``like`` gives its shape."""
        return [[True], [False]]

    def pullback(self, inputs, outputs, cotangents):
        """:class:`FilterBank` of the gradient."""
        (g,) = cotangents
        if isinstance(g.type, DisconnectedType):
            return [pt.zeros_like(inputs[0]), disconnected_type()]
        return [FilterBank()(g), disconnected_type()]


# ----------------------------------------------------------------------
# building blocks for convolution.py


def as_4d(x):
    """View ``(batch, time, C)`` data as ``(batch, 1, time, C)``; 4-D data is returned as is.

    Parameters
    ----------
    x : TensorVariable
        Channels-last data with one or two spatial axes.

    Returns
    -------
    TensorVariable
        ``x`` with two spatial axes, the first of length 1 if it had one.
    """
    if x.ndim == 3:
        return pt.expand_dims(x, 1)
    return x


def patches(x, window, stride, padding):
    """Rows of patches of 3-D or 4-D channels-last data (see :class:`Im2col`).

    One spatial axis is handled as the second axis of two, with a window,
    stride and padding of 1, 1 and 0 along the first.

    Parameters
    ----------
    x : TensorVariable
        Data of shape ``(batch, n, C)`` or ``(batch, n_1, n_2, C)``.
    window, stride : tuple of int
        Patch length and step along each spatial axis of ``x``.
    padding : tuple of (int, int)
        Zeros ``(before, after)`` added along each spatial axis of ``x``.

    Returns
    -------
    TensorVariable
        The matrix of patches, one row per output position (batch first,
        then the spatial positions in row-major order) and one column per
        filter offset and channel.
    """
    if x.ndim == 3:
        window, stride, padding = (1, *window), (1, *stride), ((0, 0), *padding)
    return Im2col(window, stride, padding)(as_4d(x))


def pool(x, window, stride, mode):
    """Pool 3-D or 4-D channels-last data with :class:`Pool`.

    Parameters
    ----------
    x : TensorVariable
        Sequences ``(batch, n, C)`` or images ``(batch, n_1, n_2, C)``.
    window : tuple of int
        Window length along each spatial axis of ``x``.
    stride : tuple of int
        Step between windows along each spatial axis.
    mode : {'max', 'sum', 'average'}
        How each window is reduced.

    Returns
    -------
    TensorVariable
        The pooled data, with as many axes as ``x`` and the same channels.
    """
    if x.ndim == 3:
        out = Pool((1, *window), (1, *stride), mode)(as_4d(x))
        return out[:, 0]
    return Pool(window, stride, mode)(x)


# ----------------------------------------------------------------------
# PyTensor backends


def _reference(node):
    """The same computation as ``node``, from PyTensor's own operations (slices, joins)."""
    op = node.op
    if isinstance(op, (FilterBank, FilterBankGrad)):
        w = node.inputs[0] if isinstance(op, FilterBank) else node.inputs[1]
        bank = _conv_slices.filter_matrix(w, w.shape[0], -1)
        if isinstance(op, FilterBank):
            return bank
        return pytensor.grad(None, w, known_grads={bank: node.inputs[0]})
    if isinstance(op, (Im2col, Col2im)):
        like = node.inputs[0] if isinstance(op, Im2col) else node.inputs[1]
        padded = _conv_slices.pad(like, op.padding)
        views = _conv_slices.joined_views(padded, op.window, op.stride, "slices")
        rows = views.reshape((-1, op.window[0] * op.window[1] * like.shape[3]))
        if isinstance(op, Im2col):
            return rows
        return pytensor.grad(None, like, known_grads={rows: node.inputs[0]})
    x = node.inputs[0]
    pooled = _conv_slices.pool(x, op.window, op.stride, op.mode)
    if isinstance(op, Pool):
        return pooled
    if isinstance(op, PoolGrad):
        return pytensor.grad(None, x, known_grads={pooled: node.inputs[2]})
    out, values = node.inputs[1], node.inputs[2]
    count = op.window[0] * op.window[1]

    def windows(v):
        joined = _conv_slices.joined_views(v, op.window, op.stride, "slices")
        shape = [joined.shape[i] for i in range(3)] + [count, v.shape[3]]
        return joined.reshape(shape, ndim=5)

    mask = pt.eq(windows(x), pt.expand_dims(out, 3))
    return (mask * windows(values)).sum(axis=3)


def _register_jax_expansion():
    """Let JAX modes replace the operations by :func:`_reference` (they have no JAX version).

    The rewrite carries only the ``'jax'`` tag, so that no other mode runs it.
    """
    from pytensor.compile import optdb
    from pytensor.graph.rewriting.basic import in2out, node_rewriter

    @node_rewriter([Im2col, Col2im, Pool, PoolGrad, MaxGather, FilterBank, FilterBankGrad])
    def theanets_expand_conv_ops(fgraph, node):
        return [_reference(node)]

    optdb.register(
        "theanets_expand_conv_ops", in2out(theanets_expand_conv_ops), "jax", position=0.5
    )


def _register_numba(numba_njit, register_funcify_default_op_cache_key):
    """Compile the operations into PyTensor's Numba graphs (instead of object-mode calls)."""
    c = np.ascontiguousarray

    @register_funcify_default_op_cache_key(Im2col)
    def _im2col_funcify(op, node=None, **kwargs):
        (k1, k2), (s1, s2), ((p1, q1), (p2, q2)) = op.window, op.stride, op.padding

        @numba_njit
        def im2col(x):
            x = c(x)
            m1 = (x.shape[1] + p1 + q1 - k1) // s1 + 1
            m2 = (x.shape[2] + p2 + q2 - k2) // s2 + 1
            rows = np.empty((x.shape[0] * m1 * m2, k1 * k2 * x.shape[3]), dtype=x.dtype)
            _im2col(x, k1, k2, s1, s2, p1, p2, m1, m2, rows)
            return rows

        return im2col, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(Col2im)
    def _col2im_funcify(op, node=None, **kwargs):
        (k1, k2), (s1, s2), ((p1, q1), (p2, q2)) = op.window, op.stride, op.padding

        @numba_njit
        def col2im(rows, like):
            m1 = (like.shape[1] + p1 + q1 - k1) // s1 + 1
            m2 = (like.shape[2] + p2 + q2 - k2) // s2 + 1
            out = np.empty(like.shape, dtype=rows.dtype)
            _col2im(c(rows), k1, k2, s1, s2, p1, p2, m1, m2, out)
            return out

        return col2im, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(FilterBank)
    def _bank_funcify(op, node=None, **kwargs):
        if node.inputs[0].ndim == 3:

            @numba_njit
            def bank(w):
                flipped = c(w[:, :, ::-1].transpose(0, 2, 1))
                return flipped.reshape((w.shape[0], w.shape[1] * w.shape[2]))

        else:

            @numba_njit
            def bank(w):
                flipped = c(w[:, :, ::-1, ::-1].transpose(0, 2, 3, 1))
                return flipped.reshape((w.shape[0], w.shape[1] * w.shape[2] * w.shape[3]))

        return bank, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(FilterBankGrad)
    def _unbank_funcify(op, node=None, **kwargs):
        if node.inputs[1].ndim == 3:

            @numba_njit
            def unbank(bank, like):
                f, ch, k = like.shape
                blocks = c(bank).reshape((f, k, ch)).transpose(0, 2, 1)
                return c(blocks[:, :, ::-1])

        else:

            @numba_njit
            def unbank(bank, like):
                f, ch, k1, k2 = like.shape
                blocks = c(bank).reshape((f, k1, k2, ch)).transpose(0, 3, 1, 2)
                return c(blocks[:, :, ::-1, ::-1])

        return unbank, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(Pool)
    def _pool_funcify(op, node=None, **kwargs):
        k1, k2, s1, s2, code = op._static(None)

        @numba_njit
        def pool(x):
            x = c(x)
            m1, m2 = (x.shape[1] - k1) // s1 + 1, (x.shape[2] - k2) // s2 + 1
            out = np.empty((x.shape[0], m1, m2, x.shape[3]), dtype=x.dtype)
            _pool(x, k1, k2, s1, s2, code, out)
            return out

        return pool, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(PoolGrad)
    @register_funcify_default_op_cache_key(MaxGather)
    def _window_map_funcify(op, node=None, **kwargs):
        k1, k2, s1, s2, code = op._static(None)
        like = op._LIKE

        @numba_njit
        def window_map(x, out, values):
            x, out = c(x), c(out)
            result = np.empty(x.shape if like == 0 else out.shape, dtype=x.dtype)
            _pool_grad(x, out, c(values), k1, k2, s1, s2, code, result)
            return result

        return window_map, _NUMBA_VERSION
