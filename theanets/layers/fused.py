"""Fused recurrent loops: whole-sequence PyTensor operations for RNN, LSTM and GRU.

A :func:`pytensor.scan` loop pays an interpreter round trip for every op of
every time step, forward and backward. The operations here run the entire
time loop of the common cells in one call instead. Each step is one BLAS
matrix product (:func:`numpy.matmul` into a preallocated buffer), NumPy's
SIMD-vectorised ``tanh`` (sigmoids are computed as
:math:`\\sigma(z) = (1 + \\tanh(z/2))/2`), and small Numba kernels that fuse
the remaining arithmetic of the step into one pass. The weight gradients
are a few large matrix products over all time steps.

Each cell has a forward :class:`~pytensor.graph.op.Op` and a backward one.
The forward op's :meth:`pullback` returns the backward op's outputs, so
gradients flow through :func:`pytensor.grad` like any other operation:
regularizers, optimizers, gradient clipping and ``bptt_limit`` work
unchanged. The backward ops themselves are not differentiable (no second
derivatives).

The per-step matrix products are small (batch x size x k size); when
:mod:`threadpoolctl` is installed they run on one BLAS thread, which is
faster than splitting them and avoids pathological slow-downs of spinning
BLAS threads on busy machines.

The scan implementations in :mod:`theanets.layers.recurrent` remain the
reference; the tests compare both. Inputs here are time-major: ``xw`` is the
projected input ``x W + b`` of shape ``(time, batch, k * size)``; backward
layers pass it reversed in time.
"""

import contextlib
import warnings

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

__all__ = ["supports", "rnn", "lstm", "gru"]


#: Activations the fused RNN and GRU loops implement, with their derivatives
#: written in terms of the pre-activation ``z`` and the output ``y``.
_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "logistic")


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


# ----------------------------------------------------------------------
# elementwise helpers (in place where possible)


def _sigmoid(z, out):
    """out = 1 / (1 + exp(-z)), computed as (1 + tanh(z / 2)) / 2.

    NumPy's ``tanh`` is vectorised (SIMD) while ``scipy.special.expit`` is
    not; on (64, 128) blocks this form is several times faster, and it
    cannot overflow. ``out`` may be ``z``.
    """
    np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def _apply(name, z, out):
    """out = f(z)."""
    if name == "linear":
        np.copyto(out, z)
    elif name == "relu":
        np.maximum(z, 0, out=out)
    elif name == "tanh":
        np.tanh(z, out=out)
    else:
        _sigmoid(z, out)
    return out


# ----------------------------------------------------------------------
# Numba kernels for the arithmetic of one time step.
#
# The transcendental functions stay in NumPy (its float32 ``tanh`` is SIMD
# vectorised, Numba's scalar one is several times slower); everything else
# of a step is fused into one pass over the (batch, size) block instead of a
# dozen NumPy calls. Constants come in as arguments of the arrays' dtype so
# that float32 stays float32. Sigmoids are computed as (1 + tanh(z / 2)) / 2.

_jit = numba.njit(cache=True, nogil=True)

