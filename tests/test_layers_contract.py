"""One contract test per registered feed-forward, structural and convolution layer.

For each form: the registry name, parameter names and shapes (as the layer
documentation states them), output names, a ``to_spec`` round trip that
rebuilds an equal layer (same spec, same initial values from the same seed),
and float32 graphs staying float32. Recurrent layers have their own contract
table in ``test_layers_recurrent.py``; the last test checks that together the
two tables cover every registered layer class.
"""

import json

import numpy as np
import pytensor
import pytest
from test_layers_recurrent import CONTRACT as RECURRENT_CONTRACT

import theanets
from theanets import layers


def _dense(*specs):
    return lambda: theanets.Network([4, *specs, 2])


#: form -> (network factory, parameters as (short name, shape), outputs)
CONTRACT = {
    "input": (lambda: theanets.Network([dict(size=4, name="l"), 2]), [], {"out"}),
    "feedforward": (
        _dense(dict(form="feedforward", size=3, name="l")),
        [("w", (4, 3)), ("b", (3,))],
        {"out", "pre"},
    ),
    "classifier": (
        _dense(dict(form="classifier", size=3, name="l")),
        [("w", (4, 3)), ("b", (3,))],
        {"out", "pre"},
    ),
    "tied": (
        lambda: theanets.Network([4, (3, "tanh"), dict(form="tied", name="l")]),
        [("b", (4,))],
        {"out", "pre"},
    ),
    "product": (
        _dense((4, "tanh"), dict(form="product", inputs=("in", "hid1"), name="l")),
        [],
        {"out"},
    ),
    "concatenate": (
        _dense((3, "tanh"), dict(form="concatenate", inputs=("in", "hid1"), name="l")),
        [],
        {"out"},
    ),
    "flatten": (
        lambda: theanets.Network([(2, 3), dict(form="flatten", name="l"), 2]),
        [],
        {"out"},
    ),
    "reshape": (
        _dense(dict(form="reshape", shape=(2, 2), name="l"), "flatten"),
        [],
        {"out"},
    ),
    "conv1": (
        lambda: theanets.Network(
            [(6, 2), dict(form="conv1", size=3, filter_size=2, name="l"), "flatten", 2]
        ),
        # as upstream: a Conv1 filter bank is (filters, channels, 1, filter_size)
        [("w", (3, 2, 1, 2)), ("b", (3,))],
        {"out", "pre"},
    ),
    "conv2": (
        lambda: theanets.Network(
            [(5, 5, 2), dict(form="conv2", size=3, filter_size=(2, 3), name="l"), "flatten", 2]
        ),
        [("w", (3, 2, 2, 3)), ("b", (3,))],
        {"out", "pre"},
    ),
    "pool1": (
        lambda: theanets.Network([(6, 2), dict(form="pool1", pool_size=2, name="l"), "flatten", 2]),
        [],
        {"out", "pre"},
    ),
    "pool2": (
        lambda: theanets.Network(
            [(4, 4, 2), dict(form="pool2", pool_size=(2, 2), name="l"), "flatten", 2]
        ),
        [],
        {"out", "pre"},
    ),
}


def _data(net, n=3, seed=0):
    shape = (n, *net.layers[0].output_shape)
    return np.random.default_rng(seed).normal(size=shape).astype(pytensor.config.floatX)


@pytest.mark.parametrize("form", sorted(CONTRACT))
def test_registry_params_and_outputs(form):
    factory, params, outputs = CONTRACT[form]
    net = factory()
    layer = net.find_layer("l")
    assert type(layer) is layers.Layer.get_class(form)
    assert type(layer).__name__.lower() == form
    assert [(p.name, p.get_value().shape) for p in layer.params] == [
        (f"l.{name}", shape) for name, shape in params
    ]
    assert layer.num_params() == sum(int(np.prod(s)) for _, s in params)
    assert {name.split(":")[1] for name in layer.output_shapes()} == outputs
    computed = net.feed_forward(_data(net))
    assert {k.split(":")[1] for k in computed if k.startswith("l:")} == outputs
    for name, shape in layer.output_shapes().items():
        assert computed[name].shape[1:] == shape, name


@pytest.mark.parametrize("form", sorted(CONTRACT))
def test_to_spec_round_trip(form):
    net = CONTRACT[form][0]()
    layer = net.find_layer("l")
    spec = layer.to_spec()
    assert spec["form"] == form and spec["name"] == "l"
    json.dumps(spec)  # a spec can be stored as JSON
    kwargs = dict(spec)
    rebuilt = layers.Layer.build(kwargs.pop("form"), **kwargs)
    rebuilt.bind(net)
    assert rebuilt.to_spec() == spec
    assert rebuilt.output_shape == layer.output_shape
    assert [p.name for p in rebuilt.params] == [p.name for p in layer.params]
    for a, b in zip(rebuilt.params, layer.params):
        np.testing.assert_array_equal(a.get_value(), b.get_value())


@pytest.mark.parametrize("form", sorted(CONTRACT))
def test_float32_stays_float32(form):
    with pytensor.config.change_flags(floatX="float32"):
        net = CONTRACT[form][0]()
        computed = net.feed_forward(_data(net).astype("float64"))
    assert all(p.dtype == "float32" for p in net.params)
    assert {k: v.dtype for k, v in computed.items() if k.startswith("l:")} == {
        k: np.dtype("float32") for k in computed if k.startswith("l:")
    }


def test_every_registered_layer_has_a_contract():
    concrete = {
        key: cls
        for key in layers.Layer.registered_names()
        if (cls := layers.Layer.get_class(key)) not in (layers.Recurrent,)
        and cls.__name__ not in ("Convolution", "Pooling")
    }
    covered = set(CONTRACT) | set(RECURRENT_CONTRACT) | {"bidirectional"}
    assert {cls.__name__.lower() for cls in concrete.values()} == covered
