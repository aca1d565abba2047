"""Recurrent models and helpers for sequence data.

The models here are the feed-forward models of :mod:`theanets.feedforward`
with inputs of shape ``(batch, time, features)``. Feed-forward layers inside
them apply to every time step; recurrent layers (``(10, 'lstm')``,
``dict(size=10, form='gru')``, ...) carry state along the time axis.

* :class:`Regressor`: real-valued targets of shape ``(batch, time, outputs)``.
* :class:`Classifier`: integer class labels of shape ``(batch, time)``, one
  per time step; probabilities, logits and accuracy are per time step.
* :class:`Autoencoder`: reproduce the input sequence.

:func:`batches` cuts random fixed-length windows out of long sequences for
training, and :class:`Text` turns a string into class labels and one-hot
inputs for character models.
"""

import collections
import numbers

import numpy as np

from . import feedforward, util

__all__ = ["Regressor", "Classifier", "Autoencoder", "batches", "Text"]


class _SequenceData:
    """Checks shared by the recurrent models: time axes must agree."""

    INPUT_NDIM = 3

    def _data_arrays(self, data, what="data"):
        arrays = super()._data_arrays(data, what)
        names = [v.name for v in self.variables]
        steps = {name: a.shape[1] for name, a in zip(names, arrays) if getattr(a, "ndim", 0) >= 2}
        if len(set(steps.values())) > 1:
            raise ValueError(
                f"{what}: inputs and targets must have the same number of time steps (axis 1), "
                f"got {steps}"
            )
        return arrays


class Regressor(_SequenceData, feedforward.Regressor):
    """A recurrent regression model on ``(batch, time, features)`` arrays.

    Targets have shape ``(batch, time, outputs)``; the default loss is the
    mean squared error over every time step.

    Examples
    --------
    >>> import numpy as np
    >>> net = Regressor([3, (4, 'rnn'), 2])
    >>> net.predict(np.zeros((5, 7, 3), 'float32')).shape
    (5, 7, 2)
    """


class Autoencoder(_SequenceData, feedforward.Autoencoder):
    """A recurrent model trained to reproduce its input sequences.

    Examples
    --------
    >>> import numpy as np
    >>> net = Autoencoder([3, (4, 'gru'), 3])
    >>> net.predict(np.zeros((2, 5, 3), 'float32')).shape
    (2, 5, 3)
    """


