"""Tests of theanets.regularizers.

Every loss term is checked in float64 against an independent NumPy
implementation written from the network's parameter values; the
contractive penalty against finite-difference Jacobians.

Most tests compile with PyTensor's FAST_COMPILE mode (about ten times
faster to compile here); the tests that request the ``default_mode``
fixture run under the mode users get.
"""

import logging

import numpy as np
import pytensor
import pytest

import theanets
from theanets import regularizers as R
from theanets.regularizers import _jacobian as J
from theanets.util import ConfigurationError

F64 = dict(floatX="float64")
MODE = "FAST_COMPILE"


@pytest.fixture(autouse=True)
def _fast_compile(request):
    """Compile with FAST_COMPILE unless a test requests ``default_mode``."""
    if "default_mode" in request.fixturenames:
        yield
        return
    with pytensor.config.change_flags(mode=MODE):
        yield


ACT = {
    "linear": lambda z: z,
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "relu": lambda z: np.maximum(z, 0),
}


def _param(net, layer, name):
    return net.find(layer, name).get_value()


def np_forward(net, x, acts):
    """Dict of ':out' values of a feed-forward chain, from parameter values."""
    out = {"in:out": x}
    h = x
    for layer, act in zip(net.layers[1:], acts, strict=True):
        if isinstance(layer, theanets.layers.Tied):
            w = _param(net, layer.partner.name, "w").T
        else:
            w = _param(net, layer.name, "w")
        h = ACT[act](h @ w + _param(net, layer.name, "b"))
        out[layer.output_name] = h
    return out


def evaluate(net, expr, x):
    """Evaluate a symbolic expression of the network's inputs."""
    with pytensor.config.change_flags(**F64):
        fn = pytensor.function(net.inputs, expr, on_unused_input="ignore")
        return fn(x)


def term(net, reg, x):
    """Value of one regularizer's loss term on data x."""
    outputs, _ = net.build_graph([reg])
    return float(evaluate(net, reg.loss(net.layers, outputs), x))


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(7).normal(size=(6, 3))


@pytest.fixture(scope="module")
def net3():
    """A float64 regressor with three hidden layers: 3 - 4 tanh - 5 sigmoid - 4 relu - 2."""
    with pytensor.config.change_flags(**F64):
        return theanets.Regressor([3, (4, "tanh"), (5, "sigmoid"), (4, "relu"), 2])


ACTS3 = ["tanh", "sigmoid", "relu", "linear"]


# ----------------------------------------------------------------------
# registry and keyword parsing


@pytest.mark.parametrize(
    "name, cls",
    [
        ("weight_l2", R.WeightL2),
        ("weight_decay", R.WeightL2),
        ("weightl2", R.WeightL2),
        ("weight_l1", R.WeightL1),
        ("weight_sparsity", R.WeightL1),
        ("hidden_l1", R.HiddenL1),
        ("hidden_sparsity", R.HiddenL1),
        ("contractive", R.Contractive),
        ("recurrent_norm", R.RecurrentNorm),
        ("recurrent_state", R.RecurrentState),
        ("bernoullidropout", R.BernoulliDropout),
        ("gaussiannoise", R.GaussianNoise),
    ],
)
def test_registry(name, cls):
    assert R.Regularizer.lookup(name) is cls
    assert name in R.known_kwargs()
    assert issubclass(cls, theanets.Regularizer)


def test_known_kwargs_special():
    known = R.known_kwargs()
    for key in (
        "input_dropout",
        "hidden_dropout",
        "output_dropout",
        "dropout",
        "input_noise",
        "hidden_noise",
        "output_noise",
        "noise",
        "rng",
        "regularizers",
    ):
        assert key in known


def test_from_kwargs_ignores_unknown_and_orders(net3):
    regs = R.from_kwargs(
        net3,
        learning_rate=0.1,
        momentum=0.9,
        weight_l2=0.1,
        hidden_dropout=0.5,
        input_noise=0.2,
        output_dropout=0,
    )
    assert [type(r).__name__ for r in regs] == ["GaussianNoise", "BernoulliDropout", "WeightL2"]
    assert regs[0].pattern == ("in:out",)
    assert regs[1].pattern == ("hid1:out", "hid2:out", "hid3:out")
    # the same arguments in another order give the same list (and graph key)
    again = R.from_kwargs(net3, input_noise=0.2, weight_l2=0.1, hidden_dropout=0.5)
    assert [r.cache_key() for r in regs] == [r.cache_key() for r in again]


def test_from_kwargs_output_and_glob_dicts(net3):
    regs = R.from_kwargs(
        net3,
        output_dropout=0.1,
        output_noise=0.2,
        dropout={"hid1:out": 0.3, "hid2:*": 0.4},
        noise={"hid3:out": 0.5},
    )
    assert [(type(r).__name__, r.pattern, r.weight) for r in regs] == [
        ("BernoulliDropout", ("out:out",), 0.1),
        ("GaussianNoise", ("out:out",), 0.2),
        ("BernoulliDropout", "hid1:out", 0.3),
        ("BernoulliDropout", "hid2:*", 0.4),
        ("GaussianNoise", "hid3:out", 0.5),
    ]


def test_graph_rejects_unknown_kwargs(net3):
    with pytest.raises(ConfigurationError, match="weight_l2"):
        net3.loss(weight_l3=0.1)


