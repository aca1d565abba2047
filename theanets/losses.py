"""Loss functions.

A loss compares one named graph output (``'out:out'`` by default) with a
target variable fed from data, and returns a scalar. Networks may hold
several losses, each with its own weight; the training loss is their
weighted sum plus regularizer terms.

With ``weighted=True`` a loss also takes an array of weights, one per target
value, and averages per-element losses as :math:`\\sum w \\ell / \\sum w`.
"""

import numbers

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Variable

from . import util

__all__ = [
    "Loss",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "CrossEntropy",
    "Hinge",
    "KullbackLeiblerDivergence",
    "GaussianLogLikelihood",
    "MaximumMeanDiscrepancy",
]

_EPS = 1e-8


def _scoped(name):
    return name if ":" in name else f"{name}:out"


class Loss(util.Registrar):
    """Base class of losses.

    Parameters
    ----------
    target : int or PyTensor variable, optional
        The number of axes of the output this loss reads (default 2): a new
        target variable of that many axes is created (one fewer, of integer
        dtype, for losses on class labels). An existing variable is used as
        the target as is (autoencoders pass their input).
    weight : float, optional
        Multiplier of this loss in the total (default 1).
    weighted : bool, optional
        Whether the loss takes a ``weights`` array like the target.
    output_name : str, optional
        The graph output compared with the target; ``':out'`` is appended to
        a bare layer name. Default ``'out'``.

    Attributes
    ----------
    weight : float
    weighted : bool
    output_name : str
    """

    #: Whether targets are integer class labels (one axis fewer than outputs).
    LABELS = False

    def __init__(self, target=None, weight=1.0, weighted=False, output_name="out"):
        name = type(self).__name__
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise util.ConfigurationError(f"{name}: weight must be a number, got {weight!r}")
        if not np.isfinite(weight):
            raise util.ConfigurationError(f"{name}: weight must be finite, got {weight!r}")
        if not isinstance(output_name, str) or not output_name:
            raise util.ConfigurationError(
                f"{name}: output_name must be a graph output name, got {output_name!r}"
            )
        self.weight = float(weight)
        self.weighted = bool(weighted)
        self.output_name = _scoped(output_name)
        if target is None:
            target = 2
        self._target_given = isinstance(target, Variable)
        if self._target_given:
            self._target = target
            self.target_ndim = target.ndim
        else:
            if isinstance(target, bool) or not isinstance(target, numbers.Integral) or target < 1:
                raise util.ConfigurationError(
                    f"{name}: target must be a number of axes (>= 1) or a variable, got {target!r}"
                )
            self.target_ndim = int(target)
            ndim = self.target_ndim - 1 if self.LABELS else self.target_ndim
            dtype = "int32" if self.LABELS else pytensor.config.floatX
            self._target = pt.tensor(name="target", dtype=dtype, shape=(None,) * ndim)
        self._weights = None
        if self.weighted:
            self._weights = pt.tensor(
                name="weights", dtype=pytensor.config.floatX, shape=(None,) * self._target.ndim
            )

    @property
    def variables(self):
        """Symbolic variables this loss needs fed: the target (unless given), then weights."""
        result = [] if self._target_given else [self._target]
        if self._weights is not None:
            result.append(self._weights)
        return result

    def _output(self, outputs):
        try:
            return outputs[self.output_name]
        except KeyError:
            raise util.ConfigurationError(
                f"{type(self).__name__}: the graph has no output {self.output_name!r}."
                f"{util.closest_match(self.output_name, outputs)}"
            ) from None

    def _average(self, elementwise):
        """Mean of per-element losses, or their weighted mean."""
        if self._weights is None:
            return elementwise.mean()
        return (self._weights * elementwise).sum() / self._weights.sum()

    def __call__(self, outputs):
        """Compute the loss from the dictionary of graph outputs.

        Parameters
        ----------
        outputs : dict
            Maps fully scoped output names to expressions.

        Returns
        -------
        scalar expression
        """
        raise NotImplementedError

    def _extra_spec(self):
        return {}

    def to_spec(self):
        """Return a dictionary from which an equal loss can be built.

        Returns
        -------
        dict
            ``form``, ``weight``, ``weighted``, ``output_name`` and ``target``
            (a number of axes, or ``'input'`` when the target was a given
            variable), plus any options of the loss.
        """
        spec = dict(
            form=type(self).__name__.lower(),
            target="input" if self._target_given else self.target_ndim,
            weight=self.weight,
            weighted=self.weighted,
            output_name=self.output_name,
        )
        spec.update(self._extra_spec())
        return spec

    def cache_key(self):
        """A hashable description used to key cached graphs."""
        return tuple(sorted((k, repr(v)) for k, v in self.to_spec().items()))

    def log(self):
        """Log a one-line description of this loss."""
        util.log("loss: {} x {} on {}", self.weight, type(self).__name__, self.output_name)


class MeanSquaredError(Loss):
    """Mean squared error.

    .. math::
        \\mathcal{L} = \\frac{1}{N} \\sum_i (o_i - t_i)^2
    """

    __extra_registration_keys__ = ["mse"]

    def __call__(self, outputs):
        return self._average(pt.sqr(self._output(outputs) - self._target))


class MeanAbsoluteError(Loss):
    """Mean absolute error.

    .. math::
        \\mathcal{L} = \\frac{1}{N} \\sum_i |o_i - t_i|
    """

    __extra_registration_keys__ = ["mae"]

    def __call__(self, outputs):
        return self._average(abs(self._output(outputs) - self._target))


