"""Fused recurrent loops: whole-sequence PyTensor operations for RNN, LSTM and GRU.

A :func:`pytensor.scan` loop pays an interpreter round trip for every op of
every time step, forward and backward. The operations here run the entire
time loop of the common cells in one compiled Numba function instead: each
step is one BLAS matrix product for all gates, called directly from the
compiled loop (see :mod:`theanets.layers._compiled`), and a few vectorised
passes over the ``(batch, size)`` block for the rest of the cell's
arithmetic. The weight gradients are a few large matrix products over all
time steps.

Each cell has a forward :class:`~pytensor.graph.op.Op` and a backward one.
The forward op's :meth:`pullback` returns the backward op's outputs, so
gradients flow through :func:`pytensor.grad` like any other operation:
regularizers, optimizers, gradient clipping and ``bptt_limit`` work
unchanged. The backward ops themselves are not differentiable (no second
derivatives).

PyTensor's Numba backend compiles the ops into the graph's own Numba
function (see :func:`_register_numba`); its C backend and the Python linker
call the same compiled loops from :meth:`perform`.

**Arithmetic.** float64 loops use the C library's ``exp`` and ``tanh``;
float32 loops a vectorised ``exp`` from which the logistic function and
``tanh`` follow, all within about two units in the last place (NumPy's own
float32 ``tanh`` is about as close).

**Threads.** The per-step products are small (``batch x size x k size``
multiply-adds): split over several BLAS threads they gain little, and lose a
lot as soon as another process wants a core. While a loop runs it asks
OpenBLAS for one thread when a step's product is smaller than
:data:`theanets.layers._compiled.SINGLE_THREAD_MACS` multiply-adds, and
restores the previous setting afterwards; the large weight-gradient
products use every thread.

The scan implementations in :mod:`theanets.layers.recurrent` remain the
reference; the tests compare both. Inputs here are time-major: ``xw`` is the
projected input ``x W + b`` of shape ``(time, batch, k * size)``; backward
layers pass it reversed in time.
"""

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply

from ._compiled import (
    drop_buffers,
    gemm,
    jit,
    output_buffers,
    restore_threads,
    sigmoid,
    step_threads,
    tanh,
)
from ._dispatch import BackendOp, numba_dispatch, once

__all__ = ["supports", "rnn", "lstm", "gru"]


#: Activations the fused RNN and GRU loops implement.
_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "logistic")

