"""theanets: neural network models on PyTensor.

A faithful, modern reimplementation of the theanets toolkit. Models are built
from layer specs, trained with ``net.train(...)``, and evaluated with
``net.predict(...)``::

    import theanets
    net = theanets.Regressor([10, (20, 'tanh'), 3])
    net.train([x, y], algo='rmsprop', weight_l2=1e-4)
    net.predict(x)
"""

from ._blas import configure_blas as _configure_blas

_configure_blas()

from . import (  # noqa: E402
    activations,
    convolution,
    layers,
    losses,
    optimizers,
    recurrent,  # noqa: E402
    regularizers,
    util,
)
from .activations import Activation  # noqa: E402
from .feedforward import Autoencoder, Classifier, Regressor  # noqa: E402
from .graph import Network  # noqa: E402
from .layers import Layer  # noqa: E402
from .losses import Loss  # noqa: E402
from .main import Experiment  # noqa: E402
from .regularizers import Regularizer  # noqa: E402
from .util import ConfigurationError, log  # noqa: E402

# isort: split
# These two register themselves with theanets.graph as what Network's
# train/itertrain, save/load and pickling call.
from . import serialization, trainer  # noqa: E402, F401

__version__ = "0.8.0"

__all__ = [
    "Activation",
    "Autoencoder",
    "Classifier",
    "ConfigurationError",
    "Experiment",
    "Layer",
    "Loss",
    "Network",
    "Regressor",
    "Regularizer",
    "activations",
    "convolution",
    "layers",
    "log",
    "losses",
    "optimizers",
    "recurrent",
    "regularizers",
    "util",
    "__version__",
]
