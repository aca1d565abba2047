"""Tests for theanets.layers.convolution: Conv1, Conv2, Pool1, Pool2.

Oracles: :func:`scipy.signal.convolve` (a true convolution, flipped filter)
for the forward pass of every border mode and stride, NumPy loops for
pooling, central finite differences (:func:`pytensor.gradient.verify_grad`,
float64) for gradients, and the upstream theanets 0.7.3 fixture for
same-seed initial values and the Conv1 forward pass.
"""

import json
import os

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.signal

import theanets
from theanets.layers import convolution as conv
from theanets.util import ConfigurationError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
MODES = ("valid", "full", "same")


def _floatx(a):
    return np.asarray(a, dtype=pytensor.config.floatX)


# ----------------------------------------------------------------------
# NumPy / SciPy oracles


def scipy_conv(x, w, stride, border_mode):
    """x (batch, *spatial, C), w (F, C, *kernel) -> (batch, *out, F)."""
    nd = w.ndim - 2
    outs = []
    for example in x:
        maps = []
        for f in range(w.shape[0]):
            total = sum(
                scipy.signal.convolve(example[..., c], w[f, c], mode=border_mode)
                for c in range(w.shape[1])
            )
            maps.append(total[tuple(slice(None, None, s) for s in stride[:nd])])
        outs.append(np.stack(maps, axis=-1))
    return np.stack(outs)


