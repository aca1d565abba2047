"""Tests for theanets.layers._compiled: compiled BLAS calls, math and output arrays.

Oracles: NumPy's matrix product and float64 ``exp``/``tanh`` (rounded to
float32 for the unit-in-the-last-place comparisons), and the thread count
the BLAS libraries report through ctypes.
"""

import ctypes
import gc
import pickle

import numba
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from theanets.layers import _compiled, fused


def _ulp_error(got, want):
    """|got - want| in units of the last place of ``want`` rounded to float32."""
    spacing = np.spacing(np.abs(want.astype(np.float32))).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


@numba.njit
def _apply_sigmoid(x, out):
    for i in range(x.size):
        out[i] = _compiled.sigmoid(x[i])


@numba.njit
def _apply_tanh(x, out):
    for i in range(x.size):
        out[i] = _compiled.tanh(x[i])


def _float32_samples():
    rng = np.random.default_rng(0)
    parts = [
        rng.normal(scale=4, size=200_000),
        rng.uniform(-1, 1, size=100_000),
        np.logspace(-30, 1.5, 20_000),
        -np.logspace(-30, 1.5, 20_000),
        rng.uniform(-80, 80, size=20_000),
    ]
    return np.concatenate(parts).astype(np.float32)


def test_float32_logistic_is_within_three_units_in_the_last_place():
    x = _float32_samples()
    got = np.empty_like(x)
    _apply_sigmoid(x, got)
    assert got.dtype == np.float32
    want = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert _ulp_error(got, want).max() <= 3
    assert np.all((got >= 0) & (got <= 1))


def test_float32_tanh_is_within_two_units_in_the_last_place():
    x = _float32_samples()
    got = np.empty_like(x)
    _apply_tanh(x, got)
    want = np.tanh(x.astype(np.float64))
    assert _ulp_error(got, want).max() <= 2
    np.testing.assert_array_equal(np.sign(got), np.sign(x))


def test_float64_logistic_and_tanh_are_the_library_functions():
    x = np.random.default_rng(1).normal(scale=5, size=1000)
    sig, th = np.empty_like(x), np.empty_like(x)
    _apply_sigmoid(x, sig)
    _apply_tanh(x, th)
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(th, np.tanh(x), rtol=1e-15)


@numba.njit
def _products(a, b, c, small):
    """Every transpose combination and both betas, on column blocks."""
    _compiled.gemm(a[:, 1:5], b[:, 2:7], c[0][:, 1:6], False, False, 0.0, small)
    _compiled.gemm(a[:, 1:5].T.copy(), b[:, 2:7], c[1][:, 1:6], True, False, 0.0, small)
    _compiled.gemm(a[:, 1:5], b[:, 2:7].T.copy(), c[2][:, 1:6], False, True, 0.0, small)
    _compiled.gemm(a[:, 1:5], b[:, 2:7], c[3][:, 1:6], False, False, 1.0, small)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("small", [False, True])
