"""Reading model files saved by Theano-era theanets (theanets.legacy).

The fixtures in ``fixtures/legacy`` were saved by theanets 0.7.3 under Theano
(see ``scripts/upstream/make_legacy_models.py``). Other old files are made
here: the fixtures' contents are written out again the way Python 2 pickled
them, and small models are assembled from stand-ins and checked against
NumPy versions of the old formulas.
"""

import copyreg
import gzip
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import theanets
import theanets.recurrent
from theanets import legacy, serialization

HERE = Path(__file__).parent / "fixtures" / "legacy"
MANIFEST = json.loads((HERE / "manifest.json").read_text())["models"]
EXPECTED = dict(np.load(HERE / "expected.npz"))

CLASSES = {
    "theanets.feedforward.Regressor": theanets.Regressor,
    "theanets.feedforward.Classifier": theanets.Classifier,
    "theanets.feedforward.Autoencoder": theanets.Autoencoder,
    "theanets.recurrent.Regressor": theanets.recurrent.Regressor,
}


@pytest.fixture(scope="module")
def loaded():
    """Each fixture file, loaded once for the module."""
    return {key: theanets.Network.load(str(HERE / info["file"])) for key, info in MANIFEST.items()}


def _ref(key):
    return MANIFEST[key].get("expected_key", key)


# ----------------------------------------------------------------------
# writing pickles the way Python 2 did


class _Global:
    """A global written into a pickle by name, without importing it."""

    def __init__(self, path):
        self.module, _, self.name = path.rpartition(".")

    def __call__(self, *args):  # pickle.save_reduce wants a callable
        raise TypeError("only a marker")


class _Call:
    """An object pickled as ``func(*args)`` (with an optional state)."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state


class _Py2Pickler(pickle._Pickler):
    """Write pickles as Python 2 did: text as ``str`` opcodes, Python 2 module names.

    Stand-ins (:class:`theanets.legacy.LegacyObject`) are written under the
    name they stand for; arrays through ``numpy.core.multiarray._reconstruct``
    and random states through ``numpy.random.__RandomState_ctor``. Protocols
    0 and 1 build objects with ``copy_reg._reconstructor``, protocol 2 with
    NEWOBJ.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, protocol):
        super().__init__(file, protocol, fix_imports=True)

    def _save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if self.proto == 0:
            self.write(pickle.STRING + repr(data)[1:].encode("ascii") + b"\n")
        elif len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + len(data).to_bytes(4, "little") + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        if isinstance(obj, type) and issubclass(obj, legacy.LegacyObject):
            obj = _Global(obj.legacy_path)
        if isinstance(obj, _Global):
            module, name = obj.module, obj.name
        else:
            module, name = obj.__module__, name or obj.__qualname__
            module = {"builtins": "__builtin__", "copyreg": "copy_reg"}.get(module, module)
        module = module.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[_Global] = save_global

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            state = obj.__reduce__()[2]
            func = _Global("numpy.core.multiarray._reconstruct")
            return func, (_Global("numpy.ndarray"), (0,), b"b"), state
        if isinstance(obj, np.random.RandomState):
            return _Global("numpy.random.__RandomState_ctor"), (), obj.get_state()
        if isinstance(obj, _Call):
            return obj.func, obj.args, obj.state
        if isinstance(obj, legacy.LegacyObject):
            state = obj.legacy_state
            items = iter(obj.legacy_items) if obj.legacy_items else None
            mapping = iter(obj.legacy_mapping.items()) if obj.legacy_mapping else None
            if obj.legacy_args:
                return type(obj), obj.legacy_args, state, items, mapping
            if self.proto >= 2:
                return copyreg.__newobj__, (type(obj),), state, items, mapping
            base = _Global("__builtin__.object")
            func = _Global("copy_reg._reconstructor")
            return func, (type(obj), base, None), state, items, mapping
        return NotImplemented


def _py2_dumps(obj, protocol):
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol).dump(obj)
    return buffer.getvalue()