def numpy_pool(x, window, stride, mode):
    """x (batch, *spatial, C) -> pooled with windows fully inside the input."""
    reduce = {"max": np.max, "sum": np.sum, "average": np.mean}[mode]
    spatial = x.shape[1:-1]
    counts = [(n - p) // s + 1 for n, p, s in zip(spatial, window, stride)]
    out = np.zeros((x.shape[0], *counts, x.shape[-1]))
    for pos in np.ndindex(*counts):
        index = tuple(slice(i * s, i * s + p) for i, p, s in zip(pos, window, stride))
        block = x[(slice(None),) + index + (slice(None),)]
        axes = tuple(range(1, 1 + len(window)))
        out[(slice(None),) + pos + (slice(None),)] = reduce(block, axis=axes)
    return out


# ----------------------------------------------------------------------
# registry, parameters, initial values


@pytest.mark.parametrize(
    "name, cls",
    [("conv1", conv.Conv1), ("conv2", conv.Conv2), ("pool1", conv.Pool1), ("pool2", conv.Pool2)],
)
def test_registered(name, cls):
    assert theanets.layers.Layer.lookup(name) is cls
    assert getattr(theanets.layers, cls.__name__) is cls


def test_conv1_parameter_names_and_counts():
    ni, size = 3, 5
    net = theanets.recurrent.Regressor([ni, dict(form="conv1", size=size, filter_size=13), 2])
    layer = net.layers[1]
    assert [p.name for p in layer.params] == ["hid1.w", "hid1.b"]
    assert layer.find("w").get_value().shape == (size, ni, 1, 13)
    assert layer.num_params() == 13 * ni * size + size
    assert sorted(layer.output_shapes()) == ["hid1:out", "hid1:pre"]


def test_conv2_parameter_names_counts_and_shapes():
    net = theanets.convolution.Regressor(
        [(9, 7, 2), dict(form="conv2", size=4, filter_size=(3, 2)), "flatten", 1]
    )
    layer = net.layers[1]
    assert [p.name for p in layer.params] == ["hid1.w", "hid1.b"]
    assert layer.find("w").get_value().shape == (4, 2, 3, 2)
    assert layer.num_params() == 3 * 2 * 2 * 4 + 4
    assert layer.output_shape == (7, 6, 4)
    assert net.layers[2].output_shape == (7 * 6 * 4,)


def test_pool_layers_have_no_parameters():
    net = theanets.convolution.Regressor([(6, 6, 3), dict(form="pool2", pool_size=2), "flatten", 1])
    assert net.layers[1].params == []
    assert net.layers[1].output_shape == (3, 3, 3)
    assert net.layers[1].size == 3


def test_conv2_initial_values_follow_the_weight_rule():
    net = theanets.convolution.Regressor(
        [(5, 5, 3), dict(form="conv2", size=4, filter_size=(2, 3)), "flatten", 1], rng=7
    )
    rng = np.random.RandomState(7)
    w = net.find("hid1", "w").get_value()
    for r in range(2):
        for c in range(3):
            expected = rng.randn(4, 3) / np.sqrt(3 + 4)
            np.testing.assert_allclose(w[:, :, r, c], expected, rtol=1e-6)
    np.testing.assert_allclose(net.find("hid1", "b").get_value(), rng.randn(4), rtol=1e-6)


def test_conv_init_kwargs():
    net = theanets.convolution.Regressor(
        [(4, 4, 2), dict(form="conv2", size=3, filter_size=2, std=0.5, mean_b=2, std_b=0), 1]
    )
    rng = np.random.RandomState(13)
    w = net.find("hid1", "w").get_value()
    np.testing.assert_allclose(w[:, :, 0, 0], 0.5 * rng.randn(3, 2), rtol=1e-6)
    np.testing.assert_allclose(net.find("hid1", "b").get_value(), 2.0)


@pytest.fixture(scope="module")
def upstream():
    with open(os.path.join(FIXTURES, "upstream_init.json")) as handle:
        case = json.load(handle)["cases"]["conv1"]
    arrays = np.load(os.path.join(FIXTURES, "upstream_init.npz"))
    return case, {k.split("/", 1)[1]: arrays[k] for k in arrays.files if k.startswith("conv1/")}


def test_conv1_matches_upstream_fixture(upstream):
    case, arrays = upstream
    assert case["ctor"].startswith("theanets.recurrent.Regressor(")
    net = theanets.recurrent.Regressor([3, dict(size=4, form="conv1", filter_size=2), 2])
    assert [p.name for p in net.params] == case["params"]
    for param, shape in zip(net.params, case["shapes"]):
        assert param.get_value().shape == tuple(shape)
        np.testing.assert_allclose(param.get_value(), arrays[param.name], rtol=1e-6)
    outputs = net.feed_forward(arrays["@x"])
    for key in ("hid1:pre", "hid1:out", "out:out"):
        np.testing.assert_allclose(outputs[key], arrays[f"@ff/{key}"], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------
# forward passes against SciPy / NumPy


CONV2_CASES = [
    (mode, stride, kernel)
    for mode in MODES
    for stride in [(1, 1), (2, 2), (2, 1)]
    for kernel in [(3, 2)]
] + [("same", (1, 1), (2, 2)), ("same", (1, 2), (4, 3)), ("valid", (3, 1), (1, 1))]

CONV1_CASES = [(mode, stride, k) for mode in MODES for stride in (1, 2, 3) for k in (3,)] + [
    ("same", 1, 2),
    ("full", 2, 4),
]


@pytest.fixture(scope="module")
def conv_net():
    """One network holding a parallel Conv2/Pool2 layer for every case (one compile)."""
    layers = [theanets.layers.Input(shape=(7, 6, 2), name="in")]
    for i, (mode, stride, kernel) in enumerate(CONV2_CASES):
        layers.append(
            dict(
                form="conv2",
                size=3,
                filter_size=kernel,
                stride=stride,
                border_mode=mode,
                inputs="in",
                name=f"c{i}",
                activation="linear",
            )
        )
    for i, (mode, pool, stride) in enumerate(POOL2_CASES):
        layers.append(
            dict(
                form="pool2",
                pool_size=pool,
                stride=stride,
                mode=mode,
                inputs="in",
                name=f"p{i}",
                activation="linear",
            )
        )
    layers.append(dict(form="flatten", inputs="c0", name="out", activation="linear"))
    net = theanets.Network(layers, rng=3)
    x = np.random.default_rng(5).normal(size=(2, 7, 6, 2))
    return net, x, net.feed_forward(x)


POOL2_CASES = [
    (mode, pool, stride)
    for mode in ("max", "sum", "average")
    for pool, stride in [((2, 2), None), ((2, 3), (1, 2)), ((3, 2), (2, 2)), ((2, 2), (3, 3))]
]


@pytest.mark.parametrize("i", range(len(CONV2_CASES)))
def test_conv2_forward_matches_scipy(conv_net, i):
    net, x, outputs = conv_net
    mode, stride, kernel = CONV2_CASES[i]
    layer = net.find_layer(f"c{i}")
    w = layer.find("w").get_value()
    expected = scipy_conv(x, w, stride, mode) + layer.find("b").get_value()
    got = outputs[f"c{i}:out"]
    assert got.shape == expected.shape
    assert layer.output_shape == expected.shape[1:]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("i", range(len(POOL2_CASES)))
def test_pool2_forward_matches_numpy(conv_net, i):
    net, x, outputs = conv_net
    mode, pool, stride = POOL2_CASES[i]
    layer = net.find_layer(f"p{i}")
    expected = numpy_pool(x, pool, stride or pool, mode)
    assert layer.output_shape == expected.shape[1:]
    np.testing.assert_allclose(outputs[f"p{i}:out"], expected, rtol=1e-6, atol=1e-8)


def test_flatten_after_conv(conv_net):
    net, x, outputs = conv_net
    assert outputs["out:out"].shape == (2, np.prod(net.find_layer("c0").output_shape))
    np.testing.assert_allclose(outputs["out:out"], outputs["c0:out"].reshape(2, -1))


@pytest.fixture(scope="module")
def conv1_net():
    layers = [theanets.layers.Input(shape=(None, 3), name="in")]
    for i, (mode, stride, k) in enumerate(CONV1_CASES):
        layers.append(
            dict(
                form="conv1",
                size=2,
                filter_size=k,
                stride=stride,
                border_mode=mode,
                inputs="in",
                name=f"c{i}",
                activation="linear",
            )
        )
    for i, (mode, pool, stride) in enumerate(POOL1_CASES):
        layers.append(
            dict(
                form="pool1",
                pool_size=pool,
                stride=stride,
                mode=mode,
                inputs="in",
                name=f"p{i}",
                activation="linear",
            )
        )
    net = theanets.Network(layers, rng=4)
    x = np.random.default_rng(6).normal(size=(2, 8, 3))
    return net, x, net.feed_forward(x)


POOL1_CASES = [(mode, 3, stride) for mode in ("max", "sum", "average") for stride in (None, 1, 2)]


@pytest.mark.parametrize("i", range(len(CONV1_CASES)))
def test_conv1_forward_matches_scipy(conv1_net, i):
    net, x, outputs = conv1_net
    mode, stride, k = CONV1_CASES[i]
    layer = net.find_layer(f"c{i}")
    w = layer.find("w").get_value()[:, :, 0, :]
    expected = scipy_conv(x, w, (stride,), mode) + layer.find("b").get_value()
    assert layer.output_shape == (None, 2)
    np.testing.assert_allclose(outputs[f"c{i}:out"], expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("i", range(len(POOL1_CASES)))
def test_pool1_forward_matches_numpy(conv1_net, i):
    net, x, outputs = conv1_net
    mode, pool, stride = POOL1_CASES[i]
    expected = numpy_pool(x, (pool,), (stride or pool,), mode)
    np.testing.assert_allclose(outputs[f"p{i}:out"], expected, rtol=1e-6, atol=1e-8)


def test_static_output_lengths_match_computed_ones():
    for n in range(3, 9):
        for k in range(1, 4):
            for s in range(1, 4):
                for mode in MODES:
                    got = conv.conv_output_length(n, k, s, mode)
                    full = scipy.signal.convolve(np.ones(n), np.ones(k), mode=mode)
                    assert got == len(full[::s])
                assert conv.pool_output_length(n, k, s) == len(range(0, n - k + 1, s))


# ----------------------------------------------------------------------
# gradients against finite differences (float64)


def _check_grad(fn, shapes, seed):
    rng = np.random.default_rng(seed)
    values = [rng.normal(size=shape) for shape in shapes]
    with pytensor.config.change_flags(floatX="float64"):
        pytensor.gradient.verify_grad(
            fn, values, rng=np.random.default_rng(seed + 1), eps=1e-6, abs_tol=1e-6, rel_tol=1e-5
        )


@pytest.mark.parametrize("impl", conv.IMPLS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stride", [(1, 1), (2, 1)])
def test_conv2_gradient(mode, stride, impl):
    def fn(x, w):
        w = pt.specify_shape(w, (2, 3, 2, 3))
        return conv.convolve(x, w, stride, mode, impl=impl)

    _check_grad(fn, [(2, 4, 5, 3), (2, 3, 2, 3)], seed=len(mode) + stride[0])


@pytest.mark.parametrize("impl", conv.IMPLS)
@pytest.mark.parametrize("mode, stride", [("valid", 1), ("full", 2), ("same", 3)])
def test_conv1_gradient(mode, stride, impl):
    def fn(x, w):
        w = pt.specify_shape(w, (3, 2, 4))
        return conv.convolve(x, w, (stride,), mode, impl=impl)

    _check_grad(fn, [(2, 7, 2), (3, 2, 4)], seed=stride)


@pytest.mark.parametrize("mode", ["max", "sum", "average"])
@pytest.mark.parametrize("pool, stride", [((2, 2), (2, 2)), ((2, 3), (1, 2))])
def test_pool2_gradient(mode, pool, stride):
    _check_grad(lambda x: conv.pool(x, pool, stride, mode), [(2, 5, 6, 2)], seed=len(mode))


def test_pool1_gradient():
    _check_grad(lambda x: conv.pool(x, (2,), (2,), "max"), [(2, 7, 3)], seed=9)


def test_layer_gradient_through_network():
    """Loss gradient w.r.t. w and b of a conv net, by central differences."""
    with pytensor.config.change_flags(floatX="float64"):
        net = theanets.convolution.Regressor(
            [
                (5, 4, 2),
                dict(
                    form="conv2",
                    size=2,
                    filter_size=2,
                    stride=(1, 2),
                    border_mode="same",
                    activation="tanh",
                ),
                dict(form="pool2", pool_size=(2, 1), mode="average"),
                "flatten",
                2,
            ],
            rng=2,
        )
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(3, 5, 4, 2)), rng.normal(size=(3, 2))
        params = [net.find("hid1", "w"), net.find("hid1", "b")]
        grads = pytensor.function(net.variables, pytensor.grad(net.loss(), params))(x, y)
        for param, grad in zip(params, grads):
            value = param.get_value()
            numeric = np.zeros_like(value)
            for index in np.ndindex(*value.shape):
                for sign in (1, -1):
                    shifted = value.copy()
                    shifted[index] += sign * 1e-6
                    param.set_value(shifted)
                    numeric[index] += sign * net.loss_value(x, y) / 2e-6
                param.set_value(value)
            np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------
# configuration errors


def _net(layers, cls=theanets.convolution.Regressor):
    return cls(layers)


def test_filter_larger_than_input_in_valid_mode():
    pattern = r"'hid1'.*filter_size \(5, 2\).*\(4, 4, 1\)"
    with pytest.raises(ConfigurationError, match=pattern):
        _net([(4, 4, 1), dict(form="conv2", size=2, filter_size=(5, 2)), 1])
    # the same filter is fine when the border mode pads
    _net([(4, 4, 1), dict(form="conv2", size=2, filter_size=(5, 2), border_mode="full"), 1])


def test_wrong_input_rank():
    with pytest.raises(
        ConfigurationError,
        match=r"'hid1'.*examples of shape \(width, height, channels\).*shape \(6,\)",
    ):
        theanets.Regressor([6, dict(form="conv2", size=2, filter_size=2), 1])
    with pytest.raises(
        ConfigurationError, match=r"'hid1'.*examples of shape \(time, channels\).*shape \(6, 6, 1\)"
    ):
        _net([(6, 6, 1), dict(form="conv1", size=2, filter_size=2), 1])
    with pytest.raises(ConfigurationError, match=r"'hid1'.*Pool2 needs examples of shape"):
        theanets.Regressor([6, dict(form="pool2", pool_size=2), 1])


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(filter_size=0), "filter_size must be a positive integer"),
        (dict(filter_size=(2, -1)), "filter_size must be a positive integer"),
        (dict(filter_size=(2, 2, 2)), "tuple of 2 positive integers"),
        (dict(filter_size=2, stride=0), "stride must be a positive integer"),
        (dict(filter_size=2, stride=1.5), "stride must be a positive integer"),
        (dict(filter_size=2, border_mode="half"), "border_mode must be one of"),
        (dict(), "needs a filter_size"),
        (dict(filter_size=2, radius=1), "does not apply to convolution"),
        (dict(filter_size=2, shape=(3, 3, 2)), "takes no shape"),
        (dict(filter_size=2, bogus=1), "unknown keyword argument 'bogus'"),
        (dict(filter_size=2, impl="fft"), "impl must be one of"),
    ],
)
def test_bad_conv_configuration(kwargs, pattern):
    with pytest.raises(ConfigurationError, match=pattern):
        theanets.layers.Conv2(size=2, inputs="in", name="c", **kwargs)


