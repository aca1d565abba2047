"""PyTensor's JAX backend for theanets: its mode and JAX versions of our operations.

PyTensor's JAX backend (``mode='JAX'``) turns a graph into one function that
:func:`jax.jit` compiles for JAX's default device, a GPU when JAX has one.
:mod:`theanets.backend` hands every function theanets compiles to
:func:`mode` when the JAX backend is chosen (``THEANETS_MODE=JAX``,
``PYTENSOR_FLAGS=mode=JAX`` or :func:`theanets.backend.set_mode`). Nothing
here is imported by ``import theanets``, so JAX is needed only by those who
use it.

What this module adds to PyTensor's own JAX backend:

* JAX implementations, registered with
  :func:`pytensor.link.jax.dispatch.jax_funcify`, of the operations theanets
  defines: :class:`theanets.layers._matmul.MatMul` (a matrix product with
  transpose flags; the patch and pooling operations of
  :mod:`theanets.layers._conv_ops` are replaced by PyTensor expressions
  under JAX, by a rewrite of that module) and the fused recurrent loops of
  :mod:`theanets.layers.fused` (``RNNForward``, ``LSTMForward``,
  ``GRUForward`` and their ``...Backward`` gradients), as
  :func:`jax.lax.scan` loops that compute the same quantities from the same
  inputs as the compiled Numba loops, including truncated back-propagation
  through time. The backward loops apply the chain rule step by step from
  the last time step to the first, like the Numba ones.
* Shape arithmetic that stays concrete. :func:`jax.jit` needs every array
  shape and slice bound as a plain integer while it traces, but PyTensor
  computes some of them (the buffer of a :func:`pytensor.scan` loop, the
  bounds of its gradient) with comparisons, ``switch`` and fused scalar
  expressions, which PyTensor's JAX versions evaluate with :mod:`jax.numpy`
  and so turn into traced values. Here those scalar operations compute with
  Python operators when none of their inputs is traced, and with
  :mod:`jax.numpy` otherwise.
* A linker that returns NumPy arrays of the types the graph declares, so
  that ``predict``, ``feed_forward`` and parameter values are the same kind
  of object under every backend (and a model trained under JAX can be used
  under the default backend); that keeps shared random streams shared (each
  call starts from the stream's current state and leaves its new state
  there, where PyTensor's own JAX linker gives every function a private
  copy); that refuses sparse inputs, which JAX cannot take, with a
  :class:`~theanets.util.ConfigurationError`; and that quiets warnings
  PyTensor and JAX give for every graph theanets builds (random streams
  copied into the function, run-time shape assertions dropped, 64-bit
  values narrowed in float32 models).

JAX's 64-bit types are switched on when the first function is compiled
for JAX with ``floatX`` ``'float64'``, off otherwise, as PyTensor itself
decides when its JAX backend is first imported.
"""

import contextlib
import warnings

import numpy as np

from .. import util

__all__ = ["mode", "parameters_on_device", "register"]

#: The name of PyTensor's JAX mode, as :func:`theanets.backend.set_mode` takes it.
MODE_NAME = "JAX"

_REGISTERED = False
_MODE = None

#: While :func:`parameters_on_device` is active: the shared variables whose
#: values it keeps on JAX's device, by id; None otherwise.
_RESIDENT = None

#: Warnings PyTensor's JAX backend gives for graphs theanets builds on purpose.
_QUIET = (
    # every dropout/noise stream (the linker keeps the copy and the stream in step)
    r"The RandomType SharedVariables .* will not be used",
    # broadcasting checks that JAX's tracing removes; shapes are checked on entry
    r"Skipping .*Assert.* Op",
    # 64-bit values of a graph when JAX's 64-bit types are off (float32 models)
    r"Explicitly requested dtype .* is not available",
)