class Classifier(_SequenceData, feedforward.Classifier):
    """A recurrent model that assigns a class to every time step.

    Inputs have shape ``(batch, time, features)`` and targets are integer
    labels of shape ``(batch, time)``. :meth:`predict` returns labels of
    shape ``(batch, time)``, :meth:`predict_proba` and
    :meth:`predict_logit` arrays of shape ``(batch, time, classes)``, and
    :meth:`score` the accuracy over all time steps.

    Examples
    --------
    >>> import numpy as np
    >>> net = Classifier([4, (6, 'lstm'), 3])
    >>> net.predict(np.zeros((2, 5, 4), 'float32')).shape
    (2, 5)
    """

    def predict_sequence(self, labels, steps, streams=1, rng=None):
        """Generate a continuation of a sequence of class labels.

        The model must read one-hot encoded labels (its input size equals its
        number of classes), as a character model trained on
        :meth:`Text.classifier_batches` does. Starting from ``labels``, each
        step feeds the sequence so far as one-hot vectors, reads the class
        probabilities at its last time step, picks the next label and appends
        it.

        Parameters
        ----------
        labels : sequence of int
            The priming sequence (at least one label).
        steps : int
            Number of labels to generate.
        streams : int, optional
            Number of sequences generated in parallel from the same priming
            sequence (they differ only when sampling).
        rng : None, int, RandomState or Generator, optional
            If None, each next label is the most probable one (greedy
            decoding). Otherwise it is sampled from the predicted
            distribution with this random source.

        Yields
        ------
        int or list of int
            The next label (``streams == 1``) or one label per stream, once
            per step.

        Raises
        ------
        ConfigurationError
            If the model's input size is not its number of classes.
        ValueError
            For empty or out-of-range priming labels, or bad ``steps`` /
            ``streams``.

        Examples
        --------
        >>> net = Classifier([3, (4, 'rnn'), 3])
        >>> len(list(net.predict_sequence([0, 1], 4)))
        4
        """
        k = self.num_classes
        size = self.layers[0].output_shape[-1]
        if size != k:
            raise util.ConfigurationError(
                f"predict_sequence needs a model whose input size equals its number of classes "
                f"(one-hot inputs); this one reads {size} features for {k} classes"
            )
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"predict_sequence: labels must be a non-empty sequence of integers, got {labels!r}"
            )
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"predict_sequence: labels must be in 0..{k - 1}, got {labels}")
        for name, value in (("steps", steps), ("streams", streams)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(
                    f"predict_sequence: {name} must be a non-negative int, got {value!r}"
                )
        if streams < 1:
            raise ValueError("predict_sequence: streams must be at least 1")
        sampler = None if rng is None else _generator(rng)
        seqs = np.tile(labels, (streams, 1))
        eye = np.eye(k, dtype="float32")
        for _ in range(steps):
            probs = self.predict_proba(eye[seqs])[:, -1]
            if sampler is None:
                nxt = probs.argmax(axis=-1)
            else:
                p = np.asarray(probs, dtype=float)
                p = p / p.sum(axis=-1, keepdims=True)
                nxt = np.array([sampler.choice(k, p=row) for row in p])
            seqs = np.concatenate([seqs, nxt[:, None]], axis=1)
            yield int(nxt[0]) if streams == 1 else [int(n) for n in nxt]


def _generator(rng):
    """A NumPy random source with ``integers``/``choice`` from a seed or a state."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, np.random.RandomState):
        return _StateAdapter(rng)
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be None, an int seed, a RandomState or a Generator, got {rng!r}")


class _StateAdapter:
    """Give a legacy RandomState the two Generator methods used here."""

    def __init__(self, state):
        self.state = state

    def integers(self, high, size=None):
        return self.state.randint(high, size=size)

    def choice(self, n, p=None):
        return self.state.choice(n, p=p)


def batches(arrays, steps, batch_size=32, rng=None):
    """Make a callable that cuts random training windows out of sequences.

    Each array holds one long sequence with time along its first axis, e.g.
    inputs of shape ``(T, features)`` and targets of shape ``(T, outputs)``
    or labels of shape ``(T,)``. Every call of the returned function picks
    ``batch_size`` random start offsets and returns, for each array, the
    windows ``array[o:o + steps]`` stacked into shape
    ``(batch_size, steps, ...)``. The same offsets are used for all arrays,
    so inputs and targets stay aligned.

    Parameters
    ----------
    arrays : sequence of ndarray
        The sequences, all of the same length ``T >= steps``.
    steps : int
        Length of each window.
    batch_size : int, optional
        Number of windows per batch (default 32).
    rng : None, int, RandomState or Generator, optional
        Source of the random offsets.

    Returns
    -------
    callable
        Takes no arguments and returns a list with one
        ``(batch_size, steps, ...)`` array per input array; it can be given
        to ``net.train`` as training data.

    Raises
    ------
    ValueError
        If the arrays are empty, of different lengths, or shorter than
        ``steps``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(100.0).reshape(50, 2)
    >>> fn = batches([x], steps=10, batch_size=4, rng=0)
    >>> fn()[0].shape
    (4, 10, 2)
    """
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        raise ValueError("batches: give at least one array")
    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"batches: {name} must be a positive integer, got {value!r}")
    if any(a.ndim == 0 for a in arrays):
        raise ValueError("batches: arrays must have a time axis (at least 1-D)")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(f"batches: arrays must have the same length (time axis 0), got {lengths}")
    if lengths[0] < steps:
        raise ValueError(f"batches: arrays have {lengths[0]} time steps, fewer than steps={steps}")
    gen = _generator(rng)
    last = lengths[0] - steps

    def sample():
        offsets = gen.integers(last + 1, size=batch_size)
        return [np.stack([a[o : o + steps] for o in offsets]) for a in arrays]

    return sample


class Text:
    """A text as a sequence of character classes.

    Characters of the alphabet get classes ``1 .. len(alphabet)``; every
    other character is replaced by ``unknown``, class 0.

    Parameters
    ----------
    text : str
        The text.
    alphabet : str or sequence of str, optional
        The characters to keep. By default, every character that occurs at
        least ``min_count`` times in ``text`` (other than ``unknown``), in
        sorted order.
    min_count : int, optional
        See ``alphabet`` (default 2).
    unknown : str, optional
        The character standing for all others (default ``'\\0'``).

    Attributes
    ----------
    text : str
        The text with out-of-alphabet characters replaced by ``unknown``.
    alphabet : str
        The kept characters, in class order from 1.

    Examples
    --------
    >>> t = Text('hello world', min_count=2)
    >>> t.alphabet
    'lo'
    >>> t.encode('lol!')
    [1, 2, 1, 0]
    >>> t.decode([1, 2, 0])
    'lo\\x00'
    """

    def __init__(self, text, alphabet=None, min_count=2, unknown="\0"):
        if not isinstance(text, str):
            raise TypeError(f"Text: text must be a str, got {type(text).__name__}")
        if not isinstance(unknown, str) or len(unknown) != 1:
            raise ValueError(f"Text: unknown must be one character, got {unknown!r}")
        if alphabet is None:
            counts = collections.Counter(text)
            alphabet = sorted(c for c, n in counts.items() if n >= min_count and c != unknown)
        alphabet = "".join(dict.fromkeys(c for c in alphabet if c != unknown))
        self.unknown = unknown
        self.alphabet = alphabet
        self._index = {c: i + 1 for i, c in enumerate(alphabet)}
        self._chars = unknown + alphabet
        self.text = "".join(c if c in self._index else unknown for c in text)

    @property
    def num_classes(self):
        """Number of classes: the alphabet plus the unknown character."""
        return len(self.alphabet) + 1

    def encode(self, txt):
        """Turn a string into a list of class labels (0 for unknown characters).

        Parameters
        ----------
        txt : str

        Returns
        -------
        list of int
        """
        return [self._index.get(c, 0) for c in txt]

    def decode(self, enc):
        """Turn class labels back into a string.

        Parameters
        ----------
        enc : sequence of int

        Returns
        -------
        str
        """
        try:
            return "".join(self._chars[int(i)] for i in enc)
        except IndexError:
            raise ValueError(f"Text.decode: labels must be in 0..{len(self.alphabet)}") from None

    def classifier_batches(self, steps, batch_size, rng=None):
        """Make a callable producing training batches for a character model.

        Each batch holds ``batch_size`` random windows of ``steps``
        characters: one-hot inputs of shape ``(batch_size, steps,
        num_classes)`` and, as targets, the label of the *next* character at
        every position, shape ``(batch_size, steps)``.

        Parameters
        ----------
        steps : int
            Window length.
        batch_size : int
            Windows per batch.
        rng : None, int, RandomState or Generator, optional
            Source of the random offsets.

        Returns
        -------
        callable
            Takes no arguments and returns ``[inputs, labels]`` (float32 and
            int32 arrays).

        Raises
        ------
        ValueError
            If the text has fewer than ``steps + 1`` characters.
        """
        for name, value in (("steps", steps), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(
                    f"classifier_batches: {name} must be a positive integer, got {value!r}"
                )
        encoded = np.asarray(self.encode(self.text), dtype="int32")
        if len(encoded) < steps + 1:
            raise ValueError(
                f"classifier_batches: the text has {len(encoded)} characters; windows of "
                f"{steps} steps need at least {steps + 1}"
            )
        gen = _generator(rng)
        eye = np.eye(self.num_classes, dtype="float32")
        last = len(encoded) - steps - 1

        def sample():
            offsets = gen.integers(last + 1, size=batch_size)
            windows = np.stack([encoded[o : o + steps + 1] for o in offsets])
            return [eye[windows[:, :-1]], windows[:, 1:]]

        return sample
