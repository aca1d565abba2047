"""Tests for theanets.trainer: Network.train/itertrain with every algorithm."""

import os

import numpy as np
import pytest
import scipy.sparse

import theanets
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


def test_sample_trainer_sets_unit_columns(regression_data):
    net = theanets.Regressor([4, (6, "tanh"), 3])
    net.train(list(regression_data), algo="sample")
    w = net.find("hid1", "w").get_value()
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1, rtol=1e-5)
    x = regression_data[0]
    normed = x / np.linalg.norm(x, axis=1, keepdims=True)
    for column in w.T:
        assert np.min(np.abs(normed - column).sum(axis=1)) < 1e-4


def test_save_progress(tmp_path, regression_data):
    net = theanets.Regressor([4, 3])
    pattern = str(tmp_path / "model-{}.pkl")
    net.train(
        list(regression_data),
        algo="sgd",
        max_updates=8,
        batch_size=32,
        save_progress=pattern,
        save_every=2,
    )
    files = sorted(os.listdir(tmp_path))
    assert files and all(f.startswith("model-") and f.endswith(".pkl") for f in files)
    loaded = theanets.Network.load(str(tmp_path / files[-1]))
    np.testing.assert_allclose(
        loaded.predict(regression_data[0]), net.predict(regression_data[0]), rtol=1e-6
    )


def test_progress_bar_option(regression_data, capsys):
    net = theanets.Regressor([4, 3])
    net.train(list(regression_data), algo="sgd", max_updates=4, batch_size=16, progress=True)
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return
    assert "batch" in capsys.readouterr().err
