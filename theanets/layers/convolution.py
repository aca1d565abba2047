"""Convolution and pooling layers: :class:`Conv1`, :class:`Conv2`, :class:`Pool1`, :class:`Pool2`.

**Data layouts.**

* :class:`Conv1` and :class:`Pool1` read sequences laid out as
  ``(batch, time, channels)``;
* :class:`Conv2` and :class:`Pool2` read images laid out as
  ``(batch, width, height, channels)``.

Every layer keeps that layout: the last axis of the output holds the filters
(or, for pooling, the channels). Output shapes are computed when the layer is
bound to a network, so a :class:`~theanets.layers.Flatten` layer placed after
a convolution knows how many values it receives whenever the input's spatial
sizes are known.

**How the convolution is computed.** PyTensor 3 has no batched
multi-channel convolution operation, so the layers build one ("im2col"): the
input, zero-padded as the border mode asks, is cut into a matrix of patches
with one row per output position and one column per filter offset and
channel, and a single matrix product with the flipped, reshaped filter bank
gives every output value at once. The product
(:class:`~theanets.layers._matmul.MatMul`) is one BLAS call
(``Dot22``/``Gemm`` in PyTensor's C backend, ``np.dot`` in the Numba
backend), and so are both products of the gradient; the gradient of the
patch matrix is added back onto the input positions it came from. Strides
are applied while the patches are cut, so strided outputs are never
computed only to be dropped.

By default (``impl='fused'``) cutting the patches and adding them back are
each one compiled operation (:mod:`theanets.layers._conv_ops`), and so is
pooling. The ``'slices'`` and ``'scatter'`` implementations build the same
patches from ``prod(filter_size)`` shifted strided views joined along the
channel axis (:mod:`theanets.layers._conv_slices`), and differ in how the
gradient adds them back (one strided addition per view, or one scatter-add
over a flat index); pooling there reshapes the input so that non-overlapping
windows lie along their own axes, or combines shifted views for other
strides. Every path is exactly differentiable, to any order.
"""

import itertools

import numpy as np

from .. import util
from . import _conv_slices
from ._matmul import MatMul
from .base import Layer

__all__ = ["Convolution", "Conv1", "Conv2", "Pooling", "Pool1", "Pool2", "MatMul"]

#: Border modes of the convolution layers.
BORDER_MODES = ("valid", "full", "same")

#: Ways of computing a convolution (see :class:`Convolution`); the first is the default.
IMPLS = ("fused", "slices", "scatter")

#: Pooling modes; ``'mean'``, ``'average_inc_pad'`` and ``'average_exc_pad'``
#: are accepted as other names of ``'average'`` (no padding happens here, so
#: Theano's two average modes agree).
POOL_MODES = ("max", "sum", "average")
_POOL_ALIASES = {"mean": "average", "average_inc_pad": "average", "average_exc_pad": "average"}


# ----------------------------------------------------------------------
# helpers


def _positive_tuple(value, ndim, what, layer_name, default=None):
    """Check a size/stride argument: an int or a tuple of ``ndim`` positive ints."""
    if value is None:
        if default is None:
            raise util.ConfigurationError(f"layer {layer_name!r} needs a {what}")
        value = default
    items = value if isinstance(value, (tuple, list)) else (value,) * ndim
    items = tuple(items)
    if len(items) != ndim or not all(util.is_int(v) and v > 0 for v in items):
        raise util.ConfigurationError(
            f"layer {layer_name!r}: {what} must be a positive integer or a tuple of {ndim} "
            f"positive integers, got {value!r}"
        )
    return tuple(int(v) for v in items)


def _check_choice(value, choices, what, layer_name):
    """Return ``value`` after checking that it is one of ``choices``."""
    if value not in choices:
        raise util.ConfigurationError(
            f"layer {layer_name!r}: {what} must be one of {choices}, got {value!r}"
            f"{util.closest_match(str(value), choices)}"
        )
    return value


