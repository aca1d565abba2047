"""Fused recurrent loops: whole-sequence PyTensor operations for RNN, LSTM and GRU.

A :func:`pytensor.scan` loop pays an interpreter round trip for every op of
every time step, forward and backward. The operations here run the entire
time loop of the common cells in one call instead: each step is one BLAS
matrix product (NumPy's :func:`numpy.matmul` into a preallocated buffer) plus
a handful of in-place elementwise NumPy operations.

Each cell has a forward :class:`~pytensor.graph.op.Op` and a backward one.
The forward op's :meth:`pullback` builds the gradient graph from the backward
op (which runs the recurrence in reverse and returns the gradients of the
pre-activations and of the initial states) and ordinary PyTensor expressions
for the weight gradients, which are single large matrix products over all
time steps. Gradients therefore flow through :func:`pytensor.grad` like any
other operation: regularizers, optimizers, gradient clipping and
``bptt_limit`` work unchanged. The backward ops themselves are not
differentiable (no second derivatives).

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


def _scale_by_derivative(name, grad, z, y, tmp):
    """grad *= f'(z), in place, using the output y = f(z); ``tmp`` is scratch space."""
    if name == "relu":
        np.greater(z, 0, out=tmp)
        grad *= tmp
    elif name == "tanh":
        np.multiply(y, y, out=tmp)
        np.subtract(1, tmp, out=tmp)
        grad *= tmp
    elif name in ("sigmoid", "logistic"):
        _times_dsigmoid(grad, y, tmp)
    return grad


def _times_dsigmoid(grad, s, tmp):
    """grad *= s (1 - s) for sigmoid outputs s, without temporaries."""
    np.multiply(s, s, out=tmp)
    np.subtract(s, tmp, out=tmp)
    grad *= tmp


# ----------------------------------------------------------------------
# Numba kernels for the arithmetic of one time step.
#
# The transcendental functions stay in NumPy (its float32 ``tanh`` is SIMD
# vectorised, Numba's scalar one is several times slower); everything else
# of a step is fused into one pass over the (batch, size) block, instead of a
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


@_jit
def _lstm_fw_in(a, xw, c, ci, cf, half):  # pragma: no cover - compiled
    """a += xw; peepholes; halve the input and forget gate pre-activations."""
    batch, width = a.shape
    n = width // 4
    for b in range(batch):
        for j in range(n):
            a[b, j] = half * (a[b, j] + xw[b, j] + c[b, j] * ci[j])
            a[b, n + j] = half * (a[b, n + j] + xw[b, n + j] + c[b, j] * cf[j])
            a[b, 2 * n + j] += xw[b, 2 * n + j]
            a[b, 3 * n + j] += xw[b, 3 * n + j]


@_jit
def _lstm_fw_cell(a, c, co, c_new, half):  # pragma: no cover - compiled
    """Gates from their tanh values; new cell; halved output gate pre-activation."""
    batch, width = a.shape
    n = width // 4
    for b in range(batch):
        for j in range(n):
            i = half + half * a[b, j]
            f = half + half * a[b, n + j]
            a[b, j] = i
            a[b, n + j] = f
            cell = f * c[b, j] + i * a[b, 2 * n + j]
            c_new[b, j] = cell
            a[b, 3 * n + j] = half * (a[b, 3 * n + j] + cell * co[j])


@_jit
def _lstm_fw_out(a, tanh_c, h, half):  # pragma: no cover - compiled
    """Output gate from its tanh value; h = o tanh(c)."""
    batch, width = a.shape
    n = width // 4
    for b in range(batch):
        for j in range(n):
            o = half + half * a[b, 3 * n + j]
            a[b, 3 * n + j] = o
            h[b, j] = o * tanh_c[b, j]


@_jit
def _lstm_bw_step(
    gate, tanh_c, c_prev, dh, dh_carry, dc, dc_t, ci, cf, co, d, one
):  # pragma: no cover
    """Gate pre-activation gradients of one step; updates the cell carry dc_t."""
    batch, width = gate.shape
    n = width // 4
    for b in range(batch):
        for j in range(n):
            i = gate[b, j]
            f = gate[b, n + j]
            g = gate[b, 2 * n + j]
            o = gate[b, 3 * n + j]
            tc = tanh_c[b, j]
            dht = dh[b, j] + dh_carry[b, j]
            do = dht * tc * o * (one - o)
            dct = dc_t[b, j] + dc[b, j] + dht * o * (one - tc * tc) + do * co[j]
            di = dct * g * i * (one - i)
            df = dct * c_prev[b, j] * f * (one - f)
            d[b, j] = di
            d[b, n + j] = df
            d[b, 2 * n + j] = dct * i * (one - g * g)
            d[b, 3 * n + j] = do
            dc_t[b, j] = dct * f + di * ci[j] + df * cf[j]


@_jit
def _rnn_bw_step(code, pre, out, dpre, dout, carry, g, one):  # pragma: no cover - compiled
    """g = (dout + carry) f'(pre) + dpre for one step."""
    batch, n = pre.shape
    for b in range(batch):
        for j in range(n):
            g[b, j] = (dout[b, j] + carry[b, j]) * _derivative(
                code, pre[b, j], out[b, j], one
            ) + dpre[b, j]