#: Activation codes for the compiled loops.
_CODES = {"linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "logistic": 3}

#: Bumped whenever the compiled code changes, so PyTensor's Numba cache
#: does not reuse graphs compiled with an older version.
_NUMBA_VERSION = 3


def _activation_name(layer):
    name = layer.activation
    if not isinstance(name, str) or getattr(layer.activate, "params", None):
        return None
    name = name.lower()
    return name if name in _ACTIVATIONS else None


def supports(layer):
    """Tell whether the fused loop can compute ``layer`` exactly.

    Parameters
    ----------
    layer : :class:`theanets.layers.recurrent.Recurrent`
        A bound recurrent layer.

    Returns
    -------
    bool
        True for :class:`LSTM` layers, and for :class:`RNN` and :class:`GRU`
        layers whose activation is ``linear``, ``relu``, ``tanh`` or
        ``sigmoid``/``logistic``.
    """
    kind = type(layer).__name__
    if kind == "LSTM":
        return True
    if kind in ("RNN", "GRU"):
        return _activation_name(layer) is not None
    return False


# Loops over flat (contiguous) arrays; the activation code is tested outside
# the loops so that each loop vectorises.


@jit
def _activate(code, z, y):  # pragma: no cover - compiled
    """y = f(z) for the activation ``code``."""
    z, y = z.reshape(z.size), y.reshape(y.size)
    if code == 0:
        y[:] = z
    elif code == 1:
        for k in range(z.size):
            y[k] = max(z[k], 0)
    elif code == 2:
        for k in range(z.size):
            y[k] = tanh(z[k])
    else:
        for k in range(z.size):
            y[k] = sigmoid(z[k])


@jit
def _derivative(code, z, y, out):  # pragma: no cover - compiled
    """out = f'(z), from the pre-activation z and the output y = f(z)."""
    z, y, out = z.reshape(z.size), y.reshape(y.size), out.reshape(out.size)
    one = out.dtype.type(1)
    if code == 0:
        out[:] = one
    elif code == 1:
        for k in range(z.size):
            out[k] = one if z[k] > 0 else one - one
    elif code == 2:
        for k in range(z.size):
            out[k] = one - y[k] * y[k]
    else:
        for k in range(z.size):
            out[k] = y[k] * (one - y[k])


# ----------------------------------------------------------------------
# shared helpers of the loops


@jit
def _window(steps, truncate):  # pragma: no cover - compiled
    """First time step the backward loop visits (truncated back-propagation)."""
    return 0 if truncate < 0 else max(steps - truncate, 0)


@jit
def _add(y, x):  # pragma: no cover - compiled
    """y += x for two contiguous arrays of the same shape."""
    y, x = y.reshape(y.size), x.reshape(x.size)
    for k in range(y.size):
        y[k] += x[k]


@jit
def _multiply(y, x):  # pragma: no cover - compiled
    """y *= x for two contiguous arrays of the same shape."""
    y, x = y.reshape(y.size), x.reshape(x.size)
    for k in range(y.size):
        y[k] *= x[k]


@jit
def _weight_grad(h0, hs, d, start, grad, alone):  # pragma: no cover - compiled
    """grad = sum over t >= start of h_{t-1}^T d_t, where h_{-1} = h0.

    ``h0`` is (B, n), ``hs`` (T, B, n) contiguous, ``d`` the (T B, m) rows
    of every step (a column block of a wider array is fine). ``alone`` is
    true when BLAS runs on one thread anyway (the loop found it so): the
    products then go to the faster library of :func:`gemm`'s ``small``
    products, as no pool of threads is involved.
    """
    steps, batch, n = hs.shape
    first = start
    beta = 0.0
    if start == 0 and steps > 0:
        gemm(h0, d[:batch], grad, True, False, 0.0, alone)
        first, beta = 1, 1.0
    if first < steps:
        earlier = hs.reshape((steps * batch, n))[(first - 1) * batch : (steps - 1) * batch]
        gemm(earlier, d[first * batch :], grad, True, False, beta, alone)
    elif beta == 0.0:
        grad[:] = 0
    return grad


# ----------------------------------------------------------------------
# RNN


@jit
def _rnn_fw_step(xw, h_prev, hh, code, pre, out, small):  # pragma: no cover - compiled
    gemm(h_prev, hh, pre, False, False, 0.0, small)
    _add(pre, xw)
    _activate(code, pre, out)


@jit
def _rnn_forward(xw, h0, hh, code, pre, out):  # pragma: no cover - compiled
    steps, batch, n = xw.shape
    threads = step_threads(batch * n * n)
    for t in range(steps):
        if t == 0:
            _rnn_fw_step(xw[t], h0, hh, code, pre[t], out[t], threads >= 0)
        else:
            _rnn_fw_step(xw[t], out[t - 1], hh, code, pre[t], out[t], threads >= 0)
    restore_threads(threads)
    return pre, out


@jit
def _rnn_backward(
    hh, h0, pre, out, dpre, dout, code, truncate, dxw, carry, dhh
):  # pragma: no cover - compiled
    steps, batch, n = pre.shape
    carry[:] = 0  # dL/dh_t from step t + 1
    start = _window(steps, truncate)
    dxw[:start] = 0  # steps outside the truncation window get no gradient
    threads = step_threads(batch * n * n)
    for t in range(steps - 1, start - 1, -1):
        g = dxw[t]
        _derivative(code, pre[t], out[t], g)
        gf, c, p, o = g.reshape(g.size), carry.reshape(g.size), dpre[t], dout[t]
        p, o = p.reshape(g.size), o.reshape(g.size)
        for k in range(g.size):
            gf[k] = (o[k] + c[k]) * gf[k] + p[k]
        gemm(g, hh, carry, False, True, 0.0, threads >= 0)
    restore_threads(threads)
    if start > 0:
        carry[:] = 0
    _weight_grad(h0, out, dxw.reshape((steps * batch, n)), start, dhh, threads == 1)
    return dxw, carry, dhh


# ----------------------------------------------------------------------
# LSTM


@jit
def _lstm_fw_step(
    xw, h_prev, c_prev, hh, ci, cf, co, bias, gates, cell, tanh_c, h, small
):  # pragma: no cover - compiled
    """One step: ``gates`` gets [i, f, g, o], then the new cell, tanh(cell) and h."""
    gemm(h_prev, hh, gates, False, False, 0.0, small)
    batch, width = gates.shape
    n = width // 4
    for b in range(batch):
        g, x, cp, cb, tb, hb = gates[b], xw[b], c_prev[b], cell[b], tanh_c[b], h[b]
        for j in range(width):
            g[j] += x[j] + bias[j]
        gi, gf, gg, go = g[:n], g[n : 2 * n], g[2 * n : 3 * n], g[3 * n :]
        for j in range(n):
            gi[j] = sigmoid(gi[j] + cp[j] * ci[j])
        for j in range(n):
            gf[j] = sigmoid(gf[j] + cp[j] * cf[j])
        for j in range(n):
            gg[j] = tanh(gg[j])
        for j in range(n):
            cb[j] = gf[j] * cp[j] + gi[j] * gg[j]
        for j in range(n):
            go[j] = sigmoid(go[j] + cb[j] * co[j])
        for j in range(n):
            tb[j] = tanh(cb[j])
        for j in range(n):
            hb[j] = go[j] * tb[j]


@jit
def _lstm_forward(
    xw, h0, c0, hh, ci, cf, co, bias, hs, cs, gates, tanh_c
):  # pragma: no cover - compiled
    steps, batch, width = xw.shape
    n = width // 4
    threads = step_threads(batch * n * width)
    small = threads >= 0
    for t in range(steps):
        if t == 0:
            _lstm_fw_step(
                xw[t], h0, c0, hh, ci, cf, co, bias, gates[t], cs[t], tanh_c[t], hs[t], small
            )
        else:
            _lstm_fw_step(
                xw[t], hs[t - 1], cs[t - 1], hh, ci, cf, co, bias,
                gates[t], cs[t], tanh_c[t], hs[t], small,
            )  # fmt: skip
    restore_threads(threads)
    return hs, cs, gates, tanh_c


@jit
def _lstm_bw_step(
    gates, tanh_c, c_prev, cell, dh, dc, hh, ci, cf, co, dh_carry, dc_carry, d, sums, scratch, small
):  # pragma: no cover - compiled
    """Gate pre-activation gradients ``d`` of one step; updates both carries and ``sums``.

    ``sums`` (7, n) gathers the peephole gradients (ci, cf, co) and the four
    bias blocks.
    """
    batch, width = gates.shape
    n = width // 4
    one = gates.dtype.type(1)
    e, s = scratch[0], scratch[1]
    pi, pf, po, bias = sums[0], sums[1], sums[2], sums[3:].reshape(width)
    for b in range(batch):
        g, tc, cp, cb = gates[b], tanh_c[b], c_prev[b], cell[b]
        gi, gf, gg, go = g[:n], g[n : 2 * n], g[2 * n : 3 * n], g[3 * n :]
        dhb, kb, dcb, eb = dh[b], dh_carry[b], dc[b], dc_carry[b]
        db = d[b]
        di, df, dg, do = db[:n], db[n : 2 * n], db[2 * n : 3 * n], db[3 * n :]
        for j in range(n):
            e[j] = dhb[j] + kb[j]  # dL/dh_t
        for j in range(n):
            do[j] = e[j] * tc[j] * go[j] * (one - go[j])
        for j in range(n):
            s[j] = eb[j] + dcb[j] + e[j] * go[j] * (one - tc[j] * tc[j]) + do[j] * co[j]
        for j in range(n):
            di[j] = s[j] * gg[j] * gi[j] * (one - gi[j])
        for j in range(n):
            df[j] = s[j] * cp[j] * gf[j] * (one - gf[j])
        for j in range(n):
            dg[j] = s[j] * gi[j] * (one - gg[j] * gg[j])
        for j in range(n):
            eb[j] = s[j] * gf[j] + di[j] * ci[j] + df[j] * cf[j]  # dL/dc_{t-1}
        for j in range(width):
            bias[j] += db[j]
        for j in range(n):
            pi[j] += di[j] * cp[j]
        for j in range(n):
            pf[j] += df[j] * cp[j]
        for j in range(n):
            po[j] += do[j] * cb[j]
    gemm(d, hh, dh_carry, False, True, 0.0, small)


@jit
def _lstm_backward(
    hh, ci, cf, co, h0, c0, hs, cs, gates, tanh_c, dh, dc, truncate,
    d, dh_carry, dc_carry, dhh, dci, dcf, dco, db,
):  # pragma: no cover - compiled  # fmt: skip
    steps, batch, n = cs.shape
    width = 4 * n
    dtype = cs.dtype
    dh_carry[:] = 0
    dc_carry[:] = 0  # dL/dc_t, carried from step t + 1
    sums = np.zeros((7, n))  # float64 sums: ci, cf, co, then b (4 blocks)
    scratch = np.empty((2, n), dtype=dtype)
    start = _window(steps, truncate)
    d[:start] = 0  # steps outside the truncation window get no gradient
    threads = step_threads(batch * n * width)
    for t in range(steps - 1, start - 1, -1):
        if t > 0:
            c_prev = cs[t - 1]
            _lstm_bw_step(
                gates[t], tanh_c[t], c_prev, cs[t], dh[t], dc[t], hh, ci, cf, co,
                dh_carry, dc_carry, d[t], sums, scratch, threads >= 0,
            )  # fmt: skip
        else:
            _lstm_bw_step(
                gates[t], tanh_c[t], c0, cs[t], dh[t], dc[t], hh, ci, cf, co,
                dh_carry, dc_carry, d[t], sums, scratch, threads >= 0,
            )  # fmt: skip
    restore_threads(threads)
    if start > 0:
        dh_carry[:] = 0
        dc_carry[:] = 0
    _weight_grad(h0, hs, d.reshape((steps * batch, width)), start, dhh, threads == 1)
    for j in range(n):
        dci[j] = sums[0, j]
        dcf[j] = sums[1, j]
        dco[j] = sums[2, j]
    flat = sums[3:].reshape(width)
    for j in range(width):
        db[j] = flat[j]
    return d, dh_carry, dc_carry, dhh, dci, dcf, dco, db


# ----------------------------------------------------------------------
# GRU


@jit
def _gru_fw_step(
    xw, h_prev, hh, hrz, code, pre, hid, rate, out, reset, gates, rh, small
):  # pragma: no cover - compiled
    batch, n = pre.shape
    gemm(h_prev, hrz, gates, False, False, 0.0, small)
    for b in range(batch):
        # slices rather than offsets (n + j): indices that cannot be negative
        # keep the loops vectorised
        g, x, hp = gates[b], xw[b, n:], h_prev[b]
        r, z, q, gz = reset[b], rate[b], rh[b], gates[b, n:]
        for j in range(2 * n):
            g[j] = sigmoid(g[j] + x[j])
        for j in range(n):
            r[j] = g[j]
        for j in range(n):
            z[j] = gz[j]
        for j in range(n):
            q[j] = r[j] * hp[j]
    gemm(rh, hh, pre, False, False, 0.0, small)
    for b in range(batch):
        p, x = pre[b], xw[b]
        for j in range(n):
            p[j] += x[j]
    _activate(code, pre, hid)
    for b in range(batch):
        y, hp, z, o = hid[b], h_prev[b], rate[b], out[b]
        for j in range(n):
            o[j] = hp[j] + z[j] * (y[j] - hp[j])


@jit
def _gru_forward(xw, h0, hh, hrz, code, pre, hid, rate, out, reset):  # pragma: no cover - compiled
    steps, batch, width = xw.shape
    n = width // 3
    gates = np.empty((batch, 2 * n), dtype=xw.dtype)
    rh = np.empty((batch, n), dtype=xw.dtype)
    threads = step_threads(batch * n * 2 * n)
    small = threads >= 0
    for t in range(steps):
        if t == 0:
            _gru_fw_step(
                xw[t], h0, hh, hrz, code, pre[t], hid[t], rate[t], out[t], reset[t],
                gates, rh, small,
            )  # fmt: skip
        else:
            _gru_fw_step(
                xw[t], out[t - 1], hh, hrz, code, pre[t], hid[t], rate[t], out[t], reset[t],
                gates, rh, small,
            )  # fmt: skip
    restore_threads(threads)
    return pre, hid, rate, out, reset


@jit
def _gru_bw_step(
    code, pre, hid, rate, h_prev, reset, dpre, dhid, drate, dout, hh, hrz, carry, d, scratch, small
):  # pragma: no cover - compiled
    """Gradients ``d`` = [candidate, reset, update] of one step; updates ``carry``."""
    batch, n = pre.shape
    one = pre.dtype.type(1)
    deriv, drh = scratch[0], scratch[1]
    _derivative(code, pre, hid, deriv)
    e = scratch[2, 0]
    for b in range(batch):
        z, y, hp, k, fd = rate[b], hid[b], h_prev[b], carry[b], deriv[b]
        o, qh, qz, qp = dout[b], dhid[b], drate[b], dpre[b]
        db = d[b]
        dcand, dz = db[:n], db[2 * n :]
        for j in range(n):
            e[j] = o[j] + k[j]  # dL/dh_t
        for j in range(n):
            dz[j] = (e[j] * (y[j] - hp[j]) + qz[j]) * z[j] * (one - z[j])
        for j in range(n):
            dcand[j] = (e[j] * z[j] + qh[j]) * fd[j] + qp[j]
        for j in range(n):
            k[j] = e[j] * (one - z[j])
    gemm(d[:, :n], hh, drh, False, True, 0.0, small)
    for b in range(batch):
        r, hp, k, q = reset[b], h_prev[b], carry[b], drh[b]
        dr = d[b, n : 2 * n]
        for j in range(n):
            dr[j] = q[j] * hp[j] * r[j] * (one - r[j])
        for j in range(n):
            k[j] += q[j] * r[j]
    gemm(d[:, n:], hrz, carry, False, True, 1.0, small)


@jit
def _gru_backward(
    hh, hrz, h0, pre, hid, rate, out, reset, dpre, dhid, drate, dout, code, truncate,
    d, carry, dhh, dhrz,
):  # pragma: no cover - compiled  # fmt: skip
    steps, batch, n = out.shape
    dtype = out.dtype
    carry[:] = 0
    scratch = np.empty((3, batch, n), dtype=dtype)
    start = _window(steps, truncate)
    d[:start] = 0  # steps outside the truncation window get no gradient
    threads = step_threads(batch * n * 2 * n)
    for t in range(steps - 1, start - 1, -1):
        if t > 0:
            _gru_bw_step(
                code, pre[t], hid[t], rate[t], out[t - 1], reset[t], dpre[t], dhid[t],
                drate[t], dout[t], hh, hrz, carry, d[t], scratch, threads >= 0,
            )  # fmt: skip
        else:
            _gru_bw_step(
                code, pre[t], hid[t], rate[t], h0, reset[t], dpre[t], dhid[t],
                drate[t], dout[t], hh, hrz, carry, d[t], scratch, threads >= 0,
            )  # fmt: skip
    restore_threads(threads)
    if start > 0:
        carry[:] = 0
    flat = d.reshape((steps * batch, 3 * n))
    # r_t * h_{t-1} for every step, for the gradient of hh
    rh = np.empty_like(out)
    for t in range(start, steps):
        rh[t] = reset[t]
        if t > 0:
            _multiply(rh[t], out[t - 1])
        else:
            _multiply(rh[t], h0)
    dhh[:] = 0
    if start < steps:
        rows = rh.reshape((steps * batch, n))[start * batch :]
        gemm(rows, flat[start * batch :, :n], dhh, True, False, 0.0, threads == 1)
    _weight_grad(h0, out, flat[:, n:], start, dhrz, threads == 1)
    return d, carry, dhh, dhrz


# ----------------------------------------------------------------------
# the operations


def _cotangent(g, like):
    """A zero array for disconnected output gradients."""
    if isinstance(g.type, DisconnectedType):
        return pt.zeros_like(like)
    return g


def _register_backends():
    """Register the Numba versions of the fused operations (done once)."""
    _register_numba()


class _FusedOp(BackendOp):
    """Shared plumbing: dtype unification, shapes, and running the compiled loop.

    Subclasses name their compiled loop in ``_kernel`` and the extra
    (static) arguments it takes after the inputs in :meth:`_static`. The
    Numba versions of all six operations are registered when the first one
    is made.
    """

    _kernel = None
    register_backends = staticmethod(_register_backends)

    def _tensors(self, *inputs):
        inputs = [pt.as_tensor_variable(i) for i in inputs]
        dtype = inputs[0].dtype
        return [pt.cast(i, dtype) if i.dtype != dtype else i for i in inputs]

    @staticmethod
    def _seq_type(like, width=None):
        return pt.TensorType(like.dtype, shape=(None, None, width))

    def _static(self):
        return ()

    def perform(self, node, inputs, output_storage):
        """Run the compiled loop on the input arrays, into reused output arrays."""
        arrays = [np.ascontiguousarray(x) for x in inputs]
        shapes = self.infer_shape(None, node, [a.shape for a in arrays])
        outputs = output_buffers(self, node, output_storage, shapes)
        type(self)._kernel(*arrays, *self._static(), *outputs)
        for storage, value in zip(output_storage, outputs):
            storage[0] = value

    def __getstate__(self):
        return drop_buffers(self.__dict__)


# ----------------------------------------------------------------------
# RNN


class RNNForward(_FusedOp):
    """The simple (Elman) recurrence over a whole sequence.

    ``pre_t = xw_t + h_{t-1} hh`` and ``h_t = f(pre_t)``. Inputs ``xw``
    (T, B, n), ``h0`` (B, n), ``hh`` (n, n); outputs ``pre`` and ``out``
    (T, B, n).

    Parameters
    ----------
    activation : str
        The activation :math:`f`: ``'linear'``, ``'relu'``, ``'tanh'``,
        ``'sigmoid'`` or ``'logistic'``.
    truncate : int, optional
        Handed to the backward op: the layer's ``bptt_limit``, or -1
        (default) for none.
    """

    __props__ = ("activation", "truncate")
    _kernel = _rnn_forward

    def __init__(self, activation, truncate=-1):
        self.activation = activation
        self.truncate = truncate
        super().__init__()

    def _static(self):
        return (_CODES[self.activation],)

    def make_node(self, xw, h0, hh):
        xw, h0, hh = self._tensors(xw, h0, hh)
        return Apply(self, [xw, h0, hh], [xw.type(), xw.type()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0], shapes[0]]

    def pullback(self, inputs, outputs, cotangents):
        xw, h0, hh = inputs
        pre, out = outputs
        dpre, dout = (_cotangent(g, o) for g, o in zip(cotangents, outputs))
        dxw, dh0, dhh = RNNBackward(self.activation, self.truncate)(hh, h0, pre, out, dpre, dout)
        return [dxw, dh0, dhh]


class RNNBackward(_FusedOp):
    """Reverse pass of :class:`RNNForward`: gradients of ``xw``, ``h0`` and ``hh``.

    Parameters
    ----------
    activation, truncate
        As for :class:`RNNForward`; unless ``truncate`` is -1, the gradient
        reaches only that many of the last steps read.
    """

    __props__ = ("activation", "truncate")
    _kernel = _rnn_backward

    def __init__(self, activation, truncate=-1):
        self.activation = activation
        self.truncate = truncate
        super().__init__()

    def _static(self):
        return (_CODES[self.activation], self.truncate)

    def make_node(self, hh, h0, pre, out, dpre, dout):
        inputs = self._tensors(hh, h0, pre, out, dpre, dout)
        matrix = pt.TensorType(inputs[0].dtype, shape=(None, None))
        return Apply(self, inputs, [inputs[2].type(), matrix(), matrix()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[2], shapes[1], shapes[0]]

    def pullback(self, inputs, outputs, cotangents):
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]


def rnn(layer, xw, h0):
    """Fused forward pass of an :class:`RNN` layer.

    Parameters
    ----------
    layer : :class:`theanets.layers.recurrent.RNN`
        The layer, for its activation, direction, ``bptt_limit`` and ``hh``.
    xw : tensor (time, batch, size)
        Projected inputs ``x W_{xh} + b``, time-major, in input time order.
    h0 : tensor (batch, size)
        Initial state.

    Returns
    -------
    pre : TensorVariable
        The values :math:`z_t` before the activation, of shape (time, batch,
        size), time-major, in input time order.
    out : TensorVariable
        The states :math:`h_t`, laid out like ``pre``.
    """
    op = RNNForward(_activation_name(layer), _truncate(layer))
    seq = xw[::-1] if layer.backwards else xw
    pre, out = op(seq, h0, layer.find("hh"))
    if layer.backwards:
        pre, out = pre[::-1], out[::-1]
    return pre, out


def _truncate(layer):
    return -1 if layer.bptt_limit is None else int(layer.bptt_limit)


# ----------------------------------------------------------------------
# LSTM


class LSTMForward(_FusedOp):
    """The peephole LSTM recurrence over a whole sequence.

    Inputs ``xw`` (T, B, 4n), ``h0``, ``c0`` (B, n), ``hh`` (n, 4n), ``ci``,
    ``cf``, ``co`` (n) and ``b`` (4n). Outputs ``h``, ``c`` (T, B, n), and
    the gate values ``[i, f, g, o]`` (T, B, 4n) and ``tanh(c)`` (T, B, n),
    which only the gradient uses.

    Parameters
    ----------
    truncate : int, optional
        Handed to :class:`LSTMBackward`: ``bptt_limit``, or -1 (default) for
        no limit.
    """

    __props__ = ("truncate",)
    _kernel = _lstm_forward

    def __init__(self, truncate=-1):
        self.truncate = truncate
        super().__init__()

    def make_node(self, xw, h0, c0, hh, ci, cf, co, b):
        inputs = self._tensors(xw, h0, c0, hh, ci, cf, co, b)
        xw = inputs[0]
        seq = self._seq_type(xw)
        return Apply(self, inputs, [seq(), seq(), xw.type(), seq()])

    def infer_shape(self, fgraph, node, shapes):
        steps, batch, _ = shapes[0]
        n = shapes[1][1]
        return [(steps, batch, n), (steps, batch, n), shapes[0], (steps, batch, n)]

    def pullback(self, inputs, outputs, cotangents):
        xw, h0, c0, hh, ci, cf, co, bias = inputs
        hs, cs, gates, tanh_c = outputs
        dh = _cotangent(cotangents[0], hs)
        dc = _cotangent(cotangents[1], cs)
        if not all(isinstance(g.type, DisconnectedType) for g in cotangents[2:]):
            return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]
        back = LSTMBackward(self.truncate)
        return back(hh, ci, cf, co, h0, c0, hs, cs, gates, tanh_c, dh, dc)


