"""Tests for theanets.layers.recurrent.

Oracles: every cell is re-implemented below as a plain NumPy loop written
from its published equations. The oracles are checked against upstream
theanets' own outputs (``fixtures/upstream_init.npz``, pure NumPy, no
compilation); the PyTensor layers are then checked against the oracles on
random data, and their gradients against central finite differences in
float64.
"""

import json
import os

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import theanets
from theanets import layers
from theanets.util import ConfigurationError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
NIN, B, T = 2, 2, 4


# ----------------------------------------------------------------------
# NumPy oracles


def sig(a):
    return 1 / (1 + np.exp(-a))


def activation(name, leak=None):
    return {
        "tanh": np.tanh,
        "relu": lambda a: np.maximum(a, 0),
        "linear": lambda a: a,
        "sigmoid": sig,
        "prelu": lambda a: (a + abs(a)) / 2 + np.exp(leak) * (a - abs(a)) / 2,
    }[name]


def loop(x, step, states, back=False):
    """Run ``step(x_t, states, k) -> (outputs dict, states)`` over time.

    ``k`` counts the steps in processing order; outputs are aligned with
    the input's time axis.
    """
    steps = x.shape[1]
    outs = [None] * steps
    order = range(steps - 1, -1, -1) if back else range(steps)
    for k, t in enumerate(order):
        outs[t], states = step(x[:, t], states, k)
    return {key: np.stack([o[key] for o in outs], axis=1) for key in outs[0]}


def zeros(x, n):
    return np.zeros((x.shape[0], n))


def np_rnn(x, p, act, back=False, h0=None):
    n = p["hh"].shape[0]

    def step(xt, h, k):
        pre = xt @ p["xh"] + p["b"] + h @ p["hh"]
        return dict(pre=pre, out=act(pre)), act(pre)

    return loop(x, step, zeros(x, n) if h0 is None else h0, back)


def np_rrnn(x, p, act, rate, back=False, h0=None):
    n = p["hh"].shape[0]

    def step(xt, h, k):
        if rate == "matrix":
            r = sig(xt @ p["xr"] + p["r"])
        elif rate == "vector":
            r = sig(p["r"])
        else:
            r = p["rate"]
        pre = xt @ p["xh"] + p["b"] + h @ p["hh"]
        hid = act(pre)
        h = (1 - r) * h + r * hid
        return dict(pre=pre, hid=hid, out=h, rate=np.broadcast_to(r, h.shape)), h

    out = loop(x, step, zeros(x, n) if h0 is None else h0, back)
    if rate != "matrix":
        out["rate"] = out["rate"][0, 0]
    return out


def np_mrnn(x, p, act, back=False, h0=None):
    n = p["hh"].shape[0] if "hh" in p else p["fh"].shape[1]

    def step(xt, h, k):
        pre = xt @ p["xh"] + p["b"] + ((xt @ p["xf"]) * (h @ p["hf"])) @ p["fh"]
        return dict(pre=pre, out=act(pre), factors=xt @ p["xf"]), act(pre)

    return loop(x, step, zeros(x, n) if h0 is None else h0, back)


def np_lstm(x, p, act=None, back=False, h0=None, c0=None):
    n = p["hh"].shape[0]

    def step(xt, state, k):
        h, c = state
        a = xt @ p["xh"] + p["b"] + h @ p["hh"]
        i = sig(a[:, :n] + c * p["ci"])
        f = sig(a[:, n : 2 * n] + c * p["cf"])
        c = f * c + i * np.tanh(a[:, 2 * n : 3 * n])
        o = sig(a[:, 3 * n :] + c * p["co"])
        h = o * np.tanh(c)
        return dict(out=h, cell=c), (h, c)

    return loop(
        x, step, (zeros(x, n) if h0 is None else h0, zeros(x, n) if c0 is None else c0), back
    )


def np_gru(x, p, act, back=False, h0=None):
    """GRU with the 0.8 layout: w = [x_h | x_r | x_z], b likewise."""
    n = p["hh"].shape[0]

    def step(xt, h, k):
        u = xt @ p["w"] + p["b"]
        r = sig(u[:, n : 2 * n] + h @ p["hr"])
        z = sig(u[:, 2 * n :] + h @ p["hz"])
        pre = u[:, :n] + (r * h) @ p["hh"]
        hid = act(pre)
        h = (1 - z) * h + z * hid
        return dict(pre=pre, hid=hid, rate=z, out=h), h

    return loop(x, step, zeros(x, n) if h0 is None else h0, back)


def np_clockwork(x, p, act, periods, back=False, h0=None):
    n = p["hh"].shape[0]
    ps = sorted(periods, reverse=True)
    k = n // len(ps)
    mask = np.zeros((n, n))
    period = np.zeros(n)
    for j, per in enumerate(ps):
        mask[j * k : (j + 1) * k, j * k :] = 1
        period[j * k : (j + 1) * k] = per

    def step(xt, state, t):
        pre_prev, h = state
        new = xt @ p["xh"] + p["b"] + h @ (p["hh"] * mask)
        pre = np.where(t % period == 0, new, pre_prev)
        return dict(pre=pre, out=act(pre)), (pre, act(pre))

    return loop(x, step, (zeros(x, n), zeros(x, n) if h0 is None else h0), back)


