"""Tests for theanets.recurrent: models on (batch, time, features) data, batches, Text."""

import json
import os

import numpy as np
import pytensor
import pytest

import theanets
from theanets import recurrent
from theanets.util import ConfigurationError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def float32():
    with pytensor.config.change_flags(floatX="float32"):
        yield


@pytest.fixture(scope="module")
def upstream():
    with open(os.path.join(FIXTURES, "upstream_init.json")) as handle:
        cases = json.load(handle)["cases"]
    arrays = np.load(os.path.join(FIXTURES, "upstream_init.npz"))
    return cases, {k: arrays[k] for k in arrays.files}


def _upstream_net(upstream, case):
    cases, arrays = upstream
    with pytensor.config.change_flags(floatX="float32"):
        net = eval(cases[case]["ctor"], {"theanets": theanets, "np": np})
    return net, arrays, f"{case}/"


# ----------------------------------------------------------------------
# models against upstream outputs


def test_classifier_matches_upstream(upstream, float32):
    net, arrays, key = _upstream_net(upstream, "recurrent_classifier")
    x = arrays[key + "@x"]
    np.testing.assert_allclose(net.predict_proba(x), arrays[key + "@predict_proba"], atol=1e-6)
    np.testing.assert_allclose(net.predict_logit(x), arrays[key + "@predict_logit"], atol=1e-5)
    np.testing.assert_array_equal(net.predict(x), arrays[key + "@predict"])
    assert net.predict(x).shape == (2, 5)


def test_autoencoder_matches_upstream(upstream, float32):
    net, arrays, key = _upstream_net(upstream, "recurrent_autoencoder")
    x = arrays[key + "@x"]
    np.testing.assert_allclose(net.predict(x), arrays[key + "@predict"], atol=1e-6)
    np.testing.assert_allclose(net.encode(x, "hid1"), arrays[key + "@encode"], atol=1e-6)


def test_lstm_regressor_matches_upstream_in_default_mode(upstream, float32, default_mode):
    net, arrays, key = _upstream_net(upstream, "lstm")
    x = arrays[key + "@x"]
    np.testing.assert_allclose(net.predict(x), arrays[key + "@predict"], atol=1e-5)


# ----------------------------------------------------------------------
# models on sequences


@pytest.fixture(scope="module")
def seq_data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 5, 3))
    y = np.cumsum(x[..., :2], axis=1) / 3
    labels = (x[..., 0] > 0).astype("int32") + (x[..., 1] > 1).astype("int32")
    return x, y, labels


def test_feedforward_layers_apply_per_time_step(seq_data):
    x = seq_data[0]
    with pytensor.config.change_flags(floatX="float64"):
        net = recurrent.Regressor([3, (4, "rnn"), (5, "tanh"), 2])
    out = net.feed_forward(x)
    w, b = net.find("hid2", "w").get_value(), net.find("hid2", "b").get_value()
    np.testing.assert_allclose(out["hid2:out"], np.tanh(out["hid1:out"] @ w + b), rtol=1e-7)
    assert out["out:out"].shape == (6, 5, 2)


