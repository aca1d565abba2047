"""Training: drive an optimizer (or a pretraining scheme) over a network.

:func:`itertrain` is what :meth:`theanets.graph.Network.itertrain` calls. The
``algo`` argument picks one of

* an optimizer from :mod:`theanets.optimizers` (``'sgd'``, ``'nag'``,
  ``'rprop'``, ``'rmsprop'``, ``'adagrad'``, ``'adadelta'``, ``'esgd'``,
  ``'adam'``), which updates every parameter of the network;
* ``'layerwise'`` (also ``'supervised'``, or any name starting with
  ``'sup'``/``'layer'``): greedy layer-by-layer supervised training;
* ``'pretrain'`` (also ``'unsupervised'``, any name starting with
  ``'pre'``/``'unsup'``): each hidden layer is trained as the encoder of a
  tied-weight autoencoder, then the whole network is trained;
* ``'sample'``: weights are set from samples of the data, no optimisation.

Every keyword argument is checked once, up front: it must be understood by
the optimizer, by :mod:`theanets.regularizers`, or be one of the trainer's own
(``monitors``, ``monitor_gradients``). A misspelt name raises
:class:`theanets.util.ConfigurationError` suggesting the closest one.

This module sits above :mod:`theanets.graph` and uses :class:`Network
<theanets.graph.Network>` only through its public methods: the stage networks
of the pretrainers are made with :meth:`~theanets.graph.Network.from_layers`,
and compiled optimizers and stage networks are cached here, per network,
keyed by :meth:`~theanets.graph.Network.cache_key`. :func:`itertrain` is
registered with :func:`theanets.graph.implements` as what
:meth:`~theanets.graph.Network.itertrain` calls.
"""

import functools
import numbers
import os
import time
import warnings
import weakref

import numpy as np
import scipy.sparse

from . import graph, optimizers, regularizers, util
from . import layers as _layers
from . import losses as _losses
from .optimizers.dataset import as_array_list

__all__ = [
    "itertrain",
    "build_trainer",
    "SupervisedPretrainer",
    "UnsupervisedPretrainer",
    "SampleTrainer",
    "OptimizerTrainer",
]

#: Keyword arguments handled by the trainer itself.
TRAINER_KWARGS = ("monitors", "monitor_gradients")


def _split_kwargs(kwargs, algo):
    """Check all keyword arguments; return (regularizer/monitor kwargs, optimizer kwargs)."""
    opt_known = optimizers.Optimizer.lookup(algo).known_kwargs()
    reg_known = regularizers.known_kwargs()
    util.check_unknown_kwargs(kwargs, opt_known | reg_known | set(TRAINER_KWARGS), "train()")
    graph_kwargs = {k: v for k, v in kwargs.items() if k in reg_known or k == "monitors"}
    opt_kwargs = {k: v for k, v in kwargs.items() if k in opt_known}
    return graph_kwargs, opt_kwargs


def _as_data(network, data, what):
    """Validate array data; pass callables and datasets through."""
    if data is None or callable(data) or isinstance(data, optimizers.Dataset):
        return data
    arrays = as_array_list(data)
    if arrays is None:
        raise TypeError(
            f"{what} data must be a list of arrays, a callable or a Dataset, got "
            f"{type(data).__name__}"
        )
    data = arrays
    if not data or any(getattr(a, "shape", (1,))[0] == 0 for a in data):
        raise ValueError(f"{what} data is empty")
    return network.check_data(list(data), what=f"{what} data")


#: Per network (held weakly, so the cache goes with the network): compiled
#: optimizers and stage networks, keyed by what they were built for.
_CACHES = weakref.WeakKeyDictionary()


def _cache(network, kind):
    """The dict of cached ``kind`` (``'optimizers'`` or ``'stages'``) of one network."""
    return _CACHES.setdefault(network, {}).setdefault(kind, {})


