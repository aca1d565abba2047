"""Convolution patches and pooling from PyTensor's own operations.

The ``'slices'`` and ``'scatter'`` implementations of the convolution
layers (see :class:`theanets.layers.convolution.Convolution`) build their
patch tensors here, from strided slices, joins and reshapes that every
PyTensor backend compiles; so do the JAX versions of the compiled
operations of :mod:`theanets.layers._conv_ops`. Data are channels-last,
``(batch, n_1, ..., n_d, channels)``.

* :func:`padding`, :func:`pad` and :func:`crop` -- zeros around, or a cut
  to whole windows of, the spatial axes;
* :func:`shifted_views` and :func:`joined_views` -- one strided view per
  filter offset, joined into the patch tensor, with the gradient added back
  by strided additions or by one scatter-add (:func:`scatter_views`);
* :func:`filter_matrix` -- the flipped filter bank as the matrix the
  patches multiply;
* :func:`pool` -- max, sum or average pooling from reshapes or views.
"""

import itertools

import numpy as np
import pytensor.tensor as pt
from pytensor.compile.builders import OpFromGraph

__all__ = [
    "padding",
    "pad",
    "crop",
    "shifted_views",
    "joined_views",
    "scatter_views",
    "filter_matrix",
    "pool",
]


def padding(kernel, border_mode):
    """Zeros to add along one axis for a border mode.

    Parameters
    ----------
    kernel : int
        Filter length along the axis.
    border_mode : {'valid', 'full', 'same'}

    Returns
    -------
    (int, int)
        Zeros before and after the input.
    """
    if border_mode == "full":
        return kernel - 1, kernel - 1
    if border_mode == "same":
        # The centre of the 'full' result, as scipy.signal.convolve(mode='same').
        return kernel // 2, (kernel - 1) // 2
    return 0, 0


def pad(x, pads):
    """Zero-pad the spatial axes (1 .. ndim-2) of ``x``.

    Zeros are joined on (rather than the input written into a zero array),
    so that the gradient is a plain slice: Numba compiles ``Join`` and
    ``Subtensor`` quickly but spends many seconds on each ``IncSubtensor``.

    Parameters
    ----------
    x : tensor
        Channels-last data.
    pads : sequence of (int, int)
        Zeros ``(before, after)`` for each spatial axis.

    Returns
    -------
    tensor
    """
    for axis, (before, after) in enumerate(pads, start=1):
        if not (before or after):
            continue
        parts = []
        for count in (before, after):
            shape = [x.shape[i] for i in range(x.ndim)]
            shape[axis] = count
            parts.append(pt.zeros(shape, dtype=x.dtype) if count else None)
        pieces = [p for p in (parts[0], x, parts[1]) if p is not None]
        x = pt.concatenate(pieces, axis=axis)
    return x