def conv_output_length(length, kernel, stride, border_mode):
    """Length of one axis of a convolution's output.

    Parameters
    ----------
    length : int or None
        Length of the input axis; None if unknown.
    kernel : int
        Filter length along the axis.
    stride : int
        Step between output positions.
    border_mode : {'valid', 'full', 'same'}

    Returns
    -------
    int or None
        :math:`\\lceil m / s \\rceil` where :math:`m = n - k + 1` (valid),
        :math:`n + k - 1` (full) or :math:`n` (same); None if ``length`` is.
    """
    if length is None:
        return None
    before, after = _conv_slices.padding(kernel, border_mode)
    full = length + before + after - kernel + 1
    return (full - 1) // stride + 1


def pool_output_length(length, pool, stride):
    """Length of one axis of a pooling layer's output.

    Only windows that lie entirely inside the input count:
    :math:`\\lfloor (n - p) / s \\rfloor + 1`.

    Parameters
    ----------
    length : int or None
        Length of the input axis; None if unknown.
    pool, stride : int
        Window length and step.

    Returns
    -------
    int or None
    """
    if length is None:
        return None
    return (length - pool) // stride + 1


def convolve(x, w, stride, border_mode, out_shape=None, impl="fused"):
    """True (flipped-filter) convolution of channels-last data with a filter bank.

    Parameters
    ----------
    x : tensor of shape (batch, n_1, ..., n_d, channels)
        Input.
    w : tensor of shape (filters, channels, k_1, ..., k_d)
        Filter bank (static shape required).
    stride : tuple of d ints
        Step between output positions along each spatial axis.
    border_mode : {'valid', 'full', 'same'}
        ``'valid'``: only positions where the filter fits inside the input;
        ``'full'``: every position where filter and input overlap (the input
        is padded with :math:`k - 1` zeros on both sides); ``'same'``: the
        centre of the full result, as long as the input.
    out_shape : tuple, optional
        Static output shape without the batch axis (None entries for
        unknown lengths); used to give the result a static shape.
    impl : {'fused', 'slices', 'scatter'}, optional
        How the patches are cut and their gradient formed (see
        :class:`Convolution`); all give the same values.

    Returns
    -------
    tensor of shape (batch, m_1, ..., m_d, filters)

    Notes
    -----
    For ``'valid'`` borders and one spatial axis the result is

    .. math::
        y_{b,i,f} = \\sum_{c} \\sum_{u=0}^{k-1} x_{b,\\,s i + u,\\,c}\\,
                    w_{f,\\,c,\\,k - 1 - u}

    (the filter is flipped, as in :func:`scipy.signal.convolve`); other
    border modes first pad the input with zeros, and several spatial axes
    sum over every offset. All products are done by one matrix product of
    the matrix of patches (one row per output position) with the flipped
    filter bank reshaped to ``(filters, prod(k) * channels)``.
    """
    products, shape = _conv_products(x, w, stride, border_mode, out_shape, impl)
    return products.reshape(shape, ndim=len(shape))


def _conv_products(x, w, stride, border_mode, out_shape=None, impl="fused"):
    """The convolution of :func:`convolve` as a matrix, one row per output position.

    Returns
    -------
    products : tensor of shape (batch * m_1 * ... * m_d, filters)
        The patches times the flipped filter bank.
    shape : list
        The shape ``(batch, m_1, ..., m_d, filters)`` to reshape it to.

    Notes
    -----
    A layer adds its bias and applies its activation to this matrix before
    reshaping it: elementwise operations and bias sums on a matrix are the
    same ones a dense layer uses, so the C backend compiles them once for
    both kinds of layer.
    """
    window = tuple(int(k) for k in w.type.shape[2:])
    ndim = len(window)
    filters, channels = int(w.type.shape[0]), int(w.type.shape[1])
    pads = [_conv_slices.padding(k, border_mode) for k in window]
    width = int(np.prod(window)) * channels
    if impl == "fused":
        # imported here: it compiles with Numba, which `import theanets` does not load
        from . import _conv_ops

        rows = _conv_ops.patches(x, window, stride, pads)
        # (filters, k_1, ..., k_d, channels) flipped, as (filters, K): columns like the patches
        bank = _conv_ops.FilterBank()(w)
        lengths = [
            (x.shape[1 + i] + before + after - k) // s + 1
            for i, (k, s, (before, after)) in enumerate(zip(window, stride, pads))
        ]
    else:
        x = _conv_slices.pad(x, pads)
        patches = _conv_slices.joined_views(x, window, stride, impl)
        rows = patches.reshape((-1, width))
        bank = _conv_slices.filter_matrix(w, filters, width)
        lengths = [patches.shape[1 + i] for i in range(ndim)]
    products = MatMul(trans_b=True)(rows, bank)
    if out_shape is None:
        out_shape = (None,) * ndim + (filters,)
    spatial = [n if n is not None else m for n, m in zip(out_shape, lengths)]
    return products, [x.shape[0], *spatial, filters]


