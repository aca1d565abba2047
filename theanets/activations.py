r"""Activation functions for network layers.

An activation maps a layer's pre-activation values (the ``pre`` output) to its
``out`` output, element by element or along the last axis. Layers build their
activation with :func:`build` from a name, so a layer spec can say
``(10, 'tanh')`` or ``dict(size=10, activation='relu+norm:z')``.

Names understood by :func:`build`:

=================================  ==================================================
name                               function
=================================  ==================================================
``linear``                         identity
``sigmoid``, ``logistic``          logistic sigmoid
``tanh``                           hyperbolic tangent
``softmax``                        normalised exponential over the last axis
``softplus``                       :math:`\log(1 + e^x)`, a smooth rectifier
``relu``, ``rect:max``             rectified linear, :math:`\max(0, x)`
``rect:min``                       :math:`\min(x, 1)`
``trel``, ``rect:minmax``          truncated rectifier, :math:`x` clipped to [0, 1]
``norm:mean``                      subtract the mean over the last axis
``norm:max``                       divide by the largest magnitude over the last axis
``norm:std``                       divide by the standard deviation over the last axis
``norm:z``                         z-score over the last axis
``prelu``, ``leaky-relu``          rectifier with a learnable leak per unit
``lgrelu``, ``leaky-gain-relu``    rectifier with a learnable leak and gain per unit
``elu``                            exponential linear unit with a learnable gain
``maxout:K``                       maximum of ``K`` learnable lines per unit
=================================  ==================================================

Names joined by ``+`` are composed and applied **from left to right**:
``'relu+norm:z'`` first rectifies, then z-scores the result. A callable or an
:class:`Activation` instance is also accepted wherever a name is.

Every class defined below :class:`Activation` is registered under its
lowercase class name (plus its aliases), so a user-defined subclass can be
named in a layer spec as soon as its class statement has run.
"""

import functools

import numpy as np
import pytensor
import pytensor.tensor as pt

from . import util

# constants in the dtype of the expression they join, so float32 graphs stay float32
_const = util.constant_like

__all__ = [
    "Activation",
    "Elu",
    "LGrelu",
    "Linear",
    "Maxout",
    "NormMax",
    "NormMean",
    "NormStd",
    "NormZ",
    "Prelu",
    "RectMin",
    "Relu",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "Trel",
    "build",
]

#: Added to the denominators of the ``norm:*`` activations so that an all-zero
#: row does not divide by zero.
NORM_EPSILON = 1e-8


def build(name, layer=None, **kwargs):
    """Construct an activation function from a name, callable, or instance.

    Parameters
    ----------
    name : str, callable or :class:`Activation`
        What to build:

        * an :class:`Activation` instance is returned unchanged;
        * a string is looked up in the registry (case-insensitively). Names
          joined by ``+`` are built one by one, left to right, and composed so
          that the leftmost is applied first; ``'maxout:K'`` builds a
          :class:`Maxout` with ``K`` pieces;
        * any other callable is wrapped so that it has ``name`` and ``params``
          attributes; it should map a PyTensor expression to another.
    layer : :class:`theanets.layers.Layer`, optional
        The layer the activation belongs to. Learnable activations read its
        ``name``, ``output_size`` and ``rng`` to create their parameters; fixed
        functions ignore it.
    **kwargs
        Keyword arguments for the activation's constructor (e.g. ``pieces``
        for ``'maxout'``). They are passed to every part of a composition.

    Returns
    -------
    :class:`Activation`
        A callable mapping a PyTensor expression to the activated expression,
        with a ``params`` list of its learnable shared variables.

    Raises
    ------
    ConfigurationError
        For an unknown name (the message lists the valid names and suggests
        the closest one), a malformed ``'maxout:K'``, unknown keyword
        arguments, or a learnable activation without a layer.

    Examples
    --------
    >>> import pytensor.tensor as pt
    >>> act = build('relu+tanh')
    >>> act.name
    'tanh(relu)'
    >>> y = act(pt.matrix('x'))
    """
    if isinstance(name, Activation):
        return name
    if not isinstance(name, str):
        if callable(name):
            return _Wrapped(name, layer, **kwargs)
        raise util.ConfigurationError(
            f"activation must be a name, a callable or an Activation, got "
            f"{type(name).__name__} {name!r}"
        )
    text = name.strip()
    if "+" in text:
        parts = [part.strip() for part in text.split("+")]
        if not all(parts):
            raise util.ConfigurationError(
                f"activation {name!r}: every part of a '+' composition needs a name"
            )
        built = [build(part, layer, **kwargs) for part in parts]
        return functools.reduce(_Composed, built)
    key = text.lower()
    if key.startswith("maxout:"):
        pieces = key.split(":", 1)[1]
        if not pieces.isdigit() or int(pieces) < 1:
            raise util.ConfigurationError(
                f"activation {name!r}: expected 'maxout:K' with K a positive integer "
                f"number of pieces, got K={pieces!r}"
            )
        if "pieces" in kwargs:
            raise util.ConfigurationError(
                f"activation {name!r}: give the number of pieces either in the name "
                f"or as pieces=..., not both"
            )
        kwargs = dict(kwargs, pieces=int(pieces))
        key = "maxout"
    return Activation.lookup(key)(text, layer, **kwargs)


