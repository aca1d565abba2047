"""Reading model files saved by Theano-era theanets (0.7 and 0.8).

theanets 0.7.0 to 0.7.3 and the 0.8 development line (upstream master) are
understood. Both pickled the network object the same way, but their layers
differ: a 0.7 layer kept ``size``, ``inputs`` and ``activation`` as
attributes, a 0.8 layer keeps its constructor arguments in a ``kwargs``
dict, its resolved input and output shapes (without the batch axis) in
``_input_shapes`` and ``_output_shapes``, and the arguments its class takes
by name (``partner``, ``h_0``, ``factors``, ``periods``, ``worker``, the
rate kind, filter sizes, ...) as attributes. Each layer is read by the rules
of its own version.

Old theanets saved a model by pickling the network object itself: its model
class (``theanets.feedforward.Regressor``, ...), its layer and loss objects,
Theano shared variables holding the parameter values, Theano ops used as
activation functions, NumPy random states and so on. Reading such a file with
:mod:`pickle` needs Theano and the old theanets classes, and would run
whatever constructors the file names. This module reads them without either;
:meth:`theanets.Network.load` uses it automatically.

**How a file is read.** :func:`theanets.serialization.loads` first tries its
strict :class:`~theanets.serialization.RestrictedUnpickler`. The first
``theano.*`` global, or ``theanets.*`` name that is not a network class of
this package (a layer, loss or activation of the old package), raises
:class:`~theanets.serialization.LegacyPickleError`. In a Theano-era file this
happens inside the first layer, before any object's state has been applied,
so none of our classes ever sees the old state. The data are then read again
by :class:`LegacyUnpickler`, in which every ``theano.*`` and ``theanets.*``
global becomes an *inert stand-in*: a subclass of :class:`LegacyObject` that
only records the arguments it is created with and the state the pickle gives
it. NumPy arrays, dtypes, scalars and random states and the built-in
containers are rebuilt as usual; any other global raises
:class:`pickle.UnpicklingError`. So neither old code nor ours runs while the
file is read, and a crafted file cannot call anything outside this
allow-list. Finally :func:`network_from_legacy` reads the stand-ins -- model
class, layers, losses and parameter values -- and builds the equivalent
network from this package's classes, with identical parameter values.
Both unpicklers share the allow-list of :mod:`theanets._unpickle`; this
module does not import :mod:`theanets.serialization`.

**Names.** Layer and parameter names are kept as the file has them. theanets
0.7 named a tied layer ``tied-<partner>`` (so a tied output layer is not
called ``out``) and its bias ``tied-<partner>.b``; the loaded network keeps
these names, so parameter names match the old model's exactly.

**What is converted.**

Models
    ``Network``, ``Regressor``, ``Classifier`` and ``Autoencoder`` from
    ``theanets.feedforward`` / ``theanets.graph``, the ``Regressor``,
    ``Classifier`` and ``Autoencoder`` of ``theanets.recurrent`` and (0.8)
    the ``Regressor`` and ``Classifier`` of ``theanets.convolution``. The
    network's seed is the one the old network gave all its layers (13 if
    they differ).
Layers
    ``Input``, ``Feedforward``, ``Classifier``, ``Tied``, ``Concatenate``,
    ``Product``, ``Flatten``, ``Reshape``, ``Conv1``, and the recurrent
    ``RNN``, ``RRNN``, ``MRNN``, ``LSTM``, ``GRU``, ``Clockwork``, ``MUT1``,
    ``SCRN`` and ``Bidirectional`` (plus ``LRRNN`` and ``ARRNN`` of theanets
    0.7.0: ``RRNN`` layers with ``rate='vector'`` and ``rate='matrix'``). The
    old ``GRU`` kept its input weights and biases per gate (``xh``, ``xr``,
    ``xz``, ``bh``, ``br``, ``bz``) and the old ``SCRN`` its input weights per
    part (``xh``, ``xs``); they are joined into the ``w`` and ``b`` of this
    package's layers. ``Conv1`` filters, saved as ``(filters, channels, 1,
    k)``, are reshaped where this package's filters lack the singleton axis.
    From 0.8 also ``Conv2``, ``Pool1`` and ``Pool2``; 0.8's ``GRU`` and
    ``SCRN`` already had this package's layout, and ``BCRNN``. Any other
    class raises :class:`ValueError` naming it.
Activations
    The old module-level functions (``_relu``, ``_identity``, ``_softmax``,
    ``_trel``, ``_rect``, ``_norm_*``), Theano's ``tanh``, ``sigmoid`` and
    ``softplus`` ops, and the learnable ``Prelu``, ``LGrelu`` and ``Maxout``.
    0.7's ``prelu`` and ``lgrelu`` used their ``leak`` and ``gain`` values
    as they are, this package uses their exponentials: the loaded parameters
    are the logarithms of the saved ones (a saved value <= 0 cannot be
    converted and raises :class:`ValueError`). A 0.8 layer names its
    activation in ``kwargs`` (any name this package knows, compositions such
    as ``'relu+norm:z'`` and ``'maxout:K'`` included; an activation object
    is read from the layer's ``activate``), and its learnable parameters
    (``leak``, ``gain``, ``slope``, ``intercept``) are used as saved, as 0.8
    already took exponentials.
Losses
    Every loss class of the old package (``MeanSquaredError``,
    ``CrossEntropy``, ...) with its weight, output name, target (a new
    variable with the right number of axes, or the network input for
    autoencoders) and weighting.
Values on a GPU
    Arrays saved from a GPU (an unpickler call such as
    ``CudaNdarray_unpickler(array)``) are read from the array they wrap.

**Differences.** theanets 0.7 and 0.8 left the outputs of a layer running
backwards in time (``direction='back'``, and the backward half of
``Bidirectional``) in reversed time order; this package aligns them with the
input. Such layers load with the same parameters but compute aligned
outputs, and a :class:`UserWarning` says so. Two 0.8 layers need more:

``Clockwork``
    0.8 kept the modules fastest first, this package keeps them slowest
    first. The units are reordered -- the layer's parameters and the input
    weights of the layers that read it -- so the network predicts the same;
    the layer's own outputs come in the new unit order. A clockwork layer
    read by a loss or by a layer without input weights cannot be reordered
    and raises :class:`ValueError`.
``SCRN``
    0.8's code applied the layer's activation to the hidden state and
    none to the output; here the hidden state is logistic and the
    activation applies to the output. A ``'sigmoid'`` layer converts
    exactly (with a linear output activation); others raise
    :class:`ValueError`.
"""