def np_mut1(x, p, act=None, back=False, h0=None):
    n = p["hh"].shape[0]

    def step(xt, h, k):
        z = sig(xt @ p["xz"] + p["bz"])
        r = sig(xt @ p["xr"] + p["br"] + h @ p["hr"])
        pre = np.tanh(xt @ p["xh"] + p["bh"]) + (r * h) @ p["hh"]
        hid = np.tanh(pre)
        h = (1 - z) * h + z * hid
        return dict(pre=pre, hid=hid, rate=z, out=h), h

    return loop(x, step, zeros(x, n) if h0 is None else h0, back)


def np_scrn(x, p, act, rate="vector", back=False, h0=None, s0=None):
    """SCRN with the 0.8 layout: w = [x_h | x_s]."""
    n = p["hh"].shape[0]
    c = p["sh"].shape[0]
    r = sig(p["r"]) if rate == "vector" else p["rate"]

    def step(xt, state, k):
        h, s = state
        u = xt @ p["w"]
        s = r * u[:, n:] + (1 - r) * s
        h = sig(u[:, :n] + h @ p["hh"] + s @ p["sh"])
        return dict(hid=h, state=s), (h, s)

    out = loop(
        x, step, (zeros(x, n) if h0 is None else h0, zeros(x, c) if s0 is None else s0), back
    )
    out["out"] = act(out["hid"] @ p["ho"] + out["state"] @ p["so"] + p["b"])
    out["rate"] = r
    return out


def np_bidirectional(x, pf, pb, oracle):
    fw = oracle(x, pf, back=False)
    bw = oracle(x, pb, back=True)
    out = {f"fw_{k}": v for k, v in fw.items()}
    out.update({f"bw_{k}": v for k, v in bw.items()})
    for k in ("out", "pre", "cell"):
        if k in fw:
            out[k] = np.concatenate([fw[k], bw[k]], axis=-1)
    return out


# ----------------------------------------------------------------------
# the oracles reproduce upstream theanets (pure NumPy)


@pytest.fixture(scope="module")
def upstream():
    with open(os.path.join(FIXTURES, "upstream_init.json")) as handle:
        cases = json.load(handle)["cases"]
    arrays = np.load(os.path.join(FIXTURES, "upstream_init.npz"))
    return cases, {k: arrays[k] for k in arrays.files}


def _fixture_params(arrays, case, layer="hid1"):
    prefix = f"{case}/{layer}."
    return {k[len(prefix) :]: v.astype(float) for k, v in arrays.items() if k.startswith(prefix)}


def _fixture_outputs(arrays, case, layer="hid1"):
    prefix = f"{case}/@ff/{layer}:"
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


ORACLE_VS_UPSTREAM = {
    "rnn": lambda x, p: np_rnn(x, p, activation("relu")),
    "rnn_tanh": lambda x, p: np_rnn(x, p, np.tanh),
    "rnn_square_input": lambda x, p: np_rnn(x, p, activation("relu")),
    "lstm": lambda x, p: np_lstm(x, p),
    "clockwork": lambda x, p: np_clockwork(x, p, activation("relu"), (1, 2)),
    "clockwork_3": lambda x, p: np_clockwork(x, p, np.tanh, (4, 1, 2)),
    "mut1": lambda x, p: np_mut1(x, p),
    "rrnn": lambda x, p: np_rrnn(x, p, activation("relu"), "matrix"),
    "rrnn_vector": lambda x, p: np_rrnn(x, p, activation("relu"), "vector"),
    "mrnn": lambda x, p: np_mrnn(x, p, activation("relu")),
    # 0.7.3 kept separate GRU/SCRN matrices; the same maths in the 0.8 layout:
    "gru": lambda x, p: np_gru(
        x,
        dict(
            p,
            w=np.concatenate([p["xh"], p["xr"], p["xz"]], axis=1),
            b=np.concatenate([p["bh"], p["br"], p["bz"]]),
        ),
        activation("relu"),
    ),
    "scrn": lambda x, p: np_scrn(
        x, dict(p, w=np.concatenate([p["xh"], p["xs"]], axis=1)), activation("relu")
    ),
}


@pytest.mark.parametrize("case", sorted(ORACLE_VS_UPSTREAM))
def test_oracle_matches_upstream_outputs(upstream, case):
    _, arrays = upstream
    x = arrays[f"{case}/@x"].astype(float)
    got = ORACLE_VS_UPSTREAM[case](x, _fixture_params(arrays, case))
    want = _fixture_outputs(arrays, case)
    for key, value in want.items():
        if key in ("rate", "factors") and value.shape != got[key].shape:
            value = value.transpose(1, 0, 2)  # upstream left these time-major
        if case == "scrn" and key == "pre":
            continue  # 0.7.3 exposed the hidden pre-activation; 0.8 has no 'pre'
        np.testing.assert_allclose(got[key], value, atol=2e-6, err_msg=f"{case}:{key}")


