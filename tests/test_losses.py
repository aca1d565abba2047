"""Tests of theanets.losses against NumPy/SciPy re-implementations of each loss."""

import logging

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.stats
from pytensor.graph.replace import graph_replace

from theanets import losses, util

# The Python VM linker with few rewrites compiles these tiny graphs fastest.
MODE = "FAST_COMPILE"

EPS = 1e-8


def output_var(ndim, name="out:out", dtype=None):
    dtype = dtype or pytensor.config.floatX
    return pt.tensor(name, dtype=dtype, shape=(None,) * ndim)


def evaluate(loss, outputs, target=None, weights=None, mode=MODE):
    """Compile ``loss`` on fresh output variables and evaluate it on arrays.

    ``outputs`` maps graph output names to arrays.
    """
    variables = {name: output_var(np.ndim(v), name, str(v.dtype)) for name, v in outputs.items()}
    expr = loss(variables)
    inputs = list(variables.values()) + list(loss.variables)
    values = list(outputs.values())
    if not loss._target_given:
        values.append(target)
    if loss.weighted:
        values.append(weights)
    fn = pytensor.function(inputs, expr, mode=mode)
    return fn(*values)


@pytest.fixture
def gen():
    return np.random.default_rng(21)


def probabilities(gen, shape):
    z = np.exp(gen.normal(size=shape))
    return z / z.sum(axis=-1, keepdims=True)


SHAPES = {2: (5, 3), 3: (2, 4, 3)}


# ----------------------------------------------------------------------
# oracles


def np_mse(o, t, w=None):
    e = (o - t) ** 2
    return e.mean() if w is None else (w * e).sum() / w.sum()


def np_mae(o, t, w=None):
    e = np.abs(o - t)
    return e.mean() if w is None else (w * e).sum() / w.sum()


def np_xe(p, labels, w=None):
    picked = np.take_along_axis(p, labels[..., None], axis=-1)[..., 0]
    nlp = -np.log(np.clip(picked, EPS, 1))
    return nlp.mean() if w is None else (w * nlp).sum() / w.sum()


def np_hinge(o, labels, w=None, margin=0.0):
    losses_ = np.empty(labels.shape)
    for index in np.ndindex(labels.shape):
        row, y = o[index], labels[index]
        others = max(row[k] for k in range(row.size) if k != y)
        losses_[index] = max(0.0, margin + others - row[y])
    return losses_.mean() if w is None else (w * losses_).sum() / w.sum()


def np_kl(o, t, w=None):
    tc, oc = np.clip(t, EPS, 1 - EPS), np.clip(o, EPS, 1 - EPS)
    terms = tc * np.log(tc / oc)
    if w is None:
        return terms.sum(axis=-1).mean()
    return t.shape[-1] * (w * terms).sum() / w.sum()


def np_gll(mean, covar, t, w=None, eps=1e-3):
    var = np.abs(covar) + eps
    nll = -scipy.stats.norm.logpdf(t, loc=mean, scale=np.sqrt(var))
    if w is None:
        return nll.sum(axis=-1).mean()
    return t.shape[-1] * (w * nll).sum() / w.sum()


def np_mmd(o, t, kernel=1.0, w=None):
    n = len(o)
    p = (
        np.full(n, 1 / n)
        if w is None
        else w.reshape(n, -1).mean(axis=1) / w.reshape(n, -1).mean(axis=1).sum()
    )

    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2, axis=-1) / kernel)

    total = 0.0
    for i in range(n):
        for j in range(n):
            total += p[i] * p[j] * np.mean(k(t[i], t[j]) - 2 * k(t[i], o[j]) + k(o[i], o[j]))
    return total