def _fixture_tree(key):
    return legacy.legacy_loads((HERE / MANIFEST[key]["file"]).read_bytes())


# ----------------------------------------------------------------------
# the fixtures


@pytest.mark.parametrize("key", sorted(MANIFEST))
def test_fixture_loads_with_recorded_names_and_values(loaded, key):
    info = MANIFEST[key]
    net = loaded[key]
    assert type(net) is CLASSES[info["class"]]
    assert [layer.name for layer in net.layers] == info["layers"]
    assert [type(loss).__name__ for loss in net.losses] == info["losses"]
    assert [p.name for p in net.params] == info["params"]
    for param in net.params:
        saved = EXPECTED[f"{_ref(key)}/{param.name}"]
        np.testing.assert_array_equal(param.get_value(), saved.astype(param.dtype))


@pytest.mark.parametrize("key", sorted(MANIFEST))
def test_fixture_reproduces_recorded_predictions(loaded, key):
    ref = _ref(key)
    net = loaded[key]
    x = EXPECTED[f"{ref}/x"]
    np.testing.assert_allclose(net.predict(x), EXPECTED[f"{ref}/predict"], rtol=0, atol=1e-5)
    for extra in ("predict_proba", "predict_logit", "encode"):
        if f"{ref}/{extra}" in EXPECTED:
            got = getattr(net, extra)(x)
            np.testing.assert_allclose(got, EXPECTED[f"{ref}/{extra}"], rtol=0, atol=1e-5)


def test_loaded_models_keep_their_configuration(loaded):
    tied = loaded["autoencoder_tied"].find_layer("tied-hid1")
    assert tied.partner is loaded["autoencoder_tied"].find_layer("hid1")
    assert tied.activate.name == "linear"
    assert loaded["autoencoder_tied"].find_layer("hid1").activate.name == "sigmoid"
    assert loaded["regressor"].find_layer("hid2").activate.name == "tanh"
    assert loaded["classifier"].find_layer("out").activate.name == "softmax"
    # the autoencoder's loss reads the network input; the classifier's takes labels
    ae = loaded["autoencoder_tied"]
    assert ae.losses[0].target is ae.inputs[0]
    assert ae.losses[0].output_name == "tied-hid1:out"
    assert loaded["classifier"].losses[0].target.ndim == 1
    assert loaded["lstm_regressor"].inputs[0].ndim == 3


def test_gzip_plain_and_file_objects_load_alike(tmp_path):
    x = EXPECTED["classifier/x"]
    plain = gzip.decompress((HERE / "classifier.pkl.gz").read_bytes())
    (tmp_path / "classifier.pkl").write_bytes(plain)
    (tmp_path / "regressor.pkl.gz").write_bytes(
        gzip.compress((HERE / "regressor.pkl").read_bytes())
    )
    net = theanets.Network.load(str(tmp_path / "classifier.pkl"))
    np.testing.assert_allclose(
        net.predict_proba(x), EXPECTED["classifier/predict_proba"], atol=1e-5
    )
    net = theanets.Network.load(io.BytesIO(plain))
    assert [p.name for p in net.params] == MANIFEST["classifier"]["params"]
    net = theanets.Network.load(tmp_path / "regressor.pkl.gz")
    np.testing.assert_allclose(
        net.predict(EXPECTED["regressor/x"]), EXPECTED["regressor/predict"], atol=1e-5
    )


def test_legacy_objects_are_inert_stand_ins():
    tree = _fixture_tree("regressor")
    assert isinstance(tree, legacy.LegacyObject)
    assert not isinstance(tree, theanets.Network)
    assert tree.legacy_path == "theanets.feedforward.Regressor"
    layers, losses = tree.legacy_state
    assert [layer.legacy_path for layer in layers] == [
        "theanets.layers.base.Input",
        "theanets.layers.feedforward.Feedforward",
        "theanets.layers.feedforward.Feedforward",
        "theanets.layers.feedforward.Feedforward",
    ]
    assert losses[0].legacy_path == "theanets.losses.MeanSquaredError"
    relu = layers[1].legacy_state["activate"]
    assert issubclass(relu, legacy.LegacyObject)
    assert relu.legacy_path == "theanets.activations._relu"