@pytest.mark.parametrize(
    "case, worker",
    [("bidirectional", "relu"), ("bidirectional_tanh", "tanh"), ("bidirectional_lstm", "lstm")],
)
def test_bidirectional_oracle_matches_upstream(upstream, case, worker):
    _, arrays = upstream
    x = arrays[f"{case}/@x"].astype(float)
    pf = _fixture_params(arrays, case, "hid1_fw")
    pb = _fixture_params(arrays, case, "hid1_bw")
    if worker == "lstm":
        oracle = np_lstm
    else:
        act = activation(worker)

        def oracle(x, p, back):
            return np_rnn(x, p, act, back=back)

    got = np_bidirectional(x, pf, pb, oracle)
    for key, value in _fixture_outputs(arrays, case).items():
        if key.startswith("bw_"):
            # upstream left the backward worker's outputs in reversed time order;
            # ours are aligned with the input
            value = value[:, ::-1]
        elif not key.startswith("fw_"):
            continue
        np.testing.assert_allclose(got[key], value, atol=2e-6, err_msg=key)


# ----------------------------------------------------------------------
# initial values equal upstream's for the same seed


INIT_CASES = [
    "rnn",
    "rnn_tanh",
    "rnn_square_input",
    "rnn_radius",
    "rnn_radius_nonsquare_input",
    "rnn_diagonal",
    "rnn_sparsity",
    "lstm",
    "lstm_radius",
    "clockwork",
    "clockwork_3",
    "mut1",
    "rrnn",
    "rrnn_vector",
    "rrnn_uniform",
    "mrnn",
    "mrnn_default_factors",
    "bidirectional",
    "bidirectional_tanh",
    "bidirectional_lstm",
    "recurrent_classifier",
    "recurrent_autoencoder",
]


@pytest.mark.parametrize("case", INIT_CASES)
def test_initial_values_match_upstream(upstream, case):
    cases, arrays = upstream
    with pytensor.config.change_flags(floatX="float32"):
        net = eval(cases[case]["ctor"], {"theanets": theanets, "np": np})
    assert [p.name for p in net.params] == cases[case]["params"]
    for param in net.params:
        value = param.get_value()
        assert value.dtype == np.float32
        np.testing.assert_allclose(
            value, arrays[f"{case}/{param.name}"], rtol=1e-6, atol=1e-7, err_msg=param.name
        )


def test_gru_initial_values_follow_the_08_draw_order():
    net = theanets.recurrent.Regressor([3, (4, "gru"), 2])
    rng = np.random.RandomState(13)
    std = 1 / np.sqrt(8)
    want = {name: rng.randn(4, 4) * std for name in ("hh", "hr", "hz")}
    want["w"] = rng.randn(3, 12) / np.sqrt(15)
    want["b"] = rng.randn(12)
    layer = net.find_layer("hid1")
    assert [p.name for p in layer.params] == [f"hid1.{k}" for k in ("hh", "hr", "hz", "w", "b")]
    for key, value in want.items():
        np.testing.assert_allclose(layer.find(key).get_value(), value, rtol=1e-6, err_msg=key)


def test_square_input_weights_are_drawn_in_blocks():
    # input size == layer size: w (4 x 12) is three 4x4 blocks, each with the
    # whole matrix's scale and each rescaled to the radius separately
    net = theanets.recurrent.Regressor([4, dict(size=4, form="gru", radius=0.5), 2])
    w = net.find("hid1", "w").get_value()
    for k in range(3):
        assert np.linalg.svd(w[:, 4 * k : 4 * k + 4], compute_uv=False)[0] == pytest.approx(0.5)
    hh = net.find("hid1", "hh").get_value()
    assert np.linalg.svd(hh, compute_uv=False)[0] == pytest.approx(0.5)


def test_scrn_initial_values_follow_the_08_layout():
    net = theanets.recurrent.Regressor([3, dict(size=4, form="scrn", context_size=2), 2])
    layer = net.find_layer("hid1")
    shapes = {p.name: p.get_value().shape for p in layer.params}
    assert shapes == {
        "hid1.w": (3, 6),
        "hid1.sh": (2, 4),
        "hid1.hh": (4, 4),
        "hid1.ho": (4, 4),
        "hid1.so": (2, 4),
        "hid1.b": (4,),
        "hid1.r": (2,),
    }
    rng = np.random.RandomState(13)
    np.testing.assert_allclose(layer.find("w").get_value(), rng.randn(3, 6) / 3, rtol=1e-6)
    np.testing.assert_allclose(
        layer.find("sh").get_value(), rng.randn(2, 4) / np.sqrt(6), rtol=1e-6
    )


# ----------------------------------------------------------------------
# contract: registry, parameters, outputs, specs, dtypes

