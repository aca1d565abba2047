r"""Loss functions that compare a graph output with target data.

A loss reads one named graph output (``'out:out'``, the output of the layer
named ``out``, by default), compares it with a target variable that is fed
from data, and returns a scalar. A network may hold several losses, each with
its own ``weight``; the training loss is their weighted sum plus the
regularizer terms.

Registered names:

========================  ====================================================
name                      loss
========================  ====================================================
``mse``                   :class:`MeanSquaredError`
``mae``                   :class:`MeanAbsoluteError`
``xe``                    :class:`CrossEntropy` (integer class labels)
``hinge``                 :class:`Hinge` (integer class labels)
``kl``, ``kld``           :class:`KullbackLeiblerDivergence`
``gll``                   :class:`GaussianLogLikelihood`
``mmd``                   :class:`MaximumMeanDiscrepancy`
========================  ====================================================

(each class is also registered under its lowercase class name).

With ``weighted=True`` a loss also takes an array ``weights`` shaped like its
target. Unless a class says otherwise, per-element losses :math:`\ell` are then
averaged as :math:`\sum w \ell / \sum w` instead of by their plain mean.
"""

import inspect

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Variable

from . import util

# constants in the dtype of the expression they join, so float32 graphs stay float32
_const = util.constant_like

__all__ = [
    "CrossEntropy",
    "GaussianLogLikelihood",
    "Hinge",
    "KullbackLeiblerDivergence",
    "Loss",
    "MaximumMeanDiscrepancy",
    "MeanAbsoluteError",
    "MeanSquaredError",
]

#: Lower clipping bound of probabilities inside logarithms (``xe``, ``kl``).
PROB_EPSILON = 1e-8


def _check_output_name(owner, what, value):
    if not isinstance(value, str) or not value.strip():
        raise util.ConfigurationError(
            f"{owner}: {what} must be the name of a graph output (e.g. 'out' or "
            f"'hid1:out'), got {value!r}"
        )
    return util.output_name(value.strip())