#: Activation codes for the kernels.
_CODES = {"linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "logistic": 3}


@_jit
def _derivative(code, z, y, one):  # pragma: no cover - compiled
    """f'(z) from the pre-activation z and the output y = f(z)."""
    if code == 1:
        return one if z > 0 else one - one
    if code == 2:
        return one - y * y
    if code == 3:
        return y * (one - y)
    return one


# The kernels loop over rows and index one-dimensional row views: Numba then
# drops per-index bookkeeping and vectorises the inner loops (about twice as
# fast as two-dimensional indexing).


@_jit
def _lstm_fw_in(a, xw, bias, c, ci, cf, s1, s2, half):  # pragma: no cover - compiled
    """Gate pre-activations (with x W + b, peepholes, halved for the sigmoids).

    ``s1`` (batch, 3n) gets the input, forget and candidate parts, ready for
    one ``tanh``; ``s2[0]`` gets the output gate's part without its peephole.
    """
    batch, width = a.shape
    n = width // 4
    for b in range(batch):
        ab, xb, cb, sb, ob = a[b], xw[b], c[b], s1[b], s2[0, b]
        for j in range(n):
            sb[j] = half * (ab[j] + xb[j] + bias[j] + cb[j] * ci[j])
            sb[n + j] = half * (ab[n + j] + xb[n + j] + bias[n + j] + cb[j] * cf[j])
            sb[2 * n + j] = ab[2 * n + j] + xb[2 * n + j] + bias[2 * n + j]
            ob[j] = ab[3 * n + j] + xb[3 * n + j] + bias[3 * n + j]


@_jit
def _lstm_fw_cell(s1, c, co, gate, c_new, s2, half):  # pragma: no cover - compiled
    """Gates from their tanh values and the new cell.

    Leaves the halved output gate pre-activation in ``s2[0]`` and a copy of
    the cell in ``s2[1]``, ready for one ``tanh``.
    """
    batch, width = s1.shape
    n = width // 3
    for b in range(batch):
        sb, cb, gb, nb, ob, kb = s1[b], c[b], gate[b], c_new[b], s2[0, b], s2[1, b]
        for j in range(n):
            i = half + half * sb[j]
            f = half + half * sb[n + j]
            g = sb[2 * n + j]
            gb[j] = i
            gb[n + j] = f
            gb[2 * n + j] = g
            cell = f * cb[j] + i * g
            nb[j] = cell
            ob[j] = half * (ob[j] + cell * co[j])
            kb[j] = cell


@_jit
def _lstm_fw_out(s2, gate, tanh_c, h, half):  # pragma: no cover - compiled
    """Output gate from its tanh value; h = o tanh(c)."""
    batch, n = h.shape
    for b in range(batch):
        ob, kb, gb, tb, hb = s2[0, b], s2[1, b], gate[b], tanh_c[b], h[b]
        for j in range(n):
            o = half + half * ob[j]
            gb[3 * n + j] = o
            tb[j] = kb[j]
            hb[j] = o * kb[j]


@_jit
def _lstm_bw_step(
    gate, tanh_c, c_prev, c, dh, dh_carry, dc, dc_t, ci, cf, co, d, sums, one
):  # pragma: no cover - compiled
    """Gate pre-activation gradients of one step.

    Updates the cell carry ``dc_t`` and adds this step's peephole and bias
    gradients to ``sums`` (7, n): ci, cf, co, then the four bias blocks.
    """
    batch, width = gate.shape
    n = width // 4
    pi, pf, po = sums[0], sums[1], sums[2]
    bi, bf, bg, bo = sums[3], sums[4], sums[5], sums[6]
    for b in range(batch):
        gb, tb, pb, cb = gate[b], tanh_c[b], c_prev[b], c[b]
        hb, kb, db, eb, xb = dh[b], dh_carry[b], dc[b], dc_t[b], d[b]
        for j in range(n):
            i = gb[j]
            f = gb[n + j]
            g = gb[2 * n + j]
            o = gb[3 * n + j]
            tc = tb[j]
            dht = hb[j] + kb[j]
            do = dht * tc * o * (one - o)
            dct = eb[j] + db[j] + dht * o * (one - tc * tc) + do * co[j]
            di = dct * g * i * (one - i)
            df = dct * pb[j] * f * (one - f)
            dg = dct * i * (one - g * g)
            xb[j] = di
            xb[n + j] = df
            xb[2 * n + j] = dg
            xb[3 * n + j] = do
            bi[j] += di
            bf[j] += df
            bg[j] += dg
            bo[j] += do
            eb[j] = dct * f + di * ci[j] + df * cf[j]
            pi[j] += di * pb[j]
            pf[j] += df * pb[j]
            po[j] += do * cb[j]


@_jit
def _rnn_bw_step(code, pre, out, dpre, dout, carry, g, one):  # pragma: no cover - compiled
    """g = (dout + carry) f'(pre) + dpre for one step."""
    batch, n = pre.shape
    for b in range(batch):
        zb, yb, pb, ob, kb, gb = pre[b], out[b], dpre[b], dout[b], carry[b], g[b]
        for j in range(n):
            gb[j] = (ob[j] + kb[j]) * _derivative(code, zb[j], yb[j], one) + pb[j]


@_jit
def _gru_fw_gates(gates, xw, half):  # pragma: no cover - compiled
    """gates = (gates + [x_r, x_z]) / 2, ready for tanh."""
    batch, width = gates.shape
    n = width // 2
    for b in range(batch):
        gb, xb = gates[b], xw[b]
        for j in range(width):
            gb[j] = half * (gb[j] + xb[n + j])


@_jit
def _gru_fw_reset(gates, h, rh, reset, rate, half):  # pragma: no cover - compiled
    """Reset and update gates from their tanh values; rh = r h."""
    batch, width = gates.shape
    n = width // 2
    for b in range(batch):
        gb, hb, qb, rb, zb = gates[b], h[b], rh[b], reset[b], rate[b]
        for j in range(n):
            r = half + half * gb[j]
            rb[j] = r
            zb[j] = half + half * gb[n + j]
            qb[j] = r * hb[j]


@_jit
def _gru_fw_out(hid, h, z, out):  # pragma: no cover - compiled
    """out = h + z (hid - h)."""
    batch, n = hid.shape
    for b in range(batch):
        yb, hb, zb, ob = hid[b], h[b], z[b], out[b]
        for j in range(n):
            ob[j] = hb[j] + zb[j] * (yb[j] - hb[j])


@_jit
def _gru_bw_a(
    code, pre, hid, rate, h_prev, dout, dhid, drate, dpre, carry, d, one
):  # pragma: no cover - compiled
    """Update-gate and candidate gradients; carry <- dh (1 - z)."""
    batch, n = pre.shape
    for b in range(batch):
        pb, yb, zb, hb = pre[b], hid[b], rate[b], h_prev[b]
        ob, qb, rb, sb, kb, db = dout[b], dhid[b], drate[b], dpre[b], carry[b], d[b]
        for j in range(n):
            z = zb[j]
            dht = ob[j] + kb[j]
            db[2 * n + j] = (dht * (yb[j] - hb[j]) + rb[j]) * z * (one - z)
            db[j] = (dht * z + qb[j]) * _derivative(code, pb[j], yb[j], one) + sb[j]
            kb[j] = dht * (one - z)


@_jit
def _gru_bw_b(drh, h_prev, reset, carry, d, one):  # pragma: no cover - compiled
    """Reset-gate gradients; carry += drh r."""
    batch, n = drh.shape
    for b in range(batch):
        qb, hb, rb, kb, db = drh[b], h_prev[b], reset[b], carry[b], d[b]
        for j in range(n):
            r = rb[j]
            db[n + j] = qb[j] * hb[j] * r * (one - r)
            kb[j] += qb[j] * r


# Below this many multiply-adds, the per-step matrix products run on one BLAS
# thread: splitting them costs more in synchronisation than it saves, and
# spinning helper threads slow everything else down on a busy machine.
_SINGLE_THREAD_MACS = 1 << 24
_controller = None


def _blas_threads(batch, n_in, n_out):
    """A context that keeps NumPy's BLAS on one thread for small step products.

    Uses :mod:`threadpoolctl` when it is installed; otherwise does nothing.
    """
    global _controller
    if batch * n_in * n_out >= _SINGLE_THREAD_MACS:
        return contextlib.nullcontext()
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController()
    if not _controller:
        return contextlib.nullcontext()
    return _controller.limit(limits=1, user_api="blas")


def _cotangent(g, like):
    """A zero array for disconnected output gradients."""
    if isinstance(g.type, DisconnectedType):
        return pt.zeros_like(like)
    return g


def _flat_np(x):
    return x.reshape(-1, x.shape[-1])


def _weight_grad(h0, hs, d):
    """sum_t h_{t-1}^T d_t with h_{-1} = h0, as two matrix products without copies."""
    grad = h0.T @ d[0]
    if len(hs) > 1:
        grad += _flat_np(hs[:-1]).T @ _flat_np(d[1:])
    return grad


def _window(steps, truncate):
    """First time step the backward loop visits (truncated back-propagation)."""
    return 0 if truncate < 0 else max(steps - truncate, 0)


class _FusedOp(Op):
    """Shared plumbing: dtype unification and shapes."""

    def _tensors(self, *inputs):
        inputs = [pt.as_tensor_variable(i) for i in inputs]
        dtype = inputs[0].dtype
        return [pt.cast(i, dtype) if i.dtype != dtype else i for i in inputs]

    @staticmethod
    def _seq_type(like, width=None):
        return pt.TensorType(like.dtype, shape=(None, None, width))


# ----------------------------------------------------------------------
# RNN


class RNNForward(_FusedOp):
    """pre_t = xw_t + h_{t-1} hh; h_t = f(pre_t) over a whole sequence.

    Inputs ``xw`` (T, B, n), ``h0`` (B, n), ``hh`` (n, n); outputs ``pre``
    and ``out`` (T, B, n).
    """

    __props__ = ("activation", "truncate")

    def __init__(self, activation, truncate=-1):
        self.activation = activation
        self.truncate = truncate

    def make_node(self, xw, h0, hh):
        xw, h0, hh = self._tensors(xw, h0, hh)
        return Apply(self, [xw, h0, hh], [xw.type(), xw.type()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0], shapes[0]]

    def perform(self, node, inputs, output_storage):
        xw, h0, hh = inputs
        steps, batch, n = xw.shape
        pre = np.empty(xw.shape, dtype=xw.dtype)
        out = np.empty(xw.shape, dtype=xw.dtype)
        h = h0
        with _blas_threads(batch, n, n):
            for t in range(steps):
                np.matmul(h, hh, out=pre[t])
                pre[t] += xw[t]
                h = _apply(self.activation, pre[t], out[t])
        output_storage[0][0] = pre
        output_storage[1][0] = out

    def pullback(self, inputs, outputs, cotangents):
        xw, h0, hh = inputs
        pre, out = outputs
        dpre, dout = (_cotangent(g, o) for g, o in zip(cotangents, outputs))
        dxw, dh0, dhh = RNNBackward(self.activation, self.truncate)(hh, h0, pre, out, dpre, dout)
        return [dxw, dh0, dhh]


class RNNBackward(_FusedOp):
    """Reverse pass of :class:`RNNForward`: gradients of ``xw``, ``h0`` and ``hh``."""

    __props__ = ("activation", "truncate")

    def __init__(self, activation, truncate=-1):
        self.activation = activation
        self.truncate = truncate

    def make_node(self, hh, h0, pre, out, dpre, dout):
        inputs = self._tensors(hh, h0, pre, out, dpre, dout)
        matrix = pt.TensorType(inputs[0].dtype, shape=(None, None))
        return Apply(self, inputs, [inputs[2].type(), matrix(), matrix()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[2], shapes[1], shapes[0]]

    def perform(self, node, inputs, output_storage):
        hh, h0, pre, out, dpre, dout = inputs
        steps, batch, n = pre.shape
        one = pre.dtype.type(1)
        code = _CODES[self.activation]
        dxw = np.empty(pre.shape, dtype=pre.dtype)
        carry = np.zeros((batch, n), dtype=pre.dtype)  # dL/dh_t from step t+1
        start = _window(steps, self.truncate)
        with _blas_threads(batch, n, n):
            for t in range(steps - 1, start - 1, -1):
                _rnn_bw_step(code, pre[t], out[t], dpre[t], dout[t], carry, dxw[t], one)
                np.matmul(dxw[t], hh.T, out=carry)
        dxw[:start] = 0  # steps outside the truncation window get no gradient
        if start > 0:
            carry[...] = 0
        output_storage[0][0] = dxw
        output_storage[1][0] = carry
        output_storage[2][0] = _weight_grad(h0, out, dxw)

    def pullback(self, inputs, outputs, cotangents):
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]


def rnn(layer, xw, h0):
    """Fused forward pass of an :class:`RNN` layer.

    Parameters
    ----------
    layer : :class:`theanets.layers.recurrent.RNN`
    xw : tensor (time, batch, size)
        Projected inputs ``x W_{xh} + b``, time-major, in input time order.
    h0 : tensor (batch, size)
        Initial state.

    Returns
    -------
    pre, out : tensors (time, batch, size)
        Time-major, in input time order.
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
    ``cf``, ``co`` (n). Outputs ``h``, ``c`` (T, B, n), and the gate values
    ``[i, f, g, o]`` (T, B, 4n) and ``tanh(c)`` (T, B, n), which only the
    gradient uses.
    """

    __props__ = ("truncate",)

    def __init__(self, truncate=-1):
        self.truncate = truncate

    def make_node(self, xw, h0, c0, hh, ci, cf, co, b):
        inputs = self._tensors(xw, h0, c0, hh, ci, cf, co, b)
        xw = inputs[0]
        seq = self._seq_type(xw)
        return Apply(self, inputs, [seq(), seq(), xw.type(), seq()])

    def infer_shape(self, fgraph, node, shapes):
        steps, batch, _ = shapes[0]
        n = shapes[1][1]
        return [(steps, batch, n), (steps, batch, n), shapes[0], (steps, batch, n)]

    def perform(self, node, inputs, output_storage):
        xw, h0, c0, hh, ci, cf, co, bias = inputs
        steps, batch, width = xw.shape
        n = width // 4
        half = xw.dtype.type(0.5)
        hs = np.empty((steps, batch, n), dtype=xw.dtype)
        cs = np.empty((steps, batch, n), dtype=xw.dtype)
        tanh_c = np.empty((steps, batch, n), dtype=xw.dtype)
        gates = np.empty(xw.shape, dtype=xw.dtype)
        a = np.empty((batch, width), dtype=xw.dtype)
        s1 = np.empty((batch, 3 * n), dtype=xw.dtype)
        s2 = np.empty((2, batch, n), dtype=xw.dtype)
        h, c = h0, c0
        with _blas_threads(batch, n, width):
            for t in range(steps):
                np.matmul(h, hh, out=a)
                _lstm_fw_in(a, xw[t], bias, c, ci, cf, s1, s2, half)
                np.tanh(s1, out=s1)
                _lstm_fw_cell(s1, c, co, gates[t], cs[t], s2, half)
                np.tanh(s2, out=s2)
                _lstm_fw_out(s2, gates[t], tanh_c[t], hs[t], half)
                h, c = hs[t], cs[t]
        output_storage[0][0] = hs
        output_storage[1][0] = cs
        output_storage[2][0] = gates
        output_storage[3][0] = tanh_c

    def pullback(self, inputs, outputs, cotangents):
        xw, h0, c0, hh, ci, cf, co, bias = inputs
        hs, cs, gates, tanh_c = outputs
        dh = _cotangent(cotangents[0], hs)
        dc = _cotangent(cotangents[1], cs)
        if not all(isinstance(g.type, DisconnectedType) for g in cotangents[2:]):
            return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]
        back = LSTMBackward(self.truncate)
        grads = back(hh, ci, cf, co, h0, c0, hs, cs, gates, tanh_c, dh, dc)
        return grads