def test_our_own_pickled_networks_still_load():
    net = theanets.Regressor([3, (4, "tanh"), 2])
    saved = io.BytesIO()
    net.save(saved)
    for data in (pickle.dumps(net), pickle.dumps(net, protocol=2), saved.getvalue()):
        again = theanets.Network.load(io.BytesIO(data))
        assert type(again) is theanets.Regressor
        x = np.ones((2, 3), "float32")
        np.testing.assert_array_equal(again.predict(x), net.predict(x))


# ----------------------------------------------------------------------
# Python 2 era files


@pytest.mark.parametrize("protocol", [0, 1, 2])
@pytest.mark.parametrize("key", ["regressor", "autoencoder_tied"])
def test_python2_era_pickles(key, protocol):
    data = _py2_dumps(_fixture_tree(key), protocol)
    for marker in (b"theanets.layers.base\nInput", b"numpy.core.multiarray\n_reconstruct"):
        assert marker in data
    assert b"numpy.random\n__RandomState_ctor" in data
    assert b"_codecs" not in data and b"numpy._core" not in data
    if protocol < 2:
        assert b"copy_reg\n_reconstructor" in data and b"__builtin__\nobject" in data
    net = serialization.loads(data)
    assert [p.name for p in net.params] == MANIFEST[key]["params"]
    x = EXPECTED[f"{key}/x"]
    np.testing.assert_allclose(net.predict(x), EXPECTED[f"{key}/predict"], atol=1e-5)


class _Py3Pickler(_Py2Pickler):
    """Protocol 2 as Python 3 writes it: bytes through ``_codecs.encode``."""

    dispatch = dict(_Py2Pickler.dispatch)
    dispatch[str] = pickle._Pickler.dispatch[str]
    dispatch[bytes] = pickle._Pickler.dispatch[bytes]


def test_python3_protocol_2_pickles():
    buffer = io.BytesIO()
    _Py3Pickler(buffer, 2).dump(_fixture_tree("regressor"))
    data = buffer.getvalue()
    assert b"_codecs\nencode" in data
    net = serialization.loads(data)
    x = EXPECTED["regressor/x"]
    np.testing.assert_allclose(net.predict(x), EXPECTED["regressor/predict"], atol=1e-5)


# ----------------------------------------------------------------------
# bad files


def _marker_pickle(marker, theano_first):
    """A pickle that would create ``marker`` through os.system."""
    command = _Call(_Global("os.system"), (f"touch {marker}",))
    items = [command]
    if theano_first:
        items.insert(0, _Global("theano.tensor.var.TensorVariable"))
        items.insert(0, _Global("theanets.layers.base.Input"))
    return _py2_dumps(items, 2)


@pytest.mark.parametrize("theano_first", [False, True])
def test_malicious_pickle_runs_nothing(tmp_path, theano_first):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(_marker_pickle(marker, theano_first))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load os.system"):
        theanets.Network.load(str(path))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="refusing to load os.system"):
        legacy.legacy_loads(path.read_bytes())
    assert not marker.exists()


def test_only_latin1_text_decoding_is_allowed():
    evil = _Call(_Global("_codecs.encode"), ("abc", "rot13"))
    data = _py2_dumps([_Global("theano.tensor.var.TensorVariable"), evil], 2)
    with pytest.raises(pickle.UnpicklingError, match="codec 'rot13'"):
        theanets.Network.load(io.BytesIO(data))