def is_known(name):
    """Return True if ``name`` is a string :func:`build` understands.

    Parameters
    ----------
    name : str
        A registered activation name, ``'maxout:K'``, or such names joined
        by ``+``.

    Returns
    -------
    bool
        Whether every ``+``-separated part names a registered activation.
    """
    for part in name.split("+"):
        key = part.strip().lower()
        if key.startswith("maxout:"):
            key = "maxout"
        if not Activation.is_registered(key):
            return False
    return True


class Activation(util.Registrar):
    r"""Base class of activation functions.

    Subclasses implement :meth:`__call__`; learnable ones create their
    parameters in ``__init__`` and append them to :attr:`params`.

    Parameters
    ----------
    name : str
        The name this activation was built from (e.g. ``'logistic'``).
    layer : :class:`theanets.layers.Layer` or None
        The layer the activation belongs to.
    **kwargs
        Options of the particular activation; a subclass lists the ones it
        understands in ``__known_kwargs__`` and any other is an error.

    Attributes
    ----------
    name : str
        The name this activation was built from.
    layer : :class:`theanets.layers.Layer` or None
        The layer the activation belongs to.
    kwargs : dict
        The options it was built with.
    params : list of shared variables
        Learnable parameters (empty for fixed functions).

    Raises
    ------
    ConfigurationError
        For an option the activation does not understand.
    """

    #: Names of the keyword arguments a subclass understands.
    __known_kwargs__ = ()

    def __init_subclass__(cls, register=True, **kwargs):
        # Internal helper classes (compositions, wrapped callables) pass
        # ``register=False`` so that they do not appear as activation names.
        if register:
            super().__init_subclass__(**kwargs)
        else:
            super(util.Registrar, cls).__init_subclass__(**kwargs)

    def __init__(self, name, layer, **kwargs):
        where = f"activation {name!r}"
        util.check_unknown_kwargs(kwargs, self.__known_kwargs__, where)
        self.name = name
        self.layer = layer
        self.kwargs = kwargs
        self.params = []

    def __call__(self, x):
        """Return the symbolic activation of ``x``.

        Parameters
        ----------
        x : PyTensor expression
            Pre-activation values; the last axis holds the layer's units.

        Returns
        -------
        PyTensor expression
            The activated values, of the same shape and dtype as ``x``.
        """
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"

    # ------------------------------------------------------------------
    # helpers for learnable activations

    def _require_layer(self):
        layer = self.layer
        missing = [a for a in ("name", "output_size", "rng") if not hasattr(layer, a)]
        if layer is None or missing:
            raise util.ConfigurationError(
                f"activation {self.name!r} has learnable parameters and must be built "
                f"for a layer (with name, output_size and rng); got {layer!r}"
            )
        return layer

    def _add_param(self, suffix, value):
        """Create a floatX shared variable named ``<layer>.<suffix>`` and keep it."""
        param = pytensor.shared(util.as_float(value), name=f"{self.layer.name}.{suffix}")
        self.params.append(param)
        return param

    def _small_positive(self, size):
        """Draw ``0.1 * |N(0, 1)|`` values from the layer's random state."""
        draw = util.as_float(self.layer.rng.randn(size))
        return 0.1 * np.abs(draw)


