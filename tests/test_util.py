"""Tests for theanets.util: registry, matching, initialisation helpers."""

import logging
import re

import numpy as np
import pytest

from theanets import util


class Shape(util.Registrar):
    pass


class Square(Shape):
    __extra_registration_keys__ = ["box"]

    def __init__(self, side=1):
        self.side = side


class Circle(Shape):
    pass


def test_registry_by_lowercase_name_and_alias():
    assert isinstance(Shape.build("square"), Square)
    assert isinstance(Shape.build("BOX", side=2), Square)
    assert Shape.build("box", side=3).side == 3
    assert Shape.registered_names() == ["box", "circle", "square"]
    assert Shape.is_registered("Circle")
    assert not Shape.is_registered("triangle")


def test_registry_unknown_name_suggests_closest():
    with pytest.raises(util.ConfigurationError, match="Did you mean 'square'") as err:
        Shape.build("sqaure")
    assert "box, circle, square" in str(err.value)


def test_registry_protects_builtin_names_but_lets_user_classes_take_over(caplog):
    from theanets import layers

    with pytest.raises(util.ConfigurationError, match="belongs to the built-in"):
        type("Feedforward", (layers.Layer,), {"__module__": "elsewhere"})
    first = type("Crate", (Shape,), {"__module__": "one"})
    with caplog.at_level(logging.WARNING, logger="theanets"):
        second = type("Crate", (Shape,), {"__module__": "two"})
    assert "crate now names two.Crate" in caplog.text
    assert Shape.lookup("crate") is second is not first


def test_registry_accepts_redefinition_of_the_same_class():
    class Redefined(Shape):
        pass

    first = Redefined

    class Redefined(Shape):  # noqa: F811
        pass

    assert Shape.lookup("redefined") is Redefined is not first


def test_registry_lookup_needs_a_string():
    with pytest.raises(util.ConfigurationError, match="expected the name"):
        Shape.lookup(3)


def test_configuration_error_is_a_value_error():
    assert issubclass(util.ConfigurationError, ValueError)


def test_check_unknown_kwargs_suggests():
    with pytest.raises(util.ConfigurationError, match="'hiden_l1'.*Did you mean 'hidden_l1'"):
        util.check_unknown_kwargs({"hiden_l1": 1}, ["hidden_l1", "weight_l2"], "train()")
    util.check_unknown_kwargs({"weight_l2": 1}, ["hidden_l1", "weight_l2"], "train()")


def test_outputs_matching_is_stable_and_supports_several_globs():
    outputs = {"in:out": 1, "hid1:pre": 2, "hid1:out": 3, "out:out": 4}
    assert list(util.outputs_matching(outputs, "*:out")) == [
        ("in:out", 1),
        ("hid1:out", 3),
        ("out:out", 4),
    ]
    assert [n for n, _ in util.outputs_matching(outputs, ("hid1:*", "out:out"))] == [
        "hid1:pre",
        "hid1:out",
        "out:out",
    ]
    assert list(util.outputs_matching(outputs, "nothing")) == []


def test_params_matching():
    class Param:
        def __init__(self, name):
            self.name = name

    class FakeLayer:
        def __init__(self, *names):
            self.params = [Param(n) for n in names]

    layers = [FakeLayer("hid1.w", "hid1.b"), FakeLayer("out.w", "out.b")]
    assert [n for n, _ in util.params_matching(layers, "*.w")] == ["hid1.w", "out.w"]
    assert [n for n, _ in util.params_matching(layers, ["hid1.*"])] == ["hid1.w", "hid1.b"]