import io
import pickle
import warnings

import numpy as np

from . import _unpickle, util

__all__ = ["LegacyObject", "LegacyUnpickler", "legacy_loads", "network_from_legacy"]


# ----------------------------------------------------------------------
# stand-ins and the unpickler


class LegacyObject:
    """An inert record of an object from a Theano-era pickle.

    :class:`LegacyUnpickler` makes one subclass per global the file names
    (``theano.tensor.sharedvar.TensorSharedVariable``,
    ``theanets.layers.base.Input``, ...), with that name in ``legacy_path``.
    Creating an instance, setting its state or adding items only records the
    data; nothing else happens.

    Parameters
    ----------
    *args, **kwargs
        The arguments the pickle creates the object with; they are recorded
        in :attr:`legacy_args` and :attr:`legacy_kwargs`.

    Attributes
    ----------
    legacy_path : str
        Dotted name of the class (or function) the pickle referred to.
    legacy_args : tuple
        Positional arguments the pickle created the object with.
    legacy_kwargs : dict
        Keyword arguments the pickle created the object with.
    legacy_state : object
        The state given by the pickle (usually the old object's ``__dict__``),
        or None.
    legacy_items : list
        Items appended by the pickle (for list-like objects).
    legacy_mapping : dict
        Items set by the pickle (for dict-like objects).
    """

    legacy_path = "LegacyObject"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        object.__setattr__(obj, "legacy_args", args)
        object.__setattr__(obj, "legacy_kwargs", kwargs)
        object.__setattr__(obj, "legacy_state", None)
        object.__setattr__(obj, "legacy_items", [])
        object.__setattr__(obj, "legacy_mapping", {})
        return obj

    def __init__(self, *args, **kwargs):
        pass  # the constructor data were recorded by __new__

    def __setstate__(self, state):
        """Record the pickled state."""
        object.__setattr__(self, "legacy_state", state)

    def append(self, item):
        """Record an item appended by the pickle.

        Parameters
        ----------
        item : object
            The item, kept at the end of :attr:`legacy_items`.
        """
        self.legacy_items.append(item)

    def extend(self, items):
        """Record items appended by the pickle.

        Parameters
        ----------
        items : iterable
            The items, added in order to the end of :attr:`legacy_items`.
        """
        self.legacy_items.extend(items)

    def __setitem__(self, key, value):
        self.legacy_mapping[key] = value

    def __repr__(self):
        return f"<legacy {self.legacy_path}>"


def _reconstructor(cls, base, state):
    """Safe version of :func:`copyreg._reconstructor` (Python 2 era protocols 0 and 1)."""
    if isinstance(cls, type) and issubclass(cls, LegacyObject):
        return cls() if state is None else cls(state)
    import copyreg

    return copyreg._reconstructor(cls, base, state)


class LegacyUnpickler(_unpickle.AllowListUnpickler):
    """Unpickler for Theano-era model files that builds inert stand-ins.

    Globals from ``theano`` and ``theanets`` (old or new, whatever the name)
    resolve to subclasses of :class:`LegacyObject`, one per name. NumPy
    arrays, dtypes, scalars and random states and the built-in containers are
    allowed as in :class:`~theanets.serialization.RestrictedUnpickler`;
    everything else raises :class:`pickle.UnpicklingError`.

    Parameters
    ----------
    file : binary file object
        The pickle to read. Text pickled by Python 2 is decoded as latin-1,
        which is what NumPy needs to rebuild arrays from it.
    """

    def __init__(self, file):
        super().__init__(file, encoding="latin1")
        self._stand_ins = {}

    def find_class(self, module, name):
        """Return a stand-in for Theano and theanets globals, else defer to the allow-list.

        Parameters
        ----------
        module, name : str
            The module and name of a global the pickle refers to, as the
            pickle spells them (a Python 2 name is mapped to Python 3).

        Returns
        -------
        object
            For a ``theano.*`` or ``theanets.*`` global, the
            :class:`LegacyObject` subclass standing in for it (the same one
            each time the file names it); for ``copyreg._reconstructor`` a
            version that builds stand-ins safely; otherwise whatever
            :meth:`~theanets._unpickle.AllowListUnpickler.find_class`
            allows.

        Raises
        ------
        UnsafePickleError
            For a global outside the allow-list.
        """
        module, name = _unpickle.python3_name(module, name)
        if module.split(".", 1)[0] in ("theano", "theanets"):
            path = f"{module}.{name}"
            if path not in self._stand_ins:
                self._stand_ins[path] = type(name, (LegacyObject,), {"legacy_path": path})
            return self._stand_ins[path]
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstructor
        return super().find_class(module, name)


