"""Tests for theanets.graph.Network: spec grammar, names, initial values, evaluation."""

import io
import json
import os
import pickle

import numpy as np
import pytensor
import pytest

import theanets
from theanets import layers
from theanets.util import ConfigurationError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


# ----------------------------------------------------------------------
# spec grammar and names


def test_layer_names_and_default_activations():
    net = theanets.Regressor([3, 4, (5, "tanh"), 2])
    assert [layer.name for layer in net.layers] == ["in", "hid1", "hid2", "out"]
    assert [layer.activation for layer in net.layers[1:]] == ["relu", "tanh", "linear"]
    assert theanets.Classifier([3, 4, 2]).layers[-1].activation == "softmax"


def test_spec_grammar_forms():
    net = theanets.Regressor(
        [
            dict(size=3, name="x"),
            (4, "sigmoid", "feedforward"),
            dict(size=5, activation="tanh", form="ff", name="named"),
            layers.Feedforward(size=6, inputs="named", name="made"),
            "flatten",
            (2, "classifier"),
        ]
    )
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["Input", "Feedforward", "Feedforward", "Feedforward", "Flatten", "Classifier"]
    assert [layer.name for layer in net.layers] == ["x", "hid1", "named", "made", "hid4", "out"]
    assert net.layers[-1].activation == "softmax" or net.layers[-1].activation == "linear"


def test_shape_tuple_first_layer_is_input_shape():
    net = theanets.Regressor([(2, 3), "flatten", 4])
    assert net.layers[0].output_shape == (2, 3)
    assert net.layers[1].output_shape == (6,)


def test_ff_and_classifier_forms():
    assert isinstance(layers.Layer.build("ff", size=2, name="a"), layers.Feedforward)
    assert type(layers.Layer.build("feedforward", size=2, name="a")) is layers.Feedforward
    assert isinstance(layers.Layer.build("classifier", size=2, name="a"), layers.Classifier)


def test_parameter_names_and_counts():
    net = theanets.Regressor([4, 5, dict(size=3, inputs=("in", "hid1")), 2])
    assert [p.name for p in net.params] == [
        "hid1.w",
        "hid1.b",
        "hid2.w_in:out",
        "hid2.w_hid1:out",
        "hid2.b",
        "out.w",
        "out.b",
    ]
    assert net.find("hid2", "w_in:out").get_value().shape == (4, 3)
    assert net.find(1, 0) is net.find("hid1", "w")


def test_tied_partner_found_automatically_and_output_named_out():
    net = theanets.Autoencoder([6, 4, (3, "tanh"), ("tied", 4), ("tied", 6, "linear")])
    names = [layer.name for layer in net.layers]
    assert names == ["in", "hid1", "hid2", "hid3", "out"]
    assert net.layers[3].partner is net.layers[2]
    assert net.layers[4].partner is net.layers[1]
    assert [p.name for p in net.params] == [
        "hid1.w",
        "hid1.b",
        "hid2.w",
        "hid2.b",
        "hid3.b",
        "out.b",
    ]


def test_feed_forward_returns_scoped_outputs():
    net = theanets.Regressor([3, 4, 2])
    out = net.feed_forward(np.zeros((2, 3), "float32"))
    assert sorted(out) == ["hid1:out", "hid1:pre", "in:out", "out:out", "out:pre"]


# ----------------------------------------------------------------------
# same seed, same values as upstream

with open(os.path.join(FIXTURES, "upstream_init.json")) as handle:
    _CASES = json.load(handle)["cases"]

_FF_CASES = [
    "regressor",
    "regressor_rng7",
    "regressor_rngstate7",
    "classifier",
    "autoencoder_tied",
    "autoencoder_untied",
    "autoencoder_deep_tied",
    "ff_std_mean",
    "ff_std_mean_bias_unaffected",
    "ff_per_param",
    "ff_sparsity",
    "ff_sparsity_tall",
    "ff_diagonal",
    "ff_diagonal_2",
    "ff_multi_input",
    "ff_output_tanh",
    "ff_classifier_layer",
]


def _build_case(ctor):
    namespace = {"theanets": theanets, "np": np, "numpy": np}
    return eval(ctor, namespace)


def _upstream_name(name):
    # upstream 0.7.3 named tied layers 'tied-<partner>'; we follow 0.8 ('hidN', 'out').
    return name