# ----------------------------------------------------------------------
# values


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name, oracle", [("mse", np_mse), ("mae", np_mae)])
def test_regression_losses(name, oracle, ndim, weighted, gen):
    o, t = gen.normal(size=SHAPES[ndim]), gen.normal(size=SHAPES[ndim])
    w = gen.uniform(0.1, 2, size=SHAPES[ndim]) if weighted else None
    loss = losses.Loss.build(name, target=ndim, weighted=weighted)
    np.testing.assert_allclose(evaluate(loss, {"out:out": o}, t, w), oracle(o, t, w), rtol=1e-10)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy(ndim, weighted, gen):
    p = probabilities(gen, SHAPES[ndim])
    p.flat[0] = 0.0  # exercise the clipping inside the log
    labels = gen.integers(0, 3, size=SHAPES[ndim][:-1]).astype("int32")
    labels.flat[0] = 0
    w = gen.uniform(0.1, 2, size=labels.shape) if weighted else None
    loss = losses.Loss.build("xe", target=ndim, weighted=weighted)
    assert loss.target.dtype == "int32" and loss.target.ndim == ndim - 1
    value = evaluate(loss, {"out:out": p}, labels, w)
    np.testing.assert_allclose(value, np_xe(p, labels, w), rtol=1e-10)
    assert np.isfinite(value)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("margin", [0.0, 1.0])
def test_hinge(ndim, weighted, margin, gen):
    o = gen.normal(size=SHAPES[ndim])
    labels = gen.integers(0, 3, size=SHAPES[ndim][:-1]).astype("int32")
    w = gen.uniform(0.1, 2, size=labels.shape) if weighted else None
    loss = losses.Loss.build("hinge", target=ndim, weighted=weighted, margin=margin)
    expected = np_hinge(o, labels, w, margin)
    np.testing.assert_allclose(evaluate(loss, {"out:out": o}, labels, w), expected, rtol=1e-10)


def test_hinge_default_matches_theanets_07_formula(gen):
    # theanets 0.7: mean over examples of max_k o_k - o_y
    o = gen.normal(size=(6, 4))
    labels = gen.integers(0, 4, size=6).astype("int32")
    expected = (o.max(axis=1) - o[np.arange(6), labels]).mean()
    loss = losses.Loss.build("hinge", target=2)
    assert loss.margin == 0
    np.testing.assert_allclose(evaluate(loss, {"out:out": o}, labels), expected)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_kl(ndim, weighted, gen):
    o, t = probabilities(gen, SHAPES[ndim]), probabilities(gen, SHAPES[ndim])
    w = gen.uniform(0.1, 2, size=SHAPES[ndim]) if weighted else None
    loss = losses.Loss.build("kl", target=ndim, weighted=weighted)
    np.testing.assert_allclose(evaluate(loss, {"out:out": o}, t, w), np_kl(o, t, w), rtol=1e-10)


def test_kl_is_zero_for_equal_distributions(gen):
    p = probabilities(gen, (4, 3))
    loss = losses.Loss.build("kld", target=2)
    assert abs(evaluate(loss, {"out:out": p}, p)) < 1e-12


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_gaussian_log_likelihood(ndim, weighted, gen):
    shape = SHAPES[ndim]
    mean, covar, t = gen.normal(size=shape), gen.normal(size=shape), gen.normal(size=shape)
    w = gen.uniform(0.1, 2, size=shape) if weighted else None
    loss = losses.Loss.build(
        "gll", target=ndim, weighted=weighted, mean_name="mu", covar_name="var:out"
    )
    assert (loss.mean_name, loss.covar_name) == ("mu:out", "var:out")
    outputs = {"mu:out": mean, "var:out": covar}
    np.testing.assert_allclose(evaluate(loss, outputs, t, w), np_gll(mean, covar, t, w), rtol=1e-10)


def test_gll_unit_weights_equal_unweighted(gen):
    mean, covar, t = (gen.normal(size=(4, 3)) for _ in range(3))
    outputs = {"mean:out": mean, "covar:out": covar}
    plain = evaluate(losses.Loss.build("gll"), outputs, t)
    weighted = evaluate(losses.Loss.build("gll", weighted=True), outputs, t, np.ones((4, 3)))
    np.testing.assert_allclose(weighted, plain)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kernel", [1, 2.5])
