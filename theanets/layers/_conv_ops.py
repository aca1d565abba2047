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
expressions (see :func:`_reference`).
"""

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ._compiled import jit

__all__ = ["Im2col", "Col2im", "Pool", "PoolGrad", "MaxGather"]

#: Pooling modes, by the codes the compiled loops use.
_POOL_CODES = {"max": 0, "sum": 1, "average": 2}

#: Bumped whenever the compiled code changes (PyTensor's Numba cache key).
_NUMBA_VERSION = 1


def _out_length(n, k, s, before, after):
    """Number of windows of length ``k``, ``s`` apart, in ``n`` values with padding."""
    if n is None:
        return None
    return (n + before + after - k) // s + 1


# ----------------------------------------------------------------------
# compiled loops (two spatial axes, channels last)


@jit
def _copy_run(src, dst, start, count):  # pragma: no cover - compiled
    for q in range(count):
        dst[start + q] = src[q]


@jit
def _im2col(x, k1, k2, s1, s2, p1, p2, m1, m2):  # pragma: no cover - compiled
    """Rows of patches of ``x`` zero-padded by ``p1``/``p2`` before each axis.

    Row ``(b, i, j)`` holds ``x[b, s1 i + u - p1, s2 j + v - p2, c]`` at
    column ``(u k2 + v) C + c``, or 0 outside the input.
    """
    batch, n1, n2, channels = x.shape
    run = k2 * channels
    rows = np.empty((batch * m1 * m2, k1 * run), dtype=x.dtype)
    flat = x.reshape((batch, n1, n2 * channels))
    row = 0
    for b in range(batch):
        for i in range(m1):
            for j in range(m2):
                dst = rows[row]
                first = j * s2 - p2
                for u in range(k1):
                    r = i * s1 + u - p1
                    start = u * run
                    if r < 0 or r >= n1:
                        for q in range(run):
                            dst[start + q] = 0
                    elif first >= 0 and first + k2 <= n2:
                        _copy_run(flat[b, r, first * channels :], dst, start, run)
                    else:
                        for v in range(k2):
                            col = first + v
                            if 0 <= col < n2:
                                _copy_run(x[b, r, col], dst, start + v * channels, channels)
                            else:
                                for q in range(channels):
                                    dst[start + v * channels + q] = 0
                row += 1
    return rows


@jit
def _add_run(src, dst, start, count):  # pragma: no cover - compiled
    for q in range(count):
        dst[q] += src[start + q]


@jit
def _col2im(rows, shape_like, k1, k2, s1, s2, p1, p2, m1, m2):  # pragma: no cover - compiled
    """The adjoint of :func:`_im2col`: patch values added back onto their positions."""
    batch, n1, n2, channels = shape_like.shape
    run = k2 * channels
    out = np.zeros(shape_like.shape, dtype=rows.dtype)
    flat = out.reshape((batch, n1, n2 * channels))
    row = 0
    for b in range(batch):
        for i in range(m1):
            for j in range(m2):
                src = rows[row]
                first = j * s2 - p2
                for u in range(k1):
                    r = i * s1 + u - p1
                    start = u * run
                    if r < 0 or r >= n1:
                        continue
                    if first >= 0 and first + k2 <= n2:
                        _add_run(src, flat[b, r, first * channels :], start, run)
                    else:
                        for v in range(k2):
                            col = first + v
                            if 0 <= col < n2:
                                _add_run(src, out[b, r, col], start + v * channels, channels)
                row += 1
    return out


@jit
def _pool(x, k1, k2, s1, s2, code):  # pragma: no cover - compiled
    """Reduce windows of ``x`` (max, sum or average for ``code`` 0, 1, 2)."""
    batch, n1, n2, channels = x.shape
    m1, m2 = (n1 - k1) // s1 + 1, (n2 - k2) // s2 + 1
    out = np.empty((batch, m1, m2, channels), dtype=x.dtype)
    size = x.dtype.type(k1 * k2)
    for b in range(batch):
        for i in range(m1):
            for j in range(m2):
                o = out[b, i, j]
                first = x[b, i * s1, j * s2]
                for c in range(channels):
                    o[c] = first[c]
                for u in range(k1):
                    for v in range(k2):
                        if u == 0 and v == 0:
                            continue
                        src = x[b, i * s1 + u, j * s2 + v]
                        if code == 0:
                            for c in range(channels):
                                o[c] = max(o[c], src[c])
                        else:
                            for c in range(channels):
                                o[c] += src[c]
                if code == 2:
                    for c in range(channels):
                        o[c] = o[c] / size
    return out


@jit
def _pool_grad(x, out, grad, k1, k2, s1, s2, code):  # pragma: no cover - compiled
    """Gradient of :func:`_pool` with respect to ``x``, given the gradient of ``out``."""
    batch, n1, n2, channels = x.shape
    m1, m2 = out.shape[1], out.shape[2]
    dx = np.zeros(x.shape, dtype=grad.dtype)
    size = grad.dtype.type(k1 * k2)
    for b in range(batch):
        for i in range(m1):
            for j in range(m2):
                g, o = grad[b, i, j], out[b, i, j]
                for u in range(k1):
                    for v in range(k2):
                        src = x[b, i * s1 + u, j * s2 + v]
                        dst = dx[b, i * s1 + u, j * s2 + v]
                        if code == 0:
                            for c in range(channels):
                                if src[c] == o[c]:
                                    dst[c] += g[c]
                        elif code == 1:
                            for c in range(channels):
                                dst[c] += g[c]
                        else:
                            for c in range(channels):
                                dst[c] += g[c] / size
    return dx


@jit
def _max_gather(x, out, values, k1, k2, s1, s2):  # pragma: no cover - compiled
    """Sum of ``values`` over the maximal elements of each window (adjoint of the max gradient)."""
    batch, m1, m2, channels = out.shape
    result = np.zeros(out.shape, dtype=values.dtype)
    for b in range(batch):
        for i in range(m1):
            for j in range(m2):
                o, r = out[b, i, j], result[b, i, j]
                for u in range(k1):
                    for v in range(k2):
                        src = x[b, i * s1 + u, j * s2 + v]
                        val = values[b, i * s1 + u, j * s2 + v]
                        for c in range(channels):
                            if src[c] == o[c]:
                                r[c] += val[c]
    return result


# ----------------------------------------------------------------------
# operations


def _float_tensors(*inputs):
    inputs = [pt.as_tensor_variable(i) for i in inputs]
    dtype = inputs[0].dtype
    if not dtype.startswith("float"):
        dtype = "float64"
        inputs[0] = pt.cast(inputs[0], dtype)
    return [i if i.dtype == dtype else pt.cast(i, dtype) for i in inputs]


def _check_ndim(op, x, ndim=4):
    if x.ndim != ndim:
        raise TypeError(f"{type(op).__name__} needs a {ndim}-D input, got {x.ndim}-D")


class _CompiledOp(Op):
    """Runs a compiled loop from :meth:`perform` on contiguous inputs.

    Subclasses name the loop in ``_kernel`` and its extra (static)
    arguments in :meth:`_static`.
    """

    _kernel = None

    def _static(self):
        return ()

    def perform(self, node, inputs, output_storage):
        """Run the compiled loop on the input arrays."""
        arrays = [np.ascontiguousarray(x) for x in inputs]
        output_storage[0][0] = type(self)._kernel(*arrays, *self._static())


class Im2col(_CompiledOp):
    """The matrix of patches of a channels-last 4-D input, zero-padded.

    For ``x`` of shape ``(batch, n_1, n_2, C)`` the output has one row per
    output position ``(b, i, j)``, ``batch * m_1 * m_2`` rows in row-major
    order, and ``k_1 k_2 C`` columns: column ``(u k_2 + v) C + c`` holds
    :math:`\\tilde x_{b,\\, s_1 i + u,\\, s_2 j + v,\\, c}` where
    :math:`\\tilde x` is ``x`` with ``padding`` zeros around each spatial
    axis and :math:`m = (n + \\text{before} + \\text{after} - k) / s + 1`
    (rounded down).

    Parameters
    ----------
    window : (int, int)
        ``(k_1, k_2)``.
    stride : (int, int)
        ``(s_1, s_2)``.
    padding : ((int, int), (int, int))
        Zeros ``(before, after)`` for each spatial axis.
    """

    __props__ = ("window", "stride", "padding")
    _kernel = _im2col

    def __init__(self, window, stride, padding):
        self.window = tuple(int(k) for k in window)
        self.stride = tuple(int(s) for s in stride)
        self.padding = tuple((int(a), int(b)) for a, b in padding)

    def _static(self):
        (k1, k2), (s1, s2), ((p1, _), (p2, _)) = self.window, self.stride, self.padding
        return k1, k2, s1, s2, p1, p2

    def perform(self, node, inputs, output_storage):
        """Cut the patches."""
        x = np.ascontiguousarray(inputs[0])
        m1, m2 = self.out_lengths(x.shape)
        output_storage[0][0] = _im2col(x, *self._static(), m1, m2)

    def out_lengths(self, shape):
        """Number of output positions along both spatial axes for an input ``shape``."""
        return tuple(
            _out_length(shape[1 + i], k, s, *pad)
            for i, (k, s, pad) in enumerate(zip(self.window, self.stride, self.padding))
        )

    def make_node(self, x):
        """Build the node for a 4-D input ``x``."""
        (x,) = _float_tensors(x)
        _check_ndim(self, x)
        m1, m2 = self.out_lengths(x.type.shape)
        batch, channels = x.type.shape[0], x.type.shape[3]
        rows = None
        if None not in (batch, m1, m2):
            rows = batch * m1 * m2
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


class Col2im(_CompiledOp):
    """The adjoint of :class:`Im2col`: patch rows added back onto an input-shaped array.

    Inputs: ``rows`` (as :class:`Im2col` makes them) and ``like``, an array
    of the input's shape whose values are not used.
    """

    __props__ = ("window", "stride", "padding")

    def __init__(self, window, stride, padding):
        self.window = tuple(int(k) for k in window)
        self.stride = tuple(int(s) for s in stride)
        self.padding = tuple((int(a), int(b)) for a, b in padding)

    def perform(self, node, inputs, output_storage):
        """Scatter the rows."""
        rows, like = inputs
        forward = Im2col(self.window, self.stride, self.padding)
        m1, m2 = forward.out_lengths(like.shape)
        output_storage[0][0] = _col2im(np.ascontiguousarray(rows), like, *forward._static(), m1, m2)

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

    def out_lengths(self, shape):
        """Number of whole windows along both spatial axes for an input ``shape``."""
        return tuple(
            _out_length(shape[1 + i], k, s, 0, 0)
            for i, (k, s) in enumerate(zip(self.window, self.stride))
        )


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

    def _static(self):
        return (*self.window, *self.stride, _POOL_CODES[self.mode])

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


class PoolGrad(_PoolOp):
    """Gradient of :class:`Pool` with respect to its input.

    Inputs ``x``, the pooled ``out`` and the gradient ``g`` of ``out``. For
    max pooling each window's gradient goes to every element equal to the
    window's maximum; for sum and average it goes to every element (divided
    by the window size for average). It is linear in ``g``; its own
    gradient (for second derivatives) is :class:`MaxGather` or a sum
    pooling, and does not depend on ``x`` and ``out`` otherwise (they only
    select the maximal elements).
    """

    _kernel = _pool_grad

    def _static(self):
        return (*self.window, *self.stride, _POOL_CODES[self.mode])

    def make_node(self, x, out, g):
        """Build the node; the output has the type of ``x``."""
        x, out, g = _float_tensors(x, out, g)
        for value in (x, out, g):
            _check_ndim(self, value)
        return Apply(self, [x, out, g], [x.type()])

    def infer_shape(self, fgraph, node, shapes):
        """The shape of ``x``."""
        return [shapes[0]]

    def connection_pattern(self, node):
        """Values flow from ``g`` only (``x`` and ``out`` select elements)."""
        return [[False], [False], [True]]

    def pullback(self, inputs, outputs, cotangents):
        """The adjoint map applied to the output's gradient."""
        x, out, g = inputs
        (e,) = cotangents
        if isinstance(e.type, DisconnectedType):
            grad = pt.zeros_like(g)
        elif self.mode == "max":
            grad = MaxGather(self.window, self.stride, self.mode)(x, out, e)
        else:
            grad = Pool(self.window, self.stride, "sum")(e)
            if self.mode == "average":
                grad = grad / np.asarray(self.window[0] * self.window[1], dtype=grad.dtype)
        return [disconnected_type(), disconnected_type(), grad]


