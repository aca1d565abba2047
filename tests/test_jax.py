"""Tests of PyTensor's JAX backend for theanets (``theanets.layers.jax_dispatch``).

Every layer family, loss, regularizer and optimizer is compiled twice: in
the suite's reference mode (what :func:`theanets.backend.choose_mode` picks
without a theanets setting; its operations compute the same numbers as the
default backend's) and under JAX, on JAX's CPU build. Forward outputs,
gradients and training steps must agree within float32 tolerance; the whole
module runs in float32, the precision GPU users train in. Random streams
cannot agree between backends (JAX draws with its own generator), so
dropout masks and noise are checked against their distributions instead.

Parallel layers share one network and one compiled function, and some
networks are shared by the module, so that each backend compiles few
functions.
"""

import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.sparse
import scipy.stats

import theanets
from theanets import backend, losses, util
from theanets.layers import jax_dispatch

#: Tolerances of float32 results computed in a different order.
RTOL, ATOL = 2e-4, 2e-5


@pytest.fixture(scope="module", autouse=True)
def float32():
    """The whole module computes in float32."""
    with pytensor.config.change_flags(floatX="float32"):
        yield


class _Mode:
    """Set theanets' mode (``backend.set_mode``) for a block, then restore it."""

    def __init__(self, mode):
        self.mode = mode

    def __enter__(self):
        self.previous = backend.set_mode(self.mode)

    def __exit__(self, *exc):
        backend.set_mode(self.previous)


def under_jax():
    """Compile with the JAX backend inside the block."""
    return _Mode("JAX")


def both(fn):
    """``fn()`` in the reference mode and under JAX."""
    reference = fn()
    with under_jax():
        return reference, fn()


def assert_close(got, want, what, rtol=RTOL, atol=ATOL):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def compile_now(inputs, outputs, updates=()):
    """Compile in the mode theanets would pick now (the reference mode or JAX)."""
    return pytensor.function(
        inputs, outputs, updates=list(updates), mode=backend.choose_mode(), on_unused_input="ignore"
    )


def outputs_and_gradients(net, data, **kwargs):
    """Every named output, and the gradient of a probe of all outputs w.r.t. every parameter.

    The probe sums ``sin(3 z + k)`` over every output ``z`` (``k`` counts the
    outputs), so that each output's backward pass gets a different,
    non-constant cotangent.
    """
    outputs, updates = net.build_graph(net._regularizers(kwargs, "test"))
    names = sorted(outputs)
    probe = sum(pt.sin(3 * outputs[n] + k).sum() for k, n in enumerate(names))
    grads = pytensor.grad(probe, net.params)

    def run():
        fn = compile_now(net.inputs, [outputs[n] for n in names] + grads, updates)
        values = fn(*net._input_arrays(data))
        return dict(zip(names + [p.name for p in net.params], values))

    return both(run)


def assert_all_close(reference, jax_values, rtol=RTOL, atol=ATOL):
    assert reference.keys() == jax_values.keys()
    for name in reference:
        assert_close(jax_values[name], reference[name], name, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------
# choosing the backend


def test_import_does_not_load_jax():
    code = (
        "import sys, theanets; "
        "print('jax' in sys.modules, 'theanets.layers.jax_dispatch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_set_mode_jax_chooses_the_jax_linker():
    from pytensor.link.jax.linker import JAXLinker

    with under_jax():
        mode = backend.choose_mode()
    assert isinstance(mode.linker, JAXLinker)
    assert mode is jax_dispatch.mode()
    with pytensor.config.change_flags(mode="JAX"):
        assert backend.choose_mode() is mode
    assert backend.choose_mode() is not mode


def test_functions_are_compiled_once_per_backend(regressor):
    net, x, _ = regressor
    net.predict(x)
    count = len(net._functions)
    with under_jax():
        net.predict(x)
        net.predict(x)
    assert len(net._functions) == count + 1


# ----------------------------------------------------------------------
# feed-forward models


@pytest.fixture(scope="module")
def regressor():
    net = theanets.Regressor(
        [
            5,
            (6, "tanh"),
            (6, "relu"),
            (6, "prelu"),
            (6, "sigmoid"),
            (6, "softplus"),
            (6, "elu"),
            (6, "maxout:2"),
            (6, "norm:z"),
            3,
        ],
        rng=4,
    )
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 5)).astype("float32")
    y = rng.normal(size=(8, 3)).astype("float32")
    return net, x, y


