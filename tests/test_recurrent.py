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


def test_batches_windows_match_numpy_offsets():
    x = np.arange(200.0).reshape(100, 2)
    y = np.arange(100) * 10
    fn = recurrent.batches([x, y], steps=7, batch_size=5, rng=3)
    bx, by = fn()
    assert bx.shape == (5, 7, 2) and by.shape == (5, 7)
    assert bx.dtype == x.dtype and by.dtype == y.dtype
    # the offsets are the draws of RandomState(3) over every valid start 0..T-steps
    offsets = np.random.RandomState(3).randint(100 - 7 + 1, size=5)
    np.testing.assert_array_equal(bx, [x[o : o + 7] for o in offsets])
    np.testing.assert_array_equal(by, [y[o : o + 7] for o in offsets])
    again = recurrent.batches([x, y], steps=7, batch_size=5, rng=np.random.RandomState(3))()
    np.testing.assert_array_equal(again[0], bx)
    assert not np.array_equal(fn()[0], bx)  # the state advances between calls


def test_batches_defaults_are_100_steps_of_64():
    (bx,) = recurrent.batches([np.zeros((150, 3))], rng=0)()
    assert bx.shape == (64, 100, 3)


def test_batches_window_may_cover_the_whole_sequence():
    x = np.arange(6.0)[:, None]
    (bx,) = recurrent.batches([x], steps=6, batch_size=2, rng=np.random.RandomState(0))()
    np.testing.assert_array_equal(bx[..., 0], [np.arange(6.0)] * 2)
    # and every start offset, the last one included, is drawn
    (bx,) = recurrent.batches([x], steps=5, batch_size=200, rng=1)()
    assert set(bx[:, 0, 0]) == {0.0, 1.0}


@pytest.mark.parametrize(
    "arrays, kwargs, match",
    [
        ([np.zeros((5, 2))], dict(steps=6), "fewer than steps=6"),
        ([np.zeros((5, 2)), np.zeros((6, 2))], dict(steps=2), "same length"),
        ([], dict(steps=2), "at least one array"),
        ([np.zeros((5, 2))], dict(steps=0), "steps must be a positive integer"),
        ([np.zeros((5, 2))], dict(steps=2.5), "steps must be a positive integer"),
        ([np.zeros((5, 2))], dict(steps=2, batch_size=0), "batch_size"),
        ([np.zeros((5, 2))], dict(steps=2, rng="seed"), "rng must be"),
    ],
)
def test_batches_errors(arrays, kwargs, match):
    with pytest.raises(ValueError, match=match):
        recurrent.batches(arrays, **kwargs)


# ----------------------------------------------------------------------
# Text


def test_text_default_alphabet_encode_decode():
    # counts: l 5, o 3, h 2, e 2, ' ' 2; w r d , ! once each
    t = recurrent.Text("hello world, hello!")
    assert t.alpha == " ehlo" and t.alphabet == t.alpha
    assert t.num_classes == 6
    assert t.text == "hello \0o\0l\0\0 hello\0"
    assert t.encode("hole?") == [3, 5, 4, 2, 0]
    assert t.decode([3, 5, 4, 2, 0]) == "hole\0"
    assert t.decode(t.encode(t.text)) == t.text
    assert recurrent.Text("hello world, hello!", min_count=3).alpha == "lo"
    assert recurrent.Text("hello world, hello!", min_count=1).alpha == " !,dehlorw"
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.5"):
        t.decode([9])


def test_text_given_alphabet_is_used_as_is():
    custom = recurrent.Text("abcabc", "cb", unknown="_")
    assert custom.alpha == "cb" and custom.text == "_bc_bc"
    assert custom.encode("abcd") == [0, 2, 1, 0]
    assert custom.decode([0, 1, 2]) == "_cb"
    # the unknown character itself is never counted in the default alphabet
    assert recurrent.Text("~~~ab", min_count=1, unknown="~").alpha == "ab"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha="ab\0"), "must not contain the unknown character"),
        (dict(alpha="a_", unknown="_"), "must not contain the unknown character '_'"),
        (dict(alpha="aba"), r"more than once: \['a'\]"),
        (dict(unknown="??"), "unknown must be one character"),
        (dict(min_count="2"), "min_count must be an integer"),
    ],
)
def test_text_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        recurrent.Text("abcabc", **kwargs)


def _batches_oracle(text, steps, batch_size, seed):
    """One batch built position by position from the offsets RandomState(seed) draws."""
    enc = text.encode(text.text)
    offsets = np.random.RandomState(seed).randint(len(enc) - steps, size=batch_size)
    inputs = np.zeros((batch_size, steps, 1 + len(text.alpha)))
    labels = np.zeros((batch_size, steps), int)
    for b, o in enumerate(offsets):
        for t in range(steps):
            inputs[b, t, enc[o + t]] = 1
            labels[b, t] = enc[o + t + 1]
    return inputs, labels


def test_text_classifier_batches_match_a_numpy_oracle():
    t = recurrent.Text("the cat sat on the mat; the dog sat on the log." * 3, min_count=4)
    assert 0 in t.encode(t.text)  # some characters are unknown
    fn = t.classifier_batches(steps=9, batch_size=6, rng=11)
    x, y = fn()
    assert x.shape == (6, 9, 1 + len(t.alpha)) and x.dtype == np.float32
    assert y.shape == (6, 9) and y.dtype == np.int32
    want_x, want_y = _batches_oracle(t, 9, 6, 11)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)


def test_text_classifier_batches_use_the_last_window():
    t = recurrent.Text("abcde", min_count=1)
    x, y = t.classifier_batches(4, 3, rng=0)()  # one window: the whole text
    np.testing.assert_array_equal(x.argmax(axis=-1), [[1, 2, 3, 4]] * 3)
    np.testing.assert_array_equal(y, [[2, 3, 4, 5]] * 3)