def test_mmd(ndim, weighted, kernel, gen):
    o, t = gen.normal(size=SHAPES[ndim]), gen.normal(size=SHAPES[ndim]) + 0.5
    w = gen.uniform(0.1, 2, size=SHAPES[ndim]) if weighted else None
    loss = losses.Loss.build("mmd", target=ndim, weighted=weighted, kernel=kernel)
    expected = np_mmd(o, t, kernel, w)
    np.testing.assert_allclose(evaluate(loss, {"out:out": o}, t, w), expected, rtol=1e-10)


def test_mmd_callable_kernel(gen):
    def linear_kernel(a, b):
        return pt.dot(a, b.T)

    o, t = gen.normal(size=(4, 3)), gen.normal(size=(4, 3))
    loss = losses.Loss.build("mmd", kernel=linear_kernel)
    # with a linear kernel, MMD^2 is the squared distance between the means
    expected = np.sum((o.mean(axis=0) - t.mean(axis=0)) ** 2)
    np.testing.assert_allclose(evaluate(loss, {"out:out": o}, t), expected)


def test_mmd_is_zero_for_equal_batches(gen):
    x = gen.normal(size=(4, 3))
    assert abs(evaluate(losses.Loss.build("mmd"), {"out:out": x}, x)) < 1e-12


def test_cross_entropy_accuracy(gen):
    p = probabilities(gen, (6, 3))
    labels = gen.integers(0, 3, size=6).astype("int32")
    for weighted in (False, True):
        loss = losses.Loss.build("xe", weighted=weighted)
        out = output_var(2)
        acc = loss.accuracy({"out:out": out})
        correct = (p.argmax(axis=1) == labels).astype(float)
        if weighted:
            w = gen.uniform(0.1, 2, size=6)
            value = pytensor.function([out, *loss.variables], acc, mode=MODE)(p, labels, w)
            np.testing.assert_allclose(value, (w * correct).sum() / w.sum())
        else:
            value = pytensor.function([out, *loss.variables], acc, mode=MODE)(p, labels)
            np.testing.assert_allclose(value, correct.mean())


# ----------------------------------------------------------------------
# gradients


def _grad_check(loss, output, target, weights=None, extra=None):
    """verify_grad of the loss with respect to its (first) graph output."""
    names = [loss.output_name] + list(extra or {})
    values = [output] + list((extra or {}).values())
    feeds = [] if loss._target_given else [target]
    if loss.weighted:
        feeds.append(weights)

    def fun(*outs):
        expr = loss(dict(zip(names, outs, strict=True)))
        givens = dict(zip(loss.variables, [pt.constant(v) for v in feeds], strict=True))
        return graph_replace(expr, givens)

    pytensor.gradient.verify_grad(fun, values, rng=np.random.default_rng(4), mode=MODE)


@pytest.mark.parametrize("name", ["mse", "mae", "kl", "mmd"])
@pytest.mark.parametrize("weighted", [False, True])
def test_float_loss_gradients(name, weighted, gen):
    o = probabilities(gen, (4, 3))
    t = probabilities(gen, (4, 3))
    t = np.where(np.abs(o - t) < 0.05, t + 0.1, t)  # stay away from the kink of |o - t|
    w = gen.uniform(0.5, 2, size=(4, 3))
    _grad_check(losses.Loss.build(name, weighted=weighted), o, t, w)