def test_regularizers_list_and_dict(net3, data):
    y = np.zeros((len(data), 2))
    base = net3.loss_value(data, y)
    kw = net3.loss_value(data, y, weight_l2=0.3, hidden_l1=0.2)
    as_list = net3.loss_value(
        data, y, regularizers=[R.WeightL2(weight=0.3), R.HiddenL1(weight=0.2)]
    )
    as_dict = net3.loss_value(data, y, regularizers=dict(weight_l2=0.3, hidden_l1=0.2))
    assert kw != pytest.approx(base)
    assert as_list == pytest.approx(kw, rel=1e-12)
    assert as_dict == pytest.approx(kw, rel=1e-12)
    with pytest.raises(ConfigurationError, match="Regularizer instances"):
        R.from_kwargs(net3, regularizers=["weight_l2"])
    with pytest.raises(ConfigurationError, match="both"):
        R.from_kwargs(net3, weight_l2=0.1, regularizers=dict(weight_l2=0.2))


# ----------------------------------------------------------------------
# values against NumPy


def test_weight_l2_l1(net3, data, default_mode):
    ws = [_param(net3, n, "w") for n in ("hid1", "hid2", "hid3", "out")]
    assert term(net3, R.WeightL2(weight=1), data) == pytest.approx(
        np.mean([np.mean(w**2) for w in ws]), rel=1e-12
    )
    assert term(net3, R.WeightL1(weight=1), data) == pytest.approx(
        np.mean([np.mean(abs(w)) for w in ws]), rel=1e-12
    )
    assert term(net3, R.WeightL2(pattern="hid[12].*", weight=1), data) == pytest.approx(
        np.mean([np.mean(w**2) for w in ws[:2]]), rel=1e-12
    )
    # through the network's total loss, with two weights (no shared cached graph)
    y = np.zeros((len(data), 2))
    base = net3.loss_value(data, y)
    for weight in (0.5, 2.0):
        value = net3.loss_value(data, y, weight_decay=weight)
        assert value - base == pytest.approx(weight * np.mean([np.mean(w**2) for w in ws]))


def test_weight_l2_bias_only_pattern_warns(net3, data, caplog):
    with caplog.at_level(logging.WARNING, logger="theanets"):
        R.from_kwargs(net3, weight_l2=dict(weight=0.1, pattern="*.b"))
    assert "'*.b'" in caplog.text and "WeightL2" in caplog.text


def test_hidden_l1(net3, data):
    ref = np_forward(net3, data, ACTS3)
    hidden = [ref[f"hid{i}:out"] for i in (1, 2, 3)]
    assert term(net3, R.HiddenL1(weight=1), data) == pytest.approx(
        np.mean([np.mean(abs(h)) for h in hidden]), rel=1e-12
    )
    assert term(net3, R.HiddenL1(pattern="hid3:out", weight=1), data) == pytest.approx(
        np.mean(abs(hidden[2])), rel=1e-12
    )
    assert term(net3, R.HiddenL1(pattern=["out:out", "hid1:out"], weight=1), data) == (
        pytest.approx((np.mean(abs(ref["out:out"])) + np.mean(abs(hidden[0]))) / 2, rel=1e-12)
    )


def test_unmatched_patterns_warn(net3, caplog):
    with caplog.at_level(logging.WARNING, logger="theanets"):
        R.from_kwargs(
            net3,
            hidden_l1=dict(weight=0.1, pattern="nope:out"),
            dropout={"zzz:out": 0.2},
            contractive=dict(weight=0.1, wrt="xin"),
        )
    assert "'nope:out'" in caplog.text
    assert "'zzz:out'" in caplog.text
    assert "'xin'" in caplog.text
    with pytensor.config.change_flags(**F64):
        flat = theanets.Regressor([3, 2])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="theanets"):
        assert R.from_kwargs(flat, hidden_dropout=0.3) == []
    assert "hidden_dropout" in caplog.text


# ----------------------------------------------------------------------
# contractive


def fd_contractive(net, x, acts, name, eps=1e-6):
    """Mean over examples of the squared Frobenius norm of d name / d input, by central
    differences of the NumPy forward pass."""
    total = 0.0
    for n in range(len(x)):
        jac = []
        for d in range(x.shape[1]):
            e = np.zeros_like(x[n : n + 1])
            e[0, d] = eps
            hi = np_forward(net, x[n : n + 1] + e, acts)[name]
            lo = np_forward(net, x[n : n + 1] - e, acts)[name]
            jac.append((hi - lo)[0] / (2 * eps))
        total += np.sum(np.square(jac))
    return total / len(x)


def test_contractive_against_finite_differences(net3, data):
    fd = {f"hid{i}:out": fd_contractive(net3, data, ACTS3, f"hid{i}:out") for i in (1, 2, 3)}
    # one layer from the input (closed form) and through two and three layers (Jacobian)
    for name in ("hid1:out", "hid2:out", "hid3:out"):
        value = term(net3, R.Contractive(pattern=name, weight=1, wrt="in"), data)
        assert value == pytest.approx(fd[name], rel=1e-6), name
    # the default pattern averages over every hidden layer
    assert term(net3, R.Contractive(weight=1), data) == pytest.approx(
        np.mean(list(fd.values())), rel=1e-6
    )