class OptimizerTrainer:
    """Train every parameter of a network with one optimizer.

    Compiled optimizers are cached for each network, keyed by the algorithm
    and the graph (layers, losses, regularizers, monitors), so repeated calls
    to ``train`` with the same configuration do not recompile.

    Parameters
    ----------
    algo : str
        A registered optimizer name.
    network : :class:`theanets.graph.Network`
    """

    def __init__(self, algo, network):
        self.algo = algo
        self.network = network

    def _optimizer(self, graph_kwargs, monitor_gradients):
        net = self.network
        monitor_spec = graph_kwargs.pop("monitors", None)
        regs = regularizers.from_kwargs(net, **graph_kwargs)
        key = (
            self.algo.lower(),
            net.cache_key(regs),
            repr(monitor_spec),
            bool(monitor_gradients),
        )
        cache = _cache(net, "optimizers")
        if key not in cache:
            loss = net.loss(**graph_kwargs)
            monitors = net.monitors(monitors=monitor_spec, **graph_kwargs)
            cache[key] = optimizers.build(
                self.algo,
                loss,
                net.params,
                net.variables,
                updates=net.updates(**graph_kwargs),
                monitors=monitors,
                monitor_gradients=monitor_gradients,
            )
        return cache[key]

    def itertrain(self, train, valid=None, **kwargs):
        """Yield ``(train_monitors, valid_monitors)`` after each epoch.

        Parameters
        ----------
        train : list of arrays, callable or :class:`theanets.optimizers.Dataset`
            Training data, as for :func:`itertrain`.
        valid : same kinds as ``train``, optional
            Validation data; defaults to the training data.
        **kwargs
            Optimizer options (``learning_rate``, ``batch_size``,
            ``patience``, ...), regularizer keyword arguments, ``monitors``
            and ``monitor_gradients``; the regularizers and monitors select
            the compiled optimizer, the rest go to its ``iterate``.

        Yields
        ------
        (dict, dict)
            Training and validation monitor values, by monitor name.
        """
        graph_kwargs, opt_kwargs = _split_kwargs(kwargs, self.algo)
        monitor_gradients = kwargs.get("monitor_gradients", False)
        opt = self._optimizer(dict(graph_kwargs), monitor_gradients)
        train = _as_data(self.network, train, "training")
        valid = _as_data(self.network, valid, "validation")
        yield from opt.iterate(train, valid, **opt_kwargs)


def _stage_network(network, stage_layers, loss_output):
    """A network of the same class sharing ``stage_layers``, with copies of its losses.

    The first loss reads ``loss_output`` instead of the network's output.
    """
    losses = []
    for loss in network.losses:
        spec = loss.to_spec()
        form = spec.pop("form")
        if spec["target"] == "input":
            spec["target"] = network.inputs[0]
        if loss is network.losses[0]:
            spec["output_name"] = loss_output
        losses.append(_losses.Loss.build(form, **spec))
    return type(network).from_layers(stage_layers, losses, rng=network.rng)


def _reused_stage(network, key, build):
    """Return the stage network ``build()`` makes, kept on ``network`` for later calls.

    A stage network owns a few layers of its own (the temporary output layer of
    layer-wise training, the tied decoder of pretraining); keeping it lets a
    later ``train`` call with the same algorithm reuse the functions compiled
    for it, as the network's own optimizers are reused. Its own parameters are
    reset to their initial values every time, so a reused stage starts exactly
    as a fresh one would. With a :class:`numpy.random.RandomState` as ``rng``
    the initial values of a fresh stage would be new draws, so then a new
    stage is built every time, as before.
    """
    if not util.is_int(network.rng):
        return build()
    cache = _cache(network, "stages")
    full_key = (key, network.cache_key())
    if full_key not in cache:
        stage = build()
        shared = {id(p) for p in network.params}
        own = [p for p in stage.params if id(p) not in shared]
        cache[full_key] = (stage, [(p, p.get_value()) for p in own])
    stage, initial = cache[full_key]
    for param, value in initial:
        param.set_value(value.copy())
    return stage


class _StagedTrainer:
    """Base of the pretrainers: train a sequence of stage networks in turn."""

    #: Label used in log lines.
    label = "stage"

    def __init__(self, subalgo, network):
        self.subalgo = subalgo
        self.network = network

    def _stages(self):
        raise NotImplementedError

    def _run_stages(self, train, valid, kwargs):
        for name, stage in self._stages():
            util.log("{}: stage {}", self.label, name)
            trainer = OptimizerTrainer(self.subalgo, stage)
            yield from trainer.itertrain(train, valid, **kwargs)


