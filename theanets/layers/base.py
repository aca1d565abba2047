"""The :class:`Layer` base class and the structural layers.

A layer is a named piece of a computation graph. It reads one or more named
graph outputs (its *inputs*), owns zero or more parameters (PyTensor shared
variables called ``<layer>.<param>``) and produces one or more named outputs
(``<layer>:out``, ``<layer>:pre``, ...).

The life of a layer has three steps:

1. construction stores the configuration (nothing symbolic happens yet);
2. :meth:`Layer.bind` attaches it to a network: input names are resolved,
   shapes are checked, the activation and then the parameters are created
   from the layer's own :class:`numpy.random.RandomState`;
3. :meth:`Layer.connect` is called while the network builds its graph, with
   the dictionary of every output built so far, and returns the layer's own
   outputs keyed by their fully scoped names.
"""

import itertools
import re

import numpy as np
import pytensor
import pytensor.sparse
import pytensor.tensor as pt

from .. import activations, util

__all__ = ["Layer", "Input", "Concatenate", "Flatten", "Product", "Reshape"]

#: Keyword arguments that control parameter initialisation. Each also exists
#: in a per-parameter form, e.g. ``std_w`` or ``mean_b``.
INIT_KWARGS = ("mean", "std", "sparsity", "diagonal", "radius")

_PER_PARAM = re.compile(r"^({})_(\w+)$".format("|".join(INIT_KWARGS)))

#: Numbers for the default names of layers built without a name.
_DEFAULT_NAME_COUNTER = itertools.count(1)


def default_name(cls):
    """Return a new unique name for a layer of class ``cls`` built without one.

    ``cls`` is a :class:`Layer` subclass.

    Returns
    -------
    str
        The lower-case class name followed by a number, e.g. ``'feedforward3'``.
    """
    return f"{cls.__name__.lower()}{next(_DEFAULT_NAME_COUNTER)}"


def _full_output_name(ref):
    """Turn a layer name, output name or layer into a fully scoped output name."""
    if isinstance(ref, Layer):
        return ref.output_name
    if not isinstance(ref, str):
        raise util.ConfigurationError(
            f"layer inputs must be names or layers, got {type(ref).__name__} {ref!r}"
        )
    return util.output_name(ref)


def _input_list(inputs):
    if inputs is None:
        return None
    if isinstance(inputs, (str, Layer)):
        inputs = [inputs]
    elif isinstance(inputs, dict):
        inputs = list(inputs)
    return [_full_output_name(i) for i in inputs]


