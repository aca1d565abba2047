"""Tests for theanets.trainer: Network.train/itertrain with every algorithm."""

import io
import os
import re
import types

import numpy as np
import pytest
import scipy.sparse

import theanets
from theanets import trainer
from theanets.util import ConfigurationError

ALGOS = ["sgd", "nag", "rprop", "rmsprop", "adagrad", "adadelta", "esgd", "adam"]
RATES = {"sgd": 0.05, "nag": 0.05, "rprop": 1e-3, "esgd": 0.05, "adadelta": 1.0, "adagrad": 0.1}


def _fit(net, data, algo, **kwargs):
    kwargs.setdefault("learning_rate", RATES.get(algo, 0.01))
    kwargs.setdefault("max_updates", 60)
    kwargs.setdefault("batch_size", 16)
    kwargs.setdefault("validate_every", 100)
    kwargs.setdefault("momentum", 0.5 if algo in ("sgd", "nag") else 0)
    before = net.loss_value(*data)
    net.train(data, algo=algo, **kwargs)
    return before, net.loss_value(*data)


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_reduces_regression_loss(algo, regression_data):
    net = theanets.Regressor([4, (6, "tanh"), 3])
    before, after = _fit(net, list(regression_data), algo)
    assert after < 0.9 * before


@pytest.mark.parametrize("algo", ["sgd", "rmsprop", "adam"])
def test_classifier_and_autoencoder_learn(algo, classification_data, regression_data):
    net = theanets.Classifier([4, (8, "tanh"), 3])
    before, after = _fit(net, list(classification_data), algo)
    assert after < 0.9 * before
    ae = theanets.Autoencoder([4, (3, "tanh"), ("tied", 4)])
    before, after = _fit(ae, [regression_data[0]], algo)
    assert after < before


def test_train_returns_monitors_with_accuracy(classification_data):
    net = theanets.Classifier([4, (8, "tanh"), 3])
    tm, vm = net.train(
        list(classification_data),
        algo="adam",
        learning_rate=0.01,
        max_updates=30,
        # one batch, so that the validation accuracy (a mean over batches)
        # is the accuracy over all the data that score() computes
        batch_size=len(classification_data[0]),
        monitors={"hid1:out": (0.1, 0.9)},
    )
    for monitors in (tm, vm):
        assert {"loss", "err", "acc", "hid1:out<0.1", "hid1:out<0.9"} <= set(monitors)
        assert 0 <= monitors["acc"] <= 1
    assert vm["acc"] == pytest.approx(net.score(*classification_data), abs=1e-6)


def test_itertrain_yields_per_epoch_and_validation_repeats(regression_data):
    net = theanets.Regressor([4, 3])
    pairs = list(
        net.itertrain(
            list(regression_data),
            algo="sgd",
            learning_rate=0.01,
            batch_size=32,
            validate_every=3,
            max_updates=12,
            patience=100,
        )
    )
    assert len(pairs) == 6
    assert pairs[0][1] == pairs[1][1] == pairs[2][1]


def test_successive_train_calls_compose(regression_data):
    net = theanets.Regressor([4, (6, "tanh"), 3])
    data = list(regression_data)
    net.train(data, algo="sgd", learning_rate=0.05, max_updates=30)
    middle = net.loss_value(*data)
    net.train(data, algo="adam", learning_rate=0.01, max_updates=30, weight_l2=1e-4)
    assert net.loss_value(*data) < middle


def test_misspelt_keyword_is_an_error(regression_data):
    net = theanets.Regressor([4, 3])
    with pytest.raises(ConfigurationError, match="'learnin_rate'.*Did you mean 'learning_rate'"):
        net.train(list(regression_data), learnin_rate=0.1)
    with pytest.raises(ConfigurationError, match="unknown training algorithm 'adamm'"):
        net.train(list(regression_data), algo="adamm")


def test_deprecated_algorithm_keyword(regression_data):
    net = theanets.Regressor([4, 3])
    with pytest.warns(DeprecationWarning, match="algo="):
        net.train(list(regression_data), algorithm="sgd", max_updates=2)