def test_feedforward_outputs_and_gradients(regressor):
    net, x, _ = regressor
    reference, got = outputs_and_gradients(net, x)
    assert_all_close(reference, got)
    assert all(v.dtype == np.float32 for v in got.values())


def test_predict_returns_numpy_arrays(regressor):
    net, x, _ = regressor
    want = net.predict(x)
    with under_jax():
        got = net.predict(x)
        ff = net.feed_forward(x)
    assert type(got) is np.ndarray and got.flags.writeable
    assert all(type(v) is np.ndarray for v in ff.values())
    assert_close(got, want, "predict")


def test_tied_autoencoder():
    net = theanets.Autoencoder([5, (4, "sigmoid"), (3, "tanh"), ("tied", 4), ("tied", 5)], rng=3)
    x = np.random.default_rng(1).normal(size=(6, 5)).astype("float32")
    reference, got = outputs_and_gradients(net, x)
    assert_all_close(reference, got)
    code = net.encode(x)
    with under_jax():
        assert_close(net.decode(code), net.predict(x), "decode")
        score = net.score(x)
    assert np.isclose(score, net.score(x), rtol=1e-4)


# ----------------------------------------------------------------------
# recurrent layers

#: Layers whose graph holds the fused loops of theanets.layers.fused (forward
#: and backward in time, truncated back-propagation, every activation code).
FUSED = {
    "rnn": dict(form="rnn", activation="tanh"),
    "rnn_back": dict(form="rnn", activation="relu", direction="back", bptt_limit=2),
    "rnn_sigmoid": dict(form="rnn", activation="sigmoid", bptt_limit=9),
    "lstm": dict(form="lstm"),
    "lstm_back": dict(form="lstm", direction="back", bptt_limit=3),
    "gru": dict(form="gru", activation="tanh"),
    "gru_trunc": dict(form="gru", activation="linear", bptt_limit=2),
    "bidirectional": dict(form="bidirectional", worker="lstm"),
}

#: Layers that loop with pytensor.scan.
SCANNED = {
    "rrnn": dict(form="rrnn", activation="tanh"),
    "mrnn": dict(form="mrnn", factors=2, activation="tanh"),
    "clockwork": dict(form="clockwork", periods=(1, 2), activation="tanh"),
    "mut1": dict(form="mut1", activation="tanh"),
    "scrn": dict(form="scrn", activation="tanh"),
    "bcrnn": dict(form="bcrnn", num_modules=2, activation="tanh"),
}


def parallel_recurrent(specs):
    """A network with one layer per spec, all reading the input, and an input batch."""
    layers = [theanets.layers.Input(size=3, ndim=3, name="in")]
    for name, spec in specs.items():
        layers.append(dict(size=4, inputs="in", name=name, **spec))
    first = next(iter(specs))
    layers.append(dict(form="feedforward", size=2, inputs=first, name="out", activation="linear"))
    net = theanets.recurrent.Regressor(layers, rng=5)
    x = np.random.default_rng(3).normal(size=(2, 5, 3)).astype("float32")
    return net, x


def test_every_recurrent_layer_is_tested():
    forms = {spec["form"] for spec in [*FUSED.values(), *SCANNED.values()]}
    recurrent = {
        name
        for name in theanets.layers.Layer.registered_names()
        if issubclass(theanets.layers.Layer.lookup(name), theanets.layers.recurrent.Recurrent)
        or theanets.layers.Layer.lookup(name) is theanets.layers.recurrent.Bidirectional
    }
    recurrent.discard("recurrent")
    assert recurrent <= forms


def test_fused_layers_use_the_fused_ops():
    from theanets.layers import fused

    net, _ = parallel_recurrent(FUSED)
    outputs = net.build_graph()[0]
    ops = {type(v.owner.op) for v in pytensor.graph.ancestors(outputs.values()) if v.owner}
    assert {fused.RNNForward, fused.LSTMForward, fused.GRUForward} <= ops