def test_conv_needs_size():
    with pytest.raises(ConfigurationError, match="'c'.*needs a size"):
        theanets.layers.Conv2(filter_size=2, inputs="in", name="c")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(pool_size=2, mode="median"), "unknown pooling mode 'median'"),
        (dict(pool_size=2, mode="maximum"), "did you mean|Did you mean|closest|max"),
        (dict(pool_size=0), "pool_size must be a positive integer"),
        (dict(pool_size=2, stride=-2), "stride must be a positive integer"),
        (dict(), "needs a pool_size"),
    ],
)
def test_bad_pool_configuration(kwargs, pattern):
    with pytest.raises(ConfigurationError, match=pattern):
        theanets.layers.Pool2(inputs="in", name="p", **kwargs)


def test_pool_bigger_than_input_and_size_mismatch():
    with pytest.raises(ConfigurationError, match=r"'hid1'.*pool_size \(3, 3\).*\(2, 5, 1\)"):
        _net([(2, 5, 1), dict(form="pool2", pool_size=3), 1])
    with pytest.raises(ConfigurationError, match=r"'hid1'.*keeps the 1 channels"):
        _net([(4, 4, 1), dict(form="pool2", pool_size=2, size=5), 1])


def test_base_classes_cannot_be_built():
    with pytest.raises(ConfigurationError, match="base class"):
        theanets.layers.Layer.build("convolution", size=2, filter_size=2, name="c")
    with pytest.raises(ConfigurationError, match="base class"):
        theanets.layers.Layer.build("pooling", pool_size=2, name="p")