def legacy_loads(data):
    """Read a Theano-era pickle into stand-in objects.

    Parameters
    ----------
    data : bytes
        An uncompressed pickle.

    Returns
    -------
    object
        The unpickled object, with :class:`LegacyObject` stand-ins in place of
        every Theano and theanets object.

    Raises
    ------
    pickle.UnpicklingError
        If the pickle refers to a global outside the allow-list, or cannot be
        read.
    """
    try:
        return LegacyUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError:
        raise
    except Exception as err:
        raise pickle.UnpicklingError(
            f"cannot read this Theano-era model file: {type(err).__name__}: {err}"
        ) from err


# ----------------------------------------------------------------------
# reading stand-ins


def _path(obj):
    """Dotted name of a stand-in (instance or class), or None for anything else."""
    if isinstance(obj, LegacyObject) or (isinstance(obj, type) and issubclass(obj, LegacyObject)):
        return obj.legacy_path
    return None


def _short(obj):
    path = _path(obj)
    return None if path is None else path.rpartition(".")[2]


def _state(obj, what):
    """The state dict of a stand-in; ``(dict, slots)`` states are merged."""
    state = obj.legacy_state if isinstance(obj, LegacyObject) else None
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
        merged = dict(state[0] or {})
        merged.update(state[1])
        state = merged
    if not isinstance(state, dict):
        raise ValueError(
            f"{what}: expected a saved {_path(obj) or type(obj).__name__} with attributes, "
            f"found state {type(state).__name__}"
        )
    return state


def _array(value):
    """An ndarray from a saved value (an array, a NumPy scalar, or a device-array stand-in)."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, LegacyObject):
        # e.g. CudaNdarray_unpickler(ndarray) or GpuArray_unpickler(ndarray, context)
        for arg in value.legacy_args:
            if isinstance(arg, np.ndarray):
                return arg
    return None


def _shared(var, what):
    """Name and value of a saved Theano shared variable."""
    state = _state(var, what)
    name = state.get("name")
    container = state.get("container")
    value = None
    if isinstance(container, LegacyObject):
        storage = _state(container, f"{what} ({name})").get("storage")
        if isinstance(storage, (list, tuple)) and storage:
            value = _array(storage[0])
    if not isinstance(name, str) or value is None:
        raise ValueError(f"{what}: cannot read the value of saved shared variable {name!r}")
    return name, value


def _variable_ndim(var):
    """Number of axes of a saved Theano variable, or None if unknown."""
    if not isinstance(var, LegacyObject):
        return None
    try:
        state = _state(var, "variable")
        vtype = _state(state.get("type"), "variable type")
    except ValueError:
        return None
    if "broadcastable" in vtype:
        return len(vtype["broadcastable"])
    if isinstance(vtype.get("ndim"), int):
        return vtype["ndim"]
    return None


# ----------------------------------------------------------------------
# models, layers, activations, losses


_MODELS = {
    "theanets.graph.Network": ("graph", "Network"),
    "theanets.feedforward.Network": ("graph", "Network"),
    "theanets.feedforward.Regressor": ("feedforward", "Regressor"),
    "theanets.feedforward.Classifier": ("feedforward", "Classifier"),
    "theanets.feedforward.Autoencoder": ("feedforward", "Autoencoder"),
    "theanets.recurrent.Regressor": ("recurrent", "Regressor"),
    "theanets.recurrent.Classifier": ("recurrent", "Classifier"),
    "theanets.recurrent.Autoencoder": ("recurrent", "Autoencoder"),
    "theanets.convolution.Regressor": ("convolution", "Regressor"),
    "theanets.convolution.Classifier": ("convolution", "Classifier"),
}

#: Old layer class name -> registered layer form in this package.
_LAYER_FORMS = {
    "Input": "input",
    "Feedforward": "feedforward",
    "Classifier": "classifier",
    "Tied": "tied",
    "Concatenate": "concatenate",
    "Product": "product",
    "Flatten": "flatten",
    "Reshape": "reshape",
    "RNN": "rnn",
    "RRNN": "rrnn",
    "LRRNN": "rrnn",  # theanets 0.7.0: an RRNN with rate='vector'
    "ARRNN": "rrnn",  # theanets 0.7.0: an RRNN with rate='matrix'
    "MRNN": "mrnn",
    "LSTM": "lstm",
    "GRU": "gru",
    "Clockwork": "clockwork",
    "MUT1": "mut1",
    "SCRN": "scrn",
    "Bidirectional": "bidirectional",
    "Conv1": "conv1",
}

#: Layer classes of theanets 0.7.0 that became RRNN options.
_RATE_CLASSES = {"LRRNN": "vector", "ARRNN": "matrix"}

#: Old module-level activation functions -> activation names here.
_FUNCTIONS = {
    "_identity": "linear",
    "_relu": "relu",
    "_trel": "rect:min",
    "_rect": "rect:minmax",
    "_softmax": "softmax",
    "_norm_mean": "norm:mean",
    "_norm_max": "norm:max",
    "_norm_std": "norm:std",
    "_norm_z": "norm:z",
}

#: Theano scalar ops (inside an Elemwise) -> activation names here.
_SCALAR_OPS = {
    "Tanh": "tanh",
    "ScalarSigmoid": "sigmoid",
    "ScalarSoftplus": "softplus",
    "Identity": "linear",
}

#: Names the old package accepted with the same meaning as here.
_NAMES = {
    "linear",
    "tanh",
    "logistic",
    "sigmoid",
    "softmax",
    "softplus",
    "relu",
    "rect:max",
    "rect:min",
    "rect:minmax",
    "norm:mean",
    "norm:max",
    "norm:std",
    "norm:z",
    "prelu",
    "leaky-relu",
    "lgrelu",
    "leaky-gain-relu",
}


def _model_class(obj):
    import importlib

    path = _path(obj)
    if path not in _MODELS:
        found = path or type(obj).__name__
        raise ValueError(
            f"not a theanets model file: found {found}, expected one of the model classes "
            f"{', '.join(sorted(_MODELS))}"
        )
    module, name = _MODELS[path]
    return getattr(importlib.import_module(f"theanets.{module}"), name)


def _activation(state, what):
    """The activation name here, and its saved parameters, for a saved layer."""
    act = state.get("activate")
    short = _short(act)
    module = (_path(act) or "").rpartition(".")[0]
    if module == "theanets.activations" and isinstance(act, type):
        if short in _FUNCTIONS:
            return _FUNCTIONS[short], []
    elif module == "theanets.activations" and isinstance(act, LegacyObject):
        act_state = _state(act, f"{what} activation")
        params = list(act_state.get("params") or [])
        if short == "Prelu":
            return "prelu", params
        if short == "LGrelu":
            return "lgrelu", params
        if short == "Maxout":
            pieces = act_state.get("pieces") or (act_state.get("kwargs") or {}).get("pieces")
            if isinstance(pieces, (int, np.integer)):
                return f"maxout:{int(pieces)}", params
    elif short == "Elemwise" and isinstance(act, LegacyObject):
        op = _state(act, f"{what} activation").get("scalar_op")
        if _short(op) in _SCALAR_OPS:
            return _SCALAR_OPS[_short(op)], []
    # 0.7 kept the name as an attribute, the 0.8 development versions in kwargs
    name = state.get("activation", (state.get("kwargs") or {}).get("activation"))
    if act is None and isinstance(name, str) and name in _NAMES:
        return name, []
    raise ValueError(
        f"{what}: cannot convert its activation {name!r} (saved as {_path(act) or act!r})"
    )


def _input_names(state, previous, what):
    """Full output names a saved layer reads; ``'out'`` meant the previous layer."""
    inputs = state.get("inputs")
    if isinstance(inputs, dict):
        names = list(inputs)
    elif isinstance(inputs, (list, tuple)):
        names = [i[0] if isinstance(i, (list, tuple)) else i for i in inputs]
    else:
        raise ValueError(f"{what}: cannot read its inputs {inputs!r}")
    result = []
    for name in names:
        if name == "out":
            if previous is None:
                raise ValueError(f"{what}: reads the previous layer, but it is the first one")
            name = f"{previous}:out"
        if not isinstance(name, str):
            raise ValueError(f"{what}: cannot read its inputs {inputs!r}")
        result.append(name)
    return result


def _recurrent_options(state):
    """Options of a recurrent layer, from the old layer's attributes or ``kwargs``."""
    options = dict(state.get("kwargs") or {})
    options.update((k, state[k]) for k in ("rate", "factors", "periods") if k in state)
    spec = {}
    direction = options.get("direction")
    if isinstance(direction, str) and "back" in direction.lower():
        spec["direction"] = "back"
    limit = options.get("bptt_limit")
    if util.is_int(limit) and limit > 0:
        spec["bptt_limit"] = int(limit)
    if isinstance(options.get("rate"), str):
        spec["rate"] = options["rate"].lower().strip()
    if options.get("factors") is not None:
        spec["factors"] = int(options["factors"])
    if options.get("periods") is not None:
        spec["periods"] = [int(p) for p in np.asarray(options["periods"]).ravel()]
    return spec


