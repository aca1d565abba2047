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

import numpy as np

from . import feedforward, util

__all__ = ["Regressor", "Classifier", "Autoencoder", "batches", "Text"]


class _SequenceData:
    """Checks shared by the recurrent models: time axes must agree."""

    INPUT_NDIM = 3

    def check_data(self, data, what="data"):
        """Check and convert data for the loss (see :meth:`theanets.graph.Network.check_data`).

        Parameters
        ----------
        data : sequence of arrays
            Inputs, then targets, then weights, each ``(batch, time, ...)``.
        what : str, optional
            What the data are, for error messages.

        Returns
        -------
        list
            One array per variable of the loss.

        Raises
        ------
        ValueError
            Also if the arrays do not all have the same number of time steps.
        """
        arrays = super().check_data(data, what)
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

    Parameters
    ----------
    layers, loss, weighted, rng, **kwargs
        As for :class:`theanets.feedforward.Regressor`.

    Examples
    --------
    >>> import numpy as np
    >>> net = Regressor([3, (4, 'rnn'), 2])
    >>> net.predict(np.zeros((5, 7, 3), 'float32')).shape
    (5, 7, 2)
    """


class Autoencoder(_SequenceData, feedforward.Autoencoder):
    """A recurrent model trained to reproduce its input sequences.

    Parameters
    ----------
    layers, loss, weighted, rng, **kwargs
        As for :class:`theanets.feedforward.Autoencoder`: the loss compares
        the output sequences with the input sequences.

    Examples
    --------
    Each reconstruction has the shape of the sequences it was given:

    >>> import numpy as np
    >>> sequences = np.zeros((2, 5, 3), 'float32')
    >>> Autoencoder([3, (4, 'gru'), 3]).predict(sequences).shape == sequences.shape
    True
    """


class Classifier(_SequenceData, feedforward.Classifier):
    """A recurrent model that assigns a class to every time step.

    Inputs have shape ``(batch, time, features)`` and targets are integer
    labels of shape ``(batch, time)``. :meth:`predict` returns labels of
    shape ``(batch, time)``, :meth:`predict_proba` and
    :meth:`predict_logit` arrays of shape ``(batch, time, classes)``, and
    :meth:`score` the accuracy over all time steps.

    Parameters
    ----------
    layers, loss, weighted, rng, **kwargs
        As for :class:`theanets.feedforward.Classifier` (cross-entropy of
        the labels of every time step by default).

    Examples
    --------
    >>> import numpy as np
    >>> net = Classifier([4, (6, 'lstm'), 3])
    >>> net.predict(np.zeros((2, 5, 4), 'float32')).shape
    (2, 5)
    """

    def predict_sequence(self, labels, steps, streams=1, rng=None):
        """Sample continuations of a sequence of class labels.

        The model must read one-hot encoded labels (its input size equals its
        number of classes), as a character model trained on
        :meth:`Text.classifier_batches` does. The priming ``labels`` are
        written one-hot into a zero buffer of ``max(2, streams)`` rows
        ("streams") and ``len(labels) + steps`` time steps. At each step the
        model reads every stream up to its last filled time step; the class
        probabilities it predicts *at that time step* give the stream's next
        label, drawn with ``rng.multinomial`` (or the most probable class
        when NumPy rejects the probabilities for not summing to one). The
        label is written one-hot into the next time step.

        Parameters
        ----------
        labels : sequence of int
            The priming sequence: at least one label, each in
            ``0 .. num_classes - 1``.
        steps : int
            Number of labels to generate (0 or more).
        streams : int, optional
            Number of sequences sampled in parallel from the same priming
            sequence (default 1).
        rng : None, int or RandomState, optional
            Source of the draws: an int seeds a fresh
            :class:`numpy.random.RandomState`, None makes an unseeded one.

        Returns
        -------
        iterator
            Yields, once per step, the first stream's next label (an int)
            when ``streams == 1``, else a list with one label per stream.

        Raises
        ------
        ConfigurationError
            If the model's input size is not its number of classes, or
            ``rng`` is not a seed or a RandomState.
        ValueError
            For empty or out-of-range priming labels, or bad ``steps`` or
            ``streams``. Arguments are checked when the method is called,
            before anything is generated.

        Examples
        --------
        >>> net = Classifier([3, (4, 'rnn'), 3])
        >>> len(list(net.predict_sequence([0, 1], 4, rng=0)))
        4
        """
        k = self.num_classes
        size = self.layers[0].output_shape[-1]
        if size < k:
            raise util.ConfigurationError(
                f"predict_sequence writes each label one-hot into the input, so the input needs "
                f"at least as many features as there are classes; this model reads {size} "
                f"features for {k} classes"
            )
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"predict_sequence: labels must be a non-empty sequence of integers, got {labels!r}"
            )
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"predict_sequence: labels must be in 0..{k - 1}, got {labels}")
        steps = util.check_number("steps", steps, low=0, integer=True, where="predict_sequence")
        streams = util.check_number(
            "streams", streams, low=1, integer=True, where="predict_sequence"
        )
        return self._sample_sequence(labels, steps, streams, util.resolve_rng(rng))

    def _sample_sequence(self, labels, steps, streams, rng):
        """Generator behind :meth:`predict_sequence` (arguments already checked)."""
        primed = len(labels)
        rows = np.arange(max(2, streams))
        size = self.layers[0].output_shape[-1]
        buffer = np.zeros((len(rows), primed + steps, size), self.inputs[0].dtype)
        buffer[:, np.arange(primed), labels] = 1
        for t in range(primed, primed + steps):
            probs = self.predict_proba(buffer[:, :t])[:, -1]
            drawn = [_draw(rng, p) for p in probs]
            buffer[rows, t, drawn] = 1
            yield drawn[0] if streams == 1 else drawn


def _draw(rng, probs):
    """One label from a class distribution; the argmax if NumPy rejects it."""
    try:
        return int(rng.multinomial(1, probs).argmax())
    except ValueError:
        return int(np.argmax(probs))


def batches(arrays, steps=100, batch_size=64, rng=None):
    """Make a callable that cuts random training windows out of sequences.

    Each array holds one long sequence with time along its first axis, e.g.
    inputs of shape ``(T, features)`` and targets of shape ``(T, outputs)``
    or labels of shape ``(T,)``. Every call of the returned function picks
    ``batch_size`` random start offsets ``o`` in ``0 .. T - steps`` and
    returns, for each array, the windows ``array[o:o + steps]`` stacked into
    shape ``(batch_size, steps, ...)``. The same offsets are used for all
    arrays, so inputs, targets and weights stay aligned.

    Parameters
    ----------
    arrays : sequence of ndarray
        The sequences, all of the same length ``T >= steps``.
    steps : int, optional
        Length of each window (default 100).
    batch_size : int, optional
        Number of windows per batch (default 64).
    rng : None, int or RandomState, optional
        Source of the random offsets: an int seeds a fresh
        :class:`numpy.random.RandomState`, None makes an unseeded one.

    Returns
    -------
    callable
        Takes no arguments and returns a list with one
        ``(batch_size, steps, ...)`` array per input array, of that array's
        dtype; it can be given to ``net.train`` as training data.

    Raises
    ------
    ValueError
        If no array is given, the arrays have different lengths or are
        shorter than ``steps``, or ``steps`` or ``batch_size`` is not a
        positive integer.

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
    steps = util.check_number("steps", steps, low=1, integer=True, where="batches")
    batch_size = util.check_number("batch_size", batch_size, low=1, integer=True, where="batches")
    if any(a.ndim == 0 for a in arrays):
        raise ValueError("batches: arrays must have a time axis (at least 1-D)")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(f"batches: arrays must have the same length (time axis 0), got {lengths}")
    if lengths[0] < steps:
        raise ValueError(f"batches: arrays have {lengths[0]} time steps, fewer than steps={steps}")
    rng = util.resolve_rng(rng)
    offsets_high = lengths[0] - steps + 1

    def sample():
        offsets = rng.randint(offsets_high, size=batch_size)
        return [np.stack([a[o : o + steps] for o in offsets]) for a in arrays]

    return sample