def test_pool_mode_aliases():
    layer = theanets.layers.Pool2(pool_size=2, mode="average_exc_pad", inputs="in", name="p")
    assert layer.mode == "average"


# ----------------------------------------------------------------------
# specs, dtypes, backends


def test_to_spec_round_trip():
    net = theanets.convolution.Regressor(
        [
            (6, 5, 2),
            dict(
                form="conv2", size=3, filter_size=(3, 2), stride=(1, 2), border_mode="same", std=0.3
            ),
            dict(form="pool2", pool_size=2, stride=(1, 1), mode="sum"),
            "flatten",
            2,
        ]
    )
    specs = [layer.to_spec() for layer in net.layers]
    assert specs[1]["filter_size"] == [3, 2]
    assert specs[1]["stride"] == [1, 2]
    assert specs[1]["border_mode"] == "same"
    assert specs[2]["mode"] == "sum"
    json.dumps(specs)
    for layer, spec in zip(net.layers[1:3], specs[1:3]):
        spec = dict(spec)
        rebuilt = theanets.layers.Layer.build(spec.pop("form"), **spec)
        assert type(rebuilt) is type(layer)
        assert rebuilt.to_spec() == layer.to_spec()
    conv1 = theanets.layers.Conv1(
        size=2, filter_size=4, stride=2, inputs="in", name="c", impl="scatter"
    )
    spec = conv1.to_spec()
    assert spec["filter_size"] == 4 and spec["stride"] == 2 and spec["impl"] == "scatter"
    spec.pop("form")
    assert theanets.layers.Conv1(**spec).impl == "scatter"