class _LayerRecord:
    """A saved layer: our spec, plus what is needed to copy its values."""

    def __init__(self, spec, state, values, workers=(), master=False):
        self.spec = spec
        self.state = state
        self.values = values  # full param name -> ndarray
        self.workers = workers  # records of a Bidirectional layer's workers
        self.master = master  # saved by the 0.8 development line


def _bidirectional_workers(state, spec, what, previous, model):
    """Read the two worker layers of a saved bidirectional layer.

    The worker kind and the workers' own options (all but their name, inputs,
    size, activation and direction) are written into ``spec``; the records
    of the forward and backward workers are returned.
    """
    worker = state.get("worker")
    if not isinstance(worker, str):
        raise ValueError(f"{what}: cannot read its worker kind {worker!r}")
    spec["worker"] = worker.lower()
    workers = tuple(
        _layer_record(state.get(part), previous, model, is_worker=True)
        for part in ("forward", "backward")
    )
    options = dict(workers[0].spec)
    for key in ("form", "name", "inputs", "size", "activation", "direction"):
        options.pop(key, None)
    spec.update(options)
    return workers


def _layer_record(obj, previous, model, is_worker=False):
    path = _path(obj)
    module, _, short = (path or "").rpartition(".")
    if not isinstance(obj, LegacyObject) or not module.startswith("theanets"):
        raise ValueError(f"expected a saved theanets layer, found {path or type(obj).__name__}")
    state = _state(obj, f"layer {path}")
    name = state.get("name")
    what = f"layer {name!r} ({path})"
    from .layers import Layer

    forms = _MASTER_FORMS if _is_master_layer(state) else _LAYER_FORMS
    form = forms.get(short)
    if form is None or not module.startswith("theanets.layers"):
        raise ValueError(
            f"{what}: unknown layer class {path}; layers that can be converted: "
            f"{', '.join(sorted(forms))}"
        )
    if not Layer.is_registered(form):
        raise ValueError(f"{what}: this installation has no {form!r} layer to convert it to")
    if not isinstance(name, str):
        raise ValueError(f"layer {path}: cannot read its name {name!r}")
    if _is_master_layer(state):
        return _master_record(state, form, short, what, is_worker)
    size = state.get("size")
    spec = dict(form=form, name=name)
    values = {}
    if form == "input":
        kwargs = state.get("kwargs") or {}
        ndim = kwargs.get("ndim") or _variable_ndim(state.get("input")) or model.INPUT_NDIM
        spec.update(size=int(size), ndim=int(ndim))
        if kwargs.get("sparse"):
            spec["sparse"] = kwargs["sparse"]
        return _LayerRecord(spec, state, values)

    activation, act_params = _activation(state, what)
    for var in list(state.get("_params") or []) + act_params:
        pname, value = _shared(var, what)
        values[pname] = value
    spec["inputs"] = _input_names(state, previous, what)
    if size is not None:
        spec["size"] = int(size)
    workers = ()
    if form in ("concatenate", "product", "flatten", "reshape"):
        # the old structural layers ignored their activation, and joined their
        # inputs in the sorted order of the input names
        spec.pop("size", None)
        spec["activation"] = "linear"
        spec["inputs"] = sorted(spec["inputs"])
        if form == "reshape":
            spec["shape"] = [int(s) for s in state.get("shape")]
    else:
        spec["activation"] = activation
    if form == "conv1":
        # the old Conv1 ran a (1, k) two-dimensional convolution over time
        filters = list(np.ravel(state.get("filter_shape", ())))
        strides = list(np.ravel(state.get("stride", 1)))
        if not filters:
            raise ValueError(f"{what}: cannot read its filter shape")
        spec.update(filter_size=int(filters[-1]), stride=int(strides[-1]))
        if isinstance(state.get("border_mode"), str):
            spec["border_mode"] = state["border_mode"]
    if form == "tied":
        partner = _state(state.get("partner"), f"{what} partner").get("name")
        if not isinstance(partner, str):
            raise ValueError(f"{what}: cannot read the name of its partner layer")
        spec["partner"] = partner
    if form in ("rnn", "rrnn", "mrnn", "lstm", "gru", "clockwork", "mut1", "scrn"):
        spec.update(_recurrent_options(state))
        if short in _RATE_CLASSES:
            spec["rate"] = _RATE_CLASSES[short]
        rates = state.get("_rates")
        if isinstance(rates, LegacyObject):
            values["fixed rates"] = _shared(rates, what)[1]
        if spec.get("direction") == "back" and not is_worker:
            warnings.warn(
                f"{what} runs backwards in time: theanets 0.7 left its outputs in reversed "
                "time order, the loaded layer aligns them with the input",
                UserWarning,
                stacklevel=2,
            )
    if form == "bidirectional":
        workers = _bidirectional_workers(state, spec, what, previous, model)
        spec["activation"] = workers[0].spec["activation"]
        spec["inputs"] = workers[0].spec["inputs"]
        warnings.warn(
            f"{what}: theanets 0.7 left the backward half of a bidirectional layer in "
            "reversed time order; the loaded layer aligns it with the input",
            UserWarning,
            stacklevel=2,
        )
    return _LayerRecord(spec, state, values, workers)