def pool(x, window, stride, mode, impl="fused"):
    """Pool channels-last data over windows of the spatial axes.

    Parameters
    ----------
    x : tensor of shape (batch, n_1, ..., n_d, channels)
    window : tuple of d ints
        Pooling window.
    stride : tuple of d ints
        Step between windows.
    mode : {'max', 'sum', 'average'}
        Reduction over each window.
    impl : {'fused', 'slices'}, optional
        ``'fused'`` (default): one compiled operation, and one for its
        gradient; ``'slices'``: reshapes or shifted views and PyTensor
        reductions. Both give the same values and gradients.

    Returns
    -------
    tensor of shape (batch, m_1, ..., m_d, channels)
        With :math:`m = \\lfloor (n - p) / s \\rfloor + 1` along each spatial
        axis: windows that do not fit entirely inside the input are left out.

    Notes
    -----
    For one spatial axis,

    .. math::
        y_{b,i,c} = \\operatorname{reduce}_{u=0}^{p-1} x_{b,\\,s i + u,\\,c}

    with reduce one of max, sum or mean. The gradient of ``'max'`` goes to
    the maximal element of each window (to each of them when several are
    equal, as Theano's pooling did).
    """
    if impl == "fused":
        from . import _conv_ops

        return _conv_ops.pool(x, tuple(window), tuple(stride), mode)
    return _conv_slices.pool(x, window, stride, mode)


class _Spatial:
    """Shared code of :class:`Convolution` and :class:`Pooling` (a mixin of :class:`Layer`).

    The layer class sets ``SPATIAL_NDIM``, its number of spatial axes.
    """

    def _check_layout(self):
        """The input's example shape, after checking it has the spatial axes and channels."""
        shape = self.input_shape
        want = self.SPATIAL_NDIM + 1
        if len(shape) != want:
            layout = "(time, channels)" if self.SPATIAL_NDIM == 1 else ("(width, height, channels)")
            raise util.ConfigurationError(
                f"layer {self.name!r}: {type(self).__name__} needs examples of shape {layout}, but "
                f"input {self.input_name!r} has shape {shape}"
            )
        return shape

    def _check_channels(self, shape):
        """Refuse an input whose channel axis has no static size."""
        if shape[-1] is None:
            raise util.ConfigurationError(
                f"layer {self.name!r}: the channel axis of input {self.input_name!r} (shape "
                f"{shape}) must have a known size"
            )

    def _spec_value(self, value):
        """A size or stride as the spec writes it: an int in 1-D, a list otherwise."""
        return value[0] if self.SPATIAL_NDIM == 1 else list(value)

    def _log_line(self, details, *values):
        """Log ``layer <name>: <input><shape> -> <shape>, `` followed by ``details``."""
        util.log(
            "layer {}: {}{} -> {}, " + details,
            self.name,
            self.input_name,
            tuple(self.input_shape),
            self.output_shape,
            *values,
        )


def _sizes(values):
    """``(3, 2)`` as ``'3x2'``."""
    return "x".join(map(str, values))


# ----------------------------------------------------------------------
# convolution layers