def test_classifier_per_time_step(seq_data):
    x, _, labels = seq_data
    with pytensor.config.change_flags(floatX="float64"):
        net = recurrent.Classifier([3, (4, "gru"), 3])
    proba = net.predict_proba(x)
    assert proba.shape == (6, 5, 3)
    np.testing.assert_allclose(proba.sum(axis=-1), 1)
    logit = net.predict_logit(x)
    e = np.exp(logit - logit.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(proba, e / e.sum(axis=-1, keepdims=True), rtol=1e-7)
    np.testing.assert_array_equal(net.predict(x), proba.argmax(axis=-1))
    assert net.score(x, labels) == pytest.approx(np.mean(proba.argmax(-1) == labels))
    w = np.random.default_rng(0).uniform(size=labels.shape)
    assert net.score(x, labels, w) == pytest.approx(
        (w * (proba.argmax(-1) == labels)).sum() / w.sum()
    )
    # the loss is the mean cross-entropy over every (example, time step)
    want = -np.mean(np.log(np.take_along_axis(proba, labels[..., None], -1)))
    assert net.loss_value(x, labels) == pytest.approx(want, rel=1e-6)


def test_regressor_and_autoencoder_scores(seq_data):
    x, y, _ = seq_data
    with pytensor.config.change_flags(floatX="float64"):
        net = recurrent.Regressor([3, (4, "lstm"), 2])
        ae = recurrent.Autoencoder([3, (4, "rnn"), 3])
    pred = net.predict(x)
    want = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert net.score(x, y) == pytest.approx(want)
    assert ae.predict(x).shape == x.shape
    assert ae.loss_value(x) == pytest.approx(np.mean((ae.predict(x) - x) ** 2))


def test_bad_data_is_rejected(seq_data):
    x, y, labels = seq_data
    net = recurrent.Regressor([3, (4, "rnn"), 2])
    with pytest.raises(ValueError, match="3-D"):
        net.predict(x[:, 0])
    with pytest.raises(ValueError, match="same number of time steps"):
        net.loss_value(x, y[:, :3])
    with pytest.raises(ValueError, match="same number of time steps"):
        net.train([x, y[:, :4]], algo="sgd", max_updates=1)
    clf = recurrent.Classifier([3, (4, "rnn"), 3])
    with pytest.raises(ValueError, match="2-D"):
        clf.loss_value(x, labels[..., None])
    with pytest.raises(ValueError, match="same number of time steps"):
        clf.loss_value(x, labels[:, 1:])
    with pytest.raises(ValueError, match="class labels"):
        clf.loss_value(x, labels + 3)


def test_training_with_batches_reduces_the_loss():
    rng = np.random.default_rng(8)
    series = rng.normal(size=(400, 2)).astype(pytensor.config.floatX)
    # target: the input one step earlier (needs memory)
    target = np.concatenate([np.zeros((1, 2)), series[:-1]]).astype(series.dtype)
    net = recurrent.Regressor([2, (8, "gru", "tanh"), 2])
    train = recurrent.batches([series, target], steps=10, batch_size=16, rng=1)
    valid = train()
    before = net.loss_value(*valid)
    net.train(
        train,
        algo="adam",
        learning_rate=0.02,
        max_updates=40,
        batch_size=16,
        train_batches=5,
        validate_every=100,
    )
    assert net.loss_value(*valid) < 0.5 * before


def test_save_and_load_round_trip(tmp_path, seq_data):
    x = seq_data[0]
    net = recurrent.Classifier([3, dict(form="bidirectional", worker="lstm", size=4), 3])
    path = tmp_path / "model.npz"
    net.save(path)
    loaded = theanets.Network.load(path)
    assert type(loaded) is recurrent.Classifier
    np.testing.assert_allclose(loaded.predict_proba(x), net.predict_proba(x), rtol=1e-6)


# ----------------------------------------------------------------------
# batches


def test_batches_shapes_and_alignment():
    x = np.arange(200.0).reshape(100, 2)
    y = np.arange(100) * 10
    fn = recurrent.batches([x, y], steps=7, batch_size=5, rng=3)
    bx, by = fn()
    assert bx.shape == (5, 7, 2) and by.shape == (5, 7)
    np.testing.assert_array_equal(by, bx[..., 0] * 5)  # same offsets for every array
    np.testing.assert_array_equal(np.diff(bx[..., 0], axis=1), 2)  # contiguous windows
    again = recurrent.batches([x, y], steps=7, batch_size=5, rng=3)()
    np.testing.assert_array_equal(again[0], bx)
    assert not np.array_equal(fn()[0], bx)


def test_batches_window_may_cover_the_whole_sequence():
    x = np.arange(6.0)[:, None]
    (bx,) = recurrent.batches([x], steps=6, batch_size=2, rng=np.random.RandomState(0))()
    np.testing.assert_array_equal(bx[..., 0], [np.arange(6.0)] * 2)


@pytest.mark.parametrize(
    "arrays, kwargs, match",
    [
        ([np.zeros((5, 2))], dict(steps=6), "fewer than steps=6"),
        ([np.zeros((5, 2)), np.zeros((6, 2))], dict(steps=2), "same length"),
        ([], dict(steps=2), "at least one array"),
        ([np.zeros((5, 2))], dict(steps=0), "steps must be a positive integer"),
        ([np.zeros((5, 2))], dict(steps=2, batch_size=0), "batch_size"),
    ],
)
def test_batches_errors(arrays, kwargs, match):
    with pytest.raises(ValueError, match=match):
        recurrent.batches(arrays, **kwargs)


# ----------------------------------------------------------------------
# Text


def test_text_alphabet_encode_decode():
    t = recurrent.Text("hello world, hello!", min_count=2)
    assert t.alphabet == " ehlo"
    assert t.num_classes == 6
    assert t.text == "hello \0o\0l\0\0 hello\0"
    assert t.encode("hole?") == [3, 5, 4, 2, 0]
    assert t.decode(t.encode("hello")) == "hello"
    assert t.decode([0, 1]) == "\0 "
    custom = recurrent.Text("abcabc", alphabet="cb", unknown="_")
    assert custom.alphabet == "cb" and custom.text == "_bc_bc"
    with pytest.raises(ValueError, match="labels must be in"):
        t.decode([9])


def test_text_classifier_batches():
    t = recurrent.Text("abcdefgh" * 5, min_count=1)
    fn = t.classifier_batches(steps=4, batch_size=3, rng=0)
    x, y = fn()
    assert x.shape == (3, 4, 9) and x.dtype == np.float32
    assert y.shape == (3, 4) and y.dtype == np.int32
    np.testing.assert_array_equal(x.sum(axis=-1), 1)
    seen = x.argmax(axis=-1)
    np.testing.assert_array_equal(y[:, :-1], seen[:, 1:])  # targets are the next characters
    np.testing.assert_array_equal(y, (seen % 8) + 1)  # 'a'..'h' cycle: next label
    with pytest.raises(ValueError, match="at least 5"):
        recurrent.Text("abcd", min_count=1).classifier_batches(4, 2)


# ----------------------------------------------------------------------
# predict_sequence


@pytest.fixture(scope="module")
def char_model():
    with pytensor.config.change_flags(floatX="float64"):
        return recurrent.Classifier([4, (5, "rnn", "tanh"), 4])


def test_predict_sequence_greedy_follows_argmax(char_model):
    got = list(char_model.predict_sequence([1, 2], 4))
    seq = [1, 2]
    for _ in range(4):
        onehot = np.eye(4)[seq][None]
        seq.append(int(char_model.predict_proba(onehot)[0, -1].argmax()))
    assert got == seq[2:]
    assert all(isinstance(g, int) for g in got)


def test_predict_sequence_sampling_and_streams(char_model):
    a = list(char_model.predict_sequence([0], 6, streams=3, rng=5))
    b = list(char_model.predict_sequence([0], 6, streams=3, rng=5))
    assert a == b
    assert len(a) == 6 and all(len(step) == 3 for step in a)
    assert all(0 <= v < 4 for step in a for v in step)


def test_predict_sequence_errors(char_model):
    with pytest.raises(ValueError, match="non-empty"):
        list(char_model.predict_sequence([], 2))
    with pytest.raises(ValueError, match="labels must be in"):
        list(char_model.predict_sequence([7], 2))
    with pytest.raises(ConfigurationError, match="one-hot"):
        list(recurrent.Classifier([3, (5, "rnn"), 4]).predict_sequence([1], 2))