NI, N = 3, 4
CONTRACT = {
    "rnn": ({}, [("xh", (NI, N)), ("hh", (N, N)), ("b", (N,))], {"out", "pre"}),
    "bcrnn": (dict(num_modules=2), [("xh", (NI, N)), ("hh", (N, N)), ("b", (N,))], {"out", "pre"}),
    "rrnn": (
        {},
        [("xh", (NI, N)), ("hh", (N, N)), ("b", (N,)), ("r", (N,)), ("xr", (NI, N))],
        {"out", "pre", "hid", "rate"},
    ),
    "mrnn": (
        dict(factors=2),
        [("xh", (NI, N)), ("xf", (NI, 2)), ("hf", (N, 2)), ("fh", (2, N)), ("b", (N,))],
        {"out", "pre", "factors"},
    ),
    "lstm": (
        {},
        [
            ("xh", (NI, 4 * N)),
            ("hh", (N, 4 * N)),
            ("b", (4 * N,)),
            ("ci", (N,)),
            ("cf", (N,)),
            ("co", (N,)),
        ],
        {"out", "cell"},
    ),
    "gru": (
        {},
        [("hh", (N, N)), ("hr", (N, N)), ("hz", (N, N)), ("w", (NI, 3 * N)), ("b", (3 * N,))],
        {"out", "pre", "hid", "rate"},
    ),
    "clockwork": (
        dict(periods=(1, 2)),
        [("hh", (N, N)), ("xh", (NI, N)), ("b", (N,))],
        {"out", "pre"},
    ),
    "mut1": (
        {},
        [
            ("xh", (NI, N)),
            ("xr", (NI, N)),
            ("xz", (NI, N)),
            ("hh", (N, N)),
            ("hr", (N, N)),
            ("bh", (N,)),
            ("br", (N,)),
            ("bz", (N,)),
        ],
        {"out", "pre", "hid", "rate"},
    ),
    "scrn": (
        {},
        [
            ("w", (NI, 2 * N)),
            ("sh", (N, N)),
            ("hh", (N, N)),
            ("ho", (N, N)),
            ("so", (N, N)),
            ("b", (N,)),
            ("r", (N,)),
        ],
        {"out", "hid", "rate", "state"},
    ),
}


def _contract_net(form, extra):
    return theanets.recurrent.Regressor([NI, dict(form=form, size=N, **extra), 2])


@pytest.mark.parametrize("form", sorted(CONTRACT))
def test_contract(form):
    extra, params, outputs = CONTRACT[form]
    assert layers.Layer.is_registered(form)
    assert layers.Layer.is_registered(form.upper())
    net = _contract_net(form, extra)
    layer = net.find_layer("hid1")
    assert type(layer) is layers.Layer.lookup(form)
    assert [(p.name, p.get_value().shape) for p in layer.params] == [
        (f"hid1.{k}", shape) for k, shape in params
    ]
    assert {name.split(":")[1] for name in layer.output_shapes()} == outputs
    graph, _ = net.build_graph()
    assert {k.split(":")[1] for k in graph if k.startswith("hid1:")} == outputs
    dims = layer._output_dims()
    for name, shape in layer.output_shapes().items():
        # per-example outputs gain the batch axis; a fixed rate vector has none
        per_example = not isinstance(dims[name.split(":")[1]], tuple)
        assert graph[name].ndim == len(shape) + per_example, name


@pytest.mark.parametrize("form", sorted(CONTRACT) + ["bidirectional"])
def test_to_spec_round_trip(form):
    extra = CONTRACT[form][0] if form in CONTRACT else dict(worker="gru")
    extra = (
        dict(extra, bptt_limit=3, direction="back", sparsity=0.2)
        if form != "bidirectional"
        else dict(extra, bptt_limit=3, sparsity=0.2)
    )
    net = _contract_net(form, extra)
    layer = net.find_layer("hid1")
    spec = layer.to_spec()
    json.dumps(spec)
    copy = theanets.recurrent.Regressor([NI])
    built = layers.Layer.build(spec.pop("form"), **spec)
    copy.add_layer(built)
    assert built.to_spec() == layer.to_spec()
    assert [p.name for p in built.params] == [p.name for p in layer.params]
    for a, b in zip(built.params, layer.params):
        np.testing.assert_array_equal(a.get_value(), b.get_value())


@pytest.mark.parametrize("form", sorted(CONTRACT) + ["bidirectional"])
def test_float32_stays_float32(form):
    extra = CONTRACT[form][0] if form in CONTRACT else {}
    with pytensor.config.change_flags(floatX="float32"):
        net = _contract_net(form, extra)
        graph, _ = net.build_graph()
        grads = pytensor.grad(net.loss(), net.params)
    assert all(p.dtype == "float32" for p in net.params)
    assert all(graph[k].dtype == "float32" for k in graph if k.startswith("hid1:")), {
        k: graph[k].dtype for k in graph
    }
    assert all(g.dtype == "float32" for g in grads)


def test_recurrent_layers_read_time_major_internally_but_batch_major_outside():
    net = theanets.recurrent.Regressor([3, (4, "lstm"), 2])
    assert net.find_layer("hid1").output_shape == (None, 4)
    assert net.output_shapes["hid1:cell"] == (None, 4)


