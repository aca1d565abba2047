"""Tests of theanets.activations against NumPy re-implementations of each formula."""

import types

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.graph.replace import clone_replace

from theanets import activations, util

# The Python VM linker with few rewrites compiles these tiny graphs fastest
# (measured: ~0.25 s per graph, versus seconds with the default Numba backend).
MODE = "FAST_COMPILE"


def fake_layer(size=4, seed=13, name="hid1", skip=0):
    """A stand-in for a bound layer: just what activations read."""
    rng = np.random.RandomState(seed)
    if skip:
        rng.randn(skip)
    return types.SimpleNamespace(name=name, output_size=size, rng=rng)


def evaluate(act, x, mode=MODE):
    """Compile ``act`` on a variable shaped like ``x`` and apply it to ``x``."""
    var = pt.tensor("x", dtype=str(x.dtype), shape=(None,) * x.ndim)
    fn = pytensor.function([var], act(var), mode=mode)
    return fn(x)


def _softmax(x):
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _std(x):
    return x.std(axis=-1, keepdims=True)


FIXED = {
    "linear": lambda x: x,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "logistic": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": _softmax,
    "softplus": lambda x: np.log1p(np.exp(x)),
    "relu": lambda x: np.maximum(0, x),
    "rect:max": lambda x: np.maximum(0, x),
    "rect:min": lambda x: np.minimum(x, 1),
    "trel": lambda x: np.clip(x, 0, 1),
    "rect:minmax": lambda x: np.clip(x, 0, 1),
    "norm:mean": lambda x: x - x.mean(axis=-1, keepdims=True),
    "norm:max": lambda x: x / (np.abs(x).max(axis=-1, keepdims=True) + 1e-8),
    "norm:std": lambda x: x / (_std(x) + 1e-8),
    "norm:z": lambda x: (x - x.mean(axis=-1, keepdims=True)) / (_std(x) + 1e-8),
}

LEARNABLE = ["prelu", "leaky-relu", "lgrelu", "leaky-gain-relu", "elu", "maxout:3"]


def learnable_oracle(name, act, x):
    """NumPy value of a learnable activation, from its current parameters."""
    pos, neg = np.maximum(x, 0), np.minimum(x, 0)
    if name in ("prelu", "leaky-relu"):
        return pos + np.exp(act.leak.get_value()) * neg
    if name in ("lgrelu", "leaky-gain-relu"):
        return np.exp(act.gain.get_value()) * pos + np.exp(act.leak.get_value()) * neg
    if name == "elu":
        return np.where(x >= 0, x, np.exp(act.gain.get_value()) * (np.exp(x) - 1))
    if name.startswith("maxout"):
        slope, intercept = act.slope.get_value(), act.intercept.get_value()
        out = np.empty_like(x)
        for index in np.ndindex(x.shape):
            unit = index[-1]
            out[index] = max(
                slope[unit, k] * x[index] + intercept[unit, k] for k in range(slope.shape[1])
            )
        return out
    raise KeyError(name)


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    return {2: rng.normal(scale=2, size=(3, 4)), 3: rng.normal(scale=2, size=(2, 3, 4))}


# ----------------------------------------------------------------------
# values


