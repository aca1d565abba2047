r"""The optimizer base class: training options, gradients, clipping, momentum, update graphs.

An :class:`Optimizer` minimises a scalar PyTensor expression with respect to a
list of shared variables. A subclass says only how *one* parameter moves given
its gradient (:meth:`Optimizer._get_updates_for`); everything else lives here
once:

* the keyword arguments of :meth:`Optimizer.iterate`, checked and completed
  with their defaults;
* gradients of the loss, with optional per-parameter norm rescaling or
  elementwise clipping;
* classical or Nesterov momentum wrapped around the subclass's step;
* one compiled training function and one compiled evaluation function per
  optimizer (hyperparameters are shared scalars, so new values need no
  recompilation).

The epoch loop of :meth:`Optimizer.iterate` -- validation, early stopping,
keeping and restoring the best parameters, ``max_updates``, Ctrl-C and
non-finite losses -- is :class:`~theanets.optimizers.loop.TrainingLoop`,
which :class:`Optimizer` derives from.

The algorithms and their defaults follow the ``downhill`` package that
theanets used with Theano.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable

from .. import backend as _backend
from .. import util
from .loop import TrainingLoop

__all__ = ["Optimizer", "build"]

#: Keyword arguments of :meth:`Optimizer.iterate` shared by every algorithm.
BASE_DEFAULTS = {
    "learning_rate": 1e-4,
    "momentum": 0,
    "nesterov": False,
    "max_gradient_norm": 0,
    "max_gradient_elem": 0,
    "patience": 5,
    "validate_every": 10,
    "min_improvement": 0,
    "max_updates": None,
    "batch_size": 32,
    "train_batches": None,
    "valid_batches": None,
    "rng": None,
    "progress": False,
}

#: Deprecated spellings accepted for compatibility, mapped to their new names.
ALIASES = {
    "max_gradient_clip": "max_gradient_elem",
    "gradient_clip": "max_gradient_elem",
}


def build(algo, loss, params, inputs, updates=(), monitors=(), monitor_gradients=False, mode=None):
    """Create an optimizer by the name of its algorithm.

    Parameters
    ----------
    algo : str
        A registered name such as ``'sgd'``, ``'nag'``, ``'rmsprop'``,
        ``'adam'`` (case-insensitive); see :meth:`Optimizer.registered_names`.
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        Passed to the :class:`Optimizer` constructor.

    Returns
    -------
    Optimizer
        An instance of the class registered under ``algo``.

    Raises
    ------
    ConfigurationError
        If no algorithm is registered under ``algo``; the message lists the
        valid names and suggests the closest one.
    """
    return Optimizer.build(
        algo,
        loss,
        params,
        inputs,
        updates=updates,
        monitors=monitors,
        monitor_gradients=monitor_gradients,
        mode=mode,
    )


class Optimizer(TrainingLoop, util.Registrar):
    r"""Minimise a scalar loss over shared parameters with a gradient method.

    Parameters
    ----------
    loss : scalar PyTensor expression
        The quantity to minimise.
    params : sequence of shared variables
        The parameters to adjust; each must be a PyTensor shared variable of a
        floating point dtype.
    inputs : sequence of symbolic variables
        The free variables of ``loss`` that are fed, in this order, from each
        data batch (a batch is a list with one array per input).
    updates : sequence of (shared variable, expression) pairs or dict, optional
        Extra updates applied on every training and evaluation call, such as
        the state of a random stream used by dropout.
    monitors : sequence of (str, expression) pairs or dict, optional
        Additional scalar quantities computed on every batch and reported,
        averaged over the batches of an epoch, next to ``'loss'``.
    monitor_gradients : bool, optional
        If True, also report the L2 norm of each parameter's (unclipped)
        gradient as the monitor ``'grad(<parameter name>)'`` (``downhill``
        reported the squared norm under that name). Unnamed parameters are
        called ``unnamed0``, ``unnamed1``, …. Defaults to False.
    mode : str or pytensor Mode, optional
        The PyTensor compilation mode; by default the one
        :func:`theanets.backend.choose_mode` picks when a function is compiled.

    Raises
    ------
    ConfigurationError
        If ``loss`` is not a scalar, ``params`` is empty or holds something
        other than floating point shared variables, an input is shared or
        constant, or monitors are malformed.

    Notes
    -----
    Every algorithm computes, for each parameter :math:`\theta` with gradient
    :math:`g = \partial\mathcal{L}/\partial\theta`, a step :math:`\Delta`
    (for SGD, :math:`\Delta = \alpha g`). The base class then applies it.
    Without momentum,

    .. math::
        \theta_{t+1} = \theta_t - \Delta_t .

    With momentum :math:`\mu > 0` a velocity :math:`v` (initially 0) is kept:

    .. math::
        v_{t+1} = \mu v_t - \Delta_t, \qquad \theta_{t+1} = \theta_t + v_{t+1},

    Nesterov momentum (Sutskever et al., 2013) takes the gradient at the point
    the velocity is about to carry the parameters to,
    :math:`v_{t+1} = \mu v_t - \alpha \nabla\mathcal{L}(\phi_t + \mu v_t)`,
    :math:`\phi_{t+1} = \phi_t + v_{t+1}`. It is implemented in the
    reformulation of Bengio, Boulanger-Lewandowski & Pascanu (2013), which
    stores the look-ahead point :math:`\theta_t = \phi_t + \mu v_t` as the
    parameters, so that the gradient is only ever needed at the stored
    parameters:

    .. math::
        v_{t+1} = \mu v_t - \Delta_t, \qquad
        \theta_{t+1} = \theta_t + \mu v_{t+1} - \Delta_t
        = \theta_t + \mu^2 v_t - (1 + \mu)\Delta_t .

    This is the rule of ``torch.optim.SGD(nesterov=True)`` with
    :math:`v = -\alpha\,b` for its buffer :math:`b`. (``downhill`` 0.4 moved
    the parameters the same way but then stored the displacement
    :math:`\mu^2 v_t - (1 + \mu)\Delta_t` as the velocity, which departs from
    the algorithm from the second update on.)

    References: I. Sutskever, J. Martens, G. Dahl & G. Hinton (2013), "On the
    importance of initialization and momentum in deep learning", ICML;
    Y. Bengio, N. Boulanger-Lewandowski & R. Pascanu (2013), "Advances in
    optimizing recurrent networks", ICASSP, arXiv:1212.0901.

    Before the step is computed the gradient may be limited, per parameter:
    ``max_gradient_elem`` :math:`c > 0` clips each element to :math:`[-c, c]`;
    otherwise ``max_gradient_norm`` :math:`n > 0` rescales the whole gradient,

    .. math::
        g \leftarrow g \cdot \min\left(1, \frac{n}{\lVert g \rVert_2}\right).

    Hyperparameters and training options are keyword arguments of
    :meth:`iterate`; :meth:`known_kwargs` lists those an algorithm accepts and
    :meth:`default_kwargs` their defaults.

    Examples
    --------
    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> w = pytensor.shared(np.zeros(2), name='w')
    >>> x = pt.matrix('x'); y = pt.vector('y')
    >>> loss = pt.sqr(x.dot(w) - y).mean()
    >>> opt = Optimizer.build('sgd', loss, [w], [x, y], mode='FAST_COMPILE')
    >>> data = [np.eye(2), np.array([1.0, -1.0])]
    >>> train, valid = opt.minimize(data, learning_rate=0.5, max_updates=20, batch_size=2)
    >>> np.round(w.get_value(), 3)
    array([ 1., -1.])
    """

    #: Algorithm-specific keyword arguments of :meth:`iterate` and their defaults.
    hyperparameters = {}

    #: Hyperparameters that change the structure of the graph (not just a value).
    structural = ()

    #: Pairs of keyword arguments that set the same quantity in two ways.
    #:
    #: At most one of each pair may be given to :meth:`iterate`.
    exclusive = ()

    def __init__(
        self,
        loss,
        params,
        inputs,
        updates=(),
        monitors=(),
        monitor_gradients=False,
        mode=None,
    ):
        if not isinstance(loss, Variable) or getattr(loss, "ndim", None) != 0:
            raise util.ConfigurationError(
                f"loss must be a scalar PyTensor expression, got {loss!r}"
                + (f" with ndim={loss.ndim}" if hasattr(loss, "ndim") else "")
            )
        self._loss = loss
        self._params = self._check_params(params)
        self._inputs = self._check_inputs(inputs)
        self._updates = self._check_updates(updates)
        self.mode = mode
        self._monitor_names = ["loss"]
        self._monitor_exprs = [loss]
        for name, expr in self._check_monitors(monitors):
            self._monitor_names.append(name)
            self._monitor_exprs.append(expr)
        if monitor_gradients:
            unnamed = 0
            for param, grad in zip(self._params, pytensor.grad(loss, self._params), strict=True):
                name = param.name
                if not name:
                    name = f"unnamed{unnamed}"
                    unnamed += 1
                self._monitor_names.append(f"grad({name})")
                self._monitor_exprs.append(pt.sqrt(pt.sqr(grad).sum()))
        self._scalars = {}
        self._step_fns = {}
        self._states = {}
        self._eval_fns = {}
        self._config = None

    # ------------------------------------------------------------ validation

    @staticmethod
    def _check_params(params):
        if isinstance(params, SharedVariable):
            params = [params]
        params = list(params or ())
        if not params:
            raise util.ConfigurationError("params must name at least one shared variable")
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, SharedVariable):
                raise util.ConfigurationError(
                    f"params[{i}] must be a PyTensor shared variable, got {type(p).__name__}"
                )
            if not str(p.dtype).startswith("float"):
                raise util.ConfigurationError(
                    f"parameter {p.name or i!r} must have a floating point dtype, got {p.dtype}"
                )
            if id(p) in seen:
                raise util.ConfigurationError(f"parameter {p.name or i!r} is listed twice")
            seen.add(id(p))
        return params

    @staticmethod
    def _check_inputs(inputs):
        if isinstance(inputs, Variable):
            inputs = [inputs]
        inputs = list(inputs or ())
        for i, v in enumerate(inputs):
            if not isinstance(v, Variable) or isinstance(v, (SharedVariable, Constant)):
                raise util.ConfigurationError(
                    f"inputs[{i}] must be a free symbolic variable (not shared or constant), "
                    f"got {v!r}"
                )
        return inputs

    @staticmethod
    def _check_updates(updates):
        if isinstance(updates, dict):
            updates = list(updates.items())
        updates = list(updates or ())
        for i, pair in enumerate(updates):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise util.ConfigurationError(
                    f"updates[{i}] must be a (shared variable, expression) pair, got {pair!r}"
                )
        return [tuple(pair) for pair in updates]

    @staticmethod
    def _check_monitors(monitors):
        if isinstance(monitors, dict):
            monitors = list(monitors.items())
        result = []
        names = {"loss"}
        for i, pair in enumerate(monitors or ()):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise util.ConfigurationError(
                    f"monitors[{i}] must be a (name, expression) pair, got {pair!r}"
                )
            name, expr = pair
            if not isinstance(name, str) or name in names:
                raise util.ConfigurationError(
                    f"monitor names must be unique strings other than 'loss', got {name!r}"
                )
            if not isinstance(expr, Variable) or getattr(expr, "ndim", None) != 0:
                raise util.ConfigurationError(
                    f"monitor {name!r} must be a scalar PyTensor expression, got {expr!r}"
                )
            names.add(name)
            result.append((name, expr))
        return result

    # ------------------------------------------------------- keyword arguments

    @classmethod
    def default_kwargs(cls):
        """Return the keyword arguments of :meth:`iterate` with their defaults.

        Returns
        -------
        dict
            The options shared by every algorithm plus this algorithm's
            :attr:`hyperparameters` (deprecated aliases are not included).
        """
        defaults = dict(BASE_DEFAULTS)
        for klass in reversed(cls.__mro__):
            defaults.update(klass.__dict__.get("hyperparameters", {}))
        return defaults

    @classmethod
    def known_kwargs(cls):
        """Return the names of every keyword argument :meth:`iterate` accepts.

        A training layer that receives one bag of user keywords can use this to
        route them and to reject misspellings once, up front.

        Returns
        -------
        frozenset of str
            The keys of :meth:`default_kwargs` plus the deprecated aliases
            ``max_gradient_clip`` and ``gradient_clip``.
        """
        return frozenset(cls.default_kwargs()) | frozenset(ALIASES)

    def _configure(self, kwargs):
        """Validate ``kwargs`` against the known names and fill in defaults."""
        util.check_unknown_kwargs(kwargs, self.known_kwargs(), f"{type(self).__name__} optimizer")
        config = self.default_kwargs()
        given = dict(kwargs)
        for alias, name in ALIASES.items():
            if alias in given:
                value = given.pop(alias)
                if name in given and given[name] != value:
                    raise util.ConfigurationError(
                        f"{alias!r} is an alias of {name!r}; give only one of them"
                    )
                given.setdefault(name, value)
        for first, second in self.exclusive:
            if first in given and second in given:
                raise util.ConfigurationError(
                    f"{type(self).__name__}: {first!r} and {second!r} set the same quantity in "
                    f"two ways; give only one of them (got {first}={given[first]!r}, "
                    f"{second}={given[second]!r})"
                )
        config.update(given)
        c = config
        c["learning_rate"] = util.check_number("learning_rate", c["learning_rate"], low=0)
        c["momentum"] = util.check_number("momentum", c["momentum"], low=0, high=1, high_open=True)
        if not isinstance(c["nesterov"], (bool, np.bool_)):
            raise util.ConfigurationError(f"nesterov must be True or False, got {c['nesterov']!r}")
        c["nesterov"] = bool(c["nesterov"])
        c["max_gradient_norm"] = util.check_number(
            "max_gradient_norm", c["max_gradient_norm"], low=0
        )
        c["max_gradient_elem"] = util.check_number(
            "max_gradient_elem", c["max_gradient_elem"], low=0
        )
        c["min_improvement"] = util.check_number("min_improvement", c["min_improvement"], low=0)
        c["patience"] = util.check_number("patience", c["patience"], low=0, integer=True)
        c["validate_every"] = util.check_number(
            "validate_every", c["validate_every"], low=1, integer=True
        )
        c["max_updates"] = util.check_number(
            "max_updates", c["max_updates"], low=1, integer=True, allow_none=True
        )
        c["train_batches"] = util.check_number(
            "train_batches", c["train_batches"], low=1, integer=True, allow_none=True
        )
        c["valid_batches"] = util.check_number(
            "valid_batches", c["valid_batches"], low=1, integer=True, allow_none=True
        )
        c["batch_size"] = util.check_number("batch_size", c["batch_size"], low=1, integer=True)
        self._check_hyperparameters(c)
        return c

    def _check_hyperparameters(self, config):
        """Validate (in place) the algorithm-specific entries of ``config``.

        Subclasses override this; the base class has nothing to check.
        """

    # ------------------------------------------------- shared hyperparameters

    def _scalar(self, name):
        """Return the shared ``floatX`` scalar holding hyperparameter ``name``."""
        if name not in self._scalars:
            self._scalars[name] = pytensor.shared(
                np.asarray(0, dtype=pytensor.config.floatX), name=f"{type(self).__name__}.{name}"
            )
        return self._scalars[name]

    def _hyper(self, name, dtype):
        """Return hyperparameter ``name`` as a symbolic scalar of ``dtype``."""
        var = self._scalar(name)
        return var if var.dtype == dtype else pt.cast(var, dtype)

    def _set_scalar(self, name, value):
        self._scalar(name).set_value(np.asarray(value, dtype=pytensor.config.floatX))

    def _set_scalars(self, config):
        """Copy the numeric values of ``config`` into the shared scalars.

        Subclasses extend this to set their own (possibly derived) values.
        """
        self._set_scalar("learning_rate", config["learning_rate"])
        self._set_scalar("momentum", config["momentum"])
        self._set_scalar("max_gradient_norm", config["max_gradient_norm"])
        self._set_scalar("max_gradient_elem", config["max_gradient_elem"])

    def _structure(self, config):
        """Return a hashable key of the options that change the graph's shape."""
        momentum = config["momentum"] > 0
        if config["max_gradient_elem"] > 0:
            clip = "elem"
        elif config["max_gradient_norm"] > 0:
            clip = "norm"
        else:
            clip = None
        extra = tuple(config[name] for name in self.structural)
        return (momentum, momentum and config["nesterov"], clip) + extra

    # --------------------------------------------------------- update graphs

    def _state(self, param, suffix, init=0.0):
        """Create a shared state variable shaped like ``param``.

        Parameters
        ----------
        param : shared variable
            The parameter whose shape and dtype the state copies.
        suffix : str
            Appended to the parameter's name to name the state.
        init : float or callable, optional
            Initial value, or a function of the run's configuration returning
            it; the state is reset to it at the start of every :meth:`iterate`.

        Returns
        -------
        shared variable
        """
        value = param.get_value(borrow=True)
        var = pytensor.shared(
            np.zeros_like(value),
            name=f"{param.name or 'param'}.{suffix}",
            shape=param.type.shape,
        )
        self._building.append((var, init))
        return var

    def _scalar_state(self, param, suffix, init=0.0):
        """Create a shared scalar state variable of ``param``'s dtype."""
        var = pytensor.shared(
            np.asarray(0, dtype=param.dtype), name=f"{param.name or 'param'}.{suffix}"
        )
        self._building.append((var, init))
        return var

    def _gradients(self, key):
        """Yield ``(param, grad)`` with the clipping chosen by ``key`` applied."""
        clip = key[2]
        grads = pytensor.grad(self._loss, self._params)
        for param, grad in zip(self._params, grads, strict=True):
            dtype = param.dtype
            if clip == "elem":
                limit = self._hyper("max_gradient_elem", dtype)
                grad = pt.clip(grad, -limit, limit)
            elif clip == "norm":
                limit = self._hyper("max_gradient_norm", dtype)
                norm = pt.sqrt(pt.sqr(grad).sum())
                # min(1, limit / norm), written so that a zero gradient does
                # not divide by zero
                grad = grad * (limit / pt.maximum(norm, limit))
            yield param, grad

    def _get_updates_for(self, param, grad):
        """Yield the update pairs that move one parameter.

        Parameters
        ----------
        param : shared variable
            The parameter.
        grad : expression
            Its (possibly clipped) gradient.

        Yields
        ------
        (shared variable, expression)
            New values for the algorithm's state variables, and exactly one
            pair ``(param, step)`` whose expression is the step to *subtract*
            from the parameter (the base class applies momentum to it).
        """
        raise NotImplementedError

    def _begin_updates(self, key):
        """Hook called before the per-parameter updates are built."""

    def _end_updates(self):
        """Hook returning extra update pairs after all parameters (e.g. RNG state)."""
        return []

    def _build_updates(self, key):
        """Return the list of update pairs for the structure ``key``."""
        self._building = []
        self._key = key
        momentum, nesterov = key[0], key[1]
        updates = []
        self._begin_updates(key)
        for param, grad in self._gradients(key):
            step = None
            for var, expr in self._get_updates_for(param, grad):
                if var is param:
                    step = expr
                else:
                    updates.append((var, pt.cast(expr, var.dtype)))
            if step is None:
                raise RuntimeError(f"{type(self).__name__} produced no step for {param}")
            step = pt.cast(step, param.dtype)
            if not momentum:
                updates.append((param, param - step))
                continue
            mu = self._hyper("momentum", param.dtype)
            vel = self._state(param, "vel")
            vel_new = pt.cast(mu * vel - step, param.dtype)
            updates.append((vel, vel_new))
            if nesterov:
                # the stored parameters are Sutskever's look-ahead point
                # phi + mu * v, which moves by mu * v_new - step
                updates.append((param, param + mu * vel_new - step))
            else:
                updates.append((param, param + vel_new))
        updates.extend(self._end_updates())
        self._states[key] = self._building
        del self._building
        return updates

    def get_updates(self, **kwargs):
        """Return the update pairs of this algorithm for the given options.

        This builds (but does not compile) fresh update expressions, with new
        state variables, so that the optimizer can be embedded in a
        user-written ``pytensor.function``; the extra ``updates`` given to the
        constructor are not included.

        Parameters
        ----------
        **kwargs
            Any of :meth:`known_kwargs`; the hyperparameter values are stored in
            shared scalars owned by this optimizer.

        Returns
        -------
        list of (shared variable, expression)
        """
        config = self._configure(kwargs)
        self._set_scalars(config)
        key = self._structure(config)
        updates = self._build_updates(key)
        self._reset_states(key, config)
        return updates

    def _reset_states(self, key, config):
        for var, init in self._states.get(key, ()):
            value = init(config) if callable(init) else init
            current = var.get_value(borrow=True)
            var.set_value(np.full_like(current, value))

    # ------------------------------------------------------------- compiling

    def _compile_together(self, mode, functions):
        """Compile functions of the inputs in ``mode``, their C modules in one batch.

        ``functions`` holds ``(outputs, updates, name, what)`` for each; see
        :func:`theanets.backend.compile_functions`.
        """
        for *_, what in functions:
            util.log("compiling {} function", what)
        requests = [
            dict(
                inputs=self._inputs,
                outputs=outputs,
                updates=updates,
                name=name,
                on_unused_input="ignore",
            )
            for outputs, updates, name, _ in functions
        ]
        return _backend.compile_functions(requests, mode)

    def _step_function(self, key):
        """The training function for the graph structure ``key``, compiled when first needed.

        The first time, the evaluation function (which every run calls
        before its first update) is compiled with it when it is missing,
        so that the C modules of both compile in one parallel batch.
        """
        mode = _backend.choose_mode(self.mode)
        mode_key = _backend.mode_key(mode)
        full_key = (key, mode_key)
        fn = self._step_fns.get(full_key)
        if fn is None:
            label = type(self).__name__
            updates = list(self._updates) + self._build_updates(key)
            functions = [(self._monitor_exprs, updates, label, f"{label} training")]
            if mode_key not in self._eval_fns:
                functions.append(self._evaluation_request())
            fn, *evaluation = self._compile_together(mode, functions)
            if evaluation:
                self._eval_fns[mode_key] = evaluation[0]
            self._step_fns[full_key] = fn
        return fn

    def _evaluation_request(self):
        return (self._monitor_exprs, list(self._updates), "evaluation", "evaluation")

    def _evaluation_function(self):
        """The monitors without parameter updates, compiled when first needed."""
        mode = _backend.choose_mode(self.mode)
        mode_key = _backend.mode_key(mode)
        fn = self._eval_fns.get(mode_key)
        if fn is None:
            fn = self._compile_together(mode, [self._evaluation_request()])[0]
            self._eval_fns[mode_key] = fn
        return fn

    def _epoch_context(self):
        """Keep parameters on the JAX backend's device for an epoch (see the GPU guide).

        Returns
        -------
        context manager
            :func:`theanets.backend.parameters_on_device` for this
            optimizer's mode.
        """
        return _backend.parameters_on_device(self.mode)

    def _prepare_run(self, config):
        """Hook for subclasses to act on the configuration of a new run."""

    def _start_run(self, config):
        """Prepare a run of :meth:`iterate` with the checked ``config``.

        Sets the hyperparameters, builds (or reuses) the training function
        for the graph structure the options ask for and resets the
        algorithm's state.

        Parameters
        ----------
        config : dict
            The options, as :meth:`_configure` returns them.

        Returns
        -------
        callable
            The compiled training function: one update per call, with the
            batch arrays as arguments, returning the monitors (loss first).
        """
        self._config = config
        self._set_scalars(config)
        self._prepare_run(config)
        key = self._structure(config)
        step = self._step_function(key)
        self._reset_states(key, config)
        return step