def test_input_projection_is_hoisted_out_of_the_loop():
    net = theanets.recurrent.Regressor([3, dict(size=4, form="lstm", impl="scan"), 2])
    graph, _ = net.build_graph()
    scans = [
        node
        for node in pytensor.graph.traversal.applys_between(net.inputs, [graph["hid1:out"]])
        if type(node.op).__name__ == "Scan"
    ]
    assert len(scans) == 1
    inner_inputs = {v.name for v in scans[0].inputs if v.name}
    assert "hid1.xh" not in inner_inputs  # x W is computed once, before the loop
    assert "hid1.hh" in inner_inputs


# ----------------------------------------------------------------------
# forward pass against the oracles and gradients against finite differences


def _prelu_act(layer):
    return activation("prelu", leak=layer.activate.params[0].get_value())


CASES = {
    # id: (layer spec, oracle(x, params, layer, **states))
    "rnn": (
        dict(form="rnn", activation="tanh"),
        lambda x, p, L, **s: np_rnn(x, p, np.tanh, back=L.backwards, **s),
    ),
    "rnn_prelu": (
        dict(form="rnn", activation="prelu"),
        lambda x, p, L, **s: np_rnn(x, p, _prelu_act(L), back=L.backwards, **s),
    ),
    "rnn_back": (
        dict(form="rnn", activation="tanh", direction="back"),
        lambda x, p, L, **s: np_rnn(x, p, np.tanh, back=True, **s),
    ),
    "rrnn_matrix": (
        dict(form="rrnn", activation="tanh"),
        lambda x, p, L, **s: np_rrnn(x, p, np.tanh, "matrix", **s),
    ),
    "rrnn_vector": (
        dict(form="rrnn", rate="vector", activation="tanh"),
        lambda x, p, L, **s: np_rrnn(x, p, np.tanh, "vector", **s),
    ),
    "rrnn_log": (
        dict(form="rrnn", rate="log", activation="tanh"),
        lambda x, p, L, **s: np_rrnn(x, p, np.tanh, "log", **s),
    ),
    "mrnn": (
        dict(form="mrnn", factors=2, activation="tanh"),
        lambda x, p, L, **s: np_mrnn(x, p, np.tanh, **s),
    ),
    "lstm": (dict(form="lstm"), lambda x, p, L, **s: np_lstm(x, p, **s)),
    "lstm_back": (
        dict(form="lstm", direction="back"),
        lambda x, p, L, **s: np_lstm(x, p, back=True, **s),
    ),
    "gru": (dict(form="gru", activation="tanh"), lambda x, p, L, **s: np_gru(x, p, np.tanh, **s)),
    "gru_back": (
        dict(form="gru", activation="tanh", direction="backward"),
        lambda x, p, L, **s: np_gru(x, p, np.tanh, back=True, **s),
    ),
    "clockwork": (
        dict(form="clockwork", periods=(1, 2, 3), size=6, activation="tanh"),
        lambda x, p, L, **s: np_clockwork(x, p, np.tanh, (1, 2, 3), **s),
    ),
    "clockwork_back": (
        dict(form="clockwork", periods=(2, 1), size=4, activation="tanh", direction="back"),
        lambda x, p, L, **s: np_clockwork(x, p, np.tanh, (2, 1), back=True, **s),
    ),
    "mut1": (dict(form="mut1"), lambda x, p, L, **s: np_mut1(x, p, **s)),
    "scrn": (
        dict(form="scrn", context_size=2, activation="tanh"),
        lambda x, p, L, **s: np_scrn(x, p, np.tanh, **s),
    ),
    "scrn_uniform_back": (
        dict(form="scrn", rate="uniform", activation="linear", direction="back"),
        lambda x, p, L, **s: np_scrn(x, p, lambda a: a, "uniform", back=True, **s),
    ),
    "bidirectional_rnn": (
        dict(form="bidirectional", size=6, activation="tanh"),
        lambda x, p, L, **s: np_bidirectional(
            x,
            _params(L.forward),
            _params(L.backward),
            lambda x, q, back: np_rnn(x, q, np.tanh, back=back),
        ),
    ),
    "bidirectional_gru": (
        dict(form="bidirectional", worker="gru", size=4, activation="tanh"),
        lambda x, p, L, **s: np_bidirectional(
            x,
            _params(L.forward),
            _params(L.backward),
            lambda x, q, back: np_gru(x, q, np.tanh, back=back),
        ),
    ),
}


# every case of a cell with a fused loop also runs with the reference scan loop
for _case in [k for k in CASES if k.split("_")[0] in ("rnn", "lstm", "gru", "bidirectional")]:
    if _case != "rnn_prelu":
        _spec, _oracle = CASES[_case]
        CASES[f"{_case}_scan"] = (dict(_spec, impl="scan"), _oracle)
