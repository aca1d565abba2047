"""Tests for theanets.convolution: the convolutional Regressor and Classifier models."""

import numpy as np
import pytensor
import pytest

import theanets
from theanets.util import ConfigurationError


def _images(n=24, seed=0):
    """Tiny 6x6x1 images: class 0 = bright left half, 1 = bright top half, 2 = centre."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    x = 0.1 * rng.normal(size=(n, 6, 6, 1))
    x[labels == 0, :3, :, 0] += 1
    x[labels == 1, :, :3, 0] += 1
    x[labels == 2, 2:4, 2:4, 0] += 2
    return x.astype(pytensor.config.floatX), labels.astype("int32")


LAYERS = [
    (6, 6, 1),
    dict(form="conv2", size=3, filter_size=3, border_mode="same"),
    dict(form="pool2", pool_size=2),
    "flatten",
    3,
]


@pytest.fixture(scope="module")
def classifier():
    return theanets.convolution.Classifier(LAYERS)


def test_input_ndim_and_shape_spec(classifier):
    assert theanets.convolution.Regressor.INPUT_NDIM == 4
    assert theanets.convolution.Classifier.INPUT_NDIM == 4
    layer = classifier.layers[0]
    assert isinstance(layer, theanets.layers.Input)
    assert layer.output_shape == (6, 6, 1)
    assert classifier.inputs[0].ndim == 4
    assert [layer.output_shape for layer in classifier.layers[1:]] == [
        (6, 6, 3),
        (3, 3, 3),
        (27,),
        (3,),
    ]
    assert [p.name for p in classifier.params] == ["hid1.w", "hid1.b", "out.w", "out.b"]


def test_channel_count_input_spec():
    net = theanets.convolution.Regressor([2, dict(form="conv2", size=3, filter_size=2), 1])
    assert net.layers[0].output_shape == (None, None, 2)
    assert net.layers[1].output_shape == (None, None, 3)
    x = np.zeros((1, 4, 5, 2), dtype=pytensor.config.floatX)
    assert net.predict(x).shape == (1, 3, 4, 1)
    with pytest.raises(ConfigurationError, match="flatten"):
        theanets.convolution.Regressor([2, dict(form="conv2", size=3, filter_size=2), "flatten"])


def test_classifier_predictions(classifier):
    x, y = _images()
    proba = classifier.predict_proba(x)
    assert proba.shape == (24, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert classifier.predict(x).shape == (24,)
    np.testing.assert_array_equal(classifier.predict(x), proba.argmax(axis=1))
    assert classifier.predict_logit(x).shape == (24, 3)
    assert classifier.score(x, y) == pytest.approx(np.mean(proba.argmax(axis=1) == y))


def test_classifier_trains():
    x, y = _images()
    net = theanets.convolution.Classifier(LAYERS)
    before = net.loss_value(x, y)
    train, _ = net.train(
        [x, y], algo="adam", learning_rate=0.05, batch_size=8, max_updates=15, patience=100
    )
    assert {"loss", "err", "acc"} <= set(train)
    assert net.loss_value(x, y) < 0.5 * before
    assert net.score(x, y) > 0.9


def test_regressor_with_dense_output():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 4, 4, 2)).astype(pytensor.config.floatX)
    net = theanets.convolution.Regressor(
        [(4, 4, 2), dict(form="conv2", size=3, filter_size=2, border_mode="full"), 3]
    )
    out = net.predict(x)
    assert out.shape == (5, 5, 5, 3)
    y = rng.normal(size=out.shape)
    assert net.loss_value(x, y) == pytest.approx(np.mean((out - y) ** 2), rel=1e-5)
    r2 = 1 - ((y - out) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert net.score(x, y) == pytest.approx(r2, rel=1e-5)


def test_bad_data(classifier):
    x, y = _images()
    with pytest.raises(ValueError, match="4-D"):
        classifier.predict(x[..., 0])
    with pytest.raises(ValueError, match=r"axis 1 should be 6"):
        classifier.predict(x[:, :5])
    with pytest.raises(ValueError, match="class labels must be in 0..2"):
        classifier.loss_value(x, y + 3)


def test_default_mode_predict_matches_fast_compile(default_mode):
    """The default (Numba) backend computes the same outputs as the Python one."""
    x, _ = _images(6)
    net = theanets.convolution.Classifier(LAYERS)
    outputs, _ = net.build_graph()
    reference = pytensor.function(net.inputs, outputs["out:out"], mode="FAST_COMPILE")
    np.testing.assert_allclose(net.predict_proba(x), reference(x), rtol=1e-5, atol=1e-7)