class SupervisedPretrainer(_StagedTrainer):
    """Greedy supervised layer-by-layer training (``algo='layerwise'``).

    For each hidden layer ``i`` in turn, a temporary network made of the
    layers up to ``i`` and a fresh output layer (named ``lwout``, with the
    size and activation of the real output layer) is trained with
    ``subalgo``; the hidden layers are shared, so what they learn stays.
    Finally the whole network is trained.

    Parameters
    ----------
    subalgo : str
        The optimizer used for each stage.
    network : :class:`theanets.graph.Network`
    """

    label = "layerwise training"

    def _stages(self):
        net = self.network
        out = net.layers[-1]
        hidden = [
            layer
            for layer in net.layers[1:-1]
            if not isinstance(layer, _layers.Input) and layer.params
        ]

        def build(index, layer):
            head = _layers.Feedforward(
                size=out.size,
                inputs=layer.output_name,
                name="lwout",
                activation=out.activation,
            )
            stage = _stage_network(net, net.layers[: index + 1], "lwout:out")
            stage.add_layer(head)
            return stage

        for layer in hidden:
            make = functools.partial(build, net.layers.index(layer), layer)
            yield layer.name, _reused_stage(net, ("layerwise", layer.name), make)
        yield "all", net

    def itertrain(self, train, valid=None, **kwargs):
        """Train each stage in turn, yielding every stage's monitors.

        Parameters
        ----------
        train, valid
            Training and validation data, as for
            :meth:`OptimizerTrainer.itertrain`; each stage trains on them.
        **kwargs
            Training options for every stage, as for
            :meth:`OptimizerTrainer.itertrain`.

        Yields
        ------
        (dict, dict)
            Training and validation monitor values after each epoch of each
            stage, the whole network's last.
        """
        yield from self._run_stages(train, valid, kwargs)


class UnsupervisedPretrainer(_StagedTrainer):
    """Unsupervised pretraining with tied autoencoders (``algo='pretrain'``).

    For each hidden layer ``i`` in turn, a temporary autoencoder made of the
    layers up to ``i`` followed by tied layers mirroring them back to the
    input (the last one linear) is trained with ``subalgo`` to reconstruct
    the inputs (a plain :class:`~theanets.graph.Network` whose mean squared
    error loss has the input as its target). The encoder layers are the
    network's own, so their weights are kept. Only the inputs of the training
    data are used; the output layer is left as it is.

    Parameters
    ----------
    subalgo : str
    network : :class:`theanets.graph.Network`
    """

    label = "unsupervised pretraining"

    def _stages(self):
        net = self.network
        encoders = [
            layer
            for layer in net.layers[1:-1]
            if isinstance(layer, _layers.Feedforward) and len(layer.inputs) == 1
        ]

        def build(depth):
            encoder = net.layers[: net.layers.index(encoders[depth - 1]) + 1]
            stage = graph.Network.from_layers(encoder, rng=net.rng)
            for k, partner in enumerate(reversed(encoders[:depth])):
                last = k == depth - 1
                tied = _layers.Tied(
                    partner=partner,
                    inputs=stage.layers[-1].output_name,
                    name="out" if last else f"tied-{partner.name}",
                    activation="linear" if last else encoders[depth - 2 - k].activation,
                )
                stage.add_layer(tied)
            stage.set_loss("mse", target=stage.inputs[0])
            return stage

        for depth in range(1, len(encoders) + 1):
            name = encoders[depth - 1].name
            yield name, _reused_stage(net, ("pretrain", name), functools.partial(build, depth))

    def itertrain(self, train, valid=None, **kwargs):
        """Pretrain each encoder layer, then train the whole network.

        Parameters
        ----------
        train, valid
            The data, as for :meth:`OptimizerTrainer.itertrain`; the
            pretraining stages use only the inputs of both.
        **kwargs
            Options for the optimizer of the pretraining stages and of the
            final training (see :meth:`OptimizerTrainer.itertrain`).

        Yields
        ------
        (dict, dict)
            Training and validation monitor values after each epoch of each
            stage, then of the training of the whole network.
        """
        n_inputs = len(self.network.inputs)

        def inputs_only(data):
            if isinstance(data, (list, tuple)):
                return list(data[:n_inputs])
            if callable(data) and not isinstance(data, optimizers.Dataset):
                return lambda: list(data()[:n_inputs])
            return data

        yield from self._run_stages(
            inputs_only(train), None if valid is None else inputs_only(valid), kwargs
        )
        yield from OptimizerTrainer(self.subalgo, self.network).itertrain(train, valid, **kwargs)