@pytest.mark.parametrize("name", ["xe", "hinge"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_label_loss_gradients(name, ndim, gen):
    o = probabilities(gen, SHAPES[ndim])
    labels = gen.integers(0, 3, size=SHAPES[ndim][:-1]).astype("int32")
    w = gen.uniform(0.5, 2, size=labels.shape)
    loss = losses.Loss.build(name, target=ndim, weighted=True)
    _grad_check(loss, o, labels, w)


def test_gll_gradients(gen):
    mean, t = gen.normal(size=(4, 3)), gen.normal(size=(4, 3))
    covar = gen.uniform(0.5, 2, size=(4, 3))
    loss = losses.Loss.build("gll", output_name="mean")
    assert loss.output_name == "mean:out"
    _grad_check(loss, mean, t, extra={"covar:out": covar})


# ----------------------------------------------------------------------
# construction


def test_variables_and_names():
    loss = losses.Loss.build("mse", target=3)
    assert [(v.name, v.ndim, v.dtype) for v in loss.variables] == [
        ("target", 3, pytensor.config.floatX)
    ]
    loss = losses.Loss.build("xe", target=3, weighted=True)
    assert [(v.name, v.ndim, v.dtype) for v in loss.variables] == [
        ("target", 2, "int32"),
        ("weights", 2, pytensor.config.floatX),
    ]
    assert loss.weights is loss.variables[1]
    assert losses.Loss.build("mse").target.ndim == 2
    assert losses.Loss.build("xe").target.ndim == 1
    assert losses.Loss.build("mse").weights is None


def test_existing_target_variable(gen):
    x = pt.matrix("x")
    loss = losses.Loss.build("mse", target=x, weighted=True)
    assert loss.target is x
    assert [v.name for v in loss.variables] == ["weights"]
    assert loss.to_spec()["target"] == "input"
    out = output_var(2)
    fn = pytensor.function([out, x, loss.weights], loss({"out:out": out}), mode=MODE)
    o, t, w = gen.normal(size=(3, 2)), gen.normal(size=(3, 2)), gen.uniform(size=(3, 2))
    np.testing.assert_allclose(fn(o, t, w), np_mse(o, t, w))


@pytest.mark.parametrize(
    "given, expected",
    [("out", "out:out"), ("hid1", "hid1:out"), ("hid1:pre", "hid1:pre"), ("a:b:c", "a:b:c")],
)
def test_output_name_scoping(given, expected):
    loss = losses.Loss.build("mse", output_name=given)
    assert loss.output_name == expected


def test_attributes():
    loss = losses.Loss.build("MAE", weight=0.5, weighted=True, output_name="hid2")
    assert isinstance(loss, losses.MeanAbsoluteError)
    assert (loss.weight, loss.weighted, loss.output_name) == (0.5, True, "hid2:out")


def test_registry_names_and_aliases():
    lookup = losses.Loss.lookup
    assert lookup("mse") is losses.MeanSquaredError
    assert lookup("mae") is losses.MeanAbsoluteError
    assert lookup("xe") is lookup("crossentropy") is losses.CrossEntropy
    assert lookup("hinge") is losses.Hinge
    assert lookup("kl") is lookup("kld") is losses.KullbackLeiblerDivergence
    assert lookup("gll") is losses.GaussianLogLikelihood
    assert lookup("mmd") is losses.MaximumMeanDiscrepancy


def test_unknown_name_suggests_closest():
    with pytest.raises(util.ConfigurationError, match=r"Did you mean 'mse'\?") as info:
        losses.Loss.build("msee")
    assert "Valid names" in str(info.value)


def test_missing_output_suggests_closest():
    loss = losses.Loss.build("mse", output_name="hid1")
    with pytest.raises(util.ConfigurationError, match="Did you mean 'hid2:out'"):
        loss({"hid2:out": output_var(2), "in:out": output_var(2)})
    gll = losses.Loss.build("gll", covar_name="cov")
    with pytest.raises(util.ConfigurationError, match="'cov:out'"):
        gll({"mean:out": output_var(2), "covar:out": output_var(2)})


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("mse", dict(weight="1"), "weight must be a finite number"),
        ("mse", dict(weight=float("nan")), "weight must be a finite number"),
        ("mse", dict(weight=float("inf")), "weight must be a finite number"),
        ("mse", dict(weight=True), "weight must be a finite number"),
        ("mse", dict(weighted="yes"), "weighted must be True or False"),
        ("mse", dict(target=0), "target must be"),
        ("mse", dict(target=2.0), "target must be"),
        ("mse", dict(target="2"), "target must be"),
        ("xe", dict(target=1), r"int >= 2"),
        ("xe", dict(target=pt.matrix("t")), "integer dtype"),
        ("mse", dict(output_name=""), "output_name must be"),
        ("mse", dict(output_name=3), "output_name must be"),
        ("gll", dict(mean_name=None), "mean_name must be"),
        ("gll", dict(covar_eps=0), "covar_eps must be a positive"),
        ("mmd", dict(kernel=-1), "kernel must be a positive"),
        ("mmd", dict(kernel="wide"), "kernel must be a positive"),
        ("hinge", dict(margin=-1), "margin must be a non-negative"),
        ("mse", dict(kernel=2), "unknown keyword argument 'kernel'"),
        ("mmd", dict(kernal=2), "Did you mean 'kernel'"),
    ],
)
def test_bad_arguments(name, kwargs, match):
    with pytest.raises(util.ConfigurationError, match=match):
        losses.Loss.build(name, **kwargs)