def test_save_and_load_round_trip(tmp_path):
    net = theanets.convolution.Classifier(
        [
            (5, 5, 1),
            dict(form="conv2", size=2, filter_size=2),
            dict(form="pool2", pool_size=2),
            "flatten",
            3,
        ]
    )
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 1))
    path = str(tmp_path / "conv.pkl")
    net.save(path)
    loaded = theanets.Network.load(path)
    assert type(loaded) is theanets.convolution.Classifier
    np.testing.assert_allclose(loaded.predict_proba(x), net.predict_proba(x))


def test_float32_stays_float32():
    with pytensor.config.change_flags(floatX="float32"):
        net = theanets.convolution.Regressor(
            [
                (6, 6, 1),
                dict(form="conv2", size=2, filter_size=3, border_mode="same"),
                dict(form="pool2", pool_size=2, mode="average"),
                "flatten",
                1,
            ]
        )
        assert all(p.dtype == "float32" for p in net.params)
        outputs, _ = net.build_graph()
        assert all(v.dtype == "float32" for v in outputs.values())
        assert net.loss().dtype == "float32"
        out = net.predict(np.zeros((2, 6, 6, 1)))
        assert out.dtype == np.float32


def test_heavy_part_uses_blas():
    """The C backend turns the patch products into Dot22/Gemm; Numba keeps MatMul."""
    from pytensor.compile.aliasing import add_supervisor_to_fgraph
    from pytensor.compile.io import SymbolicInput
    from pytensor.compile.mode import get_mode
    from pytensor.graph.fg import FunctionGraph

    x = pt.tensor("x", dtype="float64", shape=(None, 6, 6, 3))
    w = pt.tensor("w", dtype="float64", shape=(4, 3, 3, 3))
    out = conv.convolve(x, w, (1, 1), "same")
    cost = (out**2).sum()
    grads = pytensor.grad(cost, [x, w])
    for mode, wanted in (("CVM", {"Dot22", "Gemm", "Dot22Scalar"}), ("NUMBA", {"MatMul"})):
        fgraph = FunctionGraph([x, w], [out, *grads], clone=True)
        add_supervisor_to_fgraph(fgraph, [SymbolicInput(v) for v in fgraph.inputs])
        get_mode(mode).optimizer.rewrite(fgraph)
        ops = {type(node.op).__name__ for node in fgraph.toposort()}
        assert ops & wanted, (mode, sorted(ops))
        dots = [n for n in fgraph.toposort() if type(n.op).__name__ in wanted]
        assert len(dots) >= 3  # forward product, filter gradient, patch gradient