def test_random_matrix_matches_plain_draw():
    got = util.random_matrix(3, 4, mean=0.5, std=2, rng=7)
    want = 0.5 + 2 * np.random.RandomState(7).randn(3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_random_matrix_sparsity_keeps_the_diagonal():
    arr = util.random_matrix(50, 40, sparsity=0.9, rng=3)
    assert np.all(np.diag(arr) != 0)
    frac_zero = np.mean(arr == 0)
    assert 0.8 < frac_zero < 0.95


def test_random_matrix_radius_sets_the_largest_singular_value():
    arr = util.random_matrix(6, 6, radius=1.5, rng=1)
    assert np.linalg.svd(arr, compute_uv=False)[0] == pytest.approx(1.5, rel=1e-5)


def test_random_matrix_diagonal_replaces_values_but_consumes_draws():
    rng = np.random.RandomState(5)
    arr = util.random_matrix(2, 3, diagonal=2, rng=rng)
    np.testing.assert_array_equal(arr, [[2, 0, 0], [0, 2, 0]])
    reference = np.random.RandomState(5)
    reference.randn(2, 3)
    assert rng.randn() == reference.randn()


def test_random_vector():
    got = util.random_vector(5, mean=1, std=0.1, rng=2)
    np.testing.assert_allclose(got, 1 + 0.1 * np.random.RandomState(2).randn(5), rtol=1e-6)


def test_resolve_rng():
    state = np.random.RandomState(1)
    assert util.resolve_rng(state) is state
    assert isinstance(util.resolve_rng(4), np.random.RandomState)
    with pytest.raises(util.ConfigurationError):
        util.resolve_rng("seed")


def test_resolve_rng_kinds():
    gen = np.random.default_rng(3)
    state = np.random.RandomState(3)
    assert util.resolve_rng(gen, kind="any") is gen
    assert util.resolve_rng(state, kind="any") is state
    assert isinstance(util.resolve_rng(5, kind="any"), np.random.RandomState)
    assert util.resolve_rng(gen, kind="generator") is gen
    drawn = util.resolve_rng(5, kind="generator")
    assert isinstance(drawn, np.random.Generator)
    assert drawn.integers(1000) == np.random.default_rng(5).integers(1000)
    assert util.resolve_rng(5).randint(1000) == np.random.RandomState(5).randint(1000)
    with pytest.raises(util.ConfigurationError, match="RandomState"):
        util.resolve_rng(gen)
    with pytest.raises(util.ConfigurationError, match="Generator"):
        util.resolve_rng(state, kind="generator")
    with pytest.raises(util.ConfigurationError):
        util.resolve_rng(True)
    with pytest.raises(ValueError, match="kind"):
        util.resolve_rng(1, kind="mersenne")


def test_seed_from():
    assert util.seed_from(None) is None
    assert util.seed_from(None, default=13) == 13
    assert util.seed_from(np.int64(7)) == 7
    assert util.seed_from(np.random.RandomState(2)) == np.random.RandomState(2).randint(2**31 - 1)
    assert util.seed_from(np.random.default_rng(2), high=2**31) == np.random.default_rng(
        2
    ).integers(2**31)
    with pytest.raises(util.ConfigurationError, match="noise rng must be a non-negative seed"):
        util.seed_from(-1, where="noise rng")
    for bad in (True, "x", 1.5):
        with pytest.raises(util.ConfigurationError, match="integer seed"):
            util.seed_from(bad)


def test_is_int_and_is_real():
    assert util.is_int(3) and util.is_int(np.int32(3))
    assert not util.is_int(True) and not util.is_int(3.0)
    assert util.is_real(3) and util.is_real(np.float32(0.5)) and util.is_real(float("nan"))
    assert not util.is_real(False) and not util.is_real(1j) and not util.is_real("1")


@pytest.mark.parametrize(
    "kwargs, value, message",
    [
        (dict(low=0), -1, "`learning_rate` must be a number >= 0. Received: -1"),
        (dict(low=0), float("inf"), "`learning_rate` must be a finite number. Received: inf"),
        (dict(low=0), "1", "`learning_rate` must be a finite number. Received: '1'"),
        (dict(low=0), True, "`learning_rate` must be a finite number. Received: True"),
        (dict(low=0, low_open=True), 0, "`learning_rate` must be a number > 0. Received: 0"),
        (dict(high=1), 2, "`learning_rate` must be a number <= 1. Received: 2"),
        (dict(high=1, high_open=True), 1, "`learning_rate` must be a number < 1. Received: 1"),
        (
            dict(low=0, high=1, high_open=True),
            1.0,
            "`learning_rate` must be a number in [0, 1). Received: 1.0",
        ),
        (
            dict(low=0, high=1, low_open=True),
            0,
            "`learning_rate` must be a number in (0, 1]. Received: 0",
        ),
        (dict(low=1, integer=True), 0, "`learning_rate` must be an integer >= 1. Received: 0"),
        (dict(low=1, integer=True), 2.0, "`learning_rate` must be an integer >= 1. Received: 2.0"),
        (
            dict(low=1, integer=True),
            True,
            "`learning_rate` must be an integer >= 1. Received: True",
        ),
        (
            dict(low=1, integer=True, allow_none=True),
            0,
            "`learning_rate` must be None or an integer >= 1. Received: 0",
        ),
        (dict(), None, "`learning_rate` must be a finite number. Received: None"),
    ],
)
def test_check_number_messages(kwargs, value, message):
    with pytest.raises(util.ConfigurationError, match=re.escape(message)):
        util.check_number("learning_rate", value, **kwargs)


@pytest.mark.parametrize(
    "kwargs, value, message",
    [
        (dict(low=1, integer=True), 0, "f: n must be a positive integer. Received: 0"),
        (dict(low=0, low_open=True, integer=True), 0, "f: n must be a positive integer."),
        (dict(low=0, integer=True), -1, "f: n must be an integer >= 0. Received: -1"),
        (dict(low=0, low_open=True), "x", "f: n must be a positive finite number. Received: 'x'"),
        (dict(low=0), -1, "f: n must be a non-negative finite number (>= 0). Received: -1"),
        (dict(), float("nan"), "f: n must be a finite number. Received: nan"),
    ],
)
def test_check_number_messages_with_an_owner(kwargs, value, message):
    with pytest.raises(util.ConfigurationError, match=re.escape(message)):
        util.check_number("n", value, where="f", **kwargs)


def test_check_number_returns_plain_numbers():
    assert util.check_number("x", np.float32(0.5), low=0) == 0.5
    assert type(util.check_number("x", np.int64(3), low=0)) is float
    got = util.check_number("x", np.int64(3), low=1, integer=True)
    assert got == 3 and type(got) is int
    assert util.check_number("x", None, integer=True, allow_none=True) is None
    assert util.check_number("x", 0, low=0, high=1) == 0.0
    assert util.check_number("x", 1, low=0, high=1) == 1.0


def test_output_name_and_constant_like():
    import pytensor.tensor as pt

    assert util.output_name("hid1") == "hid1:out"
    assert util.output_name("hid1:pre") == "hid1:pre"
    x = pt.fmatrix("x")
    c = util.constant_like(0.5, x)
    assert c.dtype == "float32" and float(c.data) == 0.5


def test_log_goes_to_the_theanets_logger(caplog):
    with caplog.at_level(logging.INFO, logger="theanets"):
        util.log("hello {}", "world")
    assert "hello world" in caplog.text