class LSTMBackward(_FusedOp):
    """Reverse pass of :class:`LSTMForward`.

    Outputs the gradients of ``xw``, ``h0``, ``c0``, ``hh``, ``ci``, ``cf``,
    ``co`` and ``b``, in the order of the forward op's inputs.
    """

    __props__ = ("truncate",)

    def __init__(self, truncate=-1):
        self.truncate = truncate

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

    def perform(self, node, inputs, output_storage):
        hh, ci, cf, co, h0, c0, hs, cs, gates, tanh_c, dh, dc = inputs
        steps, batch, n = cs.shape
        one = cs.dtype.type(1)
        da = np.empty(gates.shape, dtype=gates.dtype)
        dh_carry = np.zeros((batch, n), dtype=cs.dtype)
        dc_t = np.zeros_like(dh_carry)  # dL/dc_t, carried from step t+1
        sums = np.zeros((7, n))  # float64 sums: ci, cf, co, then b (4 blocks)
        start = _window(steps, self.truncate)
        with _blas_threads(batch, n, 4 * n):
            for t in range(steps - 1, start - 1, -1):
                c_prev = cs[t - 1] if t > 0 else c0
                _lstm_bw_step(
                    gates[t],
                    tanh_c[t],
                    c_prev,
                    cs[t],
                    dh[t],
                    dh_carry,
                    dc[t],
                    dc_t,
                    ci,
                    cf,
                    co,
                    da[t],
                    sums,
                    one,
                )
                np.matmul(da[t], hh.T, out=dh_carry)
        da[:start] = 0  # steps outside the truncation window get no gradient
        if start > 0:
            dh_carry[...] = 0
            dc_t[...] = 0
        output_storage[0][0] = da
        output_storage[1][0] = dh_carry
        output_storage[2][0] = dc_t
        output_storage[3][0] = _weight_grad(h0, hs, da)
        for k in range(3):
            output_storage[4 + k][0] = sums[k].astype(cs.dtype)
        output_storage[7][0] = sums[3:].reshape(-1).astype(cs.dtype)

    def pullback(self, inputs, outputs, cotangents):
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]