class Layer(util.Registrar):
    """Base class for all layers of a network.

    Parameters
    ----------
    size : int, optional
        Number of units, i.e. the size of the last axis of the output. Give
        either ``size`` or ``shape``.
    inputs : str, Layer or sequence of them, optional
        Graph outputs this layer reads. A bare layer name means that layer's
        ``:out``; ``'hid1:pre'`` names another output. When a network builds
        a layer from a spec, the default is the previous layer's output.
    name : str, optional
        The layer's name; networks assign ``hid1``, ``hid2``, ..., ``out``. A
        layer built without a name is called after its class and a counter
        (``'feedforward3'``).
    activation : str or callable, optional
        The activation function (see :mod:`theanets.activations`). Defaults
        to ``'relu'`` (:attr:`DEFAULT_ACTIVATION`).
    shape : tuple of int, optional
        Output shape without the batch axis, for layers whose output is not a
        vector per example.
    rng : int or RandomState, optional
        Source of random initial values. An integer creates a fresh
        :class:`numpy.random.RandomState` when the layer is bound. By default
        the network's seed is used.
    **kwargs
        Initial value settings (floats, see
        :func:`theanets.util.random_matrix`): ``mean``, ``std``,
        ``sparsity``, ``diagonal`` and ``radius`` apply to every weight
        matrix, and ``mean_<param>``, ``std_<param>``, ... to one parameter,
        e.g. ``std_w=0.1``. Biases follow only the per-parameter forms of
        ``mean`` and ``std`` (``std_b``). Any other keyword is an error.

    Attributes
    ----------
    name : str
        The layer's name.
    params : list of shared variables
        The layer's parameters, then its activation's parameters.
    kwargs : dict
        The keyword arguments the layer was built with (all but ``name`` and
        the options particular to a subclass, such as a convolution's
        ``filter_size``), as given; ``activation`` is always present.
    """

    #: Layer classes that need at least one input; :class:`Input` sets False.
    _requires_inputs = True
    #: Activation used when none is given.
    DEFAULT_ACTIVATION = "relu"
    #: Structural layers (flatten, reshape, ...) apply no activation at all.
    _uses_activation = True

    def __init__(
        self, size=None, inputs=None, name=None, activation=None, shape=None, rng=None, **kwargs
    ):
        if name is None:
            name = default_name(type(self))
        self._check_init_kwargs(kwargs, name)
        given = dict(kwargs)
        for key, value in (("size", size), ("shape", shape), ("inputs", inputs), ("rng", rng)):
            if value is not None:
                given[key] = value
        if activation is not None:
            given["activation"] = activation
        if size is not None and (not isinstance(size, (int, np.integer)) or size <= 0):
            raise util.ConfigurationError(
                f"layer {name!r}: size must be a positive integer, got {size!r}"
            )
        if shape is not None:
            shape = tuple(shape)
            if not all(s is None or (isinstance(s, (int, np.integer)) and s > 0) for s in shape):
                raise util.ConfigurationError(
                    f"layer {name!r}: shape must hold positive integers, got {shape!r}"
                )
            if size is not None and shape[-1] != size:
                raise util.ConfigurationError(
                    f"layer {name!r}: size={size} disagrees with shape={shape}"
                )
            size = shape[-1]
        self.size = None if size is None else int(size)
        self._shape = shape
        self.inputs = _input_list(inputs)
        self.name = name
        self.activation = self.DEFAULT_ACTIVATION if activation is None else activation
        self.kwargs = given
        self._rng_arg = rng
        self.rng = None
        self.params = []
        self._input_shapes = {}
        self._output_shape = None
        self.activate = None

    # ------------------------------------------------------------------
    # configuration checks

    @staticmethod
    def _check_init_kwargs(kwargs, name):
        for key in kwargs:
            if key in INIT_KWARGS or _PER_PARAM.match(key):
                continue
            raise util.ConfigurationError(
                f"layer {name!r} got an unknown keyword argument {key!r}."
                f"{util.closest_match(key, INIT_KWARGS)}"
            )

    def _check_per_param_kwargs(self):
        names = {p.name.split(".", 1)[1] for p in self.params if p.name and "." in p.name}
        for key in self.kwargs:
            match = _PER_PARAM.match(key)
            if match and match.group(2) not in names:
                raise util.ConfigurationError(
                    f"layer {self.name!r}: {key!r} names no parameter of this layer "
                    f"(parameters: {', '.join(sorted(names)) or 'none'})."
                    f"{util.closest_match(match.group(2), names)}"
                )

    # ------------------------------------------------------------------
    # names and shapes

    def full_name(self, name):
        """Return the fully scoped name ``'<layer>:<name>'`` of one output.

        Parameters
        ----------
        name : str
            A short output name like ``'out'``.

        Returns
        -------
        str
            The layer's name, a colon and ``name``.
        """
        return f"{self.name}:{name}"

    @property
    def output_name(self):
        """The fully scoped name of this layer's main output (``'<layer>:out'``)."""
        return self.full_name("out")

    @property
    def output_shape(self):
        """Shape of the main output for one example (no batch axis).

        A 6-unit feed-forward layer has ``(6,)``; a recurrent layer
        ``(None, 6)``, where ``None`` is the time axis of any length.
        """
        return self._output_shape

    @property
    def output_size(self):
        """Size of the last axis of the main output."""
        return self.size

    @property
    def input_name(self):
        """Fully scoped name of this layer's only input.

        Raises
        ------
        ConfigurationError
            If the layer has more than one input.
        """
        if not self.inputs or len(self.inputs) != 1:
            raise util.ConfigurationError(
                f"layer {self.name!r} has inputs {self.inputs}; it needs exactly one"
            )
        return self.inputs[0]

    @property
    def input_shape(self):
        """Shape of this layer's only input for one example (no batch axis)."""
        return self._input_shapes[self.input_name]

    @property
    def input_size(self):
        """Size of the last axis of this layer's only input."""
        return self.input_shape[-1]

    @property
    def input_shapes(self):
        """Dictionary mapping each input's full name to its shape (no batch axis)."""
        return dict(self._input_shapes)

    # ------------------------------------------------------------------
    # binding

    def bind(self, network, initialize=True):
        """Attach this layer to a network: resolve inputs, shapes and parameters.

        Parameters
        ----------
        network : :class:`theanets.graph.Network`
            The network this layer belongs to; the shapes of its existing
            outputs are looked up through ``network.output_shapes``.
        initialize : bool, optional
            Whether to create parameters (default True).

        Raises
        ------
        ConfigurationError
            If an input cannot be resolved or shapes do not fit.
        """
        if self.name is None:
            raise util.ConfigurationError(f"a {type(self).__name__} layer needs a name")
        known = network.output_shapes
        if self._requires_inputs:
            if not self.inputs:
                raise util.ConfigurationError(f"layer {self.name!r} has no inputs")
            shapes = {}
            for ref in self.inputs:
                if ref not in known:
                    layer_name = ref.split(":")[0]
                    choices = [k for k in known if k.split(":")[0] == layer_name] or list(known)
                    raise util.ConfigurationError(
                        f"layer {self.name!r}: cannot find input {ref!r}."
                        f"{util.closest_match(ref, choices)} Known outputs: {', '.join(known)}"
                    )
                shapes[ref] = known[ref]
            self._input_shapes = shapes
        rng = self._rng_arg if self._rng_arg is not None else network.rng
        self.rng = util.resolve_rng(rng)
        self._output_shape = self._resolve_output_shape()
        self.size = self._output_shape[-1]
        if initialize:
            self.params = []
            self.activate = activations.build(
                self.activation if self._uses_activation else "linear", self
            )
            self.setup()
            self.params.extend(getattr(self.activate, "params", []))
            self._check_per_param_kwargs()

    def _resolve_output_shape(self):
        """Compute the output shape from the input shapes and ``size``/``shape``."""
        if self._shape is not None:
            return tuple(self._shape)
        if self.size is None:
            raise util.ConfigurationError(f"layer {self.name!r} needs a size or a shape")
        first = next(iter(self._input_shapes.values()))
        return tuple(first[:-1]) + (self.size,)

    def setup(self):
        """Create this layer's parameters (override in subclasses)."""

    def output_shapes(self):
        """Shapes of the outputs other layers may read, keyed by full name.

        Returns
        -------
        dict
            By default ``out`` and ``pre``, both of :attr:`output_shape`
            (structural layers have only ``out``); layers with other outputs
            (``cell``, ``rate``, ...) add them.
        """
        if not self._uses_activation:
            return {self.output_name: self.output_shape}
        return {self.output_name: self.output_shape, self.full_name("pre"): self.output_shape}

    # ------------------------------------------------------------------
    # graph construction

    def connect(self, inputs):
        """Build this layer's outputs from the outputs built so far.

        Parameters
        ----------
        inputs : dict
            Maps fully scoped output names to PyTensor expressions; it holds
            every output of the layers before this one.

        Returns
        -------
        outputs : dict
            This layer's outputs, keyed by fully scoped names
            (``'hid1:out'``, ``'hid1:pre'``, ...).
        updates : list
            ``(shared, expression)`` updates the graph needs (usually empty).
        """
        result = self.transform(inputs)
        updates = []
        if isinstance(result, tuple):
            result, updates = result
        if not isinstance(result, dict):
            result = {"out": result}
        outputs = {}
        for short, expr in sorted(result.items()):
            full = self.full_name(short)
            if expr.owner is not None:  # never rename the input variables themselves
                expr.name = full
            outputs[full] = expr
        return outputs, list(updates)

    def transform(self, inputs):
        """Compute this layer's outputs (override in subclasses).

        Parameters
        ----------
        inputs : dict
            Maps fully scoped output names to expressions.

        Returns
        -------
        expression, dict, or (dict, updates)
            A single expression (the ``out`` output), a dictionary of short
            output names to expressions, or such a dictionary and a list of
            updates.
        """
        raise NotImplementedError

    def _only_input(self, inputs):
        return inputs[self.input_name]

    # ------------------------------------------------------------------
    # parameters

    def _init_setting(self, key, param, default):
        return self.kwargs.get(f"{key}_{param}", self.kwargs.get(key, default))

    def add_weights(self, name, nin, nout, mean=0, std=0, sparsity=0, diagonal=0, radius=0):
        """Create a weight matrix parameter ``<layer>.<name>`` of shape (nin, nout).

        The layer's keyword arguments (``std``, ``std_<name>``, ...) override
        the defaults given here. A zero ``std`` means the Glorot scale
        :math:`1 / \\sqrt{n_{in} + n_{out}}`.

        Parameters
        ----------
        name : str
            Short parameter name, e.g. ``'w'``.
        nin, nout : int
            Shape of the matrix.
        mean, std, sparsity, diagonal, radius : float, optional
            Defaults for :func:`theanets.util.random_matrix`.

        Returns
        -------
        shared variable
            The new parameter (also appended to :attr:`params`).
        """
        glorot = 1 / np.sqrt(nin + nout)
        value = util.random_matrix(
            nin,
            nout,
            mean=self._init_setting("mean", name, mean),
            std=self._init_setting("std", name, std) or glorot,
            sparsity=self._init_setting("sparsity", name, sparsity),
            diagonal=self._init_setting("diagonal", name, diagonal),
            radius=self._init_setting("radius", name, radius),
            rng=self.rng,
        )
        return self._add_param(name, value)

    def add_bias(self, name, size, mean=0, std=1):
        """Create a bias vector parameter ``<layer>.<name>``.

        Only the per-parameter keyword arguments (``mean_<name>``,
        ``std_<name>``) override the defaults given here.

        Parameters
        ----------
        name : str
            Short parameter name, e.g. ``'b'``.
        size : int
            Length of the vector.
        mean, std : float, optional
            Defaults for :func:`theanets.util.random_vector`.

        Returns
        -------
        shared variable
            The new parameter (also appended to :attr:`params`).
        """
        value = util.random_vector(
            size,
            mean=self.kwargs.get(f"mean_{name}", mean),
            std=self.kwargs.get(f"std_{name}", std),
            rng=self.rng,
        )
        return self._add_param(name, value)

    def _add_param(self, name, value):
        shared = pytensor.shared(value, name=f"{self.name}.{name}", shape=value.shape)
        self.params.append(shared)
        return shared

    def _own_params(self):
        """This layer's own parameters, without those of its activation."""
        extra = getattr(self.activate, "params", [])
        return [p for p in self.params if all(p is not q for q in extra)]

    def find(self, key):
        """Return one of this layer's own parameters by short or full name.

        Only the layer's own parameters are searched, not those of a
        learnable activation.

        Parameters
        ----------
        key : str or int
            ``'w'``, ``'hid1.w'``, or an index into the layer's own
            parameters.

        Returns
        -------
        shared variable
            The parameter.

        Raises
        ------
        KeyError
            If no parameter has that name or index.
        """
        own = self._own_params()
        if util.is_int(key):
            if -len(own) <= key < len(own):
                return own[key]
            raise KeyError(f"layer {self.name!r} has no parameter with index {key}")
        key = str(key)
        full = key if "." in key else f"{self.name}.{key}"
        for param in own:
            if param.name == full:
                return param
        names = [p.name for p in own]
        raise KeyError(
            f"layer {self.name!r} has no parameter {key!r}.{util.closest_match(full, names)} "
            f"Parameters: {', '.join(names) or 'none'}"
        )

    # ------------------------------------------------------------------
    # description

    def _spec_extra(self):
        """Constructor arguments particular to a subclass, for :meth:`to_spec`."""
        return {}

    def to_spec(self):
        """Return a dictionary from which an equal layer can be built.

        The dictionary holds :attr:`kwargs` as given (``size``, ``shape`` and
        ``inputs`` only where they were passed), the layer's ``form`` (its
        lower-case class name), ``name`` and ``activation``, and the options
        particular to the layer's class (a recurrent layer's ``h_0``, a
        convolution's ``filter_size``, ...). ``Layer.build(spec.pop('form'),
        **spec)`` recreates the layer before binding.

        Returns
        -------
        dict
            Keyword arguments for :meth:`Layer.build`, ``form`` included.

        Examples
        --------
        >>> layer = Layer.build('feedforward', size=3, inputs='in', name='l')
        >>> layer.to_spec()
        {'size': 3, 'inputs': 'in', 'form': 'feedforward', 'name': 'l', 'activation': 'relu'}
        """
        spec = dict(self.kwargs)
        activation = spec.get("activation", "relu")
        if callable(activation) and not isinstance(activation, str):
            activation = getattr(activation, "name", None) or repr(activation)
        spec.update(form=type(self).__name__.lower(), name=self.name, activation=activation)
        spec.update(self._spec_extra())
        return spec

    def num_params(self):
        """Count the scalar values in this layer's parameters.

        Returns
        -------
        int
            How many numbers :attr:`params` hold, counting those of a learnable
            activation too.
        """
        return int(sum(np.prod(p.get_value(borrow=True).shape) for p in self.params))

    def log(self):
        """Log a one-line description of this layer."""
        inputs = ", ".join(f"{k}{tuple(v)}" for k, v in self._input_shapes.items())
        util.log(
            "layer {}: {} -> {}, {}, {} parameters",
            self.name,
            inputs or "(input)",
            self.output_shape,
            getattr(self.activate, "name", self.activation),
            self.num_params(),
        )

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, size={self.size!r})"