class Text:
    """A text as a sequence of character classes.

    Characters of the alphabet ``alpha`` get classes ``1 .. len(alpha)``;
    every other character is replaced by ``unknown``, class 0.

    Parameters
    ----------
    text : str
        The text.
    alpha : str, optional
        The characters to keep, in class order, used as given; it must not
        contain ``unknown`` or repeat a character. By default, every
        character that occurs at least ``min_count`` times in ``text`` (other
        than ``unknown``), in sorted order.
    min_count : int, optional
        See ``alpha`` (default 2).
    unknown : str, optional
        The character standing for all others (default ``'\\0'``).

    Attributes
    ----------
    text : str
        The text with out-of-alphabet characters replaced by ``unknown``.
    alpha : str
        The kept characters, in class order from 1.
    alphabet : str
        Another name for ``alpha``.
    unknown : str
        The character of class 0.

    Raises
    ------
    ValueError
        If ``alpha`` contains ``unknown`` or a character twice, ``unknown`` is
        not one character, or ``min_count`` is not an integer.

    Examples
    --------
    >>> t = Text('hello world', min_count=2)
    >>> t.alpha
    'lo'
    >>> t.encode('lol!')
    [1, 2, 1, 0]
    >>> t.decode([1, 2, 0])
    'lo\\x00'
    """

    def __init__(self, text, alpha=None, min_count=2, unknown="\0"):
        if not isinstance(text, str):
            raise TypeError(f"Text: text must be a str, got {type(text).__name__}")
        if not isinstance(unknown, str) or len(unknown) != 1:
            raise ValueError(f"Text: unknown must be one character, got {unknown!r}")
        util.check_number("min_count", min_count, integer=True, where="Text")
        if alpha is None:
            counts = collections.Counter(text)
            alpha = sorted(c for c, n in counts.items() if n >= min_count and c != unknown)
        elif not isinstance(alpha, str):
            alpha = list(alpha)
            if not all(isinstance(c, str) and len(c) == 1 for c in alpha):
                raise ValueError(f"Text: alpha must be a str of characters, got {alpha!r}")
        alpha = "".join(alpha)
        if unknown in alpha:
            raise ValueError(
                f"Text: alpha must not contain the unknown character {unknown!r}; give another "
                "unknown= or leave it out of alpha"
            )
        repeated = sorted({c for c in alpha if alpha.count(c) > 1})
        if repeated:
            raise ValueError(f"Text: alpha lists characters more than once: {repeated}")
        self.unknown = unknown
        self.alpha = alpha
        self._index = {c: i + 1 for i, c in enumerate(alpha)}
        self._chars = unknown + alpha
        self.text = "".join(c if c in self._index else unknown for c in text)

    @property
    def alphabet(self):
        """The kept characters (another name for :attr:`alpha`)."""
        return self.alpha

    @property
    def num_classes(self):
        """Number of classes: the alphabet plus the unknown character."""
        return len(self.alpha) + 1

    def encode(self, txt):
        """Turn a string into a list of class labels (0 for unknown characters).

        Parameters
        ----------
        txt : str

        Returns
        -------
        list of int
            ``k + 1`` for the character ``alpha[k]``, 0 for any other.
        """
        return [self._index.get(c, 0) for c in txt]

    def decode(self, enc):
        """Turn class labels back into a string (the inverse of :meth:`encode`).

        Parameters
        ----------
        enc : sequence of int
            Labels in ``0 .. len(alpha)``.

        Returns
        -------
        str
            Label 0 becomes ``unknown``.

        Raises
        ------
        ValueError
            For a label outside ``0 .. len(alpha)``.
        """
        labels = [int(i) for i in enc]
        bad = [i for i in labels if not 0 <= i < len(self._chars)]
        if bad:
            raise ValueError(f"Text.decode: labels must be in 0..{len(self.alpha)}, got {bad}")
        return "".join(self._chars[i] for i in labels)

    def classifier_batches(self, steps, batch_size, rng=None):
        """Make a callable producing training batches for a character model.

        Each batch holds ``batch_size`` windows of ``steps + 1`` consecutive
        characters of :attr:`text` from random offsets: the first ``steps``
        characters one-hot as inputs, of shape ``(batch_size, steps,
        1 + len(alpha))``, and, as targets, the label of the *next* character
        at every position, of shape ``(batch_size, steps)``.

        Parameters
        ----------
        steps : int
            Window length.
        batch_size : int
            Windows per batch.
        rng : None, int or RandomState, optional
            Where the window offsets come from, as for :func:`batches`.

        Returns
        -------
        callable
            Takes no arguments and returns ``[inputs, labels]`` (float32 and
            int32 arrays).

        Raises
        ------
        ValueError
            If ``steps`` or ``batch_size`` is not a positive integer, or the
            text has fewer than ``steps + 1`` characters.

        Examples
        --------
        >>> x, y = Text('abcabcabc', min_count=1).classifier_batches(4, 2, rng=0)()
        >>> x.shape, y.shape
        ((2, 4, 4), (2, 4))
        """
        steps = util.check_number("steps", steps, low=1, integer=True, where="classifier_batches")
        batch_size = util.check_number(
            "batch_size", batch_size, low=1, integer=True, where="classifier_batches"
        )
        encoded = np.asarray(self.encode(self.text), dtype="int32")
        if len(encoded) < steps + 1:
            raise ValueError(
                f"classifier_batches: the text has {len(encoded)} characters; windows of "
                f"{steps} steps need at least {steps + 1}"
            )
        rng = util.resolve_rng(rng)
        eye = np.eye(self.num_classes, dtype="float32")
        offsets_high = len(encoded) - steps

        def sample():
            offsets = rng.randint(offsets_high, size=batch_size)
            windows = np.stack([encoded[o : o + steps + 1] for o in offsets])
            return [eye[windows[:, :-1]], windows[:, 1:]]

        return sample