class SampleTrainer:
    """Set weights from samples of the data (``algo='sample'``), as upstream did.

    In one pass, without gradient steps:

    1. each weight matrix of the output layer whose columns match the
       targets' size gets, as its rows, randomly chosen target examples, each
       scaled to unit length (for an autoencoder the targets are the inputs);
    2. the first weight matrix whose rows match the inputs' size gets, as its
       columns, randomly chosen input examples, each scaled to unit length.

    Other weights and every bias keep their values. Integer class labels are
    not vectors, so a classifier's output layer is left alone. Sequence data
    contribute every time step as an example. Yields one pair of monitors with
    the real loss after sampling (upstream reported 0).

    Parameters
    ----------
    network : :class:`theanets.graph.Network`
    """

    def __init__(self, network):
        self.network = network

    def itertrain(self, train, valid=None, **kwargs):
        """Sample the weights, then yield the monitors once.

        Parameters
        ----------
        train : list of arrays
            Training data: inputs, then targets for a model that has them
            (a callable or a :class:`theanets.optimizers.Dataset` is
            refused).
        valid : optional
            Not used.
        **kwargs
            Only ``rng`` (an int seed or a RandomState) is used, to choose
            the examples; by default the network's ``rng``. Other training
            options are ignored.

        Yields
        ------
        (dict, dict)
            Once: ``{'loss': value}`` on the training data after sampling,
            as both the training and the validation monitors.

        Raises
        ------
        ConfigurationError
            If the training data are not arrays.
        """
        net = self.network
        rng = kwargs.get("rng")
        rng = util.resolve_rng(
            rng if util.is_int(rng) or isinstance(rng, np.random.RandomState) else net.rng
        )
        data = _as_data(net, train, "training")
        if not isinstance(data, list):
            raise util.ConfigurationError("algo='sample' needs the training data as arrays")
        inputs = _examples(data[0])
        targets = _examples(data[len(net.inputs)]) if len(data) > len(net.inputs) else inputs
        if targets.dtype.kind == "f":
            for param in net.layers[-1].params:
                shape = param.get_value(borrow=True).shape
                if len(shape) == 2 and shape[1] == targets.shape[1]:
                    param.set_value(_unit_samples(targets, shape[0], rng).astype(param.dtype))
        for param in (p for layer in net.layers for p in layer.params):
            shape = param.get_value(borrow=True).shape
            if len(shape) == 2 and shape[0] == inputs.shape[1]:
                param.set_value(_unit_samples(inputs, shape[1], rng).T.astype(param.dtype))
                break
        loss = net.loss_value(*data)
        monitors = {"loss": loss}
        util.log("sample 1 loss={:.6f}", loss)
        yield monitors, dict(monitors)


def _examples(array):
    """View data as (examples, features): time steps of sequences count as examples."""
    array = np.asarray(array.toarray() if scipy.sparse.issparse(array) else array)
    return array.reshape(-1, array.shape[-1]) if array.ndim > 1 else array


def _unit_samples(examples, count, rng):
    """Draw ``count`` examples (rows), each scaled to unit length."""
    rows = rng.choice(len(examples), size=count, replace=len(examples) < count)
    chosen = examples[rows].astype(np.float64)
    norms = np.linalg.norm(chosen, axis=1, keepdims=True)
    return chosen / np.where(norms > 0, norms, 1)