def dot_last_axis(x, w):
    """Multiply the last axis of ``x`` by the matrix ``w``.

    Inputs with more than two axes are reshaped to 2-D first, so the product
    is a single matrix multiplication (one BLAS call).

    Parameters
    ----------
    x : tensor or sparse matrix
        Values with at least two axes; a sparse ``x`` must be a matrix.
    w : matrix
        Weights of shape ``(x.shape[-1], n)``.

    Returns
    -------
    tensor
        ``x`` with its last axis replaced by one of size ``n``.
    """
    if isinstance(x.type, pytensor.sparse.SparseTensorType):
        return pytensor.sparse.structured_dot(x, w)
    if x.ndim == 2:
        return pt.dot(x, w)
    flat = x.reshape((-1, x.shape[-1]))
    out = pt.dot(flat, w)
    return out.reshape(tuple(x.shape[i] for i in range(x.ndim - 1)) + (w.shape[1],), ndim=x.ndim)


class Input(Layer):
    """The entry point of a network: a symbolic variable fed with data.

    Parameters
    ----------
    size : int, optional
        Number of features (the last axis).
    shape : tuple of int, optional
        Shape of one example, e.g. ``(28, 28, 1)`` for images; ``None``
        entries stand for axes of any length (such as time).
    ndim : int, optional
        Number of axes of the data including the batch axis; defaults to 2,
        or ``len(shape) + 1`` when ``shape`` is given.
    sparse : bool or {'csr', 'csc'}, optional
        Feed a ``scipy.sparse`` matrix instead of a dense array.
    name : str, optional
        Defaults to ``'in'``.
    **kwargs
        Passed on to :class:`Layer` (``rng``, for instance). An ``inputs``
        entry or an ``activation`` other than ``'linear'`` is an error.

    Examples
    --------
    >>> layer = Input(size=4)
    >>> layer.name
    'in'
    """

    __extra_registration_keys__ = ["in"]
    _requires_inputs = False

    def __init__(self, size=None, shape=None, ndim=None, sparse=False, name="in", **kwargs):
        if kwargs.pop("inputs", None):
            raise util.ConfigurationError(f"input layer {name!r} cannot have inputs")
        activation = kwargs.pop("activation", "linear")
        if activation not in (None, "linear"):
            raise util.ConfigurationError(
                f"input layer {name!r} cannot have an activation (got {activation!r})"
            )
        if shape is None and size is None:
            raise util.ConfigurationError(f"input layer {name!r} needs a size or a shape")
        if shape is not None:
            shape = tuple(shape)
            if ndim is not None and ndim != len(shape) + 1:
                raise util.ConfigurationError(
                    f"input layer {name!r}: ndim={ndim} disagrees with shape={shape}"
                )
        else:
            ndim = 2 if ndim is None else int(ndim)
            if ndim < 2:
                raise util.ConfigurationError(f"input layer {name!r}: ndim must be >= 2")
            shape = (None,) * (ndim - 2) + (size,)
        if sparse not in (False, True, "csr", "csc"):
            raise util.ConfigurationError(
                f"input layer {name!r}: sparse must be False, True, 'csr' or 'csc', got {sparse!r}"
            )
        if sparse and len(shape) != 1:
            raise util.ConfigurationError(f"input layer {name!r}: sparse inputs must be 2-D")
        super().__init__(shape=shape, name=name, activation="linear", **kwargs)
        if sparse:
            self.kwargs["sparse"] = sparse
        self.sparse = "csr" if sparse is True else sparse
        self.ndim = len(shape) + 1
        self._output_shape = tuple(shape)
        self.variable = self._make_variable()

    def _make_variable(self):
        dtype = pytensor.config.floatX
        if self.sparse:
            return pytensor.sparse.matrix(self.sparse, name=self.name, dtype=dtype)
        static = (None,) + tuple(self._shape)
        return pt.tensor(name=self.name, dtype=dtype, shape=static)

    def bind(self, network, initialize=True):
        """Bind the input layer: it owns no parameters and reads no inputs.

        Parameters
        ----------
        network : :class:`theanets.graph.Network`
            The network; only its ``rng`` is used, unless the layer was
            given its own.
        initialize : bool, optional
            Ignored: there is nothing to create.
        """
        self.rng = util.resolve_rng(self._rng_arg if self._rng_arg is not None else network.rng)
        self._output_shape = tuple(self._shape)
        self.params = []

    def output_shapes(self):
        """Give the shape of the input layer's only output.

        Returns
        -------
        dict
            ``{'<name>:out': shape}``, the shape of one example.
        """
        return {self.output_name: self.output_shape}

    def transform(self, inputs):
        """Return the input variable itself.

        Parameters
        ----------
        inputs : dict
            Not used: an input layer reads no other output.

        Returns
        -------
        TensorVariable or SparseVariable
            The variable that is fed with data (:attr:`variable`).
        """
        return self.variable