@pytest.mark.parametrize("specs", [FUSED, SCANNED], ids=["fused", "scan"])
def test_recurrent_outputs_and_gradients(specs):
    net, x = parallel_recurrent(specs)
    reference, got = outputs_and_gradients(net, x)
    assert_all_close(reference, got, rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------
# convolution and pooling


@pytest.fixture(scope="module")
def conv_nets():
    """A Conv2/Pool2 network and a Conv1/Pool1 one, each with parallel layers."""
    specs2 = [
        dict(form="conv2", size=3, filter_size=(3, 2), border_mode="valid"),
        dict(form="conv2", size=2, filter_size=(2, 3), stride=(2, 1), border_mode="same"),
        dict(form="conv2", size=2, filter_size=2, stride=2, border_mode="full"),
        dict(form="pool2", pool_size=2, mode="max"),
        dict(form="pool2", pool_size=(2, 3), stride=(1, 2), mode="sum"),
        dict(form="pool2", pool_size=(3, 2), mode="average"),
    ]
    specs1 = [
        dict(form="conv1", size=3, filter_size=3, border_mode="valid"),
        dict(form="conv1", size=2, filter_size=2, stride=2, border_mode="same"),
        dict(form="conv1", size=2, filter_size=4, border_mode="full"),
        dict(form="pool1", pool_size=2, mode="max"),
        dict(form="pool1", pool_size=3, stride=2, mode="average"),
    ]
    nets = []
    for shape, specs in [((7, 6, 2), specs2), ((9, 2), specs1)]:
        layers = [theanets.layers.Input(shape=shape, name="in")]
        for i, spec in enumerate(specs):
            layers.append(dict(inputs="in", name=f"l{i}", activation="tanh", **spec))
        layers.append(dict(form="flatten", inputs="l0", name="flat"))
        layers.append(dict(form="feedforward", size=2, name="out", activation="linear"))
        net = theanets.convolution.Regressor(layers, rng=6)
        x = np.random.default_rng(4).normal(size=(2, *shape)).astype("float32")
        nets.append((net, x))
    return nets


@pytest.mark.parametrize("which", [0, 1], ids=["2d", "1d"])
def test_convolution_outputs_and_gradients(conv_nets, which):
    net, x = conv_nets[which]
    reference, got = outputs_and_gradients(net, x)
    assert_all_close(reference, got)


@pytest.mark.parametrize("mode", ["max", "sum", "average"])
def test_pooling_ties_and_second_derivatives(mode):
    """Pooling of data with tied maxima, its gradient and the gradient of that gradient."""
    from theanets.layers import convolution

    # static shapes, as the layers give them
    x = pt.tensor("x", dtype="float32", shape=(2, 5, 6, 3))
    v = pt.tensor("v", dtype="float32", shape=(2, 5, 6, 3))
    y = convolution.pool(x, (2, 2), (1, 2), mode)
    gx = pytensor.grad(pt.sin(y).sum(), x)  # a pooling gradient
    ggx = pytensor.grad((gx * v).sum(), x)  # and its own gradient
    rng = np.random.default_rng(7)
    data = np.round(rng.normal(size=(2, 5, 6, 3))).astype("float32")  # many ties
    probe = rng.normal(size=data.shape).astype("float32")

    def run():
        return compile_now([x, v], [y, gx, ggx])(data, probe)

    reference, got = both(run)
    for name, want, have in zip(["pool", "gradient", "second"], reference, got):
        assert_close(have, want, f"{mode} {name}")
    if mode == "max":  # every tied maximum gets the window's gradient
        assert np.count_nonzero(reference[1]) > reference[0].size


# ----------------------------------------------------------------------
# losses


def _loss_cases(rng):
    """(loss, output arrays, target, weights) for every registered loss class."""
    out2 = rng.normal(size=(6, 3)).astype("float32")
    out3 = rng.normal(size=(2, 4, 3)).astype("float32")
    probs = np.exp(out2) / np.exp(out2).sum(-1, keepdims=True)
    tprobs = rng.dirichlet(np.ones(3), size=6).astype("float32")
    labels = rng.integers(0, 3, size=6).astype("int32")
    many = rng.dirichlet(np.ones(3), size=130).astype("float32")
    many_labels = rng.integers(0, 3, size=130).astype("int32")
    labels3 = rng.integers(0, 3, size=(2, 4)).astype("int32")
    w2 = rng.uniform(0.1, 1, size=(6, 3)).astype("float32")
    target2 = rng.normal(size=(6, 3)).astype("float32")
    target3 = rng.normal(size=(2, 4, 3)).astype("float32")
    return [
        (losses.MeanSquaredError(target=2), {"out:out": out2}, target2, None),
        (
            losses.MeanSquaredError(target=3, weighted=True),
            {"out:out": out3},
            target3,
            rng.uniform(0.1, 1, size=(2, 4, 3)).astype("float32"),
        ),
        (losses.MeanAbsoluteError(target=2, weighted=True), {"out:out": out2}, target2, w2),
        (losses.CrossEntropy(target=2), {"out:out": probs}, labels, None),
        # 130 rows: more than an int8 index holds
        (losses.CrossEntropy(target=2), {"out:out": many}, many_labels, None),
        (
            losses.CrossEntropy(target=3),
            {"out:out": np.abs(out3) / np.abs(out3).sum(-1, keepdims=True)},
            labels3,
            None,
        ),
        (losses.Hinge(target=2, margin=0.5), {"out:out": out2}, labels, None),
        (losses.KullbackLeiblerDivergence(target=2, weighted=True), {"out:out": probs}, tprobs, w2),
        (
            losses.GaussianLogLikelihood(target=2, mean_name="out:mean", covar_name="out:covar"),
            {"out:mean": out2, "out:covar": np.abs(target2) + 0.1},
            target2,
            None,
        ),
        (losses.MaximumMeanDiscrepancy(target=2), {"out:out": out2}, target2, None),
        (
            losses.MaximumMeanDiscrepancy(target=2, weighted=True, kernel=2.0),
            {"out:out": out2},
            target2,
            w2,
        ),
    ]


def test_every_loss_and_its_gradient():
    cases = _loss_cases(np.random.default_rng(8))
    assert {type(c[0]) for c in cases} == {
        losses.Loss.lookup(name) for name in losses.Loss.registered_names()
    }
    inputs, values, exprs = [], [], []
    for k, (loss, outputs, target, weights) in enumerate(cases):
        variables = {
            n: pt.tensor(f"{n}{k}", dtype=v.dtype, shape=(None,) * v.ndim)
            for n, v in outputs.items()
        }
        expr = loss(variables)
        inputs += [*variables.values(), *loss.variables]
        values += [*outputs.values(), target] + ([weights] if loss.weighted else [])
        exprs += [expr, *pytensor.grad(expr, list(variables.values()))]

    def run():
        return compile_now(inputs, exprs)(*values)

    reference, got = both(run)
    for k, (want, have) in enumerate(zip(reference, got)):
        assert_close(have, want, f"loss output {k}")


# ----------------------------------------------------------------------
# regularizers


REGULARIZERS = [
    dict(weight_l2=0.1),
    dict(weight_l1=0.1),
    dict(hidden_l1=0.1),
    dict(hidden_sparsity=0.1),
    dict(contractive=0.1),
]


@pytest.fixture(scope="module")
def small_regressor():
    net = theanets.Regressor([4, (5, "tanh"), (4, "sigmoid"), 2], rng=8)
    rng = np.random.default_rng(5)
    return net, rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")


def assert_loss_and_gradients_agree(net, x, y, kwargs, rtol=RTOL, atol=ATOL):
    """The regularized loss and its parameter gradients agree between the backends."""
    loss = net.loss(**kwargs)
    grads = pytensor.grad(loss, net.params)

    def run():
        return compile_now(net.variables, [loss, *grads])(x, y)

    reference, got = both(run)
    for name, want, have in zip(["loss"] + [p.name for p in net.params], reference, got):
        assert_close(have, want, f"{kwargs}: {name}", rtol=rtol, atol=atol)


@pytest.mark.parametrize("kwargs", REGULARIZERS, ids=lambda kw: next(iter(kw)))
def test_regularized_loss_and_gradient(small_regressor, kwargs):
    assert_loss_and_gradients_agree(*small_regressor, kwargs)


@pytest.fixture(scope="module")
def seqnet():
    net = theanets.recurrent.Regressor([3, (4, "lstm"), (4, "rnn"), 2], rng=2)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 5, 3)).astype("float32")
    y = rng.normal(size=(3, 5, 2)).astype("float32")
    return net, x, y


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(recurrent_norm=dict(weight=0.1, pattern="hid2:out")),
        dict(recurrent_state=dict(weight=0.1, pattern="hid1:out")),
    ],
    ids=["recurrent_norm", "recurrent_state"],
)
def test_recurrent_regularizers(seqnet, kwargs):
    assert_loss_and_gradients_agree(*seqnet, kwargs, rtol=1e-3, atol=1e-4)


