"""Recurrent layers: :class:`RNN`, :class:`RRNN`, :class:`MRNN`, :class:`LSTM`,
:class:`GRU`, :class:`Clockwork`, :class:`MUT1`, :class:`SCRN` and
:class:`Bidirectional`.

Recurrent layers read data laid out as ``(batch, time, features)`` and
produce outputs of the same layout. Internally the time axis is moved to the
front and a :func:`pytensor.scan` loop runs over it; every projection of the
input that does not depend on the recurrent state (``x W + b`` for all time
steps) is computed before the loop with a single matrix product.

For the common cells (:class:`RNN`, :class:`LSTM`, :class:`GRU`) a fused
implementation (see :mod:`theanets.layers.fused`) runs the whole loop, and its
gradient, as one compiled operation; the scan version stays available as the
reference (``impl='scan'``).

Options shared by all recurrent layers:

``h_0``
    Name of a graph output (``'hid1'``, ``'enc:out'``, an input layer's name,
    ...) that gives the initial hidden state, of shape ``(batch, size)``; a
    ``(batch, time, size)`` output gives its last time step. Zeros by
    default. :class:`LSTM` also has ``c_0`` for the initial cell state and
    :class:`SCRN` ``s_0`` for the initial context state.
``direction``
    ``'forward'`` (default) or ``'back'``/``'backward'``: run the recurrence
    from the last time step to the first. Outputs stay aligned with the
    input's time axis either way: ``out[:, t]`` is the state after the layer
    has read step ``t``.
``bptt_limit``
    Truncate back-propagation through time to this many steps.
``radius``
    Rescale the initial recurrent weights (each square block) so that their
    largest singular value equals this value.
``impl``
    ``'auto'`` (default: the fastest implementation available), ``'scan'``
    or ``'fused'``.
"""

import numbers

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.replace import clone_replace

from .. import util
from .base import Layer, _full_output_name, dot_last_axis

__all__ = [
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
]

_FORWARD = ("forward", "forwards", "fw", "fwd")
_BACKWARD = ("back", "backward", "backwards", "bw", "bwd")
_IMPLS = ("auto", "scan", "fused")


def _float(expr):
    return pt.cast(expr, pytensor.config.floatX)


def _time_major(x):
    """Swap the first two axes: (batch, time, ...) <-> (time, batch, ...)."""
    return x.dimshuffle(1, 0, *range(2, x.ndim))