@pytest.mark.parametrize("case", _FF_CASES)
def test_same_seed_initial_values_match_upstream(case):
    info = _CASES[case]
    with np.load(os.path.join(FIXTURES, "upstream_init.npz")) as arrays:
        want = [arrays[f"{case}/{name}"] for name in info["params"]]
    net = _build_case(info["ctor"])
    got = [p.get_value() for p in net.params]
    assert len(got) == len(want)
    for g, w, name in zip(got, want, info["params"]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("case", ["regressor", "classifier", "ff_multi_input", "autoencoder_tied"])
def test_forward_pass_matches_upstream(case):
    info = _CASES[case]
    net = _build_case(info["ctor"])
    with np.load(os.path.join(FIXTURES, "upstream_init.npz")) as arrays:
        x = arrays[f"{case}/@x"]
        want = arrays[f"{case}/@predict"]
    got = net.predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------
# numerics against NumPy


def _relu(x):
    return np.maximum(x, 0)


def test_regressor_forward_matches_numpy():
    net = theanets.Regressor([3, (4, "tanh"), 2])
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    w1, b1, w2, b2 = [p.get_value() for p in net.params]
    want = np.tanh(x @ w1 + b1) @ w2 + b2
    np.testing.assert_allclose(net.predict(x), want, rtol=1e-5, atol=1e-5)


def test_classifier_probabilities_and_logits():
    net = theanets.Classifier([3, 4, 3])
    x = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
    w1, b1, w2, b2 = [p.get_value() for p in net.params]
    logits = _relu(x @ w1 + b1) @ w2 + b2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(net.predict_logit(x), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.predict_proba(x), probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(net.predict(x), probs.argmax(1))
    labels = probs.argmax(1)
    assert net.score(x, labels) == 1.0
    assert net.score(x, (labels + 1) % 3) == 0.0


def test_loss_value_matches_numpy(regression_data):
    x, y = regression_data
    net = theanets.Regressor([4, (5, "tanh"), 3])
    pred = net.predict(x)
    fn = pytensor.function(net.variables, net.loss())
    assert float(fn(x, y)) == pytest.approx(np.mean((pred - y) ** 2), rel=1e-5)


def test_gradient_matches_finite_differences():
    with pytensor.config.change_flags(floatX="float64"):
        net = theanets.Regressor([3, (4, "tanh"), 2])
        x = np.random.default_rng(2).normal(size=(5, 3))
        y = np.random.default_rng(3).normal(size=(5, 2))
        loss = net.loss()
        param = net.find("hid1", "w")
        grad = pytensor.function(net.variables, pytensor.grad(loss, param))(x, y)
        value_fn = pytensor.function(net.variables, loss)
        base = param.get_value()
        numeric = np.zeros_like(base)
        eps = 1e-6
        for idx in np.ndindex(base.shape):
            for sign in (1, -1):
                shifted = base.copy()
                shifted[idx] += sign * eps
                param.set_value(shifted)
                numeric[idx] += sign * value_fn(x, y) / (2 * eps)
        param.set_value(base)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_regressor_score_is_r_squared(regression_data):
    x, y = regression_data
    net = theanets.Regressor([4, 3])
    pred = net.predict(x)
    want = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert net.score(x, y) == pytest.approx(want, rel=1e-4)


def test_autoencoder_encode_decode():
    net = theanets.Autoencoder([6, (3, "sigmoid"), ("tied", 6)])
    x = np.random.default_rng(4).uniform(size=(4, 6)).astype("float32")
    w, b, b_out = [p.get_value() for p in net.params]
    code = 1 / (1 + np.exp(-(x @ w + b)))
    np.testing.assert_allclose(net.encode(x), code, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.decode(code), code @ w.T + b_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.predict(x), net.decode(net.encode(x)), rtol=1e-5, atol=1e-6)
    pred = net.predict(x).astype(float)
    r2 = 1 - ((x - pred) ** 2).sum() / ((x - x.mean()) ** 2).sum()
    assert net.score(x) == pytest.approx(r2, rel=1e-6)


def test_float32_stays_float32():
    with pytensor.config.change_flags(floatX="float32"):
        net = theanets.Regressor([3, 4, 2])
        assert all(p.dtype == "float32" for p in net.params)
        assert net.predict(np.zeros((1, 3), "float64")).dtype == np.float32


def test_inputs_of_other_real_dtypes_are_cast():
    net = theanets.Regressor([3, 2])
    ints = np.arange(6).reshape(2, 3)
    np.testing.assert_allclose(net.predict(ints), net.predict(ints.astype("float32")))


# ----------------------------------------------------------------------
# save and load


@pytest.mark.parametrize("suffix", [".pkl", ".pkl.gz", ".npz"])
def test_save_load_round_trip(tmp_path, suffix):
    net = theanets.Classifier([4, (5, "tanh"), 3])
    net.find("hid1", "b").set_value(np.arange(5, dtype="float32"))
    path = tmp_path / f"model{suffix}"
    net.save(str(path))
    loaded = theanets.Network.load(str(path))
    assert type(loaded) is theanets.Classifier
    x = np.random.default_rng(5).normal(size=(3, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.predict_proba(x), net.predict_proba(x))
    assert [p.name for p in loaded.params] == [p.name for p in net.params]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_save_load_file_objects_and_pickle():
    net = theanets.Autoencoder([4, (3, "tanh"), ("tied", 4)])
    buffer = io.BytesIO()
    net.save(buffer)
    buffer.seek(0)
    loaded = theanets.Network.load(buffer)
    x = np.ones((2, 4), "float32")
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    clone = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(clone.predict(x), net.predict(x))


def test_malicious_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        theanets.Network.load(str(path))
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "spec, match",
    [
        ([3, (4, "lstmm")], "'lstmm' is neither a layer form nor an activation.*'lstm'"),
        ([3, dict(size=4, form="feedfwd")], "unknown layer 'feedfwd'.*Did you mean 'feedforward'"),
        ([3, (4, "rleu")], "Did you mean 'relu'"),
        ([3, dict(size=4, stdd=0.1)], "unknown keyword argument 'stdd'.*Did you mean 'std'"),
        ([3, dict(size=4, inputs="hid7")], "cannot find input 'hid7:out'"),
        ([3, dict(size=4, name="in")], "already has a layer named 'in'"),
        ([3, ("tied", 3)], "partner"),
        ([3, dict(size=-1)], "positive integer"),
        ([3, dict(size=4, std_q=0.1)], "'std_q' names no parameter"),
        ([(4, "tanh")], "input layer 'in' cannot have an activation"),
        ([dict(size=4, form="ff")], "first layer"),
    ],
)
def test_bad_specs_raise_configuration_errors(spec, match):
    with pytest.raises(ConfigurationError, match=match):
        theanets.Regressor(spec)


def test_unknown_loss_suggests():
    with pytest.raises(ConfigurationError, match="Did you mean 'mse'"):
        theanets.Regressor([3, 2], loss="msee")


def test_unknown_network_kwarg():
    with pytest.raises(ConfigurationError, match="unknown keyword argument 'hidden_activaton'"):
        theanets.Regressor([3, 2], hidden_activaton="tanh")


def test_wrong_input_width_or_ndim():
    net = theanets.Regressor([3, 2])
    with pytest.raises(ValueError, match="input layer 'in' expects shape"):
        net.predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="expects 2-D data"):
        net.predict(np.zeros((2, 3, 1)))
    with pytest.raises(TypeError, match="real numbers"):
        net.predict(np.array([["a", "b", "c"]]))


def test_bad_class_labels():
    net = theanets.Classifier([3, 4])
    x = np.zeros((2, 3), "float32")
    with pytest.raises(ValueError, match=r"class labels must be in 0\.\.3"):
        net.score(x, np.array([0, 4]))
    with pytest.raises(ValueError, match="integer class labels"):
        net.score(x, np.array([0.5, 1.0]))


def test_nan_in_score_data():
    net = theanets.Regressor([3, 2])
    with pytest.raises(ValueError, match="NaN"):
        net.score(np.zeros((2, 3)), np.array([[0, np.nan], [0, 0]]))
    with pytest.raises(ValueError, match="score: input 'in' contains NaN"):
        net.score(np.full((2, 3), np.inf), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="contains NaN"):
        theanets.Classifier([3, 2]).score(np.full((2, 3), np.nan), np.array([0, 1]))
    with pytest.raises(ValueError, match="contains NaN"):
        theanets.Autoencoder([3, 2, 3]).score(np.full((2, 3), np.nan))


# ----------------------------------------------------------------------
# compatibility helpers


def test_experiment_wrapper(tmp_path, regression_data):
    exp = theanets.Experiment(theanets.Regressor, [4, 3])
    exp.train(list(regression_data), algo="sgd", max_updates=2)
    path = str(tmp_path / "exp.pkl")
    exp.save(path)
    again = theanets.Experiment(path)
    x = regression_data[0]
    np.testing.assert_allclose(again.network.predict(x), exp.network.predict(x))
    assert theanets.Experiment(exp.network).network is exp.network
    with pytest.raises(ConfigurationError, match="Experiment needs"):
        theanets.Experiment(3)


def test_classify_is_deprecated():
    net = theanets.Classifier([3, 2])
    with pytest.warns(DeprecationWarning, match="predict"):
        net.classify(np.zeros((1, 3)))


def test_num_params():
    assert theanets.Regressor([3, 4, 2]).num_params == 3 * 4 + 4 + 4 * 2 + 2


def test_default_mode_predict_matches_numpy(default_mode):
    net = theanets.Regressor([3, (4, "tanh"), 2])
    x = np.random.default_rng(0).normal(size=(5, 3))
    w1, b1, w2, b2 = [p.get_value() for p in net.params]
    np.testing.assert_allclose(net.predict(x), np.tanh(x @ w1 + b1) @ w2 + b2, rtol=1e-5)


def test_float32_network_predicts_while_floatx_is_float64():
    with pytensor.config.change_flags(floatX="float32"):
        net = theanets.Regressor([3, 2])
    with pytensor.config.change_flags(floatX="float64"):
        assert net.predict(np.zeros((2, 3))).dtype == np.float32


def test_loss_value_builds_the_symbolic_loss_once(monkeypatch):
    net = theanets.Regressor([3, (4, "tanh"), 2])
    x = np.random.default_rng(0).normal(size=(5, 3))
    y = np.random.default_rng(1).normal(size=(5, 2))
    calls = []
    original = net.loss
    monkeypatch.setattr(net, "loss", lambda **kw: calls.append(kw) or original(**kw))
    first = net.loss_value(x, y, contractive=0.1)
    second = net.loss_value(x, y, contractive=0.1)
    assert first == second
    assert len(calls) == 1
    net.loss_value(x, y, contractive=0.2)  # another configuration is a new graph
    assert len(calls) == 2


def test_from_layers_shares_the_layers_and_takes_the_losses():
    net = theanets.Regressor([3, (4, "tanh"), 2])
    loss = theanets.Loss.build("mse", target=2)
    part = theanets.Regressor.from_layers(net.layers[:2], [loss], rng=5)
    assert type(part) is theanets.Regressor
    assert part.layers == net.layers[:2] and part.layers is not net.layers
    assert part.losses == [loss] and part.rng == 5
    assert [p.name for p in part.params] == ["hid1.w", "hid1.b"]
    assert all(a is b for a, b in zip(part.params, net.params))
    head = part.add_layer(dict(size=1, name="head"))
    assert head.inputs == ["hid1:out"] and "head" not in [layer.name for layer in net.layers]


def test_from_layers_checks_its_arguments():
    net = theanets.Regressor([3, 2])
    with pytest.raises(TypeError, match="every item of layers must be a Layer"):
        theanets.Network.from_layers([3, 2])
    with pytest.raises(TypeError, match="every item of losses must be a Loss"):
        theanets.Network.from_layers(net.layers, ["mse"])
    with pytest.raises(theanets.ConfigurationError, match=r"repeated layer names \['in'\]"):
        theanets.Network.from_layers([net.layers[0], net.layers[0]])
    with pytest.raises(theanets.ConfigurationError, match="rng"):
        theanets.Network.from_layers(net.layers, rng="seed")


def test_cache_key_follows_layers_losses_and_regularizers():
    a, b = theanets.Regressor([3, 2]), theanets.Regressor([3, 2])
    assert a.cache_key() == b.cache_key()
    assert a.cache_key() != theanets.Regressor([3, 2], loss="mae").cache_key()
    regs = theanets.regularizers.from_kwargs(a, weight_l2=0.1)
    assert a.cache_key(regs) != a.cache_key()
    hash(a.cache_key(regs))