def build_trainer(algo, network, subalgo="rmsprop"):
    """Return the trainer for an ``algo`` name.

    Parameters
    ----------
    algo : str or trainer object
        An optimizer name, ``'layerwise'``/``'supervised'``,
        ``'pretrain'``/``'unsupervised'``, ``'sample'``, or an object with an
        ``itertrain`` method (used as is).
    network : :class:`theanets.graph.Network`
    subalgo : str, optional
        The optimizer used by the pretrainers.

    Returns
    -------
    trainer
    """
    if hasattr(algo, "itertrain"):
        return algo
    if not isinstance(algo, str):
        raise util.ConfigurationError(f"algo must be a name, got {algo!r}")
    name = algo.lower()
    if name == "sample":
        return SampleTrainer(network)
    if name.startswith(("layer", "sup")):
        optimizers.Optimizer.lookup(subalgo)
        return SupervisedPretrainer(subalgo, network)
    if name.startswith(("pre", "unsup")):
        optimizers.Optimizer.lookup(subalgo)
        return UnsupervisedPretrainer(subalgo, network)
    if not optimizers.Optimizer.is_registered(name):
        choices = optimizers.Optimizer.registered_names() + ["layerwise", "pretrain", "sample"]
        raise util.ConfigurationError(
            f"unknown training algorithm {algo!r}.{util.closest_match(name, choices)} "
            f"Valid names: {', '.join(choices)}"
        )
    return OptimizerTrainer(name, network)


def _progress_target(target):
    """The file to save progress to: ``{}`` in a name becomes the Unix time."""
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if isinstance(target, str) and "{}" in target:
        return target.format(int(time.time()))
    return target


@graph.implements("itertrain")
def itertrain(
    network,
    train,
    valid=None,
    algo="rmsprop",
    subalgo="rmsprop",
    save_every=0,
    save_progress=None,
    **kwargs,
):
    """Train a network, yielding monitor values after every epoch.

    Parameters
    ----------
    network : :class:`theanets.graph.Network`
    train : list of arrays, callable or :class:`theanets.optimizers.Dataset`
        Training data: inputs, then targets, then weights (for weighted
        losses), in the order of ``network.variables``; ``scipy.sparse``
        matrices for sparse inputs; or a callable returning one batch.
    valid : same kinds as ``train``, optional
        Validation data; defaults to the training data.
    algo : str, optional
        Training algorithm (default ``'rmsprop'``); see the module docs.
    subalgo : str, optional
        Optimizer used by the pretrainers (default ``'rmsprop'``).
    save_every : int or float, optional
        With ``save_progress``, how often to save while training. Counting
        the yielded pairs from 0, an int ``N`` saves after pair ``i`` when
        ``i > 0`` and ``i % N == 0`` (with ``N = 2``: after the 3rd, 5th,
        7th... pair), as Theano-era theanets did; a float saves after a pair
        once that many minutes have passed since the last save. 0 (the
        default) saves only when training ends.
    save_progress : str, path or file object, optional
        Where to save the model, during training as ``save_every`` says and
        once more when training ends (after the best parameters are
        restored). ``{}`` in a file name is replaced by the integer Unix time
        of each save. Files are written atomically (to a temporary file that
        then replaces the target).
    **kwargs
        Optimizer options (``learning_rate``, ``momentum``, ``batch_size``,
        ``patience``, ...), regularizers (``weight_l2``, ``hidden_dropout``,
        ...), ``monitors`` and ``monitor_gradients``. ``algorithm=`` is a
        deprecated spelling of ``algo``.

    Yields
    ------
    (dict, dict)
        Training and validation monitors after each epoch.

    Raises
    ------
    ConfigurationError
        For an unknown algorithm or keyword argument.
    """
    if "algorithm" in kwargs:
        warnings.warn("algorithm= is deprecated; use algo=", DeprecationWarning, stacklevel=3)
        algo = kwargs.pop("algorithm")
        if isinstance(algo, (list, tuple)):
            algo = algo[0]
    util.check_number("save_every", save_every, low=0)
    trainer = build_trainer(algo, network, subalgo)
    if not isinstance(trainer, SampleTrainer):
        check_algo = trainer.algo if isinstance(trainer, OptimizerTrainer) else subalgo
        _split_kwargs(kwargs, check_algo)
    kwargs.setdefault("rng", network.rng if isinstance(network.rng, numbers.Integral) else None)

    last_save = time.time()
    for i, monitors in enumerate(trainer.itertrain(train, valid, **kwargs)):
        yield monitors
        if save_progress is not None and save_every and i > 0:
            if isinstance(save_every, numbers.Integral):
                due = i % save_every == 0
            else:
                due = time.time() - last_save >= 60 * save_every
            if due:
                network.save(_progress_target(save_progress))
                last_save = time.time()
    if save_progress is not None:
        network.save(_progress_target(save_progress))