class Convolution(_Spatial, Layer):
    """Base class of the convolution layers (use :class:`Conv1` or :class:`Conv2`).

    Parameters
    ----------
    size : int
        Number of filters (the size of the output's last axis).
    filter_size : int or tuple of int
        Length of the filters along each spatial axis.
    stride : int or tuple of int, optional
        Step between output positions along each spatial axis (default 1).
        A stride :math:`s` keeps every :math:`s`-th value of the unstrided
        result.
    border_mode : {'valid', 'full', 'same'}, optional
        Which output positions to compute (default ``'valid'``): for input
        length :math:`n` and filter length :math:`k` the output (before
        striding) has :math:`n - k + 1`, :math:`n + k - 1` or :math:`n`
        positions.
    inputs, name, activation
        As for :class:`~theanets.layers.Layer` (the activation defaults to
        ``'relu'``).
    impl : {'fused', 'slices', 'scatter'}, optional
        How the patches are cut and their gradient added back onto the input
        (all give the same values): ``'fused'`` (default) uses one compiled
        operation for each, fastest to run and to compile; ``'slices'``
        joins one strided slice per filter offset and adds each back, and
        ``'scatter'`` adds them back with one scatter-add over a flat index
        (both made of PyTensor's own operations, which every backend can
        compile).
    **kwargs
        Other :class:`~theanets.layers.Layer` arguments (``rng``, ``mean``,
        ``std``, ``sparsity`` and their ``_w`` forms, ``mean_b``,
        ``std_b``).

    Notes
    -----
    The weight ``w`` has shape ``(filters, channels, *filter_size)``; for each
    filter offset a ``(filters, channels)`` matrix is drawn with the usual
    weight rule (standard deviation :math:`1 / \\sqrt{\\text{filters} +
    \\text{channels}}` unless ``std`` says otherwise), offset after offset.
    The bias ``b`` has one value per filter. Outputs are ``pre`` (the
    convolution plus bias) and ``out`` (the activation of ``pre``).
    """

    #: Number of spatial axes.
    SPATIAL_NDIM = None

    def __init__(
        self,
        size=None,
        filter_size=None,
        stride=1,
        border_mode="valid",
        inputs=None,
        name=None,
        activation=None,
        impl="fused",
        **kwargs,
    ):
        if self.SPATIAL_NDIM is None:
            raise util.ConfigurationError(
                f"layer {name!r}: Convolution is a base class; use 'conv1' or 'conv2'"
            )
        self.impl = _check_choice(impl, IMPLS, "impl", name)
        if "shape" in kwargs:
            raise util.ConfigurationError(
                f"layer {name!r}: a {type(self).__name__} layer takes no shape; its output shape "
                "follows from its input, filter_size, stride and border_mode"
            )
        for key in ("diagonal", "radius", "diagonal_w", "radius_w"):
            if key in kwargs:
                raise util.ConfigurationError(
                    f"layer {name!r}: {key!r} does not apply to convolution filters"
                )
        if size is None:
            raise util.ConfigurationError(
                f"layer {name!r}: a {type(self).__name__} layer needs a size (number of filters)"
            )
        self.filter_size = self._filter_tuple(filter_size, name)
        self.stride = _positive_tuple(stride, self.SPATIAL_NDIM, "stride", name, default=1)
        self.border_mode = _check_choice(border_mode, BORDER_MODES, "border_mode", name)
        super().__init__(size=size, inputs=inputs, name=name, activation=activation, **kwargs)

    def _filter_tuple(self, filter_size, name):
        return _positive_tuple(filter_size, self.SPATIAL_NDIM, "filter_size", name)

    @property
    def kernel_shape(self):
        """Shape of ``w`` after the ``(filters, channels)`` axes."""
        return self.filter_size

    def _resolve_output_shape(self):
        shape = self._check_layout()
        self._check_channels(shape)
        out = []
        for axis, (n, k, s) in enumerate(zip(shape[:-1], self.filter_size, self.stride)):
            if n is not None and self.border_mode == "valid" and k > n:
                raise util.ConfigurationError(
                    f"layer {self.name!r}: filter_size {self.filter_size} is larger than input "
                    f"{self.input_name!r} of shape {shape} (axis {axis} of an example has {n} "
                    f"values, the filter {k}) in 'valid' border mode; use a smaller filter or "
                    f"border_mode='same'/'full'"
                )
            out.append(conv_output_length(n, k, s, self.border_mode))
        return (*out, self.size)

    def setup(self):
        """Create the filter bank ``w`` and the bias ``b``."""
        self.add_conv_weights("w")
        self.add_bias("b", self.size)

    def add_conv_weights(self, name, mean=0, std=0, sparsity=0):
        """Create a filter bank ``<layer>.<name>`` of shape ``(filters, channels, *kernel)``.

        For each filter offset, in row-major order, a ``(filters, channels)``
        matrix is drawn by :func:`theanets.util.random_matrix` from the
        layer's random state.

        Parameters
        ----------
        name : str
            Short parameter name.
        mean, std, sparsity : float, optional
            Defaults overridden by the layer's ``mean``/``std``/``sparsity``
            keyword arguments (or their ``_<name>`` forms); a zero ``std``
            means :math:`1 / \\sqrt{\\text{filters} + \\text{channels}}`.

        Returns
        -------
        shared variable
        """
        nin, nout = self.input_size, self.size
        mean = self._init_setting("mean", name, mean)
        std = self._init_setting("std", name, std) or 1 / np.sqrt(nin + nout)
        sparsity = self._init_setting("sparsity", name, sparsity)
        value = np.zeros((nout, nin) + self.kernel_shape, dtype=util.as_float(0).dtype)
        for offset in itertools.product(*(range(k) for k in self.kernel_shape)):
            value[(slice(None), slice(None)) + offset] = util.random_matrix(
                nout, nin, mean=mean, std=std, sparsity=sparsity, rng=self.rng
            )
        return self._add_param(name, value)

    def _filters(self):
        """The filter bank as (filters, channels, *filter_size)."""
        return self.find("w")

    def transform(self, inputs):
        """Compute ``pre`` (convolution plus bias) and ``out``.

        Parameters
        ----------
        inputs : dict
            Graph outputs by full name, the layer's input among them.

        Returns
        -------
        dict
            ``pre`` and ``out``, both of shape ``(batch, *spatial, filters)``
            (:attr:`output_shape` after the batch axis).
        """
        x = self._only_input(inputs)
        products, shape = _conv_products(
            x,
            self._filters(),
            self.stride,
            self.border_mode,
            out_shape=self.output_shape,
            impl=self.impl,
        )
        # bias and activation on the (positions, filters) matrix, then reshaped
        pre = products + self.find("b")
        out = self.activate(pre)
        return dict(
            pre=pre.reshape(shape, ndim=len(shape)), out=out.reshape(shape, ndim=len(shape))
        )

    def _spec_extra(self):
        spec = dict(
            filter_size=self._spec_value(self.filter_size),
            stride=self._spec_value(self.stride),
            border_mode=self.border_mode,
        )
        if self.impl != IMPLS[0]:
            spec["impl"] = self.impl
        return spec

    def log(self):
        """Log a one-line description of this layer."""
        self._log_line(
            "{} filters {} stride {} border {}, {}, {} parameters",
            self.size,
            _sizes(self.filter_size),
            _sizes(self.stride),
            self.border_mode,
            getattr(self.activate, "name", self.activation),
            self.num_params(),
        )


