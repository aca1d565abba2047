"""Tests of the structural layers Product, Concatenate and Reshape against NumPy.

The layers have no parameters: each test builds a small network around one,
runs it with ``feed_forward`` and compares the layer's output with the same
operation done by NumPy on the outputs of the layers feeding it (themselves
recomputed from the parameter values). Bad configurations must raise a
:class:`~theanets.util.ConfigurationError` that names the layer.
"""

import numpy as np
import pytensor
import pytest

import theanets
from theanets.util import ConfigurationError

F64 = dict(floatX="float64")


@pytest.fixture(autouse=True)
def _float64():
    with pytensor.config.change_flags(**F64):
        yield


def _dense(net, name, x, act=np.tanh):
    """A feed-forward layer's output, from its parameter values."""
    w = net.find(name, "w").get_value()
    b = net.find(name, "b").get_value()
    return act(x @ w + b)


def _data(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


# ----------------------------------------------------------------------
# Product


def test_product_of_two_inputs():
    net = theanets.Regressor(
        [4, (4, "tanh"), dict(form="product", inputs=("in", "hid1"), name="p"), 2]
    )
    x = _data(5, 4)
    out = net.feed_forward(x)
    expected = x * _dense(net, "hid1", x)
    np.testing.assert_allclose(out["p:out"], expected, rtol=1e-12)
    assert set(k for k in out if k.startswith("p:")) == {"p:out"}
    # the next layer reads the product, and the loss sees it
    y = _data(5, 2, seed=1)
    w, b = net.find("out", "w").get_value(), net.find("out", "b").get_value()
    np.testing.assert_allclose(net.predict(x), expected @ w + b, rtol=1e-12)
    assert net.loss_value(x, y) == pytest.approx(np.mean((expected @ w + b - y) ** 2), rel=1e-12)


def test_product_of_three_inputs_in_a_recurrent_model():
    net = theanets.recurrent.Regressor(
        [
            3,
            dict(form="feedforward", size=3, activation="tanh", name="a"),
            dict(form="feedforward", size=3, activation="sigmoid", inputs="in", name="b"),
            dict(form="product", inputs=("in", "a", "b"), name="p"),
            2,
        ]
    )
    x = _data(2, 5, 3)  # (batch, time, features)
    out = net.feed_forward(x)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    expected = x * _dense(net, "a", x) * _dense(net, "b", x, sig)
    np.testing.assert_allclose(out["p:out"], expected, rtol=1e-12)


def test_product_needs_equal_shapes():
    with pytest.raises(ConfigurationError, match="'p'.*equal shapes"):
        theanets.Regressor([4, (3, "tanh"), dict(form="product", inputs=("in", "hid1"), name="p")])
    with pytest.raises(ConfigurationError, match="'p'.*size=3"):
        theanets.Regressor(
            [4, (4, "tanh"), dict(form="product", inputs=("in", "hid1"), size=3, name="p")]
        )


# ----------------------------------------------------------------------
# Concatenate


@pytest.mark.parametrize("order", [("in", "hid1"), ("hid1", "in")])
def test_concatenate_follows_the_order_of_inputs(order):
    net = theanets.Regressor([4, (3, "tanh"), dict(form="concatenate", inputs=order, name="c"), 2])
    x = _data(6, 4)
    parts = {"in": x, "hid1": _dense(net, "hid1", x)}
    expected = np.concatenate([parts[n] for n in order], axis=-1)
    out = net.feed_forward(x)
    np.testing.assert_allclose(out["c:out"], expected, rtol=1e-12)
    assert out["c:out"].shape == (6, 7)
    w, b = net.find("out", "w").get_value(), net.find("out", "b").get_value()
    assert w.shape == (7, 2)
    np.testing.assert_allclose(net.predict(x), expected @ w + b, rtol=1e-12)


def test_concatenate_in_a_recurrent_model():
    net = theanets.recurrent.Regressor(
        [
            3,
            dict(form="feedforward", size=2, activation="tanh", name="a"),
            dict(form="concatenate", inputs=("a", "in"), name="c"),
            2,
        ]
    )
    x = _data(2, 4, 3)
    expected = np.concatenate([_dense(net, "a", x), x], axis=-1)
    np.testing.assert_allclose(net.feed_forward(x)["c:out"], expected, rtol=1e-12)


def test_concatenate_checks_size():
    with pytest.raises(ConfigurationError, match="'c'.*size=5.*7"):
        theanets.Regressor(
            [4, (3, "tanh"), dict(form="concatenate", inputs=("in", "hid1"), size=5, name="c")]
        )


def test_concatenate_needs_equal_leading_axes():
    # an image (6, 6, 1) and its flattened copy (36,): the axes before the
    # last do not agree, even though there is nothing to compare pairwise
    with pytest.raises(ConfigurationError, match="'c'.*every axis but the last"):
        theanets.Network(
            [
                (6, 6, 1),
                dict(form="flatten", name="f"),
                dict(form="concatenate", inputs=("in", "f"), name="c"),
            ]
        )
    with pytest.raises(ConfigurationError, match="'c'.*every axis but the last"):
        theanets.Network(
            [
                (3, 4),
                dict(form="reshape", shape=(4, 3), name="r"),
                dict(form="concatenate", inputs=("in", "r"), name="c"),
            ]
        )


# ----------------------------------------------------------------------
# Reshape


def test_reshape_matches_numpy_and_applies_no_activation():
    net = theanets.Network(
        [
            6,
            dict(form="reshape", shape=(2, 3), name="r"),
            dict(form="reshape", shape=(3, 2), name="s"),
            "flatten",
            2,
        ]
    )
    x = _data(4, 6)  # negative values too: a ReLU would show
    out = net.feed_forward(x)
    np.testing.assert_allclose(out["r:out"], x.reshape(4, 2, 3), rtol=0)
    np.testing.assert_allclose(out["s:out"], x.reshape(4, 2, 3).reshape(4, 3, 2), rtol=0)
    np.testing.assert_allclose(out[net.layers[3].output_name], x, rtol=0)


def test_reshape_size_must_match_its_shape():
    with pytest.raises(ConfigurationError, match="size=4"):
        theanets.Network([6, dict(form="reshape", shape=(2, 3), size=4, name="r")])
    net = theanets.Network([6, dict(form="reshape", shape=(2, 3), size=3, name="r")])
    assert net.layers[1].size == 3
    assert net.layers[1].to_spec()["shape"] == (2, 3)


def test_reshape_must_keep_the_number_of_values():
    with pytest.raises(ConfigurationError, match="'r'.*reshape"):
        theanets.Network([6, dict(form="reshape", shape=(4, 2), name="r")])
    with pytest.raises(ConfigurationError, match="'r'.*shape"):
        theanets.Network([6, dict(form="reshape", name="r")])