class MaxGather(_PoolOp):
    """For each window, the sum of ``values`` over the elements where ``x`` equals ``out``.

    The adjoint of :class:`PoolGrad` for max pooling (and its gradient):
    inputs ``x``, the pooled ``out`` and ``values`` of the shape of ``x``;
    the output has the shape of ``out``.
    """

    _kernel = _max_gather

    def _static(self):
        return (*self.window, *self.stride)

    def make_node(self, x, out, values):
        """Build the node; the output has the type of ``out``."""
        x, out, values = _float_tensors(x, out, values)
        for value in (x, out, values):
            _check_ndim(self, value)
        return Apply(self, [x, out, values], [out.type()])

    def infer_shape(self, fgraph, node, shapes):
        """The shape of ``out``."""
        return [shapes[1]]

    def connection_pattern(self, node):
        """Values flow from ``values`` only."""
        return [[False], [False], [True]]

    def pullback(self, inputs, outputs, cotangents):
        """:class:`PoolGrad` of the output's gradient (the two are adjoint)."""
        x, out, values = inputs
        (e,) = cotangents
        if isinstance(e.type, DisconnectedType):
            grad = pt.zeros_like(values)
        else:
            grad = PoolGrad(self.window, self.stride, "max")(x, out, e)
        return [disconnected_type(), disconnected_type(), grad]