class Conv1(Convolution):
    """One-dimensional convolution over the time axis of ``(batch, time, channels)`` data.

    .. math::
        z_{b,t,f} = b_f + \\sum_{c} \\sum_{u=0}^{k-1}
                    \\tilde x_{b,\\,s t + u,\\,c}\\; w_{f,\\,c,\\,0,\\,k-1-u},
        \\qquad y = \\phi(z)

    where :math:`\\tilde x` is the input, zero-padded for the ``'full'`` and
    ``'same'`` border modes, :math:`k` the filter size and :math:`s` the
    stride. The filter is flipped: this is a true convolution, as
    :func:`scipy.signal.convolve` computes it.

    Parameters
    ----------
    size : int
        Number of filters.
    filter_size : int
        Filter length along the time axis.
    stride : int, optional
        Step between output time steps (default 1).
    border_mode : {'valid', 'full', 'same'}, optional
        See :class:`Convolution`.
    inputs, name, activation, impl, **kwargs
        As for :class:`Convolution`.

    Notes
    -----
    The weight ``w`` has shape ``(filters, channels, 1, filter_size)`` (the
    layout of theanets 0.7/0.8, which ran a 2-D convolution over a height-1
    image); there are ``filter_size * channels * filters + filters``
    parameters.

    Examples
    --------
    >>> import theanets
    >>> net = theanets.recurrent.Regressor(
    ...     [3, dict(form='conv1', size=4, filter_size=2), 2])
    >>> [(p.name, p.get_value().shape) for p in net.layers[1].params]
    [('hid1.w', (4, 3, 1, 2)), ('hid1.b', (4,))]
    """

    SPATIAL_NDIM = 1

    def _filter_tuple(self, filter_size, name):
        if isinstance(filter_size, (tuple, list)) and len(filter_size) == 2 and filter_size[0] == 1:
            filter_size = filter_size[1:]  # the old (1, k) form
        return _positive_tuple(filter_size, 1, "filter_size", name)

    @property
    def kernel_shape(self):
        """Shape of ``w`` after its ``(filters, channels)`` axes: ``(1, filter_size)``."""
        return (1,) + self.filter_size

    def _filters(self):
        w = self.find("w")
        return w.reshape((self.size, self.input_size, self.filter_size[0]))