@_jit
def _gru_fw_gates(gates, xw, half):  # pragma: no cover - compiled
    """gates = (gates + [x_r, x_z]) / 2, ready for tanh."""
    batch, width = gates.shape
    n = width // 2
    for b in range(batch):
        for j in range(width):
            gates[b, j] = half * (gates[b, j] + xw[b, n + j])


@_jit
def _gru_fw_reset(gates, h, rh, reset, rate, half):  # pragma: no cover - compiled
    """Reset and update gates from their tanh values; rh = r h."""
    batch, width = gates.shape
    n = width // 2
    for b in range(batch):
        for j in range(n):
            r = half + half * gates[b, j]
            z = half + half * gates[b, n + j]
            reset[b, j] = r
            rate[b, j] = z
            rh[b, j] = r * h[b, j]


@_jit
def _gru_fw_out(hid, h, z, out):  # pragma: no cover - compiled
    """out = h + z (hid - h)."""
    batch, n = hid.shape
    for b in range(batch):
        for j in range(n):
            out[b, j] = h[b, j] + z[b, j] * (hid[b, j] - h[b, j])


@_jit
def _gru_bw_a(
    code, pre, hid, rate, h_prev, dout, dhid, drate, dpre, carry, d, one
):  # pragma: no cover
    """Update-gate and candidate gradients; carry <- dh (1 - z)."""
    batch, n = pre.shape
    for b in range(batch):
        for j in range(n):
            z = rate[b, j]
            dht = dout[b, j] + carry[b, j]
            d[b, 2 * n + j] = (dht * (hid[b, j] - h_prev[b, j]) + drate[b, j]) * z * (one - z)
            d[b, j] = (dht * z + dhid[b, j]) * _derivative(code, pre[b, j], hid[b, j], one) + dpre[
                b, j
            ]
            carry[b, j] = dht * (one - z)


@_jit
def _gru_bw_b(drh, h_prev, reset, carry, d, one):  # pragma: no cover - compiled
    """Reset-gate gradients; carry += drh r."""
    batch, n = drh.shape
    for b in range(batch):
        for j in range(n):
            r = reset[b, j]
            d[b, n + j] = drh[b, j] * h_prev[b, j] * r * (one - r)
            carry[b, j] += drh[b, j] * r


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


def _flat(x):
    return x.reshape((-1, x.shape[-1]))


def _previous(first, seq):
    """The sequence of previous states: [first, seq[0], ..., seq[T-2]]."""
    return pt.concatenate([first[None], seq[:-1]], axis=0)


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
        pre = np.empty_like(xw)
        out = np.empty_like(xw)
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
        back = RNNBackward(self.activation, self.truncate)
        dxw, dh0 = back(hh, pre, out, dpre, dout)
        dhh = pt.dot(_flat(_previous(h0, out)).T, _flat(dxw))
        return [dxw, dh0, dhh]


class RNNBackward(_FusedOp):
    """Reverse pass of :class:`RNNForward`: gradients of ``xw`` and ``h0``."""

    __props__ = ("activation", "truncate")

    def __init__(self, activation, truncate=-1):
        self.activation = activation
        self.truncate = truncate

    def make_node(self, hh, pre, out, dpre, dout):
        hh, pre, out, dpre, dout = self._tensors(hh, pre, out, dpre, dout)
        h0_type = pt.TensorType(pre.dtype, shape=(None, None))
        return Apply(self, [hh, pre, out, dpre, dout], [pre.type(), h0_type()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[1], shapes[1][1:]]

    def perform(self, node, inputs, output_storage):
        hh, pre, out, dpre, dout = inputs
        steps, batch, n = pre.shape
        one = pre.dtype.type(1)
        code = _CODES[self.activation]
        dxw = np.empty_like(pre)
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

    def make_node(self, xw, h0, c0, hh, ci, cf, co):
        inputs = self._tensors(xw, h0, c0, hh, ci, cf, co)
        xw = inputs[0]
        seq = self._seq_type(xw)
        return Apply(self, inputs, [seq(), seq(), xw.type(), seq()])

    def infer_shape(self, fgraph, node, shapes):
        steps, batch, _ = shapes[0]
        n = shapes[1][1]
        return [(steps, batch, n), (steps, batch, n), shapes[0], (steps, batch, n)]

    def perform(self, node, inputs, output_storage):
        xw, h0, c0, hh, ci, cf, co = inputs
        steps, batch, width = xw.shape
        n = width // 4
        half = xw.dtype.type(0.5)
        hs = np.empty((steps, batch, n), dtype=xw.dtype)
        cs = np.empty_like(hs)
        tanh_c = np.empty_like(hs)
        gates = np.empty_like(xw)
        h, c = h0, c0
        with _blas_threads(batch, n, width):
            for t in range(steps):
                a = gates[t]
                np.matmul(h, hh, out=a)
                _lstm_fw_in(a, xw[t], c, ci, cf, half)
                np.tanh(a[:, : 3 * n], out=a[:, : 3 * n])
                _lstm_fw_cell(a, c, co, cs[t], half)
                np.tanh(a[:, 3 * n :], out=a[:, 3 * n :])
                np.tanh(cs[t], out=tanh_c[t])
                _lstm_fw_out(a, tanh_c[t], hs[t], half)
                h, c = hs[t], cs[t]
        output_storage[0][0] = hs
        output_storage[1][0] = cs
        output_storage[2][0] = gates
        output_storage[3][0] = tanh_c

    def pullback(self, inputs, outputs, cotangents):
        xw, h0, c0, hh, ci, cf, co = inputs
        hs, cs, gates, tanh_c = outputs
        dh = _cotangent(cotangents[0], hs)
        dc = _cotangent(cotangents[1], cs)
        if not all(isinstance(g.type, DisconnectedType) for g in cotangents[2:]):
            return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]
        back = LSTMBackward(self.truncate)
        da, dh0, dc0 = back(hh, ci, cf, co, c0, cs, gates, tanh_c, dh, dc)
        n = hs.shape[-1]
        c_prev = _previous(c0, cs)
        dhh = pt.dot(_flat(_previous(h0, hs)).T, _flat(da))
        dci = (da[:, :, :n] * c_prev).sum(axis=(0, 1))
        dcf = (da[:, :, n : 2 * n] * c_prev).sum(axis=(0, 1))
        dco = (da[:, :, 3 * n :] * cs).sum(axis=(0, 1))
        return [da, dh0, dc0, dhh, dci, dcf, dco]


