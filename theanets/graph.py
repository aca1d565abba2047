"""The :class:`Network` base class: layers, losses, graph building and evaluation.

A network is an ordered list of layers plus one or more losses. Building its
graph walks the layers in order; each layer reads the outputs built so far
from one dictionary and adds its own, keyed by fully scoped names such as
``'hid1:out'``. Regularizers may rewrite a layer's outputs as they are added
(dropout, noise) and may add terms to the loss.

Graphs and compiled functions are cached, keyed by the network's topology,
its losses and the regularizers asked for (:meth:`Network.cache_key`).

Training and persistence live in modules above this one
(:mod:`theanets.trainer`, :mod:`theanets.serialization`), which use
:class:`Network` only through its public methods. This module never imports
them: instead each registers the functions that :meth:`Network.itertrain`,
:meth:`Network.save`, :meth:`Network.load` and pickling hand their work to,
with the :func:`implements` decorator, when it is imported. ``import
theanets`` imports both. Calling one of those methods before its module is
imported raises a :class:`RuntimeError` that names the module.
"""

import inspect
import numbers

import numpy as np
import pytensor
import pytensor.tensor as pt
import scipy.sparse

from . import activations as _activations
from . import backend as _backend
from . import layers as _layers
from . import losses as _losses
from . import optimizers as _optimizers
from . import regularizers as _regularizers
from . import util

__all__ = ["Network", "implements"]

#: The work :class:`Network` hands to higher modules, by role, and the module
#: that provides each role.
_ROLES = {
    "itertrain": "theanets.trainer",
    "save": "theanets.serialization",
    "load": "theanets.serialization",
    "state": "theanets.serialization",
    "from_state": "theanets.serialization",
}

#: The registered implementation of each role.
_IMPLEMENTATIONS = {}


def implements(role):
    """Register the decorated function as what :class:`Network` calls for ``role``.

    The roles and the functions they take:

    ``'itertrain'``
        ``fn(network, train, valid=None, **kwargs)``, a generator of monitor
        pairs, behind :meth:`Network.itertrain` and :meth:`Network.train`;
    ``'save'``
        ``fn(network, target)``, behind :meth:`Network.save`;
    ``'load'``
        ``fn(source)``, returning a network, behind :meth:`Network.load`;
    ``'state'``
        ``fn(network)``, returning the picklable state of a network;
    ``'from_state'``
        ``fn(state, cls)``, returning a new network of class ``cls`` built
        from such a state (unpickling).

    A later registration for a role replaces an earlier one.

    Parameters
    ----------
    role : str
        One of the roles above.

    Returns
    -------
    callable
        A decorator that registers its function and returns it unchanged.

    Raises
    ------
    ValueError
        For an unknown role.
    """
    if role not in _ROLES:
        raise ValueError(f"unknown role {role!r}; known roles: {', '.join(_ROLES)}")

    def register(fn):
        _IMPLEMENTATIONS[role] = fn
        return fn

    return register


def _implementation(role, what):
    """The function registered for ``role``; ``what`` names the caller in the error."""
    try:
        return _IMPLEMENTATIONS[role]
    except KeyError:
        module = _ROLES[role]
        raise RuntimeError(
            f"{what} needs {module}, which has not been imported; import it "
            f"(`import theanets` does) before calling {what}"
        ) from None


#: Keyword arguments a :class:`Network` accepts for compatibility with the
#: 0.7 constructor, besides ``layers``, ``loss``, ``weighted`` and ``rng``.
_COMPAT_KWARGS = ("hidden_activation", "output_activation")


def _unique(items):
    """Drop repeated objects (by identity), keeping the first of each."""
    seen = set()
    return [x for x in items if not (id(x) in seen or seen.add(id(x)))]


#: Keyword arguments of ``train``/``itertrain`` that belong to neither the
#: optimizers nor the regularizers.
_TRAINING_CALL_KWARGS = (
    "algo",
    "algorithm",
    "subalgo",
    "save_every",
    "save_progress",
    "monitors",
    "monitor_gradients",
)


def _reject_training_kwargs(cls, kwargs):
    """Refuse regularizer and training options in a layer spec, saying where they go.

    Theano-era scripts sometimes wrote e.g. ``dict(size=4, input_noise=0.3)``
    as a layer; the old code kept such keywords and ignored them.
    """
    accepted = set()
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            accepted.update(inspect.signature(klass.__dict__["__init__"]).parameters)
    others = {key: value for key, value in kwargs.items() if key not in accepted}
    if not others:
        return
    regularizer_names = _regularizers.known_kwargs()
    training_names = set(_TRAINING_CALL_KWARGS)
    for algo in _optimizers.Optimizer.registered_names():
        training_names |= _optimizers.Optimizer.lookup(algo).known_kwargs()
    for key, value in others.items():
        if key not in regularizer_names | training_names:
            continue
        what = "a regularizer option" if key in regularizer_names else "a training option"
        raise util.ConfigurationError(
            f"layer {kwargs.get('name')!r}: {key!r} is {what}, not a layer setting; "
            f"give it when training: net.train(..., {key}={value!r})"
        )