class Conv2(Convolution):
    """Two-dimensional convolution of ``(batch, width, height, channels)`` images.

    .. math::
        z_{b,i,j,f} = b_f + \\sum_{c} \\sum_{u=0}^{k_1-1} \\sum_{v=0}^{k_2-1}
            \\tilde x_{b,\\,s_1 i + u,\\,s_2 j + v,\\,c}\\;
            w_{f,\\,c,\\,k_1-1-u,\\,k_2-1-v},
        \\qquad y = \\phi(z)

    where :math:`\\tilde x` is the input, zero-padded for the ``'full'`` and
    ``'same'`` border modes (a true convolution: the filter is flipped).

    Parameters
    ----------
    size : int
        Number of filters.
    filter_size : int or (int, int)
        Filter width and height (an int means a square filter).
    stride : int or (int, int), optional
        Step between output positions (default 1).
    border_mode, inputs, name, activation, impl, **kwargs
        See :class:`Convolution`.

    Notes
    -----
    The weight ``w`` has shape ``(filters, channels, width, height)``; there
    are ``width * height * channels * filters + filters`` parameters.

    Examples
    --------
    >>> import theanets
    >>> net = theanets.convolution.Classifier(
    ...     [(8, 8, 1), dict(form='conv2', size=4, filter_size=3), 'flatten', 10])
    >>> net.layers[1].output_shape, net.layers[2].output_shape
    ((6, 6, 4), (144,))
    """

    SPATIAL_NDIM = 2


# ----------------------------------------------------------------------
# pooling layers