def test_unknown_legacy_layer_class_is_a_clear_error():
    tree = _fixture_tree("regressor")
    layers, _ = tree.legacy_state
    path = "theanets.layers.tree.NaryLSTM"  # in the 0.7 sources, never usable
    layers[1].__class__ = type("NaryLSTM", (legacy.LegacyObject,), {"legacy_path": path})
    data = _py2_dumps(tree, 2)
    with pytest.raises(ValueError, match=r"layer 'hid1'.*unknown layer class .*NaryLSTM"):
        theanets.Network.load(io.BytesIO(data))


def test_legacy_file_that_is_not_a_model_is_a_clear_error():
    tree = _fixture_tree("regressor")
    data = _py2_dumps(tree.legacy_state[0], 2)  # just the list of layers
    with pytest.raises(ValueError, match="not a theanets model file"):
        theanets.Network.load(io.BytesIO(data))


def test_old_state_given_to_our_network_class_is_read_as_legacy():
    # no Theano object inside: the old (layers, losses) state reaches
    # Regressor.__setstate__ in the first pass, which hands over to the legacy
    # reader
    empty = legacy.LegacyObject.__new__(
        type("Regressor", (legacy.LegacyObject,), {"legacy_path": "theanets.feedforward.Regressor"})
    )
    empty.__setstate__(([], []))
    with pytest.raises(ValueError, match="the saved model has no layers"):
        theanets.Network.load(io.BytesIO(_py2_dumps(empty, 2)))


# ----------------------------------------------------------------------
# assembled models: layers and activations with no fixture file


def _stand_in(path, state=None, *args):
    cls = type(path.rpartition(".")[2], (legacy.LegacyObject,), {"legacy_path": path})
    obj = cls(*args)
    obj.__setstate__(state)
    return obj


def _shared(name, value):
    container = _stand_in("theano.gof.link.Container", {"storage": [np.asarray(value, "f")]})
    return _stand_in(
        "theano.tensor.sharedvar.TensorSharedVariable", dict(name=name, container=container)
    )


def _variable(name, ndim):
    vtype = _stand_in("theano.tensor.type.TensorType", dict(broadcastable=(False,) * ndim))
    return _stand_in("theano.tensor.var.TensorVariable", dict(name=name, type=vtype))


def _function(name):
    return type(name, (legacy.LegacyObject,), {"legacy_path": f"theanets.activations.{name}"})


def _elemwise(op):
    scalar = _stand_in(f"theano.scalar.basic.{op}", {})
    return _stand_in("theano.tensor.elemwise.Elemwise", dict(scalar_op=scalar, name=op.lower()))


def _layer(cls, name, size, inputs, activate, params, **extra):
    state = dict(
        size=size,
        inputs=inputs,
        name=name,
        activation="?",
        activate=activate,
        kwargs=dict(extra.pop("kwargs", {}), rng=13),
        _params=params,
        **extra,
    )
    return _stand_in(f"theanets.layers.{cls}", state)