def test_dropout_masks_have_the_right_statistics():
    net = theanets.Regressor([50, (40, "linear"), 2], rng=1)
    x = np.ones((400, 50), dtype="float32")
    p = 0.3
    with under_jax():
        first = net.feed_forward(x, input_dropout=p, rng=11)
        second = net.feed_forward(x, input_dropout=p, rng=11)["in:out"]
        other = net.feed_forward(x, input_dropout=p, rng=12)["in:out"]
    masks = first["in:out"]
    assert set(np.unique(masks)) <= {0.0, np.float32(1 / (1 - p))}
    dropped = int((masks == 0).sum())
    # two-sided binomial test of the drop rate
    assert scipy.stats.binomtest(dropped, masks.size, p).pvalue > 1e-3
    # every call draws a new mask; the columns of one mask are independent
    assert not np.array_equal(masks, second)
    assert not np.array_equal(masks, other)
    assert abs(np.corrcoef((masks == 0)[:, 0], (masks == 0)[:, 1])[0, 1]) < 0.2


def test_dropout_follows_rng_seeds():
    def draws(seed):
        net = theanets.Regressor([20, (10, "linear"), 2], rng=1)
        x = np.ones((30, 20), dtype="float32")
        with under_jax():
            return [net.predict(x, hidden_dropout=0.5, rng=seed) for _ in range(2)]

    a, b, c = draws(3), draws(3), draws(4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], c[0])