def _shapes_agree(shapes):
    """True if the shapes have one length and no axis with two known sizes."""
    if len({len(s) for s in shapes}) > 1:
        return False
    return all(len({n for n in axis if n is not None}) <= 1 for axis in zip(*shapes))


class Product(Layer):
    """Elementwise product of several inputs of the same shape.

    :math:`y = \\prod_i x_i`; it has no parameters and no activation, and
    its only output is ``out``. Registered as ``'product'`` and ``'prod'``.

    Parameters
    ----------
    size, inputs, name, activation, shape, rng
        As for :class:`Layer`. A ``size`` (or ``shape``), if given, must be
        the size of the inputs; the activation is not applied.
    **kwargs
        Accepted as by :class:`Layer`, though there is nothing to initialise.
    """

    __extra_registration_keys__ = ["prod"]

    _uses_activation = False

    def _resolve_output_shape(self):
        shapes = list(self._input_shapes.values())
        if not _shapes_agree(shapes):
            raise util.ConfigurationError(
                f"layer {self.name!r}: Product inputs must have equal shapes, got "
                f"{dict(self._input_shapes)}"
            )
        if self.size is not None and self.size != shapes[0][-1]:
            raise util.ConfigurationError(
                f"layer {self.name!r}: size={self.size} but inputs have size {shapes[0][-1]}"
            )
        return tuple(shapes[0])

    def transform(self, inputs):
        """Multiply the inputs elementwise.

        Parameters
        ----------
        inputs : dict
            Graph outputs by full name, the factors among them.

        Returns
        -------
        TensorVariable
            The product, shaped like each input.
        """
        exprs = [inputs[name] for name in self.inputs]
        out = exprs[0]
        for expr in exprs[1:]:
            out = out * expr
        return out


