"""Convolutional models: feed-forward models whose inputs are images.

Inputs are arrays of shape ``(batch, width, height, channels)``; the first
item of the layer list is the shape of one image, e.g. ``(28, 28, 1)``.
Convolution and pooling layers (:class:`~theanets.layers.Conv2`,
:class:`~theanets.layers.Pool2`) keep that layout, and a ``'flatten'`` layer
turns it into the ``(batch, features)`` layout of fully connected layers::

    net = theanets.convolution.Classifier([
        (28, 28, 1),
        dict(form='conv2', size=32, filter_size=3),
        dict(form='pool2', pool_size=2),
        dict(form='conv2', size=64, filter_size=3),
        dict(form='pool2', pool_size=2),
        'flatten',
        (128, 'relu'),
        10,
    ])

* :class:`Regressor`: real-valued targets, mean squared error by default.
* :class:`Classifier`: integer class labels, cross-entropy by default.
"""

from . import feedforward

__all__ = ["Regressor", "Classifier"]


class _ImageData:
    """Model settings shared by the convolutional models."""

    #: Inputs are (batch, width, height, channels).
    INPUT_NDIM = 4


class Regressor(_ImageData, feedforward.Regressor):
    """A regression model on ``(batch, width, height, channels)`` images.

    Targets have the shape of the output layer's output: ``(batch,
    outputs)`` after a ``'flatten'`` and fully connected layers, or an image
    shape when the last layer is a convolution.

    Parameters
    ----------
    layers, loss, weighted, rng, **kwargs
        As for :class:`theanets.feedforward.Regressor`; the first layer
        spec is the shape of one image.

    Examples
    --------
    >>> import numpy as np
    >>> net = Regressor([(5, 5, 2), dict(form='conv2', size=3, filter_size=2),
    ...                  'flatten', 1])
    >>> net.predict(np.zeros((4, 5, 5, 2), 'float32')).shape
    (4, 1)
    """


class Classifier(_ImageData, feedforward.Classifier):
    """A classification model on ``(batch, width, height, channels)`` images.

    Targets are integer class labels, one per image; the output layer is a
    softmax over classes.

    Parameters
    ----------
    layers, loss, weighted, rng, **kwargs
        As for :class:`theanets.feedforward.Classifier`. The first item of
        ``layers`` is the ``(width, height, channels)`` of one image.

    Examples
    --------
    >>> import numpy as np
    >>> net = Classifier([(6, 6, 1), dict(form='conv2', size=4, filter_size=3),
    ...                   dict(form='pool2', pool_size=2), 'flatten', 3])
    >>> net.predict(np.zeros((2, 6, 6, 1), 'float32')).shape
    (2,)
    """