def _model(path, nin, ndim, layers):
    inp = _variable("in", ndim)
    first = _layer(
        "base.Input",
        "in",
        nin,
        {"out": 0},
        _function("_identity"),
        [],
        input=inp,
        kwargs=dict(ndim=ndim, sparse=False),
    )
    loss = _stand_in(
        "theanets.losses.MeanSquaredError",
        dict(weight=1.0, _target=_variable("target", ndim), _weights=None, output_name="out:out"),
    )
    return _stand_in(path, ([first] + layers, [loss]))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_gru_weights_per_gate_are_joined():
    rs = np.random.RandomState(3)
    n, i = 3, 2
    p = {k: rs.randn(i, n) for k in ("xh", "xr", "xz")}
    p.update({k: rs.randn(n, n) for k in ("hh", "hr", "hz")})
    p.update({k: rs.randn(n) for k in ("bh", "br", "bz")})
    w, b = rs.randn(n, 2), rs.randn(2)
    gru = _layer(
        "recurrent.GRU",
        "hid1",
        n,
        {"in:out": i},
        _elemwise("Tanh"),
        [_shared(f"hid1.{k}", v) for k, v in p.items()],
    )
    out = _layer(
        "feedforward.Feedforward",
        "out",
        2,
        {"hid1:out": n},
        _function("_identity"),
        [_shared("out.w", w), _shared("out.b", b)],
    )
    data = _py2_dumps(_model("theanets.recurrent.Regressor", i, 3, [gru, out]), 2)
    net = theanets.Network.load(io.BytesIO(data))
    assert type(net) is theanets.recurrent.Regressor
    assert [q.name for q in net.params] == [
        "hid1.hh",
        "hid1.hr",
        "hid1.hz",
        "hid1.w",
        "hid1.b",
        "out.w",
        "out.b",
    ]
    p = {k: v.astype("f").astype("f8") for k, v in p.items()}
    x = rs.randn(2, 4, i).astype("f")
    h = np.zeros((2, n))
    want = []
    for t in range(x.shape[1]):  # the 0.7 formulas, one gate at a time
        xt = x[:, t]
        r = _sigmoid(xt @ p["xr"] + p["br"] + h @ p["hr"])
        z = _sigmoid(xt @ p["xz"] + p["bz"] + h @ p["hz"])
        h = (1 - z) * h + z * np.tanh(xt @ p["xh"] + p["bh"] + (r * h) @ p["hh"])
        want.append(h @ w.astype("f") + b.astype("f"))
    np.testing.assert_allclose(net.predict(x), np.stack(want, axis=1), atol=1e-5)


def test_learnable_activations_convert_their_parameters():
    rs = np.random.RandomState(4)
    w1, b1, w2, b2 = rs.randn(3, 4), rs.randn(4), rs.randn(4, 2), rs.randn(2)
    leak, gain = np.abs(rs.randn(4)) + 0.05, np.abs(rs.randn(2)) + 0.05
    leak2 = np.abs(rs.randn(2)) + 0.05

    def act(cls, layer, **params):
        shared = [_shared(f"{layer}.{k}", v) for k, v in params.items()]
        return _stand_in(f"theanets.activations.{cls}", dict(name=cls.lower(), params=shared))

    hid = _layer(
        "feedforward.Feedforward",
        "hid1",
        4,
        {"in:out": 3},
        act("Prelu", "hid1", leak=leak),
        [_shared("hid1.w", w1), _shared("hid1.b", b1)],
    )
    out = _layer(
        "feedforward.Feedforward",
        "out",
        2,
        {"hid1:out": 4},
        act("LGrelu", "out", gain=gain, leak=leak2),
        [_shared("out.w", w2), _shared("out.b", b2)],
    )
    tree = _model("theanets.feedforward.Regressor", 3, 2, [hid, out])
    net = theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))
    assert [q.name for q in net.params] == [
        "hid1.w",
        "hid1.b",
        "hid1.leak",
        "out.w",
        "out.b",
        "out.gain",
        "out.leak",
    ]
    f = {
        k: v.astype("f").astype("f8")
        for k, v in dict(w1=w1, b1=b1, w2=w2, b2=b2, leak=leak, gain=gain, leak2=leak2).items()
    }
    x = rs.randn(5, 3).astype("f")
    z = x @ f["w1"] + f["b1"]
    h = np.maximum(z, 0) + f["leak"] * np.minimum(z, 0)
    z = h @ f["w2"] + f["b2"]
    want = f["gain"] * np.maximum(z, 0) + f["leak2"] * np.minimum(z, 0)
    np.testing.assert_allclose(net.predict(x), want, atol=1e-5)

    leak[0] = -0.1  # cannot be written as an exponential
    hid.legacy_state["activate"] = act("Prelu", "hid1", leak=leak)
    with pytest.raises(ValueError, match="hid1.leak has values <= 0"):
        theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))