def test_functions_share_a_dropout_stream():
    """As under the other backends, ``predict`` and ``feed_forward`` draw from one stream."""

    def masks(first, second):
        net = theanets.Regressor([20, (10, "linear"), 2], rng=1)
        x = np.ones((30, 20), dtype="float32")
        calls = {
            "predict": lambda: net.predict(x, input_dropout=0.5, rng=5),
            "feed_forward": lambda: net.feed_forward(x, input_dropout=0.5, rng=5)["out:out"],
        }
        with under_jax():
            return calls[first](), calls[second]()

    a_first, a_second = masks("predict", "feed_forward")
    b_first, b_second = masks("feed_forward", "predict")
    # the first draw of the stream is the same whichever function makes it ...
    np.testing.assert_array_equal(a_first, b_first)
    np.testing.assert_array_equal(a_second, b_second)
    # ... and the second function continues the stream, not a copy of it
    assert not np.array_equal(a_first, a_second)


def test_gaussian_noise_has_the_right_statistics():
    net = theanets.Regressor([30, (10, "linear"), 2], rng=1)
    x = np.zeros((500, 30), dtype="float32")
    with under_jax():
        out = net.feed_forward(x, input_noise=0.2, rng=5)
        again = net.feed_forward(x, input_noise=0.2, rng=5)
    noise = out["in:out"] - out["in:out-prenoise"]
    # Kolmogorov-Smirnov test against N(0, 0.2^2)
    assert scipy.stats.kstest(noise.ravel(), "norm", args=(0, 0.2)).pvalue > 1e-3
    assert not np.array_equal(out["in:out"], again["in:out"])


def test_training_with_dropout_updates_the_parameters():
    net = theanets.Regressor([4, (6, "relu"), 2], rng=2)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    before = net.find("hid1", "w").get_value().copy()
    with under_jax():
        net.train([x, y], algo="sgd", learning_rate=0.1, max_updates=2, hidden_dropout=0.5)
    assert not np.allclose(net.find("hid1", "w").get_value(), before)


# ----------------------------------------------------------------------
# optimizers

#: ESGD draws random probe vectors, which JAX draws with its own generator:
#: it is checked separately below.
ALGOS = sorted(set(theanets.optimizers.Optimizer.registered_names()) - {"esgd"})