# ----------------------------------------------------------------------
# specs, cache keys, logging


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("mse", dict(weight=0.3, output_name="hid1")),
        ("xe", dict(target=3, weighted=True)),
        ("hinge", dict(margin=1.0)),
        ("kl", {}),
        ("gll", dict(mean_name="m", covar_name="c", covar_eps=0.1)),
        ("mmd", dict(kernel=3)),
    ],
)
def test_spec_round_trip(name, kwargs):
    loss = losses.Loss.build(name, **kwargs)
    spec = loss.to_spec()
    again = dict(spec)
    form = again.pop("form")
    rebuilt = losses.Loss.build(form, **again)
    assert type(rebuilt) is type(loss)
    assert rebuilt.to_spec() == spec
    assert rebuilt.cache_key() == loss.cache_key()
    hash(loss.cache_key())


def test_cache_key_changes_with_options():
    keys = {
        losses.Loss.build("mse").cache_key(),
        losses.Loss.build("mse", weight=2).cache_key(),
        losses.Loss.build("mse", weighted=True).cache_key(),
        losses.Loss.build("mse", output_name="hid1").cache_key(),
        losses.Loss.build("mae").cache_key(),
    }
    assert len(keys) == 5


def test_log(caplog):
    with caplog.at_level(logging.INFO, logger="theanets"):
        losses.Loss.build("mse", weight=0.5, output_name="hid1").log()
        losses.Loss.build("gll").log()
    text = caplog.text
    assert "MeanSquaredError" in text and "hid1:out" in text and "0.5" in text
    assert "mean:out" in text and "covar:out" in text


# ----------------------------------------------------------------------
# dtypes and default mode


@pytest.mark.parametrize("name", ["mse", "mae", "xe", "hinge", "kl", "gll", "mmd"])
@pytest.mark.parametrize("weighted", [False, True])
def test_float32_stays_float32(name, weighted):
    with pytensor.config.change_flags(floatX="float32"):
        loss = (
            losses.Loss.build(name, weighted=weighted, margin=1.0)
            if name == "hinge"
            else losses.Loss.build(name, weighted=weighted)
        )
        outputs = {n: output_var(2, n, "float32") for n in ("out:out", "mean:out", "covar:out")}
        value = loss(outputs)
        assert value.dtype == "float32"
        assert value.ndim == 0
        assert all(v.dtype in ("float32", "int32") for v in loss.variables)


def test_default_mode(gen, default_mode):
    """One check under the mode users get by default (3-D labels, weighted)."""
    p = probabilities(gen, (2, 3, 4))
    labels = gen.integers(0, 4, size=(2, 3)).astype("int32")
    w = gen.uniform(0.1, 1, size=(2, 3))
    loss = losses.Loss.build("xe", target=3, weighted=True)
    value = evaluate(loss, {"out:out": p}, labels, w, mode=None)
    np.testing.assert_allclose(value, np_xe(p, labels, w), rtol=1e-10)
