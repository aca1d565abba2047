"""Tests for theanets.optimizers.Dataset: batching, shuffling, sparse, callables."""

import re

import numpy as np
import pytensor
import pytest
import scipy.sparse

from theanets.optimizers import Dataset
from theanets.util import ConfigurationError

FLOAT = pytensor.config.floatX


def rows(n, cols=2):
    return np.arange(n * cols, dtype=float).reshape(n, cols)


def first_column(batches):
    return [b[0][:, 0] // 2 for b in batches]


def test_batches_cover_the_data_once_per_pass_with_a_short_last_batch():
    x, y = rows(10), np.arange(10)
    ds = Dataset([x, y], batch_size=4, rng=0)
    assert len(ds) == 3 and ds.num_batches == 3
    batches = list(ds)
    assert sorted(len(b[0]) for b in batches) == [2, 4, 4]
    seen = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(np.sort(seen), np.arange(10))
    for bx, by in batches:
        # batches are contiguous slices, and inputs stay aligned
        np.testing.assert_array_equal(bx[:, 0] // 2, by)
        np.testing.assert_array_equal(np.diff(by), 1)


def test_batches_are_views_of_the_converted_arrays():
    x = rows(8).astype(FLOAT)
    ds = Dataset([x], batch_size=3, rng=0)
    for (bx,) in ds:
        assert np.shares_memory(bx, x)


def test_batch_order_is_reshuffled_every_pass_and_reproducible():
    x = rows(40)
    ds = Dataset([x], batch_size=4, rng=3)
    passes = [[int(b[0][0, 0] // 8) for b in ds] for _ in range(4)]
    for order in passes:
        assert sorted(order) == list(range(10))
    assert len({tuple(p) for p in passes}) > 1
    again = Dataset([x], batch_size=4, rng=3)
    assert [[int(b[0][0, 0] // 8) for b in again] for _ in range(4)] == passes
    gen = Dataset([x], batch_size=4, rng=np.random.default_rng(3))
    assert sorted(int(b[0][0, 0] // 8) for b in gen) == list(range(10))


def test_iterate_without_shuffle_repeats_the_order():
    ds = Dataset([rows(12)], batch_size=4, rng=1)
    one = [b[0][0, 0] for b in ds.iterate(shuffle=False)]
    two = [b[0][0, 0] for b in ds.iterate(shuffle=False)]
    assert one == two


def test_iteration_size_cycles_and_resumes():
    x = np.arange(6.0)[:, None]
    ds = Dataset([x], batch_size=2, iteration_size=5, rng=0)
    assert len(list(ds)) == 5
    short = Dataset([x], batch_size=2, iteration_size=2, rng=0)
    first, second = list(short), list(short)
    starts = [b[0][0, 0] for b in first + second[:1]]
    assert sorted(starts) == [0.0, 2.0, 4.0]  # the second pass resumes the cycle


def test_a_batch_as_large_as_the_data_is_one_batch():
    x = rows(7)
    for size in (7, 100):
        (batch,) = list(Dataset([x], batch_size=size))
        np.testing.assert_array_equal(batch[0], x)


def test_dtypes_floats_become_floatx_and_integers_are_kept():
    x32 = np.ones((4, 2), dtype="float32")
    labels = np.arange(4, dtype="int32")
    mask = np.ones((4, 2), dtype=bool)
    (batch,) = list(Dataset([x32, labels, mask], batch_size=4))
    assert batch[0].dtype == FLOAT
    assert batch[1].dtype == np.int32
    assert batch[2].dtype == FLOAT
    with pytest.raises(TypeError, match="real numbers"):
        Dataset([np.array(["a", "b"])])


def test_non_contiguous_input_is_made_contiguous():
    x = np.asfortranarray(rows(6, 3))
    (batch,) = list(Dataset([x], batch_size=6))
    assert batch[0].flags.c_contiguous
    np.testing.assert_array_equal(batch[0], x)


def test_recurrent_arrays_are_cut_along_the_chosen_axis():
    x = np.arange(5 * 4 * 3, dtype=float).reshape(5, 4, 3)
    batches = list(Dataset([x], batch_size=2, rng=0))
    assert sorted(b[0].shape for b in batches) == [(1, 4, 3), (2, 4, 3), (2, 4, 3)]
    time_major = list(Dataset([x], batch_size=3, axis=1, rng=0))
    assert sorted(b[0].shape for b in time_major) == [(5, 1, 3), (5, 3, 3)]


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_matrices_are_cut_by_rows(fmt):
    dense = rows(9, 4) * (np.arange(36).reshape(9, 4) % 3 == 0)
    matrix = scipy.sparse.csr_matrix(dense).asformat(fmt)
    labels = np.arange(9)
    batches = list(Dataset([matrix, labels], batch_size=4, rng=0))
    assert len(batches) == 3
    for sx, by in batches:
        assert scipy.sparse.issparse(sx) and sx.format == fmt
        assert sx.dtype == FLOAT
        np.testing.assert_array_equal(sx.toarray(), dense[by])


def test_callable_supplies_batches():
    calls = []

    def batch():
        calls.append(1)
        return [np.full((2, 2), len(calls), dtype="float32"), np.arange(2)]

    ds = Dataset(batch, iteration_size=3)
    out = list(ds)
    assert len(out) == 3 and len(calls) == 3
    assert out[2][0][0, 0] == 3 and out[2][0].dtype == FLOAT
    assert len(Dataset(batch)) == 100


def test_callable_with_length_sets_the_pass_size():
    class Source:
        def __len__(self):
            return 4

        def __call__(self):
            return (np.zeros((1, 1)),)

    assert len(list(Dataset(Source()))) == 4


def test_callable_returning_a_bad_batch_is_reported():
    with pytest.raises(TypeError, match="list or tuple of arrays"):
        list(Dataset(lambda: 3.0, iteration_size=1, name="train"))


def test_mismatched_lengths_are_reported_with_the_shapes():
    with pytest.raises(ValueError, match=r"same length along axis 0, got \[10, 9\]"):
        Dataset([rows(10), np.arange(9)])


@pytest.mark.parametrize(
    "inputs, match",
    [
        ([], "no data arrays"),
        ([np.zeros((0, 3))], "empty"),
        ([np.float64(1.0)], "no axis 0"),
        ({"x": 1}, "list or tuple"),
    ],
)
def test_bad_inputs_are_rejected(inputs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Dataset(inputs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "`batch_size` must be an integer >= 1. Received: 0"),
        ({"batch_size": -1}, "`batch_size` must be an integer >= 1. Received: -1"),
        ({"batch_size": 2.5}, "`batch_size` must be an integer >= 1. Received: 2.5"),
        ({"batch_size": True}, "`batch_size` must be an integer >= 1. Received: True"),
        ({"iteration_size": 0}, "`iteration_size` must be None or an integer >= 1. Received: 0"),
    ],
)
def test_bad_sizes_are_rejected(kwargs, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Dataset([rows(4)], **kwargs)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Dataset(lambda: [rows(4)], **kwargs)


def test_single_array_and_repr():
    ds = Dataset(rows(3), name="train", batch_size=2)
    assert len(list(ds)) == 2
    assert "train" in repr(ds) and "(3, 2)" in repr(ds)