class _Composed(Activation, register=False):
    """Apply ``f``, then ``g`` (the result of ``'f+g'``), named ``'g(f)'``.

    Attributes
    ----------
    f : :class:`Activation`
        The function applied first.
    g : :class:`Activation`
        The function applied to the result of ``f``.
    params : list
        ``g.params + f.params``.
    """

    def __init__(self, f, g):
        super().__init__(f"{g.name}({f.name})", f.layer)
        self.f = f
        self.g = g
        inner = list(getattr(f, "params", []))
        outer = list(getattr(g, "params", []))
        self.params = outer + [p for p in inner if all(p is not q for q in outer)]

    def __call__(self, x):
        return self.g(self.f(x))


class _Wrapped(Activation, register=False):
    """Give a plain callable the ``name`` and ``params`` of an activation."""

    def __init__(self, fn, layer, **kwargs):
        name = getattr(fn, "__name__", None) or repr(fn)
        if kwargs:
            raise util.ConfigurationError(
                f"activation {name!r}: keyword arguments {sorted(kwargs)} cannot be "
                f"passed to a callable activation"
            )
        super().__init__(name, layer)
        self.fn = fn
        self.params = list(getattr(fn, "params", []))

    def __call__(self, x):
        return self.fn(x)


# ----------------------------------------------------------------------
# fixed functions


class Linear(Activation):
    r"""The identity function.

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`; it has no options, and ``layer`` is unused.

    Notes
    -----
    .. math::
       f(x) = x
    """

    def __call__(self, x):
        return x


class Sigmoid(Activation):
    r"""The logistic sigmoid (also registered as ``'logistic'``).

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`, the name being ``'sigmoid'`` or
        ``'logistic'``; no options.

    Notes
    -----
    .. math::
       f(x) = \frac{1}{1 + e^{-x}}
    """

    __extra_registration_keys__ = ["logistic"]

    def __call__(self, x):
        return pt.sigmoid(x)


class Tanh(Activation):
    r"""The hyperbolic tangent.

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`. The hyperbolic tangent takes no keyword
        arguments.

    Notes
    -----
    .. math::
       f(x) = \tanh x = \frac{e^x - e^{-x}}{e^x + e^{-x}}
    """

    def __call__(self, x):
        return pt.tanh(x)


class Softmax(Activation):
    r"""The softmax over the last axis, usually for classifier outputs.

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`; the softmax always normalises over the last
        axis, so there is no option.

    Notes
    -----
    For each vector :math:`x` along the last axis (so it works for
    ``(batch, classes)`` and ``(batch, time, classes)`` alike):

    .. math::
       f(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j

    Subtracting the maximum does not change the value but avoids overflow.
    """

    def __call__(self, x):
        return pt.special.softmax(x, axis=-1)


class Softplus(Activation):
    r"""The softplus function, a smooth approximation of the rectifier.

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation` (without keyword arguments).

    Notes
    -----
    .. math::
       f(x) = \log\left(1 + e^x\right)
    """

    def __call__(self, x):
        return pt.softplus(x)


class Relu(Activation):
    r"""The rectified linear function (also registered as ``'rect:max'``).

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`, with ``'relu'`` or ``'rect:max'`` as the
        name and no options.

    Notes
    -----
    .. math::
       f(x) = \max(0, x) = \frac{x + |x|}{2}

    It is computed from the right-hand form, whose derivative at 0 is 1/2.
    """

    __extra_registration_keys__ = ["rect:max"]

    def __call__(self, x):
        return (x + abs(x)) / 2


class RectMin(Activation):
    r"""The identity capped from above at 1 (registered as ``'rect:min'``).

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`: built from ``'rect:min'``, without options.

    Notes
    -----
    .. math::
       f(x) = \min(x, 1) = \frac{1 + x - |x - 1|}{2}
    """

    __extra_registration_keys__ = ["rect:min"]

    def __call__(self, x):
        return (1 + x - abs(x - 1)) / 2


class Trel(Activation):
    r"""The truncated rectifier: the identity clipped to [0, 1].

    Also registered as ``'rect:minmax'``.

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`. Names: ``'trel'``, ``'rect:minmax'``;
        options: none.

    Notes
    -----
    .. math::
       f(x) = \left\{ \begin{array}{ll}
              0 & x \le 0 \\
              x & 0 < x < 1 \\
              1 & x \ge 1
              \end{array} \right.
            = \frac{1 + |x| - |x - 1|}{2}
    """

    __extra_registration_keys__ = ["rect:minmax"]

    def __call__(self, x):
        return (1 + abs(x) - abs(x - 1)) / 2