@pytest.mark.parametrize("name", sorted(FIXED))
@pytest.mark.parametrize("ndim", [2, 3])
def test_fixed_values(name, ndim, data):
    x = data[ndim]
    act = activations.build(name, fake_layer())
    assert act.params == []
    assert act.name == name
    np.testing.assert_allclose(evaluate(act, x), FIXED[name](x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", LEARNABLE)
@pytest.mark.parametrize("ndim", [2, 3])
def test_learnable_values(name, ndim, data):
    x = data[ndim]
    act = activations.build(name, fake_layer(size=x.shape[-1]))
    # Move the parameters away from their initial values so every one matters.
    rng = np.random.default_rng(3)
    for param in act.params:
        value = param.get_value()
        param.set_value(value + rng.normal(scale=0.3, size=value.shape))
    np.testing.assert_allclose(evaluate(act, x), learnable_oracle(name, act, x), rtol=1e-10)


# Reference values pinned in theanets 0.7's own test suite: a 7-unit layer
# whose RandomState(13) has already drawn its 3x7 weights and 7 biases (28
# normal draws), applied to the probe below. They check the draw order and
# the formulas of the learnable activations.
PROBE = np.array([-10, -1, -0.1, 0, 0.1, 1, 10], dtype="float64")
UPSTREAM = {
    "elu": [-1.15013397, -0.74292195, -0.0999504, 0, 0.1, 1, 10],
    "prelu": [-11.50186157, -1.17528522, -0.10503119, 0, 0.1, 1, 10],
    "lgrelu": [-10.52778435, -1.04052365, -0.11633276, 0, 0.10640667, 1.04642045, 10.21983242],
    "maxout:3": [16.60424042, 1.80405843, 1.99347568, 0.3595323, -0.513098, 2.77195668, 0.61599374],
}


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_matches_upstream_reference_values(name):
    act = activations.build(name, fake_layer(size=7, skip=28))
    np.testing.assert_allclose(evaluate(act, PROBE), UPSTREAM[name], rtol=1e-5, atol=1e-6)


def test_softmax_is_stable_and_normalised():
    x = np.array([[1000.0, 0.0, -1000.0], [-5e3, -5e3, -5e3]])
    y = evaluate(activations.build("softmax"), x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=-1), 1)
    np.testing.assert_allclose(y[0], [1, 0, 0], atol=1e-12)
    x3 = np.random.default_rng(0).normal(size=(2, 5, 3))
    y3 = evaluate(activations.build("softmax"), x3)
    np.testing.assert_allclose(y3.sum(axis=-1), np.ones((2, 5)))


def test_norm_of_zero_row_is_finite():
    x = np.zeros((2, 3))
    for name in ("norm:max", "norm:std", "norm:z"):
        np.testing.assert_array_equal(evaluate(activations.build(name), x), 0)


def test_elu_large_inputs_have_finite_gradients():
    x = pt.vector("x")
    act = activations.build("elu", fake_layer(size=3))
    grad = pytensor.grad(act(x).sum(), [x, act.gain])
    fn = pytensor.function([x], grad, mode=MODE)
    gx, ggain = fn(np.array([1000.0, -1000.0, 0.5]))
    np.testing.assert_allclose(gx, [1, 0, 1])
    assert np.all(np.isfinite(ggain))


# ----------------------------------------------------------------------
# gradients


def _away_from_kinks(shape, seed):
    """Random values at least 0.1 away from the kinks at 0 and 1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 2.0, size=shape) * rng.choice([-1, 1], size=shape)
    return np.where(np.abs(x - 1) < 0.1, x + 0.3, x)


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_gradients(name):
    act = activations.build(name)
    x = _away_from_kinks((3, 4), seed=11)
    pytensor.gradient.verify_grad(act, [x], rng=np.random.default_rng(5), mode=MODE)


@pytest.mark.parametrize("name", ["prelu", "lgrelu", "elu", "maxout:3"])
def test_learnable_gradients(name):
    act = activations.build(name, fake_layer(size=4))
    params = act.params

    def fun(x, *values):
        return clone_replace(act(x), dict(zip(params, values, strict=True)))

    x = _away_from_kinks((3, 4), seed=12)
    values = [p.get_value() for p in params]
    pytensor.gradient.verify_grad(fun, [x, *values], rng=np.random.default_rng(6), mode=MODE)


# ----------------------------------------------------------------------
# parameters


@pytest.mark.parametrize(
    "name, expected",
    [
        ("prelu", [("hid1.leak", (4,))]),
        ("leaky-relu", [("hid1.leak", (4,))]),
        ("lgrelu", [("hid1.gain", (4,)), ("hid1.leak", (4,))]),
        ("elu", [("hid1.gain", (4,))]),
        ("maxout:3", [("hid1.slope", (4, 3)), ("hid1.intercept", (4, 3))]),
    ],
)
def test_parameter_names_and_shapes(name, expected):
    act = activations.build(name, fake_layer())
    assert [(p.name, p.get_value().shape) for p in act.params] == expected
    assert all(p.dtype == pytensor.config.floatX for p in act.params)


def test_parameter_draw_order():
    rng = np.random.RandomState(13)
    first, second = rng.randn(4), rng.randn(4)
    prelu = activations.build("prelu", fake_layer())
    np.testing.assert_allclose(prelu.leak.get_value(), 0.1 * np.abs(first))
    lgrelu = activations.build("lgrelu", fake_layer())
    np.testing.assert_allclose(lgrelu.gain.get_value(), 0.1 * np.abs(first))
    np.testing.assert_allclose(lgrelu.leak.get_value(), 0.1 * np.abs(second))
    elu = activations.build("elu", fake_layer())
    np.testing.assert_allclose(elu.gain.get_value(), 0.1 * np.abs(first))
    rng = np.random.RandomState(13)
    slope, intercept = rng.randn(4, 2), rng.randn(4, 2)
    maxout = activations.build("maxout:2", fake_layer())
    np.testing.assert_allclose(maxout.slope.get_value(), slope)
    np.testing.assert_allclose(maxout.intercept.get_value(), intercept)
    assert maxout.pieces == 2


def test_maxout_pieces_keyword():
    act = activations.build("maxout", fake_layer(), pieces=2)
    assert act.slope.get_value().shape == (4, 2)


# ----------------------------------------------------------------------
# registry and build


def test_registered_names_and_aliases():
    lookup = activations.Activation.lookup
    names = set(activations.Activation.registered_names())
    expected = set(FIXED) | {"prelu", "leaky-relu", "lgrelu", "leaky-gain-relu", "elu", "maxout"}
    assert expected <= names
    assert lookup("logistic") is lookup("sigmoid") is activations.Sigmoid
    assert lookup("rect:max") is lookup("relu") is activations.Relu
    assert lookup("rect:minmax") is lookup("trel") is activations.Trel
    assert lookup("rect:min") is activations.RectMin
    assert lookup("leaky-relu") is activations.Prelu
    assert lookup("leaky-gain-relu") is activations.LGrelu
    assert lookup("norm:z") is activations.NormZ
    # internal helpers are not names users can ask for
    assert not any(name.startswith("_") for name in names)


def test_names_are_case_insensitive():
    assert isinstance(activations.build("ReLU"), activations.Relu)
    assert isinstance(activations.build("Maxout:2", fake_layer()), activations.Maxout)


def test_unknown_name_suggests_closest():
    with pytest.raises(util.ConfigurationError, match=r"Did you mean 'relu'\?") as info:
        activations.build("rleu", fake_layer())
    assert "Valid names" in str(info.value)
    assert "tanh" in str(info.value)
    with pytest.raises(util.ConfigurationError, match="Did you mean 'tanh'"):
        activations.build("relu+tahn", fake_layer())


@pytest.mark.parametrize("name", ["maxout:0", "maxout:x", "maxout:", "maxout", "maxout:-2"])
def test_bad_maxout(name):
    with pytest.raises(util.ConfigurationError, match="pieces|maxout:K"):
        activations.build(name, fake_layer())


def test_maxout_pieces_twice():
    with pytest.raises(util.ConfigurationError, match="not both"):
        activations.build("maxout:2", fake_layer(), pieces=3)


def test_unknown_keyword_argument():
    with pytest.raises(util.ConfigurationError, match="unknown keyword argument 'pices'"):
        activations.build("tanh", fake_layer(), pices=3)
    with pytest.raises(util.ConfigurationError, match="Did you mean 'pieces'"):
        activations.build("maxout:2", fake_layer(), pices=3)


@pytest.mark.parametrize("name", ["prelu", "lgrelu", "elu", "maxout:2"])
def test_learnable_needs_layer(name):
    with pytest.raises(util.ConfigurationError, match="learnable parameters"):
        activations.build(name)


@pytest.mark.parametrize("bad", [None, 3, ["relu"]])
def test_bad_name_type(bad):
    with pytest.raises(util.ConfigurationError, match="activation must be"):
        activations.build(bad, fake_layer())


@pytest.mark.parametrize("name", ["relu+", "+relu", "relu++tanh"])
def test_empty_composition_part(name):
    with pytest.raises(util.ConfigurationError, match="every part"):
        activations.build(name, fake_layer())


def test_instance_is_returned_unchanged():
    act = activations.build("prelu", fake_layer())
    assert activations.build(act, fake_layer(name="other")) is act


def test_callable_is_wrapped(data):
    def cube(x):
        return x**3

    act = activations.build(cube, fake_layer())
    assert isinstance(act, activations.Activation)
    assert act.name == "cube"
    assert act.params == []
    np.testing.assert_allclose(evaluate(act, data[2]), data[2] ** 3)
    with pytest.raises(util.ConfigurationError, match="callable"):
        activations.build(cube, fake_layer(), pieces=2)


def test_user_subclass_is_registered_at_once(data):
    class Cubic(activations.Activation):
        """x cubed (test-only)."""

        def __call__(self, x):
            return x**3

    try:
        act = activations.build("cubic", fake_layer())
        np.testing.assert_allclose(evaluate(act, data[2]), data[2] ** 3)
    finally:
        activations.Activation._registry.pop("cubic")


# ----------------------------------------------------------------------
# composition


def test_composition_applies_left_to_right(data):
    x = data[2]
    act = activations.build("relu+tanh", fake_layer())
    assert act.name == "tanh(relu)"
    np.testing.assert_allclose(evaluate(act, x), np.tanh(np.maximum(x, 0)))
    act = activations.build("tanh+norm:max", fake_layer())
    np.testing.assert_allclose(evaluate(act, x), FIXED["norm:max"](np.tanh(x)))


def test_composition_of_three(data):
    x = data[3]
    act = activations.build("softplus+norm:z+sigmoid", fake_layer())
    assert act.name == "sigmoid(norm:z(softplus))"
    expected = FIXED["sigmoid"](FIXED["norm:z"](FIXED["softplus"](x)))
    np.testing.assert_allclose(evaluate(act, x), expected)


def test_composition_collects_parameters(data):
    act = activations.build("maxout:2+prelu", fake_layer())
    # upstream master's order: the outer function's parameters, then the inner's
    assert [p.name for p in act.params] == ["hid1.leak", "hid1.slope", "hid1.intercept"]
    assert act.name == "prelu(maxout:2)"
    assert (act.f.name, act.g.name) == ("maxout:2", "prelu")
    x = data[2]
    inner = activations.build("maxout:2", fake_layer())
    outer = activations.build("prelu", fake_layer(skip=16))
    expected = learnable_oracle("prelu", outer, learnable_oracle("maxout", inner, x))
    np.testing.assert_allclose(evaluate(act, x), expected)


# ----------------------------------------------------------------------
# dtypes and default mode


@pytest.mark.parametrize("name", sorted(FIXED) + LEARNABLE + ["relu+norm:z"])
def test_float32_stays_float32(name):
    with pytensor.config.change_flags(floatX="float32"):
        act = activations.build(name, fake_layer())
        x = pt.tensor("x", dtype="float32", shape=(None, None, None))
        assert act(x).dtype == "float32"
        assert all(p.dtype == "float32" for p in act.params)
        value = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
        out = evaluate(act, value)
        assert out.dtype == np.float32
        assert out.shape == value.shape


def test_default_mode(data, default_mode):
    """One check under the mode users get by default."""
    act = activations.build("prelu+softmax", fake_layer())
    x = data[3]
    leak = act.params[0].get_value()
    expected = _softmax(np.maximum(x, 0) + np.exp(leak) * np.minimum(x, 0))
    np.testing.assert_allclose(evaluate(act, x, mode=None), expected, rtol=1e-10)


def test_repr():
    assert repr(activations.build("tanh")) == "Tanh(name='tanh')"
