r"""Regularizers: extra loss terms and graph changes that discourage overfitting.

A regularizer does one of two things to a model:

* it adds a scalar term to the training loss (:meth:`Regularizer.loss`), as
  :class:`WeightL2`, :class:`WeightL1`, :class:`HiddenL1`,
  :class:`Contractive`, :class:`RecurrentNorm` and :class:`RecurrentState`
  do; or
* it rewrites graph outputs while the graph is built
  (:meth:`Regularizer.modify_graph`), as :class:`BernoulliDropout` and
  :class:`GaussianNoise` do.

The training loss of a network is

.. math::
    \mathcal{L} = \sum_j \lambda_j \mathcal{L}_j
                + \sum_r w_r R_r(\theta, Z)

where the first sum runs over the network's losses and the second over the
regularizers, each with weight :math:`w_r` and term :math:`R_r`.

Regularizers are usually asked for with keyword arguments, and the same
arguments work for training and for evaluation (``train``, ``itertrain``,
``loss``, ``monitors``, ``predict``, ``feed_forward``, ``score``)::

    net.train(data, weight_l2=1e-4, hidden_dropout=0.3)
    net.predict(x, hidden_dropout=0.3)   # Monte-Carlo dropout

:func:`from_kwargs` turns such arguments into a list of regularizers; see
there for every accepted name. A subclass of :class:`Regularizer` defined in
user code is available by its lowercase class name at once::

    class WeightInverse(theanets.Regularizer):
        def loss(self, layers, outputs):
            return sum((1 / (p * p).sum(axis=0)).sum()
                       for l in layers for p in l.params if p.ndim == 2)

    net.train(data, weightinverse=0.001)
"""

import fnmatch
import inspect
import logging
import math
import numbers
import warnings
import zlib

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytensor.tensor.random as ptr
from pytensor.gradient import jacobian
from pytensor.graph.traversal import toposort
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.math import Dot

from . import util

__all__ = [
    "Regularizer",
    "WeightL2",
    "WeightL1",
    "HiddenL1",
    "Contractive",
    "RecurrentNorm",
    "RecurrentState",
    "BernoulliDropout",
    "GaussianNoise",
    "DEFAULT_SEED",
    "jacobian_norm",
    "from_kwargs",
    "known_kwargs",
]

#: Seed of the random streams of dropout and noise when no ``rng`` is given.
DEFAULT_SEED = 13

#: Suffixes under which dropout and noise keep the unmodified outputs.
_KEPT_SUFFIXES = ("-predrop", "-prenoise")

#: Keyword arguments of :func:`from_kwargs` that are not registry names.
_SPECIAL_KWARGS = (
    "input_dropout",
    "hidden_dropout",
    "output_dropout",
    "dropout",
    "input_noise",
    "hidden_noise",
    "output_noise",
    "noise",
    "rng",
    "regularizers",
)


# ----------------------------------------------------------------------
# small helpers


def _warn(msg, *args):
    util.log(msg, *args, level=logging.WARNING)


