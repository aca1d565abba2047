r"""Regularizers that rewrite graph outputs with random values, and their random streams.

:class:`BernoulliDropout` and :class:`GaussianNoise` replace matching graph
outputs while the graph is built. Each output they change draws from its
own shared NumPy ``Generator``, seeded from the ``rng`` argument
(:func:`theanets.util.seed_from`, default :data:`DEFAULT_SEED`), the class,
the pattern and the output name. A compiled function advances the stream
through the explicit updates the graph hands out (:meth:`pop_updates`, which
:meth:`theanets.Network.updates` collects); :func:`separate_streams` keeps
equal regularizers from drawing equal values.

All public names are re-exported by :mod:`theanets.regularizers`.
"""

import zlib

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytensor.tensor.random as ptr

from .. import util
from ._matching import match_names, warn
from .base import Regularizer, freeze

__all__ = ["DEFAULT_SEED", "BernoulliDropout", "GaussianNoise"]

#: Seed of the random streams of dropout and noise when no ``rng`` is given.
DEFAULT_SEED = 13


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
        self.rng = util.seed_from(rng, default=DEFAULT_SEED, where=f"{type(self).__name__} rng")
        self._stream_index = 0
        self._updates = []
        self._streams = []

    def _stream(self, name):
        """A fresh shared NumPy Generator for the output ``name``.

        Its seed mixes the ``rng`` seed with the class, pattern and output
        name, so different regularizers and outputs draw independent values
        while the same seed always gives the same sequence.
        """
        key = f"{type(self).__name__}|{freeze(self.pattern)!r}|{name}|{self._stream_index}"
        seq = np.random.SeedSequence(self.rng, spawn_key=(zlib.crc32(key.encode()),))
        return pytensor.shared(np.random.default_rng(seq), name=f"{name}{self._SUFFIX}-rng")

    def modify_graph(self, outputs):
        """Replace each matching float output by its randomly changed version.

        The output unchanged is kept under its name with the class's suffix
        (``'hid1:out-predrop'``, ...) and the step of each new random
        stream is kept for :meth:`pop_updates`. A zero weight changes
        nothing; matching outputs that are not dense float tensors are left
        alone (with a warning for sparse ones).

        Parameters
        ----------
        outputs : dict
            Maps the fully scoped names of one layer's outputs to their
            expressions; changed in place.
        """
        if not self.weight:
            return
        for name in match_names(list(outputs), self.pattern):
            expr = outputs[name]
            if not isinstance(expr, pt.TensorVariable):
                warn(
                    "{}: cannot change {!r}, which is not a dense tensor", type(self).__name__, name
                )
                continue
            if not expr.dtype.startswith("float"):
                continue
            stream = self._stream(name)
            new, next_state = self._rewrite(expr, stream)
            self._updates.append((stream, next_state))
            self._streams.append(stream)
            new.name = name
            outputs.setdefault(name + self._SUFFIX, expr)
            outputs[name] = new

    def pop_updates(self):
        """Return and forget the random stream updates made since the last call.

        Returns
        -------
        list of (shared variable, expression)
            One pair per output changed by :meth:`modify_graph`: its
            stream's random generator and the generator's next state.
        """
        updates, self._updates = self._updates, []
        return updates

    def _check_network(self, network):
        if self.weight and not match_names(network.output_shapes, self.pattern):
            warn(
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
        util.check_number(
            "the drop probability (weight)",
            self.weight,
            low=0,
            high=1,
            high_open=True,
            where="BernoulliDropout",
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

    A denoising autoencoder, and noise on one named output:

    >>> import numpy as np
    >>> import theanets
    >>> x = np.random.default_rng(0).normal(size=(16, 4))
    >>> net = theanets.Autoencoder([4, 8, 4])
    >>> _ = net.train([x], algo='sgd', max_updates=2, input_noise=0.1, hidden_noise=0.05)
    >>> _ = net.train([x], algo='sgd', max_updates=2, noise={'hid1:out': 0.1})

    The added values have the requested standard deviation, and the clean
    ones stay in the graph:

    >>> out = net.feed_forward(np.zeros((500, 4)), input_noise=0.1, rng=3)
    >>> noise = out['in:out'] - out['in:out-prenoise']
    >>> round(float(noise.std()), 2)
    0.1

    Noise can be added when predicting, too:

    >>> net.predict(x, input_noise=0.1, rng=3).shape
    (16, 4)
    """

    _SUFFIX = "-prenoise"

    def _check_rate(self):
        util.check_number(
            "the standard deviation (weight)", self.weight, low=0, where="GaussianNoise"
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


def uses_streams(cls):
    """Tell whether a regularizer class draws from random streams (and takes an ``rng``).

    The argument, ``cls``, is a :class:`~theanets.regularizers.Regularizer`
    subclass (a first argument of that name is read as a class method's
    implicit argument, so it has no Parameters entry here).

    Returns
    -------
    bool
        True for the dropout and noise classes and their subclasses.
    """
    return issubclass(cls, _RandomRewrite)


def separate_streams(regularizers):
    """Give equal dropout or noise regularizers different streams.

    Two regularizers of the same class, pattern and seed would otherwise
    draw the same values; each gets the number of such regularizers before
    it in the list, which its streams' seeds include.

    Parameters
    ----------
    regularizers : list of :class:`~theanets.regularizers.Regularizer`
        Changed in place; those that draw no random values are left alone.
    """
    counts = {}
    for reg in regularizers:
        if isinstance(reg, _RandomRewrite):
            key = (type(reg), freeze(reg.pattern), reg.rng)
            reg._stream_index = counts.get(key, 0)
            counts[key] = reg._stream_index + 1