@pytest.mark.parametrize(
    "trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)]
)
def test_matmul_op_and_gradient(trans_a, trans_b):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 3) if trans_a else (3, 4))
    b = rng.normal(size=(5, 4) if trans_b else (4, 5))
    op = conv.MatMul(trans_a, trans_b)
    got = op(pt.as_tensor_variable(a), pt.as_tensor_variable(b)).eval()
    np.testing.assert_allclose(got, (a.T if trans_a else a) @ (b.T if trans_b else b))
    _check_grad(lambda x, y: op(x, y), [a.shape, b.shape], seed=int(trans_a) + 2 * int(trans_b))


def test_matmul_numba_and_c_backends_agree(default_mode):
    rng = np.random.default_rng(4)
    a = pt.matrix("a", dtype="float64")
    b = pt.matrix("b", dtype="float64")
    av, bv = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    outs = [conv.MatMul(ta, tb)(a, b) for ta in (False, True) for tb in (False, True)]
    cost = sum((o * o).sum() for o in outs)
    grads = pytensor.grad(cost, [a, b])
    expected = [
        (av.T if ta else av) @ (bv.T if tb else bv) for ta in (False, True) for tb in (False, True)
    ]
    reference = pytensor.function([a, b], grads, mode="FAST_COMPILE")(av, bv)
    for mode in ("NUMBA", "CVM"):
        fn = pytensor.function([a, b], outs + grads, mode=mode)
        values = fn(av, bv)
        for got, want in zip(values, expected + list(reference)):
            np.testing.assert_allclose(got, want, rtol=1e-10)