@pytest.mark.parametrize(
    "args, match",
    [
        ((4, 2), "at least 5"),
        ((0, 2), "steps must be a positive integer"),
        ((2, 0), "batch_size must be a positive integer"),
        ((2, True), "batch_size must be a positive integer"),
    ],
)
def test_text_classifier_batches_errors(args, match):
    with pytest.raises(ValueError, match=match):
        recurrent.Text("abcd", min_count=1).classifier_batches(*args)


# ----------------------------------------------------------------------
# predict_sequence

K = 4
PERM = np.array([2, 0, 3, 1])  # next label after label c


def _model(out_w, out_b):
    """A float64 char model: the RNN copies its input, the output layer is set by hand."""
    with pytensor.config.change_flags(floatX="float64"):
        net = recurrent.Classifier([K, (K, "rnn", "linear"), K])
    net.find("hid1", "xh").set_value(np.eye(K))
    net.find("hid1", "hh").set_value(np.zeros((K, K)))
    net.find("hid1", "b").set_value(np.zeros(K))
    net.find("out", "w").set_value(np.asarray(out_w, float))
    net.find("out", "b").set_value(np.asarray(out_b, float))
    return net


@pytest.fixture(scope="module")
def successor_model():
    """Puts probability ~1 (1 - 3e-22) on PERM[label of the last time step read]."""
    return _model(50 * np.eye(K)[PERM], np.zeros(K))


P_FIXED = np.array([0.1, 0.2, 0.3, 0.4])


@pytest.fixture(scope="module")
def fixed_model():
    """Predicts the distribution P_FIXED whatever it reads."""
    return _model(np.zeros((K, K)), np.log(P_FIXED))


def test_predict_sequence_reads_the_last_filled_time_step(successor_model):
    want, label = [], 1
    for _ in range(6):
        label = int(PERM[label])
        want.append(label)
    got = list(successor_model.predict_sequence([3, 1], 6, rng=0))
    assert got == want
    assert all(type(g) is int for g in got)
    streams = list(successor_model.predict_sequence([3, 1], 6, streams=3, rng=0))
    assert streams == [[w] * 3 for w in want]


def test_predict_sequence_draws_like_rng_multinomial(fixed_model):
    for streams in (1, 3):
        got = list(fixed_model.predict_sequence([0, 2], 5, streams=streams, rng=7))
        state = np.random.RandomState(7)
        want = []
        for _ in range(5):
            # one draw per buffer row, max(2, streams) rows, in row order
            row = [int(state.multinomial(1, P_FIXED).argmax()) for _ in range(max(2, streams))]
            want.append(row[0] if streams == 1 else row)
        assert got == want
    same = list(fixed_model.predict_sequence([0], 8, rng=np.random.RandomState(3)))
    assert same == list(fixed_model.predict_sequence([0], 8, rng=3))


def test_predict_sequence_samples_the_predicted_distribution(fixed_model):
    scipy_stats = pytest.importorskip("scipy.stats")
    draws = np.array(list(fixed_model.predict_sequence([1], 40, streams=50, rng=2)))
    counts = np.bincount(draws.ravel(), minlength=K)
    assert counts.sum() == 2000
    assert scipy_stats.chisquare(counts, 2000 * P_FIXED).pvalue > 1e-3
    # an unseeded source still samples (not the argmax every time)
    assert len(set(fixed_model.predict_sequence([1], 30, rng=None))) > 1


def test_predict_sequence_falls_back_to_argmax(monkeypatch):
    net = _model(np.zeros((K, K)), np.zeros(K))
    bad = np.array([0.2, 0.9, 0.5, 0.1])  # sums to 1.7: rng.multinomial rejects it

    def fake_proba(x, **kwargs):
        return np.broadcast_to(bad, x.shape[:2] + (K,))

    monkeypatch.setattr(net, "predict_proba", fake_proba)
    assert list(net.predict_sequence([0], 5, streams=2, rng=0)) == [[1, 1]] * 5


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (([], 2), {}, "non-empty"),
        (([[1]], 2), {}, "non-empty sequence of integers"),
        (([0.5], 2), {}, "integers"),
        (([7], 2), {}, r"labels must be in 0\.\.3"),
        (([-1], 2), {}, r"labels must be in 0\.\.3"),
        (([1], -1), {}, "steps must be an integer >= 0"),
        (([1], 2.0), {}, "steps must be"),
        (([1], 2), dict(streams=0), "streams must be a positive integer"),
        (([1], 2), dict(rng="x"), "rng must be"),
    ],
)
def test_predict_sequence_errors_are_raised_at_the_call(fixed_model, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fixed_model.predict_sequence(*args, **kwargs)  # no iteration needed


def test_predict_sequence_needs_one_hot_inputs():
    with pytest.raises(ConfigurationError, match="one-hot"):
        recurrent.Classifier([3, (5, "rnn"), 4]).predict_sequence([1], 2)


def test_predict_sequence_with_more_input_features_than_classes():
    """Upstream wrote the labels one-hot into the first columns of a wider input."""
    net = theanets.recurrent.Classifier([7, (8, "rnn"), 6])
    labels = list(net.predict_sequence([0, 1, 2], 5, rng=13))
    assert len(labels) == 5 and all(0 <= label < 6 for label in labels)
    assert labels == list(net.predict_sequence([0, 1, 2], 5, rng=13))
    narrow = theanets.recurrent.Classifier([4, (8, "rnn"), 6])
    with pytest.raises(ConfigurationError, match="at least as many features as there are classes"):
        list(narrow.predict_sequence([0, 1], 3))