def crop(x, window):
    """Cut each spatial axis of ``x`` down to a multiple of the window length.

    The gradient of a plain slice would be an ``IncSubtensor`` into zeros,
    which Numba is slow to compile; here it is the gradient joined with zeros.

    Parameters
    ----------
    x : tensor
        Channels-last data.
    window : tuple of int
        Window length along each spatial axis.

    Returns
    -------
    tensor
    """
    inner = x.type()
    index = [slice(None)]
    for i, p in enumerate(window):
        n = inner.type.shape[1 + i]
        if n is not None and n % p == 0:
            index.append(slice(None))
        else:
            length = n if n is not None else inner.shape[1 + i]
            index.append(slice(0, (length // p) * p))
    index.append(slice(None))

    def pullback(inputs, outputs, cotangents):
        (full,), (grad,) = inputs, cotangents
        for axis, item in enumerate(index):
            if item == slice(None):
                continue
            shape = [grad.shape[i] for i in range(grad.ndim)]
            shape[axis] = full.shape[axis] - grad.shape[axis]
            grad = pt.concatenate([grad, pt.zeros(shape, dtype=grad.dtype)], axis=axis)
        return [grad]

    op = OpFromGraph([inner], [inner[tuple(index)]], pullback=pullback, inline=True, name="Crop")
    return op(x)


def _view_index(x, window, stride):
    """Flat indices into ``x`` of every element of the joined shifted views.

    For ``x`` of shape (batch, n_1, ..., n_d, C) the result lists, in the
    order of the patch tensor (batch, m_1, ..., m_d, k_1, ..., k_d, C), the
    position in ``x.ravel()`` of each patch element.
    """
    ndim = len(window)
    channels = x.type.shape[-1]
    lengths = [x.shape[1 + i] for i in range(ndim)]
    steps = [channels]
    for n in reversed(lengths[1:]):
        steps.insert(0, steps[0] * n)
    total = pt.arange(channels).reshape((1,) * (2 * ndim) + (channels,))
    for i, (n, k, s) in enumerate(zip(lengths, window, stride)):
        shape = [1] * (2 * ndim + 1)
        shape[i] = -1
        total = total + (pt.arange((n - k) // s + 1) * s * steps[i]).reshape(shape)
        shape = [1] * (2 * ndim + 1)
        shape[ndim + i] = k
        total = total + (np.arange(k) * steps[i]).reshape(shape)
    per_example = steps[0] * lengths[0]
    return (pt.arange(x.shape[0]).reshape((-1, 1)) * per_example + total.reshape((1, -1))).ravel()


def scatter_views(grad, x, window, stride):
    """The gradient of the joined views as one scatter-add over a flat index.

    Parameters
    ----------
    grad : tensor
        Gradient of the patch tensor of :func:`joined_views`.
    x : tensor
        The input the views were cut from (its shape is used).
    window, stride : tuple of int

    Returns
    -------
    tensor of the shape of ``x``
    """
    index = _view_index(x, window, stride)
    flat = pt.zeros((x.size,), dtype=grad.dtype)
    return pt.inc_subtensor(flat[index], grad.ravel()).reshape(x.shape, ndim=x.ndim)


def joined_views(x, window, stride, impl="slices"):
    """The patch tensor: every shifted strided view of ``x`` joined along the last axis.

    With ``impl='slices'`` the gradient adds each view's gradient back into a
    zero tensor of the input's shape (one strided ``IncSubtensor`` per view):
    the fastest form measured at run time, but Numba compiles each distinct
    ``IncSubtensor`` slowly (about 15 s), so the first run of a network with
    a new filter size pays a few minutes of compilation once (Numba caches
    it). With ``impl='scatter'`` the gradient is one scatter-add over a flat
    index (``AdvancedIncSubtensor1``): it compiles in seconds, but made a
    training step of the benchmark network about 1.7 times slower.

    Parameters
    ----------
    x : tensor of shape (batch, n_1, ..., n_d, C)
    window, stride : tuple of d ints
    impl : {'slices', 'scatter'}, optional

    Returns
    -------
    tensor of shape (batch, m_1, ..., m_d, prod(window) * C)
    """
    if int(np.prod(window)) == 1 or impl == "slices":
        views = list(shifted_views(x, window, stride))
        return views[0] if len(views) == 1 else pt.concatenate(views, axis=-1)
    inner = x.type()
    joined = pt.concatenate(list(shifted_views(inner, window, stride)), axis=-1)

    def pullback(inputs, outputs, cotangents):
        return [scatter_views(cotangents[0], inputs[0], window, stride)]

    op = OpFromGraph([inner], [joined], pullback=pullback, inline=True, name="JoinedViews")
    return op(x)


def shifted_views(x, window, stride):
    """Yield one strided view of ``x`` per offset inside a window.

    For the offset :math:`o` along an axis of window length :math:`k` and
    stride :math:`s` the view holds elements :math:`o, o + s, o + 2s, ...`
    up to the last one that leaves room for the rest of the window, i.e.
    ``x[o : n - (k - 1 - o) : s]``.

    Parameters
    ----------
    x : tensor
        Channels-last data.
    window, stride : tuple of int

    Yields
    ------
    tensor
        The views, offsets in row-major order.
    """
    for offset in itertools.product(*(range(k) for k in window)):
        index = [slice(None)]
        for o, k, s in zip(offset, window, stride):
            index.append(slice(o, (o - (k - 1)) or None, s))
        index.append(slice(None))
        yield x[tuple(index)]


def filter_matrix(w, filters, width):
    """The flipped filter bank ``w`` as the matrix the patches multiply.

    Parameters
    ----------
    w : tensor of shape (filters, channels, k_1, ..., k_d)
    filters, width : int or scalar tensor
        The matrix's shape: ``filters`` rows of ``prod(k) * channels``.

    Returns
    -------
    tensor of shape (filters, width)
        Row ``f`` holds filter ``f`` flipped along every spatial axis, with
        its offsets in row-major order and the channels fastest, like the
        columns of the patches.
    """
    ndim = w.ndim - 2
    flipped = w[(slice(None), slice(None)) + (slice(None, None, -1),) * ndim]
    return flipped.transpose(0, *range(2, 2 + ndim), 1).reshape((filters, width))


def pool(x, window, stride, mode):
    """Pool channels-last data with reshapes (non-overlapping windows) or shifted views.

    Parameters
    ----------
    x : tensor of shape (batch, n_1, ..., n_d, channels)
    window, stride : tuple of d ints
    mode : {'max', 'sum', 'average'}

    Returns
    -------
    tensor of shape (batch, m_1, ..., m_d, channels)
        Only windows that lie entirely inside the input are pooled.
    """
    ndim = len(window)
    size = float(np.prod(window))
    if tuple(stride) == tuple(window):
        statics = [x.type.shape[1 + i] for i in range(ndim)]
        counts = [
            (n // p) if n is not None else x.shape[1 + i] // p
            for i, (n, p) in enumerate(zip(statics, window))
        ]
        exact = all(n is not None and n % p == 0 for n, p in zip(statics, window))
        cropped = x if exact else crop(x, window)
        shape = [x.shape[0]]
        for m, p in zip(counts, window):
            shape += [m, p]
        shape.append(x.shape[-1])
        blocks = cropped.reshape(shape, ndim=2 * ndim + 2)
        axes = tuple(2 + 2 * i for i in range(ndim))
        if mode == "max":
            return blocks.max(axis=axes)
        total = blocks.sum(axis=axes)
        return total if mode == "sum" else total / np.asarray(size, dtype=x.dtype)
    # Overlapping (or gapped) windows: the windows' values side by side on a
    # new axis before the channels, then reduced.
    joined = joined_views(x, window, stride)
    windows = joined.reshape(
        [joined.shape[i] for i in range(ndim + 1)] + [int(np.prod(window)), x.type.shape[-1]],
        ndim=ndim + 3,
    )
    if mode == "max":
        return windows.max(axis=-2)
    total = windows.sum(axis=-2)
    return total if mode == "sum" else total / np.asarray(size, dtype=x.dtype)
