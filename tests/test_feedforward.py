"""Tests for the model-level helpers of theanets.feedforward: scores, encode, decode.

Scores are checked against scikit-learn's ``r2_score`` and ``accuracy_score``
(with ``sample_weight``), and hand-worked values.
"""

import numpy as np
import pytensor
import pytest

import theanets
from theanets import recurrent
from theanets.util import ConfigurationError

metrics = pytest.importorskip("sklearn.metrics", reason="the score tests compare with scikit-learn")


def _r2(y, pred, w=None):
    """R^2 pooled over every value, as scikit-learn computes it for one output."""
    return metrics.r2_score(
        np.ravel(y), np.ravel(pred), sample_weight=None if w is None else np.ravel(w)
    )


@pytest.fixture
def float64():
    with pytensor.config.change_flags(floatX="float64"):
        yield


# ----------------------------------------------------------------------
# scores


def test_regressor_score_matches_sklearn(float64, regression_data, rng):
    x, y = regression_data
    net = theanets.Regressor([4, (6, "tanh"), 3])
    pred = net.predict(x)
    w = rng.uniform(0.1, 2, size=y.shape)
    assert net.score(x, y) == pytest.approx(_r2(y, pred), rel=1e-12)
    assert net.score(x, y, w) == pytest.approx(_r2(y, pred, w), rel=1e-12)
    # a perfect fit scores 1
    assert net.score(x, pred) == 1.0


def test_weighted_r_squared_uses_the_weighted_mean():
    net = theanets.Regressor([1, 1])
    net.find("out", "w").set_value(np.ones((1, 1), net.find("out", "w").dtype))
    net.find("out", "b").set_value(np.zeros(1, net.find("out", "b").dtype))
    x = np.array([[0.0], [1.0], [2.0], [3.0]])  # predictions = x
    y = np.array([[0.0], [2.0], [2.0], [6.0]])
    w = np.array([[3.0], [1.0], [1.0], [1.0]])
    # weighted mean 10/6; residual sum 0 + 1 + 0 + 9 = 10;
    # total 3*(5/3)^2 + (1/3)^2 + (1/3)^2 + (13/3)^2 = 246/9
    assert net.score(x, y, w) == pytest.approx(1 - 10 / (246 / 9), rel=1e-6)
    assert net.score(x, y, w) == pytest.approx(_r2(y, x, w), rel=1e-6)
    unweighted_mean = 1 - (w * (y - x) ** 2).sum() / (w * (y - y.mean()) ** 2).sum()
    assert net.score(x, y, w) != pytest.approx(unweighted_mean, abs=0.01)  # master: 0.683


def test_classifier_score_matches_sklearn(float64, classification_data, rng):
    x, y = classification_data
    net = theanets.Classifier([4, (5, "tanh"), 3])
    pred = net.predict(x)
    assert 0 < metrics.accuracy_score(y, pred) < 1  # the check below can tell them apart
    w = rng.uniform(0, 3, size=y.shape)
    assert net.score(x, y) == pytest.approx(metrics.accuracy_score(y, pred), rel=1e-12)
    assert net.score(x, y, w) == pytest.approx(
        metrics.accuracy_score(y, pred, sample_weight=w), rel=1e-12
    )


def test_autoencoder_score_takes_weights_second(float64, rng):
    x = rng.normal(size=(20, 5))
    w = rng.uniform(0.1, 2, size=x.shape)
    net = theanets.Autoencoder([5, (3, "tanh"), ("tied", 5)])
    pred = net.predict(x)
    assert net.score(x) == pytest.approx(_r2(x, pred), rel=1e-12)
    assert net.score(x, w) == pytest.approx(_r2(x, pred, w), rel=1e-12)
    assert net.score(x, w=w) == net.score(x, w)


def test_recurrent_scores_match_sklearn(float64, rng):
    x = rng.normal(size=(4, 6, 3))
    y = np.cumsum(x[..., :2], axis=1)
    labels = (x[..., 0] > 0).astype("int32") + (x[..., 1] > 0.5)
    w = rng.uniform(0.1, 2, size=y.shape)
    net = recurrent.Regressor([3, (4, "gru"), 2])
    assert net.score(x, y, w) == pytest.approx(_r2(y, net.predict(x), w), rel=1e-12)
    ae = recurrent.Autoencoder([3, (4, "rnn"), 3])
    assert ae.score(x, w[..., :1].repeat(3, -1)) == pytest.approx(
        _r2(x, ae.predict(x), w[..., :1].repeat(3, -1)), rel=1e-12
    )
    clf = recurrent.Classifier([3, (4, "lstm"), 3])
    pred, lw = clf.predict(x), w[..., 0]
    assert clf.score(x, labels, lw) == pytest.approx(
        metrics.accuracy_score(labels.ravel(), pred.ravel(), sample_weight=lw.ravel()), rel=1e-12
    )