def test_scatter_impl_with_unknown_lengths():
    """impl='scatter' builds its index from symbolic shapes (Conv1 over any time length)."""
    net = theanets.recurrent.Regressor(
        [3, dict(form="conv1", size=2, filter_size=3, border_mode="same", impl="scatter"), 1]
    )
    x = pt.tensor("x", dtype=pytensor.config.floatX, shape=(None, None, 3))
    w = net.find("hid1", "w")
    out = conv.convolve(x, w.reshape((2, 3, 3)), (1,), "same", impl="scatter")
    ref = conv.convolve(x, w.reshape((2, 3, 3)), (1,), "same")
    grads = pytensor.grad((out**2).sum(), x), pytensor.grad((ref**2).sum(), x)
    fn = pytensor.function([x], grads)
    a, b = fn(np.random.default_rng(0).normal(size=(2, 7, 3)))
    np.testing.assert_allclose(a, b, rtol=1e-10)


# ----------------------------------------------------------------------
# the compiled patch and pooling operations (impl='fused') against the
# slice-based expressions, including derivatives of higher order


def _derivatives(build, shapes, seed):
    """Value, gradient and second derivative of ``(build(*xs) ** 2).sum()``, as arrays."""
    rng = np.random.default_rng(seed)
    values = [rng.normal(size=s) for s in shapes]
    # round to one decimal: many equal values, so that max pooling meets ties
    values = [np.round(v, 1) for v in values]
    xs = [pt.tensor(f"x{i}", dtype="float64", shape=(None,) * len(s)) for i, s in enumerate(shapes)]
    out = build(*xs)
    cost = (out**2).sum()
    grads = pytensor.grad(cost, xs)
    second = pytensor.grad(sum((g**2).sum() for g in grads), xs)
    fn = pytensor.function(xs, [out, *grads, *second], mode="FAST_COMPILE")
    return fn(*values)