# ----------------------------------------------------------------------
# building blocks for convolution.py


def as_4d(x):
    """View ``(batch, time, C)`` data as ``(batch, 1, time, C)``; 4-D data is returned as is."""
    if x.ndim == 3:
        return pt.expand_dims(x, 1)
    return x


def patches(x, window, stride, padding):
    """Rows of patches of 3-D or 4-D channels-last data (see :class:`Im2col`).

    One spatial axis is handled as the second axis of two, with a window,
    stride and padding of 1, 1 and 0 along the first.
    """
    if x.ndim == 3:
        window, stride, padding = (1, *window), (1, *stride), ((0, 0), *padding)
    return Im2col(window, stride, padding)(as_4d(x))


def pool(x, window, stride, mode):
    """Pool 3-D or 4-D channels-last data with :class:`Pool`."""
    if x.ndim == 3:
        out = Pool((1, *window), (1, *stride), mode)(as_4d(x))
        return out[:, 0]
    return Pool(window, stride, mode)(x)


# ----------------------------------------------------------------------
# PyTensor backends


def _reference(node):
    """The same computation as ``node``, from PyTensor's own operations (slices, joins)."""
    import pytensor

    from . import convolution

    op = node.op
    if isinstance(op, (Im2col, Col2im)):
        like = node.inputs[0] if isinstance(op, Im2col) else node.inputs[1]
        padded = convolution._pad(like, op.padding)
        views = convolution._joined_views(padded, op.window, op.stride, "slices")
        rows = views.reshape((-1, op.window[0] * op.window[1] * like.shape[3]))
        if isinstance(op, Im2col):
            return rows
        return pytensor.grad(None, like, known_grads={rows: node.inputs[0]})
    x = node.inputs[0]
    pooled = convolution.pool(x, op.window, op.stride, op.mode, impl="slices")
    if isinstance(op, Pool):
        return pooled
    if isinstance(op, PoolGrad):
        return pytensor.grad(None, x, known_grads={pooled: node.inputs[2]})
    out, values = node.inputs[1], node.inputs[2]
    count = op.window[0] * op.window[1]

    def windows(v):
        joined = convolution._joined_views(v, op.window, op.stride, "slices")
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

    @node_rewriter([Im2col, Col2im, Pool, PoolGrad, MaxGather])
    def theanets_expand_conv_ops(fgraph, node):
        return [_reference(node)]

    optdb.register(
        "theanets_expand_conv_ops", in2out(theanets_expand_conv_ops), "jax", position=0.5
    )