def test_contractive_paths_agree(net3, data):
    outputs, _ = net3.build_graph([])
    xs = net3.inputs
    assert J._closed_form_norm(outputs["hid1:out"], xs) is not None
    assert J._closed_form_norm(outputs["hid2:out"], xs) is None
    closed = R.jacobian_norm(outputs["hid1:out"], xs)
    full = R.jacobian_norm(outputs["hid1:out"], xs, closed_form=False)
    a, b = evaluate(net3, [closed, full], data)
    assert a == pytest.approx(b, rel=1e-10)


def test_contractive_closed_form_with_input_dropout(net3, data):
    # the closed form includes the dropout mask's scaling of the input
    regs = R.from_kwargs(net3, input_dropout=0.4, rng=3)
    outputs, updates = net3.build_graph(regs)
    z = outputs["hid1:out"]
    assert J._closed_form_norm(z, net3.inputs) is not None
    closed = R.jacobian_norm(z, net3.inputs)
    full = R.jacobian_norm(z, net3.inputs, closed_form=False)
    assert "in:out-predrop" in outputs
    plain = R.jacobian_norm(net3.build_graph([])[0]["hid1:out"], net3.inputs)
    a, b, c = evaluate(net3, [closed, full, plain], data)
    assert a == pytest.approx(b, rel=1e-10)
    assert a != pytest.approx(c)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
def test_contractive_autoencoder_wrt_in(act, data):
    with pytensor.config.change_flags(**F64):
        net = theanets.Autoencoder([3, (5, act), (4, act), ("tied", 5), ("tied", 3)])
    acts = [act, act, "relu", "linear"]
    for name in ("hid2:out", "hid3:out"):
        fd = fd_contractive(net, data, acts, name)
        reg = R.Contractive(pattern=name, weight=1, wrt="in")
        assert term(net, reg, data) == pytest.approx(fd, rel=1e-6), name
    # through the total loss, as a keyword
    base = net.loss_value(data)
    value = net.loss_value(data, contractive=dict(weight=0.1, pattern="hid2:out", wrt="in"))
    assert value - base == pytest.approx(0.1 * fd_contractive(net, data, acts, "hid2:out"))


def test_contractive_multiple_inputs(data):
    from theanets.layers import Input

    with pytensor.config.change_flags(**F64):
        net = theanets.Regressor(
            [
                Input(size=3, name="a"),
                Input(size=2, name="b"),
                dict(size=4, inputs=["a", "b"], activation="tanh"),
                2,
            ]
        )
    xa, xb = data, data[:, :2] ** 2
    h = np.tanh(
        xa @ _param(net, "hid2", "w_a:out")
        + xb @ _param(net, "hid2", "w_b:out")
        + _param(net, "hid2", "b")
    )
    d2 = (1 - h**2) ** 2
    col = {k: (_param(net, "hid2", f"w_{k}:out") ** 2).sum(axis=0) for k in "ab"}
    want = {k: (d2 * col[k]).sum() / len(data) for k in "ab"}
    outputs, _ = net.build_graph([])
    for wrt, expected in (("*", want["a"] + want["b"]), ("a", want["a"]), ("b:out", want["b"])):
        reg = R.Contractive(weight=1, wrt=wrt)
        expr = reg.loss(net.layers, outputs)
        xs = [layer.variable for layer in reg._matched_inputs(net.layers)]
        full = R.jacobian_norm(outputs["hid2:out"], xs, closed_form=False)
        with pytensor.config.change_flags(**F64):
            got, check = pytensor.function(net.inputs, [expr, full])(xa, xb)
        assert got == pytest.approx(expected, rel=1e-10), wrt
        assert check == pytest.approx(expected, rel=1e-10), wrt
    regs = R.from_kwargs(net, input_dropout=0.2)
    assert regs[0].pattern == ("a:out", "b:out")


def test_contractive_wrt_nothing_is_zero(net3, data):
    reg = R.Contractive(weight=1, wrt="other")
    assert reg.loss(net3.layers, net3.build_graph([reg])[0]) == 0


# the chain rule through several layers, and the general path where it does not apply

LEARNABLE_ACT = dict(
    prelu=lambda z, p: np.maximum(z, 0) + np.exp(p("leak")) * np.minimum(z, 0),
    lgrelu=lambda z, p: np.exp(p("gain")) * np.maximum(z, 0) + np.exp(p("leak")) * np.minimum(z, 0),
    elu=lambda z, p: np.where(z >= 0, z, np.exp(p("gain")) * np.expm1(np.minimum(z, 0))),
)


def np_chain(net, acts):
    """NumPy forward pass of a dense/tied chain; activations may be learnable or softmax."""

    def activate(layer, act, z):
        if act == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        if act in ACT:
            return ACT[act](z)
        params = {param.name: param.get_value() for param in net.params}
        return LEARNABLE_ACT[act](z, lambda name: params[f"{layer.name}.{name}"])

    def forward(x):
        out, h = {}, x
        for layer, act in zip(net.layers[1:], acts, strict=True):
            if isinstance(layer, theanets.layers.Tied):
                w = _param(net, layer.partner.name, "w").T
            else:
                w = _param(net, layer.name, "w")
            h = activate(layer, act, h @ w + _param(net, layer.name, "b"))
            out[layer.output_name] = h
        return out

    return forward