def register():
    """Register the JAX implementations of theanets' operations (once).

    Returns
    -------
    bool
        True the first time, when the implementations were registered;
        False when they already were.

    Raises
    ------
    ImportError
        If JAX is not installed.
    """
    global _REGISTERED
    if _REGISTERED:
        return False
    import jax
    import pytensor
    from pytensor.link.jax.dispatch import jax_funcify

    # JAX's 64-bit types follow floatX, as PyTensor sets them when its JAX
    # backend is first imported (which may have happened under another floatX).
    jax.config.update("jax_enable_x64", pytensor.config.floatX == "float64")

    from . import fused
    from ._matmul import MatMul

    jax_funcify.register(MatMul)(_matmul)
    jax_funcify.register(fused.RNNForward)(_rnn_forward)
    jax_funcify.register(fused.RNNBackward)(_rnn_backward)
    jax_funcify.register(fused.LSTMForward)(_lstm_forward)
    jax_funcify.register(fused.LSTMBackward)(_lstm_backward)
    jax_funcify.register(fused.GRUForward)(_gru_forward)
    jax_funcify.register(fused.GRUBackward)(_gru_backward)
    _register_concrete_scalars()
    _REGISTERED = True
    return True


def mode(chosen=MODE_NAME):
    """The PyTensor mode to compile with when the JAX backend is chosen.

    Parameters
    ----------
    chosen : str or :class:`pytensor.compile.mode.Mode`, optional
        The mode that was chosen: the name ``'JAX'`` gives this module's
        mode (PyTensor's JAX rewrites and this module's linker, one shared
        instance); a mode instance is kept as it is.

    Returns
    -------
    :class:`pytensor.compile.mode.Mode`

    Raises
    ------
    ConfigurationError
        If JAX is not installed.
    """
    global _MODE
    try:
        register()
    except ImportError as err:
        raise util.ConfigurationError(
            f"the JAX backend (mode {MODE_NAME!r}) needs JAX, which cannot be imported "
            f"({err}); install it with: pip install 'theanets[jax]' (CPU), or see "
            "https://docs.jax.dev/en/latest/installation.html for GPU builds"
        ) from err
    if not isinstance(chosen, str):
        return chosen
    if _MODE is None:
        from pytensor.compile.mode import Mode, get_mode

        _MODE = Mode(linker=_make_linker()(), optimizer=get_mode(MODE_NAME).provided_optimizer)
    return _MODE


@contextlib.contextmanager
def parameters_on_device():
    """Keep shared values on JAX's device between calls, and bring them back on exit.

    Inside this context, a function compiled for JAX moves each shared
    value it reads (parameters, optimizer state, hyperparameters) to the
    device once, and leaves the new values of the ones it updates there, so
    that consecutive training steps exchange only the batch data and the
    monitor values with the host. On exit every such value is copied back
    into a NumPy array of its declared type, where ``get_value``, the other
    backends and ``save`` find it. The trainer enters this context around
    each epoch; nested uses join the outer one.

    Yields
    ------
    None
    """
    global _RESIDENT
    if _RESIDENT is not None:
        yield
        return
    _RESIDENT = {}
    try:
        yield
    finally:
        resident, _RESIDENT = _RESIDENT, None
        _to_host(resident.values())


def _to_host(variables):
    """Replace device arrays held by these shared variables with NumPy copies."""
    import jax

    for var in variables:
        storage = var.container.storage
        if isinstance(storage[0], jax.Array):
            storage[0] = np.array(storage[0], dtype=var.type.dtype)