class Loss(util.Registrar):
    r"""Base class of losses.

    Parameters
    ----------
    target : int or PyTensor variable, optional
        Either the number of axes of the network output this loss reads
        (default 2), from which a new target variable named ``'target'`` is
        made -- a floatX tensor with that many axes, or, for losses on class
        labels (``xe``, ``hinge``), an int32 tensor with one axis fewer -- or
        an existing variable to use as the target as is (autoencoders pass
        their input variable).
    weight : float, optional
        Multiplier of this loss in the network's total loss (default 1).
    weighted : bool, optional
        If True, the loss also takes a floatX array named ``'weights'`` with
        the axes of the target, and averages per-element losses with these
        weights (default False).
    output_name : str, optional
        The graph output compared with the target; ``':out'`` is appended to
        a bare layer name, so the default ``'out'`` means ``'out:out'``.

    Attributes
    ----------
    weight : float
        Multiplier of this loss in the total.
    weighted : bool
        Whether the loss takes weights.
    output_name : str
        Fully scoped name of the graph output it reads.
    target_ndim : int
        The number of axes given for ``target`` (or of the given variable).

    Raises
    ------
    ConfigurationError
        For a ``weight`` that is not a finite number, a non-boolean
        ``weighted``, a ``target`` that is neither a positive number of axes
        nor a variable, or an empty ``output_name``.
    """

    #: Whether the targets are integer class labels.
    #:
    #: Such targets have one axis fewer than the output the loss reads.
    LABELS = False

    def __init__(self, target=None, weight=1.0, weighted=False, output_name="out"):
        owner = f"loss {type(self).__name__.lower()!r}"
        util.check_number("weight", weight, where=owner)
        if not isinstance(weighted, (bool, np.bool_)):
            raise util.ConfigurationError(
                f"{owner}: weighted must be True or False, got {weighted!r}"
            )
        self.weight = float(weight)
        self.weighted = bool(weighted)
        self.output_name = _check_output_name(owner, "output_name", output_name)

        if target is None:
            target = 2
        self._target_given = isinstance(target, Variable)
        if self._target_given:
            if self.LABELS and not str(target.dtype).startswith(("int", "uint")):
                raise util.ConfigurationError(
                    f"{owner}: a target variable for class labels must have an integer "
                    f"dtype, got {target.dtype}"
                )
            self._target = target
            self.target_ndim = target.ndim
        else:
            lowest = 2 if self.LABELS else 1
            if not util.is_int(target) or target < lowest:
                raise util.ConfigurationError(
                    f"{owner}: target must be the number of axes of the output "
                    f"(an int >= {lowest}) or a PyTensor variable, got {target!r}"
                )
            self.target_ndim = int(target)
            if self.LABELS:
                ndim, dtype = self.target_ndim - 1, "int32"
            else:
                ndim, dtype = self.target_ndim, pytensor.config.floatX
            self._target = pt.tensor(name="target", dtype=dtype, shape=(None,) * ndim)

        self._weights = None
        if self.weighted:
            self._weights = pt.tensor(
                name="weights", dtype=pytensor.config.floatX, shape=(None,) * self._target.ndim
            )

    @classmethod
    def build(cls, key, *args, **kwargs):
        """Create the loss registered under ``key``.

        Parameters
        ----------
        key : str
            A registered name (``'mse'``, ``'xe'``, ...), case-insensitive.
        *args, **kwargs
            Constructor arguments.

        Returns
        -------
        :class:`Loss`
            A new instance of the registered class.

        Raises
        ------
        ConfigurationError
            For an unknown name (with the closest valid one) or a keyword
            argument the loss does not take.
        """
        klass = cls.lookup(key)
        known = [
            p.name
            for p in inspect.signature(klass.__init__).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        ]
        util.check_unknown_kwargs(kwargs, known, f"loss {key!r}")
        return klass(*args, **kwargs)

    # ------------------------------------------------------------------

    @property
    def target(self):
        """The symbolic target variable (given or created)."""
        return self._target

    @property
    def weights(self):
        """The symbolic weights variable, or None when not weighted."""
        return self._weights

    @property
    def variables(self):
        """Symbolic variables that must be fed with data.

        Returns
        -------
        list of PyTensor variables
            The target (left out when an existing variable was given), then
            the weights when the loss is weighted.
        """
        result = [] if self._target_given else [self._target]
        if self._weights is not None:
            result.append(self._weights)
        return result

    def _lookup(self, outputs, name):
        try:
            return outputs[name]
        except KeyError:
            known = list(outputs)
            raise util.ConfigurationError(
                f"loss {type(self).__name__.lower()!r}: the graph has no output {name!r}."
                f"{util.closest_match(name, known)} Outputs: {', '.join(known)}"
            ) from None

    def _average(self, elementwise):
        """Plain mean of per-element losses, or their weighted mean."""
        if self._weights is None:
            return elementwise.mean()
        w = self._weights.flatten()
        return (w * elementwise.flatten()).sum() / w.sum()

    def __call__(self, outputs):
        """Build the scalar loss from the graph outputs.

        Parameters
        ----------
        outputs : dict
            Maps fully scoped output names (``'out:out'``) to expressions.

        Returns
        -------
        scalar PyTensor expression

        Raises
        ------
        ConfigurationError
            If the output the loss reads is not in ``outputs``.
        """
        return self._average(self._elementwise(self._lookup(outputs, self.output_name)))

    def _elementwise(self, output):
        """Per-element losses, shaped like the target (override in subclasses)."""
        raise NotImplementedError

    # ------------------------------------------------------------------

    def _extra_spec(self):
        """Options of a subclass, for :meth:`to_spec`."""
        return {}

    def to_spec(self):
        """Return a dictionary from which an equivalent loss can be built.

        Returns
        -------
        dict
            ``form`` (the lowercase class name), ``target`` (a number of axes,
            or ``'input'`` when an existing variable was given), ``weight``,
            ``weighted``, ``output_name``, and the options of the loss.
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
        """Return a hashable description of this loss (used to key cached graphs).

        Returns
        -------
        tuple of (str, str)
            The ``(key, repr(value))`` pairs of :meth:`to_spec`, sorted.
        """
        return tuple(sorted((k, repr(v)) for k, v in self.to_spec().items()))

    def log(self):
        """Log a one-line description of this loss."""
        util.log(
            "loss: {} x {} on {}{}",
            self.weight,
            type(self).__name__,
            self.output_name,
            " (weighted)" if self.weighted else "",
        )

    def __repr__(self):
        return f"{type(self).__name__}(weight={self.weight!r}, output_name={self.output_name!r})"


class MeanSquaredError(Loss):
    r"""Mean squared error (``'mse'``).

    Parameters
    ----------
    target, weight, weighted, output_name
        As for :class:`Loss`; the target has the output's shape.

    Notes
    -----
    For outputs :math:`o` and targets :math:`t` with :math:`N` elements in
    all (examples times dimensions), the error is averaged over every element,
    not summed over dimensions:

    .. math::
       \mathcal{L} = \frac{1}{N} \sum_i (o_i - t_i)^2

    Weighted: :math:`\mathcal{L} = \sum_i w_i (o_i - t_i)^2 / \sum_i w_i`.
    """

    __extra_registration_keys__ = ["mse"]

    def _elementwise(self, output):
        err = output - self._target
        return err * err


class MeanAbsoluteError(Loss):
    r"""Mean absolute error (``'mae'``).

    Parameters
    ----------
    target, weight, weighted, output_name
        The arguments of :class:`Loss`, with a target shaped like the
        output.

    Notes
    -----
    Averaged over every element of outputs :math:`o` and targets :math:`t`:

    .. math::
       \mathcal{L} = \frac{1}{N} \sum_i |o_i - t_i|

    Weighted: :math:`\mathcal{L} = \sum_i |w_i (o_i - t_i)| / \sum_i w_i`.
    """

    __extra_registration_keys__ = ["mae"]

    def _elementwise(self, output):
        return abs(output - self._target)

    def _average(self, elementwise):
        if self._weights is None:
            return elementwise.mean()
        w = self._weights.flatten()
        return abs(w * elementwise.flatten()).sum() / w.sum()


class CrossEntropy(Loss):
    r"""Categorical cross-entropy of integer class labels (``'xe'``).

    The output holds class probabilities along its last axis (typically a
    softmax), shaped ``(batch, classes)`` or ``(batch, time, classes)``; the
    target holds the index of the true class, shaped ``(batch,)`` or
    ``(batch, time)``.

    Parameters
    ----------
    target, weight, weighted, output_name
        As for :class:`Loss`: the target holds integer labels, with one axis
        fewer than the output.

    Notes
    -----
    With :math:`p_{n,k}` the probability given to class :math:`k` for example
    (or time step) :math:`n`, :math:`y_n` its label and :math:`N` the number
    of labels, and probabilities clipped to :math:`[10^{-8}, 1]` before the
    logarithm:

    .. math::
       \mathcal{L} = -\frac{1}{N} \sum_n \log p_{n, y_n}

    Weighted (one weight per label):
    :math:`\mathcal{L} = -\sum_n w_n \log p_{n, y_n} / \sum_n w_n`.
    """

    __extra_registration_keys__ = ["xe"]
    LABELS = True

    def _flat(self, output):
        """Outputs as ``(N, classes)`` rows and labels as an ``(N,)`` vector."""
        rows = output.reshape((-1, output.shape[-1]), ndim=2)
        return rows, self._target.flatten()

    def _elementwise(self, output):
        rows, labels = self._flat(output)
        picked = rows[pt.arange(labels.shape[0]), labels]
        return -pt.log(pt.clip(picked, _const(PROB_EPSILON, picked), _const(1, picked)))

    def accuracy(self, outputs):
        """Build the (weighted) fraction of labels that get the largest output.

        Parameters
        ----------
        outputs : dict
            Maps fully scoped output names to expressions.

        Returns
        -------
        scalar PyTensor expression
            The accuracy, between 0 and 1.
        """
        rows, labels = self._flat(self._lookup(outputs, self.output_name))
        correct = pt.cast(pt.eq(pt.argmax(rows, axis=-1), labels), rows.dtype)
        return Loss._average(self, correct)


class Hinge(CrossEntropy):
    r"""Multiclass (Crammer-Singer) hinge loss on integer class labels.

    Parameters
    ----------
    target, weight, weighted, output_name
        As for :class:`CrossEntropy` (integer labels).
    margin : float, optional
        The margin :math:`\Delta` by which the true class's output should
        exceed every other. The default 0 is the loss of theanets 0.7
        (:math:`\max_k o_{n,k} - o_{n,y_n}`); ``margin=1`` gives the usual
        Crammer-Singer SVM loss.

    Notes
    -----
    With outputs :math:`o_{n,k}` along the last axis, labels :math:`y_n` and
    :math:`N` labels:

    .. math::
       \mathcal{L} = \frac{1}{N} \sum_n
           \max\left(0, \Delta + \max_{k \ne y_n} o_{n,k} - o_{n,y_n}\right)

    It is zero when the true class's output leads all others by at least
    :math:`\Delta`, and grows linearly otherwise. Weighted:
    :math:`\sum_n w_n \ell_n / \sum_n w_n`.
    """

    def __init__(self, target=None, weight=1.0, weighted=False, output_name="out", margin=0.0):
        super().__init__(target=target, weight=weight, weighted=weighted, output_name=output_name)
        util.check_number("margin", margin, low=0, where="loss 'hinge'")
        self.margin = float(margin)

    def _elementwise(self, output):
        rows, labels = self._flat(output)
        correct = rows[pt.arange(labels.shape[0]), labels]
        if self.margin:
            # Add the margin to every class except the true one; the true
            # class then contributes o_y - o_y = 0, which gives the max(0, .).
            others = pt.neq(pt.arange(rows.shape[1])[None, :], labels[:, None])
            rows = rows + _const(self.margin, rows) * pt.cast(others, rows.dtype)
        return rows.max(axis=-1) - correct

    def _extra_spec(self):
        return dict(margin=self.margin)


class KullbackLeiblerDivergence(Loss):
    r"""Kullback-Leibler divergence between target and output distributions.

    Registered as ``'kl'`` and ``'kld'``. Outputs and targets hold
    probability distributions along their last axis.

    Parameters
    ----------
    target, weight, weighted, output_name
        As for :class:`Loss`; target and output are both distributions.

    Notes
    -----
    With probabilities clipped to :math:`[\epsilon, 1 - \epsilon]`,
    :math:`\epsilon = 10^{-8}`, inside the logarithms, the loss is the mean
    over the :math:`N` examples (and time steps) of the divergence of the
    output distribution :math:`o` from the target distribution :math:`t`:

    .. math::
       \mathcal{L} = \frac{1}{N} \sum_n \sum_k t_{nk} \log \frac{t_{nk}}{o_{nk}}

    Weighted, each term is multiplied by its weight and the sum is divided
    by the mean weight per distribution, :math:`K \sum w t \log(t/o) / \sum w`
    for :math:`K` classes, so that unit weights give the unweighted value.
    Theano-era theanets averaged the absolute value of each term over all
    elements instead, which is not the divergence; this is fixed here.
    """

    __extra_registration_keys__ = ["kl", "kld"]

    def _elementwise(self, output):
        low = _const(PROB_EPSILON, output)
        high = _const(1 - PROB_EPSILON, output)
        t = pt.clip(self._target, low, high)
        o = pt.clip(output, low, high)
        return t * (pt.log(t) - pt.log(o))

    def _average(self, elementwise):
        classes = pt.cast(elementwise.shape[-1], elementwise.dtype)
        if self._weights is None:
            return elementwise.mean() * classes
        return classes * (self._weights * elementwise).sum() / self._weights.sum()


class GaussianLogLikelihood(Loss):
    r"""Negative log-likelihood of the targets under a diagonal Gaussian (``'gll'``).

    Two graph outputs, shaped like the target, give the mean :math:`\mu` and
    the variance :math:`\sigma^2` of every target value.

    Parameters
    ----------
    target, weight, weighted, output_name
        As for :class:`Loss`; ``output_name`` is not read, the two outputs
        below are.
    mean_name : str, optional
        Graph output holding the means; ``':out'`` is appended to a bare
        layer name. Default ``'mean'``.
    covar_name : str, optional
        Graph output holding the variances (the diagonal of the covariance).
        Default ``'covar'``.
    covar_eps : float, optional
        Added to the magnitude of the variances so that they are positive
        (default 1e-3).

    Notes
    -----
    With :math:`\sigma^2_{nd} = |c_{nd}| + \epsilon` for the variance output
    :math:`c`, the loss is the mean over the :math:`N` examples (and time
    steps) of the summed per-dimension negative log densities:

    .. math::
       \mathcal{L} = \frac{1}{N} \sum_n \frac{1}{2} \sum_{d=1}^{D} \left[
           \log\left(2 \pi \sigma^2_{nd}\right)
           + \frac{(t_{nd} - \mu_{nd})^2}{\sigma^2_{nd}} \right]

    Weighted, with per-element weights and per-element terms
    :math:`\ell_{nd}`: :math:`D \sum w \ell / \sum w`, which equals the
    unweighted loss when all weights are equal.

    theanets 0.7 computed a different expression (with the log-determinant
    and the quadratic term mis-stated); this class computes the Gaussian
    negative log-likelihood itself.
    """

    __extra_registration_keys__ = ["gll"]

    def __init__(
        self,
        target=None,
        weight=1.0,
        weighted=False,
        output_name="out",
        mean_name="mean",
        covar_name="covar",
        covar_eps=1e-3,
    ):
        super().__init__(target=target, weight=weight, weighted=weighted, output_name=output_name)
        self.mean_name = _check_output_name("loss 'gll'", "mean_name", mean_name)
        self.covar_name = _check_output_name("loss 'gll'", "covar_name", covar_name)
        self.covar_eps = util.check_number(
            "covar_eps", covar_eps, low=0, low_open=True, where="loss 'gll'"
        )

    def __call__(self, outputs):
        mean = self._lookup(outputs, self.mean_name)
        var = abs(self._lookup(outputs, self.covar_name)) + _const(self.covar_eps, mean)
        diff = self._target - mean
        terms = _const(0.5, mean) * (pt.log(_const(2 * np.pi, mean) * var) + diff * diff / var)
        if self._weights is None:
            return terms.sum(axis=-1).mean()
        dims = pt.cast(terms.shape[-1], terms.dtype)
        return dims * (self._weights * terms).sum() / self._weights.sum()

    def _extra_spec(self):
        return dict(mean_name=self.mean_name, covar_name=self.covar_name, covar_eps=self.covar_eps)

    def log(self):
        """Log a one-line description of this loss."""
        util.log(
            "loss: {} x {} of mean {} and variance {}",
            self.weight,
            type(self).__name__,
            self.mean_name,
            self.covar_name,
        )


class MaximumMeanDiscrepancy(Loss):
    r"""Squared maximum mean discrepancy between outputs and targets (``'mmd'``).

    It compares the *distribution* of the batch of outputs with that of the
    batch of targets, not example by example.

    Parameters
    ----------
    target, weight, weighted, output_name
        As for :class:`Loss`, the batches of output and target being
        compared as wholes.
    kernel : float or callable, optional
        A positive number :math:`\kappa` selects the Gaussian kernel
        :math:`k(a, b) = \exp(-\|a - b\|^2 / \kappa)` (default 1). A callable
        ``kernel(a, b)`` receives two batches shaped ``(n, ...)`` and
        ``(m, ...)`` and returns the kernel values shaped ``(n, m, ...)``.

    Notes
    -----
    For outputs :math:`o_1 \dots o_N` and targets :math:`t_1 \dots t_N`
    (rows along the first axis):

    .. math::
       \mathcal{L} = \frac{1}{N^2} \sum_{i,j} k(t_i, t_j)
           - \frac{2}{N^2} \sum_{i,j} k(t_i, o_j)
           + \frac{1}{N^2} \sum_{i,j} k(o_i, o_j)

    For ``(batch, time, features)`` data the kernel compares rows at the same
    time step and the result is averaged over time steps.

    Weighted: each example gets the weight :math:`p_n \propto` the mean of
    its weights, normalised to sum to 1, and every :math:`1/N^2` above
    becomes :math:`p_i p_j` -- the discrepancy between the two weighted
    empirical distributions.

    References
    ----------
    A. Gretton, K. M. Borgwardt, M. Rasch, B. Schoelkopf & A. J. Smola (2007),
    "A Kernel Method for the Two-Sample-Problem." NIPS.

    Y. Li, K. Swersky & R. Zemel (2015), "Generative Moment Matching
    Networks." ICML.
    """

    __extra_registration_keys__ = ["mmd"]

    def __init__(self, target=None, weight=1.0, weighted=False, output_name="out", kernel=1):
        super().__init__(target=target, weight=weight, weighted=weighted, output_name=output_name)
        if not callable(kernel):
            kernel = util.check_number("kernel", kernel, low=0, low_open=True, where="loss 'mmd'")
        self.kernel = kernel

    def _gram(self, a, b):
        if callable(self.kernel):
            return self.kernel(a, b)
        diff = a[:, None] - b[None, :]
        return pt.exp(-(diff * diff).sum(axis=-1) / _const(self.kernel, diff))

    def _mean(self, gram, pairs):
        if pairs is None:
            return gram.mean()
        pairs = pt.shape_padright(pairs, gram.ndim - 2)
        return (pairs * gram).sum(axis=(0, 1)).mean()

    def __call__(self, outputs):
        output = self._lookup(outputs, self.output_name)
        target = self._target
        pairs = None
        if self._weights is not None:
            w = self._weights
            per_example = w.mean(axis=tuple(range(1, w.ndim))) if w.ndim > 1 else w
            p = per_example / per_example.sum()
            pairs = p[:, None] * p[None, :]
        return (
            self._mean(self._gram(target, target), pairs)
            - 2 * self._mean(self._gram(target, output), pairs)
            + self._mean(self._gram(output, output), pairs)
        )

    def _extra_spec(self):
        return dict(kernel=self.kernel)