# ----------------------------------------------------------------------
# layers saved by the 0.8 development line (upstream master)

#: Old layer class name -> layer form here, for files of the 0.8 line.
_MASTER_FORMS = {
    **{k: v for k, v in _LAYER_FORMS.items() if k not in _RATE_CLASSES},
    "Conv2": "conv2",
    "BCRNN": "bcrnn",
    "Pool1": "pool1",
    "Pool2": "pool2",
}

_RECURRENT_FORMS = ("rnn", "bcrnn", "rrnn", "mrnn", "lstm", "gru", "clockwork", "mut1", "scrn")


def _is_master_layer(state):
    """True for a layer saved by the 0.8 line, which kept its shapes by output name."""
    return isinstance(state.get("_output_shapes"), dict) and isinstance(state.get("kwargs"), dict)


def _object_activation(act, what):
    """The activation name here for a saved activation object (not a name)."""
    short = _short(act)
    module = (_path(act) or "").rpartition(".")[0]
    if module == "theanets.activations" and isinstance(act, type) and short in _FUNCTIONS:
        return _FUNCTIONS[short]
    if short == "Elemwise" and isinstance(act, LegacyObject):
        op = _state(act, f"{what} activation").get("scalar_op")
        if _short(op) in _SCALAR_OPS:
            return _SCALAR_OPS[_short(op)]
    if module == "theanets.activations" and isinstance(act, LegacyObject):
        state = _state(act, f"{what} activation")
        if short == "Compose":  # f is applied first, written first in 'f+g'
            parts = (state.get("f"), state.get("g"))
            return "+".join(_object_activation(part, what) for part in parts)
        if short == "Maxout" and isinstance(state.get("pieces"), (int, np.integer)):
            return f"maxout:{int(state['pieces'])}"
        if isinstance(state.get("name"), str):
            return state["name"]
    raise ValueError(f"{what}: cannot convert its activation {_path(act) or act!r}")


def _master_activation(state, kwargs, what):
    """Activation name here and its saved parameters, for a layer of the 0.8 line.

    The name the old layer was built from is in its ``kwargs`` (``'relu'``
    when absent); an activation object given instead of a name is read from
    the layer's ``activate`` attribute. Learnable activations (and
    compositions of them) list their shared variables in ``params``.
    """
    from . import activations

    act = state.get("activate")
    name = kwargs.get("activation", "relu")
    if not isinstance(name, str):
        name = _object_activation(act, what)
    for part in name.split("+"):
        key = part.strip().lower()
        key = "maxout" if key.startswith("maxout:") else key
        if not activations.Activation.is_registered(key):
            known = activations.Activation.registered_names()
            raise ValueError(
                f"{what}: cannot convert its activation {name!r}: this package has no "
                f"{part.strip()!r} activation.{util.closest_match(key, known)}"
            )
    params = []
    if isinstance(act, LegacyObject) and isinstance(act.legacy_state, dict):
        params = list(act.legacy_state.get("params") or [])
    return name, params


def _output_ref(value, what):
    """A full output name from a saved input reference (a name or a saved layer)."""
    if isinstance(value, LegacyObject):
        value = _state(value, what).get("name")
    if not isinstance(value, str):
        raise ValueError(f"{what}: cannot read the input {value!r}")
    return util.output_name(value)


