"""The layer-level API as upstream master exposes it.

Each test checks one fact of master's public API (kwargs, shapes, default
names, find, to_spec, registry aliases, activation objects, the spec
grammar), stated in the test's name.
"""

import re

import numpy as np
import pytensor.tensor as pt
import pytest
import scipy.special

import theanets
from theanets import activations, layers
from theanets.util import ConfigurationError

NI, NH = 7, 8


def _bound(form, network_spec=(NI,), **kwargs):
    layer = layers.Layer.build(form, **kwargs)
    layer.bind(theanets.Network(list(network_spec)))
    return layer


# ----------------------------------------------------------------------
# kwargs


def test_kwargs_hold_constructor_arguments_and_network_activations():
    net = theanets.Regressor([NI, NH, (5, "tanh"), 3])
    assert net.layers[0].kwargs["activation"] == "linear"
    assert net.layers[1].kwargs == {"size": NH, "inputs": "in:out", "activation": "relu"}
    assert net.layers[2].kwargs["activation"] == "tanh"
    assert net.layers[3].kwargs["activation"] == "linear"
    assert theanets.Classifier([NI, NH, 3]).layers[-1].kwargs["activation"] == "softmax"
    assert "name" not in net.layers[1].kwargs


def test_kwargs_of_a_layer_built_alone_have_only_what_was_given():
    layer = layers.Feedforward(size=3, inputs="in", std=0.5)
    assert layer.kwargs == {"size": 3, "inputs": "in", "std": 0.5}


def test_classifier_layer_is_always_softmax():
    net = theanets.Regressor([NI, dict(form="classifier", size=4, activation="tanh"), 2])
    layer = net.layers[1]
    assert layer.kwargs["activation"] == "softmax"
    x = np.random.default_rng(0).normal(size=(5, NI))
    pre = x @ layer.find("w").get_value() + layer.find("b").get_value()
    out = net.feed_forward(x)["hid1:out"]
    np.testing.assert_allclose(out, scipy.special.softmax(pre, axis=1), rtol=1e-6)
    assert isinstance(layers.Layer.build("softmax", size=3), layers.Classifier)


# ----------------------------------------------------------------------
# shapes


@pytest.mark.parametrize(
    "layer_spec, shape",
    [
        (dict(size=7), (7,)),
        (dict(size=7, ndim=3), (None, 7)),
        (dict(shape=(6, 7)), (6, 7)),
        (dict(shape=(28, 28, 1)), (28, 28, 1)),
    ],
)
def test_input_shapes_exclude_the_batch_axis(layer_spec, shape):
    assert layers.Input(**layer_spec).output_shape == shape
    assert theanets.Network([layer_spec]).layers[0].output_shape == shape


def test_layer_shape_is_input_shape_with_last_axis_replaced():
    net = theanets.Network([NI, 6])
    assert net.layers[1].output_shape == (6,)
    assert net.layers[1].input_shape == (NI,)
    rnn = theanets.recurrent.Regressor([NI, (6, "rnn"), 2])
    assert rnn.layers[1].input_shape == (None, NI)
    assert rnn.layers[1].output_shape == (None, 6)
    assert rnn.layers[1].input_shapes == {"in:out": (None, NI)}


def test_a_tuple_of_ints_is_a_shape_at_any_position():
    net = theanets.Regressor([(2, 3), (2, 6), "flatten", 4])
    assert net.layers[1].output_shape == (2, 6)
    assert net.layers[1].kwargs["shape"] == (2, 6)
    x = np.random.default_rng(1).normal(size=(5, 2, 3))
    hid = net.feed_forward(x)["hid1:pre"]
    w, b = net.find("hid1", "w").get_value(), net.find("hid1", "b").get_value()
    np.testing.assert_allclose(hid, x @ w + b, rtol=1e-6)
    assert net.predict(x).shape == (5, 4)


# ----------------------------------------------------------------------
# default names and binding alone


def test_layers_built_without_a_name_get_unique_counter_names():
    a = layers.Feedforward(size=3, inputs="in")
    b = layers.Feedforward(size=3, inputs="in")
    c = layers.Tied(partner="hid1")
    assert re.fullmatch(r"feedforward\d+", a.name)
    assert re.fullmatch(r"tied\d+", c.name)
    assert a.name != b.name