def _make_linker():
    """The linker class of :func:`mode` (defined here: its base class needs JAX)."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.link.jax.linker import JAXLinker
    from pytensor.sparse.type import SparseTensorType
    from pytensor.tensor.random.type import RandomType

    class Linker(JAXLinker):
        """PyTensor's JAX linker, with NumPy results, shared random streams and no sparse inputs.

        Every array a compiled function returns, the new values of shared
        variables included, is copied into a NumPy array of the type the
        graph declares: PyTensor's other backends cannot read JAX arrays from
        shared variables, NumPy arrays are what theanets returns under every
        backend, and a few of PyTensor's JAX implementations compute in a
        wider type than they declare. Inside :func:`parameters_on_device`
        (the trainer's epochs) shared values stay on the device instead; outside
        it, on a GPU, this copies the parameters
        between device and host memory at every training step.

        PyTensor's own JAX linker gives each compiled function a private
        copy of every shared random generator, taken when it is compiled.
        Here each call instead starts from the shared generator's current
        state and leaves the advanced state in it (see :class:`_Stream`), as
        the other backends do: functions that share a stream draw one
        sequence between them, and ``set_value`` reseeds them.
        """

        def fgraph_convert(self, fgraph, *args, **kwargs):
            for var in fgraph.inputs:
                if isinstance(var.type, SparseTensorType):
                    raise util.ConfigurationError(
                        f"input {var.name or str(var)!r} is a sparse {var.type.format} matrix, "
                        f"which PyTensor's JAX backend (mode {MODE_NAME!r}) cannot take; use "
                        "dense inputs (sparse=None) or another backend, e.g. "
                        "theanets.backend.set_mode('auto')"
                    )
            updated = {i: o for o, i in (getattr(fgraph, "update_mapping", None) or {}).items()}
            self._streams = [
                _Stream(i, var, updated.get(i))
                for i, var in enumerate(fgraph.inputs)
                if isinstance(var, SharedVariable) and isinstance(var.type, RandomType)
            ]
            with warnings.catch_warnings():
                for message in _QUIET:
                    warnings.filterwarnings("ignore", message=message, category=UserWarning)
                return super().fgraph_convert(fgraph, *args, **kwargs)

        def jit_compile(self, fn):
            import jax

            compiled = super().jit_compile(fn)
            array = jax.Array
            dtypes = [getattr(var.type, "dtype", None) for var in self.fgraph.outputs]
            streams = self._streams
            shared = [
                (i, var)
                for i, var in enumerate(self.fgraph.inputs)
                if isinstance(var, SharedVariable)
                and not isinstance(var.type, RandomType)
                and i not in self.scalar_shape_inputs
            ]
            updates = frozenset(getattr(self.fgraph, "update_mapping", None) or ())

            def run(*args):
                resident = _RESIDENT
                if streams or (resident is not None and shared):
                    args = list(args)
                    for stream in streams:
                        stream.load(args)
                if resident is not None:
                    _move_to_device(shared, args, resident)
                # JAX traces (and warns about types it narrows) on a first call
                with warnings.catch_warnings():
                    for message in _QUIET:
                        warnings.filterwarnings("ignore", message=message, category=UserWarning)
                    results = compiled(*args)
                for stream in streams:
                    stream.store(results)
                return [
                    _result(x, dtype, resident is not None and k in updates)
                    if isinstance(x, array)
                    else x
                    for k, (x, dtype) in enumerate(zip(results, dtypes))
                ]

            return run

    return Linker


def _move_to_device(shared, args, resident):
    """Put each shared input's value on the device (once) and record its variable."""
    import jax

    for i, var in shared:
        if not isinstance(args[i], jax.Array):
            args[i] = var.container.storage[0] = jax.device_put(args[i])
        resident[id(var)] = var


def _result(value, dtype, keep_on_device):
    """A JAX result as theanets hands it on: a NumPy array, or a device array of ``dtype``."""
    if keep_on_device:
        return value if value.dtype == dtype else value.astype(dtype)
    return np.array(value, dtype=dtype)


class _Stream:
    """One shared NumPy random generator of a function compiled for JAX.

    JAX draws from a key, not from a NumPy ``Generator``. Before a call,
    :meth:`load` hands the function the key of the shared generator's
    current state, unless that state is the one the function itself left
    there (then the function's own JAX state, which continues the same
    stream, is used). After the call, :meth:`store` puts a NumPy generator seeded from the
    advanced key back into the shared variable, where other functions and
    ``get_value`` find it.

    Parameters
    ----------
    index : int
        Position of the generator among the function's inputs.
    shared : shared variable
        The generator's shared variable.
    output : int or None
        Position of its new state among the function's outputs (None when
        the function does not update it).
    """

    def __init__(self, index, shared, output):
        self.index = index
        self.shared = shared
        self.output = output
        self.left = None  # the generator this function left in the shared variable
        self.state = None  # and the JAX state it was seeded from

    def load(self, args):
        from pytensor.link.jax.dispatch import jax_typify

        value = self.shared.container.storage[0]
        args[self.index] = self.state if value is self.left else jax_typify(value)

    def store(self, results):
        if self.output is None:
            return
        self.state = results[self.output]
        self.left = np.random.default_rng(np.asarray(self.state["jax_state"]))
        self.shared.container.storage[0] = self.left


# ----------------------------------------------------------------------
# shape arithmetic that stays concrete


def _register_concrete_scalars():
    """Give scalar operations Python versions for untraced inputs (see the module notes)."""
    import operator

    import jax
    import jax.numpy as jnp
    import pytensor.scalar.basic as ps
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.link.jax.dispatch.scalar import jax_funcify_scalar_op_via_py_operators
    from pytensor.tensor.basic import ARange, ScalarFromTensor

    traced = jax.Array

    def either(python, numpy):
        def fn(*args):
            if any(isinstance(a, traced) for a in args):
                return numpy(*args)
            return python(*args)

        return fn

    table = {
        ps.LT: (operator.lt, jnp.less),
        ps.GT: (operator.gt, jnp.greater),
        ps.LE: (operator.le, jnp.less_equal),
        ps.GE: (operator.ge, jnp.greater_equal),
        ps.EQ: (operator.eq, jnp.equal),
        ps.NEQ: (operator.ne, jnp.not_equal),
        ps.AND: (operator.and_, jnp.logical_and),
        ps.OR: (operator.or_, jnp.logical_or),
        ps.Switch: (lambda c, a, b: a if c else b, jnp.where),
        ps.ScalarMaximum: (max, jnp.maximum),
        ps.ScalarMinimum: (min, jnp.minimum),
        ps.Abs: (abs, jnp.abs),
        ps.Neg: (operator.neg, jnp.negative),
    }
    for cls, (python, numpy) in table.items():
        jax_funcify_scalar_op_via_py_operators.register(cls)(
            lambda op, python=python, numpy=numpy: either(python, numpy)
        )

    composite = jax_funcify.dispatch(ps.Composite)

    @jax_funcify.register(ps.Composite)
    def _composite(op, node, **kwargs):
        # PyTensor vectorises every fused scalar expression with jnp.vectorize,
        # which traces it; one of scalars only needs no vectorising.
        if any(i.type.ndim for i in node.inputs):
            return composite(op, node=node, **kwargs)
        inner = jax_funcify(op.fgraph)
        if len(node.outputs) == 1:
            return lambda *args: inner(*args)[0]
        return inner

    @jax_funcify.register(ARange)
    def _arange(op, node, **kwargs):
        # PyTensor's version accepts only constants and array lengths as bounds,
        # and mixes its constants' small integer types with the lengths, which
        # overflows (an int8 0 and a batch of 128); any untraced integer will do.
        dtype = op.dtype

        def concrete_arange(*bounds):
            bounds = [b if isinstance(b, traced) else np.asarray(b).item() for b in bounds]
            return jnp.arange(*bounds, dtype=dtype)

        return concrete_arange

    scalar_from_tensor = jax_funcify.dispatch(ScalarFromTensor)

    @jax_funcify.register(ScalarFromTensor)
    def _scalar_from_tensor(op, **kwargs):
        traced_fn = scalar_from_tensor(op, **kwargs)
        return lambda x: traced_fn(x) if isinstance(x, traced) else x


# ----------------------------------------------------------------------
# helpers


def _activation(name):
    """The activation ``name`` of the fused loops and its derivative.

    Returns
    -------
    (f, df)
        ``f(z)`` and ``df(z, y)``, the derivative at the pre-activation
        ``z`` written with the output ``y = f(z)`` where that is cheaper.
    """
    import jax
    import jax.numpy as jnp

    name = name.lower()
    if name == "linear":
        return (lambda z: z), (lambda z, y: jnp.ones_like(z))
    if name == "relu":
        return (lambda z: jnp.maximum(z, 0)), (lambda z, y: (z > 0).astype(z.dtype))
    if name == "tanh":
        return jnp.tanh, (lambda z, y: 1 - y * y)
    if name in ("sigmoid", "logistic"):
        return jax.nn.sigmoid, (lambda z, y: y * (1 - y))
    raise NotImplementedError(f"the fused loops have no activation {name!r}")


def _start(steps, truncate):
    """First time step the backward loop visits (truncated back-propagation).

    ``steps`` is a Python int: array shapes are static while JAX traces.
    """
    return 0 if truncate < 0 else max(steps - truncate, 0)


def _previous(h0, hs):
    """The states ``h_{t-1}`` for every step: ``h0`` then all but the last of ``hs``."""
    import jax.numpy as jnp

    return jnp.concatenate([h0[None], hs[:-1]], axis=0)


def _reverse_scan(step, carry, sequences, start):
    """Run ``step`` from the last time step down to ``start``.

    Returns the final carry (zeros when ``start > 0``: the gradient does not
    reach the initial state) and the stacked per-step outputs, zero for the
    steps before ``start``.
    """
    import jax
    import jax.numpy as jnp

    window = [s[start:] for s in sequences]
    carry, outs = jax.lax.scan(step, carry, window, reverse=True)
    if start > 0:
        carry = jax.tree_util.tree_map(jnp.zeros_like, carry)
        outs = jax.tree_util.tree_map(
            lambda o: jnp.concatenate([jnp.zeros((start, *o.shape[1:]), o.dtype), o]), outs
        )
    return carry, outs


def _weight_grad(prev, d):
    """sum over t of prev_t^T d_t, for (T, B, n) and (T, B, m) arrays."""
    import jax.numpy as jnp

    return jnp.einsum("tbn,tbm->nm", prev, d)


# ----------------------------------------------------------------------
# convolution


def _matmul(op, node=None, **kwargs):
    import jax.numpy as jnp

    trans_a, trans_b = op.trans_a, op.trans_b

    def matmul(a, b):
        return jnp.matmul(a.T if trans_a else a, b.T if trans_b else b)

    return matmul


# ----------------------------------------------------------------------
# RNN


def _rnn_forward(op, node=None, **kwargs):
    import jax

    f, _ = _activation(op.activation)

    def rnn_forward(xw, h0, hh):
        def step(h, xw_t):
            pre = xw_t + h @ hh
            out = f(pre)
            return out, (pre, out)

        _, (pre, out) = jax.lax.scan(step, h0, xw)
        return pre, out

    return rnn_forward


def _rnn_backward(op, node=None, **kwargs):
    import jax.numpy as jnp

    _, df = _activation(op.activation)
    truncate = op.truncate

    def rnn_backward(hh, h0, pre, out, dpre, dout):
        start = _start(pre.shape[0], truncate)

        def step(carry, seq):
            pre_t, out_t, dpre_t, dout_t = seq
            d = (dout_t + carry) * df(pre_t, out_t) + dpre_t
            return d @ hh.T, d

        carry = jnp.zeros_like(h0)
        dh0, dxw = _reverse_scan(step, carry, (pre, out, dpre, dout), start)
        return dxw, dh0, _weight_grad(_previous(h0, out), dxw)

    return rnn_backward


# ----------------------------------------------------------------------
# LSTM


def _lstm_forward(op, node=None, **kwargs):
    import jax
    import jax.numpy as jnp

    sigmoid = jax.nn.sigmoid

    def lstm_forward(xw, h0, c0, hh, ci, cf, co, b):
        n = h0.shape[-1]

        def step(state, xw_t):
            h, c = state
            a = xw_t + b + h @ hh
            i = sigmoid(a[:, :n] + c * ci)
            f = sigmoid(a[:, n : 2 * n] + c * cf)
            g = jnp.tanh(a[:, 2 * n : 3 * n])
            cell = f * c + i * g
            o = sigmoid(a[:, 3 * n :] + cell * co)
            tanh_c = jnp.tanh(cell)
            h = o * tanh_c
            gates = jnp.concatenate([i, f, g, o], axis=-1)
            return (h, cell), (h, cell, gates, tanh_c)

        _, outputs = jax.lax.scan(step, (h0, c0), xw)
        return outputs

    return lstm_forward


def _lstm_backward(op, node=None, **kwargs):
    import jax.numpy as jnp

    truncate = op.truncate

    def lstm_backward(hh, ci, cf, co, h0, c0, hs, cs, gates, tanh_c, dh, dc):
        n = h0.shape[-1]
        start = _start(hs.shape[0], truncate)
        c_prev = _previous(c0, cs)

        def step(carry, seq):
            dh_next, dc_next = carry  # dL/dh_t and dL/dc_t from step t + 1
            gates_t, tc, cp, cell, dh_t, dc_t = seq
            i, f, g, o = (gates_t[:, k * n : (k + 1) * n] for k in range(4))
            e = dh_t + dh_next  # dL/dh_t
            do = e * tc * o * (1 - o)
            s = dc_next + dc_t + e * o * (1 - tc * tc) + do * co  # dL/dc_t
            di = s * g * i * (1 - i)
            df = s * cp * f * (1 - f)
            dg = s * i * (1 - g * g)
            d = jnp.concatenate([di, df, dg, do], axis=-1)
            dc_prev = s * f + di * ci + df * cf
            peep = jnp.stack([(di * cp).sum(0), (df * cp).sum(0), (do * cell).sum(0)])
            return (d @ hh.T, dc_prev), (d, peep)

        carry = (jnp.zeros_like(h0), jnp.zeros_like(c0))
        sequences = (gates, tanh_c, c_prev, cs, dh, dc)
        (dh0, dc0), (d, peep) = _reverse_scan(step, carry, sequences, start)
        dci, dcf, dco = peep.sum(0)
        dhh = _weight_grad(_previous(h0, hs), d)
        return d, dh0, dc0, dhh, dci, dcf, dco, d.sum((0, 1))

    return lstm_backward


# ----------------------------------------------------------------------
# GRU


def _gru_forward(op, node=None, **kwargs):
    import jax

    f, _ = _activation(op.activation)
    sigmoid = jax.nn.sigmoid

    def gru_forward(xw, h0, hh, hrz):
        n = h0.shape[-1]

        def step(h, xw_t):
            gates = sigmoid(xw_t[:, n:] + h @ hrz)
            r, z = gates[:, :n], gates[:, n:]
            pre = xw_t[:, :n] + (r * h) @ hh
            hid = f(pre)
            out = h + z * (hid - h)
            return out, (pre, hid, z, out, r)

        _, outputs = jax.lax.scan(step, h0, xw)
        return outputs

    return gru_forward


def _gru_backward(op, node=None, **kwargs):
    import jax.numpy as jnp

    _, df = _activation(op.activation)
    truncate = op.truncate

    def gru_backward(hh, hrz, h0, pre, hid, rate, out, reset, dpre, dhid, drate, dout):
        n = h0.shape[-1]
        start = _start(out.shape[0], truncate)
        h_prev = _previous(h0, out)

        def step(carry, seq):
            pre_t, hid_t, z, hp, r, dpre_t, dhid_t, drate_t, dout_t = seq
            e = dout_t + carry  # dL/dh_t
            dz = (e * (hid_t - hp) + drate_t) * z * (1 - z)
            dcand = (e * z + dhid_t) * df(pre_t, hid_t) + dpre_t
            drh = dcand @ hh.T
            dr = drh * hp * r * (1 - r)
            drz = jnp.concatenate([dr, dz], axis=-1)
            carry = e * (1 - z) + drh * r + drz @ hrz.T
            return carry, jnp.concatenate([dcand, drz], axis=-1)

        sequences = (pre, hid, rate, h_prev, reset, dpre, dhid, drate, dout)
        dh0, d = _reverse_scan(step, jnp.zeros_like(h0), sequences, start)
        dhh = _weight_grad(reset * h_prev, d[..., :n])
        dhrz = _weight_grad(h_prev, d[..., n:])
        return d, dh0, dhh, dhrz

    return gru_backward
