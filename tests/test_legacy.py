"""Reading model files saved by Theano-era theanets (theanets.legacy).

The fixtures in ``fixtures/legacy`` were saved by theanets 0.7.3 under Theano
(see ``scripts/upstream/make_legacy_models.py``), those in
``fixtures/legacy-0.8`` by the 0.8 development line (see the README.md
there); both record what the old code predicted. Other old files are made
here: the fixtures' contents are written out again the way Python 2 pickled
them, or changed, and small models are assembled from stand-ins and checked
against NumPy versions of the old formulas.
"""

import copyreg
import functools
import gzip
import importlib
import io
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

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


def test_tuple_inputs_and_activation_in_kwargs():
    # a 0.7-style layer (size, inputs as attributes) whose inputs are a tuple
    # of names and whose activation name is among its kwargs
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


# ----------------------------------------------------------------------
# files saved by the 0.8 development line (upstream master)
#
# ``fixtures/legacy-0.8`` holds the files described in its README.md: each
# ``<model>.json`` lists the files saved from one model and its layers; the
# ``<model>.npz`` beside it records what the old code computed.

HERE_08 = Path(__file__).parent / "fixtures" / "legacy-0.8"
MANIFESTS_08 = {path.stem: json.loads(path.read_text()) for path in sorted(HERE_08.glob("*.json"))}
FILES_08 = [
    (model, name)
    for model, info in MANIFESTS_08.items()
    for name in sorted(info["files"])
    if not name.endswith(".npz") and (HERE_08 / f"{model}.npz").exists()
]

#: Outputs that the 0.8 code returned in (time, batch, ...) order, unlike
#: every other output (and unlike this package).
TIME_MAJOR_08 = {"rrnn_rates": {"hid1:rate"}, "mrnn_clockwork": {"hid1:factors"}}
#: Models that compute something else on purpose; each has its own test.
REVERSED_08 = {"backward_rnn", "bidirectional"}
#: Clockwork units come in another order here; see test_08_clockwork_units_reordered.
REORDERED_08 = {"mrnn_clockwork": {"hid2:out", "hid2:pre", "hid2.hh", "hid2.xh", "hid2.b", "out.w"}}


def _arrays_08(model):
    with np.load(HERE_08 / f"{model}.npz") as archive:
        return dict(archive)


def _input_08(model, arrays):
    x = arrays["X"]
    return scipy.sparse.csr_matrix(x) if model == "sparse_input" else x