def _glob_escape(name):
    """Escape glob metacharacters so that ``name`` matches only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _check_pattern(pattern, where):
    if pattern is None or isinstance(pattern, str):
        return pattern
    if isinstance(pattern, (list, tuple)) and all(isinstance(p, str) for p in pattern):
        return tuple(pattern)
    raise util.ConfigurationError(
        f"{where}: pattern must be a glob string or a sequence of them, got {pattern!r}"
    )


def _patterns(pattern):
    return (pattern,) if isinstance(pattern, str) else tuple(pattern)


def _layer_roles(layers):
    """Split layers into (input layers, hidden layers, output layers)."""
    from .layers import Input

    layers = list(layers)
    inputs = [layer for layer in layers if isinstance(layer, Input)]
    outputs = [layers[-1]] if layers and not isinstance(layers[-1], Input) else []
    hidden = [layer for layer in layers if layer not in inputs and layer not in outputs]
    return inputs, hidden, outputs


def _out_patterns(layers):
    return tuple(_glob_escape(layer.output_name) for layer in layers)


def _match_names(names, pattern):
    """Names matching a glob (or any glob of a sequence), in the given order.

    The unmodified copies kept by dropout and noise (``'-predrop'``,
    ``'-prenoise'``) only match patterns that mention those suffixes.
    """
    pats = _patterns(pattern)
    mention = any(s in p for p in pats for s in _KEPT_SUFFIXES)
    result = []
    for name in names:
        if not mention and name.endswith(_KEPT_SUFFIXES):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in pats):
            result.append(name)
    return result


def _freeze(value):
    """A hashable stand-in for an option value (for cache keys)."""
    if value is None or isinstance(value, (str, bool, numbers.Number)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    return (type(value).__qualname__, id(value))


def _check_seed(rng, where="rng"):
    """Turn an ``rng`` argument into an integer seed."""
    if rng is None:
        return DEFAULT_SEED
    if isinstance(rng, bool):
        raise util.ConfigurationError(f"{where} must be an integer seed, got {rng!r}")
    if isinstance(rng, numbers.Integral):
        if rng < 0:
            raise util.ConfigurationError(f"{where} must be a non-negative seed, got {rng!r}")
        return int(rng)
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(2**31 - 1))
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**31 - 1))
    raise util.ConfigurationError(
        f"{where} must be an integer seed (or a NumPy RandomState/Generator to draw one from), "
        f"got {rng!r}"
    )


def _as_scalar(n, dtype):
    return pt.cast(n, dtype)


def _safe_mean(x):
    """Mean of all elements; 0 (not NaN) for an empty tensor."""
    count = pt.maximum(x.size, 1)
    return x.sum() / _as_scalar(count, x.dtype)


# ----------------------------------------------------------------------
# the base class


class Regularizer(util.Registrar):
    r"""A regularizer of a neural network model.

    Subclasses override :meth:`loss` to add a term to the training loss, or
    :meth:`modify_graph` to rewrite graph outputs as they are built (rarely
    both). Every subclass is registered under its lowercase class name (plus
    the aliases in ``__extra_registration_keys__``), so it can be asked for
    by keyword: ``net.train(..., myregularizer=0.1)`` builds
    ``MyRegularizer(weight=0.1)`` and ``myregularizer=dict(weight=0.1,
    pattern='hid1:out')`` passes the dict to the constructor.

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Shell-style glob(s) naming the parameters (``'hid1.w'``) or graph
        outputs (``'hid1:out'``) the regularizer applies to. ``None`` means
        the subclass's default.
    weight : float, optional
        Strength of the regularizer: the multiplier of its loss term, or
        (for dropout and noise) its rate. Must be a finite real number; the
        built-in regularizers also require it to be non-negative.

    Attributes
    ----------
    pattern : str, tuple of str or None
        The glob pattern(s).
    weight : float
        The strength.

    Notes
    -----
    The total training loss of a network with losses :math:`\mathcal{L}_j`
    (weights :math:`\lambda_j`) and regularizers :math:`R_r` (weights
    :math:`w_r`) is

    .. math::
        \mathcal{L} = \sum_j \lambda_j \mathcal{L}_j + \sum_r w_r R_r .

    Examples
    --------
    A custom regularizer that penalises short weight columns. Defining the
    class registers it, so its lowercase name works as a keyword at once:

    >>> import numpy as np
    >>> import theanets
    >>> class ShortColumns(theanets.Regularizer):
    ...     def loss(self, layers, outputs):
    ...         return sum((1 / (p * p).sum(axis=0)).sum()
    ...                    for layer in layers for p in layer.params if p.ndim == 2)
    >>> theanets.Regularizer.is_registered('shortcolumns')
    True

    It is asked for when training, and ``loss``/``loss_value`` include its
    term, multiplied by the weight:

    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    >>> net = theanets.Regressor([4, 8, 2])
    >>> _ = net.train([x, y], algo='sgd', max_updates=2, shortcolumns=0.001)
    >>> ws = [net.find(name, 'w').get_value() for name in ('hid1', 'out')]
    >>> expected = sum((1 / (w ** 2).sum(axis=0)).sum() for w in ws)
    >>> extra = net.loss_value(x, y, shortcolumns=1.0) - net.loss_value(x, y)
    >>> bool(np.isclose(extra, expected))
    True
    """

    #: Whether the weight must be non-negative (True for the built-ins).
    _NONNEGATIVE_WEIGHT = False

    def __init__(self, pattern=None, weight=0.0):
        self.pattern = _check_pattern(pattern, type(self).__name__)
        self.weight = self._check_weight(weight)

    @classmethod
    def build(cls, key, *args, **kwargs):
        """Create the regularizer registered under ``key``.

        Positional arguments follow the constructor's order, ``(pattern,
        weight, ...)``, except that a number given first is the weight, so
        ``Regularizer.build('weight_l2', 0.01)`` works as it did in
        Theano-era scripts.

        Parameters
        ----------
        key : str
            A registered name or alias (``'weight_l2'``, ``'hidden_l1'``...).
        *args
            ``(pattern, weight, ...)``, or a single number: the weight.
        **kwargs
            More constructor arguments.

        Returns
        -------
        Regularizer

        Raises
        ------
        ConfigurationError
            For an unknown name, or when a number given first (the weight) is
            followed by more positional arguments or by ``weight=``.

        Examples
        --------
        >>> Regularizer.build('weight_l2', 0.01)
        WeightL2(pattern=None, weight=0.01)
        >>> Regularizer.build('hidden_l1', 'hid1:out', 0.1)
        HiddenL1(pattern='hid1:out', weight=0.1)
        """
        klass = cls.lookup(key)
        if args and isinstance(args[0], numbers.Real) and not isinstance(args[0], bool):
            if len(args) > 1 or "weight" in kwargs:
                raise util.ConfigurationError(
                    f"Regularizer.build({key!r}, {', '.join(map(repr, args))}): a number "
                    "given first is the weight; give the other arguments by keyword "
                    "(pattern=..., ...)"
                )
            args, kwargs = (), {**kwargs, "weight": args[0]}
        return klass(*args, **kwargs)

    def _check_weight(self, weight):
        name = type(self).__name__
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise util.ConfigurationError(
                f"{name}: weight must be a real number, got {type(weight).__name__} {weight!r}"
            )
        weight = float(weight)
        if not math.isfinite(weight):
            raise util.ConfigurationError(f"{name}: weight must be finite, got {weight!r}")
        if self._NONNEGATIVE_WEIGHT and weight < 0:
            raise util.ConfigurationError(
                f"{name}: weight must be a non-negative number, got {weight!r}"
            )
        return weight

    def log(self):
        """Log a one-line description of this regularizer."""
        util.log(
            "regularizer {}: weight {}, pattern {}", type(self).__name__, self.weight, self.pattern
        )

    def loss(self, layers, outputs):
        """Compute a scalar term to add to the model's loss.

        Parameters
        ----------
        layers : list of :class:`theanets.layers.Layer`
            The layers of the model being regularized.
        outputs : dict
            Maps the fully scoped name of every graph output
            (``'hid1:out'``, ...) to its expression.

        Returns
        -------
        scalar expression or number
            The term, before multiplication by :attr:`weight`; 0 by default.
        """
        return 0

    def modify_graph(self, outputs):
        """Rewrite the outputs of one layer while the graph is built.

        Parameters
        ----------
        outputs : dict
            Maps the fully scoped names of one layer's outputs to their
            expressions. The dictionary is changed in place; the network
            keeps whatever it holds afterwards. The default does nothing.

        Notes
        -----
        The network calls this while it builds the graph, once after each
        layer, so a change is seen by the later layers and by the losses.
        For example, :class:`BernoulliDropout` replaces each matching output
        with an expression in which randomly chosen entries are set to zero
        each time it is evaluated (keeping the unchanged output under
        ``'<name>-predrop'``), and :class:`GaussianNoise` adds noise the same
        way. Any regularizer that needs to change the structure of the
        computation graph implements this method; one that only adds a term
        to the loss implements :meth:`loss`.
        """

    def pop_updates(self):
        """Return and forget the ``(shared, expression)`` updates made so far.

        The network calls this after each :meth:`modify_graph` and compiles
        the updates into every function that evaluates the graph (random
        streams use them to advance). The default has none.

        Returns
        -------
        list of (shared variable, expression)
        """
        return []

    def cache_key(self):
        """Return a hashable description of this regularizer.

        Two regularizers with equal keys build equal graphs, so compiled
        functions may be shared between them. The key holds the class, the
        weight, the pattern and every public attribute (options such as
        ``wrt`` and the ``rng`` seed).

        Returns
        -------
        tuple
        """
        cls = type(self)
        options = tuple(
            sorted(
                (k, _freeze(v))
                for k, v in vars(self).items()
                if not k.startswith("_") and k not in ("weight", "pattern")
            )
        )
        extra = getattr(self, "_stream_index", 0)
        return (
            cls.__module__,
            cls.__qualname__,
            self.weight,
            _freeze(self.pattern),
            options,
            extra,
        )

    def _check_network(self, network):
        """Warn (or raise) when this regularizer cannot apply to a network.

        Called by :func:`from_kwargs`; the default checks nothing.
        """

    def __repr__(self):
        return f"{type(self).__name__}(pattern={self.pattern!r}, weight={self.weight!r})"


# ----------------------------------------------------------------------
# penalties on parameters


class _WeightPenalty:
    """Shared code of :class:`WeightL2` and :class:`WeightL1`."""

    _NONNEGATIVE_WEIGHT = True

    def _effective_pattern(self):
        return "*" if self.pattern is None else self.pattern

    def _matched_params(self, layers):
        result, seen = [], set()
        for _, param in util.params_matching(layers, self._effective_pattern()):
            if param.ndim > 1 and id(param) not in seen:
                seen.add(id(param))
                result.append(param)
        return result

    def _check_network(self, network):
        if self.weight and not self._matched_params(network.layers):
            _warn(
                "{}: pattern {!r} matches no weight (parameter with more than one axis) of "
                "this network; parameters: {}",
                type(self).__name__,
                self._effective_pattern(),
                [p.name for p in network.params],
            )

    def loss(self, layers, outputs):
        params = self._matched_params(layers)
        if not params:
            return 0
        return sum(self._penalty(p) for p in params) / len(params)


class WeightL2(_WeightPenalty, Regularizer):
    r"""Penalize the squared values of the model's weights ("weight decay").

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Glob(s) matched against parameter names such as ``'hid1.w'``;
        default ``'*'``. Only parameters with more than one axis count, so
        biases are never penalized.
    weight : float, optional
        Strength of the penalty (non-negative).

    Notes
    -----
    The term added to the loss is

    .. math::
        R = \frac{1}{|\Omega|} \sum_{i \in \Omega} \operatorname{mean}(W_i^2)

    where :math:`\Omega` is the set of matching weight arrays and the mean
    runs over all entries of :math:`W_i`. Seen as a prior, it says that
    weights are drawn from a zero-mean Gaussian.

    Examples
    --------
    Registered as ``weight_l2`` and ``weight_decay``. A number is the
    weight; a dict holds constructor arguments:

    >>> import numpy as np
    >>> import theanets
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    >>> net = theanets.Regressor([4, 8, 2])
    >>> _ = net.train([x, y], algo='sgd', max_updates=2, weight_l2=1e-4)
    >>> _ = net.train([x, y], algo='sgd', max_updates=2,
    ...               weight_decay=dict(weight=1e-4, pattern='hid*'))

    ``loss`` and ``loss_value`` include the term. With weight 1 and the
    default pattern it is the average of the mean squares of the two weight
    arrays (the biases are left out):

    >>> ws = [net.find(name, 'w').get_value() for name in ('hid1', 'out')]
    >>> extra = net.loss_value(x, y, weight_l2=1.0) - net.loss_value(x, y)
    >>> bool(np.isclose(extra, np.mean([(w ** 2).mean() for w in ws])))
    True

    The keyword is accepted when predicting too, where a regularizer that
    only adds a loss term changes nothing:

    >>> bool(np.allclose(net.predict(x, weight_l2=1e-4), net.predict(x)))
    True
    """

    __extra_registration_keys__ = ["weight_l2", "weight_decay"]

    def _penalty(self, param):
        return pt.sqr(param).mean()


class WeightL1(_WeightPenalty, Regularizer):
    r"""Penalize the absolute values of the model's weights (weight sparsity).

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Glob(s) matched against parameter names such as ``'hid1.w'``;
        default ``'*'``. Biases (one-axis parameters) are never penalized.
    weight : float, optional
        Strength of the penalty (non-negative).

    Notes
    -----
    The term added to the loss is

    .. math::
        R = \frac{1}{|\Omega|} \sum_{i \in \Omega} \operatorname{mean}(|W_i|)

    Seen as a prior, it says that weights follow a Laplace distribution;
    it pushes many weights to exactly zero.

    Examples
    --------
    Registered as ``weight_l1`` and ``weight_sparsity``:

    >>> import numpy as np
    >>> import theanets
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    >>> net = theanets.Regressor([4, 8, 2])
    >>> _ = net.train([x, y], algo='sgd', max_updates=2, weight_l1=1e-4)

    With a pattern only the matching weights count; here the output
    layer's, with weight 1:

    >>> w = net.find('out', 'w').get_value()
    >>> reg = dict(weight=1.0, pattern='out.w')
    >>> extra = net.loss_value(x, y, weight_sparsity=reg) - net.loss_value(x, y)
    >>> bool(np.isclose(extra, abs(w).mean()))
    True

    Predictions do not change:

    >>> bool(np.allclose(net.predict(x, weight_l1=1e-4), net.predict(x)))
    True
    """

    __extra_registration_keys__ = ["weight_l1", "weight_sparsity"]

    def _penalty(self, param):
        return abs(param).mean()


# ----------------------------------------------------------------------
# penalties on graph outputs


class _OutputPenalty:
    """Shared code of the regularizers that read graph outputs."""

    _NONNEGATIVE_WEIGHT = True

    def _effective_pattern(self, layers):
        if self.pattern is not None:
            return self.pattern
        _, hidden, _ = _layer_roles(layers)
        return _out_patterns(hidden)

    def _matched_outputs(self, layers, outputs):
        return [(n, outputs[n]) for n in _match_names(outputs, self._effective_pattern(layers))]

    def _check_network(self, network):
        if not self.weight:
            return
        pattern = self._effective_pattern(network.layers)
        if not _match_names(network.output_shapes, pattern):
            what = (
                f"pattern {self.pattern!r}"
                if self.pattern is not None
                else ("the default pattern (hidden layers' outputs; this network has none)")
            )
            _warn(
                "{}: {} matches no output of this network; outputs: {}",
                type(self).__name__,
                what,
                sorted(network.output_shapes),
            )


class HiddenL1(_OutputPenalty, Regularizer):
    r"""Penalize the absolute values of hidden activations (representation sparsity).

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Glob(s) matched against graph output names; default: the ``:out``
        of every hidden layer (neither an input layer nor the last layer).
    weight : float, optional
        Strength of the penalty (non-negative).

    Notes
    -----
    The term added to the loss is

    .. math::
        R = \frac{1}{|\Omega|} \sum_{i \in \Omega} \operatorname{mean}(|Z_i|)

    where :math:`\Omega` is the set of matching graph outputs and the mean
    runs over examples and units of :math:`Z_i`. Activity is then spent only
    where it lowers the other parts of the loss, which tends to give sparse
    codes that tile the data with few active features at a time.

    References
    ----------
    .. [Ng11] A. Ng (2011). Sparse autoencoder. CS294A lecture notes,
       Stanford University.

    Examples
    --------
    Registered as ``hidden_l1`` and ``hidden_sparsity``; give either keyword
    when training or evaluating a model:

    >>> import numpy as np
    >>> import theanets
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    >>> net = theanets.Regressor([4, 8, 8, 2])
    >>> _ = net.train([x, y], algo='sgd', max_updates=2, hidden_sparsity=0.1)

    By default every hidden layer's output is penalized. To include only
    some graph outputs, give a pattern:

    >>> _ = net.train([x, y], algo='sgd', max_updates=2,
    ...               hidden_sparsity=dict(weight=0.1, pattern='hid2:out'))

    With weight 1 the term is the average of the mean absolute activations
    of the two hidden layers:

    >>> out = net.feed_forward(x)
    >>> expected = (abs(out['hid1:out']).mean() + abs(out['hid2:out']).mean()) / 2
    >>> extra = net.loss_value(x, y, hidden_l1=1.0) - net.loss_value(x, y)
    >>> bool(np.isclose(extra, expected))
    True

    When running the model forward to make a prediction the keyword is
    accepted and changes nothing:

    >>> bool(np.allclose(net.predict(x, hidden_sparsity=0.1), net.predict(x)))
    True
    """

    __extra_registration_keys__ = ["hidden_l1", "hidden_sparsity"]

    def loss(self, layers, outputs):
        matched = self._matched_outputs(layers, outputs)
        if not matched:
            return 0
        return sum(abs(expr).mean() for _, expr in matched) / len(matched)


class Contractive(_OutputPenalty, Regularizer):
    r"""Penalize the sensitivity of hidden representations to the input.

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Glob(s) matched against graph output names; default: the ``:out``
        of every hidden layer.
    weight : float, optional
        Strength of the penalty (non-negative).
    wrt : str or sequence of str, optional
        Glob(s) naming the input layers (``'in'``, or ``'in:out'``) the
        derivatives are taken with respect to; default ``'*'``, every input.

    Notes
    -----
    The term added to the loss is

    .. math::
        R = \frac{1}{|\Omega|} \sum_{i \in \Omega} \frac{1}{N} \sum_{n=1}^N
            \sum_{x \in X}
            \left\| \frac{\partial Z_i[n]}{\partial x[n]} \right\|_F^2

    where :math:`\Omega` is the set of matching graph outputs, :math:`X` the
    matching network inputs, :math:`N` the number of examples in a batch and
    :math:`\|\cdot\|_F^2` the sum of squared entries: the squared Frobenius
    norm of the Jacobian of one example's representation with respect to
    that example's input, through every layer and activation in between.
    Small Jacobians make the representation change little when the input
    moves off the data, so features become insensitive to directions the
    data do not vary in.

    How the Jacobian is computed, always exactly and for the graph as
    dropout and noise rewrote it:

    * **Chain rule** when the output sits on a chain of matrix products
      and elementwise functions reaching one input: dense and tied layers
      with elementwise activations (including the learnable ``prelu``,
      ``lgrelu`` and ``elu``), with or without dropout or noise in between.
      With :math:`a_l = u_{l-1} W_l`, :math:`u_l = f_l(a_l)` and
      :math:`s = \partial u_0 / \partial x` (1 without an input rewrite),
      one example's Jacobian is the product
      :math:`\operatorname{diag}(s) W_1 \operatorname{diag}(f_1') W_2 \cdots
      W_L \operatorname{diag}(f_L')`. For one layer its norm has the closed
      form :math:`\sum_k f'(a_{nk})^2 \sum_d W_{dk}^2 s_{nd}^2`, about one
      extra matrix product. Deeper, the partial products are carried level
      by level for the whole batch, either the per-example Jacobians or
      their Gram matrices :math:`J^\top J`, whichever takes fewer
      multiplications for the layer sizes, with batched matrix products;
      the outputs of one chain (such as the default pattern's hidden
      layers) share that work. Level :math:`l` costs about
      :math:`N n_{l-1} n_l \min(n_{in}, n_{l-1} + n_l)` multiplications
      (:math:`n_l` the layer sizes, :math:`N` the batch size), and its
      gradient about twice that: far more than the layers themselves, but
      much less than forming the full Jacobian.
    * **Closed form** for an elementwise function of several products
      ``u_j W_j`` that each read a different input (a layer with several
      input layers).
    * **Full Jacobian** otherwise (softmax, ``norm:*`` or maxout
      activations, convolutions, recurrences...):
      ``pytensor.gradient.jacobian(Z.sum(axis=0), x, vectorize=True)``;
      because examples do not interact, the gradient of unit :math:`k`
      summed over the batch stacks the per-example rows
      :math:`\partial Z[n, k] / \partial x[n]`. This costs one vectorized
      backward pass per unit of :math:`Z` (memory
      :math:`\propto K \cdot \mathrm{size}(x)`), so keep such outputs small.

    All rely on examples being independent: a layer that mixes examples of
    a batch (e.g. batch normalisation with batch statistics) makes the
    summed gradient include cross-example terms, and the value is then not
    the per-example Jacobian norm.

    References
    ----------
    .. [Rif11] S. Rifai, P. Vincent, X. Muller, X. Glorot & Y. Bengio (2011).
       Contractive auto-encoders: explicit invariance during feature
       extraction. ICML 2011.

    Examples
    --------
    Registered as ``contractive``. To use it at training time:

    >>> import numpy as np
    >>> import theanets
    >>> x = np.random.default_rng(0).normal(size=(16, 4))
    >>> net = theanets.Autoencoder([4, (3, 'sigmoid'), ('tied', 4)])
    >>> _ = net.train([x], algo='sgd', max_updates=2, contractive=0.1)

    By default all hidden layer outputs are included, with respect to every
    input. To choose the graph outputs and the inputs:

    >>> _ = net.train([x], algo='sgd', max_updates=2,
    ...               contractive=dict(weight=0.1, pattern='hid1:out', wrt='in'))

    Deeper representations are penalized through every layer below them:

    >>> deep = theanets.Autoencoder(
    ...     [4, (3, 'sigmoid'), (2, 'sigmoid'), ('tied', 3, 'sigmoid'), ('tied', 4)])
    >>> _ = deep.train([x], algo='sgd', max_updates=2,
    ...                contractive=dict(weight=0.1, pattern='hid3:out', wrt='in'))

    For one sigmoid layer reading the input, the squared Jacobian norm of
    example :math:`n` is :math:`\sum_k \sigma'(a_{nk})^2 \sum_d W_{dk}^2`:

    >>> w = net.find('hid1', 'w').get_value()
    >>> h = net.feed_forward(x)['hid1:out']
    >>> expected = (((h * (1 - h)) ** 2) @ (w ** 2).sum(axis=0)).mean()
    >>> extra = net.loss_value(x, contractive=1.0) - net.loss_value(x)
    >>> bool(np.isclose(extra, expected))
    True

    When running the model forward to make a prediction the keyword is
    accepted and changes nothing:

    >>> bool(np.allclose(net.predict(x, contractive=0.1), net.predict(x)))
    True
    """

    def __init__(self, pattern=None, weight=0.0, wrt="*"):
        super().__init__(pattern=pattern, weight=weight)
        self.wrt = _check_pattern(wrt, "Contractive wrt")
        if self.wrt is None:
            self.wrt = "*"

    def _matched_inputs(self, layers):
        inputs, _, _ = _layer_roles(layers)
        pats = _patterns(self.wrt)
        return [
            layer
            for layer in inputs
            if any(
                fnmatch.fnmatchcase(layer.name, p) or fnmatch.fnmatchcase(layer.output_name, p)
                for p in pats
            )
        ]

    def _check_network(self, network):
        super()._check_network(network)
        if self.weight and not self._matched_inputs(network.layers):
            inputs, _, _ = _layer_roles(network.layers)
            _warn(
                "Contractive: wrt={!r} matches no input layer of this network; input layers: {}",
                self.wrt,
                [layer.name for layer in inputs],
            )

    def loss(self, layers, outputs):
        matched = self._matched_outputs(layers, outputs)
        inputs = self._matched_inputs(layers)
        if not matched or not inputs:
            return 0
        for layer in inputs:
            if getattr(layer, "sparse", False):
                raise util.ConfigurationError(
                    f"Contractive: cannot differentiate with respect to the sparse input "
                    f"{layer.name!r}; exclude it with wrt="
                )
        xs = [layer.variable for layer in inputs]
        terms = _jacobian_norms([expr for _, expr in matched], xs)
        return sum(terms) / len(terms)

    def log(self):
        """Log a one-line description of this regularizer."""
        util.log(
            "regularizer Contractive: weight {}, pattern {}, wrt {}",
            self.weight,
            self.pattern,
            self.wrt,
        )


def _dependents(outputs, xs):
    """Ids of the variables in the graph of ``outputs`` that depend differentiably on ``xs``.

    Dependence is not followed into integer results (such as ``x.shape``), so
    a random mask whose size comes from ``x`` does not count as a function of
    ``x``.
    """
    dep = {id(x) for x in xs}
    for node in toposort(outputs, blockers=xs):
        if any(id(i) in dep for i in node.inputs):
            dep.update(
                id(o) for o in node.outputs if str(getattr(o, "dtype", "")).startswith("float")
            )
    return dep


def _elementwise_region(top, dep, stop):
    """Walk down from ``top`` through Elemwise nodes on the ``dep`` variables.

    Returns the list of variables where the walk stops (``stop(var)`` is
    True for them), or None when a dependent variable is reached that is
    neither elementwise (with unchanged broadcasting) nor a stop.
    """
    frontier, seen, stack = [], set(), [top]
    while stack:
        var = stack.pop()
        if id(var) in seen:
            continue
        seen.add(id(var))
        if stop(var):
            frontier.append(var)
            continue
        node = var.owner
        if node is None or not isinstance(node.op, Elemwise):
            return None
        if var.type.broadcastable != top.type.broadcastable:
            return None
        for inp in node.inputs:
            if id(inp) in dep:
                if inp.type.broadcastable != top.type.broadcastable:
                    return None
                stack.append(inp)
    return frontier


def _is_dot(var):
    return var.owner is not None and isinstance(var.owner.op, Dot)


def _closed_form_norm(z, xs):
    r"""Closed form of :math:`\sum_n \|\partial z[n] / \partial x[n]\|_F^2`, or None.

    Applies when ``z`` (2-D) is an elementwise function of terms ``u_j W_j``
    (``Dot`` nodes), each ``u_j`` an elementwise function of a single input
    ``x_j``, with different inputs for different terms and no other path
    from the inputs to ``z``.
    """
    if z.ndim != 2:
        return None
    dep = _dependents([z], xs)
    if id(z) not in dep:
        return z.sum() * 0
    x_ids = {id(x): x for x in xs}
    frontier = _elementwise_region(z, dep, _is_dot)
    if not frontier:
        return None
    terms, used = [], set()
    for a in frontier:
        u, w = a.owner.inputs
        if id(w) in dep or u.ndim != 2 or w.ndim != 2:
            return None
        leaves = _elementwise_region(u, dep, lambda v: id(v) in x_ids)
        if not leaves or len({id(v) for v in leaves}) != 1:
            return None
        x = leaves[0]
        if id(x) in used:
            return None
        used.add(id(x))
        d2 = pt.sqr(pytensor.grad(z.sum(), a))
        w2 = pt.sqr(w)
        if u is x:
            terms.append((d2 * w2.sum(axis=0)).sum())
        else:
            s2 = pt.sqr(pytensor.grad(u.sum(), x))
            terms.append((d2 * pt.dot(s2, w2)).sum())
    return sum(terms)


def _product_chain(z, dep, x_ids):
    r"""Follow ``z`` down a chain of matrix products to one input, or return None.

    The chain is :math:`z = f_L(a_L)`, :math:`a_l = u_{l-1} W_l`,
    :math:`u_l = f_l(a_l)` and :math:`u_0 = f_0(x)`: each :math:`f` is
    elementwise (with unchanged broadcasting) in the variables that depend on
    the inputs, each product is a ``Dot`` of matrices, no :math:`W_l` depends
    on the inputs, and nothing else connects the inputs to ``z``. Dense and
    tied layers with elementwise activations (also learnable ones, and with
    dropout or noise in between) give such chains; softmax, ``norm:*``,
    maxout, recurrent, convolution and multi-input layers do not.

    Returns
    -------
    (x, [a_1, ..., a_L]) or None
        The input and the products, from the input upwards.
    """
    if z.ndim != 2 or id(z) not in dep:
        return None
    dots, top = [], z
    while True:
        leaves = _elementwise_region(top, dep, lambda v: id(v) in x_ids or _is_dot(v))
        if not leaves or len({id(v) for v in leaves}) != 1:
            return None
        leaf = leaves[0]
        if id(leaf) in x_ids:
            break
        u, w = leaf.owner.inputs
        if id(w) in dep or u.ndim != 2 or w.ndim != 2:
            return None
        dots.append(leaf)
        top = u
    if not dots or leaf.ndim != 2:
        return None
    return leaf, dots[::-1]


class _ChainSweep:
    r"""Squared Jacobian norms along product chains that share their first product.

    For a chain :math:`a_l = u_{l-1} W_l`, :math:`u_l = f_l(a_l)` the
    Jacobian of one example is the product

    .. math::
        J_l = \frac{\partial u_l}{\partial x} =
        \operatorname{diag}(s)\, W_1 \operatorname{diag}(f_1')\, W_2 \cdots
        W_l \operatorname{diag}(f_l'), \qquad s = \partial u_0 / \partial x,

    (rows index inputs, columns units). Level by level, the sweep carries for
    every example either :math:`J_l` itself (``'jacobian'``, an array of shape
    ``(n_in, batch, n_l)``) or its Gram matrix :math:`J_l^\top J_l`
    (``'gram'``, ``(n_l, batch, n_l)``), whichever needs fewer
    multiplications for these layer sizes: the Jacobians cost
    :math:`n_{in} n_{l-1} n_l` per example and level, the Gram matrices
    :math:`n_{l-1}^2 n_l + n_{l-1} n_l^2`, and without an input rewrite
    (:math:`s = 1`) the first Gram matrix :math:`W_1^\top W_1` is the same for
    all examples. The batch is the middle axis, so that every product with a
    weight matrix is one matrix product for the whole batch, and the
    per-example factors broadcast along contiguous rows. The
    norm of :math:`z = f_L(a_L)` is :math:`\sum_k f_L'(a_k)^2 \, c_k`, where
    :math:`c_k` is the squared norm of column :math:`k` of
    :math:`\partial a_L / \partial x`. Each level is computed once however
    many outputs use it.
    """

    def __init__(self, x, chains, mode=None):
        self.x = x
        self.below = {}
        for dots in chains:
            for lower, upper in zip([None, *dots[:-1]], dots, strict=True):
                self.below[id(upper)] = lower
        u0 = chains[0][0].owner.inputs[0]
        self.s = None if u0 is x else pytensor.grad(u0.sum(), x)
        self.mode = mode or self._cheaper(chains)
        self._cache = {}

    def _cheaper(self, chains):
        """The mode with fewer multiplications per example ('jacobian' if sizes are unknown)."""
        n_in = self.x.type.shape[-1]
        inner = {id(a) for dots in chains for a in dots[:-1]}
        levels = {id(a): a for dots in chains for a in dots}
        jacobian = gram = 0
        for key, a in levels.items():
            lower = self.below[key]
            n = a.type.shape[-1]
            m = (lower if lower is not None else self.x).type.shape[-1]
            if None in (n_in, m, n):
                return "jacobian"
            if lower is None:
                if key in inner and self.s is not None:
                    gram += n_in * n * n
                continue
            jacobian += n_in * m * n
            gram += m * m * n + (m * n * n if key in inner else 0)
        return "gram" if gram < jacobian else "jacobian"

    def _memo(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def derivative(self, f, a):
        """``d f / d a`` for an elementwise function ``f`` of ``a``."""
        return self._memo(("d", id(f), id(a)), lambda: pytensor.grad(f.sum(), a))

    def norm(self, z, dots):
        r""":math:`\sum_n \|\partial z[n] / \partial x[n]\|_F^2` for ``z = f(dots[-1])``."""
        top = dots[-1]
        return (pt.sqr(self.derivative(z, top)) * self.columns(top)).sum()

    def columns(self, a):
        """Squared column norms of each example's ``d a / d x``, shape (batch, n)."""
        w = a.owner.inputs[1]
        if self.below[id(a)] is None:
            w2 = pt.sqr(w)
            return w2.sum(axis=0)[None, :] if self.s is None else pt.dot(pt.sqr(self.s), w2)
        if self.mode == "jacobian":
            return self._memo(("c", id(a)), lambda: pt.sqr(self.jacobian_pre(a)).sum(axis=0))
        return self.gram_step(a)[0]

    def jacobian_pre(self, a):
        """Each example's ``d a / d x``, shape (n_in, batch, n)."""
        return self._memo(("j", id(a)), lambda: self._jacobian_pre(a))

    def _jacobian_pre(self, a):
        u, w = a.owner.inputs
        lower = self.below[id(a)]
        if lower is None:
            return w[:, None, :] if self.s is None else self.s.T[:, :, None] * w[:, None, :]
        jac = self.jacobian_pre(lower) * self.derivative(u, lower)[None, :, :]
        return _dot_rows(jac, w)

    def gram_pre(self, a):
        """Each example's ``(d a / d x)^T (d a / d x)``: (n, batch, n), or (n, n) if constant."""
        return self._memo(("g", id(a)), lambda: self._gram_pre(a))

    def _gram_pre(self, a):
        w = a.owner.inputs[1]
        if self.below[id(a)] is not None:
            return _dot_cols(w, self.gram_step(a)[1])
        if self.s is None:
            return pt.dot(w.T, w)
        return _dot_cols(w, pt.sqr(self.s).T[:, :, None] * w[:, None, :])

    def gram_step(self, a):
        """Columns of ``a = u W`` and ``S W`` (m, batch, n), S the Gram matrix of ``u``."""
        return self._memo(("t", id(a)), lambda: self._gram_step(a))

    def _gram_step(self, a):
        u, w = a.owner.inputs
        lower = self.below[id(a)]
        gram, d = self.gram_pre(lower), self.derivative(u, lower)
        if gram.ndim == 2:
            # the same G for every example: S W = d * (G (d * W))
            scaled = d.T[:, :, None] * w[:, None, :]
            prod = _dot_cols(gram.T, scaled)
            return (scaled * prod).sum(axis=0), d.T[:, :, None] * prod
        prod = _dot_rows(d.T[:, :, None] * gram * d[None, :, :], w)
        return (w[:, None, :] * prod).sum(axis=0), prod


def _dot_rows(t, w):
    """``t[i, b, :] @ w`` for a 3-D ``t``, as one matrix product."""
    prod = pt.dot(t.reshape((-1, t.shape[2])), w)
    return prod.reshape((t.shape[0], t.shape[1], w.shape[1]))


def _dot_cols(w, t):
    """``w.T @ t[:, b, :]`` for a 3-D ``t``, as one matrix product."""
    prod = pt.dot(w.T, t.reshape((t.shape[0], -1)))
    return prod.reshape((w.shape[1], t.shape[1], t.shape[2]))


def _chain_norms(zs, xs, mode=None):
    r""":math:`\sum_n \|\partial z[n] / \partial x[n]\|_F^2` by the chain rule, for each ``z``.

    Outputs that are not at the top of a product chain (see
    :func:`_product_chain`) get None. Chains that start with the same
    product share one :class:`_ChainSweep`; ``mode`` forces its choice
    (``'jacobian'`` or ``'gram'``).
    """
    dep = _dependents(zs, xs)
    x_ids = {id(x) for x in xs}
    chains = [_product_chain(z, dep, x_ids) for z in zs]
    groups = {}
    for chain in chains:
        if chain is not None:
            groups.setdefault(id(chain[1][0]), []).append(chain)
    sweeps = {key: _ChainSweep(g[0][0], [c[1] for c in g], mode) for key, g in groups.items()}
    return [
        None if chain is None else sweeps[id(chain[1][0])].norm(z, chain[1])
        for z, chain in zip(zs, chains, strict=True)
    ]


def _vectorized_norm(z, xs):
    r""":math:`\sum_n \|\partial z[n] / \partial x[n]\|_F^2` from the full Jacobian."""
    connected = [x for x in xs if id(z) in _dependents([z], [x])]
    if not connected:
        return z.sum() * 0
    flat = z.sum(axis=0).flatten()
    jacs = jacobian(flat, connected, vectorize=True, disconnected_inputs="ignore")
    return sum(pt.sqr(j).sum() for j in jacs)


def _jacobian_norms(zs, xs, closed_form=True):
    """:func:`jacobian_norm` of each of ``zs``, sharing the work of common chains."""
    totals = _chain_norms(zs, xs) if closed_form else [None] * len(zs)
    norms = []
    for z, total in zip(zs, totals, strict=True):
        if total is None and closed_form:
            total = _closed_form_norm(z, xs)
        if total is None:
            total = _vectorized_norm(z, xs)
        norms.append(pt.cast(total / _as_scalar(z.shape[0], z.dtype), z.dtype))
    return norms


def jacobian_norm(z, xs, closed_form=True):
    r"""Mean over examples of the squared Frobenius norm of per-example Jacobians.

    .. math::
        \frac{1}{N} \sum_{n=1}^N \sum_{x \in X}
        \left\| \frac{\partial z[n]}{\partial x[n]} \right\|_F^2

    Parameters
    ----------
    z : tensor
        An expression whose first axis indexes examples.
    xs : list of tensor
        Input variables, first axis also indexing examples.
    closed_form : bool, optional
        Use the chain rule through matrix products and elementwise functions
        where the graph of ``z`` allows it (default True); False always
        forms the Jacobian with :func:`pytensor.gradient.jacobian`. Both give
        the same value.

    Returns
    -------
    scalar expression
        Of the same dtype as ``z``.

    Notes
    -----
    Examples must not interact (see :class:`Contractive`, which also says
    how the norm is computed).
    """
    return _jacobian_norms([z], xs, closed_form)[0]


class _RecurrentPenalty(_OutputPenalty):
    """Shared code of :class:`RecurrentNorm` and :class:`RecurrentState`."""

    _KEYWORD = ""

    def __init__(self, pattern=None, weight=0.0):
        if pattern is None:
            raise util.ConfigurationError(
                f"{type(self).__name__} needs an explicit pattern naming 3-D (batch, time, "
                f"units) graph outputs, e.g. {self._KEYWORD}=dict(weight=0.1, "
                "pattern='hid1:out'); a bare weight does not say which outputs to penalize"
            )
        super().__init__(pattern=pattern, weight=weight)

    def _not_3d(self, name, ndim):
        return util.ConfigurationError(
            f"{type(self).__name__}: pattern {self.pattern!r} matches {name!r}, which has "
            f"{ndim} axes; it only applies to 3-D (batch, time, units) outputs such as those "
            "of recurrent layers"
        )

    def _check_network(self, network):
        super()._check_network(network)
        shapes = network.output_shapes
        for name in _match_names(shapes, self.pattern):
            if len(shapes[name]) != 2:  # (time, units) per example
                raise self._not_3d(name, len(shapes[name]) + 1)

    def loss(self, layers, outputs):
        matched = self._matched_outputs(layers, outputs)
        if not matched:
            return 0
        for name, expr in matched:
            if expr.ndim != 3:
                raise self._not_3d(name, expr.ndim)
        return sum(self._penalty(expr) for _, expr in matched) / len(matched)


class RecurrentNorm(_RecurrentPenalty, Regularizer):
    r"""Penalize changes of the squared norm of recurrent states over time.

    Parameters
    ----------
    pattern : str or sequence of str
        Glob(s) matched against graph output names. Required: every matching
        output must be 3-D (batch, time, units); anything else raises
        :class:`~theanets.util.ConfigurationError`.
    weight : float, optional
        Strength of the penalty (non-negative).

    Notes
    -----
    The term added to the loss is

    .. math::
        R = \frac{1}{|\Omega|} \sum_{i \in \Omega} \frac{1}{N(T-1)}
            \sum_{n=1}^{N} \sum_{t=1}^{T-1}
            \left( \|Z_i[n, t]\|_2^2 - \|Z_i[n, t-1]\|_2^2 \right)^2

    where :math:`\|\cdot\|_2^2` sums the squares over units. It asks a
    recurrent layer to keep the size of its state steady from one time step
    to the next, which helps it run stably on sequences longer than those
    seen in training.

    References
    ----------
    .. [Kru15] D. Krueger & R. Memisevic (2015). Regularizing RNNs by
       stabilizing activations. arXiv:1511.08400.

    Examples
    --------
    Registered as ``recurrent_norm``. To use it at training time, on a model
    whose inputs are ``(batch, time, features)`` arrays:

    >>> import numpy as np
    >>> import theanets
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 6, 2))
    >>> net = theanets.recurrent.Regressor([3, (5, 'rnn'), 2])
    >>> _ = net.train([x, y], algo='sgd', max_updates=2,
    ...               recurrent_norm=dict(weight=0.1, pattern='hid1:out'))

    A pattern must be given. It is matched against every output in the
    computation graph, so choose it to name only the recurrent layers'
    outputs that should be penalized; a bare weight is an error:

    >>> net.train([x, y], recurrent_norm=0.1)
    Traceback (most recent call last):
    ...
    theanets.util.ConfigurationError: recurrent_norm=0.1: RecurrentNorm needs an explicit ...

    With weight 1 the term is the formula above, for the one matched output:

    >>> h = net.feed_forward(x)['hid1:out']
    >>> sq = (h ** 2).sum(axis=-1)
    >>> reg = dict(weight=1.0, pattern='hid1:out')
    >>> extra = net.loss_value(x, y, recurrent_norm=reg) - net.loss_value(x, y)
    >>> bool(np.isclose(extra, ((sq[:, 1:] - sq[:, :-1]) ** 2).mean()))
    True

    When running the model forward to make a prediction the keyword is
    accepted and changes nothing:

    >>> pred = net.predict(x, recurrent_norm=dict(weight=0.1, pattern='hid1:out'))
    >>> bool(np.allclose(pred, net.predict(x)))
    True
    """

    __extra_registration_keys__ = ["recurrent_norm"]
    _KEYWORD = "recurrent_norm"

    def _penalty(self, expr):
        sq = pt.sqr(expr).sum(axis=-1)
        return _safe_mean(pt.sqr(sq[:, 1:] - sq[:, :-1]))


class RecurrentState(_RecurrentPenalty, Regularizer):
    r"""Penalize changes of recurrent states from one time step to the next.

    Parameters
    ----------
    pattern : str or sequence of str
        Glob(s) matched against graph output names. Required: every matching
        output must be 3-D (batch, time, units).
    weight : float, optional
        Strength of the penalty (non-negative).

    Notes
    -----
    The term added to the loss is

    .. math::
        R = \frac{1}{|\Omega|} \sum_{i \in \Omega}
            \operatorname{mean}\left( (Z_i[:, t] - Z_i[:, t-1])^2 \right)

    with the mean over examples, time steps :math:`t = 1 \dots T-1` and
    units. It favours slowly changing states.

    Examples
    --------
    Registered as ``recurrent_state``; like :class:`RecurrentNorm` it needs a
    pattern:

    >>> import numpy as np
    >>> import theanets
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 6, 2))
    >>> net = theanets.recurrent.Regressor([3, (5, 'rnn'), 2])
    >>> _ = net.train([x, y], algo='sgd', max_updates=2,
    ...               recurrent_state=dict(weight=0.1, pattern='hid1:out'))
    >>> h = net.feed_forward(x)['hid1:out']
    >>> reg = dict(weight=1.0, pattern='hid1:out')
    >>> extra = net.loss_value(x, y, recurrent_state=reg) - net.loss_value(x, y)
    >>> bool(np.isclose(extra, ((h[:, 1:] - h[:, :-1]) ** 2).mean()))
    True
    >>> pred = net.predict(x, recurrent_state=dict(weight=0.1, pattern='hid1:out'))
    >>> bool(np.allclose(pred, net.predict(x)))
    True
    """

    __extra_registration_keys__ = ["recurrent_state"]
    _KEYWORD = "recurrent_state"

    def _penalty(self, expr):
        return _safe_mean(pt.sqr(expr[:, 1:] - expr[:, :-1]))


# ----------------------------------------------------------------------
# regularizers that change the graph


def _set_default_update(shared, update):
    """Make ``shared`` advance in every function that uses it.

    PyTensor 3 deprecates ``default_update`` in favour of explicit updates
    (which :meth:`Regularizer.pop_updates` also provides); it is still set,
    quietly, so that functions users compile from ``net.loss()`` without
    the network's updates draw fresh values too.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            shared.default_update = update
    except Exception:  # pragma: no cover - a PyTensor without the attribute
        pass


class _RandomRewrite:
    """Shared code of :class:`BernoulliDropout` and :class:`GaussianNoise`."""

    # the range of the rate is checked by each class, with its own message
    _NONNEGATIVE_WEIGHT = False
    _SUFFIX = ""

    def __init__(self, pattern="*:out", weight=0.0, rng=None):
        super().__init__(pattern=pattern, weight=weight)
        if self.pattern is None:
            self.pattern = "*:out"
        self._check_rate()
        self.rng = _check_seed(rng, f"{type(self).__name__} rng")
        self._stream_index = 0
        self._updates = []
        self._streams = []

    def _stream(self, name):
        """A fresh shared NumPy Generator for the output ``name``.

        Its seed mixes the ``rng`` seed with the class, pattern and output
        name, so different regularizers and outputs draw independent values
        while the same seed always gives the same sequence.
        """
        key = f"{type(self).__name__}|{_freeze(self.pattern)!r}|{name}|{self._stream_index}"
        seq = np.random.SeedSequence(self.rng, spawn_key=(zlib.crc32(key.encode()),))
        return pytensor.shared(np.random.default_rng(seq), name=f"{name}{self._SUFFIX}-rng")

    def modify_graph(self, outputs):
        if not self.weight:
            return
        for name in _match_names(list(outputs), self.pattern):
            expr = outputs[name]
            if not isinstance(expr, pt.TensorVariable):
                _warn(
                    "{}: cannot change {!r}, which is not a dense tensor", type(self).__name__, name
                )
                continue
            if not expr.dtype.startswith("float"):
                continue
            stream = self._stream(name)
            new, next_state = self._rewrite(expr, stream)
            self._updates.append((stream, next_state))
            _set_default_update(stream, next_state)
            self._streams.append(stream)
            new.name = name
            outputs.setdefault(name + self._SUFFIX, expr)
            outputs[name] = new

    def pop_updates(self):
        updates, self._updates = self._updates, []
        return updates

    def _check_network(self, network):
        if self.weight and not _match_names(network.output_shapes, self.pattern):
            _warn(
                "{}: pattern {!r} (rate {}) matches no output of this network; outputs: {}",
                type(self).__name__,
                self.pattern,
                self.weight,
                sorted(network.output_shapes),
            )

    def __repr__(self):
        return (
            f"{type(self).__name__}(pattern={self.pattern!r}, weight={self.weight!r}, "
            f"rng={self.rng!r})"
        )


class BernoulliDropout(_RandomRewrite, Regularizer):
    r"""Randomly set graph output values to zero ("dropout").

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Glob(s) matched against graph output names; default ``'*:out'``
        (the main output of every layer). Only floating-point outputs are
        changed.
    weight : float, optional
        The probability :math:`p \in [0, 1)` that a value is dropped.
    rng : int, optional
        Seed of the random streams (default :data:`DEFAULT_SEED`). Each
        matched output gets its own stream, derived from this seed, the
        class, the pattern and the output name; the stream advances every
        time a compiled function runs, so each call draws a new mask.

    Notes
    -----
    Each matching output :math:`Z` is replaced by

    .. math::
        \tilde Z = \frac{M \odot Z}{1 - p}, \qquad
        M_{nk} \sim \mathrm{Bernoulli}(1 - p)

    drawn afresh on every evaluation. Dividing by :math:`1 - p` keeps the
    expected value of every entry unchanged, so a network trained with
    dropout can be used without it. The unmodified output stays available
    in the graph as ``'<name>-predrop'`` (e.g. ``'hid1:out-predrop'``).

    Dropout keeps units from relying on particular partners and acts like
    training an ensemble of thinned networks that share weights. Applied at
    prediction time it gives Monte-Carlo samples of that ensemble.

    References
    ----------
    .. [Sri14] N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever &
       R. Salakhutdinov (2014). Dropout: a simple way to prevent neural
       networks from overfitting. JMLR 15, 1929-1958.

    Examples
    --------
    Asked for with ``input_dropout``, ``hidden_dropout`` and
    ``output_dropout`` (the drop probability for those layers' outputs),
    ``dropout`` (a dict from output patterns to probabilities) or
    ``bernoullidropout`` (constructor arguments):

    >>> import numpy as np
    >>> import theanets
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    >>> net = theanets.Regressor([4, 8, 8, 2])
    >>> _ = net.train([x, y], algo='sgd', max_updates=2, input_dropout=0.2, hidden_dropout=0.5)
    >>> _ = net.train([x, y], algo='sgd', max_updates=2,
    ...               dropout={'hid1:out': 0.5, 'hid2:out': 0.3})
    >>> _ = net.train([x, y], algo='sgd', max_updates=2,
    ...               bernoullidropout=dict(weight=0.3, pattern='hid1:out'))

    The values that are kept are scaled by :math:`1 / (1 - p)`; the
    unchanged output stays in the graph:

    >>> out = net.feed_forward(x, hidden_dropout=0.5, rng=7)
    >>> kept = out['hid1:out'] != 0
    >>> bool(np.allclose(out['hid1:out'][kept], 2 * out['hid1:out-predrop'][kept]))
    True

    Monte-Carlo dropout at prediction time: each call draws new masks.

    >>> samples = [net.predict(x, hidden_dropout=0.5, rng=7) for _ in range(2)]
    >>> bool(np.allclose(samples[0], samples[1]))
    False
    """

    _SUFFIX = "-predrop"

    def _check_rate(self):
        if not 0 <= self.weight < 1:
            raise util.ConfigurationError(
                f"BernoulliDropout: the drop probability (weight) must be in [0, 1), got "
                f"{self.weight!r}"
            )

    def _rewrite(self, expr, stream):
        keep = 1.0 - self.weight
        # float64 parameters: with float32 ones PyTensor 3 draws several times slower
        next_state, mask = ptr.bernoulli(
            np.float64(keep), size=expr.shape, rng=stream, return_next_rng=True
        )
        scale = np.asarray(1.0 / keep, dtype=expr.dtype)
        return expr * pt.cast(mask, expr.dtype) * scale, next_state


class GaussianNoise(_RandomRewrite, Regularizer):
    r"""Add zero-mean Gaussian noise to graph outputs.

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Glob(s) matched against graph output names; default ``'*:out'``.
        Only floating-point outputs are changed.
    weight : float, optional
        The standard deviation :math:`\sigma \geq 0` of the noise.
    rng : int, optional
        Seed of the random streams (default :data:`DEFAULT_SEED`); see
        :class:`BernoulliDropout`.

    Notes
    -----
    Each matching output :math:`Z` is replaced by

    .. math::
        \tilde Z = Z + \epsilon, \qquad \epsilon_{nk} \sim \mathcal{N}(0, \sigma^2)

    drawn afresh on every evaluation. The unmodified output stays
    available as ``'<name>-prenoise'``. Noise on the input of an
    autoencoder, whose target stays the clean input, gives a denoising
    autoencoder.

    Examples
    --------
    Asked for with ``input_noise``, ``hidden_noise`` and ``output_noise``
    (the standard deviation for those layers' outputs), ``noise`` (a dict
    from output patterns to standard deviations) or ``gaussiannoise``:

    >>> import numpy as np
    >>> import theanets
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    >>> net = theanets.Regressor([4, 8, 8, 2])
    >>> _ = net.train([x, y], algo='sgd', max_updates=2, input_noise=0.1, hidden_noise=0.05)
    >>> _ = net.train([x, y], algo='sgd', max_updates=2, noise={'hid2:out': 0.1})

    The added values have the requested standard deviation, and the clean
    ones stay in the graph:

    >>> out = net.feed_forward(np.zeros((500, 4)), input_noise=0.1, rng=3)
    >>> noise = out['in:out'] - out['in:out-prenoise']
    >>> round(float(noise.std()), 2)
    0.1

    Noise can be added when predicting, too:

    >>> net.predict(x, input_noise=0.1, rng=3).shape
    (16, 2)
    """

    _SUFFIX = "-prenoise"

    def _check_rate(self):
        if self.weight < 0:
            raise util.ConfigurationError(
                f"GaussianNoise: the standard deviation (weight) must be >= 0, got {self.weight!r}"
            )

    def _rewrite(self, expr, stream):
        # float64 parameters: with float32 ones PyTensor 3 draws several times slower
        next_state, noise = ptr.normal(
            np.float64(0.0),
            np.float64(self.weight),
            size=expr.shape,
            rng=stream,
            dtype=expr.dtype,
            return_next_rng=True,
        )
        return expr + noise, next_state


# ----------------------------------------------------------------------
# building regularizers from keyword arguments


def known_kwargs():
    """Return the keyword argument names that :func:`from_kwargs` understands.

    Computed on each call, so regularizer classes defined later (in user
    code) are included.

    Returns
    -------
    set of str
        Registered regularizer names and aliases, plus ``input_dropout``,
        ``hidden_dropout``, ``output_dropout``, ``dropout``, ``input_noise``,
        ``hidden_noise``, ``output_noise``, ``noise``, ``rng`` and
        ``regularizers``.
    """
    return set(Regularizer.registered_names()) | set(_SPECIAL_KWARGS)


def _constructor_names(cls):
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):  # pragma: no cover
        return None
    names = set()
    for p in list(sig.parameters.values())[1:]:
        if p.kind is p.VAR_KEYWORD:
            return None
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(p.name)
    return names


def _build(cls, value, argname, **defaults):
    """Build one regularizer from a keyword argument's value."""
    if isinstance(value, Regularizer):
        return value
    if isinstance(value, dict):
        kwargs = dict(value)
        names = _constructor_names(cls)
        if names is not None:
            for key in kwargs:
                if key not in names:
                    raise util.ConfigurationError(
                        f"{argname}: {cls.__name__} got an unknown keyword argument {key!r}."
                        f"{util.closest_match(key, names)} Valid: {', '.join(sorted(names))}"
                    )
            defaults = {k: v for k, v in defaults.items() if k in names}
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        kwargs = dict(weight=value)
        names = _constructor_names(cls)
        if names is not None:
            defaults = {k: v for k, v in defaults.items() if k in names}
    else:
        raise util.ConfigurationError(
            f"{argname} must be a number (the weight), a dict of {cls.__name__} keyword "
            f"arguments or a Regularizer, got {type(value).__name__} {value!r}"
        )
    try:
        return cls(**{**defaults, **kwargs})
    except util.ConfigurationError as err:
        raise util.ConfigurationError(f"{argname}={value!r}: {err}") from err
    except TypeError as err:
        raise util.ConfigurationError(
            f"{argname}={value!r}: cannot build {cls.__name__}: {err}"
        ) from err


def _is_off(value):
    """A bare zero (or None) switches a keyword regularizer off."""
    return value is None or (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and value == 0
    )


def from_kwargs(network, **kwargs):
    r"""Build the list of regularizers asked for by keyword arguments.

    Keyword arguments this function does not know are ignored (callers pass
    optimizer settings along); :func:`known_kwargs` lists those it knows.

    Parameters
    ----------
    network : :class:`theanets.graph.Network`
        The model; its layers define "input", "hidden" and "output".
    input_dropout, hidden_dropout, output_dropout : float or dict, optional
        :class:`BernoulliDropout` with that drop probability on the ``:out``
        of the input layers, the hidden layers (neither input nor last) or
        the output layer. A dict gives constructor arguments instead.
    input_noise, hidden_noise, output_noise : float or dict, optional
        :class:`GaussianNoise` with that standard deviation on the same
        outputs.
    dropout : dict, optional
        Maps glob patterns of graph outputs to drop probabilities, e.g.
        ``{'hid1:out': 0.5}``.
    noise : dict, optional
        Maps glob patterns of graph outputs to noise standard deviations.
    rng : int, optional
        Seed of the random streams of dropout and noise (default
        :data:`DEFAULT_SEED`). Every dropout or noise regularizer, and every
        output it changes, draws from its own stream derived from this seed.
    regularizers : list or dict, optional
        A list of :class:`Regularizer` instances, used as they are, or a
        dict of more keyword arguments, merged with the others.
    <name> : float, dict or Regularizer, optional
        Any registered regularizer name or alias (``weight_l2``,
        ``weight_decay``, ``weight_l1``, ``weight_sparsity``, ``hidden_l1``,
        ``hidden_sparsity``, ``contractive``, ``recurrent_norm``,
        ``recurrent_state``, ``bernoullidropout``, ``gaussiannoise``, or the
        lowercase name of a user subclass): a number is the weight, a dict
        holds constructor arguments.

    Returns
    -------
    list of :class:`Regularizer`
        In a fixed order (the ``regularizers`` list, then dropout and noise
        on inputs, hidden layers and outputs, then ``dropout``, ``noise``,
        then registered names in alphabetical order), so the same arguments
        always build the same graph.

    Raises
    ------
    ConfigurationError
        For values of the wrong type or range and unknown constructor
        arguments in dict form.

    Notes
    -----
    A bare ``0`` (or ``None``) for a keyword switches it off. Patterns that
    match nothing in the network are logged as warnings.

    Examples
    --------
    >>> from theanets import Regressor
    >>> net = Regressor([4, 8, 2])
    >>> regs = from_kwargs(net, weight_l2=1e-4, hidden_dropout=0.5, learning_rate=0.1)
    >>> regs[0]
    BernoulliDropout(pattern=('hid1:out',), weight=0.5, rng=13)
    >>> regs[1]
    WeightL2(pattern=None, weight=0.0001)
    """
    kwargs = dict(kwargs)
    result = []
    extra = kwargs.pop("regularizers", None)
    if isinstance(extra, dict):
        for key, value in extra.items():
            if key in kwargs and kwargs[key] is not value:
                raise util.ConfigurationError(
                    f"regularizer {key!r} is given both as a keyword argument and in "
                    "regularizers={...}"
                )
            kwargs[key] = value
    elif isinstance(extra, Regularizer):
        result.append(extra)
    elif isinstance(extra, (list, tuple)):
        for item in extra:
            if not isinstance(item, Regularizer):
                raise util.ConfigurationError(
                    "regularizers=[...] must hold Regularizer instances, got "
                    f"{type(item).__name__} {item!r}"
                )
            result.append(item)
    elif extra is not None:
        raise util.ConfigurationError(
            "regularizers must be a list of Regularizer instances or a dict of keyword "
            f"arguments, got {type(extra).__name__} {extra!r}"
        )

    seed = _check_seed(kwargs.get("rng"))
    layers = list(getattr(network, "layers", []))
    inputs, hidden, outputs = _layer_roles(layers)
    roles = dict(input=inputs, hidden=hidden, output=outputs)
    for where in ("input", "hidden", "output"):
        for kind, cls in (("dropout", BernoulliDropout), ("noise", GaussianNoise)):
            argname = f"{where}_{kind}"
            value = kwargs.get(argname)
            if _is_off(value):
                continue
            if not roles[where]:
                _warn(
                    "{}={!r}: this network has no {} layers; nothing to change",
                    argname,
                    value,
                    where,
                )
                continue
            result.append(
                _build(cls, value, argname, pattern=_out_patterns(roles[where]), rng=seed)
            )
    for kind, cls in (("dropout", BernoulliDropout), ("noise", GaussianNoise)):
        value = kwargs.get(kind)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise util.ConfigurationError(
                f"{kind} must be a dict mapping glob patterns of graph outputs to "
                f"{'drop probabilities' if kind == 'dropout' else 'standard deviations'}, "
                f"e.g. {kind}={{'hid1:out': 0.3}}; got {type(value).__name__} {value!r}"
            )
        for pattern, rate in value.items():
            if not isinstance(pattern, str):
                raise util.ConfigurationError(
                    f"{kind}: keys must be glob patterns (strings), got {pattern!r}"
                )
            if _is_off(rate):
                continue
            result.append(_build(cls, rate, f"{kind}[{pattern!r}]", pattern=pattern, rng=seed))
    for key in sorted(kwargs):
        if key in _SPECIAL_KWARGS or not Regularizer.is_registered(key):
            continue
        value = kwargs[key]
        if _is_off(value):
            continue
        cls = Regularizer.lookup(key)
        defaults = dict(rng=seed) if issubclass(cls, _RandomRewrite) else {}
        result.append(_build(cls, value, key, **defaults))

    # identical random regularizers would draw identical values: separate them
    counts = {}
    for reg in result:
        if isinstance(reg, _RandomRewrite):
            key = (type(reg), _freeze(reg.pattern), reg.rng)
            reg._stream_index = counts.get(key, 0)
            counts[key] = reg._stream_index + 1

    if layers:
        for reg in result:
            reg._check_network(network)
    return result