class Concatenate(Layer):
    """Concatenation of several inputs along their last axis.

    The output size is the sum of the input sizes; every other axis must
    agree. It has no parameters and no activation, and its only output is
    ``out``. Registered as ``'concatenate'`` and ``'concat'``.

    Parameters
    ----------
    size, inputs, name, activation, shape, rng
        As for :class:`Layer`. A ``size`` (or ``shape``), if given, must be
        the sum of the input sizes; the activation is not applied.
    **kwargs
        Accepted as by :class:`Layer`, though there is nothing to initialise.
    """

    __extra_registration_keys__ = ["concat"]

    _uses_activation = False

    def _resolve_output_shape(self):
        shapes = list(self._input_shapes.values())
        if not _shapes_agree([s[:-1] for s in shapes]):
            raise util.ConfigurationError(
                f"layer {self.name!r}: Concatenate inputs must agree on every axis but the "
                f"last, got {dict(self._input_shapes)}"
            )
        total = sum(s[-1] for s in shapes)
        if self.size is not None and self.size != total:
            raise util.ConfigurationError(
                f"layer {self.name!r}: size={self.size} but the inputs' sizes add up to {total}"
            )
        return tuple(shapes[0][:-1]) + (total,)

    def transform(self, inputs):
        """Join the inputs along the last axis.

        Parameters
        ----------
        inputs : dict
            Everything built so far; the layer takes the outputs it joins
            from here, in the order of its :attr:`inputs`.

        Returns
        -------
        TensorVariable
            The inputs side by side, in the order of :attr:`inputs`.
        """
        return pt.concatenate([inputs[name] for name in self.inputs], axis=-1)