def test_a_layer_can_be_bound_to_a_network_on_its_own():
    layer = layers.Layer.build("ff", size=NH, inputs="in")
    layer.bind(theanets.Network([NI]))
    assert sorted(p.name for p in layer.params) == [f"{layer.name}.b", f"{layer.name}.w"]
    outputs, updates = layer.connect({"in:out": pt.matrix("x")})
    assert sorted(outputs) == [f"{layer.name}:out", f"{layer.name}:pre"]
    assert updates == []


def test_names_inside_networks_do_not_depend_on_the_counter():
    layers.Feedforward(size=3, inputs="in")  # advances the counter
    net = theanets.Regressor([NI, NH, NH, 2])
    assert [layer.name for layer in net.layers] == ["in", "hid1", "hid2", "out"]


# ----------------------------------------------------------------------
# find


def test_layer_find_by_name_and_index_and_misses_raise_key_error():
    net = theanets.Regressor([NI, (NH, "prelu"), 2])
    layer = net.layers[1]
    assert layer.find("w") is layer.find(0) is layer.find("hid1.w")
    assert layer.find("b") is layer.find(1)
    for key in ("q", 2, -3, "leak"):  # 'leak' belongs to the activation, not the layer
        with pytest.raises(KeyError):
            layer.find(key)
    assert [p.name for p in layer.params] == ["hid1.w", "hid1.b", "hid1.leak"]


def test_network_find_raises_key_error_for_missing_layers_and_params():
    net = theanets.Regressor([NI, NH, 2])
    assert net.find("hid1", "w") is net.find(1, 0)
    for which, param in (("hid9", "w"), (7, "w"), ("hid1", "q"), ("hid1", 5)):
        with pytest.raises(KeyError):
            net.find(which, param)


# ----------------------------------------------------------------------
# to_spec


@pytest.mark.parametrize("form", ["feedforward", "ff", "classifier", "flatten", "flat"])
def test_to_spec_is_kwargs_plus_form_name_activation(form):
    layer = _bound(form, size=NI, name="l", inputs="in")
    name = type(layer).__name__.lower()
    assert layer.to_spec() == dict(
        form=name, name="l", size=NI, inputs="in", activation=layer.kwargs.get("activation", "relu")
    )


def test_to_spec_keeps_inputs_and_shape_as_passed():
    layer = _bound("feedforward", (NH, NH, NH), inputs=("in", "hid1"), size=NH, name="l")
    assert layer.to_spec() == dict(
        form="feedforward", name="l", size=NH, activation="relu", inputs=("in", "hid1")
    )
    assert sorted(p.name for p in layer.params) == ["l.b", "l.w_hid1:out", "l.w_in:out"]
    reshape = _bound("reshape", (8,), inputs="in", shape=(4, 2), name="l")
    assert reshape.to_spec() == dict(
        form="reshape", name="l", shape=(4, 2), inputs="in", activation="relu"
    )


@pytest.mark.parametrize(
    "form, kwargs, extras",
    [
        ("rnn", {}, dict(h_0=None)),
        ("lstm", {}, dict(h_0=None, c_0=None)),
        ("gru", {}, dict(h_0=None)),
        ("mrnn", dict(factors=3), dict(h_0=None, factors=3)),
        ("mrnn", {}, dict(h_0=None, factors=int(np.ceil(np.sqrt(NH))))),
        ("clockwork", dict(periods=(4, 1, 2, 8)), dict(h_0=None, periods=(1, 2, 4, 8))),
        ("bidirectional", {}, dict(worker="rnn")),
    ],
)
def test_recurrent_to_spec_extras(form, kwargs, extras):
    layer = _bound(form, [dict(size=NI, ndim=3)], size=NH, name="l", inputs="in", **kwargs)
    spec = layer.to_spec()
    assert {k: spec[k] for k in extras} == extras
    assert {k: spec[k] for k in ("form", "name", "size", "inputs", "activation")} == dict(
        form=form, name="l", size=NH, inputs="in", activation="relu"
    )


