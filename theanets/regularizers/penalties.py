r"""Regularizers that add a term to the training loss.

* on parameters: :class:`WeightL2` (weight decay) and :class:`WeightL1`;
* on graph outputs: :class:`HiddenL1` (sparse activity),
  :class:`Contractive` (the Jacobian norm of a representation, computed by
  :mod:`theanets.regularizers._jacobian`), :class:`RecurrentNorm` and
  :class:`RecurrentState` (steady recurrent states).

All are re-exported by :mod:`theanets.regularizers`.
"""

import fnmatch

import pytensor.tensor as pt

from .. import util
from ._jacobian import jacobian_norms
from ._matching import check_pattern, layer_roles, match_names, out_patterns, patterns, warn
from .base import Regularizer

__all__ = ["Contractive", "HiddenL1", "RecurrentNorm", "RecurrentState", "WeightL1", "WeightL2"]


def _safe_mean(x):
    """Mean of all elements; 0 (not NaN) for an empty tensor."""
    count = pt.maximum(x.size, 1)
    return x.sum() / pt.cast(count, x.dtype)


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
            warn(
                "{}: pattern {!r} matches no weight (parameter with more than one axis) of "
                "this network; parameters: {}",
                type(self).__name__,
                self._effective_pattern(),
                [p.name for p in network.params],
            )

    def loss(self, layers, outputs):
        """Compute the penalty: the mean over the matching weights of each one's term.

        Parameters
        ----------
        layers : list of :class:`theanets.layers.Layer`
            The model's layers, whose parameters are matched.
        outputs : dict
            Not used: this penalty reads parameters only.

        Returns
        -------
        scalar expression or number
            The average, over the parameters with more than one axis whose
            names match :attr:`pattern` (every weight by default), of the
            mean penalty of their entries; 0 if no weight matches.
        """
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
        Multiplier of the mean squared weight in the loss (non-negative).

    Notes
    -----
    Each matching weight array contributes its mean square, and the loss
    gains their average:

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
        Multiplier of the mean absolute weight in the loss (non-negative).

    Notes
    -----
    The penalty averages the mean absolute values of the matching weight
    arrays:

    .. math::
        R = \frac{1}{|\Omega|} \sum_{i \in \Omega} \operatorname{mean}(|W_i|)

    Seen as a prior, it says that weights follow a Laplace distribution;
    it pushes many weights to exactly zero.

    Examples
    --------
    Registered as ``weight_l1`` and ``weight_sparsity``; here on a
    classifier:

    >>> import numpy as np
    >>> import theanets
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(16, 4)), rng.integers(0, 2, size=16).astype('int32')
    >>> net = theanets.Classifier([4, 8, 2])
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
        _, hidden, _ = layer_roles(layers)
        return out_patterns(hidden)

    def _matched_outputs(self, layers, outputs):
        return [(n, outputs[n]) for n in match_names(outputs, self._effective_pattern(layers))]

    def _check_network(self, network):
        if not self.weight:
            return
        pattern = self._effective_pattern(network.layers)
        if not match_names(network.output_shapes, pattern):
            what = (
                f"pattern {self.pattern!r}"
                if self.pattern is not None
                else ("the default pattern (hidden layers' outputs; this network has none)")
            )
            warn(
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
        Multiplier of the mean absolute activation in the loss
        (non-negative).

    Notes
    -----
    For the matching graph outputs :math:`Z_i` the regularizer adds

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
        """Compute the penalty: the mean absolute value of the matching outputs.

        Parameters
        ----------
        layers : list of :class:`theanets.layers.Layer`
            The model's layers; without a pattern, the outputs of the hidden
            ones (neither input nor last) are penalized.
        outputs : dict
            Graph outputs by full name (``'hid1:out'``, ...).

        Returns
        -------
        scalar expression or number
            The mean absolute value of each matching output, averaged over
            those outputs; 0 if none matches.
        """
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

    Predictions ignore the penalty, so ``predict`` accepts the keyword and
    gives the same values:

    >>> bool(np.allclose(net.predict(x, contractive=0.1), net.predict(x)))
    True
    """

    def __init__(self, pattern=None, weight=0.0, wrt="*"):
        super().__init__(pattern=pattern, weight=weight)
        self.wrt = check_pattern(wrt, "Contractive wrt")
        if self.wrt is None:
            self.wrt = "*"

    def _matched_inputs(self, layers):
        inputs, _, _ = layer_roles(layers)
        pats = patterns(self.wrt)
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
            inputs, _, _ = layer_roles(network.layers)
            warn(
                "Contractive: wrt={!r} matches no input layer of this network; input layers: {}",
                self.wrt,
                [layer.name for layer in inputs],
            )

    def loss(self, layers, outputs):
        """Compute the penalty: squared Jacobian norms of the matching outputs.

        Parameters
        ----------
        layers : list of :class:`theanets.layers.Layer`
            The model's layers: the hidden ones give the default pattern,
            and the input layers matching ``wrt`` the variables the
            derivatives are taken with respect to.
        outputs : dict
            Graph outputs (as the regularizers rewrote them) by full name.

        Returns
        -------
        scalar expression or number
            For each matching output, the batch mean of the squared
            Frobenius norm of its Jacobian with respect to the matching
            inputs, averaged over the outputs; 0 if no output or no input
            matches.

        Raises
        ------
        ConfigurationError
            If a matching input layer is sparse (it cannot be
            differentiated).
        """
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
        terms = jacobian_norms([expr for _, expr in matched], xs)
        return sum(terms) / len(terms)

    def log(self):
        """Log a one-line description of this regularizer."""
        util.log(
            "regularizer Contractive: weight {}, pattern {}, wrt {}",
            self.weight,
            self.pattern,
            self.wrt,
        )


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
        for name in match_names(shapes, self.pattern):
            if len(shapes[name]) != 2:  # (time, units) per example
                raise self._not_3d(name, len(shapes[name]) + 1)

    def loss(self, layers, outputs):
        """Compute the penalty on the changes over time of the matching outputs.

        Parameters
        ----------
        layers : list of :class:`theanets.layers.Layer`
            The model's layers (the explicit pattern alone picks the
            outputs).
        outputs : dict
            Every graph output's expression, by fully scoped name; those
            matching the pattern must be 3-D.

        Returns
        -------
        scalar expression or number
            The class's term for each matching output, averaged over those
            outputs; 0 if none matches.

        Raises
        ------
        ConfigurationError
            If a matching output is not 3-D ``(batch, time, units)``.
        """
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
        How much changes of the states' squared norm cost (non-negative).

    Notes
    -----
    With :math:`N` sequences of :math:`T` steps, the penalty is

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
        How much a step of the states costs (non-negative).

    Notes
    -----
    The penalty is the mean squared step of the matching outputs,

    .. math::
        R = \frac{1}{|\Omega|} \sum_{i \in \Omega}
            \operatorname{mean}\left( (Z_i[:, t] - Z_i[:, t-1])^2 \right)

    with the mean over examples, time steps :math:`t = 1 \dots T-1` and
    units. It favours slowly changing states.

    Examples
    --------
    Registered as ``recurrent_state``; like :class:`RecurrentNorm` it needs a
    pattern. Here it smooths the code of a recurrent autoencoder:

    >>> import numpy as np
    >>> import theanets
    >>> x = np.random.default_rng(0).normal(size=(4, 6, 3))
    >>> net = theanets.recurrent.Autoencoder([3, (5, 'rnn'), 3])
    >>> reg = dict(weight=1.0, pattern='hid1:out')
    >>> _ = net.train([x], algo='sgd', max_updates=2, recurrent_state=reg)
    >>> h = net.feed_forward(x)['hid1:out']
    >>> extra = net.loss_value(x, recurrent_state=reg) - net.loss_value(x)
    >>> bool(np.isclose(extra, ((h[:, 1:] - h[:, :-1]) ** 2).mean()))
    True
    >>> plain = net.predict(x)
    >>> bool(np.allclose(net.predict(x, recurrent_state=reg), plain))
    True
    """

    __extra_registration_keys__ = ["recurrent_state"]
    _KEYWORD = "recurrent_state"

    def _penalty(self, expr):
        return _safe_mean(pt.sqr(expr[:, 1:] - expr[:, :-1]))