def fd_norm(forward, x, name, eps=1e-6):
    """Mean over examples of the squared Frobenius norm of d forward(x)[name] / d x, by
    central differences, one example at a time."""
    total = 0.0
    for n in range(len(x)):
        for d in range(x.shape[1]):
            e = np.zeros_like(x[n : n + 1])
            e[0, d] = eps
            col = forward(x[n : n + 1] + e)[name] - forward(x[n : n + 1] - e)[name]
            total += np.sum(np.square(col / (2 * eps)))
    return total / len(x)


def _jitter(net, seed):
    """Move every parameter away from its initial value (leaks and gains matter then)."""
    rng = np.random.default_rng(seed)
    for param in net.params:
        value = param.get_value()
        param.set_value(value + rng.normal(scale=0.3, size=value.shape))


@pytest.fixture(scope="module")
def learnable_ae():
    """A float64 autoencoder 3 - 5 prelu - 4 elu - tied 5 lgrelu - tied 3 (linear)."""
    with pytensor.config.change_flags(**F64):
        net = theanets.Autoencoder(
            [3, (5, "prelu"), (4, "elu"), ("tied", 5, "lgrelu"), ("tied", 3)]
        )
    _jitter(net, 5)
    return net


@pytest.mark.parametrize("mode", [None, "jacobian", "gram"])
def test_contractive_chain_against_finite_differences(mode, net3, learnable_ae, data):
    cases = [
        (net3, ["tanh", "sigmoid", "relu", "linear"]),
        (learnable_ae, ["prelu", "elu", "lgrelu", "linear"]),
    ]
    for net, acts in cases:
        names = ["hid1:out", "hid2:out", "hid3:out", "out:out"]
        outputs, _ = net.build_graph([])
        totals = J._chain_norms([outputs[n] for n in names], net.inputs, mode=mode)
        assert all(t is not None for t in totals)
        got = evaluate(net, [t / len(data) for t in totals], data)
        for name, value in zip(names, got, strict=True):
            expected = fd_norm(np_chain(net, acts), data, name)
            assert value == pytest.approx(expected, rel=1e-6), (net.layers[1].name, name, mode)


def _deep_ae(acts=("sigmoid", "tanh", "sigmoid")):
    with pytensor.config.change_flags(**F64):
        net = theanets.Autoencoder(
            [6, (5, acts[0]), (4, acts[1]), ("tied", 5, acts[2]), ("tied", 6)]
        )
    _jitter(net, 2)
    return net


def test_contractive_deep_chain_skips_the_full_jacobian(monkeypatch, data):
    net = _deep_ae()
    x = np.random.default_rng(8).normal(size=(7, 6))

    def forbidden(z, xs):
        raise AssertionError("the full Jacobian was formed")

    monkeypatch.setattr(J, "_vectorized_norm", forbidden)
    monkeypatch.setattr(J, "_closed_form_norm", forbidden)
    forward = np_chain(net, ["sigmoid", "tanh", "sigmoid", "linear"])
    fd = {n: fd_norm(forward, x, n) for n in ("hid1:out", "hid2:out", "hid3:out")}
    # the default pattern (every hidden layer) and one deep layer, as keywords
    base = net.loss_value(x)
    value = net.loss_value(x, contractive=1.0) - base
    assert value == pytest.approx(np.mean(list(fd.values())), rel=1e-6)
    value = net.loss_value(x, contractive=dict(weight=1.0, pattern="hid3:out")) - base
    assert value == pytest.approx(fd["hid3:out"], rel=1e-6)
    # with dropout and noise rewriting the graph the chain still applies
    regs = R.from_kwargs(net, contractive=1.0, input_dropout=0.2, hidden_noise=0.1)
    outputs, _ = net.build_graph(regs)
    regs[0].loss(net.layers, outputs)


def test_contractive_chain_matches_full_jacobian_with_dropout_and_noise():
    # the penalty is the Jacobian of the graph as dropout and noise rewrote it:
    # both paths evaluated in one function see the same masks and noise
    net = _deep_ae(("relu", "tanh", "sigmoid"))
    x = np.random.default_rng(9).normal(size=(7, 6))
    names = ["hid1:out", "hid2:out", "hid3:out"]
    for kwargs in (
        dict(input_dropout=0.3, hidden_dropout=0.3),
        dict(input_noise=0.2, hidden_noise=0.2),
    ):
        outputs, _ = net.build_graph(R.from_kwargs(net, **kwargs))
        zs = [outputs[n] for n in names]
        exprs = [R.jacobian_norm(z, net.inputs, closed_form=False) for z in zs]
        for mode in ("jacobian", "gram"):
            exprs += [t / z.shape[0] for t, z in zip(J._chain_norms(zs, net.inputs, mode), zs)]
        values = np.array(evaluate(net, exprs, x)).reshape(3, len(names))
        np.testing.assert_allclose(values[1], values[0], rtol=1e-10)
        np.testing.assert_allclose(values[2], values[0], rtol=1e-10)
    plain = evaluate(net, R.jacobian_norm(net.build_graph([])[0]["hid2:out"], net.inputs), x)
    assert values[0][1] != pytest.approx(plain)