class Pooling(_Spatial, Layer):
    """Base class of the pooling layers (use :class:`Pool1` or :class:`Pool2`).

    Parameters
    ----------
    pool_size : int or tuple of int
        Window length along each spatial axis.
    stride : int or tuple of int, optional
        Step between windows; defaults to ``pool_size`` (windows that do not
        overlap).
    mode : {'max', 'sum', 'average'}, optional
        How each window is reduced (default ``'max'``). ``'mean'``,
        ``'average_inc_pad'`` and ``'average_exc_pad'`` are other names of
        ``'average'``.
    size : int, optional
        Number of channels; pooling keeps them, so a size different from
        the input's channels is an error. Usually left out.
    inputs, name, activation
        As for :class:`~theanets.layers.Layer`, except that the activation
        is linear by default.
    **kwargs
        Other :class:`~theanets.layers.Layer` arguments, such as ``rng``.

    Notes
    -----
    Pooling has no parameters and keeps the number of channels. Only windows
    that lie entirely inside the input are pooled, so an axis of length
    :math:`n` gives :math:`\\lfloor (n - p) / s \\rfloor + 1` outputs. Outputs
    are ``pre`` (the pooled values) and ``out`` (their activation).
    """

    SPATIAL_NDIM = None

    DEFAULT_ACTIVATION = "linear"

    def __init__(
        self,
        pool_size=None,
        stride=None,
        mode="max",
        size=None,
        inputs=None,
        name=None,
        activation=None,
        **kwargs,
    ):
        if self.SPATIAL_NDIM is None:
            raise util.ConfigurationError(
                f"layer {name!r}: Pooling is a base class; use 'pool1' or 'pool2'"
            )
        if "shape" in kwargs:
            raise util.ConfigurationError(
                f"layer {name!r}: a {type(self).__name__} layer takes no shape; its output shape "
                "follows from its input, pool_size and stride"
            )
        self.pool_size = _positive_tuple(pool_size, self.SPATIAL_NDIM, "pool_size", name)
        self.stride = _positive_tuple(stride, self.SPATIAL_NDIM, "stride", name, self.pool_size)
        canonical = _POOL_ALIASES.get(mode, mode) if isinstance(mode, str) else mode
        if canonical not in POOL_MODES:
            raise util.ConfigurationError(
                f"layer {name!r}: unknown pooling mode {mode!r}; expected one of {POOL_MODES}"
                f"{util.closest_match(str(mode), POOL_MODES + tuple(_POOL_ALIASES))}"
            )
        self.mode = canonical
        super().__init__(size=size, inputs=inputs, name=name, activation=activation, **kwargs)

    def _resolve_output_shape(self):
        shape = self._check_layout()
        if self.size is not None and shape[-1] is not None and self.size != shape[-1]:
            raise util.ConfigurationError(
                f"layer {self.name!r}: pooling keeps the {shape[-1]} channels of input "
                f"{self.input_name!r} (shape {shape}); got size={self.size}"
            )
        out = []
        for axis, (n, p, s) in enumerate(zip(shape[:-1], self.pool_size, self.stride)):
            if n is not None and p > n:
                raise util.ConfigurationError(
                    f"layer {self.name!r}: pool_size {self.pool_size} is larger than input "
                    f"{self.input_name!r} of shape {shape} (axis {axis} of an example has {n} "
                    "values)"
                )
            out.append(pool_output_length(n, p, s))
        self._check_channels(shape)
        return (*out, shape[-1])

    def transform(self, inputs):
        """Compute ``pre`` (the pooled input) and ``out``.

        Parameters
        ----------
        inputs : dict
            Maps full output names to expressions; the one this layer reads
            is pooled.

        Returns
        -------
        dict
            The pooled values as ``pre`` and their activation as ``out``,
            each with the channels of the input.
        """
        x = self._only_input(inputs)
        pre = pool(x, self.pool_size, self.stride, self.mode)
        return dict(pre=pre, out=self.activate(pre))

    def _spec_extra(self):
        return dict(
            pool_size=self._spec_value(self.pool_size),
            stride=self._spec_value(self.stride),
            mode=self.mode,
        )

    def log(self):
        """Log a one-line description of this layer."""
        self._log_line(
            "{} pooling {} stride {}", self.mode, _sizes(self.pool_size), _sizes(self.stride)
        )


class Pool1(Pooling):
    """Pooling over the time axis of ``(batch, time, channels)`` data.

    .. math::
        y_{b,t,c} = \\operatorname{reduce}_{u=0}^{p-1} x_{b,\\,s t + u,\\,c}

    with reduce one of max, sum or mean over the window.

    Parameters
    ----------
    pool_size : int
        Window length.
    stride : int, optional
        Step between windows (default ``pool_size``).
    mode : {'max', 'sum', 'average'}, optional
        Default ``'max'``.
    size, inputs, name, activation, **kwargs
        As for :class:`Pooling`.

    Examples
    --------
    >>> import theanets
    >>> layer = theanets.layers.Pool1(pool_size=2, inputs='in')
    >>> layer.pool_size, layer.stride, layer.mode
    ((2,), (2,), 'max')
    """

    SPATIAL_NDIM = 1


class Pool2(Pooling):
    """Pooling over the width and height of ``(batch, width, height, channels)`` images.

    .. math::
        y_{b,i,j,c} = \\operatorname{reduce}_{u<p_1,\\,v<p_2}
                      x_{b,\\,s_1 i + u,\\,s_2 j + v,\\,c}

    Parameters
    ----------
    pool_size : int or (int, int)
        Window width and height (an int means a square window).
    stride : int or (int, int), optional
        Horizontal and vertical step between windows; by default
        ``pool_size``, so that the windows tile the image.
    mode : {'max', 'sum', 'average'}, optional
        The reduction over each window, ``'max'`` unless given.
    size, inputs, name, activation, **kwargs
        As for :class:`Pooling`.

    Examples
    --------
    >>> import theanets
    >>> net = theanets.convolution.Regressor(
    ...     [(6, 6, 2), dict(form='pool2', pool_size=2), 'flatten', 1])
    >>> net.layers[1].output_shape
    (3, 3, 2)
    """

    SPATIAL_NDIM = 2
