"""Tests for Network.monitors and the monitors= option of train/itertrain.

Every reported value is checked against NumPy, computed from the outputs of
``feed_forward`` and from the parameter values.
"""

import numpy as np
import pytensor
import pytest

import theanets
from theanets.util import ConfigurationError


def _rms(expr):
    return (expr * expr).mean()


def _max(expr):
    return expr.max()


@pytest.fixture
def net():
    return theanets.Regressor([4, (5, "tanh"), (6, "relu"), 3])


def _evaluate(net, monitors, x, y):
    """Compile the monitor expressions and return {name: value}."""
    names, exprs = zip(*monitors, strict=True)
    fn = pytensor.function(net.variables, list(exprs), on_unused_input="ignore")
    return dict(zip(names, (float(v) for v in fn(x, y)), strict=True))


def _reference(net, x, y):
    """NumPy values of the monitors requested in ``SPEC``."""
    ff = net.feed_forward(x)
    ref = {"err": np.mean((ff["out:out"] - y) ** 2)}
    for level in (0.1, 0.9):
        ref[f"hid1:out<{level}"] = np.mean(ff["hid1:out"] < level)
    for name in ("hid1.w", "hid2.w", "out.w"):
        layer, param = name.split(".")
        ref[f"{name}:rms"] = np.mean(net.find(layer, param).get_value() ** 2)
    ref["hid2.b<0"] = np.mean(net.find("hid2", "b").get_value() < 0)
    ref["out:out:max"] = ff["out:out"].max()
    ref["out:out:rms"] = np.mean(ff["out:out"] ** 2)
    return ref


SPEC = [
    ("hid1:out", (0.1, 0.9)),
    ("*.w", {"rms": _rms}),
    ("hid2.b", 0),
    ("out:out", [("max", _max), ("rms", _rms)]),
]


def test_names_in_order_and_values_match_numpy(net, regression_data):
    x, y = regression_data
    monitors = net.monitors(monitors=SPEC)
    assert [name for name, _ in monitors] == [
        "err",
        "hid1:out<0.1",
        "hid1:out<0.9",
        "hid1.w:rms",
        "hid2.w:rms",
        "out.w:rms",
        "hid2.b<0",
        "out:out:max",
        "out:out:rms",
    ]
    values = _evaluate(net, monitors, x, y)
    ref = _reference(net, x, y)
    for name, value in values.items():
        assert value == pytest.approx(ref[name], rel=1e-5, abs=1e-7), name


def test_dict_spec_and_single_pair_level(net, regression_data):
    x, y = regression_data
    monitors = net.monitors(monitors={"hid1.w": ("rms", _rms), "hid1:out": 0.1})
    assert [name for name, _ in monitors] == ["err", "hid1.w:rms", "hid1:out<0.1"]
    values = _evaluate(net, monitors, x, y)
    ref = _reference(net, x, y)
    assert values["hid1.w:rms"] == pytest.approx(ref["hid1.w:rms"], rel=1e-5)
    assert values["hid1:out<0.1"] == pytest.approx(ref["hid1:out<0.1"], rel=1e-5)


def test_overlapping_patterns_report_once(net):
    names = [n for n, _ in net.monitors(monitors=[("hid1:out", 0.5), ("hid*:out", 0.5)])]
    assert names == ["err", "hid1:out<0.5", "hid2:out<0.5"]


def test_monitors_reach_the_yielded_dicts(net, regression_data):
    x, y = regression_data
    data = [x, y]
    ref = _reference(net, x, y)
    # one batch per epoch, so the first training and validation monitors are
    # both computed with the initial parameters
    train_m, valid_m = next(
        iter(
            net.itertrain(
                data,
                algo="sgd",
                learning_rate=0.01,
                batch_size=len(x),
                validate_every=100,
                monitors=SPEC,
            )
        )
    )
    for monitors in (train_m, valid_m):
        assert list(monitors)[:2] == ["loss", "err"]
        for name, value in ref.items():
            assert monitors[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name


def test_train_returns_monitors_of_classifier(classification_data):
    x, labels = classification_data
    clf = theanets.Classifier([4, (5, "tanh"), 3])
    w = {name: clf.find(name, "w").get_value() for name in ("hid1", "out")}
    # a single update: the training monitors are computed before it
    train_m, _ = clf.train(
        [x, labels], algo="sgd", max_updates=1, batch_size=len(x), monitors={"*.w": 0}
    )
    assert list(train_m) == ["loss", "err", "acc", "hid1.w<0", "out.w<0"]
    for name, value in w.items():
        assert train_m[f"{name}.w<0"] == pytest.approx(np.mean(value < 0), abs=1e-12)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"hid1:out": "high"}, r"monitors\['hid1:out'\]: a level must be a number"),
        ({"hid1:out": [("rms", 3)]}, r"a level must be a number.*got tuple \('rms', 3\)"),
        ({"hid1:out": {"rms": "not callable"}}, r"a level must be a number"),
        ({"hid1:out": [None]}, r"got NoneType None"),
        ("hid1:out", r"monitors must be a dict or a list of \(pattern, levels\) pairs"),
        ([("hid1:out",)], r"each entry must be a \(pattern, levels\) pair"),
        ({3: 0.5}, r"patterns must be glob strings"),
    ],
)
def test_bad_monitor_specs_are_configuration_errors(net, spec, message):
    with pytest.raises(ConfigurationError, match=message):
        net.monitors(monitors=spec)


def test_callable_with_an_array_result_reports_its_mean(net, regression_data):
    x = regression_data[0]
    names, exprs = zip(*net.monitors(monitors={"hid1:out": dict(a=lambda e: e + 1)}))
    assert names == ("err", "hid1:out:a")
    fn = pytensor.function(net.inputs, exprs[1], on_unused_input="ignore")
    hid = net.feed_forward(x)["hid1:out"]
    assert float(fn(x)) == pytest.approx(np.mean(hid + 1), rel=1e-6)


def test_bad_level_is_rejected_by_train(net, regression_data):
    with pytest.raises(ConfigurationError, match="a level must be a number"):
        net.train(list(regression_data), max_updates=1, monitors={"hid1:out": [("rms", "x")]})