class NormMean(Activation):
    r"""Subtractive normalisation over the last axis (``'norm:mean'``).

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`. Any keyword argument is an error.

    Notes
    -----
    For each vector :math:`x` of :math:`n` values along the last axis:

    .. math::
       f(x)_i = x_i - \frac{1}{n} \sum_j x_j
    """

    __extra_registration_keys__ = ["norm:mean"]

    def __call__(self, x):
        return x - x.mean(axis=-1, keepdims=True)


class NormMax(Activation):
    r"""Divisive normalisation by the largest magnitude (``'norm:max'``).

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`; :math:`\epsilon` is fixed, so no keyword
        argument is accepted.

    Notes
    -----
    For each vector :math:`x` along the last axis, with a small
    :math:`\epsilon = 10^{-8}` guarding against division by zero:

    .. math::
       f(x)_i = \frac{x_i}{\max_j |x_j| + \epsilon}
    """

    __extra_registration_keys__ = ["norm:max"]

    def __call__(self, x):
        return x / (abs(x).max(axis=-1, keepdims=True) + _const(NORM_EPSILON, x))


class NormStd(Activation):
    r"""Divisive normalisation by the standard deviation (``'norm:std'``).

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation` -- a keyword argument is an error here.

    Notes
    -----
    For each vector :math:`x` along the last axis, with :math:`\sigma(x)` its
    (population) standard deviation and :math:`\epsilon = 10^{-8}`:

    .. math::
       f(x)_i = \frac{x_i}{\sigma(x) + \epsilon}
    """

    __extra_registration_keys__ = ["norm:std"]

    def __call__(self, x):
        return x / (x.std(axis=-1, keepdims=True) + _const(NORM_EPSILON, x))


class NormZ(Activation):
    r"""Z-score normalisation over the last axis (``'norm:z'``).

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`, keyword arguments excepted: there are
        none.

    Notes
    -----
    For each vector :math:`x` along the last axis, with mean :math:`\mu(x)`,
    (population) standard deviation :math:`\sigma(x)` and
    :math:`\epsilon = 10^{-8}`:

    .. math::
       f(x)_i = \frac{x_i - \mu(x)}{\sigma(x) + \epsilon}
    """

    __extra_registration_keys__ = ["norm:z"]

    def __call__(self, x):
        centred = x - x.mean(axis=-1, keepdims=True)
        return centred / (x.std(axis=-1, keepdims=True) + _const(NORM_EPSILON, x))


# ----------------------------------------------------------------------
# learnable functions


class Prelu(Activation):
    r"""Parametric rectifier with a learnable leak per unit.

    Also registered as ``'leaky-relu'``.

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`, without options. A layer is required: it
        names the ``leak`` parameter and gives its length (``output_size``).

    Notes
    -----
    Each unit :math:`i` has a parameter :math:`\ell_i` (``<layer>.leak``); the
    slope for negative inputs is :math:`e^{\ell_i}`, which keeps it positive:

    .. math::
       f(x_i) = \frac{x_i + |x_i|}{2} + e^{\ell_i} \frac{x_i - |x_i|}{2}
              = \left\{ \begin{array}{ll}
                x_i & x_i \ge 0 \\
                e^{\ell_i} x_i & x_i < 0
                \end{array} \right.

    The leaks are initialised to :math:`0.1 |z|` with :math:`z \sim N(0, 1)`
    drawn from the layer's random state.

    References
    ----------
    K. He, X. Zhang, S. Ren & J. Sun (2015), "Delving Deep into Rectifiers:
    Surpassing Human-Level Performance on ImageNet Classification."
    https://arxiv.org/abs/1502.01852
    """

    __extra_registration_keys__ = ["leaky-relu"]

    def __init__(self, name, layer, **kwargs):
        super().__init__(name, layer, **kwargs)
        size = self._require_layer().output_size
        self.leak = self._add_param("leak", self._small_positive(size))

    def __call__(self, x):
        return (x + abs(x)) / 2 + pt.exp(self.leak) * (x - abs(x)) / 2