def test_gemm_multiplies_column_blocks_in_place(dtype, small):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(3, 6)).astype(dtype)
    b = rng.normal(size=(4, 8)).astype(dtype)
    c = rng.normal(size=(4, 3, 7)).astype(dtype)
    before = c.copy()
    _products(a, b, c, small)
    product = a[:, 1:5] @ b[:, 2:7]
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    for k in range(3):
        np.testing.assert_allclose(c[k][:, 1:6], product, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(c[3][:, 1:6], before[3][:, 1:6] + product, rtol=tolerance)
    # columns outside the blocks are untouched
    np.testing.assert_array_equal(c[:, :, 0], before[:, :, 0])
    np.testing.assert_array_equal(c[:, :, 6], before[:, :, 6])


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_numpy_stand_in_for_cblas_gemm(trans_a, trans_b, beta):
    """The Python stand-in bound where NumPy has no ILP64 OpenBLAS follows CBLAS."""
    rng = np.random.default_rng(3)
    m, n, k = 3, 4, 5
    a = rng.normal(size=(k, m + 2) if trans_a else (m, k + 2))
    b = rng.normal(size=(n, k + 1) if trans_b else (k, n + 1))
    c = rng.normal(size=(m, n + 3))
    want = c.copy()
    left = a[:, :m].T if trans_a else a[:, :k]
    right = b[:, :k].T if trans_b else b[:, :n]
    want[:, :n] = 2.0 * left @ right + beta * c[:, :n]
    gemm = _compiled._gemm_prototype(ctypes.c_double)(_compiled._numpy_gemm("float64"))
    gemm(
        101,
        112 if trans_a else 111,
        112 if trans_b else 111,
        m,
        n,
        k,
        2.0,
        a.ctypes.data,
        a.shape[1],
        b.ctypes.data,
        b.shape[1],
        beta,
        c.ctypes.data,
        c.shape[1],
    )
    np.testing.assert_allclose(c, want, rtol=1e-12)


def _threads():
    return _compiled._BOUND["theanets_blas_get_threads"]()


def _set_threads(count):
    _compiled._BOUND["theanets_blas_set_threads"](count)


@pytest.mark.parametrize("count", [1, 2])
def test_loops_restore_the_blas_thread_count(count):
    """The time loops put BLAS on one thread and leave the caller's setting as it was."""
    controllable = _threads() > 0  # 0: a BLAS without thread control, left alone
    previous = _threads()
    rng = np.random.default_rng(4)
    try:
        _set_threads(count)
        with pytensor.config.change_flags(floatX="float64"):
            xw, h0, hh = pt.tensor3("xw"), pt.matrix("h0"), pt.matrix("hh")
            out = fused.RNNForward("tanh")(xw, h0, hh)[1]
            fn = pytensor.function([xw, h0, hh], pytensor.grad(out.sum(), [xw, hh]))
        fn(rng.normal(size=(5, 3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(4, 4)))
        assert _threads() == (count if controllable else 0)
    finally:
        _set_threads(previous)


def test_step_threads_only_changes_small_products():
    controllable = _threads() > 0
    previous = _threads()
    try:
        _set_threads(2)
        assert _compiled.step_threads(_compiled.SINGLE_THREAD_MACS) == -1
        assert _threads() == (2 if controllable else 0)
        assert _compiled.step_threads(1000) == (2 if controllable else 0)
        assert _threads() == (1 if controllable else 0)
        _compiled.restore_threads(2)
        assert _threads() == (2 if controllable else 0)
    finally:
        _set_threads(previous)


class _Node:
    def __init__(self, *dtypes):
        self.outputs = [pt.tensor(dtype=d, shape=(None,)) for d in dtypes]


class _Op:
    pass


def test_output_buffers_reuse_only_arrays_nothing_refers_to():
    op, node = _Op(), _Node("float64", "float32")
    first = _compiled.output_buffers(op, node, [[None], [None]], [(3,), (2, 2)])
    assert [a.dtype for a in first] == [np.float64, np.float32]
    assert [a.shape for a in first] == [(3,), (2, 2)]
    ids = [id(a) for a in first]
    held = first[0]
    del first
    gc.collect()
    second = _compiled.output_buffers(op, node, [[None], [None]], [(3,), (2, 2)])
    assert id(second[0]) != ids[0]  # still referred to: a new array
    assert id(second[1]) == ids[1]  # released: used again
    view = second[1][:1]
    del second
    third = _compiled.output_buffers(op, node, [[None], [None]], [(3,), (2, 2)])
    assert id(third[1]) != ids[1]  # a view keeps its base in use
    assert held is not third[0] and view.base is not third[1]


def test_output_buffers_use_what_pytensor_left_in_storage():
    op, node = _Op(), _Node("float64")
    left = np.zeros((4,))
    (got,) = _compiled.output_buffers(op, node, [[left]], [(4,)])
    assert got is left
    (other,) = _compiled.output_buffers(op, node, [[left]], [(5,)])
    assert other is not left and other.shape == (5,)


def test_pickled_ops_leave_their_arrays_behind():
    xw, h0, hh = pt.tensor3("xw"), pt.matrix("h0"), pt.matrix("hh")
    op = fused.RNNForward("tanh")
    fn = pytensor.function([xw, h0, hh], op(xw, h0, hh), mode="FAST_COMPILE")
    rng = np.random.default_rng(5)
    fn(rng.normal(size=(50, 40, 30)), rng.normal(size=(40, 30)), rng.normal(size=(30, 30)))
    ops = [n.op for n in fn.maker.fgraph.toposort() if isinstance(n.op, fused.RNNForward)]
    assert ops and "_pool" in ops[0].__dict__
    restored = pickle.loads(pickle.dumps(ops[0]))
    assert "_pool" not in restored.__dict__ and restored == ops[0]
    assert len(pickle.dumps(ops[0])) < 10_000