@pytest.mark.parametrize("algo", ALGOS)
def test_three_training_steps_give_the_same_parameters(algo):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(12, 4)).astype("float32")
    y = rng.normal(size=(12, 2)).astype("float32")

    def trained():
        net = theanets.Regressor([4, (5, "tanh"), 2], rng=7)
        net.train(
            [x, y],
            algo=algo,
            learning_rate=0.05,
            momentum=0.5 if algo in ("sgd", "nag") else 0,
            max_updates=3,
            batch_size=12,
            rng=0,
        )
        return net

    reference, got = both(trained)
    for want, have in zip(reference.params, got.params):
        assert_close(have.get_value(), want.get_value(), f"{algo}: {want.name}")
        assert type(have.get_value()) is np.ndarray
    start = theanets.Regressor([4, (5, "tanh"), 2], rng=7)
    assert not np.allclose(start.params[0].get_value(), got.params[0].get_value())


# ----------------------------------------------------------------------
# parameters stay on the device


def test_shared_values_stay_on_the_device_between_calls():
    """Inside ``parameters_on_device`` only the batch is copied to the device."""
    import jax

    rng = np.random.default_rng(3)
    start = rng.normal(size=(3, 2)).astype("float32")
    data = rng.normal(size=(4, 3)).astype("float32")
    w = pytensor.shared(start.copy(), name="w")
    rate = pytensor.shared(np.float32(0.05), name="rate")
    x = pt.matrix("x", dtype="float32")
    loss = ((x @ w) ** 2).sum()
    with under_jax():
        fn = compile_now([x], loss, [(w, w - rate * pytensor.grad(loss, w))])
    fn.trust_input = True  # hand the function a device array as it is
    batch = jax.device_put(data)
    # outside the context the parameters are NumPy arrays, copied at every call
    with jax.transfer_guard_host_to_device("disallow"):
        with pytest.raises(Exception, match="Disallowed host-to-device"):
            fn(batch)
    with jax_dispatch.parameters_on_device():
        fn(batch)  # copies w and rate once
        with jax.transfer_guard_host_to_device("disallow"):
            fn(batch)
            fn(batch)
        assert isinstance(w.container.storage[0], jax.Array)
    value = w.get_value()
    assert type(value) is np.ndarray and value.dtype == np.float32
    want = start.astype("float64")
    for _ in range(3):  # d/dw sum((x w)^2) = 2 x^T x w
        want = want - 0.05 * 2 * data.T @ (data @ want)
    assert_close(value, want.astype("float32"), "w after three steps")