class LGrelu(Activation):
    r"""Rectifier with a learnable gain and leak per unit.

    Also registered as ``'leaky-gain-relu'``.

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`; the layer, which must be given, sets
        the length of ``gain`` and ``leak`` and draws them. There are no
        keyword options.

    Notes
    -----
    Each unit :math:`i` has a gain :math:`g_i` (``<layer>.gain``) and a leak
    :math:`\ell_i` (``<layer>.leak``), used through their exponentials:

    .. math::
       f(x_i) = e^{g_i} \frac{x_i + |x_i|}{2} + e^{\ell_i} \frac{x_i - |x_i|}{2}

    Both are initialised to :math:`0.1 |z|` with :math:`z \sim N(0, 1)` from
    the layer's random state, the gains drawn first.
    """

    __extra_registration_keys__ = ["leaky-gain-relu"]

    def __init__(self, name, layer, **kwargs):
        super().__init__(name, layer, **kwargs)
        size = self._require_layer().output_size
        self.gain = self._add_param("gain", self._small_positive(size))
        self.leak = self._add_param("leak", self._small_positive(size))

    def __call__(self, x):
        return pt.exp(self.gain) * (x + abs(x)) / 2 + pt.exp(self.leak) * (x - abs(x)) / 2


class Elu(Activation):
    r"""Exponential linear unit with a learnable gain per unit.

    Parameters
    ----------
    name, layer, **kwargs
        As for :class:`Activation`, with a layer whose ``output_size`` units
        each get a gain; any keyword argument is an error.

    Notes
    -----
    Each unit :math:`i` has a parameter :math:`g_i` (``<layer>.gain``):

    .. math::
       f(x_i) = \left\{ \begin{array}{ll}
                x_i & x_i \ge 0 \\
                e^{g_i} \left(e^{x_i} - 1\right) & x_i < 0
                \end{array} \right.

    The gains are initialised to :math:`0.1 |z|` with :math:`z \sim N(0, 1)`
    from the layer's random state.

    References
    ----------
    D.-A. Clevert, T. Unterthiner & S. Hochreiter (2015), "Fast and Accurate
    Deep Network Learning by Exponential Linear Units (ELUs)."
    https://arxiv.org/abs/1511.07289
    """

    def __init__(self, name, layer, **kwargs):
        super().__init__(name, layer, **kwargs)
        size = self._require_layer().output_size
        self.gain = self._add_param("gain", self._small_positive(size))

    def __call__(self, x):
        # expm1 of min(x, 0) keeps the unused branch finite for large x, so
        # the gradient through the switch has no inf * 0.
        negative = pt.exp(self.gain) * pt.expm1(pt.minimum(x, 0))
        return pt.switch(x >= 0, x, negative)


class Maxout(Activation):
    r"""Maximum of ``K`` learnable linear pieces per unit (``'maxout:K'``).

    Parameters
    ----------
    name, layer
        As for :class:`Activation`; there must be a layer, and each of its
        ``output_size`` units gets :math:`K` slopes and intercepts.
    **kwargs
        Must hold ``pieces``, the number :math:`K` of linear pieces (a
        positive int); :func:`build` takes it from a name ``'maxout:K'``.
        Any other keyword argument is an error.

    Notes
    -----
    Each unit :math:`i` has slopes :math:`m_{ik}` (``<layer>.slope``, shape
    ``(size, K)``) and intercepts :math:`b_{ik}` (``<layer>.intercept``, shape
    ``(size, K)``):

    .. math::
       f(x_i) = \max_{k=1}^{K} \left( m_{ik} x_i + b_{ik} \right)

    Both are drawn from :math:`N(0, 1)` with the layer's random state, slopes
    first. With two pieces and zero intercepts this family contains
    :class:`Relu` (slopes 0 and 1) and the leaky rectifiers.

    References
    ----------
    I. Goodfellow, D. Warde-Farley, M. Mirza, A. Courville & Y. Bengio
    (2013), "Maxout Networks." https://arxiv.org/abs/1302.4389
    """

    __known_kwargs__ = ("pieces",)

    def __init__(self, name, layer, **kwargs):
        super().__init__(name, layer, **kwargs)
        pieces = kwargs.get("pieces")
        self.pieces = util.check_number(
            "pieces", pieces, low=1, integer=True, where=f"activation {name!r} (write 'maxout:K')"
        )
        size = self._require_layer().output_size
        rng = self.layer.rng
        self.slope = self._add_param("slope", rng.randn(size, self.pieces))
        self.intercept = self._add_param("intercept", rng.randn(size, self.pieces))

    def __call__(self, x):
        return (x[..., None] * self.slope + self.intercept).max(axis=-1)
