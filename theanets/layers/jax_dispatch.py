"""JAX implementations of theanets' own PyTensor operations.

PyTensor's JAX backend (``mode='JAX'``) turns a graph into one function that
:func:`jax.jit` compiles for JAX's default device, a GPU when JAX has one.
Every operation in the graph needs a JAX implementation, registered with
:func:`pytensor.link.jax.dispatch.jax_funcify`. PyTensor supplies those of its
own operations; this module supplies those of the operations theanets
defines:

* :class:`theanets.layers.convolution.MatMul`, the matrix product with
  transpose flags of the convolution layers, as :func:`jax.numpy.matmul`;
* the fused recurrent loops of :mod:`theanets.layers.fused`
  (:class:`~theanets.layers.fused.RNNForward`, ``LSTMForward``,
  ``GRUForward`` and their ``...Backward`` gradient operations), as
  :func:`jax.lax.scan` loops that compute the same quantities from the same
  inputs as the compiled Numba loops, including truncated
  back-propagation through time.

Nothing here is imported by ``import theanets``: :func:`register` runs the
first time a function is compiled for the JAX backend (see
:mod:`theanets.backend`), so JAX is only needed by those who use it.

The backward loops follow the chain rule step by step, from the last time
step to the first, exactly as the Numba loops do; the tests check both
against PyTensor's gradients of the :func:`pytensor.scan` reference.
"""

__all__ = ["register"]

_REGISTERED = False


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
    import jax  # noqa: F401 - fail early, with JAX's own message, when it is missing
    from pytensor.link.jax.dispatch import jax_funcify

    from . import convolution, fused

    jax_funcify.register(convolution.MatMul)(_matmul)
    jax_funcify.register(fused.RNNForward)(_rnn_forward)
    jax_funcify.register(fused.RNNBackward)(_rnn_backward)
    jax_funcify.register(fused.LSTMForward)(_lstm_forward)
    jax_funcify.register(fused.LSTMBackward)(_lstm_backward)
    jax_funcify.register(fused.GRUForward)(_gru_forward)
    jax_funcify.register(fused.GRUBackward)(_gru_backward)
    _REGISTERED = True
    return True


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
