r"""Regularizers: extra loss terms and graph changes that discourage overfitting.

A regularizer does one of two things to a model:

* it adds a scalar term to the training loss (:meth:`Regularizer.loss`), as
  :class:`WeightL2`, :class:`WeightL1`, :class:`HiddenL1`,
  :class:`Contractive`, :class:`RecurrentNorm` and :class:`RecurrentState`
  do; or
* it rewrites graph outputs while the graph is built
  (:meth:`Regularizer.modify_graph`), as :class:`BernoulliDropout` and
  :class:`GaussianNoise` do.

The training loss of a network is

.. math::
    \mathcal{L} = \sum_j \lambda_j \mathcal{L}_j
                + \sum_r w_r R_r(\theta, Z)

where the first sum runs over the network's losses and the second over the
regularizers, each with weight :math:`w_r` and term :math:`R_r`.

Regularizers are usually asked for with keyword arguments, and the same
arguments work for training and for evaluation (``train``, ``itertrain``,
``loss``, ``monitors``, ``predict``, ``feed_forward``, ``score``)::

    net.train(data, weight_l2=1e-4, hidden_dropout=0.3)
    net.predict(x, hidden_dropout=0.3)   # Monte-Carlo dropout

:func:`from_kwargs` turns such arguments into a list of regularizers; see
there for every accepted name. A subclass of :class:`Regularizer` defined in
user code is available by its lowercase class name at once::

    class WeightInverse(theanets.Regularizer):
        def loss(self, layers, outputs):
            return sum((1 / (p * p).sum(axis=0)).sum()
                       for l in layers for p in l.params if p.ndim == 2)

    net.train(data, weightinverse=0.001)

The package's modules, each importing only those listed after it:

* :mod:`~theanets.regularizers._kwargs` -- :func:`from_kwargs` and
  :func:`known_kwargs`, the keyword arguments of training and evaluation;
* :mod:`~theanets.regularizers.penalties` -- the regularizers that add a
  loss term;
* :mod:`~theanets.regularizers.noise` -- dropout and noise, and the random
  streams they draw from;
* :mod:`~theanets.regularizers._jacobian` -- the Jacobian norms of
  :class:`Contractive` (:func:`jacobian_norm`);
* :mod:`~theanets.regularizers.base` -- the :class:`Regularizer` base class;
* :mod:`~theanets.regularizers._matching` -- which layers, parameters and
  graph outputs a pattern names.

Examples
--------
The keyword arguments of a training call, as the regularizers they ask for:

>>> import theanets
>>> net = theanets.Regressor([4, 8, 2])
>>> theanets.regularizers.from_kwargs(net, weight_l2=1e-4, hidden_dropout=0.5)
[BernoulliDropout(pattern=('hid1:out',), weight=0.5, rng=13),
 WeightL2(pattern=None, weight=0.0001)]
"""

from ._jacobian import jacobian_norm
from ._kwargs import from_kwargs, known_kwargs
from .base import Regularizer
from .noise import DEFAULT_SEED, BernoulliDropout, GaussianNoise
from .penalties import (
    Contractive,
    HiddenL1,
    RecurrentNorm,
    RecurrentState,
    WeightL1,
    WeightL2,
)

__all__ = [
    "Regularizer",
    "WeightL2",
    "WeightL1",
    "HiddenL1",
    "Contractive",
    "RecurrentNorm",
    "RecurrentState",
    "BernoulliDropout",
    "GaussianNoise",
    "DEFAULT_SEED",
    "jacobian_norm",
    "from_kwargs",
    "known_kwargs",
]