def lstm(layer, xw, h0, c0):
    """Fused forward pass of an :class:`LSTM` layer.

    Parameters
    ----------
    layer : :class:`theanets.layers.recurrent.LSTM`
    xw : tensor (time, batch, 4 size)
        Projected inputs ``x W_{xh}`` (without the bias, which the loop
        adds), time-major, in input time order.
    h0, c0 : tensors (batch, size)
        Initial hidden and cell states.

    Returns
    -------
    out, cell : tensors (time, batch, size)
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
    """

    __props__ = ("activation", "truncate")

    def __init__(self, activation, truncate=-1):
        self.activation = activation
        self.truncate = truncate

    def make_node(self, xw, h0, hh, hrz):
        inputs = self._tensors(xw, h0, hh, hrz)
        seq = self._seq_type(inputs[0])
        return Apply(self, inputs, [seq() for _ in range(5)])

    def infer_shape(self, fgraph, node, shapes):
        steps, batch, _ = shapes[0]
        return [(steps, batch, shapes[1][1])] * 5

    def perform(self, node, inputs, output_storage):
        xw, h0, hh, hrz = inputs
        steps, batch, width = xw.shape
        n = width // 3
        half = xw.dtype.type(0.5)
        pre, hid, rate, out, reset = (np.empty((steps, batch, n), dtype=xw.dtype) for _ in range(5))
        gates = np.empty((batch, 2 * n), dtype=xw.dtype)
        rh = np.empty((batch, n), dtype=xw.dtype)
        h = h0
        with _blas_threads(batch, n, 2 * n):
            for t in range(steps):
                np.matmul(h, hrz, out=gates)
                _gru_fw_gates(gates, xw[t], half)
                np.tanh(gates, out=gates)
                _gru_fw_reset(gates, h, rh, reset[t], rate[t], half)
                np.matmul(rh, hh, out=pre[t])
                pre[t] += xw[t, :, :n]
                _apply(self.activation, pre[t], hid[t])
                _gru_fw_out(hid[t], h, rate[t], out[t])
                h = out[t]
        for k, value in enumerate((pre, hid, rate, out, reset)):
            output_storage[k][0] = value

    def pullback(self, inputs, outputs, cotangents):
        xw, h0, hh, hrz = inputs
        pre, hid, rate, out, reset = outputs
        if not isinstance(cotangents[4].type, DisconnectedType):
            return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]
        dpre, dhid, drate, dout = (_cotangent(g, o) for g, o in zip(cotangents[:4], outputs[:4]))
        back = GRUBackward(self.activation, self.truncate)
        return back(hh, hrz, h0, pre, hid, rate, out, reset, dpre, dhid, drate, dout)


