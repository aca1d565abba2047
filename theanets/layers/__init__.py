"""Layers: the building blocks of networks.

Every layer class registers itself under its lowercase class name (and any
aliases), so ``Layer.build('lstm', size=10, ...)`` or a network spec such as
``(10, 'lstm')`` finds it.
"""

from .base import Concatenate, Flatten, Input, Layer, Product, Reshape
from .feedforward import Classifier, Feedforward, Tied

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
]