def test_sparse_inputs(regression_data):
    x, y = regression_data
    x = np.where(np.abs(x) > 1, x, 0).astype(x.dtype)
    net = theanets.Regressor([dict(size=4, sparse="csr"), (5, "tanh"), 3])
    dense = theanets.Regressor([4, (5, "tanh"), 3])
    sparse_x = scipy.sparse.csr_matrix(x)
    np.testing.assert_allclose(net.predict(sparse_x), dense.predict(x), rtol=1e-5, atol=1e-6)
    before, after = _fit(net, [sparse_x, y], "rmsprop")
    assert after < before


def test_weighted_loss_needs_and_uses_weights(regression_data):
    x, y = regression_data
    net = theanets.Regressor([4, 3], weighted=True)
    with pytest.raises(ValueError, match="expected 3 arrays"):
        net.train([x, y], max_updates=1)
    w = np.zeros_like(y)
    w[:, 0] = 1
    net.train([x, y, w], algo="adam", learning_rate=0.05, max_updates=100, batch_size=64)
    residual = (net.predict(x) - y) ** 2
    assert residual[:, 0].mean() < residual[:, 1:].mean()


def test_callable_data(regression_data):
    x, y = regression_data
    calls = []

    def batch():
        calls.append(1)
        idx = np.random.default_rng(len(calls)).choice(len(x), 16)
        return [x[idx], y[idx]]

    net = theanets.Regressor([4, (6, "tanh"), 3])
    before = net.loss_value(x, y)
    net.train(batch, algo="rmsprop", learning_rate=0.01, train_batches=5, max_updates=50)
    assert calls and net.loss_value(x, y) < before


def test_bad_training_data(regression_data):
    x, y = regression_data
    net = theanets.Regressor([4, 3])
    with pytest.raises(ValueError, match="different numbers of rows"):
        net.train([x, y[:10]])
    with pytest.raises(ValueError, match="empty"):
        net.train([x[:0], y[:0]])
    with pytest.raises(ValueError, match="NaN"):
        net.train([np.full_like(x, np.nan), y])


@pytest.mark.parametrize("algo", ["layerwise", "pretrain"])
def test_pretrainers(algo, classification_data):
    net = theanets.Classifier([4, (6, "tanh"), (5, "tanh"), 3])
    w1 = net.find("hid1", "w").get_value().copy()
    data = list(classification_data)
    before = net.loss_value(*data)
    stages = list(
        net.itertrain(
            data,
            algo=algo,
            subalgo="adam",
            learning_rate=0.01,
            max_updates=40,
            validate_every=100,
            batch_size=90,
        )
    )
    assert len(stages) >= 3
    assert not np.allclose(net.find("hid1", "w").get_value(), w1)
    assert [layer.name for layer in net.layers] == ["in", "hid1", "hid2", "out"]
    assert net.loss_value(*data) < before
    assert stages[-1][1]["loss"] == pytest.approx(net.loss_value(*data), rel=1e-6)


def _rows_are_unit_samples(rows, examples):
    """Each row has unit length and is one of the examples scaled to unit length."""
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, rtol=1e-5)
    normed = examples / np.linalg.norm(examples, axis=1, keepdims=True)
    for row in rows:
        assert np.min(np.abs(normed - row).sum(axis=1)) < 1e-4


def test_sample_trainer_sets_first_columns_and_output_rows(regression_data):
    """Upstream's rule: input samples become the first layer's columns, target
    samples the output layer's rows; everything else keeps its value."""
    x, y = regression_data
    net = theanets.Regressor([4, (6, "tanh"), (5, "tanh"), 3])
    before = {p.name: p.get_value() for p in net.params}
    [(train, _)] = list(net.itertrain([x, y], algo="sample"))
    _rows_are_unit_samples(net.find("hid1", "w").get_value().T, x)
    _rows_are_unit_samples(net.find("out", "w").get_value(), y)
    for name in ("hid1.b", "hid2.w", "hid2.b", "out.b"):
        np.testing.assert_array_equal(net.find(*name.split(".")).get_value(), before[name])
    assert train["loss"] == pytest.approx(net.loss_value(x, y), rel=1e-6)
    assert train["loss"] > 0