def test_recurrent_h_0_names_an_output_and_is_resolved_in_the_spec():
    net = theanets.recurrent.Regressor(
        [
            NI,
            dict(size=NH, name="h0", form="input", ndim=2),
            dict(form="rnn", size=NH, inputs="in", h_0="h0"),
            2,
        ]
    )
    assert net.layers[2].to_spec()["h_0"] == "h0:out"


def test_tied_to_spec_names_its_partner():
    net = theanets.Autoencoder([NI, NH, "tied"])
    spec = net.layers[-1].to_spec()
    assert spec["partner"] == "hid1" and spec["form"] == "tied" and "size" not in spec
    assert net.layers[-1].output_shape == (NI,)


# ----------------------------------------------------------------------
# registry and activations


@pytest.mark.parametrize(
    "alias, cls",
    [
        ("flat", layers.Flatten),
        ("prod", layers.Product),
        ("concat", layers.Concatenate),
        ("ff", layers.Feedforward),
        ("softmax", layers.Classifier),
    ],
)
def test_registry_aliases_and_get_class(alias, cls):
    assert layers.Layer.get_class(alias) is cls
    assert layers.Layer.get_class(alias.upper()) is cls
    with pytest.raises(ConfigurationError, match="Did you mean"):
        layers.Layer.get_class(alias + "x")


def test_module_level_activation_build_for_a_layer():
    layer = _bound("feedforward", size=NH, name="l", inputs="in")
    act = activations.build("prelu", layer)
    assert [p.name for p in act.params] == ["l.leak"]
    assert act.params[0].get_value().shape == (NH,)


def test_composed_activation_exposes_f_g_name_and_params():
    layer = _bound("feedforward", size=NH, name="l", inputs="in")
    act = activations.build("prelu+lgrelu", layer)
    assert act.name == "lgrelu(prelu)"
    assert act.f.name == "prelu" and act.g.name == "lgrelu"
    assert act.params == act.g.params + act.f.params
    assert activations.build("relu+norm:z").name == "norm:z(relu)"
    x = np.random.default_rng(2).normal(size=(4, NH))
    leak = act.f.params[0].get_value()
    gain, leak2 = (p.get_value() for p in act.g.params)
    inner = np.where(x > 0, x, np.exp(leak) * x)
    want = np.where(inner > 0, np.exp(gain) * inner, np.exp(leak2) * inner)
    np.testing.assert_allclose(act(pt.as_tensor(x)).eval(), want, rtol=1e-6)


@pytest.mark.parametrize("form", ["flatten", "concatenate", "product", "reshape"])
def test_structural_layers_produce_only_out_without_activation(form):
    kwargs = dict(shape=(4, 2)) if form == "reshape" else {}
    net = theanets.Regressor([8, dict(form=form, **kwargs), "flatten", 2])
    layer = net.layers[1]
    assert layer.kwargs["activation"] == "relu"  # filled in by the network, as in master
    assert list(layer.output_shapes()) == ["hid1:out"]
    x = np.random.default_rng(3).normal(size=(5, 8))
    out = net.feed_forward(x)
    assert "hid1:pre" not in out
    np.testing.assert_allclose(out["hid1:out"].reshape(5, -1), x, rtol=1e-6)  # negatives kept


# ----------------------------------------------------------------------
# spec grammar


@pytest.mark.parametrize(
    "item, suggestion", [("lstmm", "lstm"), ("tahn", "tanh"), ("flaten", "flatten")]
)
def test_misspelt_word_in_tuple_spec_suggests_form_or_activation(item, suggestion):
    with pytest.raises(ConfigurationError, match=f"{item!r}.*Did you mean {suggestion!r}"):
        theanets.recurrent.Regressor([NI, (4, item), 2])


def test_mixed_tuple_spec_form_activation_and_size():
    net = theanets.recurrent.Regressor([NI, ("gru", 5, "tanh"), 2])
    layer = net.layers[1]
    assert isinstance(layer, layers.GRU)
    assert layer.kwargs["activation"] == "tanh" and layer.size == 5
