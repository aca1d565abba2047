"""Layers: the building blocks of networks.

Every layer class registers itself under its lowercase class name (and any
aliases), so ``Layer.build('lstm', size=10, ...)`` or a network spec such as
``(10, 'lstm')`` finds it.
"""

from .base import Concatenate, Flatten, Input, Layer, Product, Reshape
from .convolution import Conv1, Conv2, Convolution, Pool1, Pool2, Pooling
from .feedforward import Classifier, Feedforward, Tied
from .recurrent import (
    BCRNN,
    GRU,
    LSTM,
    MRNN,
    MUT1,
    RNN,
    RRNN,
    SCRN,
    Bidirectional,
    Clockwork,
    Recurrent,
)

__all__ = [
    "Layer",
    "Input",
    "Concatenate",
    "Flatten",
    "Product",
    "Reshape",
    "Feedforward",
    "Classifier",
    "Tied",
    "Recurrent",
    "RNN",
    "BCRNN",
    "RRNN",
    "MRNN",
    "LSTM",
    "GRU",
    "Clockwork",
    "MUT1",
    "SCRN",
    "Bidirectional",
    "Convolution",
    "Conv1",
    "Conv2",
    "Pooling",
    "Pool1",
    "Pool2",
]