@functools.cache
def _load_08(name):
    """Load a 0.8 fixture once for the module (tests must not change it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # backward layers; tested below
        return theanets.Network.load(HERE_08 / name)


def _params_08(model):
    return [p for layer in MANIFESTS_08[model]["layers"] for p in layer["params"]]


def _tree_08(name):
    data = (HERE_08 / name).read_bytes()
    return legacy.legacy_loads(gzip.decompress(data) if name.endswith(".gz") else data)


def test_08_fixtures_are_all_there():
    # the four models recorded with the shared files, in every saved form
    assert {"regressor.pkl", "regressor.pkl.gz", "regressor.p2.pkl"} <= {f for _, f in FILES_08}
    assert {"classifier", "autoencoder_tied", "gru_regressor"} <= {m for m, _ in FILES_08}
    assert len(FILES_08) >= 20


@pytest.mark.parametrize("model, name", FILES_08)
def test_08_file_loads_with_its_layers_params_and_losses(model, name):
    info = MANIFESTS_08[model]
    net = _load_08(name)
    module, _, cls = info["model_class"].rpartition(".")
    assert type(net) is getattr(importlib.import_module(module), cls)
    assert [layer.name for layer in net.layers] == [layer["name"] for layer in info["layers"]]
    names = [p.name for p in net.params]
    if model in REORDERED_08:  # this package draws a clockwork's hh before its xh
        assert sorted(names) == sorted(_params_08(model))
    else:
        assert names == _params_08(model)
    assert [type(loss).__name__ for loss in net.losses] == info["loss"]
    assert net.rng == 21  # every layer was given the network's seed
    for saved in info["layers"]:
        layer = net.find_layer(saved["name"])
        if saved["partner"] is not None:
            assert layer.partner.name == saved["partner"]
        form = type(layer).__name__.lower()
        if form not in ("input", "concatenate", "product", "flatten", "scrn"):
            assert layer.activation == saved["activation"]


@pytest.mark.parametrize("model, name", FILES_08)
def test_08_file_has_the_recorded_values(model, name):
    net = _load_08(name)
    arrays = _arrays_08(model)
    skip = REORDERED_08.get(model, set())
    for param in net.params:
        if param.name not in skip:
            np.testing.assert_array_equal(param.get_value(), arrays[param.name], err_msg=param.name)


@pytest.mark.parametrize("model, name", [f for f in FILES_08 if f[0] not in REVERSED_08])
def test_08_file_reproduces_recorded_outputs(model, name):
    net = _load_08(name)
    arrays = _arrays_08(model)
    x = _input_08(model, arrays)
    np.testing.assert_allclose(net.predict(x), arrays["predict"], rtol=0, atol=1e-5)
    if "proba" in arrays:
        np.testing.assert_allclose(net.predict_proba(x), arrays["proba"], rtol=0, atol=1e-5)
    outputs = net.feed_forward(x)
    recorded = [k for k in arrays if ":" in k and k not in _params_08(model)]
    assert len(recorded) >= 3
    for key in recorded:
        if key in REORDERED_08.get(model, ()):
            continue
        want = arrays[key]
        if key in TIME_MAJOR_08.get(model, ()):
            want = want.swapaxes(0, 1)
        got = outputs[key]
        got = got.toarray() if scipy.sparse.issparse(got) else got
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=key)


def test_08_learnable_activation_values_are_used_as_saved():
    # 0.8 already applied exp() to leak and gain, as this package does
    net = _load_08("ff_learnable_acts.pkl")
    arrays = _arrays_08("ff_learnable_acts")
    z = arrays["X"].astype("f8") @ arrays["hid1.w"] + arrays["hid1.b"]
    relu, neg = np.maximum(z, 0), np.minimum(z, 0)
    want = np.exp(arrays["hid1.gain"]) * relu + np.exp(arrays["hid1.leak"]) * neg
    np.testing.assert_allclose(net.feed_forward(arrays["X"])["hid1:out"], want, atol=1e-5)
    assert [p.name for p in net.find_layer("hid3").params][2:] == ["hid3.slope", "hid3.intercept"]


def test_08_backward_layer_is_aligned_with_its_input():
    arrays = _arrays_08("backward_rnn")
    with pytest.warns(UserWarning, match="reversed time order"):
        net = theanets.Network.load(HERE_08 / "backward_rnn.pkl")
    assert net.find_layer("hid1").backwards
    outputs = net.feed_forward(arrays["X"])
    # 0.8 gave the state after reading steps T-1 .. T-1-t at position t
    for key in ("hid1:pre", "hid1:out", "out:out"):
        np.testing.assert_allclose(outputs[key], arrays[key][:, ::-1], atol=1e-5, err_msg=key)
    np.testing.assert_allclose(net.predict(arrays["X"]), arrays["predict"][:, ::-1], atol=1e-5)


def test_08_bidirectional_halves():
    arrays = _arrays_08("bidirectional")
    with pytest.warns(UserWarning, match="backward half"):
        net = theanets.Network.load(HERE_08 / "bidirectional.pkl")
    layer = net.find_layer("hid1")
    assert layer.worker == "lstm" and layer.size == 6
    outputs = net.feed_forward(arrays["X"])
    for key in ("hid1:fw_out", "hid1:fw_cell"):
        np.testing.assert_allclose(outputs[key], arrays[key], atol=1e-5, err_msg=key)
    for key in ("hid1:bw_out", "hid1:bw_cell"):
        np.testing.assert_allclose(outputs[key], arrays[key][:, ::-1], atol=1e-5, err_msg=key)


def test_08_clockwork_units_reordered():
    # 0.8 sorted the periods (4, 1, 2) fastest first, two units per module;
    # this package keeps the slowest module first
    arrays = _arrays_08("mrnn_clockwork")
    net = _load_08("mrnn_clockwork.pkl")
    layer = net.find_layer("hid2")
    assert sorted(layer.periods) == [1, 2, 4]
    order = [4, 5, 2, 3, 0, 1]  # our unit v is the old unit order[v]
    outputs = net.feed_forward(arrays["X"])
    for key in ("hid2:pre", "hid2:out"):
        np.testing.assert_allclose(outputs[key], arrays[key][..., order], atol=1e-5, err_msg=key)
    np.testing.assert_array_equal(
        net.find("hid2", "hh").get_value(), arrays["hid2.hh"][order][:, order]
    )
    np.testing.assert_array_equal(net.find("hid2", "xh").get_value(), arrays["hid2.xh"][:, order])
    np.testing.assert_array_equal(net.find("hid2", "b").get_value(), arrays["hid2.b"][order])
    np.testing.assert_array_equal(net.find("out", "w").get_value(), arrays["out.w"][order])


def test_08_clockwork_read_by_a_loss_is_refused():
    tree = _tree_08("mrnn_clockwork.pkl")
    layers, losses = tree.legacy_state
    del layers[-1]
    losses[0].legacy_state["output_name"] = "hid2:out"
    with pytest.raises(ValueError, match="clockwork layer 'hid2'"):
        theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))


def test_08_scrn_with_another_activation_is_refused():
    tree = _tree_08("mut1_scrn.pkl")
    tree.legacy_state[0][2].legacy_state["kwargs"]["activation"] = "tanh"
    with pytest.raises(ValueError, match=r"layer 'hid2' .*SCRN.*'tanh'"):
        theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))


def test_08_layer_class_without_counterpart_is_named():
    tree = _tree_08("bcrnn.pkl")
    layer = tree.legacy_state[0][1]
    layer.__class__ = type(
        "BCRNN2", (legacy.LegacyObject,), {"legacy_path": "theanets.layers.recurrent.BCRNN2"}
    )
    with pytest.raises(ValueError, match=r"layer 'hid1'.*BCRNN2") as info:
        theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))
    assert "unknown layer class theanets.layers.recurrent.BCRNN2" in str(info.value)


def test_08_unknown_activation_is_named():
    tree = _tree_08("regressor.pkl")
    tree.legacy_state[0][2].legacy_state["kwargs"]["activation"] = "swish"
    with pytest.raises(ValueError, match=r"layer 'hid2'.*activation 'swish'"):
        theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))


def test_08_activation_object_instead_of_a_name():
    # a layer given an activation object: the name comes from the object
    tree = _tree_08("regressor.pkl")
    hid1 = tree.legacy_state[0][1].legacy_state
    hid1["kwargs"]["activation"] = hid1["activate"]
    net = theanets.Network.load(io.BytesIO(_py2_dumps(tree, 2)))
    assert net.find_layer("hid1").activation == "prelu"
    arrays = _arrays_08("regressor")
    np.testing.assert_allclose(net.predict(arrays["X"]), arrays["predict"], atol=1e-5)


def test_08_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    tree = _tree_08("regressor.pkl")
    command = _Call(_Global("os.system"), (f"touch {marker}",))
    tree.legacy_state[0][1].legacy_state["kwargs"]["rng"] = command
    path = tmp_path / "evil.pkl"
    path.write_bytes(_py2_dumps(tree, 2))
    assert b"theano.tensor.sharedvar" in path.read_bytes()
    with pytest.raises(serialization.UnsafePickleError, match="refusing to load os.system"):
        theanets.Network.load(path)
    assert not marker.exists()


def test_08_model_converts_to_npz(tmp_path):
    net = _load_08("gru_regressor.pkl")
    net.save(tmp_path / "gru.npz")
    again = theanets.Network.load(tmp_path / "gru.npz")
    arrays = _arrays_08("gru_regressor")
    np.testing.assert_allclose(again.predict(arrays["X"]), arrays["predict"], atol=1e-5)
    assert again.rng == 21


@pytest.mark.parametrize("protocol", [0, 2])
def test_08_python2_era_pickles(protocol):
    # the 0.8 line also ran on Python 2, whose pickles hold str and copy_reg
    data = _py2_dumps(_tree_08("classifier.pkl"), protocol)
    net = serialization.loads(data)
    arrays = _arrays_08("classifier")
    np.testing.assert_allclose(net.predict_proba(arrays["X"]), arrays["proba"], atol=1e-5)


def test_08_losses_keep_their_targets_and_weights():
    ae = _load_08("ae_untied.pkl")
    assert ae.losses[0].target is ae.inputs[0]
    mae = _load_08("ff_weighted_mae.pkl")
    assert mae.losses[0].weighted and not _load_08("regressor.pkl").losses[0].weighted
    assert _load_08("lstm_classifier.pkl").losses[0].target.ndim == 2