@pytest.mark.parametrize(
    "middle",
    [(5, "softmax"), (5, "maxout:2"), (5, "tanh+norm:z"), dict(size=5, inputs=["in", "hid1"])],
)
def test_contractive_general_path_elsewhere(monkeypatch, middle, data):
    with pytensor.config.change_flags(**F64):
        net = theanets.Regressor([3, (4, "tanh"), middle, (4, "tanh"), 2])
    outputs, _ = net.build_graph([])
    chain = J._chain_norms([outputs[f"hid{i}:out"] for i in (1, 2, 3)], net.inputs)
    assert chain[0] is not None and chain[1] is None and chain[2] is None
    calls = []
    full = J._vectorized_norm
    monkeypatch.setattr(J, "_vectorized_norm", lambda z, xs: calls.append(z) or full(z, xs))
    value = term(net, R.Contractive(weight=1, pattern="hid3:out"), data)
    assert len(calls) == 1
    if middle == (5, "softmax"):
        forward = np_chain(net, ["tanh", "softmax", "tanh", "linear"])
        assert value == pytest.approx(fd_norm(forward, data, "hid3:out"), rel=1e-6)


def test_contractive_chain_not_for_recurrent_outputs(seqnet):
    outputs, _ = seqnet.build_graph([])
    assert J._chain_norms([outputs["hid1:out"]], seqnet.inputs) == [None]


def test_contractive_chain_mode_follows_multiplication_counts():
    def sweep(layers, pattern, dtype="float64", **kwargs):
        with pytensor.config.change_flags(floatX=dtype):
            net = theanets.Autoencoder(layers)
            outputs, _ = net.build_graph(R.from_kwargs(net, **kwargs))
        xs = net.inputs
        dep = J._dependents([outputs[p] for p in pattern], xs)
        chains = [J._product_chain(outputs[p], dep, {id(x) for x in xs}) for p in pattern]
        return J._ChainSweep(chains[0][0], [c[1] for c in chains]), outputs

    hidden = ["hid1:out", "hid2:out", "hid3:out"]
    big = [256, (128, "sigmoid"), (64, "sigmoid"), (128, "sigmoid"), 256]
    # Jacobians: 256*128*64 + 256*64*128 per example; Gram matrices: 128*128*64 +
    # 128*64*64 + 64*64*128 (the first one, W1^T W1, is shared by the batch)
    assert sweep(big, hidden)[0].mode == "gram"
    assert sweep(big, ["hid2:out"])[0].mode == "gram"
    # with input dropout W1^T diag(s^2) W1 costs 256*128*128 more per example
    assert sweep(big, hidden, input_dropout=0.1)[0].mode == "jacobian"
    # three inputs: carrying the 3-row Jacobians is cheaper
    assert sweep([3, (4, "tanh"), (5, "tanh"), ("tied", 4)], hidden[:2])[0].mode == "jacobian"
    # float32 graphs stay float32 either way
    for mode in ("jacobian", "gram"):
        with pytensor.config.change_flags(floatX="float32"):
            net = theanets.Autoencoder([4, (3, "tanh"), (2, "sigmoid"), ("tied", 3), ("tied", 4)])
            outputs, _ = net.build_graph([])
            (total,) = J._chain_norms([outputs["hid3:out"]], net.inputs, mode)
        assert total.dtype == "float32"


# ----------------------------------------------------------------------
# recurrent penalties (on a 3-D network)


class SequenceNet(theanets.graph.Network):
    INPUT_NDIM = 3


@pytest.fixture(scope="module")
def seqnet():
    with pytensor.config.change_flags(**F64):
        return SequenceNet([3, (4, "tanh"), 2])


def test_recurrent_norm_and_state(seqnet):
    x = np.random.default_rng(3).normal(size=(2, 5, 3))
    h = np.tanh(x @ _param(seqnet, "hid1", "w") + _param(seqnet, "hid1", "b"))
    sq = (h**2).sum(axis=-1)
    want_norm = np.mean((sq[:, 1:] - sq[:, :-1]) ** 2)
    want_state = np.mean((h[:, 1:] - h[:, :-1]) ** 2)
    assert term(seqnet, R.RecurrentNorm("hid1:out", 1), x) == pytest.approx(want_norm, rel=1e-12)
    assert term(seqnet, R.RecurrentState("hid1:out", 1), x) == pytest.approx(want_state, rel=1e-12)
    y = np.zeros((2, 5, 2))
    base = seqnet.loss_value(x, y)
    got = seqnet.loss_value(x, y, recurrent_norm=dict(weight=0.1, pattern="hid1:out"))
    assert got - base == pytest.approx(0.1 * want_norm)
    # a single time step has no change to penalize
    assert term(seqnet, R.RecurrentState("hid1:out", 1), x[:, :1]) == 0


def test_recurrent_errors(seqnet, net3):
    with pytest.raises(ConfigurationError, match="explicit pattern"):
        R.from_kwargs(seqnet, recurrent_norm=0.1)
    with pytest.raises(ConfigurationError, match="explicit pattern"):
        seqnet.loss(recurrent_state=0.1)
    with pytest.raises(ConfigurationError, match="3-D"):
        R.from_kwargs(net3, recurrent_norm=dict(weight=0.1, pattern="hid1:out"))
    with pytest.raises(ConfigurationError, match="3-D"):
        R.RecurrentState("hid1:out", 0.1).loss(net3.layers, net3.build_graph([])[0])


# ----------------------------------------------------------------------
# dropout and noise


@pytest.fixture(scope="module")
def widenet():
    with pytensor.config.change_flags(**F64):
        return theanets.Regressor([60, (60, "linear"), (60, "linear")])