class Flatten(Layer):
    """Flatten every axis but the batch axis into one.

    Useful between convolution and feed-forward layers. It has no parameters
    and no activation, and its only output is ``out``. Registered as
    ``'flatten'`` and ``'flat'``.

    Parameters
    ----------
    size, inputs, name, activation, shape, rng
        As for :class:`Layer`. A ``size`` (or ``shape``), if given, must be
        the number of values in one example; the activation is not applied.
    **kwargs
        Accepted as by :class:`Layer`, though there is nothing to initialise.
    """

    __extra_registration_keys__ = ["flat"]

    _uses_activation = False

    def _resolve_output_shape(self):
        shape = self.input_shape
        if any(s is None for s in shape):
            raise util.ConfigurationError(
                f"layer {self.name!r}: cannot flatten input {self.input_name!r} of shape "
                f"{self.input_shape}: every axis of an example must have a known size"
            )
        total = int(np.prod(shape))
        if self.size is not None and self.size != total:
            raise util.ConfigurationError(
                f"layer {self.name!r}: size={self.size} but the flattened input has {total} values"
            )
        return (total,)

    def transform(self, inputs):
        """Reshape the input to (batch, features).

        Parameters
        ----------
        inputs : dict
            Graph outputs by full name, the one to flatten among them.

        Returns
        -------
        TensorVariable
            The input with each example flattened to :attr:`size` values.
        """
        x = self._only_input(inputs)
        return x.reshape((x.shape[0], self.size), ndim=2)