class GRUBackward(_FusedOp):
    """Reverse pass of :class:`GRUForward`: gradients of ``xw``, ``h0``, ``hh`` and ``hrz``."""

    __props__ = ("activation", "truncate")

    def __init__(self, activation, truncate=-1):
        self.activation = activation
        self.truncate = truncate

    def make_node(self, *inputs):
        inputs = self._tensors(*inputs)
        matrix = pt.TensorType(inputs[0].dtype, shape=(None, None))
        return Apply(self, inputs, [self._seq_type(inputs[0])(), matrix(), matrix(), matrix()])

    def infer_shape(self, fgraph, node, shapes):
        steps, batch, n = shapes[3]
        return [(steps, batch, 3 * n), shapes[2], shapes[0], shapes[1]]

    def perform(self, node, inputs, output_storage):
        hh, hrz, h0, pre, hid, rate, out, reset, dpre, dhid, drate, dout = inputs
        steps, batch, n = out.shape
        one = out.dtype.type(1)
        code = _CODES[self.activation]
        dxw = np.empty((steps, batch, 3 * n), dtype=out.dtype)
        carry = np.zeros((batch, n), dtype=out.dtype)
        drh = np.empty_like(carry)
        tmp = np.empty_like(carry)
        start = _window(steps, self.truncate)
        with _blas_threads(batch, n, 2 * n):
            for t in range(steps - 1, start - 1, -1):
                h_prev = out[t - 1] if t > 0 else h0
                d = dxw[t]
                _gru_bw_a(
                    code,
                    pre[t],
                    hid[t],
                    rate[t],
                    h_prev,
                    dout[t],
                    dhid[t],
                    drate[t],
                    dpre[t],
                    carry,
                    d,
                    one,
                )
                np.matmul(d[:, :n], hh.T, out=drh)
                _gru_bw_b(drh, h_prev, reset[t], carry, d, one)
                np.matmul(d[:, n:], hrz.T, out=tmp)
                carry += tmp
        dxw[:start] = 0  # steps outside the truncation window get no gradient
        if start > 0:
            carry[...] = 0
        # r * h_prev for every step, for the gradient of hh
        rh = np.empty_like(out)
        np.multiply(reset[1:], out[:-1], out=rh[1:])
        np.multiply(reset[0], h0, out=rh[0])
        output_storage[0][0] = dxw
        output_storage[1][0] = carry
        output_storage[2][0] = _flat_np(rh).T @ _flat_np(dxw[:, :, :n])
        output_storage[3][0] = _weight_grad(h0, out, dxw[:, :, n:])

    def pullback(self, inputs, outputs, cotangents):
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]


