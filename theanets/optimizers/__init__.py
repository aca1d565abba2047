"""Gradient-based optimizers for PyTensor losses (the algorithms of ``downhill``).

An optimizer minimises any scalar PyTensor expression over a list of shared
variables, feeding its symbolic inputs from mini-batches of data::

    opt = theanets.optimizers.build('rmsprop', loss, params, inputs)
    for train, valid in opt.iterate(train_data, valid_data, learning_rate=1e-3):
        print(train['loss'], valid['loss'])

Registered algorithms: ``sgd``, ``nag``, ``rprop``, ``rmsprop``, ``adagrad``,
``adadelta``, ``esgd`` and ``adam``.
"""

from .adaptive import ADADELTA, ADAGRAD, ESGD, Adam, RMSProp, RProp
from .base import Optimizer, build
from .dataset import Dataset
from .first_order import NAG, SGD

__all__ = [
    "ADADELTA",
    "ADAGRAD",
    "ESGD",
    "NAG",
    "SGD",
    "Adam",
    "Dataset",
    "Optimizer",
    "RMSProp",
    "RProp",
    "build",
]