def _master_inputs(state, kwargs, what):
    """Full names of the outputs a layer of the 0.8 line reads, in its order."""
    resolved = state.get("_input_shapes")
    if isinstance(resolved, dict) and resolved:
        return [_output_ref(name, what) for name in resolved]
    inputs = kwargs.get("inputs", ())
    if not isinstance(inputs, (list, tuple)):
        inputs = (inputs,)
    if not inputs:
        raise ValueError(f"{what}: the saved layer has no inputs")
    return [_output_ref(name, what) for name in inputs]


def _int_tuple(value, what, label):
    try:
        return tuple(int(v) for v in np.ravel(value))
    except (TypeError, ValueError):
        raise ValueError(f"{what}: cannot read its {label} {value!r}") from None


def _sparse_format(var):
    """``'csr'``/``'csc'`` for a saved sparse input variable, else False."""
    vtype = getattr(var, "legacy_state", None)
    vtype = vtype.get("type") if isinstance(vtype, dict) else None
    if "sparse" not in (_path(vtype) or ""):
        return False
    fmt = _state(vtype, "input variable type").get("format")
    return fmt if fmt in ("csr", "csc") else "csr"


def _master_recurrent(state, kwargs, form, spec, values, what, is_worker):
    """Add the options of a recurrent layer of the 0.8 line to its spec."""
    for key in ("h_0", "c_0", "s_0"):
        if isinstance(state.get(key), str):
            spec[key] = state[key]
    direction = kwargs.get("direction")
    backwards = isinstance(direction, str) and "back" in direction.lower()
    if backwards:
        spec["direction"] = "back"
    limit = kwargs.get("bptt_limit")
    if util.is_int(limit) and limit > 0:
        spec["bptt_limit"] = int(limit)
    if form in ("rrnn", "scrn"):
        rate = state.get("_rate")
        if not isinstance(rate, str):
            raise ValueError(f"{what}: cannot read its rate kind {rate!r}")
        spec["rate"] = rate
        if isinstance(state.get("_rates"), LegacyObject):
            values["fixed rates"] = _shared(state["_rates"], what)[1]
    if form == "mrnn":
        spec["factors"] = _int_tuple(state.get("factors"), what, "factors")[0]
    if form == "bcrnn":
        spec["num_modules"] = _int_tuple(state.get("num_modules"), what, "num_modules")[0]
    if form == "clockwork":
        spec["periods"] = sorted(_int_tuple(state.get("periods"), what, "periods"))
    if form == "scrn":
        # The old layer's context had as many units as the layer itself. Its
        # code applied the activation to the hidden state and none to the
        # output; here the hidden state is logistic and the activation applies
        # to the output, which is the same only for a logistic old layer.
        spec["context_size"] = spec["size"]
        if spec["activation"] not in ("sigmoid", "logistic"):
            raise ValueError(
                f"{what}: cannot convert an SCRN layer with activation {spec['activation']!r}: "
                "theanets 0.8 applied it to the hidden state, this package uses a logistic "
                "hidden state and applies the activation to the output (only 'sigmoid' "
                "layers compute the same)"
            )
        spec["activation"] = "linear"
        rates = values.get("fixed rates")
        if rates is not None and rates.shape != (spec["size"],):
            raise ValueError(
                f"{what}: saved fixed rates of shape {rates.shape} do not fit its "
                f"{spec['size']} context units"
            )
    if backwards and not is_worker:
        warnings.warn(
            f"{what} runs backwards in time: theanets 0.8 left its outputs in reversed "
            "time order, the loaded layer aligns them with the input",
            UserWarning,
            stacklevel=3,
        )


def _master_record(state, form, short, what, is_worker=False):
    """Our spec and the saved values for a layer of the 0.8 line.

    The 0.8 line kept a layer's constructor arguments in ``kwargs``, its
    resolved input and output shapes (without the batch axis) in
    ``_input_shapes`` and ``_output_shapes``, and the arguments that its
    class takes by name (``partner``, ``h_0``, ``factors``, ...) as
    attributes.
    """
    kwargs = state["kwargs"]
    name = state["name"]
    out_shape = state["_output_shapes"].get("out")
    spec = dict(form=form, name=name)
    if form == "input":
        shape = kwargs.get("shape") or out_shape
        if not isinstance(shape, (list, tuple)) or not shape:
            raise ValueError(f"{what}: cannot read its shape {shape!r}")
        spec["shape"] = [None if s is None else int(s) for s in shape]
        sparse = _sparse_format(state.get("input"))
        if sparse:
            spec["sparse"] = sparse
        return _LayerRecord(spec, state, {}, master=True)

    activation, act_params = _master_activation(state, kwargs, what)
    values = {}
    for var in list(state.get("_params") or []) + act_params:
        pname, value = _shared(var, what)
        values[pname] = value
    spec["inputs"] = _master_inputs(state, kwargs, what)
    spec["activation"] = activation
    size = kwargs.get("size")
    if size is None and isinstance(out_shape, (list, tuple)) and out_shape:
        size = out_shape[-1]
    if size is not None:
        spec["size"] = _int_tuple(size, what, "size")[0]
    workers = ()
    if form in ("concatenate", "product", "flatten", "reshape"):
        # these applied no activation, and their size follows from the inputs
        spec["activation"] = "linear"
        spec.pop("size", None)
        if form == "reshape":
            spec["shape"] = list(_int_tuple(kwargs.get("shape"), what, "shape"))
    elif form == "tied":
        partner = state.get("partner")
        if isinstance(partner, LegacyObject):
            partner = _state(partner, f"{what} partner").get("name")
        if not isinstance(partner, str):
            raise ValueError(f"{what}: cannot read the name of its partner layer")
        spec["partner"] = partner
        spec.pop("size", None)
    elif form in ("conv1", "conv2"):
        filters = _int_tuple(state.get("filter_size"), what, "filter size")
        strides = _int_tuple(state.get("stride", 1), what, "stride")
        if form == "conv1":  # kept as a (1, k) two-dimensional filter
            filters, strides = filters[-1:], strides[-1:]
        spec["filter_size"] = filters[0] if form == "conv1" else list(filters)
        spec["stride"] = strides[0] if form == "conv1" else list(strides)
        if isinstance(state.get("border_mode"), str):
            spec["border_mode"] = state["border_mode"]
    elif form in ("pool1", "pool2"):
        if kwargs.get("pool_size") is None:
            raise ValueError(f"{what}: cannot read its pool size")
        for key in ("pool_size", "stride"):
            if kwargs.get(key) is not None:
                spec[key] = list(_int_tuple(kwargs[key], what, key))
        if isinstance(kwargs.get("mode"), str):
            spec["mode"] = kwargs["mode"]
    elif form in _RECURRENT_FORMS:
        _master_recurrent(state, kwargs, form, spec, values, what, is_worker)
    elif form == "bidirectional":
        workers = _bidirectional_workers(state, spec, what, None, None)
        warnings.warn(
            f"{what}: theanets 0.8 left the backward half of a bidirectional layer in "
            "reversed time order; the loaded layer aligns it with the input",
            UserWarning,
            stacklevel=3,
        )
    return _LayerRecord(spec, state, values, workers, master=True)