CASES["rnn_relu"] = (
    dict(form="rnn", activation="relu"),
    lambda x, p, L, **s: np_rnn(x, p, activation("relu"), **s),
)
CASES["gru_sigmoid_back"] = (
    dict(form="gru", activation="sigmoid", direction="back"),
    lambda x, p, L, **s: np_gru(x, p, sig, back=True, **s),
)


def _params(layer):
    p = {param.name.split(".", 1)[1]: param.get_value() for param in layer.params}
    fixed = getattr(layer, "_fixed_rates", None)
    if fixed is not None:
        p["rate"] = fixed.get_value()
    return p


class Compiled:
    """One compiled function per case: every layer output, plus gradients of
    a random linear functional of the outputs w.r.t. the parameters and x."""

    def __init__(self, spec, extra_inputs=()):
        with pytensor.config.change_flags(floatX="float64"):
            spec = dict(dict(size=3), **spec)
            self.net = theanets.recurrent.Regressor([NIN] + list(extra_inputs) + [spec])
            self.layer = self.net.layers[-1]
            graph, _ = self.net.build_graph()
            self.names = sorted(k for k in graph if k.startswith(f"{self.layer.name}:"))
            outs = [graph[k] for k in self.names]
            self.weights = [pt.tensor(dtype="float64", shape=(None,) * o.ndim) for o in outs]
            total = sum((o * w).sum() for o, w in zip(outs, self.weights))
            wrt = list(self.layer.params) + [self.net.inputs[0]]
            grads = pytensor.grad(total, wrt, disconnected_inputs="ignore")
            self.fn = pytensor.function(list(self.net.inputs) + self.weights, outs + grads)

    def __call__(self, *inputs, weights):
        values = self.fn(*inputs, *weights)
        return dict(zip(self.names, values[: len(self.names)])), values[len(self.names) :]

    def _shapes(self, x):
        batch, steps = x.shape[:2]
        result = []
        for name in self.names:
            shape = self.layer.output_shapes()[name]
            result.append((batch, steps, shape[-1]) if len(shape) == 2 else shape)
        return result


@pytest.fixture(scope="module")
def compiled():
    cache = {}

    def get(case):
        if case not in cache:
            cache[case] = Compiled(CASES[case][0])
        return cache[case]

    return get


def _short(outputs, layer):
    return {k.split(":", 1)[1]: v for k, v in outputs.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_matches_oracle_for_any_length(compiled, case):
    c = compiled(case)
    rng = np.random.default_rng(0)
    for batch, steps in ((B, T), (3, 1), (1, 6)):
        x = rng.normal(size=(batch, steps, NIN))
        got, _ = c(x, weights=[np.zeros(s) for s in c._shapes(x)])
        want = CASES[case][1](x, _params(c.layer), c.layer)
        got = _short(got, c.layer)
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_allclose(
                got[key], want[key], rtol=1e-7, atol=1e-9, err_msg=f"{case}:{key} T={steps}"
            )


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_match_finite_differences(compiled, case):
    c = compiled(case)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, T, NIN))
    weights = [rng.normal(size=s) for s in c._shapes(x)]

    def total(xv):
        outs = c.fn(xv, *weights)[: len(c.names)]
        return sum((o * w).sum() for o, w in zip(outs, weights))

    _, grads = c(x, weights=weights)
    eps = 1e-6
    for param, grad in zip(list(c.layer.params) + [None], grads):
        value = x.copy() if param is None else param.get_value()
        flat = value.reshape(-1)
        numeric = np.zeros(flat.size)
        for i in range(flat.size):
            old = flat[i]
            results = []
            for delta in (eps, -eps):
                flat[i] = old + delta
                if param is None:
                    results.append(total(value))
                else:
                    param.set_value(value)
                    results.append(total(x))
            flat[i] = old
            numeric[i] = (results[0] - results[1]) / (2 * eps)
        if param is not None:
            param.set_value(value)
        name = param.name if param is not None else "x"
        np.testing.assert_allclose(
            grad.reshape(-1), numeric, rtol=1e-5, atol=1e-7, err_msg=f"{case}: d/d{name}"
        )


# ----------------------------------------------------------------------
# truncated back-propagation, initial states


def _input_grad_profile(spec, pick):
    with pytensor.config.change_flags(floatX="float64"):
        net = theanets.recurrent.Regressor([NIN, dict(dict(size=3, activation="tanh"), **spec)])
        graph, _ = net.build_graph()
        x = net.inputs[0]
        target = pick(graph["out:out"]).sum()
        fn = pytensor.function([x], pytensor.grad(target, x))
    g = fn(np.random.default_rng(2).normal(size=(B, 6, NIN)))
    return np.abs(g).sum(axis=(0, 2)) > 0