class Recurrent(Layer):
    """Base class of recurrent layers.

    A recurrent layer keeps a state from one time step to the next. Its input
    and outputs have the layout ``(batch, time, features)``.

    Parameters
    ----------
    size : int
        Number of units.
    inputs : str, Layer or sequence, optional
        The (one) graph output this layer reads.
    name : str, optional
        The layer's name.
    activation : str, optional
        The activation function (where a cell uses one). Default ``'relu'``.
    h_0 : str, optional
        Name of a graph output holding the initial hidden state, of shape
        ``(batch, size)`` (or ``(batch, time, size)``, whose last time step
        is used). Zeros by default.
    direction : {None, 'forward', 'back', 'backward'}, optional
        Direction of the recurrence in time. Outputs are aligned with the
        input's time axis in both directions.
    bptt_limit : int, optional
        If given, back-propagate gradients through at most this many time
        steps (PyTensor's ``truncate_gradient``).
    impl : {'auto', 'scan', 'fused'}, optional
        Implementation of the time loop. ``'scan'`` is the reference
        :func:`pytensor.scan` version; ``'fused'`` (available for
        :class:`RNN`, :class:`LSTM` and :class:`GRU`) runs the loop and its
        gradient as compiled operations; ``'auto'`` picks the fused one where
        it applies.
    **kwargs
        Initial value settings, as for :class:`theanets.layers.Layer`. Here
        ``radius`` is the spectral radius (largest singular value) of each
        square block of the initial recurrent weights (no rescaling by
        default). Subclasses with more initial states take them here too
        (``c_0``, ``s_0``).

    Notes
    -----
    Weight matrices of shape ``(size, k * size)`` (and ``(nin, k * size)``
    when ``nin == size``) are drawn as ``k`` square blocks, each with the
    default standard deviation :math:`1 / \\sqrt{n_{in} + n_{out}}` of the
    whole matrix and each rescaled to ``radius`` separately. Other shapes are
    drawn in one piece, and ``radius`` and ``diagonal`` do not apply to them.

    ``bptt_limit`` follows :func:`pytensor.scan`'s ``truncate_gradient``: the
    backward pass visits only the last ``bptt_limit`` steps the layer read,
    so earlier steps get no gradient at all. With ``impl='scan'``, a linear
    activation and ``bptt_limit``, the gradient that PyTensor 3.0's optimised
    modes compile fails with a shape error when run (a known scan rewrite
    problem, Theano issue 4652); the fused loops and the other activations
    are not affected.
    """

    #: Names of the initial-state options this layer accepts.
    _STATE_OPTIONS = ("h_0",)
    #: Whether a fused implementation exists for this cell.
    _HAS_FUSED = False
    #: Attributes written into the spec as they are (options of one cell kind).
    _SPEC_ATTRS = ()

    def __init__(
        self,
        size=None,
        inputs=None,
        name=None,
        activation=None,
        h_0=None,
        direction=None,
        bptt_limit=None,
        impl="auto",
        **kwargs,
    ):
        states = {}
        for key in self._STATE_OPTIONS:
            value = h_0 if key == "h_0" else kwargs.pop(key, None)
            if value is not None:
                states[key] = _full_output_name(value)
        if direction is not None:
            if not isinstance(direction, str) or direction.lower() not in _FORWARD + _BACKWARD:
                raise util.ConfigurationError(
                    f"layer {name!r}: direction must be None, 'forward' or 'back', got "
                    f"{direction!r}"
                )
        if bptt_limit is not None:
            if not (util.is_int(bptt_limit) and bptt_limit == -1):
                util.check_number(
                    "bptt_limit", bptt_limit, low=1, integer=True, where=f"layer {name!r}"
                )
            bptt_limit = None if bptt_limit == -1 else int(bptt_limit)
        if impl not in _IMPLS:
            raise util.ConfigurationError(
                f"layer {name!r}: impl must be one of {', '.join(map(repr, _IMPLS))}, got {impl!r}"
            )
        if impl == "fused" and not self._HAS_FUSED:
            raise util.ConfigurationError(
                f"layer {name!r}: no fused implementation exists for {type(self).__name__} "
                "layers; use impl='scan' or 'auto'"
            )
        super().__init__(size=size, inputs=inputs, name=name, activation=activation, **kwargs)
        self._states = states
        self.direction = direction
        self.bptt_limit = bptt_limit
        self.impl = impl

    # ------------------------------------------------------------------
    # configuration

    @property
    def h_0(self):
        """Full name of the graph output giving the initial state, or None."""
        return self._states.get("h_0")

    @property
    def backwards(self):
        """True if the recurrence runs from the last time step to the first."""
        return self.direction is not None and self.direction.lower() in _BACKWARD

    def _state_size(self, key):
        """Size of the state that the initial-state option ``key`` feeds."""
        return self.size

    def _resolve_output_shape(self):
        shape = _sequence_input_shape(self, "; use a model from theanets.recurrent")
        if self.size is None:
            raise util.ConfigurationError(f"layer {self.name!r} needs a size")
        return (shape[0], self.size)

    def bind(self, network, initialize=True):
        """Bind the layer, then check the outputs named for initial states.

        Parameters
        ----------
        network : :class:`theanets.graph.Network`
            The network whose outputs the layer reads.
        initialize : bool, optional
            Whether to create parameters (default True).

        Raises
        ------
        ConfigurationError
            If an initial state names an unknown output or one of the wrong
            size, or if ``impl='fused'`` does not apply.
        """
        super().bind(network, initialize=initialize)
        known = network.output_shapes
        self._state_shapes = {}
        for key, ref in self._states.items():
            if ref not in known:
                raise util.ConfigurationError(
                    f"layer {self.name!r}: cannot find {key}={ref!r}."
                    f"{util.closest_match(ref, known)} Known outputs: {', '.join(known)}"
                )
            shape = known[ref]
            want = self._state_size(key)
            if len(shape) not in (1, 2) or shape[-1] != want:
                raise util.ConfigurationError(
                    f"layer {self.name!r}: {key}={ref!r} must have examples of shape ({want},) "
                    f"or (time, {want}), got {shape}"
                )
            self._state_shapes[key] = shape
        if initialize:
            self._use_fused()  # check that a requested implementation applies

    def _spec_extra(self):
        spec = {key: self._states.get(key) for key in self._STATE_OPTIONS}
        if self.direction is not None:
            spec["direction"] = self.direction
        if self.bptt_limit is not None:
            spec["bptt_limit"] = self.bptt_limit
        if self.impl != "auto":
            spec["impl"] = self.impl
        spec.update((key, getattr(self, key)) for key in self._SPEC_ATTRS)
        return spec

    # ------------------------------------------------------------------
    # parameters

    def add_weights(self, name, nin, nout, mean=0, std=0, sparsity=0, diagonal=0, radius=0):
        """Create a weight matrix ``<layer>.<name>`` of shape (nin, nout).

        If ``nin`` equals the layer size and ``nout`` is a multiple of it, the
        matrix is drawn as ``nout // nin`` square blocks (see the class
        notes), each rescaled to ``radius`` and given ``diagonal``
        separately; otherwise it is drawn in one piece without them.

        Parameters
        ----------
        name : str
            Short parameter name.
        nin, nout : int
            Shape of the matrix.
        mean, std, sparsity, diagonal, radius : float, optional
            Defaults, overridden by the layer's keyword arguments
            (``std_<name>`` before ``std`` and so on). A zero ``std`` means
            :math:`1 / \\sqrt{n_{in} + n_{out}}`.

        Returns
        -------
        shared variable
            The new parameter (also appended to :attr:`params`).
        """
        mean = self._init_setting("mean", name, mean)
        std = self._init_setting("std", name, std) or 1 / np.sqrt(nin + nout)
        sparsity = self._init_setting("sparsity", name, sparsity)
        diagonal = self._init_setting("diagonal", name, diagonal)
        radius = self._init_setting("radius", name, radius)
        if nin == self.size and nout % nin == 0:
            blocks = [
                util.random_matrix(
                    nin,
                    nin,
                    mean=mean,
                    std=std,
                    sparsity=sparsity,
                    radius=radius,
                    diagonal=diagonal,
                    rng=self.rng,
                )
                for _ in range(nout // nin)
            ]
            value = np.concatenate(blocks, axis=1)
        else:
            value = util.random_matrix(
                nin, nout, mean=mean, std=std, sparsity=sparsity, rng=self.rng
            )
        return self._add_param(name, value)

    # ------------------------------------------------------------------
    # graph helpers

    def _use_fused(self):
        """Tell whether this layer's graph uses the fused implementation."""
        if not self._HAS_FUSED or self.impl == "scan":
            return False
        from . import fused

        if fused.supports(self):
            return True
        if self.impl == "fused":
            raise util.ConfigurationError(
                f"layer {self.name!r}: the fused {type(self).__name__} loop supports the "
                f"activations {', '.join(fused._ACTIVATIONS)}, not {self.activation!r}; use "
                "impl='scan' or 'auto'"
            )
        return False

    def _initial(self, inputs, key, batch, size):
        """Initial state for the option ``key``: the named output or zeros."""
        ref = self._states.get(key)
        if ref is None:
            return pt.zeros((batch, size), dtype=pytensor.config.floatX)
        value = inputs[ref]
        if value.ndim == 3:
            value = value[:, -1]
        return pt.specify_shape(_float(value), (None, size))

    def _act_params(self):
        return list(getattr(self.activate, "params", []) or [])

    def _inner_activate(self, pre, act_args):
        """Apply the activation inside a loop body whose parameters are ``act_args``."""
        out = self.activate(pre)
        params = self._act_params()
        if params:
            out = clone_replace(out, dict(zip(params, act_args)))
        return out

    def _scan(self, step, sequences, outputs_info, non_sequences=(), name="scan"):
        """Run ``step`` over time.

        Parameters
        ----------
        step : callable
            Loop body: ``step(*sequence_slices, *previous_states, *non_sequences)``.
        sequences : list of tensors
            Time-major sequences ``(time, batch, ...)``.
        outputs_info : list
            Initial states (``(batch, n)`` tensors) or None for outputs that
            are not fed back.
        non_sequences : list
            Everything else the body uses (parameters, constants).

        Returns
        -------
        list of tensors
            Time-major outputs ``(time, batch, ...)``, in input time order
            also when the layer runs backwards.
        """
        outputs = pytensor.scan(
            step,
            sequences=list(sequences),
            outputs_info=list(outputs_info),
            non_sequences=list(non_sequences) + self._act_params(),
            go_backwards=self.backwards,
            truncate_gradient=-1 if self.bptt_limit is None else self.bptt_limit,
            strict=True,
            return_list=True,
            return_updates=False,
            name=f"{self.name}_{name}",
        )
        if self.backwards:
            outputs = [o[::-1] for o in outputs]
        return outputs

    @staticmethod
    def _batch_major(*exprs):
        return [_time_major(e) for e in exprs]

    def _project(self, x_tm, weight, bias=None):
        """Project every time step of a time-major input with one matrix product."""
        out = dot_last_axis(x_tm, weight)
        return out if bias is None else out + bias

    def _output_dims(self):
        """Short output name -> size of its last axis (all sequences by default)."""
        return {"out": self.size, "pre": self.size}

    def output_shapes(self):
        """Shapes of the outputs other layers may read, keyed by full name.

        Returns
        -------
        dict
            Sequence outputs have shape ``(None, n)`` (time, units); fixed rate
            vectors have shape ``(n,)``.
        """
        shapes = {}
        lead = self._output_shape[:-1] if self._output_shape is not None else (None,)
        for short, dim in self._output_dims().items():
            shape = dim if isinstance(dim, tuple) else tuple(lead) + (dim,)
            shapes[self.full_name(short)] = shape
        return shapes


class RNN(Recurrent):
    """A simple (Elman) recurrent layer.

    .. math::
        z_t = x_t W_{xh} + h_{t-1} W_{hh} + b, \\qquad h_t = f(z_t)

    Parameters: ``xh`` (input size × size), ``hh`` (size × size), ``b``
    (size). Outputs: ``pre`` (:math:`z_t`) and ``out`` (:math:`h_t`).

    Parameters
    ----------
    size, inputs, name, activation, h_0, direction, bptt_limit, impl
        As for :class:`Recurrent`; the activation is :math:`f`.
    **kwargs
        Initial value settings, as for :class:`Recurrent`.

    References
    ----------
    .. [Elm90] J. L. Elman (1990) "Finding Structure in Time." Cognitive
       Science 14(2):179-211.
    """

    _HAS_FUSED = True

    def setup(self):
        """Create ``xh``, ``hh`` and ``b``."""
        self.add_weights("xh", self.input_size, self.size)
        self.add_weights("hh", self.size, self.size)
        self.add_bias("b", self.size)

    def transform(self, inputs):
        """Compute ``pre`` and ``out`` for every time step.

        The fused loop runs where it applies, else a :func:`pytensor.scan`.

        Parameters
        ----------
        inputs : dict
            The input sequence, and the initial state if ``h_0`` names one.

        Returns
        -------
        dict
            ``pre`` (:math:`z_t`) and ``out`` (:math:`h_t`), each of shape
            ``(batch, time, size)``.
        """
        x_tm = _time_major(self._only_input(inputs))
        h0 = self._initial(inputs, "h_0", x_tm.shape[1], self.size)
        xw = self._project(x_tm, self.find("xh"), self.find("b"))
        if self._use_fused():
            from . import fused

            pre, out = fused.rnn(self, xw, h0)
        else:

            def step(xw_t, h_prev, hh, *act):
                pre = xw_t + pt.dot(h_prev, hh)
                return [pre, self._inner_activate(pre, act)]

            pre, out = self._scan(step, [xw], [None, h0], [self.find("hh")])
        pre, out = self._batch_major(pre, out)
        return dict(pre=pre, out=out)


class BCRNN(RNN):
    """A blocked cascading recurrent layer (upstream master's ``bcrnn``).

    The units form ``num_modules`` equal blocks. Block :math:`j` receives
    recurrent input only from blocks :math:`i \\ge j` (a block-triangular mask
    :math:`M` on :math:`W_{hh}`), and each block's pre-activation moves at its
    own fixed rate :math:`\\rho_j`, from nearly 0 for the first block to
    nearly 1 for the last:

    .. math::
        \\begin{aligned}
        \\tilde z_t &= x_t W_{xh} + b + h_{t-1} (W_{hh} \\odot M) \\\\
        z_t &= \\rho \\odot z_{t-1} + (1 - \\rho) \\odot \\tilde z_t,
        \\qquad h_t = f(z_t)
        \\end{aligned}

    with :math:`\\rho_j = 1 - 10^{u_j}` for :math:`u` evenly spaced from
    :math:`-10^{-4}` to :math:`-6`. Both :math:`z_0` and :math:`h_0` start
    from ``h_0`` (zeros by default).

    Parameters
    ----------
    num_modules : int
        Number of blocks; ``size`` must be a multiple of it.
    **kwargs
        The arguments of :class:`RNN`; ``impl='fused'`` is an error, as
        there is no fused loop for this layer.

    Notes
    -----
    Parameters: ``xh``, ``hh``, ``b`` (as :class:`RNN`). Outputs: ``pre``
    (:math:`z_t`) and ``out`` (:math:`h_t`).
    """

    _HAS_FUSED = False
    _SPEC_ATTRS = ("num_modules",)

    def __init__(self, num_modules=None, **kwargs):
        name = kwargs.get("name")
        self.num_modules = util.check_number(
            "num_modules", num_modules, low=1, integer=True, where=f"layer {name!r} (BCRNN)"
        )
        super().__init__(**kwargs)
        if self.size is not None and self.size % self.num_modules:
            raise util.ConfigurationError(
                f"layer {self.name!r}: size {self.size} must be a multiple of num_modules "
                f"({self.num_modules})"
            )

    def _mask_and_rates(self):
        n = self.size // self.num_modules
        mask = np.zeros((self.size, self.size), dtype=pytensor.config.floatX)
        rates = np.zeros(self.size, dtype=pytensor.config.floatX)
        for j, rate in enumerate(1 - np.logspace(-1e-4, -6, self.num_modules)):
            mask[j * n :, j * n : (j + 1) * n] = 1
            rates[j * n : (j + 1) * n] = rate
        return mask, rates

    def transform(self, inputs):
        """Compute ``pre`` and ``out`` for every time step.

        A :func:`pytensor.scan` loop; the mask and the rates are constants of
        the graph.

        Parameters
        ----------
        inputs : dict
            The input sequence and the ``h_0`` output, which starts both
            :math:`z` and :math:`h`, when it is named.

        Returns
        -------
        dict
            ``pre`` and ``out``, as for :class:`RNN`; the pre-activations move
            at the rate of their block.
        """
        x_tm = _time_major(self._only_input(inputs))
        h0 = self._initial(inputs, "h_0", x_tm.shape[1], self.size)
        xw = self._project(x_tm, self.find("xh"), self.find("b"))
        mask, rates = (pt.constant(v) for v in self._mask_and_rates())

        def step(xw_t, pre_prev, h_prev, hh, *act):
            pre = rates * pre_prev + (1 - rates) * (xw_t + pt.dot(h_prev, hh * mask))
            return [pre, self._inner_activate(pre, act)]

        pre, out = self._scan(step, [xw], [h0, h0], [self.find("hh")])
        pre, out = self._batch_major(pre, out)
        return dict(pre=pre, out=out)


class RRNN(Recurrent):
    """A recurrent layer whose units mix old and new states at a rate.

    .. math::
        \\begin{aligned}
        z_t &= x_t W_{xh} + h_{t-1} W_{hh} + b \\\\
        \\hat h_t &= f(z_t) \\\\
        h_t &= (1 - r_t) \\odot h_{t-1} + r_t \\odot \\hat h_t
        \\end{aligned}

    The rates :math:`r` depend on ``rate``:

    * ``'matrix'`` (default): :math:`r_t = \\sigma(x_t W_{xr} + b_r)`, with
      parameters ``r`` (:math:`b_r`) and ``xr``;
    * ``'vector'``: :math:`r = \\sigma(b_r)`, one learned rate per unit
      (parameter ``r``);
    * ``'uniform'``: fixed rates drawn uniformly from (0, 1);
    * ``'log'``: fixed rates :math:`e^u`, :math:`u` uniform in (-6, 0).

    Parameters: ``xh``, ``hh``, ``b``, then ``r`` and ``xr`` as above.
    Outputs: ``pre`` (:math:`z_t`), ``hid`` (:math:`\\hat h_t`), ``rate``
    (:math:`r`) and ``out`` (:math:`h_t`).

    Fixed rates are drawn from the layer's random state after its
    parameters and are not trained.

    Parameters
    ----------
    rate : {'matrix', 'vector', 'uniform', 'log'}, optional
        How the rates are computed, as listed above.
    **kwargs
        The arguments of :class:`Recurrent`.

    References
    ----------
    .. [Ben12] Y. Bengio, N. Boulanger-Lewandowski & R. Pascanu (2012)
       "Advances in Optimizing Recurrent Networks." arXiv:1212.0901
    """

    RATES = ("matrix", "vector", "uniform", "log")
    _SPEC_ATTRS = ("rate",)

    def __init__(self, rate="matrix", **kwargs):
        self.rate = _check_rate(rate, self.RATES, kwargs.get("name"))
        super().__init__(**kwargs)
        self._fixed_rates = None

    def _rate_size(self):
        return self.size

    def setup(self):
        """Create ``xh``, ``hh``, ``b`` and the rate parameters."""
        self.add_weights("xh", self.input_size, self.size)
        self.add_weights("hh", self.size, self.size)
        self.add_bias("b", self.size)
        if self.rate in ("vector", "matrix"):
            self.add_bias("r", self.size)
        if self.rate == "matrix":
            self.add_weights("xr", self.input_size, self.size)
        self._fixed_rates = _fixed_rates(self, self._rate_size())

    def _output_dims(self):
        rate = self.size if self.rate == "matrix" else (self.size,)
        return {"out": self.size, "pre": self.size, "hid": self.size, "rate": rate}

    def transform(self, inputs):
        """Compute ``pre``, ``hid``, ``rate`` and ``out``.

        With ``rate='matrix'`` the rates of all steps are computed before the
        loop.

        Parameters
        ----------
        inputs : dict
            Graph outputs by full name: the input, which also drives the rates
            when ``rate='matrix'``, and any ``h_0``.

        Returns
        -------
        dict
            ``pre``, ``hid`` and ``out`` of shape ``(batch, time, size)``;
            ``rate`` has a time axis only for ``rate='matrix'``.
        """
        x_tm = _time_major(self._only_input(inputs))
        h0 = self._initial(inputs, "h_0", x_tm.shape[1], self.size)
        xw = self._project(x_tm, self.find("xh"), self.find("b"))
        hh = self.find("hh")
        if self.rate == "matrix":
            rate_tm = pt.sigmoid(self._project(x_tm, self.find("xr"), self.find("r")))

            def step(xw_t, r_t, h_prev, hh, *act):
                pre = xw_t + pt.dot(h_prev, hh)
                hid = self._inner_activate(pre, act)
                return [pre, hid, (1 - r_t) * h_prev + r_t * hid]

            pre, hid, out = self._scan(step, [xw, rate_tm], [None, None, h0], [hh])
            rate = _time_major(rate_tm)
        else:
            rate = pt.sigmoid(self.find("r")) if self.rate == "vector" else self._fixed_rates

            def step(xw_t, h_prev, hh, r, *act):
                pre = xw_t + pt.dot(h_prev, hh)
                hid = self._inner_activate(pre, act)
                return [pre, hid, (1 - r) * h_prev + r * hid]

            pre, hid, out = self._scan(step, [xw], [None, None, h0], [hh, rate])
        pre, hid, out = self._batch_major(pre, hid, out)
        return dict(pre=pre, hid=hid, rate=rate, out=out)


class MRNN(Recurrent):
    """A recurrent layer with multiplicative, input-dependent dynamics.

    The recurrent weights are factored so that the input selects a mixture
    of them at each step:

    .. math::
        \\begin{aligned}
        f_t &= x_t W_{xf} \\\\
        z_t &= x_t W_{xh} + \\left(f_t \\odot h_{t-1} W_{hf}\\right) W_{fh} + b \\\\
        h_t &= g(z_t)
        \\end{aligned}

    Parameters
    ----------
    factors : int, optional
        Number of factors; defaults to :math:`\\lceil\\sqrt{\\text{size}}\\rceil`.
    **kwargs
        The arguments of :class:`Recurrent`.

    Notes
    -----
    Parameters: ``xh`` (input × size), ``xf`` (input × factors), ``hf``
    (size × factors), ``fh`` (factors × size), ``b`` (size). Outputs:
    ``pre`` (:math:`z_t`), ``factors`` (:math:`f_t`) and ``out``
    (:math:`h_t`).

    References
    ----------
    .. [Sut11] I. Sutskever, J. Martens & G. E. Hinton (2011) "Generating
       Text with Recurrent Neural Networks." ICML.
    """

    _SPEC_ATTRS = ("factors",)

    def __init__(self, factors=None, **kwargs):
        _check_size(kwargs.get("name"), "factors", factors)
        self._factors_arg = factors
        super().__init__(**kwargs)

    @property
    def factors(self):
        """Number of factors."""
        if self._factors_arg is not None:
            return int(self._factors_arg)
        if self.size is None:
            return None
        return int(np.ceil(np.sqrt(self.size)))

    def setup(self):
        """Create ``xh``, ``xf``, ``hf``, ``fh`` and ``b``."""
        self.add_weights("xh", self.input_size, self.size)
        self.add_weights("xf", self.input_size, self.factors)
        self.add_weights("hf", self.size, self.factors)
        self.add_weights("fh", self.factors, self.size)
        self.add_bias("b", self.size)

    def _output_dims(self):
        return {"out": self.size, "pre": self.size, "factors": self.factors}

    def transform(self, inputs):
        """Compute ``pre``, ``factors`` and ``out``.

        The factors of all time steps are projected before the loop.

        Parameters
        ----------
        inputs : dict
            Graph outputs by full name; the input both feeds the units and
            selects the factors. Any ``h_0`` is read too.

        Returns
        -------
        dict
            Besides ``pre`` and ``out``, the input-dependent ``factors``
            :math:`f_t`, with ``factors`` values per step.
        """
        x_tm = _time_major(self._only_input(inputs))
        h0 = self._initial(inputs, "h_0", x_tm.shape[1], self.size)
        xw = self._project(x_tm, self.find("xh"), self.find("b"))
        fac = self._project(x_tm, self.find("xf"))

        def step(xw_t, f_t, h_prev, hf, fh, *act):
            pre = xw_t + pt.dot(f_t * pt.dot(h_prev, hf), fh)
            return [pre, self._inner_activate(pre, act)]

        pre, out = self._scan(step, [xw, fac], [None, h0], [self.find("hf"), self.find("fh")])
        pre, out, fac = self._batch_major(pre, out, fac)
        return dict(pre=pre, factors=fac, out=out)


class LSTM(Recurrent):
    """A long short-term memory layer with peephole connections.

    .. math::
        \\begin{aligned}
        [a^i_t, a^f_t, a^c_t, a^o_t] &= x_t W_{xh} + h_{t-1} W_{hh} + b \\\\
        i_t &= \\sigma(a^i_t + c_{t-1} \\odot w_{ci}) \\\\
        f_t &= \\sigma(a^f_t + c_{t-1} \\odot w_{cf}) \\\\
        c_t &= f_t \\odot c_{t-1} + i_t \\odot \\tanh(a^c_t) \\\\
        o_t &= \\sigma(a^o_t + c_t \\odot w_{co}) \\\\
        h_t &= o_t \\odot \\tanh(c_t)
        \\end{aligned}

    The four blocks of the projections are the input gate, forget gate,
    cell candidate and output gate, in that order. The layer's activation is
    not used.

    Parameters
    ----------
    size, inputs, name, activation, h_0, direction, bptt_limit, impl
        As for :class:`Recurrent`; the activation is not used.
    **kwargs
        ``c_0``, the name of a graph output holding the initial cell state
        (zeros by default; given like ``h_0``), and initial value settings
        as for :class:`Recurrent`.

    Notes
    -----
    Parameters, in drawing order: ``xh`` (input × 4·size), ``hh``
    (size × 4·size), ``b`` (4·size, mean 2 so that gates start open),
    ``ci``, ``cf``, ``co`` (size each, the diagonal peephole weights).
    Outputs: ``out`` (:math:`h_t`) and ``cell`` (:math:`c_t`).

    References
    ----------
    .. [Hoc97] S. Hochreiter & J. Schmidhuber (1997) "Long Short-Term
       Memory." Neural Computation 9(8):1735-1780.
    .. [Gra13] A. Graves (2013) "Generating Sequences with Recurrent Neural
       Networks." arXiv:1308.0850
    """

    _STATE_OPTIONS = ("h_0", "c_0")
    _HAS_FUSED = True

    def setup(self):
        """Create ``xh``, ``hh``, ``b``, ``ci``, ``cf`` and ``co``."""
        self.add_weights("xh", self.input_size, 4 * self.size)
        self.add_weights("hh", self.size, 4 * self.size)
        self.add_bias("b", 4 * self.size, mean=2)
        self.add_bias("ci", self.size)
        self.add_bias("cf", self.size)
        self.add_bias("co", self.size)

    def _output_dims(self):
        return {"out": self.size, "cell": self.size}

    def transform(self, inputs):
        """Compute ``out`` and ``cell``.

        The fused loop adds the bias itself; the scan version adds it to the
        projection of the input.

        Parameters
        ----------
        inputs : dict
            The input sequence and, where ``h_0`` and ``c_0`` name them, the
            initial hidden and cell states.

        Returns
        -------
        dict
            The hidden states ``out`` and the cell states ``cell``, both
            sequences of ``size`` values.
        """
        x_tm = _time_major(self._only_input(inputs))
        batch = x_tm.shape[1]
        h0 = self._initial(inputs, "h_0", batch, self.size)
        c0 = self._initial(inputs, "c_0", batch, self.size)
        peep = [self.find("ci"), self.find("cf"), self.find("co")]
        if self._use_fused():
            from . import fused

            # the fused loop adds the bias itself (and sums its gradient)
            out, cell = fused.lstm(self, self._project(x_tm, self.find("xh")), h0, c0)
        else:
            xw = self._project(x_tm, self.find("xh"), self.find("b"))
            n = self.size

            def step(xw_t, h_prev, c_prev, hh, ci, cf, co, *act):
                a = xw_t + pt.dot(h_prev, hh)
                i = pt.sigmoid(a[:, :n] + c_prev * ci)
                f = pt.sigmoid(a[:, n : 2 * n] + c_prev * cf)
                c = f * c_prev + i * pt.tanh(a[:, 2 * n : 3 * n])
                o = pt.sigmoid(a[:, 3 * n :] + c * co)
                return [o * pt.tanh(c), c]

            out, cell = self._scan(step, [xw], [h0, c0], [self.find("hh")] + peep)
        out, cell = self._batch_major(out, cell)
        return dict(out=out, cell=cell)

    def _act_params(self):
        return []  # the activation is not used


class GRU(Recurrent):
    """A gated recurrent unit layer.

    .. math::
        \\begin{aligned}
        [u^h_t, u^r_t, u^z_t] &= x_t W + b \\\\
        r_t &= \\sigma(u^r_t + h_{t-1} W_{hr}) \\\\
        z_t &= \\sigma(u^z_t + h_{t-1} W_{hz}) \\\\
        p_t &= u^h_t + (r_t \\odot h_{t-1}) W_{hh} \\\\
        \\hat h_t &= f(p_t) \\\\
        h_t &= (1 - z_t) \\odot h_{t-1} + z_t \\odot \\hat h_t
        \\end{aligned}

    Parameters
    ----------
    size, inputs, name, activation, h_0, direction, bptt_limit, impl
        As for :class:`Recurrent`; the activation is :math:`f`, applied to
        :math:`p_t`.
    **kwargs
        Initial value settings, as for :class:`Recurrent`.

    Notes
    -----
    Parameters, in drawing order: ``hh``, ``hr``, ``hz`` (size × size), ``w``
    (input × 3·size, column blocks for the candidate, reset and update
    parts) and ``b`` (3·size). Outputs: ``pre`` (:math:`p_t`), ``hid``
    (:math:`\\hat h_t`), ``rate`` (:math:`z_t`) and ``out`` (:math:`h_t`).

    References
    ----------
    .. [Chu14] J. Chung, C. Gulcehre, K. Cho & Y. Bengio (2014) "Empirical
       Evaluation of Gated Recurrent Neural Networks on Sequence Modeling."
       arXiv:1412.3555
    """

    _HAS_FUSED = True

    def setup(self):
        """Create ``hh``, ``hr``, ``hz``, ``w`` and ``b``."""
        self.add_weights("hh", self.size, self.size)
        self.add_weights("hr", self.size, self.size)
        self.add_weights("hz", self.size, self.size)
        self.add_weights("w", self.input_size, 3 * self.size)
        self.add_bias("b", 3 * self.size)

    def _output_dims(self):
        return {"out": self.size, "pre": self.size, "hid": self.size, "rate": self.size}

    def transform(self, inputs):
        """Compute ``pre``, ``hid``, ``rate`` and ``out``.

        In the scan version the reset and update gates share one product
        with the previous state at each step.

        Parameters
        ----------
        inputs : dict
            Graph outputs, from which the input and an initial state given
            as ``h_0`` are taken.

        Returns
        -------
        dict
            ``pre``, ``hid``, ``out`` and ``rate`` (the update gate
            :math:`z_t`, not the reset gate), all with batch and time axes.
        """
        x_tm = _time_major(self._only_input(inputs))
        h0 = self._initial(inputs, "h_0", x_tm.shape[1], self.size)
        xw = self._project(x_tm, self.find("w"), self.find("b"))
        if self._use_fused():
            from . import fused

            pre, hid, rate, out = fused.gru(self, xw, h0)
        else:
            n = self.size
            hrz = pt.concatenate([self.find("hr"), self.find("hz")], axis=1)

            def step(xw_t, h_prev, hh, hrz, *act):
                gates = pt.sigmoid(xw_t[:, n:] + pt.dot(h_prev, hrz))
                r, z = gates[:, :n], gates[:, n:]
                pre = xw_t[:, :n] + pt.dot(r * h_prev, hh)
                hid = self._inner_activate(pre, act)
                return [pre, hid, z, (1 - z) * h_prev + z * hid]

            pre, hid, rate, out = self._scan(
                step, [xw], [None, None, None, h0], [self.find("hh"), hrz]
            )
        pre, hid, rate, out = self._batch_major(pre, hid, rate, out)
        return dict(pre=pre, hid=hid, rate=rate, out=out)


class Clockwork(Recurrent):
    """A clockwork RNN: groups of units that update at different periods.

    The units are split into ``len(periods)`` equal groups; group :math:`k`
    (after sorting the periods from slowest to fastest) updates only at time
    steps :math:`t` with :math:`t \\bmod T_k = 0` and otherwise keeps its
    value. A group receives recurrent input only from itself and slower
    groups, through the block upper-triangular mask :math:`M`:

    .. math::
        \\begin{aligned}
        \\tilde z_t &= x_t W_{xh} + h_{t-1} (W_{hh} \\odot M) + b \\\\
        z_t &= \\begin{cases} \\tilde z_t & t \\bmod T = 0 \\\\
               z_{t-1} & \\text{otherwise} \\end{cases} \\\\
        h_t &= f(z_t)
        \\end{aligned}

    Time steps are counted from 0 in the order the layer reads them.

    Parameters
    ----------
    periods : sequence of int
        The update period of each group of units. ``size`` must be a
        multiple of the number of periods.
    **kwargs
        The arguments of :class:`Recurrent`.

    Notes
    -----
    Parameters, in drawing order: ``hh`` (size × size), ``xh`` (input ×
    size), ``b`` (size). Outputs: ``pre`` (:math:`z_t`) and ``out``
    (:math:`h_t`).

    References
    ----------
    .. [Kou14] J. Koutník, K. Greff, F. Gomez & J. Schmidhuber (2014) "A
       Clockwork RNN." ICML. arXiv:1402.3511
    """

    def __init__(self, periods=None, **kwargs):
        name = kwargs.get("name")
        if periods is None:
            raise util.ConfigurationError(f"layer {name!r}: a Clockwork layer needs periods")
        try:
            periods = [int(p) for p in periods]
        except (TypeError, ValueError):
            raise util.ConfigurationError(
                f"layer {name!r}: periods must be a sequence of positive integers, got {periods!r}"
            ) from None
        if not periods or any(p <= 0 for p in periods):
            raise util.ConfigurationError(
                f"layer {name!r}: periods must be positive integers, got {periods!r}"
            )
        self.periods = sorted(periods, reverse=True)
        super().__init__(**kwargs)
        if self.size is not None and self.size % len(self.periods):
            raise util.ConfigurationError(
                f"layer {name!r}: size {self.size} must be a multiple of the number of periods "
                f"({len(self.periods)})"
            )

    def setup(self):
        """Create ``hh``, ``xh`` and ``b``, and the mask and period constants."""
        self.add_weights("hh", self.size, self.size)
        self.add_weights("xh", self.input_size, self.size)
        self.add_bias("b", self.size)
        k = self.size // len(self.periods)
        mask = np.zeros((self.size, self.size), dtype=pytensor.config.floatX)
        period = np.zeros(self.size, dtype="int64")
        for j, p in enumerate(self.periods):
            mask[j * k : (j + 1) * k, j * k :] = 1
            period[j * k : (j + 1) * k] = p
        self._mask = mask
        self._period = period

    def _spec_extra(self):
        spec = super()._spec_extra()
        spec["periods"] = tuple(sorted(self.periods))
        return spec

    def transform(self, inputs):
        """Compute ``pre`` and ``out``.

        A step counter decides which groups update at each step.

        Parameters
        ----------
        inputs : dict
            Everything built so far; the layer takes its input and, for
            ``h_0``, the starting state of every group.

        Returns
        -------
        dict
            ``pre`` and ``out``; a group keeps its values between its
            updates.
        """
        x_tm = _time_major(self._only_input(inputs))
        n_steps = x_tm.shape[0]
        h0 = self._initial(inputs, "h_0", x_tm.shape[1], self.size)
        p0 = pt.zeros_like(h0)
        xw = self._project(x_tm, self.find("xh"), self.find("b"))
        # the step counter, arranged so that the loop sees 0, 1, 2, ...
        counter = pt.arange(n_steps, dtype="int64")
        if self.backwards:
            counter = counter[::-1]
        hhm = self.find("hh") * pt.constant(self._mask)

        def step(t, xw_t, p_prev, h_prev, hhm, period, *act):
            p = pt.switch(pt.eq(t % period, 0), xw_t + pt.dot(h_prev, hhm), p_prev)
            return [p, self._inner_activate(p, act)]

        pre, out = self._scan(step, [counter, xw], [p0, h0], [hhm, pt.constant(self._period)])
        pre, out = self._batch_major(pre, out)
        return dict(pre=pre, out=out)


class MUT1(Recurrent):
    """The "MUT1" recurrent layer found by architecture search.

    .. math::
        \\begin{aligned}
        z_t &= \\sigma(x_t W_{xz} + b_z) \\\\
        r_t &= \\sigma(x_t W_{xr} + h_{t-1} W_{hr} + b_r) \\\\
        p_t &= \\tanh(x_t W_{xh} + b_h) + (r_t \\odot h_{t-1}) W_{hh} \\\\
        \\hat h_t &= \\tanh(p_t) \\\\
        h_t &= (1 - z_t) \\odot h_{t-1} + z_t \\odot \\hat h_t
        \\end{aligned}

    The activation is always :math:`\\tanh`; the update gate :math:`z` does
    not depend on the state.

    Parameters
    ----------
    size, inputs, name, activation, h_0, direction, bptt_limit, impl
        As for :class:`Recurrent`, but the activation is ignored: it is
        always :math:`\\tanh`.
    **kwargs
        Initial value settings, as for :class:`Recurrent`.

    Notes
    -----
    Parameters, in drawing order: ``xh``, ``xr``, ``xz`` (input × size),
    ``hh``, ``hr`` (size × size), ``bh``, ``br``, ``bz`` (size). Outputs:
    ``pre`` (:math:`p_t`), ``hid`` (:math:`\\hat h_t`), ``rate``
    (:math:`z_t`) and ``out`` (:math:`h_t`).

    References
    ----------
    .. [Joz15] R. Jozefowicz, W. Zaremba & I. Sutskever (2015) "An Empirical
       Exploration of Recurrent Network Architectures." ICML.
    """

    def setup(self):
        """Create ``xh``, ``xr``, ``xz``, ``hh``, ``hr``, ``bh``, ``br``, ``bz``."""
        self.add_weights("xh", self.input_size, self.size)
        self.add_weights("xr", self.input_size, self.size)
        self.add_weights("xz", self.input_size, self.size)
        self.add_weights("hh", self.size, self.size)
        self.add_weights("hr", self.size, self.size)
        self.add_bias("bh", self.size)
        self.add_bias("br", self.size)
        self.add_bias("bz", self.size)

    def _output_dims(self):
        return {"out": self.size, "pre": self.size, "hid": self.size, "rate": self.size}

    def _act_params(self):
        return []  # the activation is fixed to tanh

    def transform(self, inputs):
        """Compute ``pre``, ``hid``, ``rate`` and ``out``.

        The update gate depends on the input alone, so it is computed for
        every step before the loop.

        Parameters
        ----------
        inputs : dict
            Expressions by name: the input (which alone drives the update gate)
            and an optional ``h_0``.

        Returns
        -------
        dict
            Four sequences: ``pre``, ``hid``, ``rate`` (:math:`z_t`) and
            ``out``.
        """
        x_tm = _time_major(self._only_input(inputs))
        h0 = self._initial(inputs, "h_0", x_tm.shape[1], self.size)
        n = self.size
        w = pt.concatenate([self.find("xh"), self.find("xr"), self.find("xz")], axis=1)
        b = pt.concatenate([self.find("bh"), self.find("br"), self.find("bz")])
        proj = self._project(x_tm, w, b)
        xh = pt.tanh(proj[:, :, :n])
        xr = proj[:, :, n : 2 * n]
        rate = pt.sigmoid(proj[:, :, 2 * n :])

        def step(xh_t, xr_t, z_t, h_prev, hh, hr):
            r = pt.sigmoid(xr_t + pt.dot(h_prev, hr))
            pre = xh_t + pt.dot(r * h_prev, hh)
            hid = pt.tanh(pre)
            return [pre, hid, (1 - z_t) * h_prev + z_t * hid]

        pre, hid, out = self._scan(
            step, [xh, xr, rate], [None, None, h0], [self.find("hh"), self.find("hr")]
        )
        pre, hid, rate, out = self._batch_major(pre, hid, rate, out)
        return dict(pre=pre, hid=hid, rate=rate, out=out)


class SCRN(Recurrent):
    """A structurally constrained recurrent layer: a simple RNN plus a slow context.

    .. math::
        \\begin{aligned}
        [u^h_t, u^s_t] &= x_t W \\\\
        s_t &= r \\odot u^s_t + (1 - r) \\odot s_{t-1} \\\\
        h_t &= \\sigma(u^h_t + h_{t-1} W_{hh} + s_t W_{sh}) \\\\
        y_t &= g(h_t W_{ho} + s_t W_{so} + b)
        \\end{aligned}

    :math:`g` is the layer's activation; the hidden units always use the
    logistic sigmoid :math:`\\sigma`. The context rates :math:`r` depend on
    ``rate``: ``'vector'`` (default) learns :math:`r = \\sigma(\\hat r)` per
    context unit (parameter ``r``); ``'uniform'`` and ``'log'`` fix them as
    in :class:`RRNN`.

    Parameters
    ----------
    rate : {'vector', 'uniform', 'log'}, optional
        How context rates are represented.
    context_size : int, optional
        Number of context units; defaults to ``size``.
    **kwargs
        ``s_0``, the name of a graph output holding the initial context
        state, of shape ``(batch, context_size)`` (zeros by default), and
        the arguments of :class:`Recurrent`.

    Notes
    -----
    Parameters, in drawing order: ``w`` (input × (size + context): the
    hidden columns, then the context columns), ``sh`` (context × size),
    ``hh``, ``ho`` (size × size), ``so`` (context × size), ``b`` (size), and
    ``r`` (context) for learned rates. Outputs: ``hid`` (:math:`h_t`),
    ``state`` (:math:`s_t`), ``rate`` (:math:`r`) and ``out``
    (:math:`y_t`).

    References
    ----------
    .. [Mik15] T. Mikolov, A. Joulin, S. Chopra, M. Mathieu & M. Ranzato
       (2015) "Learning Longer Memory in Recurrent Neural Networks." ICLR
       workshop. arXiv:1412.7753
    """

    _STATE_OPTIONS = ("h_0", "s_0")
    RATES = ("vector", "uniform", "log")
    _SPEC_ATTRS = ("rate", "context_size")

    def __init__(self, rate="vector", context_size=None, **kwargs):
        name = kwargs.get("name")
        self.rate = _check_rate(rate, self.RATES, name)
        _check_size(name, "context_size", context_size)
        self._context_arg = context_size
        super().__init__(**kwargs)
        self._fixed_rates = None

    @property
    def context_size(self):
        """Number of context units."""
        return int(self._context_arg) if self._context_arg is not None else self.size

    def _state_size(self, key):
        return self.context_size if key == "s_0" else self.size

    def _act_params(self):
        return []  # the activation is applied after the loop

    def setup(self):
        """Create ``w``, ``sh``, ``hh``, ``ho``, ``so``, ``b`` and maybe ``r``."""
        n, c = self.size, self.context_size
        self.add_weights("w", self.input_size, n + c)
        self.add_weights("sh", c, n)
        self.add_weights("hh", n, n)
        self.add_weights("ho", n, n)
        self.add_weights("so", c, n)
        self.add_bias("b", n)
        if self.rate == "vector":
            self.add_bias("r", c)
        self._fixed_rates = _fixed_rates(self, c)

    def _output_dims(self):
        c = self.context_size
        return {"out": self.size, "hid": self.size, "state": c, "rate": (c,)}

    def transform(self, inputs):
        """Compute ``hid``, ``state``, ``rate`` and ``out``.

        The outputs are computed after the loop, from the hidden and context
        states.

        Parameters
        ----------
        inputs : dict
            The input sequence and the initial hidden and context states, if
            ``h_0`` and ``s_0`` name them.

        Returns
        -------
        dict
            ``hid`` and ``out``, of shape ``(batch, time, size)``, ``state``, of
            shape ``(batch, time, context_size)``, and ``rate``, the context
            rates (one vector).
        """
        x_tm = _time_major(self._only_input(inputs))
        batch = x_tm.shape[1]
        n = self.size
        h0 = self._initial(inputs, "h_0", batch, n)
        s0 = self._initial(inputs, "s_0", batch, self.context_size)
        rate = pt.sigmoid(self.find("r")) if self.rate == "vector" else self._fixed_rates
        proj = self._project(x_tm, self.find("w"))

        def step(u_h, u_s, h_prev, s_prev, hh, sh, r):
            s = r * u_s + (1 - r) * s_prev
            h = pt.sigmoid(u_h + pt.dot(h_prev, hh) + pt.dot(s, sh))
            return [h, s]

        hid, state = self._scan(
            step,
            [proj[:, :, :n], proj[:, :, n:]],
            [h0, s0],
            [self.find("hh"), self.find("sh"), rate],
        )
        hid, state = self._batch_major(hid, state)
        pre = dot_last_axis(hid, self.find("ho")) + dot_last_axis(state, self.find("so"))
        pre = pre + self.find("b")
        return dict(hid=hid, state=state, rate=rate, out=self.activate(pre))


class Bidirectional(Layer):
    """Two recurrent layers reading the input forwards and backwards in time.

    The layer's ``size`` is split in half between a forward worker
    ``<name>_fw`` and a backward worker ``<name>_bw`` of the same kind; their
    outputs are concatenated along the last axis:

    .. math::
        y_t = [\\overrightarrow{h}_t, \\overleftarrow{h}_t]

    Both halves are aligned with the input's time axis: the backward half at
    step :math:`t` has read steps :math:`T-1 \\dots t`.

    Parameters
    ----------
    worker : str, optional
        Registered name of the recurrent layer to use (``'rnn'`` by default,
        ``'lstm'``, ``'gru'``, ...).
    size : int
        Total number of units (even).
    inputs, name, activation, rng
        As for :class:`~theanets.layers.base.Layer`; the inputs, the
        activation and ``rng`` are handed to both workers, which are named
        ``<name>_fw`` and ``<name>_bw``.
    **kwargs
        Other arguments (activation, initialisation, ``bptt_limit``,
        worker-specific options such as ``rate``) are given to both workers.

    Notes
    -----
    Parameters: the forward worker's (``<name>_fw.xh``, ...) then the
    backward worker's. With an integer seed both workers start from the same
    random state, so they get equal initial values. Outputs: ``out`` (and
    ``pre``, ``cell`` where the worker has them) concatenated, plus every
    worker output as ``fw_<output>`` and ``bw_<output>``.

    References
    ----------
    .. [Gra13b] A. Graves, N. Jaitly & A. Mohamed (2013) "Hybrid Speech
       Recognition with Deep Bidirectional LSTM." ASRU.
    """

    #: Worker outputs that are also concatenated under their own name.
    _JOINED = ("out", "pre", "cell")

    def __init__(
        self, worker="rnn", size=None, inputs=None, name=None, activation=None, rng=None, **kwargs
    ):
        if not isinstance(worker, str) or not Layer.is_registered(worker):
            raise util.ConfigurationError(
                f"layer {name!r}: unknown bidirectional worker {worker!r}."
                f"{util.closest_match(str(worker).lower(), _recurrent_forms())} "
                f"Valid workers: {', '.join(_recurrent_forms())}"
            )
        cls = Layer.lookup(worker)
        if not issubclass(cls, Recurrent) or cls is Recurrent:
            raise util.ConfigurationError(
                f"layer {name!r}: bidirectional worker must be a recurrent layer, got "
                f"{worker!r}. Valid workers: {', '.join(_recurrent_forms())}"
            )
        if "direction" in kwargs:
            raise util.ConfigurationError(
                f"layer {name!r}: a Bidirectional layer sets its workers' directions itself"
            )
        if size is not None and (not isinstance(size, numbers.Integral) or size % 2):
            raise util.ConfigurationError(
                f"layer {name!r}: a Bidirectional layer needs an even size, got {size!r}"
            )
        init = {k: v for k, v in kwargs.items() if _is_init_kwarg(k)}
        self.worker = worker.lower()
        self._worker_kwargs = {k: v for k, v in kwargs.items() if k not in init}
        super().__init__(
            size=size, inputs=inputs, name=name, activation=activation, rng=rng, **init
        )
        self.forward = None
        self.backward = None

    def _resolve_output_shape(self):
        shape = _sequence_input_shape(self)
        if self.size is None:
            raise util.ConfigurationError(f"layer {self.name!r} needs a size")
        return (shape[0], self.size)

    def _make_worker(self, suffix, direction):
        kwargs = dict(self._worker_kwargs)
        kwargs.update((k, v) for k, v in self.kwargs.items() if _is_init_kwarg(k))
        try:
            return Layer.build(
                self.worker,
                size=self.size // 2,
                inputs=list(self.inputs),
                name=f"{self.name}_{suffix}",
                activation=self.activation,
                rng=self._rng_arg,
                direction=direction,
                **kwargs,
            )
        except TypeError as err:
            raise util.ConfigurationError(
                f"layer {self.name!r}: cannot build {self.worker!r} workers from {kwargs}: {err}"
            ) from err

    def bind(self, network, initialize=True):
        """Bind the layer and build and bind its two workers.

        The workers are created here, from this layer's settings, and bound
        to the same network; the layer's parameters are theirs.

        Parameters
        ----------
        network : :class:`theanets.graph.Network`
            The network whose outputs the workers read.
        initialize : bool, optional
            Whether the workers create their parameters (default True).
        """
        super().bind(network, initialize=False)
        self.forward = self._make_worker("fw", "forward")
        self.backward = self._make_worker("bw", "back")
        self.forward.bind(network, initialize=initialize)
        self.backward.bind(network, initialize=initialize)
        self.activate = self.forward.activate
        self.params = list(self.forward.params) + list(self.backward.params)
        self._check_per_param_kwargs()

    def _worker_outputs(self):
        shapes = self.forward.output_shapes() if self.forward is not None else {}
        return [name.split(":", 1)[1] for name in shapes]

    def output_shapes(self):
        """Give the shapes of the outputs other layers may read, keyed by full name.

        Returns
        -------
        dict
            ``out`` (and ``pre`` or ``cell`` where the worker has them), of
            twice a worker's size, and every worker output as ``fw_<output>``
            and ``bw_<output>``. Before binding, only ``out``.
        """
        shapes = {}
        lead = tuple(self._output_shape[:-1])
        if self.forward is None:
            return {self.output_name: self._output_shape}
        for full, shape in self.forward.output_shapes().items():
            short = full.split(":", 1)[1]
            shapes[self.full_name(f"fw_{short}")] = shape
            shapes[self.full_name(f"bw_{short}")] = shape
            if short in self._JOINED:
                shapes[self.full_name(short)] = lead + (2 * shape[-1],)
        return shapes

    def transform(self, inputs):
        """Run both workers and join their outputs.

        Parameters
        ----------
        inputs : dict
            Expressions by fully scoped output name, as the workers read
            them.

        Returns
        -------
        outputs : dict
            Every worker output as ``fw_<output>`` and ``bw_<output>``, and
            ``out`` (and ``pre`` or ``cell``) of both joined on the last axis.
        updates : list
            The updates the workers' graphs need.
        """
        result, updates = {}, []
        parts = {}
        for prefix, worker in (("fw", self.forward), ("bw", self.backward)):
            out = worker.transform(inputs)
            if isinstance(out, tuple):
                out, more = out
                updates.extend(more)
            if not isinstance(out, dict):
                out = {"out": out}
            parts[prefix] = out
            for short, expr in out.items():
                result[f"{prefix}_{short}"] = expr
        for short in self._JOINED:
            if short in parts["fw"]:
                result[short] = pt.concatenate([parts["fw"][short], parts["bw"][short]], axis=-1)
        return result, updates

    def _spec_extra(self):
        spec = dict(self._worker_kwargs)
        spec["worker"] = self.worker
        return spec


def _recurrent_forms():
    return sorted(
        key
        for key in Layer.registered_names()
        if issubclass(Layer.lookup(key), Recurrent) and Layer.lookup(key) is not Recurrent
    )


def _is_init_kwarg(key):
    from .base import _PER_PARAM, INIT_KWARGS

    return key in INIT_KWARGS or bool(_PER_PARAM.match(key))


def _sequence_input_shape(layer, hint=""):
    """Return the example shape of a layer's input after checking it is a sequence.

    Parameters
    ----------
    layer : :class:`theanets.layers.Layer`
        A layer with one input, whose examples must be ``(time, features)``.
    hint : str, optional
        Text added to the error message.

    Returns
    -------
    tuple
        The input's example shape ``(time, features)``.

    Raises
    ------
    ConfigurationError
        If the input's examples do not have two axes.
    """
    shape = layer.input_shape
    if len(shape) != 2:
        raise util.ConfigurationError(
            f"layer {layer.name!r}: a {type(layer).__name__} layer needs input of shape "
            f"(batch, time, features), but {layer.input_name!r} has examples of shape "
            f"{shape}{hint}"
        )
    return shape


def _check_size(layer_name, key, value):
    """Check an optional size option of a layer.

    Parameters
    ----------
    layer_name : str or None
        The layer's name, for the error message.
    key : str
        The option's name.
    value : object
        The value given; None leaves the size to its default.

    Returns
    -------
    int or None

    Raises
    ------
    ConfigurationError
        If ``value`` is neither None nor a positive integer.
    """
    return util.check_number(
        key, value, low=1, integer=True, allow_none=True, where=f"layer {layer_name!r}"
    )


def _check_rate(rate, allowed, name):
    if not isinstance(rate, str) or rate.lower().strip() not in allowed:
        raise util.ConfigurationError(
            f"layer {name!r}: rate must be one of {', '.join(map(repr, allowed))}, got {rate!r}"
        )
    return rate.lower().strip()


def _fixed_rates(layer, size, eps=1e-4):
    """Draw fixed (untrained) rates for ``rate='uniform'`` or ``'log'`` layers."""
    if layer.rate == "uniform":
        value = layer.rng.uniform(eps, 1 - eps, size=size)
    elif layer.rate == "log":
        value = np.exp(layer.rng.uniform(-6, -eps, size=size))
    else:
        return None
    return pytensor.shared(util.as_float(value), name=f"{layer.name}.rate")