class LSTMBackward(_FusedOp):
    """Reverse pass of :class:`LSTMForward`.

    Outputs the gradients of ``xw``, ``h0``, ``c0``, ``hh``, ``ci``, ``cf``,
    ``co`` and ``b``, in the order of the forward op's inputs.

    Parameters
    ----------
    truncate : int, optional
        How many of the last steps the gradient goes back through; -1
        (default) means all of them.
    """

    __props__ = ("truncate",)
    _kernel = _lstm_backward

    def __init__(self, truncate=-1):
        self.truncate = truncate
        super().__init__()

    def _static(self):
        return (self.truncate,)

    def make_node(self, hh, ci, cf, co, h0, c0, hs, cs, gates, tanh_c, dh, dc):
        inputs = self._tensors(hh, ci, cf, co, h0, c0, hs, cs, gates, tanh_c, dh, dc)
        dtype = inputs[0].dtype
        matrix = pt.TensorType(dtype, shape=(None, None))
        vector = pt.TensorType(dtype, shape=(None,))
        outputs = [inputs[8].type(), matrix(), matrix(), matrix()] + [vector() for _ in range(4)]
        return Apply(self, inputs, outputs)

    def infer_shape(self, fgraph, node, shapes):
        n = shapes[1]
        return [shapes[8], shapes[4], shapes[5], shapes[0], n, n, n, (4 * n[0],)]

    def pullback(self, inputs, outputs, cotangents):
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]