class LSTMBackward(_FusedOp):
    """Reverse pass of :class:`LSTMForward`: gradients of the gate inputs and states."""

    __props__ = ("truncate",)

    def __init__(self, truncate=-1):
        self.truncate = truncate

    def make_node(self, hh, ci, cf, co, c0, cs, gates, tanh_c, dh, dc):
        inputs = self._tensors(hh, ci, cf, co, c0, cs, gates, tanh_c, dh, dc)
        state = pt.TensorType(inputs[0].dtype, shape=(None, None))
        return Apply(self, inputs, [inputs[6].type(), state(), state()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[6], shapes[4], shapes[4]]

    def perform(self, node, inputs, output_storage):
        hh, ci, cf, co, c0, cs, gates, tanh_c, dh, dc = inputs
        steps, batch, n = cs.shape
        one = cs.dtype.type(1)
        da = np.empty_like(gates)
        dh_carry = np.zeros((batch, n), dtype=cs.dtype)
        dc_t = np.zeros_like(dh_carry)  # dL/dc_t, carried from step t+1
        start = _window(steps, self.truncate)
        with _blas_threads(batch, n, 4 * n):
            for t in range(steps - 1, start - 1, -1):
                c_prev = cs[t - 1] if t > 0 else c0
                _lstm_bw_step(
                    gates[t],
                    tanh_c[t],
                    c_prev,
                    dh[t],
                    dh_carry,
                    dc[t],
                    dc_t,
                    ci,
                    cf,
                    co,
                    da[t],
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

    def pullback(self, inputs, outputs, cotangents):
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]


def lstm(layer, xw, h0, c0):
    """Fused forward pass of an :class:`LSTM` layer.

    Parameters
    ----------
    layer : :class:`theanets.layers.recurrent.LSTM`
    xw : tensor (time, batch, 4 size)
        Projected inputs ``x W_{xh} + b``, time-major, in input time order.
    h0, c0 : tensors (batch, size)
        Initial hidden and cell states.

    Returns
    -------
    out, cell : tensors (time, batch, size)
    """
    op = LSTMForward(_truncate(layer))
    seq = xw[::-1] if layer.backwards else xw
    peep = [layer.find("ci"), layer.find("cf"), layer.find("co")]
    out, cell, _, _ = op(seq, h0, c0, layer.find("hh"), *peep)
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
        dxw, dh0 = back(hh, hrz, h0, pre, hid, rate, out, reset, dpre, dhid, drate, dout)
        n = out.shape[-1]
        h_prev = _previous(h0, out)
        dhh = pt.dot(_flat(reset * h_prev).T, _flat(dxw[:, :, :n]))
        dhrz = pt.dot(_flat(h_prev).T, _flat(dxw[:, :, n:]))
        return [dxw, dh0, dhh, dhrz]


class GRUBackward(_FusedOp):
    """Reverse pass of :class:`GRUForward`: gradients of ``xw`` and ``h0``."""

    __props__ = ("activation", "truncate")

    def __init__(self, activation, truncate=-1):
        self.activation = activation
        self.truncate = truncate

    def make_node(self, *inputs):
        inputs = self._tensors(*inputs)
        state = pt.TensorType(inputs[0].dtype, shape=(None, None))
        return Apply(self, inputs, [self._seq_type(inputs[0])(), state()])

    def infer_shape(self, fgraph, node, shapes):
        steps, batch, n = shapes[3]
        return [(steps, batch, 3 * n), (batch, n)]

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
        output_storage[0][0] = dxw
        output_storage[1][0] = carry

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