@pytest.mark.parametrize(
    "form, impl",
    [
        ("rnn", "scan"),
        ("rnn", "fused"),
        ("lstm", "scan"),
        ("lstm", "fused"),
        ("gru", "fused"),
        ("mut1", "scan"),
    ],
)
def test_bptt_limit_truncates_gradients(form, impl):
    full = _input_grad_profile(dict(form=form, impl=impl), lambda o: o[:, -1])
    assert full.all()
    cut = _input_grad_profile(dict(form=form, impl=impl, bptt_limit=2), lambda o: o[:, -1])
    assert cut.tolist() == [False, False, False, False, True, True]
    back = _input_grad_profile(
        dict(form=form, impl=impl, bptt_limit=2, direction="back"), lambda o: o[:, 0]
    )
    assert back.tolist() == [True, True, False, False, False, False]


def test_h_0_from_an_input_layer():
    rng = np.random.default_rng(3)
    with pytensor.config.change_flags(floatX="float64"):
        net = theanets.recurrent.Regressor(
            [
                NIN,
                dict(form="input", name="init", size=3, ndim=2),
                dict(form="rnn", size=3, activation="tanh", inputs="in", h_0="init"),
            ]
        )
    x, h0 = rng.normal(size=(B, T, NIN)), rng.normal(size=(B, 3))
    got = net.predict([x, h0])
    want = np_rnn(x, _params(net.layers[-1]), np.tanh, h0=h0)["out"]
    np.testing.assert_allclose(got, want, rtol=1e-7)
    assert net.layers[-1].to_spec()["h_0"] == "init:out"


def test_h_0_and_c_0_from_other_layers_use_their_last_step():
    rng = np.random.default_rng(4)
    with pytensor.config.change_flags(floatX="float64"):
        net = theanets.recurrent.Regressor(
            [
                NIN,
                dict(form="lstm", size=3, name="enc"),
                dict(form="lstm", size=3, inputs="in", h_0="enc", c_0="enc:cell"),
            ]
        )
    x = rng.normal(size=(B, T, NIN))
    outputs = net.feed_forward(x)
    enc = np_lstm(x, _params(net.layers[1]))
    np.testing.assert_allclose(outputs["enc:out"], enc["out"], rtol=1e-7)
    want = np_lstm(x, _params(net.layers[2]), h0=enc["out"][:, -1], c0=enc["cell"][:, -1])
    np.testing.assert_allclose(outputs["out:out"], want["out"], rtol=1e-7)
    np.testing.assert_allclose(outputs["out:cell"], want["cell"], rtol=1e-7)


def test_scrn_s_0():
    rng = np.random.default_rng(5)
    with pytensor.config.change_flags(floatX="float64"):
        net = theanets.recurrent.Regressor(
            [
                NIN,
                dict(form="input", name="s", size=2, ndim=2),
                dict(form="scrn", size=3, context_size=2, inputs="in", s_0="s", activation="tanh"),
            ]
        )
    x, s0 = rng.normal(size=(B, T, NIN)), rng.normal(size=(B, 2))
    want = np_scrn(x, _params(net.layers[-1]), np.tanh, s0=s0)["out"]
    np.testing.assert_allclose(net.predict([x, s0]), want, rtol=1e-7)


# ----------------------------------------------------------------------
# configuration errors


@pytest.mark.parametrize(
    "spec, match",
    [
        (dict(form="bidirectional", worker="nope"), "unknown bidirectional worker"),
        (dict(form="bidirectional", worker="ff"), "must be a recurrent layer"),
        (dict(form="bidirectional", size=5), "even size"),
        (dict(form="rrnn", rate="fast"), "rate must be one of"),
        (dict(form="scrn", rate="matrix"), "rate must be one of"),
        (dict(form="rnn", direction="sideways"), "direction"),
        (dict(form="rnn", bptt_limit=0), "bptt_limit"),
        (dict(form="rnn", impl="magic"), "impl"),
        (dict(form="mrnn", impl="fused"), "no fused implementation"),
        (dict(form="clockwork"), "needs periods"),
        (dict(form="clockwork", periods=(1, 2, 3)), "multiple of the number of periods"),
        (dict(form="rnn", h_0="missing"), "cannot find h_0"),
        (dict(form="rnn", h_0="in"), r"h_0='in:out' must have examples of shape \(4,\)"),
        (dict(form="rnn", stdd=1), "unknown keyword argument 'stdd'"),
        (dict(form="rnn", std_zz=1), "names no parameter"),
        (dict(form="mrnn", factors=0), "factors"),
        (dict(form="scrn", context_size=-1), "context_size"),
    ],
)
def test_configuration_errors(spec, match):
    with pytest.raises(ConfigurationError, match=match):
        theanets.recurrent.Regressor([3, dict(dict(size=4), **spec), 2])


def test_recurrent_layer_in_a_feedforward_model_is_an_error():
    with pytest.raises(ConfigurationError, match=r"\(batch, time, features\)"):
        theanets.Regressor([3, (4, "lstm"), 2])


def test_fixed_rates_are_not_parameters_and_lie_in_range():
    net = theanets.recurrent.Regressor([3, dict(size=50, form="rrnn", rate="log"), 2])
    layer = net.find_layer("hid1")
    assert [p.name for p in layer.params] == ["hid1.xh", "hid1.hh", "hid1.b"]
    rates = layer._fixed_rates.get_value()
    assert rates.shape == (50,) and np.all((rates > np.exp(-6.001)) & (rates < 1))
    net2 = theanets.recurrent.Regressor([3, dict(size=50, form="rrnn", rate="log"), 2])
    np.testing.assert_array_equal(net2.find_layer("hid1")._fixed_rates.get_value(), rates)