def _register_numba():
    """Compile the operations into PyTensor's Numba graphs (instead of object-mode calls)."""
    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_default_op_cache_key,
        )
    except ImportError:  # pragma: no cover - an older PyTensor
        return

    contiguous = np.ascontiguousarray

    @register_funcify_default_op_cache_key(Im2col)
    def _im2col_funcify(op, node=None, **kwargs):
        (k1, k2), (s1, s2), ((p1, q1), (p2, q2)) = op.window, op.stride, op.padding

        @numba_njit
        def im2col(x):
            m1 = (x.shape[1] + p1 + q1 - k1) // s1 + 1
            m2 = (x.shape[2] + p2 + q2 - k2) // s2 + 1
            return _im2col(contiguous(x), k1, k2, s1, s2, p1, p2, m1, m2)

        return im2col, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(Col2im)
    def _col2im_funcify(op, node=None, **kwargs):
        (k1, k2), (s1, s2), ((p1, q1), (p2, q2)) = op.window, op.stride, op.padding

        @numba_njit
        def col2im(rows, like):
            m1 = (like.shape[1] + p1 + q1 - k1) // s1 + 1
            m2 = (like.shape[2] + p2 + q2 - k2) // s2 + 1
            return _col2im(contiguous(rows), like, k1, k2, s1, s2, p1, p2, m1, m2)

        return col2im, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(Pool)
    def _pool_funcify(op, node=None, **kwargs):
        args = op._static()
        k1, k2, s1, s2, code = args

        @numba_njit
        def pool(x):
            return _pool(contiguous(x), k1, k2, s1, s2, code)

        return pool, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(PoolGrad)
    def _pool_grad_funcify(op, node=None, **kwargs):
        k1, k2, s1, s2, code = op._static()

        @numba_njit
        def pool_grad(x, out, g):
            return _pool_grad(contiguous(x), contiguous(out), contiguous(g), k1, k2, s1, s2, code)

        return pool_grad, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(MaxGather)
    def _max_gather_funcify(op, node=None, **kwargs):
        k1, k2, s1, s2 = op._static()

        @numba_njit
        def max_gather(x, out, values):
            return _max_gather(contiguous(x), contiguous(out), contiguous(values), k1, k2, s1, s2)

        return max_gather, _NUMBA_VERSION


_register_numba()
_register_jax_expansion()