def test_backward_layers_warn_about_time_order():
    rnn = _layer(
        "recurrent.RNN",
        "hid1",
        2,
        {"in:out": 2},
        _elemwise("Tanh"),
        [_shared("hid1.xh", np.eye(2)), _shared("hid1.hh", np.eye(2)), _shared("hid1.b", [0, 0])],
        kwargs=dict(direction="backward"),
    )
    tree = _model("theanets.recurrent.Regressor", 2, 3, [rnn])
    tree.legacy_state[1][0].legacy_state["output_name"] = "hid1:out"
    with pytest.warns(UserWarning, match="reversed time order"):
        net = theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))
    assert net.find_layer("hid1").backwards


def test_unconvertible_activation_is_a_clear_error():
    hid = _layer(
        "feedforward.Feedforward",
        "hid1",
        2,
        {"in:out": 2},
        _elemwise("Cosh"),
        [_shared("hid1.w", np.eye(2)), _shared("hid1.b", [0, 0])],
    )
    tree = _model("theanets.feedforward.Regressor", 2, 2, [hid])
    with pytest.raises(ValueError, match="layer 'hid1'.*cannot convert its activation"):
        theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))


def test_development_version_layout():
    # theanets 0.8 (never released) kept inputs as a tuple of names and the
    # activation name in the layer's kwargs
    tree = _fixture_tree("regressor")
    for layer in tree.legacy_state[0][1:]:
        state = layer.legacy_state
        state["inputs"] = tuple(state["inputs"])
        state["kwargs"]["activation"] = state.pop("activation")
        state["_resolved_inputs"] = {}
    net = theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))
    x = EXPECTED["regressor/x"]
    np.testing.assert_allclose(net.predict(x), EXPECTED["regressor/predict"], atol=1e-5)


def test_values_saved_from_a_gpu_and_old_layer_classes():
    value = np.arange(6.0).reshape(2, 3)
    container = _stand_in(
        "theano.gof.link.Container",
        {"storage": [_Call(_Global("theano.sandbox.cuda.type.CudaNdarray_unpickler"), (value,))]},
    )
    var = _stand_in(
        "theano.sandbox.cuda.var.CudaNdarraySharedVariable",
        dict(name="hid1.xh", container=container),
    )
    rnn = _layer(
        "recurrent.LRRNN",
        "hid1",
        3,
        {"in:out": 2},
        _function("_relu"),
        [
            var,
            _shared("hid1.hh", np.eye(3)),
            _shared("hid1.b", [0, 0, 0]),
            _shared("hid1.r", [1, 2, 3]),
        ],
    )
    tree = _model("theanets.recurrent.Regressor", 2, 3, [rnn])
    tree.legacy_state[1][0].legacy_state["output_name"] = "hid1:out"
    net = theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))
    layer = net.find_layer("hid1")
    assert type(layer).__name__ == "RRNN" and layer.rate == "vector"
    np.testing.assert_array_equal(net.find("hid1", "xh").get_value(), value)
    np.testing.assert_array_equal(net.find("hid1", "r").get_value(), [1, 2, 3])


def test_conv1_filters():
    rs = np.random.RandomState(5)
    w, b = rs.randn(3, 2, 1, 2), rs.randn(3)
    conv = _layer(
        "convolution.Conv1",
        "hid1",
        3,
        {"in:out": 2},
        _function("_identity"),
        [_shared("hid1.w", w), _shared("hid1.b", b)],
        filter_shape=(1, 2),
        stride=(1, 1),
        border_mode="valid",
    )
    tree = _model("theanets.recurrent.Regressor", 2, 3, [conv])
    tree.legacy_state[1][0].legacy_state["output_name"] = "hid1:out"
    net = theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))
    assert net.find("hid1", "w").get_value().size == 12
    x = rs.randn(2, 5, 2).astype("f")
    w, b = w.astype("f").astype("f8")[:, :, 0], b.astype("f").astype("f8")
    # Theano's conv2d is a true convolution: the filter runs reversed in time
    want = sum(np.einsum("btc,fc->btf", x[:, j : j + 4], w[:, :, 1 - j]) for j in range(2)) + b
    np.testing.assert_allclose(net.predict(x), want, atol=1e-5)