def _join_gru(values):
    """Old per-gate GRU weights -> this package's ``w`` and ``b``."""
    return {
        "hh": values["hh"],
        "hr": values["hr"],
        "hz": values["hz"],
        "w": np.concatenate([values["xh"], values["xr"], values["xz"]], axis=1),
        "b": np.concatenate([values["bh"], values["br"], values["bz"]]),
    }


def _join_scrn(values):
    """Old SCRN input weights ``xh`` and ``xs`` -> this package's ``w``."""
    joined = {k: v for k, v in values.items() if k not in ("xh", "xs")}
    joined["w"] = np.concatenate([values["xh"], values["xs"]], axis=1)
    return joined


_JOINERS = {"gru": _join_gru, "scrn": _join_scrn}

#: Activation parameters the old package used as they are, and this package
#: through their exponential (so it stores their logarithms).
_LOG_PARAMS = {"prelu": ("leak",), "lgrelu": ("gain", "leak")}


def _squeezed(shape):
    return tuple(d for d in shape if d != 1)


def _copy_values(record, layer):
    """Copy a saved layer's values into our bound layer (and its workers)."""
    if record.workers:
        _copy_values(record.workers[0], layer.forward)
        _copy_values(record.workers[1], layer.backward)
        return
    values = dict(record.values)
    what = f"layer {layer.name!r}"
    rates = values.pop("fixed rates", None)
    if rates is not None:
        target = getattr(layer, "_fixed_rates", None)
        if target is None:
            raise ValueError(f"{what}: the loaded layer has no fixed rates for the saved ones")
        target.set_value(np.asarray(rates, dtype=target.dtype))
    params = {p.name: p for p in layer.params}
    if set(values) != set(params):
        prefix = f"{layer.name}."
        short = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
        joiner = _JOINERS.get(record.spec["form"])
        if joiner is not None and len(short) == len(values):
            try:
                values = {prefix + k: v for k, v in joiner(short).items()}
            except KeyError:
                pass
    if set(values) != set(params):
        raise ValueError(
            f"{what}: saved parameters {sorted(values)} do not match the loaded layer's "
            f"{sorted(params)}"
        )
    for short in () if record.master else _LOG_PARAMS.get(record.spec.get("activation"), ()):
        name = f"{layer.name}.{short}"
        if name in values:
            if np.any(values[name] <= 0):
                raise ValueError(
                    f"{what}: saved {record.spec['activation']} parameter {name} has values "
                    "<= 0, which this package cannot represent (it stores them as logarithms)"
                )
            values[name] = np.log(values[name])
    for name, value in values.items():
        param = params[name]
        want = param.get_value(borrow=True)
        if record.spec["form"] == "conv1" and _squeezed(value.shape) == _squeezed(want.shape):
            value = value.reshape(want.shape)  # old filters are (n, i, 1, k)
        if want.shape != value.shape:
            raise ValueError(
                f"{what}: saved parameter {name} has shape {value.shape}, expected {want.shape}"
            )
        param.set_value(np.asarray(value, dtype=want.dtype))


def _add_loss(network, obj, inputs):
    from . import losses

    path = _path(obj)
    short = _short(obj)
    if not (path or "").startswith("theanets.") or not losses.Loss.is_registered(short.lower()):
        raise ValueError(f"cannot convert the saved loss {path or type(obj).__name__}")
    state = _state(obj, f"loss {path}")
    cls = losses.Loss.lookup(short.lower())
    kwargs = dict(
        weight=float(state.get("weight", 1.0)),
        weighted=state.get("_weights") is not None,
    )
    if isinstance(state.get("output_name"), str):
        kwargs["output_name"] = state["output_name"]
    target = state.get("_target")
    if target is not None and any(target is var for var, _ in inputs):
        kwargs["target"] = next(ours for var, ours in inputs if var is target)
    else:
        ndim = _variable_ndim(target)
        if ndim is not None:
            kwargs["target"] = ndim + 1 if cls.LABELS else ndim
    if short == "GaussianLogLikelihood":
        for key in ("mean_name", "covar_name", "covar_eps"):
            if key in state:
                kwargs[key] = state[key]
    if short == "MaximumMeanDiscrepancy" and isinstance(state.get("kernel"), (int, float)):
        kwargs["kernel"] = state["kernel"]
    network.add_loss(short.lower(), **kwargs)