def test_sample_trainer_autoencoder_uses_inputs_as_targets(regression_data):
    x = regression_data[0]
    net = theanets.Autoencoder([4, (6, "tanh"), 4])
    net.train([x], algo="sample")
    _rows_are_unit_samples(net.find("hid1", "w").get_value().T, x)
    _rows_are_unit_samples(net.find("out", "w").get_value(), x)


def _count_saves(monkeypatch, net, data, **kwargs):
    """Train; return, for each save, how many pairs had been yielded by then."""
    pairs, saves = [], []
    monkeypatch.setattr(net, "save", lambda target: saves.append((len(pairs), target)))
    kwargs = dict(algo="sgd", batch_size=len(data[0]), validate_every=100, patience=100, **kwargs)
    for pair in net.itertrain(data, **kwargs):
        pairs.append(pair)
    return len(pairs), saves


def test_save_every_counts_pairs_from_zero(monkeypatch, regression_data):
    # pairs are counted from 0 and pair i is followed by a save when i > 0 and
    # i % N == 0: with N = 2 after the 3rd, 5th and 7th pair; then once more
    # at the end
    net = theanets.Regressor([4, 3])
    n, saves = _count_saves(
        monkeypatch, net, list(regression_data), max_updates=8, save_every=2, save_progress="m.pkl"
    )
    assert n == 8
    assert saves == [(3, "m.pkl"), (5, "m.pkl"), (7, "m.pkl"), (8, "m.pkl")]
    n, saves = _count_saves(
        monkeypatch, net, list(regression_data), max_updates=5, save_every=1, save_progress="m.pkl"
    )
    assert [count for count, _ in saves] == [2, 3, 4, 5, 5]


def test_save_every_float_is_minutes_since_the_last_save(monkeypatch, regression_data):
    clock = [0.0]
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(time=lambda: clock[0]))
    net = theanets.Regressor([4, 3])
    pairs, saves = [], []
    monkeypatch.setattr(net, "save", lambda target: saves.append(len(pairs)))
    for pair in net.itertrain(
        list(regression_data),
        algo="sgd",
        batch_size=64,
        max_updates=8,
        validate_every=100,
        save_every=1.0,
        save_progress="m.pkl",
    ):
        pairs.append(pair)
        clock[0] = 25.0 * len(pairs)  # each epoch takes 25 seconds
    # checks after pairs 2..8 at 50, 75, ... s: saves at 75 s and 150 s, then the final one
    assert saves == [3, 6, 8]


def test_save_progress_writes_the_final_model_atomically(tmp_path, regression_data):
    net = theanets.Regressor([4, 3])
    path = tmp_path / "model.pkl"
    net.train(
        list(regression_data),
        algo="sgd",
        max_updates=6,
        batch_size=32,
        save_every=2,
        save_progress=str(path),
    )
    # written through a temporary file that replaced the target: nothing else is left
    assert os.listdir(tmp_path) == ["model.pkl"]
    loaded = theanets.Network.load(str(path))
    np.testing.assert_allclose(
        loaded.predict(regression_data[0]), net.predict(regression_data[0]), rtol=1e-6
    )


def test_save_progress_formats_the_time_and_takes_file_objects(monkeypatch, regression_data):
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(time=lambda: 1234.9))
    net = theanets.Regressor([4, 3])
    _, saves = _count_saves(
        monkeypatch,
        net,
        list(regression_data),
        max_updates=3,
        save_every=2,
        save_progress="model-{}.pkl",
    )
    assert saves == [(3, "model-1234.pkl"), (3, "model-1234.pkl")]
    monkeypatch.undo()
    handle = io.BytesIO()
    net.train(list(regression_data), algo="sgd", max_updates=2, save_progress=handle)
    handle.seek(0)
    loaded = theanets.Network.load(handle)
    np.testing.assert_allclose(
        loaded.predict(regression_data[0]), net.predict(regression_data[0]), rtol=1e-6
    )