def lstm(layer, xw, h0, c0):
    """Fused forward pass of an :class:`LSTM` layer.

    Parameters
    ----------
    layer : :class:`theanets.layers.recurrent.LSTM`
        The layer, for its direction, ``bptt_limit`` and parameters.
    xw : tensor (time, batch, 4 size)
        Projected inputs ``x W_{xh}`` (without the bias, which the loop
        adds), time-major, in input time order.
    h0, c0 : tensors (batch, size)
        Initial hidden and cell states.

    Returns
    -------
    out : TensorVariable
        The hidden states :math:`h_t`, of shape (time, batch, size),
        time-major, in input time order.
    cell : TensorVariable
        The cell states :math:`c_t`, laid out like ``out``.
    """
    op = LSTMForward(_truncate(layer))
    seq = xw[::-1] if layer.backwards else xw
    peep = [layer.find("ci"), layer.find("cf"), layer.find("co")]
    out, cell, _, _ = op(seq, h0, c0, layer.find("hh"), *peep, layer.find("b"))
    if layer.backwards:
        out, cell = out[::-1], cell[::-1]
    return out, cell


# ----------------------------------------------------------------------
# GRU


class GRUForward(_FusedOp):
    """The GRU recurrence over a whole sequence.

    Inputs ``xw`` (T, B, 3n) holding the candidate, reset and update
    projections, ``h0`` (B, n), ``hh`` (n, n) and ``hrz`` = ``[hr, hz]``
    (n, 2n). Outputs ``pre``, ``hid``, ``rate``, ``out`` and the reset
    gates ``r`` (T, B, n), which only the gradient uses.

    Parameters
    ----------
    activation : str
        The activation of the candidate state, one of those
        :class:`RNNForward` takes.
    truncate : int, optional
        Passed on to :class:`GRUBackward` (-1, the default, for no limit).
    """

    __props__ = ("activation", "truncate")
    _kernel = _gru_forward

    def __init__(self, activation, truncate=-1):
        self.activation = activation
        self.truncate = truncate
        super().__init__()

    def _static(self):
        return (_CODES[self.activation],)

    def make_node(self, xw, h0, hh, hrz):
        inputs = self._tensors(xw, h0, hh, hrz)
        seq = self._seq_type(inputs[0])
        return Apply(self, inputs, [seq() for _ in range(5)])

    def infer_shape(self, fgraph, node, shapes):
        steps, batch, _ = shapes[0]
        return [(steps, batch, shapes[1][1])] * 5

    def pullback(self, inputs, outputs, cotangents):
        xw, h0, hh, hrz = inputs
        pre, hid, rate, out, reset = outputs
        if not isinstance(cotangents[4].type, DisconnectedType):
            return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]
        dpre, dhid, drate, dout = (_cotangent(g, o) for g, o in zip(cotangents[:4], outputs[:4]))
        back = GRUBackward(self.activation, self.truncate)
        return back(hh, hrz, h0, pre, hid, rate, out, reset, dpre, dhid, drate, dout)