def gru(layer, xw, h0):
    """Fused forward pass of a :class:`GRU` layer.

    Parameters
    ----------
    layer : :class:`theanets.layers.recurrent.GRU`
    xw : tensor (time, batch, 3 size)
        Projected inputs ``x W + b``, time-major, in input time order.
    h0 : tensor (batch, size)
        Initial state.

    Returns
    -------
    pre, hid, rate, out : tensors (time, batch, size)
    """
    op = GRUForward(_activation_name(layer), _truncate(layer))
    seq = xw[::-1] if layer.backwards else xw
    hrz = pt.concatenate([layer.find("hr"), layer.find("hz")], axis=1)
    pre, hid, rate, out, _ = op(seq, h0, layer.find("hh"), hrz)
    result = [pre, hid, rate, out]
    if layer.backwards:
        result = [r[::-1] for r in result]
    return result


def _register_numba():
    """Let PyTensor's Numba backend run these ops in object mode without warning.

    Numba cannot compile Python ``perform`` methods, so PyTensor calls them
    from Numba's object mode and warns at every compilation; for these ops
    that is the intended way to run them (each call does a whole sequence).
    """
    try:
        from pytensor.link.numba.dispatch.basic import generate_fallback_impl, numba_funcify
    except ImportError:  # pragma: no cover - Numba missing
        return

    def funcify(op, node=None, storage_map=None, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Numba will use object mode")
            return generate_fallback_impl(op, node, storage_map, **kwargs)

    for cls in (RNNForward, RNNBackward, LSTMForward, LSTMBackward, GRUForward, GRUBackward):
        numba_funcify.register(cls)(funcify)


_register_numba()