def test_regularizer_build_takes_a_leading_number_as_the_weight(regression_data):
    reg = theanets.Regularizer.build("weight_l2", 0.01)
    assert isinstance(reg, theanets.regularizers.WeightL2)
    assert (reg.weight, reg.pattern) == (0.01, None)
    # (pattern, weight) is still the positional order
    reg = theanets.Regularizer.build("hidden_l1", "hid1:out", 0.1)
    assert (reg.pattern, reg.weight) == ("hid1:out", 0.1)
    with pytest.raises(ConfigurationError, match="a number given first is the weight"):
        theanets.Regularizer.build("weight_l2", 0.01, "*.w")
    with pytest.raises(ConfigurationError, match="a number given first is the weight"):
        theanets.Regularizer.build("weight_l2", 0.01, weight=0.02)
    # it acts as the weight: with one weight array the loss is mse + 0.01 * mean(w ** 2)
    net = theanets.Regressor([4, 3])
    x, y = regression_data
    w = net.find("out", "w").get_value()
    expected = np.mean((net.predict(x) - y) ** 2) + 0.01 * np.mean(w**2)
    built = net.loss_value(x, y, regularizers=[theanets.Regularizer.build("weight_l2", 0.01)])
    assert built == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "spec, key, value, kind",
    [
        ([dict(size=4, input_noise=0.3), 3], "input_noise", 0.3, "regularizer option"),
        ([4, dict(size=5, hidden_dropout=0.5), 3], "hidden_dropout", 0.5, "regularizer option"),
        ([4, (5, "tanh", dict(weight_l2=0.01)), 3], "weight_l2", 0.01, "regularizer option"),
        ([4, dict(size=5, learning_rate=0.1), 3], "learning_rate", 0.1, "training option"),
    ],
)
def test_training_keywords_in_a_layer_spec_say_where_they_belong(spec, key, value, kind):
    hint = re.escape(f"{kind}, not a layer setting; give it when training: ")
    hint += re.escape(f"net.train(..., {key}={value!r})")
    with pytest.raises(ConfigurationError, match=hint):
        theanets.Regressor(spec)


def test_unknown_layer_keywords_are_still_plain_errors():
    with pytest.raises(ConfigurationError, match="unknown keyword argument 'sparsty'"):
        theanets.Regressor([4, dict(size=5, sparsty=0.5), 3])
    # rng is a layer keyword as well as a training one
    net = theanets.Regressor([4, dict(size=5, rng=3), 3])
    assert net.layers[1].name == "hid1"


def test_progress_bar_option(regression_data, capsys):
    net = theanets.Regressor([4, 3])
    net.train(list(regression_data), algo="sgd", max_updates=4, batch_size=16, progress=True)
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return
    assert "batch" in capsys.readouterr().err


@pytest.mark.parametrize("algo", ["layerwise", "pretrain"])
def test_training_again_reuses_stage_functions_with_the_same_results(
    algo, regression_data, monkeypatch
):
    """A second layer-wise/pretraining call compiles nothing and matches fresh stages."""
    import pytensor

    compiled = []
    real_function = pytensor.function

    def counting(*args, **kwargs):
        compiled.append(kwargs.get("name"))
        return real_function(*args, **kwargs)

    def train_twice():
        net = theanets.Regressor([4, (5, "tanh"), (3, "sigmoid"), 3])
        kwargs = dict(algo=algo, max_updates=3, batch_size=16, learning_rate=0.05)
        net.train(list(regression_data), **kwargs)
        first = len(compiled)
        net.train(list(regression_data), **kwargs)
        return [p.get_value() for p in net.params], first, len(compiled) - first

    monkeypatch.setattr(pytensor, "function", counting)
    params, first, again = train_twice()
    assert first > 0 and again == 0
    # the old way, a fresh stage network every call, gives the same parameters
    monkeypatch.setattr(trainer, "_reused_stage", lambda network, key, build: build())
    fresh, _, recompiled = train_twice()
    assert recompiled > 0
    for a, b in zip(params, fresh):
        np.testing.assert_array_equal(a, b)