class Reshape(Layer):
    """Reshape each example to a new shape.

    Parameters
    ----------
    shape : tuple of int
        The new shape of one example (without the batch axis); the number of
        values must not change.
    inputs, name, activation
        As for :class:`Layer`; the activation is not applied.
    **kwargs
        Passed on to :class:`Layer`; a ``size``, if given, must equal the
        last entry of ``shape``.
    """

    _uses_activation = False

    def __init__(self, shape=None, inputs=None, name=None, activation=None, **kwargs):
        if shape is None:
            raise util.ConfigurationError(f"layer {name!r}: Reshape needs a shape")
        super().__init__(shape=shape, inputs=inputs, name=name, activation=activation, **kwargs)

    def _resolve_output_shape(self):
        old = self.input_shape
        if any(s is None for s in old) or int(np.prod(old)) != int(np.prod(self._shape)):
            raise util.ConfigurationError(
                f"layer {self.name!r}: cannot reshape input of shape {self.input_shape} "
                f"to {tuple(self._shape)}"
            )
        return tuple(self._shape)

    def transform(self, inputs):
        """Reshape each example of the input.

        Parameters
        ----------
        inputs : dict
            The expressions built so far, keyed by full output name; the
            layer reshapes the one named by :attr:`input_name`.

        Returns
        -------
        TensorVariable
            The input, of shape ``(batch,) + shape``.
        """
        x = self._only_input(inputs)
        return x.reshape((x.shape[0],) + tuple(self._shape), ndim=len(self._shape) + 1)