def test_dropout_mask_statistics(widenet):
    x = np.ones((100, 60))
    p = 0.3
    out = widenet.feed_forward(x, input_dropout=p)
    dropped = out["in:out"]
    np.testing.assert_array_equal(out["in:out-predrop"], x)
    kept = dropped != 0
    assert kept.mean() == pytest.approx(1 - p, abs=0.02)
    np.testing.assert_allclose(dropped[kept], 1 / (1 - p), rtol=1e-12)
    # the expected value of each entry is unchanged
    assert dropped.mean() == pytest.approx(1.0, abs=0.03)


def test_dropout_determinism_and_fresh_masks(widenet, default_mode):
    x = np.ones((20, 60))
    first = widenet.predict(x, hidden_dropout=0.5, rng=11)
    second = widenet.predict(x, hidden_dropout=0.5, rng=11)
    assert not np.allclose(first, second)  # the stream advances between calls
    with pytensor.config.change_flags(**F64):
        twin = theanets.Regressor([60, (60, "linear"), (60, "linear")])
    np.testing.assert_array_equal(twin.predict(x, hidden_dropout=0.5, rng=11), first)
    np.testing.assert_array_equal(twin.predict(x, hidden_dropout=0.5, rng=11), second)
    other = twin.predict(x, hidden_dropout=0.5, rng=12)
    assert not np.allclose(other, first) and not np.allclose(other, second)
    # without dropout the prediction is deterministic
    np.testing.assert_array_equal(widenet.predict(x), twin.predict(x))


def test_dropout_streams_are_distinct(widenet):
    x = np.ones((20, 60))
    out = widenet.feed_forward(x, input_dropout=0.5, hidden_dropout=0.5, output_dropout=0.5)
    masks = [out[n] == 0 for n in ("in:out", "hid1:out", "out:out")]
    assert not np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[1], masks[2])
    regs = R.from_kwargs(widenet, input_dropout=0.5, input_noise=0.5)
    assert regs[0].cache_key() != regs[1].cache_key()


def test_noise_statistics(widenet):
    x = np.zeros((200, 60))
    out = widenet.feed_forward(x, input_noise=0.5, rng=5)
    np.testing.assert_array_equal(out["in:out-prenoise"], x)
    noise = out["in:out"] - x
    assert noise.std() == pytest.approx(0.5, rel=0.03)
    assert noise.mean() == pytest.approx(0.0, abs=0.01)
    again = widenet.feed_forward(x, input_noise=0.5, rng=5)["in:out"]
    assert not np.allclose(again, out["in:out"])


def test_dropout_then_noise_keeps_both_originals(widenet):
    x = np.ones((10, 60))
    out = widenet.feed_forward(x, hidden_dropout=0.5, hidden_noise=0.1)
    np.testing.assert_allclose(out["hid1:out-predrop"], out["hid1:pre"])
    assert not np.allclose(out["hid1:out-prenoise"], out["hid1:out-predrop"])
    assert np.all(out["hid1:out-prenoise"][out["hid1:out-prenoise"] != 0] != 0)


def test_dropout_changes_training_loss_and_updates(widenet):
    x = np.ones((10, 60))
    y = np.zeros((10, 60))
    values = {widenet.loss_value(x, y, output_dropout=0.5) for _ in range(3)}
    assert len(values) == 3
    updates = widenet.updates(output_dropout=0.5)
    assert len(updates) == 1 and updates[0][0].name == "out:out-predrop-rng"


def test_predict_unchanged_by_loss_only_regularizers(net3, data):
    plain = net3.predict(data)
    for kw in (
        dict(weight_l2=0.1),
        dict(hidden_l1=0.5),
        dict(contractive=0.1),
        dict(weight_sparsity=1.0),
        dict(hidden_dropout=0),
    ):
        np.testing.assert_array_equal(net3.predict(data, **kw), plain)


def test_float32_stays_float32():
    with pytensor.config.change_flags(floatX="float32"):
        net = theanets.Autoencoder([4, (3, "tanh"), (2, "sigmoid"), ("tied", 3), ("tied", 4)])
        regs = R.from_kwargs(
            net,
            weight_l2=0.1,
            weight_l1=0.1,
            hidden_l1=0.1,
            contractive=0.1,
            input_dropout=0.2,
            hidden_noise=0.1,
        )
        outputs, _ = net.build_graph(regs)
        for reg in regs:
            value = reg.loss(net.layers, outputs)
            if not isinstance(value, int):
                assert value.dtype == "float32", reg
        assert outputs["in:out"].dtype == "float32"
        assert outputs["hid1:out"].dtype == "float32"
        assert net.loss(contractive=0.1, hidden_dropout=0.1).dtype == "float32"