@pytest.mark.parametrize(
    "w, match",
    [
        (np.ones(5), r"w has shape \(5,\); give one weight per target value, \(5, 2\)"),
        (np.full((5, 2), -1.0), "non-negative with a positive sum"),
        (np.zeros((5, 2)), "non-negative with a positive sum"),
        (np.full((5, 2), np.nan), "NaN or infinite"),
    ],
)
def test_bad_score_weights_are_rejected(w, match):
    x, y = np.zeros((5, 3)), np.ones((5, 2))
    with pytest.raises(ValueError, match=match):
        theanets.Regressor([3, 2]).score(x, y, w)
    with pytest.raises(ValueError, match=match):
        theanets.Autoencoder([2, 2]).score(y, w)
    with pytest.raises(ValueError, match=r"w has shape \(5, 2\).*\(5,\)"):
        theanets.Classifier([3, 2]).score(x, np.zeros(5, int), np.ones((5, 2)))


# ----------------------------------------------------------------------
# class labels, recurrent layers


@pytest.mark.parametrize("labels", [[0, -1, 1], [0, 3, 1]])
def test_labels_outside_the_classes_are_rejected(labels):
    net = theanets.Classifier([2, 3])
    x, y = np.zeros((3, 2)), np.array(labels)
    before = [p.get_value() for p in net.params]
    for call in (
        lambda: net.score(x, y),
        lambda: net.loss_value(x, y),
        lambda: net.train([x, y], algo="sgd", max_updates=1),
    ):
        with pytest.raises(ValueError, match=r"class labels must be in 0\.\.2"):
            call()
    for p, value in zip(net.params, before):
        np.testing.assert_array_equal(p.get_value(), value)


@pytest.mark.parametrize("model", [theanets.Regressor, theanets.Classifier, theanets.Autoencoder])
def test_recurrent_layer_in_a_feedforward_model_is_rejected_when_built(model):
    with pytest.raises(ConfigurationError, match="use a model from theanets.recurrent"):
        model([3, (4, "gru"), 3])


# ----------------------------------------------------------------------
# encode / decode


def test_decode_keeps_the_code_dtype():
    with pytensor.config.change_flags(floatX="float64"):
        net = theanets.Autoencoder([4, (3, "linear"), ("tied", 4)])
    w, b_out = net.find("hid1", "w").get_value(), net.find("out", "b").get_value()
    z = np.random.default_rng(5).normal(size=(6, 3)) * (1 + 1e-9)  # not float32-representable
    want = z @ w.T + b_out
    with pytensor.config.change_flags(floatX="float32"):
        got = net.decode(z)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


def test_decode_rejects_text_codes():
    net = theanets.Autoencoder([4, (3, "linear"), ("tied", 4)])
    with pytest.raises(TypeError, match="real numbers"):
        net.decode(np.array([["a", "b", "c"]]))


def _sampler_net(seed):
    with pytensor.config.change_flags(floatX="float64"):
        return theanets.Autoencoder([5, (4, "sigmoid"), ("tied", 5)], rng=seed)


def test_encode_samples_follow_the_network_seed():
    x = np.random.default_rng(6).normal(size=(400, 5))
    a, b, c = _sampler_net(3), _sampler_net(3), _sampler_net(4)
    np.random.seed(0)
    global_state = np.random.get_state()
    first = a.encode(x, sample=True)
    second = a.encode(x, sample=True)
    assert np.random.get_state()[1].tolist() == global_state[1].tolist()
    assert first.dtype == np.uint8 and set(np.unique(first)) <= {0, 1}
    np.testing.assert_array_equal(b.encode(x, sample=True), first)  # same seed, same draws
    np.testing.assert_array_equal(b.encode(x, sample=True), second)
    assert not np.array_equal(first, second)  # fresh draws on each call
    assert not np.array_equal(c.encode(x, sample=True), first)


def test_encode_samples_are_bernoulli_with_the_code_as_probability():
    net = _sampler_net(3)
    x = np.tile(np.random.default_rng(7).normal(size=(1, 5)), (20000, 1))
    p = net.encode(x)[0]
    freq = net.encode(x, sample=True).mean(axis=0)
    # 5 standard errors of a Bernoulli mean over 20000 draws
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / 20000))