# ----------------------------------------------------------------------
# the fused loops against the reference scan loops


@pytest.mark.parametrize(
    "spec",
    [
        dict(form="rnn", activation="tanh"),
        dict(form="rnn", activation="linear", bptt_limit=3),
        dict(form="rnn", activation="sigmoid", direction="back", bptt_limit=2),
        dict(form="lstm"),
        dict(form="lstm", direction="back", bptt_limit=3),
        dict(form="gru", activation="relu"),
        dict(form="gru", activation="tanh", direction="back", bptt_limit=4),
    ],
    ids=lambda spec: "-".join(f"{v}" for v in spec.values()),
)
def test_fused_matches_scan(spec):
    """Outputs and gradients (w.r.t. parameters, inputs and h_0) agree."""
    rng = np.random.default_rng(6)
    x, h0 = rng.normal(size=(3, 7, NIN)), rng.normal(size=(3, 5))
    results = {}
    for impl in ("scan", "fused"):
        with pytensor.config.change_flags(floatX="float64"):
            net = theanets.recurrent.Regressor(
                [
                    NIN,
                    dict(form="input", name="init", size=5, ndim=2),
                    dict(spec, size=5, impl=impl, inputs="in", h_0="init"),
                ]
            )
            graph, _ = net.build_graph()
            names = sorted(k for k in graph if k.startswith("out:"))
            wr = np.random.default_rng(7)
            total = sum((graph[k] * wr.normal(size=(3, 7, 5))).sum() for k in names)
            wrt = list(net.params) + list(net.inputs)
            outs = [graph[k] for k in names] + pytensor.grad(total, wrt)
            fn = pytensor.function(net.inputs, outs)
        results[impl] = fn(x, h0)
    for a, b in zip(results["scan"], results["fused"]):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_auto_uses_the_fused_loop_where_it_applies():
    def ops(spec):
        net = theanets.recurrent.Regressor([2, dict(spec, size=3)])
        graph, _ = net.build_graph()
        nodes = pytensor.graph.traversal.applys_between(net.inputs, [graph["out:out"]])
        return {type(node.op).__name__ for node in nodes}

    assert "LSTMForward" in ops(dict(form="lstm"))
    assert "GRUForward" in ops(dict(form="gru", activation="tanh"))
    assert "RNNForward" in ops(dict(form="rnn", activation="relu"))
    assert "Scan" in ops(dict(form="rnn", activation="prelu"))
    assert "Scan" in ops(dict(form="lstm", impl="scan"))
    with pytest.raises(ConfigurationError, match="fused RNN loop supports"):
        theanets.recurrent.Regressor(
            [2, dict(form="rnn", size=3, activation="prelu", impl="fused")]
        )


@pytest.mark.parametrize("form", ["lstm", "gru"])
def test_fused_gradients_in_default_mode(form, default_mode):
    """The fused ops run inside the default (Numba) backend as well."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 6, NIN))
    results = []
    for mode in ("FAST_COMPILE", "FAST_RUN"):
        with pytensor.config.change_flags(floatX="float64", mode=mode):
            net = theanets.recurrent.Regressor([NIN, dict(form=form, size=4, activation="tanh")])
            graph, _ = net.build_graph()
            total = (graph["out:out"] ** 2).sum()
            fn = pytensor.function(net.inputs, [total] + pytensor.grad(total, net.params))
        results.append(fn(x))
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_ops_have_numba_implementations(dtype):
    """PyTensor's Numba backend compiles the fused loops (a cache key), not object mode."""
    from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key

    from theanets.layers import fused

    seq, mat, vec = (pt.tensor(dtype=dtype, shape=(None,) * k) for k in (3, 2, 1))
    rnn = fused.RNNForward("relu", 2)(seq, mat, mat)
    lstm = fused.LSTMForward()(seq, mat, mat, mat, vec, vec, vec, vec)
    gru = fused.GRUForward("tanh", -1)(seq, mat, mat, mat)
    cost = rnn[1].sum() + lstm[0].sum() + lstm[1].sum() + gru[3].sum()
    grads = pytensor.grad(cost, [seq, mat])
    nodes = {v.owner for v in [*rnn, *lstm, *gru]}
    nodes |= {
        n
        for n in pytensor.graph.traversal.applys_between([seq, mat, vec], grads)
        if type(n.op).__name__.endswith("Backward")
    }
    names = set()
    for node in nodes:
        names.add(type(node.op).__name__)
        _, key = numba_funcify_and_cache_key(node.op, node=node)
        assert key is not None, node.op
    assert names == {
        f"{cell}{way}" for cell in ("RNN", "LSTM", "GRU") for way in ("Forward", "Backward")
    }