class GRUBackward(_FusedOp):
    """Reverse pass of :class:`GRUForward`: gradients of ``xw``, ``h0``, ``hh`` and ``hrz``.

    Parameters
    ----------
    activation, truncate
        The forward op's; the gradient goes back at most ``truncate`` steps
        unless that is -1.
    """

    __props__ = ("activation", "truncate")
    _kernel = _gru_backward

    def __init__(self, activation, truncate=-1):
        self.activation = activation
        self.truncate = truncate
        super().__init__()

    def _static(self):
        return (_CODES[self.activation], self.truncate)

    def make_node(self, *inputs):
        inputs = self._tensors(*inputs)
        matrix = pt.TensorType(inputs[0].dtype, shape=(None, None))
        return Apply(self, inputs, [self._seq_type(inputs[0])(), matrix(), matrix(), matrix()])

    def infer_shape(self, fgraph, node, shapes):
        steps, batch, n = shapes[3]
        return [(steps, batch, 3 * n), shapes[2], shapes[0], shapes[1]]

    def pullback(self, inputs, outputs, cotangents):
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]


def gru(layer, xw, h0):
    """Fused forward pass of a :class:`GRU` layer.

    Parameters
    ----------
    layer : :class:`theanets.layers.recurrent.GRU`
        The layer, for its activation, direction, ``bptt_limit`` and the
        recurrent weights.
    xw : tensor (time, batch, 3 size)
        Projected inputs ``x W + b``, time-major, in input time order.
    h0 : tensor (batch, size)
        Initial state.

    Returns
    -------
    list of TensorVariable
        ``pre``, ``hid``, ``rate`` and ``out``, each of shape (time, batch,
        size), time-major, in input time order.
    """
    op = GRUForward(_activation_name(layer), _truncate(layer))
    seq = xw[::-1] if layer.backwards else xw
    hrz = pt.concatenate([layer.find("hr"), layer.find("hz")], axis=1)
    pre, hid, rate, out, _ = op(seq, h0, layer.find("hh"), hrz)
    result = [pre, hid, rate, out]
    if layer.backwards:
        result = [r[::-1] for r in result]
    return result