def test_training_keeps_parameters_on_the_device_within_an_epoch():
    """Between the batches of an epoch the parameters are device arrays; between epochs NumPy."""
    import jax

    rng = np.random.default_rng(5)
    rows = [
        [rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")]
        for _ in range(4)
    ]

    def trained(seen):
        net = theanets.Regressor([4, (5, "tanh"), 2], rng=7)
        order = iter(range(10**6))

        def batch():
            seen.append(type(net.find("hid1", "w").container.storage[0]))
            return rows[next(order) % len(rows)]

        kinds = []
        for _ in net.itertrain(
            batch, rows[0], algo="adam", learning_rate=0.01, train_batches=4, max_updates=8
        ):
            kinds.append(type(net.find("hid1", "w").container.storage[0]))
        return net, kinds

    reference, _ = trained([])
    seen = []
    with under_jax():
        got, kinds = trained(seen)
    assert len(seen) == 8
    assert kinds == [np.ndarray] * len(kinds) and len(kinds) == 2
    # the first step of an epoch moves them (or the validation before it); the
    # batches after it find them on the device
    assert all(issubclass(kind, jax.Array) for i, kind in enumerate(seen) if i % 4), seen
    for want, have in zip(reference.params, got.params):
        assert_close(have.get_value(), want.get_value(), want.name)


def _esgd(loss_of):
    """ESGD on ``loss_of(w, x)`` for a shared float32 ``w``; returns the optimizer, w and data."""
    rng = np.random.default_rng(4)
    w = pytensor.shared(rng.normal(size=(3, 2)).astype("float32"), name="w")
    x = pt.matrix("x", dtype="float32")
    opt = theanets.optimizers.build("esgd", loss_of(w, x), [w], [x])
    return opt, w, [rng.normal(size=(8, 3)).astype("float32")]


def _esgd_steps(opt, w, data, start, **kwargs):
    """Three updates from ``start``; the parameters after the last one."""
    w.set_value(start.copy())
    for _ in opt.iterate([data[0]], max_updates=3, batch_size=8, learning_rate=0.1, **kwargs):
        last = w.get_value().copy()  # before the best parameters are restored
    return last


def test_esgd_steps_without_curvature_agree():
    """With a linear loss (zero Hessian) the random probes do not matter."""

    def run():
        opt, w, data = _esgd(lambda w, x: (x.dot(w) * np.float32(0.5)).mean())
        start = w.get_value().copy()
        return start, _esgd_steps(opt, w, data, start, rms_regularizer=0.5, rng=1)

    (start, want), (_, got) = both(run)
    assert_close(got, want, "esgd")
    assert not np.allclose(got, start)


def test_esgd_probes_follow_rng_seeds():
    """Under JAX, ``rng=`` reseeds the probes at every run of the same optimizer."""
    with under_jax():
        opt, w, data = _esgd(lambda w, x: pt.sqr(x.dot(w) - 1).mean())
        start = w.get_value().copy()
        first = _esgd_steps(opt, w, data, start, rng=1)
        again = _esgd_steps(opt, w, data, start, rng=1)
        other = _esgd_steps(opt, w, data, start, rng=2)
    np.testing.assert_array_equal(again, first)
    assert not np.allclose(other, first)
    assert not np.allclose(first, start)


# ----------------------------------------------------------------------
# the whole model API under JAX


@pytest.mark.parametrize("kind", ["feedforward", "recurrent", "convolution"])
def test_train_save_load_predict(kind, tmp_path):
    rng = np.random.default_rng(1)
    if kind == "feedforward":
        net = theanets.Classifier([4, (5, "relu"), 3], rng=1)
        x = rng.normal(size=(20, 4)).astype("float32")
        y = rng.integers(0, 3, size=20).astype("int32")
    elif kind == "recurrent":
        net = theanets.recurrent.Regressor([3, (4, "gru"), 2], rng=1)
        x = rng.normal(size=(4, 6, 3)).astype("float32")
        y = rng.normal(size=(4, 6, 2)).astype("float32")
    else:
        net = theanets.convolution.Regressor(
            [(5, 5, 1), dict(form="conv2", size=2, filter_size=2), "flatten", 2], rng=1
        )
        x = rng.normal(size=(6, 5, 5, 1)).astype("float32")
        y = rng.normal(size=(6, 2)).astype("float32")
    with under_jax():
        loss_before = net.loss_value(x, y)
        train, valid = net.train([x, y], algo="adam", learning_rate=0.01, max_updates=5)
        assert np.isfinite(train["loss"])
        assert net.loss_value(x, y) < loss_before
        predicted = net.predict(x)
        path = tmp_path / "model.npz"
        net.save(path)
        loaded = theanets.graph.Network.load(path)
        np.testing.assert_array_equal(loaded.predict(x), predicted)
    # a model trained under JAX works under the reference backend too
    assert_close(net.predict(x), predicted, "predict after JAX training")
    assert_close(loaded.predict(x), predicted, "loaded model")


def test_sparse_inputs_are_refused_under_jax():
    net = theanets.Regressor([dict(size=4, sparse="csr"), (3, "tanh"), 2], rng=1)
    x = scipy.sparse.random(5, 4, density=0.5, format="csr", random_state=0, dtype="float32")
    want = net.predict(x)
    with under_jax():
        with pytest.raises(
            util.ConfigurationError, match=r"input 'in' is a sparse csr.*JAX backend \(mode 'JAX'\)"
        ):
            net.predict(x)
    np.testing.assert_array_equal(net.predict(x), want)


def test_missing_jax_is_a_configuration_error(monkeypatch):
    monkeypatch.setattr(jax_dispatch, "_REGISTERED", False)
    monkeypatch.setitem(sys.modules, "jax", None)
    with pytest.raises(util.ConfigurationError, match=r"needs JAX.*pip install 'theanets\[jax\]'"):
        jax_dispatch.mode()