@pytest.mark.parametrize("border_mode", MODES)
@pytest.mark.parametrize("stride", [(1, 1), (2, 3)])
def test_fused_conv2_matches_slices_to_second_order(border_mode, stride):
    results = {}
    for impl in ("fused", "slices"):

        def build(x, w, impl=impl):
            w = pt.specify_shape(w, (3, 2, 3, 2))
            return conv.convolve(x, w, stride, border_mode, impl=impl)

        results[impl] = _derivatives(build, [(2, 6, 7, 2), (3, 2, 3, 2)], seed=5)
    for got, want in zip(results["fused"], results["slices"]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("border_mode, stride", [("valid", 1), ("full", 2), ("same", 3)])
def test_fused_conv1_matches_slices_to_second_order(border_mode, stride):
    results = {}
    for impl in ("fused", "slices"):

        def build(x, w, impl=impl):
            w = pt.specify_shape(w, (2, 3, 4))
            return conv.convolve(x, w, (stride,), border_mode, impl=impl)

        results[impl] = _derivatives(build, [(2, 9, 3), (2, 3, 4)], seed=6)
    for got, want in zip(results["fused"], results["slices"]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["max", "sum", "average"])
@pytest.mark.parametrize("pool, stride", [((2, 2), (2, 2)), ((2, 3), (1, 2)), ((3, 2), (2, 3))])
def test_fused_pool_matches_slices_to_second_order(mode, pool, stride):
    results = {}
    for impl in ("fused", "slices"):

        def build(x, impl=impl):
            return conv.pool(pt.specify_shape(x, (None, None, None, 2)), pool, stride, mode, impl)

        results[impl] = _derivatives(build, [(2, 7, 8, 2)], seed=len(mode))
    for got, want in zip(results["fused"], results["slices"]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_fused_max_pool_gradient_goes_to_every_tied_maximum():
    x = pt.tensor("x", dtype="float64", shape=(1, 2, 2, 1))
    g = pytensor.grad(conv.pool(x, (2, 2), (2, 2), "max", impl="fused").sum(), x)
    value = np.array([3.0, 1.0, 3.0, 2.0]).reshape(1, 2, 2, 1)
    got = pytensor.function([x], g)(value)
    np.testing.assert_array_equal(got.ravel(), [1, 0, 1, 0])


def test_fused_training_graph_has_no_slice_operations():
    """The patches, their gradient and pooling are single operations, not dozens of slices."""
    net = theanets.convolution.Classifier(
        [
            (8, 8, 1),
            dict(form="conv2", size=3, filter_size=3, border_mode="same"),
            dict(form="pool2", pool_size=2),
            dict(form="conv2", size=2, filter_size=2),  # its input gradient needs Col2im
            "flatten",
            3,
        ]
    )
    loss = net.loss()
    graph = pytensor.grad(loss, net.params)
    nodes = list(pytensor.graph.traversal.applys_between(net.inputs, graph))
    ops = {type(n.op).__name__ for n in nodes}
    assert {"Im2col", "Col2im", "Pool", "PoolGrad", "FilterBank"} <= ops
    # no slicing, joining or scattering of images or filters (shape arithmetic aside)
    slicing = {"Subtensor", "IncSubtensor", "Join", "Split", "AdvancedIncSubtensor1"}
    sliced = [n for n in nodes if type(n.op).__name__ in slicing and n.outputs[0].ndim >= 3]
    assert not sliced, sliced


def test_fused_ops_have_numba_implementations():
    """PyTensor's Numba backend compiles them (a cache key), instead of calling perform."""
    from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key

    from theanets.layers import _conv_ops as ops

    x = pt.tensor("x", dtype="float64", shape=(None, None, None, 2))
    w = pt.tensor("w", dtype="float64", shape=(3, 2, 2, 2))
    patch = ops.Im2col((2, 2), (1, 1), ((1, 0), (0, 1)))
    rows = patch(x)
    pooled = ops.Pool((2, 2), (1, 1), "max")(x)
    bank = ops.FilterBank()(w)
    outputs = [
        rows,
        ops.Col2im(patch.window, patch.stride, patch.padding)(rows, x),
        pooled,
        ops.PoolGrad((2, 2), (1, 1), "max")(x, pooled, pooled),
        ops.MaxGather((2, 2), (1, 1), "max")(x, pooled, x),
        bank,
        ops.FilterBankGrad()(bank, w),
        ops.FilterBank()(w[:, :, 0]),  # one spatial axis
    ]
    for out in outputs:
        _, key = numba_funcify_and_cache_key(out.owner.op, node=out.owner)
        assert key is not None, out.owner.op


def test_fused_conv_net_agrees_across_backends(default_mode):
    """Loss and gradients of a conv net: Numba, C and Python implementations agree."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 7, 6, 2))
    y = rng.normal(size=(3, 2))
    results = []
    for mode in ("FAST_COMPILE", "NUMBA", "CVM"):
        with pytensor.config.change_flags(floatX="float64"):
            net = theanets.convolution.Regressor(
                [
                    (7, 6, 2),
                    dict(
                        form="conv2",
                        size=3,
                        filter_size=(3, 2),
                        stride=(1, 2),
                        border_mode="full",
                        impl="fused",
                    ),
                    dict(form="pool2", pool_size=(2, 2), stride=(1, 1)),
                    dict(form="conv2", size=2, filter_size=2, impl="fused"),
                    dict(form="pool2", pool_size=2, mode="average"),
                    "flatten",
                    2,
                ],
                rng=3,
            )
            loss = net.loss()
            fn = pytensor.function(
                net.variables, [loss, *pytensor.grad(loss, net.params)], mode=mode
            )
        results.append(fn(x, y))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-10)


def test_fused_outputs_are_not_overwritten_by_later_calls():
    """The operations reuse their output arrays only once nothing refers to them."""
    x = pt.tensor("x", dtype="float64", shape=(None, 5, 5, 1))
    out = conv.pool(x, (2, 2), (1, 1), "max", impl="fused")
    filters = pt.ones((2, 1, 2, 2))
    fn = pytensor.function([x], [out, conv.convolve(x, filters, (1, 1), "same", impl="fused")])
    rng = np.random.default_rng(0)
    first = fn(rng.normal(size=(2, 5, 5, 1)))
    kept = [a.copy() for a in first]
    for _ in range(3):
        fn(rng.normal(size=(2, 5, 5, 1)))
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)