# ----------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_dropout=1.0), r"\[0, 1\)"),
        (dict(hidden_dropout=-0.1), r"\[0, 1\)"),
        (dict(input_noise=-0.5), ">= 0"),
        (dict(weight_l2=-1), "non-negative"),
        (dict(weight_l2=float("nan")), "finite"),
        (dict(hidden_l1="big"), "must be a number"),
        (dict(hidden_l1=True), "must be a number"),
        (dict(weight_l2=dict(weight=0.1, patern="*")), "Did you mean 'pattern'"),
        (dict(contractive=dict(weight=0.1, wrtt="in")), "Did you mean 'wrt'"),
        (dict(dropout=0.3), "must be a dict"),
        (dict(rng=-3), "non-negative seed"),
        (dict(rng="x"), "integer seed"),
        (dict(regularizers=3), "list of Regularizer"),
    ],
)
def test_bad_values(net3, kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        R.from_kwargs(net3, **kwargs)


def test_constructor_validation():
    with pytest.raises(ConfigurationError, match=r"\[0, 1\)"):
        R.BernoulliDropout(weight=1)
    with pytest.raises(ConfigurationError, match=">= 0"):
        R.GaussianNoise(weight=-1)
    with pytest.raises(ConfigurationError, match="pattern"):
        R.HiddenL1(pattern=3, weight=1)
    with pytest.raises(ConfigurationError, match="explicit pattern"):
        R.RecurrentNorm(weight=0.1)


def test_cache_keys_separate_options():
    keys = {
        R.Contractive(weight=0.1).cache_key(),
        R.Contractive(weight=0.2).cache_key(),
        R.Contractive(weight=0.1, wrt="in").cache_key(),
        R.Contractive(pattern="hid1:out", weight=0.1).cache_key(),
        R.HiddenL1(weight=0.1).cache_key(),
        R.BernoulliDropout(weight=0.1, rng=1).cache_key(),
        R.BernoulliDropout(weight=0.1, rng=2).cache_key(),
    }
    assert len(keys) == 7
    hash(R.BernoulliDropout(pattern=["a", "b"], weight=0.1).cache_key())


# ----------------------------------------------------------------------
# custom regularizers and the seed documents' examples


class WeightInverse(theanets.Regularizer):
    """The custom regularizer of the guide: inverse squared column lengths."""

    def loss(self, layers, outputs):
        return sum(
            (1 / (p * p).sum(axis=0)).sum() for layer in layers for p in layer.params if p.ndim == 2
        )


class Signed(theanets.Regularizer):
    """A user regularizer may have a negative weight (a reward)."""

    def __init__(self, pattern=None, weight=0.0, scale=1.0):
        super().__init__(pattern=pattern, weight=weight)
        self.scale = scale

    def loss(self, layers, outputs):
        return self.scale * sum(abs(p).sum() for layer in layers for p in layer.params)


def test_custom_subclass_by_name(data):
    assert "weightinverse" in R.known_kwargs()
    with pytensor.config.change_flags(**F64):
        net = theanets.Autoencoder([3, (8, "linear"), (3, "tied")])
    w = _param(net, "hid1", "w")
    want = (1 / (w * w).sum(axis=0)).sum()
    base = net.loss_value(data)
    got = net.loss_value(data, hidden_l1=0.001, weightinverse=0.001)
    hidden = np.mean(abs(np_forward(net, data, ["linear", "linear"])["hid1:out"]))
    assert got - base == pytest.approx(0.001 * want + 0.001 * hidden)
    assert float(net.loss(weightinverse=0.001).eval({net.inputs[0]: data})) == pytest.approx(
        base + 0.001 * want
    )


def test_custom_subclass_options(data):
    with pytensor.config.change_flags(**F64):
        net = theanets.Regressor([3, 2])
    total = sum(abs(p.get_value()).sum() for p in net.params)
    y = np.zeros((len(data), 2))
    base = net.loss_value(data, y)
    assert net.loss_value(data, y, signed=-0.5) - base == pytest.approx(-0.5 * total)
    got = net.loss_value(data, y, signed=dict(weight=-0.5, scale=2.0))
    assert got - base == pytest.approx(-1.0 * total)
    with pytest.raises(ConfigurationError, match="Did you mean 'scale'"):
        net.loss(signed=dict(weight=1, scal=2))


def test_seed_examples_run():
    """The keyword forms the seed documents show, each against its formula.

    The target is the clean prediction, so the loss is the regularizer's
    weighted term alone (for dropout and noise: the error they cause).
    """
    acts = ["relu", "relu", "relu", "linear"]
    with pytensor.config.change_flags(**F64):
        net = theanets.Regressor([4, 5, 5, 5, 2])
        x = np.random.default_rng(0).normal(size=(3, 4))
        plain = net.predict(x)
        ref = np_forward(net, x, acts)
        hidden = [f"hid{i}:out" for i in (1, 2, 3)]
        ws = [_param(net, n, "w") for n in ("hid1", "hid2", "hid3", "out")]
        fd = {n: fd_contractive(net, x, acts, n) for n in hidden}
        expected = {
            "contractive": 0.1 * np.mean(list(fd.values())),
            "contractive-hid3": 0.1 * fd["hid3:out"],
            "hidden_l1": 0.1 * np.mean([np.mean(abs(ref[n])) for n in hidden]),
            "hidden_sparsity-hid3": 0.1 * np.mean(abs(ref["hid3:out"])),
            "weight_l2": 1e-4 * np.mean([np.mean(w**2) for w in ws]),
            "weight_l1": 1e-4 * np.mean([np.mean(abs(w)) for w in ws]),
        }
        cases = {
            "contractive": dict(contractive=0.1),
            "contractive-hid3": dict(contractive=dict(weight=0.1, pattern="hid3:out", wrt="in")),
            "hidden_l1": dict(hidden_l1=0.1),
            "hidden_sparsity": dict(hidden_sparsity=0.1),
            "hidden_sparsity-hid3": dict(hidden_sparsity=dict(weight=0.1, pattern="hid3:out")),
            "weight_l2": dict(weight_l2=1e-4),
            "weight_l1": dict(weight_l1=1e-4),
            "noise": dict(input_noise=0.1, hidden_noise=0.1),
            "dropout": dict(input_dropout=0.3, hidden_dropout=0.3),
        }
        expected["hidden_sparsity"] = expected["hidden_l1"]
        for case, kw in cases.items():
            value = net.loss(**kw).eval({net.inputs[0]: x, net.losses[0].variables[0]: plain})
            if case in expected:
                assert value == pytest.approx(expected[case], rel=1e-6), case
            else:  # the corrupted prediction misses the clean one
                assert value > 1e-6, case
        np.testing.assert_array_equal(net.predict(x, contractive=0.1), plain)
        np.testing.assert_array_equal(net.predict(x, hidden_sparsity=0.1), plain)
        seq = SequenceNet([4, 5, 5, 5, 2])
        xs = np.random.default_rng(1).normal(size=(2, 4, 4))
        h = np_forward(seq, xs, acts)["hid3:out"]
        sq = (h**2).sum(axis=-1)
        value = seq.loss(recurrent_norm=dict(weight=0.1, pattern="hid3:out")).eval(
            {seq.inputs[0]: xs, seq.losses[0].variables[0]: seq.predict(xs)}
        )
        assert value == pytest.approx(0.1 * np.mean((sq[:, 1:] - sq[:, :-1]) ** 2), rel=1e-10)


# ----------------------------------------------------------------------
# training: each regularizer changes what is learnt in the expected direction


def _train(net, x, y, **kwargs):
    net.train(
        [x, y],
        algo="sgd",
        learning_rate=0.05,
        max_updates=150,
        batch_size=32,
        patience=1000,
        validate_every=1000,
        **kwargs,
    )


@pytest.fixture(scope="module")
def train_data():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, 4))
    return x, np.tanh(x @ rng.normal(size=(4, 3)))