# ----------------------------------------------------------------------
# PyTensor's Numba backend


@once
def _register_numba():
    """Compile the ops into PyTensor's Numba graphs (instead of object-mode calls).

    Each op becomes a small Numba function that makes its inputs contiguous,
    allocates its outputs and calls the op's compiled loop with the op's
    static arguments; the cache key is the op's props, so PyTensor's Numba
    cache can keep whole training graphs.
    """
    numba = numba_dispatch()
    if numba is None:  # pragma: no cover - an older PyTensor
        return
    numba_njit, register_funcify_default_op_cache_key = numba
    c = np.ascontiguousarray

    @register_funcify_default_op_cache_key(RNNForward)
    def _rnn_fw(op, node=None, **kwargs):
        code = _CODES[op.activation]

        @numba_njit
        def rnn_forward(xw, h0, hh):
            xw = c(xw)
            pre, out = np.empty_like(xw), np.empty_like(xw)
            return _rnn_forward(xw, c(h0), c(hh), code, pre, out)

        return rnn_forward, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(RNNBackward)
    def _rnn_bw(op, node=None, **kwargs):
        code, truncate = _CODES[op.activation], op.truncate

        @numba_njit
        def rnn_backward(hh, h0, pre, out, dpre, dout):
            pre, hh = c(pre), c(hh)
            dxw = np.empty_like(pre)
            carry = np.empty((pre.shape[1], pre.shape[2]), dtype=pre.dtype)
            dhh = np.empty(hh.shape, dtype=pre.dtype)
            return _rnn_backward(
                hh, c(h0), pre, c(out), c(dpre), c(dout), code, truncate, dxw, carry, dhh
            )

        return rnn_backward, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(LSTMForward)
    def _lstm_fw(op, node=None, **kwargs):
        @numba_njit
        def lstm_forward(xw, h0, c0, hh, ci, cf, co, b):
            xw = c(xw)
            steps, batch, width = xw.shape
            hs = np.empty((steps, batch, width // 4), dtype=xw.dtype)
            cs, tanh_c, gates = np.empty_like(hs), np.empty_like(hs), np.empty_like(xw)
            return _lstm_forward(
                xw, c(h0), c(c0), c(hh), c(ci), c(cf), c(co), c(b), hs, cs, gates, tanh_c
            )

        return lstm_forward, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(LSTMBackward)
    def _lstm_bw(op, node=None, **kwargs):
        truncate = op.truncate

        @numba_njit
        def lstm_backward(hh, ci, cf, co, h0, c0, hs, cs, gates, tanh_c, dh, dc):
            hh, gates, h0 = c(hh), c(gates), c(h0)
            n = hh.shape[0]
            d = np.empty_like(gates)
            dh_carry, dc_carry = np.empty_like(h0), np.empty_like(h0)
            dhh = np.empty_like(hh)
            dci, dcf, dco = np.empty(n, hh.dtype), np.empty(n, hh.dtype), np.empty(n, hh.dtype)
            db = np.empty(4 * n, dtype=hh.dtype)
            return _lstm_backward(
                hh, c(ci), c(cf), c(co), h0, c(c0), c(hs), c(cs), gates, c(tanh_c),
                c(dh), c(dc), truncate, d, dh_carry, dc_carry, dhh, dci, dcf, dco, db,
            )  # fmt: skip

        return lstm_backward, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(GRUForward)
    def _gru_fw(op, node=None, **kwargs):
        code = _CODES[op.activation]

        @numba_njit
        def gru_forward(xw, h0, hh, hrz):
            xw = c(xw)
            steps, batch, width = xw.shape
            pre = np.empty((steps, batch, width // 3), dtype=xw.dtype)
            hid, rate, out, reset = [np.empty_like(pre) for _ in range(4)]
            return _gru_forward(xw, c(h0), c(hh), c(hrz), code, pre, hid, rate, out, reset)

        return gru_forward, _NUMBA_VERSION

    @register_funcify_default_op_cache_key(GRUBackward)
    def _gru_bw(op, node=None, **kwargs):
        code, truncate = _CODES[op.activation], op.truncate

        @numba_njit
        def gru_backward(hh, hrz, h0, pre, hid, rate, out, reset, dpre, dhid, drate, dout):
            hh, hrz, h0, out = c(hh), c(hrz), c(h0), c(out)
            steps, batch, n = out.shape
            d = np.empty((steps, batch, 3 * n), dtype=out.dtype)
            carry, dhh, dhrz = np.empty_like(h0), np.empty_like(hh), np.empty_like(hrz)
            return _gru_backward(
                hh, hrz, h0, c(pre), c(hid), c(rate), out, c(reset), c(dpre), c(dhid),
                c(drate), c(dout), code, truncate, d, carry, dhh, dhrz,
            )  # fmt: skip

        return gru_backward, _NUMBA_VERSION