#: Parameters of each recurrent form whose rows follow the units of its input.
_INPUT_WEIGHTS = {
    "rnn": ("xh",),
    "rrnn": ("xh", "xr"),
    "mrnn": ("xh", "xf"),
    "lstm": ("xh",),
    "gru": ("w",),
    "clockwork": ("xh",),
    "mut1": ("xh", "xr", "xz"),
    "scrn": ("w",),
}


def _clockwork_order(record, layer):
    """Unit order mapping a 0.8 Clockwork layer onto ours (None: they agree).

    The 0.8 line kept the modules fastest first; if the loaded layer keeps
    them slowest first, module ``m`` here is module ``M - 1 - m`` there.
    """
    periods = record.spec["periods"]
    ours = [int(p) for p in layer.periods]
    if ours == periods:
        return None
    if ours != periods[::-1]:
        raise ValueError(
            f"layer {layer.name!r}: cannot match the saved clockwork periods {periods} "
            f"to the loaded layer's {ours}"
        )
    k = record.spec["size"] // len(periods)
    return np.array([m * k + r for m in reversed(range(len(periods))) for r in range(k)])


def _align_clockwork(records, network, saved_losses):
    """Reorder the units of 0.8 Clockwork layers to this package's module order.

    The layer's own parameters are permuted, and so are the input weights of
    every layer that reads it, so the network computes what the old one did.
    A Clockwork layer read by anything else (a loss, a structural layer) is
    refused, as its outputs would come out in another unit order.
    """
    flat = [r for record in records for r in (record, *record.workers)]
    for record in records:
        if not (record.master and record.spec["form"] == "clockwork"):
            continue
        name = record.spec["name"]
        order = _clockwork_order(record, network.find_layer(name))
        if order is None:
            continue
        for key, value in record.values.items():
            if key == f"{name}.hh":
                record.values[key] = value[np.ix_(order, order)]
            elif key == f"{name}.xh":
                record.values[key] = value[:, order]
            else:  # the bias and any activation parameters, one row per unit
                record.values[key] = value[order]
        outputs = {f"{name}:out", f"{name}:pre"}
        readers = [r for r in flat if r is not record and outputs & set(r.spec.get("inputs", ()))]
        for reader in readers:
            form, rname, inputs = reader.spec["form"], reader.spec["name"], reader.spec["inputs"]
            if form in ("feedforward", "classifier"):
                keys = [f"{rname}.w" if len(inputs) == 1 else f"{rname}.w_{i}" for i in inputs]
                keys = [key for key, i in zip(keys, inputs) if i in outputs]
            elif form in _INPUT_WEIGHTS:
                keys = [f"{rname}.{short}" for short in _INPUT_WEIGHTS[form]]
            elif form == "bidirectional":
                continue  # its workers are readers themselves
            else:
                raise ValueError(
                    f"layer {rname!r} ({form}) reads the clockwork layer {name!r}, whose "
                    "units theanets 0.8 ordered differently; such a network cannot be converted"
                )
            for key in keys:
                reader.values[key] = reader.values[key][order]
        for loss in saved_losses:
            state = loss.legacy_state if isinstance(loss, LegacyObject) else None
            out = state.get("output_name") if isinstance(state, dict) else None
            if out in outputs or out == name:
                raise ValueError(
                    f"a loss reads the clockwork layer {name!r}, whose units theanets 0.8 "
                    "ordered differently; such a network cannot be converted"
                )


def _saved_seed(records):
    """The integer seed the old network gave its layers, or the default 13."""
    seeds = set()
    for record in records:
        seed = (record.state.get("kwargs") or {}).get("rng")
        if record.spec["form"] != "input" and seed is not None:
            seeds.add(seed)
    if len(seeds) == 1:
        (seed,) = seeds
        if util.is_int(seed):
            return int(seed)
    return 13


def network_from_legacy(obj):
    """Build a network of this package from a Theano-era model read by :func:`legacy_loads`.

    Parameters
    ----------
    obj : object
        The unpickled model: a :class:`LegacyObject` standing for an old
        model class, whose state is the old ``(layers, losses)`` pair.

    Returns
    -------
    :class:`theanets.graph.Network`
        A network of the matching class here, with the same layer names,
        activations, losses and parameter values.

    Raises
    ------
    ValueError
        If ``obj`` is not an old theanets model, or it holds a layer, loss or
        activation that cannot be converted.
    """
    model = _model_class(obj)
    state = obj.legacy_state
    if isinstance(state, dict) and "layers" in state:
        state = (state["layers"], state.get("losses") or [])
    if not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise ValueError(f"{_path(obj)}: expected a saved (layers, losses) pair")
    saved_layers, saved_losses = state
    if not saved_layers:
        raise ValueError(f"{_path(obj)}: the saved model has no layers")
    records = []
    previous = None
    for layer in saved_layers:
        records.append(_layer_record(layer, previous, model))
        previous = records[-1].spec["name"]
    network = model(layers=[dict(r.spec) for r in records], loss=None, rng=_saved_seed(records))
    _align_clockwork(records, network, saved_losses)
    for record, layer in zip(records, network.layers):
        _copy_values(record, layer)
    inputs = [
        (record.state.get("input"), layer.variable)
        for record, layer in zip(records, network.layers)
        if record.spec["form"] == "input"
    ]
    for loss in saved_losses:
        _add_loss(network, loss, inputs)
    util.log(
        "converted Theano-era {} with layers {}",
        _path(obj),
        ", ".join(r.spec["name"] for r in records),
    )
    return network