def _fresh():
    with pytensor.config.change_flags(**F64):
        return theanets.Regressor([4, (8, "relu"), 3])


def test_training_weight_l2_shrinks_weights(train_data):
    x, y = train_data
    plain, decayed = _fresh(), _fresh()
    with pytensor.config.change_flags(**F64):
        _train(plain, x, y)
        _train(decayed, x, y, weight_l2=1.0)

    def norm(net):
        return sum(np.sum(_param(net, n, "w") ** 2) for n in ("hid1", "out"))

    assert norm(decayed) < 0.9 * norm(plain)


def test_training_hidden_l1_sparsifies(train_data, default_mode):
    x, y = train_data
    plain, sparse = _fresh(), _fresh()
    with pytensor.config.change_flags(**F64):
        _train(plain, x, y)
        _train(sparse, x, y, hidden_l1=1.0)
    h_plain = plain.feed_forward(x)["hid1:out"]
    h_sparse = sparse.feed_forward(x)["hid1:out"]
    assert np.mean(abs(h_sparse)) < 0.8 * np.mean(abs(h_plain))


def test_rnn_layer_recurrent_penalties_and_contractive():
    """On a real recurrent layer: penalties against NumPy, the Jacobian (through
    scan) against finite differences of the network's own predictions."""
    from theanets import recurrent

    with pytensor.config.change_flags(**F64):
        net = recurrent.Regressor([3, (4, "rnn"), 2])
        x = np.random.default_rng(2).normal(size=(2, 5, 3))
        y = np.zeros((2, 5, 2))
        values = net.feed_forward(x)
        h, pre = values["hid1:out"], values["hid1:pre"]
        sq = (h**2).sum(axis=-1)
        base = net.loss_value(x, y)
        got = net.loss_value(x, y, recurrent_norm=dict(weight=1, pattern="hid1:out"))
        assert got - base == pytest.approx(np.mean((sq[:, 1:] - sq[:, :-1]) ** 2))
        got = net.loss_value(x, y, recurrent_state=dict(weight=1, pattern="hid1:*"))
        # the glob matches 'hid1:out' and 'hid1:pre': their mean
        state = [np.mean((z[:, 1:] - z[:, :-1]) ** 2) for z in (h, pre)]
        assert got - base == pytest.approx(np.mean(state))
        total, eps = 0.0, 1e-6
        for n in range(2):
            for t in range(5):
                for d in range(3):
                    e = np.zeros((1, 5, 3))
                    e[0, t, d] = eps
                    hi = net.feed_forward(x[n : n + 1] + e)["hid1:out"]
                    lo = net.feed_forward(x[n : n + 1] - e)["hid1:out"]
                    total += np.sum(((hi - lo) / (2 * eps)) ** 2)
        got = net.loss_value(x, y, contractive=1.0)
        assert got - base == pytest.approx(total / 2, rel=1e-6)


@pytest.mark.parametrize(
    "cls",
    [
        R.WeightL2,
        R.WeightL1,
        R.HiddenL1,
        R.Contractive,
        R.RecurrentNorm,
        R.RecurrentState,
        R.BernoulliDropout,
        R.GaussianNoise,
    ],
)
def test_positional_order_is_pattern_then_weight(cls):
    reg = cls("hid1:out", 0.25)
    assert (reg.pattern, reg.weight) == ("hid1:out", 0.25)