class CrossEntropy(Loss):
    """Categorical cross-entropy of integer class labels.

    The output holds class probabilities over its last axis (a softmax);
    the target holds the index of the true class for each example (and time
    step).

    .. math::
        \\mathcal{L} = -\\frac{1}{N} \\sum_n \\log p_{n, t_n}
    """

    __extra_registration_keys__ = ["xe"]
    LABELS = True

    def _flat(self, outputs):
        prob = self._output(outputs)
        k = prob.shape[-1]
        return prob.reshape((-1, k), ndim=2), self._target.flatten()

    def _flat_average(self, elementwise):
        if self._weights is None:
            return elementwise.mean()
        w = self._weights.flatten()
        return (w * elementwise).sum() / w.sum()

    def __call__(self, outputs):
        prob, labels = self._flat(outputs)
        picked = prob[pt.arange(labels.shape[0]), labels]
        return self._flat_average(-pt.log(pt.clip(picked, _EPS, 1)))

    def accuracy(self, outputs):
        """Return the (weighted) fraction of examples whose most probable class is right."""
        prob, labels = self._flat(outputs)
        correct = pt.cast(pt.eq(pt.argmax(prob, axis=-1), labels), pytensor.config.floatX)
        return self._flat_average(correct)


class Hinge(CrossEntropy):
    """Multiclass hinge loss on integer class labels (no margin).

    .. math::
        \\mathcal{L} = \\frac{1}{N} \\sum_n \\max\\left(0, \\max_{j} (o_{nj} - o_{n t_n})\\right)
    """

    def __call__(self, outputs):
        out, labels = self._flat(outputs)
        correct = out[pt.arange(labels.shape[0]), labels]
        return self._flat_average(pt.maximum(0, (out - correct[:, None]).max(axis=-1)))


class KullbackLeiblerDivergence(Loss):
    """Kullback-Leibler divergence of the output distribution from the target's.

    Both hold distributions over the last axis.

    .. math::
        \\mathcal{L} = \\frac{1}{N} \\sum_n \\sum_k t_{nk} \\log \\frac{t_{nk}}{o_{nk}}

    (values are clipped to :math:`[10^{-8}, 1]` inside the logarithms).
    """

    __extra_registration_keys__ = ["kl", "kld"]

    def __call__(self, outputs):
        t = pt.clip(self._target, _EPS, 1)
        o = pt.clip(self._output(outputs), _EPS, 1)
        terms = self._target * (pt.log(t) - pt.log(o))
        if self._weights is None:
            return terms.sum(axis=-1).mean()
        return (self._weights * terms).sum() / self._weights.sum(axis=-1).sum() * 1.0


class GaussianLogLikelihood(Loss):
    """Negative log-likelihood of targets under a diagonal Gaussian.

    Two graph outputs give the mean :math:`\\mu` and the variance
    :math:`\\sigma^2` (its absolute value plus ``covar_eps``) of each target
    value.

    .. math::
        \\mathcal{L} = \\frac{1}{N} \\sum_n \\frac{1}{2} \\sum_d \\left[
            \\log (2 \\pi \\sigma_{nd}^2) + \\frac{(t_{nd} - \\mu_{nd})^2}{\\sigma_{nd}^2}
        \\right]

    Parameters
    ----------
    mean_name : str, optional
        Graph output holding the means (default ``'mean'``, i.e. ``'mean:out'``).
    covar_name : str, optional
        Graph output holding the variances (default ``'covar'``).
    covar_eps : float, optional
        Added to the variances for stability (default 1e-3).
    """

    __extra_registration_keys__ = ["gll"]

    def __init__(self, mean_name="mean", covar_name="covar", covar_eps=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.mean_name = _scoped(mean_name)
        self.covar_name = _scoped(covar_name)
        self.covar_eps = float(covar_eps)

    def __call__(self, outputs):
        saved = self.output_name
        try:
            self.output_name = self.mean_name
            mean = self._output(outputs)
            self.output_name = self.covar_name
            var = abs(self._output(outputs)) + self.covar_eps
        finally:
            self.output_name = saved
        terms = 0.5 * (pt.log(2 * np.pi * var) + pt.sqr(self._target - mean) / var)
        if self._weights is None:
            return terms.sum(axis=-1).mean()
        return (self._weights * terms).sum() / self._weights.sum() * terms.shape[-1]

    def _extra_spec(self):
        return dict(mean_name=self.mean_name, covar_name=self.covar_name, covar_eps=self.covar_eps)


class MaximumMeanDiscrepancy(Loss):
    """Squared maximum mean discrepancy between the batch of outputs and of targets.

    With a Gaussian kernel :math:`k(a, b) = \\exp(-\\|a - b\\|^2 / \\kappa)`:

    .. math::
        \\mathcal{L} = \\overline{k(t, t')} - 2\\, \\overline{k(t, o)} + \\overline{k(o, o')}

    where the bars are means over all pairs of rows.

    Parameters
    ----------
    kernel : float, optional
        Kernel width :math:`\\kappa` (default 1).
    """

    __extra_registration_keys__ = ["mmd"]

    def __init__(self, kernel=1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(kernel, numbers.Real) or kernel <= 0:
            raise util.ConfigurationError(f"mmd: kernel must be a positive number, got {kernel!r}")
        self.kernel = float(kernel)

    def _gram(self, a, b):
        sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2 * pt.dot(a, b.T)
        return pt.exp(-pt.maximum(sq, 0) / self.kernel)

    def __call__(self, outputs):
        o = self._output(outputs)
        t = self._target
        o = o.reshape((-1, o.shape[-1]), ndim=2)
        t = t.reshape((-1, t.shape[-1]), ndim=2)
        return self._gram(t, t).mean() - 2 * self._gram(t, o).mean() + self._gram(o, o).mean()

    def _extra_spec(self):
        return dict(kernel=self.kernel)