class Network:
    """A neural network: layers, losses, and the graph that connects them.

    Parameters
    ----------
    layers : sequence
        Layer specs, from the input layer to the output layer. Each item may
        be an int (a size), a tuple such as ``(100, 'tanh')``,
        ``(100, 'lstm')`` or ``('tied', 784)`` (ints are sizes, registered
        layer names are forms, other strings are activations, dicts add
        keyword arguments), a tuple of ints only (a shape such as
        ``(28, 28, 1)``, at any position), a dict
        of :class:`theanets.layers.Layer` keyword arguments with an optional
        ``form``, a form name such as ``'flatten'``, or a Layer instance.
    loss : str or :class:`theanets.losses.Loss`, optional
        The loss to minimise; defaults to ``'mse'``.
    weighted : bool, optional
        Whether the loss takes a weight array per target value.
    rng : int or RandomState, optional
        Seed for initial parameter values; each layer built from an integer
        seed draws from its own fresh ``RandomState(seed)``. Default 13.
    **kwargs
        Only ``hidden_activation`` and ``output_activation`` (str): default
        activations of hidden and output layers, for compatibility with the
        0.7 constructor (per-layer specs take precedence). Any other keyword
        raises :class:`~theanets.util.ConfigurationError`.

    Attributes
    ----------
    layers : list of :class:`theanets.layers.Layer`
    losses : list of :class:`theanets.losses.Loss`
    rng : int or RandomState

    Examples
    --------
    >>> net = Network([3, (4, 'tanh'), 2])
    >>> [layer.name for layer in net.layers]
    ['in', 'hid1', 'out']
    >>> [p.name for p in net.params]
    ['hid1.w', 'hid1.b', 'out.w', 'out.b']
    """

    #: Number of axes of the input data (batch, features).
    INPUT_NDIM = 2
    #: Activation of the output layer unless its spec says otherwise.
    DEFAULT_OUTPUT_ACTIVATION = "linear"
    #: Activation of hidden layers unless their spec says otherwise.
    DEFAULT_HIDDEN_ACTIVATION = "relu"

    def __init__(self, layers=(), loss="mse", weighted=False, rng=13, **kwargs):
        util.check_unknown_kwargs(kwargs, _COMPAT_KWARGS, f"{type(self).__name__}()")
        self._hidden_activation = kwargs.get("hidden_activation", self.DEFAULT_HIDDEN_ACTIVATION)
        self._output_activation = kwargs.get("output_activation", self.DEFAULT_OUTPUT_ACTIVATION)
        if not (util.is_int(rng) or isinstance(rng, np.random.RandomState)):
            raise util.ConfigurationError(f"rng must be an int seed or a RandomState, got {rng!r}")
        self.rng = rng
        self.layers = []
        self.losses = []
        self._graphs = {}
        self._functions = {}
        layers = list(layers)
        for i, spec in enumerate(layers):
            self.add_layer(spec, is_output=i == len(layers) - 1 and i > 0)
        if self.layers and loss is not None:
            self.set_loss(loss, weighted=weighted)

    @classmethod
    def from_layers(cls, layers, losses=(), rng=13):
        """Make a network of this class from layers and losses that already exist.

        The layers are used as they are: they are neither copied nor bound
        again, so the new network shares them, and their parameters, with
        the network they were built in. Training it therefore trains those
        parameters. More layers and losses may be added with
        :meth:`add_layer` and :meth:`add_loss`.

        Parameters
        ----------
        layers : sequence of :class:`theanets.layers.Layer`
            Bound layers in graph order, the input layers first: every input
            a layer reads must be an output of a layer before it.
        losses : sequence of :class:`theanets.losses.Loss`, optional
            The losses, used as they are (none by default).
        rng : int or RandomState, optional
            Seed of layers added later (default 13).

        Returns
        -------
        :class:`Network`
            An instance of the class this is called on.

        Raises
        ------
        TypeError
            If an item of ``layers`` is not a Layer, or of ``losses`` not a Loss.
        ConfigurationError
            If two layers have the same name, or ``rng`` is not a seed.

        Examples
        --------
        >>> net = Network([3, (4, 'tanh'), 2])
        >>> encoder = Network.from_layers(net.layers[:2])
        >>> encoder.params[0] is net.params[0]
        True
        """
        network = cls.__new__(cls)
        # Network's own initialisation: model classes may take other arguments
        Network.__init__(network, layers=(), loss=None, rng=rng)
        layers, losses = list(layers), list(losses)
        for item, kind, what in [(x, _layers.Layer, "layers") for x in layers] + [
            (x, _losses.Loss, "losses") for x in losses
        ]:
            if not isinstance(item, kind):
                raise TypeError(
                    f"from_layers: every item of {what} must be a {kind.__name__}, got {item!r}"
                )
        names = [layer.name for layer in layers]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise util.ConfigurationError(f"from_layers: repeated layer names {repeated}")
        network.layers = layers
        network.losses = losses
        return network

    # ------------------------------------------------------------------
    # building

    def _parse_spec(self, spec, is_output):
        """Turn one layer spec into (form, keyword arguments)."""
        first = not self.layers
        form = "input" if first else "feedforward"
        kwargs = {}
        if util.is_int(spec):
            kwargs["size"] = int(spec)
        elif isinstance(spec, (tuple, list)):
            if spec and all(util.is_int(s) for s in spec):
                kwargs["shape"] = tuple(int(s) for s in spec)
            else:
                for item in spec:
                    if util.is_int(item):
                        kwargs["size"] = int(item)
                    elif isinstance(item, str):
                        if _layers.Layer.is_registered(item):
                            form = item
                        elif _activations.is_known(item):
                            kwargs["activation"] = item
                        else:
                            words = _layers.Layer.registered_names() + (
                                _activations.Activation.registered_names()
                            )
                            raise util.ConfigurationError(
                                f"layer spec {spec!r}: {item!r} is neither a layer form nor an "
                                f"activation.{util.closest_match(item.lower(), words)}"
                            )
                    elif isinstance(item, dict):
                        kwargs.update(item)
                    elif isinstance(item, (tuple, list)) and first:
                        kwargs["shape"] = tuple(item)
                    else:
                        raise util.ConfigurationError(
                            f"cannot understand {item!r} in layer spec {spec!r}: expected a size, "
                            "an activation or form name, or a dict of keyword arguments"
                        )
        elif isinstance(spec, dict):
            kwargs.update(spec)
            form = kwargs.pop("form", form)
        elif isinstance(spec, str):
            form = spec
        else:
            raise util.ConfigurationError(
                f"cannot understand layer spec {spec!r}: expected an int, tuple, dict, form name "
                "or Layer"
            )
        if not isinstance(form, str):
            raise util.ConfigurationError(f"layer form must be a string, got {form!r}")
        form = form.lower()
        if first and form not in ("input", "in"):
            raise util.ConfigurationError(
                f"the first layer of a network must be an input layer, got form {form!r}"
            )
        return form, kwargs

    def add_layer(self, layer=None, is_output=False, **kwargs):
        """Add a layer to the network.

        Parameters
        ----------
        layer : int, tuple, dict, str or Layer
            A layer spec (see :class:`Network`).
        is_output : bool, optional
            Whether this is the output layer: it is then named ``'out'`` and
            gets the output activation by default.
        **kwargs
            More keyword arguments for the layer's constructor.

        Returns
        -------
        :class:`theanets.layers.Layer`
            The new, bound layer.

        Raises
        ------
        ConfigurationError
            For an unknown form or activation, a duplicate name, inputs that
            cannot be found, or sizes that do not fit.
        """
        if isinstance(layer, _layers.Layer):
            if kwargs:
                raise util.ConfigurationError(
                    f"add_layer got keyword arguments {sorted(kwargs)} with a Layer instance"
                )
            new = layer
            if new.inputs is None and new._requires_inputs and self.layers:
                new.inputs = [self.layers[-1].output_name]
                new.kwargs["inputs"] = self.layers[-1].output_name
        else:
            form, spec_kwargs = self._parse_spec(layer, is_output)
            spec_kwargs.update(kwargs)
            cls = _layers.Layer.lookup(form)
            spec_kwargs.setdefault("name", self._default_name(is_output))
            if cls is not _layers.Input:
                spec_kwargs.setdefault("inputs", self.layers[-1].output_name)
                spec_kwargs.setdefault(
                    "activation", self._output_activation if is_output else self._hidden_activation
                )
            elif self.INPUT_NDIM != 2 and "shape" not in spec_kwargs:
                spec_kwargs.setdefault("ndim", self.INPUT_NDIM)
            if issubclass(cls, _layers.Tied) and "partner" not in spec_kwargs:
                spec_kwargs["partner"] = self._find_tied_partner(spec_kwargs)
            _reject_training_kwargs(cls, spec_kwargs)
            try:
                new = cls(**spec_kwargs)
            except TypeError as err:
                raise util.ConfigurationError(
                    f"cannot build a {form!r} layer from {spec_kwargs}: {err}"
                ) from err
        if any(existing.name == new.name for existing in self.layers):
            raise util.ConfigurationError(f"this network already has a layer named {new.name!r}")
        if ":" in new.name or "." in new.name:
            raise util.ConfigurationError(f"layer names cannot contain ':' or '.': {new.name!r}")
        new.bind(self)
        self.layers.append(new)
        self._invalidate()
        new.log()
        return new

    def _default_name(self, is_output):
        if not self.layers:
            return "in"
        return "out" if is_output else f"hid{len(self.layers)}"

    def _find_tied_partner(self, kwargs):
        """Walk back through the layers: tied layers count +1, others -1."""
        depth = 1
        for layer in reversed(self.layers):
            depth += 1 if isinstance(layer, _layers.Tied) else -1
            if depth == 0:
                return layer.name
        raise util.ConfigurationError(f"cannot find a partner layer for tied layer {kwargs}")

    def add_loss(self, loss=None, **kwargs):
        """Add a loss to the network.

        Parameters
        ----------
        loss : str or :class:`theanets.losses.Loss`
            A registered loss name (``'mse'``, ``'xe'``, ...) or an instance.
        **kwargs
            Keyword arguments for the loss constructor (``weight``,
            ``weighted``, ``output_name``, ``target``, ...). The output
            defaults to the last layer's main output, and the target's
            number of axes to that of the output the loss reads.

        Returns
        -------
        :class:`theanets.losses.Loss`
        """
        if not self.layers:
            raise util.ConfigurationError("add layers to the network before adding a loss")
        if isinstance(loss, _losses.Loss):
            if kwargs:
                raise util.ConfigurationError(
                    f"add_loss got keyword arguments {sorted(kwargs)} with a Loss instance"
                )
            new = loss
        else:
            if loss is None:
                raise util.ConfigurationError("add_loss needs a loss name or instance")
            output_name = kwargs.setdefault("output_name", self.layers[-1].output_name)
            if "target" not in kwargs:
                kwargs["target"] = self._target_ndim(output_name)
            new = _losses.Loss.build(loss, **self._loss_kwargs(kwargs))
        self.losses.append(new)
        self._invalidate()
        return new

    def _loss_kwargs(self, kwargs):
        """Hook for models to adjust loss constructor arguments."""
        return kwargs

    def _target_ndim(self, output_name):
        full = util.output_name(output_name)
        shapes = self.output_shapes
        if full not in shapes:
            raise util.ConfigurationError(
                f"loss output {output_name!r} is not an output of this network."
                f"{util.closest_match(full, shapes)}"
            )
        return len(shapes[full]) + 1

    def set_loss(self, *args, **kwargs):
        """Replace all losses by a single new one (see :meth:`add_loss`).

        Parameters
        ----------
        *args, **kwargs
            The loss and its constructor arguments, as for :meth:`add_loss`.

        Returns
        -------
        :class:`theanets.losses.Loss`
            The new loss, now the network's only one.
        """
        self.losses = []
        return self.add_loss(*args, **kwargs)

    def _invalidate(self):
        self._graphs.clear()
        self._functions.clear()

    # ------------------------------------------------------------------
    # lookup

    @property
    def output_shapes(self):
        """Shapes of every named output of the layers so far, keyed by full name."""
        shapes = {}
        for layer in self.layers:
            shapes.update(layer.output_shapes())
        return shapes

    @property
    def inputs(self):
        """The symbolic input variables, one per :class:`~theanets.layers.Input` layer."""
        return [layer.variable for layer in self.layers if isinstance(layer, _layers.Input)]

    @property
    def variables(self):
        """All symbolic variables fed with data: inputs, then loss targets and weights."""
        return _unique(list(self.inputs) + [v for loss in self.losses for v in loss.variables])

    @property
    def params(self):
        """Every parameter of the network, in layer order, without repeats."""
        return _unique([param for layer in self.layers for param in layer.params])

    @property
    def num_params(self):
        """Total number of scalar values in the network's parameters."""
        return int(sum(np.prod(p.get_value(borrow=True).shape) for p in self.params))

    def find_layer(self, which):
        """Return a layer by name or index.

        Parameters
        ----------
        which : str or int

        Returns
        -------
        :class:`theanets.layers.Layer`

        Raises
        ------
        KeyError
            If there is no such layer.
        """
        if isinstance(which, numbers.Integral):
            try:
                return self.layers[which]
            except IndexError:
                raise KeyError(f"no layer with index {which}") from None
        for layer in self.layers:
            if layer.name == which:
                return layer
        names = [layer.name for layer in self.layers]
        raise KeyError(
            f"no layer named {which!r}.{util.closest_match(which, names)} Layers: {names}"
        )

    def find(self, which, param):
        """Return a parameter of one layer.

        Parameters
        ----------
        which : str or int
            Layer name or index.
        param : str or int
            Parameter name (``'w'`` or ``'hid1.w'``) or index.

        Returns
        -------
        shared variable
        """
        return self.find_layer(which).find(param)

    # ------------------------------------------------------------------
    # graphs

    def _regularizers(self, kwargs, where):
        regs = _regularizers.from_kwargs(self, **kwargs)
        util.check_unknown_kwargs(kwargs, _regularizers.known_kwargs(), where)
        return regs

    def cache_key(self, regularizers=()):
        """Return a key that identifies the graph built with these regularizers.

        Two calls give equal keys exactly when the layers (their specs), the
        losses and the regularizers (class, weight, pattern and every option)
        are the same, so the key can index anything compiled from the graph.

        Parameters
        ----------
        regularizers : sequence of :class:`theanets.regularizers.Regularizer`, optional

        Returns
        -------
        tuple
            A hashable key.
        """
        topology = tuple(repr(sorted(layer.to_spec().items(), key=str)) for layer in self.layers)
        losses = tuple(loss.cache_key() for loss in self.losses)
        regs = tuple(reg.cache_key() for reg in regularizers)
        return topology, losses, regs

    def build_graph(self, regularizers=()):
        """Connect the layers into a graph, applying regularizers.

        Parameters
        ----------
        regularizers : sequence of :class:`theanets.regularizers.Regularizer`
            Each one's ``modify_graph`` is applied to every layer's outputs as
            they are built.

        Returns
        -------
        outputs : dict
            Every named output of every layer, keyed by full name.
        updates : list
            ``(shared, expression)`` pairs the graph needs when evaluated
            (e.g. random-stream state of dropout).
        """
        regularizers = list(regularizers)
        key = self.cache_key(regularizers)
        if key not in self._graphs:
            outputs, updates = {}, []
            for layer in self.layers:
                layer_outputs, layer_updates = layer.connect(outputs)
                for reg in regularizers:
                    reg.modify_graph(layer_outputs)
                for reg in regularizers:
                    updates.extend(getattr(reg, "pop_updates", lambda: [])())
                outputs.update(layer_outputs)
                updates.extend(layer_updates)
            self._graphs[key] = (outputs, updates)
        return self._graphs[key]

    @staticmethod
    def _function_key(key, mode=None):
        """``key`` plus the compilation mode chosen now: a function is reused only in its mode."""
        return (key, _backend.mode_key(_backend.choose_mode() if mode is None else mode))

    def _compile(self, key, inputs, outputs, updates=()):
        """Return the function cached under ``key``, compiling it in the chosen mode if new.

        ``inputs`` may instead be a callable returning ``(inputs, outputs)``, so
        that a graph needed only to compile (e.g. a cloned one) is built only then.
        """
        mode = _backend.choose_mode()
        full_key = self._function_key(key, mode)
        fn = self._functions.get(full_key)
        if fn is None:
            if callable(inputs):
                inputs, outputs = inputs()
            fn = pytensor.function(
                inputs, outputs, updates=list(updates), mode=mode, on_unused_input="ignore"
            )
            self._functions[full_key] = fn
        return fn

    def loss(self, **kwargs):
        """Return the symbolic training loss: losses plus regularizer terms.

        Parameters
        ----------
        **kwargs
            Regularizer keyword arguments (``weight_l2=1e-4``,
            ``input_dropout=0.2``, ...).

        Returns
        -------
        scalar expression
        """
        regs = self._regularizers(kwargs, "loss()")
        outputs, _ = self.build_graph(regs)
        total = sum(loss.weight * loss(outputs) for loss in self.losses)
        for reg in regs:
            if reg.weight:
                total = total + reg.weight * reg.loss(self.layers, outputs)
        return total

    def updates(self, **kwargs):
        """Return the graph's extra updates for these regularizers.

        Parameters
        ----------
        **kwargs
            Regularizer keyword arguments (``input_noise=0.1``, ...); noise
            and dropout regularizers add the updates of their random
            streams.

        Returns
        -------
        list of (shared, expression)
            Updates of shared variables to apply with each training step,
            besides those of the optimizer.
        """
        regs = self._regularizers(kwargs, "updates()")
        return list(self.build_graph(regs)[1])

    def monitors(self, **kwargs):
        """Return named scalar expressions to report while training.

        Parameters
        ----------
        **kwargs
            ``monitors`` (described below) and regularizer keyword arguments
            (the monitors see the graph these build, e.g. with dropout).

            ``monitors`` (optional) is a dict or a sequence of ``(pattern,
            levels)`` pairs. Each glob ``pattern`` is matched against the
            graph's output names (``'hid1:out'``) and then against the
            parameter names (``'hid1.w'``; ``'*.w'`` gives ``hid1.w``,
            ``hid2.w``, ..., ``out.w`` in layer order). For every match,
            ``levels`` says what to report:

            - a number ``v``: the fraction of entries below ``v``, as
              ``'<name><v'``;
            - a list or tuple of numbers: one such entry each;
            - a dict, or a list of ``(label, callable)`` pairs: the scalar
              ``callable(expr)``, as ``'<name>:<label>'``;
            - a bare callable: the same, labelled with its ``__name__``.

            Lists may mix numbers and pairs.

        Returns
        -------
        list of (str, scalar expression)
            ``('err', first loss)`` first, then the requested monitors in the
            order of the patterns, the matches and the levels. A name made
            twice by overlapping patterns is reported once.

        Raises
        ------
        ConfigurationError
            If ``monitors`` is not a dict or a sequence of pairs, a pattern is
            not a string, a level is neither a number nor a ``(label,
            callable)`` pair (nor a callable), or a callable does not return
            a scalar.

        Examples
        --------
        >>> import theanets
        >>> net = theanets.Regressor([3, 4, 2])
        >>> [name for name, _ in net.monitors(
        ...     monitors={'hid1:out': (0.1, 0.9), '*.w': [('rms', lambda w: (w * w).mean())]})]
        ['err', 'hid1:out<0.1', 'hid1:out<0.9', 'hid1.w:rms', 'out.w:rms']
        """
        spec = [
            (pattern, self._monitor_levels(pattern, levels))
            for pattern, levels in self._monitor_items(kwargs.pop("monitors", None))
        ]
        regs = self._regularizers(kwargs, "monitors()")
        outputs, _ = self.build_graph(regs)
        result = [("err", self.losses[0](outputs))]
        seen = {"err"}
        for pattern, levels in spec:
            matches = list(util.outputs_matching(outputs, pattern))
            matches += list(util.params_matching(self.layers, pattern))
            if not matches:
                util.log(
                    "monitor pattern {!r} matches no graph output or parameter",
                    pattern,
                    level=30,
                )
            for name, expr in matches:
                for suffix, fn in levels:
                    key = f"{name}{suffix}"
                    if key not in seen:
                        seen.add(key)
                        result.append((key, self._monitor_value(key, fn, expr)))
        return result

    @staticmethod
    def _monitor_items(spec):
        """The ``(pattern, levels)`` pairs of a ``monitors`` argument."""
        if spec is None:
            return []
        items = list(spec.items()) if isinstance(spec, dict) else spec
        if isinstance(items, str) or not isinstance(items, (list, tuple)):
            raise util.ConfigurationError(
                "monitors must be a dict or a list of (pattern, levels) pairs, e.g. "
                f"monitors={{'hid1:out': (0.1, 0.9)}}; got {type(spec).__name__} {spec!r}"
            )
        for item in items:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise util.ConfigurationError(
                    f"monitors: each entry must be a (pattern, levels) pair, got {item!r}"
                )
            pattern = item[0]
            if not isinstance(pattern, str) and not (
                isinstance(pattern, (list, tuple)) and all(isinstance(p, str) for p in pattern)
            ):
                raise util.ConfigurationError(
                    f"monitors: patterns must be glob strings such as 'hid1:out' or "
                    f"'*.w', got {pattern!r}"
                )
        return [tuple(item) for item in items]

    @staticmethod
    def _monitor_levels(pattern, levels):
        """Turn one pattern's ``levels`` into ``(name suffix, function)`` pairs."""

        is_number = util.is_real

        def is_pair(value):
            return (
                isinstance(value, (list, tuple))
                and len(value) == 2
                and isinstance(value[0], str)
                and callable(value[1])
            )

        def below(level):
            return lambda expr: pt.cast(pt.lt(expr, level), pytensor.config.floatX).mean()

        if is_number(levels) or callable(levels) or is_pair(levels):
            levels = [levels]
        elif isinstance(levels, dict):
            levels = list(levels.items())
        if not isinstance(levels, (list, tuple)):
            levels = [levels]
        result = []
        for level in levels:
            if is_number(level):
                result.append((f"<{level}", below(level)))
            elif is_pair(level):
                result.append((f":{level[0]}", level[1]))
            elif callable(level):
                result.append((f":{getattr(level, '__name__', 'fn')}", level))
            else:
                raise util.ConfigurationError(
                    f"monitors[{pattern!r}]: a level must be a number (reports the fraction "
                    "of values below it), a (label, callable) pair or a dict of them "
                    f"(reports callable(expr) as '<name>:<label>'); got "
                    f"{type(level).__name__} {level!r}"
                )
        return result

    @staticmethod
    def _monitor_value(name, fn, expr):
        """Apply a monitor function; a result with axes is averaged to a scalar."""
        value = fn(expr)
        try:
            value = pt.as_tensor_variable(value)
        except (TypeError, ValueError, NotImplementedError) as err:
            raise util.ConfigurationError(
                f"monitor {name!r}: the callable returned {value!r}, not an expression"
            ) from err
        if value.ndim != 0:
            value = value.mean()  # upstream's example levels such as ``lambda e: e + 1``
        return pt.cast(value, pytensor.config.floatX)

    # ------------------------------------------------------------------
    # evaluation

    def _input_arrays(self, x, what="x"):
        """Check and convert input data, one array per input layer."""
        input_layers = [layer for layer in self.layers if isinstance(layer, _layers.Input)]
        if isinstance(x, dict):
            missing = [layer.name for layer in input_layers if layer.name not in x]
            if missing:
                raise ValueError(f"{what} is missing data for input layers {missing}")
            arrays = [x[layer.name] for layer in input_layers]
        elif len(input_layers) > 1:
            if not isinstance(x, (list, tuple)) or len(x) != len(input_layers):
                raise ValueError(
                    f"this network has {len(input_layers)} input layers "
                    f"{[layer.name for layer in input_layers]}: give a list of that many arrays "
                    "or a dict keyed by layer name"
                )
            arrays = list(x)
        else:
            arrays = [x]
        return [self._check_array(a, layer, what) for a, layer in zip(arrays, input_layers)]

    @staticmethod
    def _check_array(array, layer, what):
        if scipy.sparse.issparse(array):
            if not layer.sparse:
                raise ValueError(
                    f"{what}: input layer {layer.name!r} expects a dense array, got a sparse matrix"
                )
            if array.shape[1] != layer.size:
                raise ValueError(
                    f"{what}: input layer {layer.name!r} expects {layer.size} features, got "
                    f"{array.shape[1]}"
                )
            return array.asformat(layer.sparse).astype(layer.variable.dtype)
        try:
            array = np.asarray(array)
        except Exception as err:
            raise TypeError(f"{what}: cannot convert to an array: {err}") from None
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"{what}: input layer {layer.name!r} expects real numbers, got dtype {array.dtype}"
            )
        if array.ndim != layer.ndim:
            raise ValueError(
                f"{what}: input layer {layer.name!r} expects {layer.ndim}-D data of shape "
                f"{(None, *layer.output_shape)}, got shape {array.shape}"
            )
        for axis, (want, got) in enumerate(zip((None, *layer.output_shape), array.shape)):
            if want is not None and want != got:
                raise ValueError(
                    f"{what}: input layer {layer.name!r} expects shape "
                    f"{(None, *layer.output_shape)}, got {array.shape} "
                    f"(axis {axis} should be {want})"
                )
        if layer.sparse:
            return scipy.sparse.csr_matrix(array, dtype=layer.variable.dtype).asformat(layer.sparse)
        return np.ascontiguousarray(array, dtype=layer.variable.dtype)

    def feed_forward(self, x, **kwargs):
        """Compute every named output of the network for some input.

        Parameters
        ----------
        x : ndarray, or list/dict of ndarrays for several inputs
            Input data.
        **kwargs
            Regularizer keyword arguments applied to the graph (e.g.
            ``hidden_dropout=0.5`` for Monte-Carlo dropout).

        Returns
        -------
        dict
            Maps every fully scoped output name (``'hid1:out'``, ...) to an
            array.
        """
        regs = self._regularizers(kwargs, "feed_forward()")
        outputs, updates = self.build_graph(regs)
        names = list(outputs)
        key = ("feed_forward", self.cache_key(regs))
        fn = self._compile(key, self.inputs, [outputs[n] for n in names], updates)
        values = fn(*self._input_arrays(x))
        return dict(zip(names, values))

    def predict(self, x, **kwargs):
        """Compute the network's output for some input.

        Parameters
        ----------
        x : ndarray, or list/dict of ndarrays for several inputs
        **kwargs
            Regularizer keyword arguments applied to the graph.

        Returns
        -------
        ndarray
            The output layer's ``:out`` values.
        """
        return self._predict_output(x, self.layers[-1].output_name, **kwargs)

    def _predict_output(self, x, name, **kwargs):
        regs = self._regularizers(kwargs, "predict()")
        outputs, updates = self.build_graph(regs)
        key = ("predict", name, self.cache_key(regs))
        fn = self._compile(key, self.inputs, outputs[name], updates)
        return fn(*self._input_arrays(x))

    def _check_finite(self, arrays, names):
        for array, name in zip(arrays, names):
            if scipy.sparse.issparse(array):
                array = array.data
            if np.asarray(array).dtype.kind == "f" and not np.all(np.isfinite(array)):
                raise ValueError(f"{name} contains NaN or infinite values")

    def _finite_inputs(self, x, what):
        """Check input data (shapes, dtypes, no NaN/inf) and return it converted."""
        arrays = self._input_arrays(x, what)
        names = [layer.name for layer in self.layers if isinstance(layer, _layers.Input)]
        self._check_finite(arrays, [f"{what}: input {n!r}" for n in names])
        return arrays[0] if len(arrays) == 1 else arrays

    def loss_value(self, *data, **kwargs):
        """Evaluate the training loss (with regularizers) on data.

        Parameters
        ----------
        *data : ndarray
            Inputs, then targets, then weights, in the order of
            :attr:`variables`.
        **kwargs
            Regularizer keyword arguments.

        Returns
        -------
        float
        """
        arrays = self.check_data(data)
        regs = self._regularizers(kwargs, "loss_value()")
        key = ("loss", self.cache_key(regs))
        fn = self._functions.get(self._function_key(key))
        if fn is None:  # build the symbolic loss only once
            updates = self.build_graph(regs)[1]
            fn = self._compile(key, self.variables, self.loss(**kwargs), updates)
        return float(fn(*arrays))

    def check_data(self, data, what="data"):
        """Check data for the loss and convert it to the arrays the loss is compiled for.

        Parameters
        ----------
        data : sequence of arrays
            Inputs, then targets, then weights, in the order of
            :attr:`variables`; sparse matrices for sparse inputs.
        what : str, optional
            What the data are, for error messages (e.g. ``'training data'``).

        Returns
        -------
        list
            One array (or sparse matrix) per variable, of its dtype.

        Raises
        ------
        ValueError
            If the number of arrays, a shape or the number of rows does not
            fit, or a value is NaN or infinite.
        TypeError
            If an array does not hold real numbers.
        """
        variables = self.variables
        n_in = len(self.inputs)
        if len(data) != len(variables):
            names = [v.name for v in variables]
            raise ValueError(f"{what}: expected {len(variables)} arrays {names}, got {len(data)}")
        inputs = self._input_arrays(list(data[:n_in]) if n_in > 1 else data[0], what)
        rest = []
        for var, array in zip(variables[n_in:], data[n_in:]):
            rest.append(self._check_target(var, array, what))
        arrays = inputs + rest
        names = [v.name for v in variables]
        self._check_finite(arrays, [f"{what} ({n})" for n in names])
        rows = {a.shape[0] for a in arrays}
        if len(rows) > 1:
            raise ValueError(
                f"{what}: arrays have different numbers of rows "
                f"{dict(zip(names, [a.shape[0] for a in arrays]))}"
            )
        return arrays

    def _check_target(self, var, array, what):
        array = np.asarray(array)
        if array.ndim != var.ndim:
            raise ValueError(
                f"{what}: {var.name!r} must be {var.ndim}-D, got an array of shape {array.shape}"
            )
        if var.dtype.startswith("int"):
            if array.dtype.kind not in "iu":
                if (
                    array.dtype.kind == "f"
                    and np.all(np.isfinite(array))
                    and np.all(array == np.round(array))
                ):
                    array = array.astype("int64")
                else:
                    raise ValueError(
                        f"{what}: {var.name!r} must hold integer class labels, got dtype "
                        f"{array.dtype}"
                    )
            return array.astype(var.dtype)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{what}: {var.name!r} must be real numbers, got dtype {array.dtype}")
        return np.ascontiguousarray(array, dtype=var.dtype)

    def score(self, x, y, w=None, **kwargs):
        """Score the network's output on some data (overridden by models).

        Parameters
        ----------
        x : ndarray
            Input data.
        y : ndarray
            Target values for the network's output.
        w : ndarray, optional
            Weights of the target values, for weighted losses.
        **kwargs
            Other arguments of the model's scoring method.

        Returns
        -------
        float
            Higher is better.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define score()")

    # ------------------------------------------------------------------
    # training (see theanets.trainer)

    def itertrain(
        self,
        train,
        valid=None,
        algo="rmsprop",
        subalgo="rmsprop",
        save_every=0,
        save_progress=None,
        **kwargs,
    ):
        """Train the network, yielding monitor values after each epoch.

        Training advances as the generator is iterated, so a loop over it
        may stop whenever the values it sees are good enough.

        Parameters
        ----------
        train, valid, algo, subalgo, save_every, save_progress, **kwargs
            The data and training options, passed on unchanged; see
            :func:`theanets.trainer.itertrain` for each of them.

        Yields
        ------
        (dict, dict)
            Training and validation monitor values.
        """
        itertrain = _implementation("itertrain", "Network.itertrain()")
        yield from itertrain(
            self,
            train,
            valid=valid,
            algo=algo,
            subalgo=subalgo,
            save_every=save_every,
            save_progress=save_progress,
            **kwargs,
        )

    def train(self, *args, **kwargs):
        """Train the network until done; return the last monitor values.

        Parameters
        ----------
        *args, **kwargs
            The same arguments as :meth:`itertrain`.

        Returns
        -------
        (dict, dict)
            Training and validation monitor values from the last epoch.
        """
        last = ({}, {})
        for pair in self.itertrain(*args, **kwargs):
            last = pair
        return last

    # ------------------------------------------------------------------
    # persistence (see theanets.serialization)

    def __getstate__(self):
        return _implementation("state", "pickling a Network")(self)

    def __setstate__(self, state):
        rebuilt = _implementation("from_state", "unpickling a Network")(state, type(self))
        # adopt what the rebuilt network holds: seed, layers, losses, empty caches
        self.__dict__.update(rebuilt.__dict__)

    def save(self, filename_or_handle):
        """Save the network to a file.

        The format follows the file name: ``.npz`` writes NumPy arrays and a
        JSON spec (no pickle); otherwise a restricted pickle, gzipped when the
        name ends in ``.gz``. Files are written atomically.

        Parameters
        ----------
        filename_or_handle : str, path or file object
        """
        _implementation("save", "Network.save()")(self, filename_or_handle)

    @classmethod
    def load(cls, filename_or_handle):
        """Load a saved network, including files saved by Theano-era theanets.

        Parameters
        ----------
        filename_or_handle : str, path or file object

        Returns
        -------
        :class:`Network`

        Raises
        ------
        ValueError
            If the file is not a readable theanets model, or holds a model
            that cannot be converted; the message names the file.
        theanets.serialization.UnsafePickleError
            If a pickle refers to a global outside the allow-list.
        """
        return _implementation("load", "Network.load()")(filename_or_handle)

    def __repr__(self):
        sizes = " -> ".join(str(layer.output_shape[-1]) for layer in self.layers)
        return f"<{type(self).__name__} {sizes}>"
