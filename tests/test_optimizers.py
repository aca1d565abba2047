"""Tests for theanets.optimizers: every algorithm against an independent reference.

Two kinds of reference, neither computed by our code:

* trajectories recorded from ``torch.optim`` on a linear regressor (the
  committed fixture ``fixtures/torch_optimizers.json``, written by
  ``scripts/make_optimizer_fixtures.py``; torch is not needed to run the
  tests), for every algorithm that torch implements with the same rule;
* NumPy implementations of the published update rules, applied to the
  quadratic ``L(theta) = 1/2 * ||A theta - b||^2`` (one full batch, float64)
  whose gradient is ``A^T (A theta - b)`` and Hessian ``A^T A``. These also
  cover the options torch lacks or computes differently (the placement of
  ``rms_regularizer``, ESGD, Adam's ``beta1_decay``, gradient norm clipping).

Most tests compile with ``FAST_COMPILE`` (Python linker): on this suite it
compiles several times faster than the default Numba mode for the tiny graphs
used here, with identical results. A few tests use the default mode that users
get.
"""

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.sparse

import theanets
from theanets import optimizers
from theanets.optimizers import Dataset, Optimizer
from theanets.util import ConfigurationError

MODE = "FAST_COMPILE"
ALGOS = ["sgd", "nag", "rprop", "rmsprop", "adagrad", "adadelta", "esgd", "adam"]

RS = np.random.RandomState(42)
A = RS.randn(5, 3)
B = RS.randn(5)
THETA0 = np.array([0.5, -0.3, 0.8])


def gradient(theta):
    return A.T @ (A @ theta - B)


def quad_loss(theta):
    return 0.5 * np.sum((A @ theta - B) ** 2)


def quadratic(dtype="float64", mode=MODE, algo="sgd", **kwargs):
    """An optimizer for the quadratic, with its parameter and inputs."""
    theta = pytensor.shared(THETA0.astype(dtype), name="theta")
    a = pt.matrix("a", dtype=dtype)
    b = pt.vector("b", dtype=dtype)
    loss = 0.5 * pt.sqr(a.dot(theta) - b).sum()
    opt = optimizers.build(algo, loss, [theta], [a, b], mode=mode, **kwargs)
    return opt, theta


def run_steps(opt, theta, steps, **kwargs):
    """Take ``steps`` full-batch updates; return the parameters after each."""
    data = Dataset([A, B], batch_size=len(A), rng=0)
    history = []
    for _ in opt.iterate(data, max_updates=steps, **kwargs):
        history.append(theta.get_value().copy())
    return history


def ewma_weight(halflife):
    return np.exp(-np.log(2) / halflife)


# ------------------------------------------------------------------ oracles


def oracle(rule, steps, momentum=0.0, nesterov=False, clip_elem=0.0, clip_norm=0.0):
    """Apply ``rule(grad, state) -> step`` with momentum and gradient clipping.

    Classical momentum: ``v <- mu v - step(theta)``, ``theta <- theta + v``.

    Nesterov momentum is Sutskever et al. (2013) as published: the step is
    computed at the look-ahead point, ``v <- mu v - step(phi + mu v)``,
    ``phi <- phi + v``. The optimizers store the look-ahead point
    ``phi + mu v`` as their parameters (Bengio et al. 2013), so that is what
    is returned; it equals ``phi`` at the start, where ``v = 0``.
    """
    phi = THETA0.copy()
    vel = np.zeros_like(phi)
    state = {}
    out = []
    for _ in range(steps):
        where = phi + momentum * vel if nesterov else phi
        g = gradient(where)
        if clip_elem > 0:
            g = np.clip(g, -clip_elem, clip_elem)
        elif clip_norm > 0:
            g = g * min(1.0, clip_norm / np.sqrt(np.sum(g * g)))
        step = rule(g, state, where)
        if momentum > 0:
            vel = momentum * vel - step
            phi = phi + vel
        else:
            phi = phi - step
        out.append(phi + momentum * vel if nesterov else phi.copy())
    return out


def sgd_rule(lr):
    def rule(g, state, theta):
        return lr * g

    return rule


def rprop_rule(lr, inc=1.01, dec=0.99, lo=0.0, hi=100.0):
    def rule(g, state, theta):
        prev = state.get("g", np.zeros_like(g))
        size = state.get("size", np.full_like(g, lr))
        prod = g * prev
        factor = np.where(prod > 0, inc, np.where(prod < 0, dec, 1.0))
        size = np.clip(size * factor, lo, hi)
        g = np.where(prod < 0, 0.0, g)
        state["g"], state["size"] = g, size
        return np.sign(g) * size

    return rule


def adagrad_rule(lr, eps=1e-8):
    """Duchi et al. (2011) with the regularizer inside the square root.

    ``step = lr * g / sqrt(G + eps)`` as in downhill; the paper and
    ``torch.optim.Adagrad`` add ``eps`` to ``sqrt(G)`` instead (the torch
    fixture is recorded with ``eps = 0``, where the two agree).
    """

    def rule(g, state, theta):
        state["acc"] = state.get("acc", 0.0) + g * g
        return lr * g / np.sqrt(state["acc"] + eps)

    return rule


def rmsprop_rule(lr, halflife=14, eps=1e-8):
    """Graves (2013), eqs. 38-45: ``step = lr * g / sqrt(s - f^2 + eps)``.

    The averages weigh the past by ``exp(-ln 2 / halflife)`` (torch's
    ``alpha``). Graves and downhill put ``eps`` inside the square root;
    ``torch.optim.RMSprop(centered=True)`` adds it to the root instead.
    """
    w = ewma_weight(halflife)

    def rule(g, state, theta):
        state["f"] = w * state.get("f", 0.0) + (1 - w) * g
        state["s"] = w * state.get("s", 0.0) + (1 - w) * g * g
        return lr * g / np.sqrt(state["s"] - state["f"] ** 2 + eps)

    return rule


def adadelta_rule(halflife=14, eps=1e-8):
    w = ewma_weight(halflife)

    def rule(g, state, theta):
        s = w * state.get("s", 0.0) + (1 - w) * g * g
        x = state.get("x", 0.0)
        delta = g * np.sqrt(x + eps) / np.sqrt(s + eps)
        state["s"], state["x"] = s, w * x + (1 - w) * delta * delta
        return delta

    return rule


def esgd_rule(lr, probe, halflife=14, eps=1e-8):
    w = ewma_weight(halflife)
    hessian = A.T @ A

    def rule(g, state, theta):
        hv = hessian @ probe
        state["d"] = w * state.get("d", 0.0) + (1 - w) * hv * hv
        return lr * g / (np.sqrt(state["d"]) + eps)

    return rule


ADAM_BETA1, ADAM_BETA2 = ewma_weight(7), ewma_weight(69)  # the default half-lives


def adam_rule(lr, beta1=ADAM_BETA1, beta2=ADAM_BETA2, eps=1e-8, decay=1.0):
    """Kingma & Ba (2015), Algorithm 1, with t counted from 1.

    With ``decay`` (lambda) < 1 the first-moment weight of update t is
    ``beta1 * lambda**(t - 1)`` and the bias correction divides by one minus
    the running product of those weights, which is what makes the estimate
    of a constant gradient exact.
    """

    def rule(g, state, theta):
        t = state.get("t", 0) + 1
        b1 = beta1 * decay ** (t - 1)
        prod = state.get("prod", 1.0) * b1
        m = b1 * state.get("m", 0.0) + (1 - b1) * g
        v = beta2 * state.get("v", 0.0) + (1 - beta2) * g * g
        state.update(t=t, prod=prod, m=m, v=v)
        m_hat = m / (1 - prod)
        v_hat = v / (1 - beta2**t)
        return lr * m_hat / (np.sqrt(v_hat) + eps)

    return rule


def assert_trajectory(got, want):
    assert len(got) == len(want)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(g, w, rtol=1e-7, atol=1e-10, err_msg=f"step {step + 1}")


# ------------------------------------------------------ update formulas


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"momentum": 0.9},
        {"momentum": 0.8, "nesterov": True},
        {"max_gradient_elem": 0.5},
        {"max_gradient_clip": 0.5},
        {"max_gradient_norm": 0.7},
        {"max_gradient_norm": 0.7, "max_gradient_elem": 0.5},
    ],
    ids=["plain", "momentum", "nesterov", "elem", "alias", "norm", "elem-wins"],
)
def test_sgd_matches_oracle(kwargs):
    opt, theta = quadratic(algo="sgd")
    got = run_steps(opt, theta, 4, learning_rate=0.05, **kwargs)
    want = oracle(
        sgd_rule(0.05),
        4,
        momentum=kwargs.get("momentum", 0.0),
        nesterov=kwargs.get("nesterov", False),
        clip_elem=kwargs.get("max_gradient_elem", kwargs.get("max_gradient_clip", 0.0)),
        clip_norm=kwargs.get("max_gradient_norm", 0.0),
    )
    assert_trajectory(got, want)


def test_nag_is_nesterov_sgd():
    opt, theta = quadratic(algo="nag")
    got = run_steps(opt, theta, 6, learning_rate=0.05, momentum=0.7)
    assert_trajectory(got, oracle(sgd_rule(0.05), 6, momentum=0.7, nesterov=True))
    with pytest.raises(ConfigurationError, match="Nesterov"):
        opt.iterate([A, B], nesterov=False)


@pytest.mark.parametrize(
    "algo, kwargs, rule",
    [
        ("rprop", {"learning_rate": 0.02}, rprop_rule(0.02)),
        (
            "rprop",
            {
                "learning_rate": 0.05,
                "rprop_increase": 1.5,
                "rprop_decrease": 0.4,
                "rprop_min_step": 0.01,
                "rprop_max_step": 0.09,
            },
            rprop_rule(0.05, 1.5, 0.4, 0.01, 0.09),
        ),
        ("adagrad", {"learning_rate": 0.1}, adagrad_rule(0.1)),
        ("adagrad", {"learning_rate": 0.1, "rms_regularizer": 0.5}, adagrad_rule(0.1, 0.5)),
        ("rmsprop", {"learning_rate": 0.01}, rmsprop_rule(0.01)),
        (
            "rmsprop",
            {"learning_rate": 0.01, "rms_halflife": 3, "rms_regularizer": 1e-3},
            rmsprop_rule(0.01, 3, 1e-3),
        ),
        ("adadelta", {}, adadelta_rule()),
        ("adadelta", {"rms_halflife": 2, "rms_regularizer": 1e-4}, adadelta_rule(2, 1e-4)),
        ("adam", {"learning_rate": 0.01}, adam_rule(0.01)),
        (
            "adam",
            {
                "learning_rate": 0.01,
                "beta1_halflife": 3,
                "beta2_halflife": 10,
                "rms_regularizer": 1e-3,
            },
            adam_rule(0.01, ewma_weight(3), ewma_weight(10), 1e-3),
        ),
        (
            "adam",
            {"learning_rate": 0.02, "beta1": 0.5, "beta2": 0.8, "epsilon": 0.1},
            adam_rule(0.02, 0.5, 0.8, 0.1),
        ),
        (
            "adam",
            {"learning_rate": 0.01, "beta1_halflife": 3, "beta1_decay": 0.9},
            adam_rule(0.01, ewma_weight(3), decay=0.9),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_adaptive_matches_oracle(algo, kwargs, rule):
    opt, theta = quadratic(algo=algo)
    assert_trajectory(run_steps(opt, theta, 5, **kwargs), oracle(rule, 5))


def test_rprop_sign_flip_forgets_gradient():
    # A large first step overshoots the minimum of a steep quadratic, so the
    # gradient changes sign: the step size shrinks and no move is made then.
    opt, theta = quadratic(algo="rprop")
    kwargs = {"learning_rate": 2.0, "rprop_decrease": 0.5}
    got = run_steps(opt, theta, 5, **kwargs)
    assert_trajectory(got, oracle(rprop_rule(2.0, dec=0.5), 5))
    signs = np.sign([gradient(t) for t in [THETA0] + got])
    assert (signs[1:] != signs[:-1]).any()


def test_adaptive_with_momentum():
    opt, theta = quadratic(algo="rmsprop")
    got = run_steps(opt, theta, 4, learning_rate=0.01, momentum=0.5, nesterov=True)
    assert_trajectory(got, oracle(rmsprop_rule(0.01), 4, momentum=0.5, nesterov=True))


@pytest.mark.parametrize("method", ["rop", "lop", "grad"])
def test_esgd_matches_oracle_with_fixed_probe(method):
    opt, theta = quadratic(algo="esgd")
    probe = np.array([1.0, -0.5, 2.0])
    opt._hessian_probe = lambda param: pt.constant(probe, dtype=param.dtype)
    got = run_steps(opt, theta, 4, learning_rate=0.05, hv_method=method)
    assert_trajectory(got, oracle(esgd_rule(0.05, probe), 4))


def test_esgd_closed_form_on_a_scalar_quadratic():
    r"""ESGD iterates derived by hand (Dauphin et al. 2015, with an EWMA).

    For :math:`L = a \theta^2 / 2` the Hessian is :math:`a`, so with a fixed
    probe :math:`r` every product is :math:`H r = a r` and the average,
    starting at 0, is :math:`D_t = (1 - \gamma^t) a^2 r^2`. With
    :math:`\epsilon = 0` each update multiplies :math:`\theta` by
    :math:`1 - \alpha / (|r| \sqrt{1 - \gamma^t})`, hence
    :math:`\theta_K = \theta_0 \prod_{t=1}^K (1 - \alpha / (|r|\sqrt{1 - \gamma^t}))`,
    independently of :math:`a`. ``torch.optim`` has no ESGD.
    """
    a, r, lr, halflife = 3.0, -2.0, 0.1, 4
    theta = pytensor.shared(np.asarray(1.5), name="theta")
    opt = optimizers.build("esgd", 0.5 * a * pt.sqr(theta), [theta], [], mode=MODE)
    opt._hessian_probe = lambda param: pt.constant(r, dtype=param.dtype)
    got = []
    kwargs = {"learning_rate": lr, "rms_halflife": halflife, "rms_regularizer": 0.0}
    for _ in opt.iterate(None, max_updates=5, **kwargs):
        got.append(float(theta.get_value()))
    gamma = 0.5 ** (1 / halflife)
    factors = [1 - lr / (abs(r) * np.sqrt(1 - gamma**t)) for t in range(1, 6)]
    np.testing.assert_allclose(got, 1.5 * np.cumprod(factors), rtol=1e-12)


def test_esgd_probes_are_fresh_standard_normal_draws():
    # With A = diag(a) the Hessian is diag(a^2), so each probe element can be
    # recovered from the parameter trajectory: D_1 = (1 - w) (a^2 r_1)^2 and
    # D_2 = w D_1 + (1 - w) (a^2 r_2)^2.
    n, lr = 400, 1e-3
    rs = np.random.RandomState(0)
    a = rs.uniform(1, 2, n)
    b = rs.uniform(1, 2, n)
    w = ewma_weight(14)
    theta = pytensor.shared(np.zeros(n), name="theta")
    loss = 0.5 * pt.sqr(a * theta - b).sum()

    def trajectory(seed):
        theta.set_value(np.zeros(n))
        opt = optimizers.build("esgd", loss, [theta], [], mode=MODE)
        out = [t.copy() for t in [theta.get_value()]]
        for _ in opt.iterate(None, max_updates=2, learning_rate=lr, rng=seed, rms_regularizer=0):
            out.append(theta.get_value().copy())
        return out

    t0, t1, t2 = trajectory(5)
    g0, g1 = a * (a * t0 - b), a * (a * t1 - b)
    d1 = (lr * g0 / (t0 - t1)) ** 2
    d2 = (lr * g1 / (t1 - t2)) ** 2
    r1_sq = d1 / ((1 - w) * a**4)
    r2_sq = (d2 - w * d1) / ((1 - w) * a**4)
    assert abs(r1_sq.mean() - 1) < 0.3 and abs(r2_sq.mean() - 1) < 0.3
    assert not np.allclose(r1_sq, r2_sq)
    np.testing.assert_array_equal(trajectory(5)[2], t2)
    assert not np.allclose(trajectory(6)[2], t2)


# ------------------------------------------------------ recorded torch.optim

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "torch_optimizers.json")
with open(FIXTURE) as _handle:
    TORCH = json.load(_handle)
TORCH_CASES = {case["name"]: case for case in TORCH["cases"]}


def close(a, b):
    return np.isclose(a, b, rtol=1e-15, atol=0)


def check_torch_mapping(case):
    """Assert that a case's theanets options mean the same rule as torch's.

    Our keyword names and parameterisations differ from torch's; this spells
    the correspondence out (see scripts/make_optimizer_fixtures.py):

    * ``SGD(lr, momentum, nesterov)``: the same numbers; torch's momentum
      buffer ``b`` is our velocity divided by ``-lr``. ``nesterov=True`` is our
      ``nag`` (or ``sgd`` with ``nesterov=True``). ``clip_grad_value_(c)`` is
      ``max_gradient_elem=c``.
    * ``Rprop(lr, etas=(down, up), step_sizes=(lo, hi))``: ``learning_rate``,
      ``rprop_decrease``, ``rprop_increase``, ``rprop_min_step``,
      ``rprop_max_step``.
    * ``RMSprop(alpha, centered=True)``, ``Adadelta(rho)``: ``alpha`` and
      ``rho`` are our ``exp(-ln 2 / rms_halflife)``. RMSprop and Adagrad put
      ``eps`` outside the square root and we put ``rms_regularizer`` inside
      (downhill's formula), so those cases are recorded with both 0; Adadelta
      uses the same formula as ours, with ``lr=1``.
    * ``Adam(lr, betas, eps)``: ``beta1``/``beta2`` given directly or as
      ``exp(-ln 2 / beta*_halflife)``, ``epsilon`` or ``rms_regularizer``.
    """
    klass = Optimizer.lookup(case["algo"])
    ours = {**klass.default_kwargs(), **case["kwargs"]}
    theirs = case["torch_kwargs"]
    lr = ours["learning_rate"]
    name = case["torch"]
    if name == "SGD":
        assert case["algo"] in ("sgd", "nag")
        assert close(theirs["lr"], lr)
        assert close(theirs.get("momentum", 0.0), ours["momentum"])
        assert theirs.get("nesterov", False) == ours["nesterov"]
        assert close(case["clip_grad_value"] or 0.0, ours["max_gradient_elem"])
    elif name == "Rprop":
        assert case["algo"] == "rprop"
        assert close(theirs["lr"], lr)
        assert close(theirs["etas"][0], ours["rprop_decrease"])
        assert close(theirs["etas"][1], ours["rprop_increase"])
        assert close(theirs["step_sizes"][0], ours["rprop_min_step"])
        assert close(theirs["step_sizes"][1], ours["rprop_max_step"])
    elif name == "RMSprop":
        assert case["algo"] == "rmsprop" and theirs["centered"]
        assert close(theirs["lr"], lr)
        assert close(theirs["alpha"], ewma_weight(ours["rms_halflife"]))
        assert theirs["eps"] == ours["rms_regularizer"] == 0
        assert close(theirs.get("momentum", 0.0), ours["momentum"])
    elif name == "Adagrad":
        assert case["algo"] == "adagrad"
        assert close(theirs["lr"], lr)
        assert theirs["eps"] == ours["rms_regularizer"] == 0
    elif name == "Adadelta":
        assert case["algo"] == "adadelta" and theirs["lr"] == 1
        assert close(theirs["rho"], ewma_weight(ours["rms_halflife"]))
        assert close(theirs["eps"], ours["rms_regularizer"])
    elif name == "Adam":
        assert case["algo"] == "adam" and ours["beta1_decay"] == 1
        assert close(theirs["lr"], lr)
        beta1 = ours["beta1"] if ours["beta1"] is not None else ewma_weight(ours["beta1_halflife"])
        beta2 = ours["beta2"] if ours["beta2"] is not None else ewma_weight(ours["beta2_halflife"])
        eps = ours["epsilon"] if ours["epsilon"] is not None else ours["rms_regularizer"]
        assert close(theirs["betas"][0], beta1) and close(theirs["betas"][1], beta2)
        assert close(theirs["eps"], eps)
    else:
        raise AssertionError(f"no mapping for torch.optim.{name}")


def linear_regressor(algo):
    """The fixture's problem: W, b of ``mean((x W + b - y)^2)``."""
    problem = TORCH["problem"]
    w = pytensor.shared(np.array(problem["w0"]), name="w")
    b = pytensor.shared(np.array(problem["b0"]), name="b")
    x, y = pt.matrix("x"), pt.matrix("y")
    loss = pt.sqr(x.dot(w) + b - y).mean()
    opt = optimizers.build(algo, loss, [w, b], [x, y], mode=MODE)
    return opt, w, b


def regressor_trajectory(algo, kwargs, steps):
    opt, w, b = linear_regressor(algo)
    x, y = np.array(TORCH["problem"]["x"]), np.array(TORCH["problem"]["y"])
    data = Dataset([x, y], batch_size=len(x), rng=0)
    out = []
    for _ in opt.iterate(data, max_updates=steps, **kwargs):
        out.append((w.get_value().copy(), b.get_value().copy()))
    return out


def test_torch_fixture_covers_every_algorithm_torch_has():
    # esgd has no torch.optim counterpart; it is pinned by hand-derived
    # iterates above (test_esgd_closed_form_on_a_scalar_quadratic)
    assert {case["algo"] for case in TORCH["cases"]} == set(ALGOS) - {"esgd"}
    assert {"sgd-momentum", "sgd-nesterov", "rprop-flips"} <= set(TORCH_CASES)
    assert all(len(case["trajectory"]) == TORCH["steps"] for case in TORCH["cases"])


@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_matches_torch_optim(name):
    """Every update of our optimizer equals the one recorded from torch.optim."""
    case = TORCH_CASES[name]
    check_torch_mapping(case)
    got = regressor_trajectory(case["algo"], case["kwargs"], TORCH["steps"])
    assert len(got) == len(case["trajectory"])
    for step, ((w, b), want) in enumerate(zip(got, case["trajectory"], strict=True)):
        message = f"{name}, step {step + 1}"
        np.testing.assert_allclose(w, want["w"], rtol=1e-10, atol=1e-13, err_msg=message)
        np.testing.assert_allclose(b, want["b"], rtol=1e-10, atol=1e-13, err_msg=message)


def test_nesterov_follows_the_published_algorithm_not_downhill():
    """The stored velocity is v, not the displacement mu^2 v - (1 + mu) step.

    After 6 updates downhill 0.4's rule is several percent of the total move
    away from Sutskever et al.'s algorithm (as recorded from torch); ours
    agrees to rounding error.
    """
    case = TORCH_CASES["sgd-nesterov"]
    mu = case["kwargs"]["momentum"]
    lr = case["kwargs"]["learning_rate"]
    problem = TORCH["problem"]
    x, y = np.array(problem["x"]), np.array(problem["y"])
    start = np.concatenate([np.ravel(problem["w0"]), problem["b0"]])

    def grad(flat):
        w, b = flat[:6].reshape(3, 2), flat[6:]
        r = (x @ w + b - y) * 2 / y.size
        return np.concatenate([(x.T @ r).ravel(), r.sum(axis=0)])

    theta, vel = start.copy(), np.zeros_like(start)
    for _ in range(TORCH["steps"]):  # downhill 0.4
        vel = mu**2 * vel - (1 + mu) * lr * grad(theta)
        theta = theta + vel
    last = case["trajectory"][-1]
    want = np.concatenate([np.ravel(last["w"]), last["b"]])
    (w, b) = regressor_trajectory("sgd", case["kwargs"], TORCH["steps"])[-1]
    got = np.concatenate([w.ravel(), b])
    move = np.linalg.norm(want - start)
    assert np.linalg.norm(theta - want) / move > 0.01
    assert np.linalg.norm(got - want) / move < 1e-12


# ------------------------------------------------------ hyperparameters


def test_new_values_reuse_the_compiled_function_and_reset_state():
    opt, theta = quadratic(algo="sgd")
    run_steps(opt, theta, 3, learning_rate=0.05, momentum=0.9)
    theta.set_value(THETA0.copy())
    got = run_steps(opt, theta, 3, learning_rate=0.02, momentum=0.5)
    assert_trajectory(got, oracle(sgd_rule(0.02), 3, momentum=0.5))
    assert len(opt._step_fns) == 1


def test_get_updates_can_be_compiled_by_the_caller():
    opt, theta = quadratic(algo="sgd")
    a, b = opt._inputs
    fn = pytensor.function([a, b], [], updates=opt.get_updates(learning_rate=0.1), mode=MODE)
    fn(A, B)
    np.testing.assert_allclose(theta.get_value(), THETA0 - 0.1 * gradient(THETA0))


def test_default_mode_matches_oracle(default_mode):
    opt, theta = quadratic(algo="adam", mode=None)
    assert_trajectory(run_steps(opt, theta, 3, learning_rate=0.01), oracle(adam_rule(0.01), 3))


@pytest.mark.parametrize("algo", ALGOS)
def test_float32_stays_float32(algo):
    with pytensor.config.change_flags(floatX="float32"):
        opt, theta = quadratic(dtype="float32", algo=algo)
        train, _ = opt.minimize([A, B], batch_size=len(A), max_updates=2, learning_rate=0.01)
        assert theta.get_value().dtype == np.float32
        assert theta.type.dtype == "float32"
        for states in opt._states.values():
            for var, _init in states:
                assert var.get_value().dtype == np.float32, var.name
        assert np.isfinite(train["loss"])


def test_float64_data_feed_a_float32_model():
    opt, theta = quadratic(dtype="float32", algo="sgd")
    train, _ = opt.minimize([A, B], batch_size=len(A), max_updates=1, learning_rate=0.01)
    np.testing.assert_allclose(train["loss"], quad_loss(THETA0), rtol=1e-5)
    assert theta.get_value().dtype == np.float32


# ------------------------------------------------------ the training loop


def scalar_problem(algo="sgd", theta0=0.0, **kwargs):
    """loss = mean((theta - y)^2) for a scalar theta and data y."""
    theta = pytensor.shared(np.asarray(theta0), name="theta")
    y = pt.vector("y")
    loss = pt.sqr(theta - y).mean()
    opt = optimizers.build(algo, loss, [theta], [y], mode=MODE, **kwargs)
    return opt, theta


def test_yields_one_pair_per_epoch_with_stale_validation():
    opt, theta = scalar_problem()
    train = Dataset([np.ones(4)], batch_size=2, rng=0)
    valid = Dataset([np.zeros(4)], batch_size=4)
    pairs = list(opt.iterate(train, valid, learning_rate=0.1, validate_every=2, max_updates=8))
    assert len(pairs) == 4
    # theta_k = 1 - 0.8^k after k updates (two per epoch); validation runs
    # before epochs 0 and 2 and once more after the last update
    valids = [v["loss"] for _, v in pairs]
    assert valids[:2] == [0.0, 0.0]
    assert valids[2] == pytest.approx((1 - 0.8**4) ** 2)
    assert valids[3] == pytest.approx((1 - 0.8**8) ** 2)
    # training loss: unweighted mean over the epoch's two batches, before each update
    assert pairs[0][0]["loss"] == pytest.approx((1 + 0.8**2) / 2)


def test_patience_restores_best_parameters():
    # theta_k = 1 - 0.9^k approaches the training target 1 and passes the
    # validation target 0.3 between k = 3 and k = 4.
    opt, theta = scalar_problem()
    train, valid = [np.ones(2)], [np.full(2, 0.3)]
    pairs = list(
        opt.iterate(train, valid, learning_rate=0.05, validate_every=1, patience=2, batch_size=2)
    )
    best = 1 - 0.9**3
    assert len(pairs) == 6
    assert theta.get_value() == pytest.approx(best)
    assert opt.best_loss == pytest.approx((best - 0.3) ** 2)
    assert pairs[3][1]["loss"] == pytest.approx((best - 0.3) ** 2)


def test_min_improvement_is_relative_to_best():
    opt, theta = scalar_problem()
    data = [np.ones(2)]
    # the validation loss shrinks by 19% per epoch: not enough for 25%
    pairs = list(
        opt.iterate(
            data,
            data,
            learning_rate=0.05,
            validate_every=1,
            patience=0,
            min_improvement=0.25,
            batch_size=2,
        )
    )
    assert len(pairs) == 1
    assert theta.get_value() == 0.0


def test_max_updates_counts_batches_and_keeps_the_last_parameters():
    # loss = theta * mean(y) with y = 1: every update moves theta by -lr.
    theta = pytensor.shared(np.asarray(0.0), name="theta")
    y = pt.vector("y")
    opt = optimizers.build("sgd", theta * y.mean(), [theta], [y], mode=MODE)
    pairs = list(opt.iterate([np.ones(10)], learning_rate=1.0, batch_size=3, max_updates=6))
    assert len(pairs) == 2  # 4 batches, then 2
    assert theta.get_value() == -6.0
    assert pairs[-1][1]["loss"] == -6.0


def test_keyboard_interrupt_restores_best_and_stops_cleanly():
    opt, theta = scalar_problem()
    calls = []

    def batch():
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return [np.ones(2)]

    train = Dataset(batch, iteration_size=1)
    pairs = list(
        opt.iterate(train, [np.full(2, 0.3)], learning_rate=0.05, validate_every=1, patience=99)
    )
    assert len(pairs) == 5
    assert theta.get_value() == pytest.approx(1 - 0.9**3)


@pytest.mark.parametrize("every, restored", [(1, 0.5), (10, 1.0)])
def test_non_finite_loss_warns_and_restores(every, restored):
    # loss = log(theta): theta goes 1 -> 0.5 -> -0.5, where the loss is NaN
    theta = pytensor.shared(np.asarray(1.0), name="theta")
    y = pt.vector("y")
    opt = optimizers.build("sgd", pt.log(theta) * y.mean(), [theta], [y], mode=MODE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's own log warning
        warnings.filterwarnings("error", message=".*loss became", category=RuntimeWarning)
        with pytest.raises(RuntimeWarning, match="loss became nan"):
            list(opt.iterate([np.ones(1)], learning_rate=0.5, validate_every=every))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theta.set_value(np.asarray(1.0))
        pairs = list(opt.iterate([np.ones(1)], learning_rate=0.5, validate_every=every))
    assert any("loss became nan" in str(w.message) for w in caught)
    assert len(pairs) == 2
    assert theta.get_value() == restored


def test_abandoned_generator_leaves_parameters():
    opt, theta = scalar_problem()
    for _ in opt.iterate([np.ones(2)], learning_rate=0.05, batch_size=2):
        break
    assert theta.get_value() == pytest.approx(0.1)


def test_monitors_and_gradient_norms_are_reported():
    theta = pytensor.shared(THETA0.copy(), name="theta")
    a, b = pt.matrix("a"), pt.vector("b")
    loss = 0.5 * pt.sqr(a.dot(theta) - b).sum()
    opt = optimizers.build(
        "sgd",
        loss,
        [theta],
        [a, b],
        monitors={"norm": theta.norm(2)},
        monitor_gradients=True,
        mode=MODE,
    )
    train, valid = opt.minimize([A, B], batch_size=len(A), max_updates=1, learning_rate=0.01)
    assert list(train) == ["loss", "norm", "grad(theta)"]
    assert train["loss"] == pytest.approx(quad_loss(THETA0))
    assert train["norm"] == pytest.approx(np.linalg.norm(THETA0))
    assert train["grad(theta)"] == pytest.approx(np.linalg.norm(gradient(THETA0)))
    theta1 = THETA0 - 0.01 * gradient(THETA0)
    assert valid["loss"] == pytest.approx(quad_loss(theta1))
    assert isinstance(train["loss"], float)


def test_monitors_use_the_batch_values():
    theta = pytensor.shared(np.asarray(2.0), name="theta")
    y = pt.vector("y")
    opt = optimizers.build(
        "sgd",
        pt.sqr(theta - y).mean(),
        [theta],
        [y],
        mode=MODE,
        monitors=[("ymean", y.mean()), ("theta", theta * 1)],
    )
    values = opt.evaluate(Dataset([np.array([1.0, 2.0, 3.0, 10.0])], batch_size=3))
    assert values["ymean"] == pytest.approx((2.0 + 10.0) / 2)
    assert values["theta"] == 2.0


def test_extra_updates_run_on_every_call():
    theta = pytensor.shared(np.asarray(0.0), name="theta")
    count = pytensor.shared(np.asarray(0.0), name="count")
    y = pt.vector("y")
    opt = optimizers.build(
        "sgd", pt.sqr(theta - y).mean(), [theta], [y], updates=[(count, count + 1)], mode=MODE
    )
    opt.minimize([np.ones(4)], batch_size=2, max_updates=4, validate_every=100)
    # 2 batches of validation at the start, 4 training, 2 at the end
    assert count.get_value() == 8


def test_parameters_without_inputs():
    theta = pytensor.shared(np.array([3.0, -2.0]), name="theta")
    opt = optimizers.build("sgd", pt.sqr(theta).sum(), [theta], [], mode=MODE)
    train, _ = opt.minimize(learning_rate=0.25, max_updates=3)
    np.testing.assert_allclose(theta.get_value(), np.array([3.0, -2.0]) * 0.5**3)
    assert train["loss"] == pytest.approx(13 * 0.25**2)


# ------------------------------------------------------ configuration


def test_registry_names_and_unknown_algorithm():
    names = Optimizer.registered_names()
    assert set(ALGOS) <= set(names)
    opt, _ = quadratic(algo="RMSProp")
    assert type(opt) is optimizers.RMSProp
    with pytest.raises(ConfigurationError, match="Did you mean 'rmsprop'"):
        quadratic(algo="rmsprp")


@pytest.mark.parametrize("algo", ALGOS)
def test_contract(algo):
    klass = Optimizer.lookup(algo)
    assert klass.__name__.lower() == algo
    assert klass.__doc__ and "Notes" in klass.__doc__
    known = klass.known_kwargs()
    assert {"learning_rate", "momentum", "patience", "max_updates", "gradient_clip"} <= known
    assert set(klass.default_kwargs()) <= known


def test_known_kwargs_per_algorithm():
    assert "rms_halflife" in optimizers.RMSProp.known_kwargs()
    assert "rms_halflife" not in optimizers.SGD.known_kwargs()
    assert "hv_method" in optimizers.ESGD.known_kwargs()
    adam = {"beta1_halflife", "beta2_halflife", "beta1_decay", "beta1", "beta2", "epsilon"}
    assert adam <= optimizers.Adam.known_kwargs()
    assert optimizers.Adam.default_kwargs()["beta1_decay"] == 1
    assert optimizers.RProp.default_kwargs()["rprop_max_step"] == 100
    assert optimizers.NAG.default_kwargs()["nesterov"] is True
    assert optimizers.SGD.default_kwargs()["learning_rate"] == 1e-4


def test_unknown_kwarg_is_rejected_with_suggestion():
    opt, _ = quadratic(algo="sgd")
    with pytest.raises(ConfigurationError, match="Did you mean 'learning_rate'"):
        opt.iterate([A, B], learnig_rate=0.1)
    with pytest.raises(ConfigurationError, match="rms_halflife"):
        opt.minimize([A, B], rms_halflife=3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": -1}, "`learning_rate` must be a number >= 0. Received: -1"),
        ({"learning_rate": float("nan")}, "`learning_rate` must be a finite number. Received: nan"),
        ({"momentum": 1.0}, "`momentum` must be a number in [0, 1). Received: 1.0"),
        ({"momentum": -0.5}, "`momentum` must be a number in [0, 1). Received: -0.5"),
        ({"patience": 1.5}, "`patience` must be an integer >= 0. Received: 1.5"),
        ({"patience": -1}, "`patience` must be an integer >= 0. Received: -1"),
        ({"validate_every": 0}, "`validate_every` must be an integer >= 1. Received: 0"),
        ({"max_updates": 0}, "`max_updates` must be None or an integer >= 1. Received: 0"),
        ({"min_improvement": -0.1}, "`min_improvement` must be a number >= 0. Received: -0.1"),
        ({"max_gradient_norm": -1.0}, "`max_gradient_norm` must be a number >= 0. Received: -1.0"),
        ({"train_batches": 0}, "`train_batches` must be None or an integer >= 1. Received: 0"),
        ({"nesterov": "yes"}, "nesterov must be True or False"),
        ({"gradient_clip": 1, "max_gradient_elem": 2}, "alias"),
    ],
)
def test_bad_values_are_rejected(kwargs, message):
    opt, _ = quadratic(algo="sgd")
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        opt.iterate([A, B], **kwargs)


@pytest.mark.parametrize("size", [0, -1, 2.5, "32", True])
def test_bad_batch_size_is_rejected_before_any_update(size):
    opt, theta = quadratic(algo="sgd")
    message = f"`batch_size` must be an integer >= 1. Received: {size!r}"
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        opt.minimize([A, B], batch_size=size, learning_rate=0.1)
    np.testing.assert_array_equal(theta.get_value(), THETA0)


@pytest.mark.parametrize("algo", ["sgd", "layerwise"])
def test_network_train_rejects_bad_batch_size_and_keeps_parameters(algo):
    net = theanets.Regressor([3, (4, "tanh"), 2], rng=1)
    before = [p.get_value().copy() for p in net.params]
    x = np.random.RandomState(0).randn(10, 3)
    y = np.random.RandomState(1).randn(10, 2)
    with pytest.raises(ConfigurationError, match=r"`batch_size` must be an integer >= 1"):
        net.train([x, y], algo=algo, batch_size=0, max_updates=2)
    for param, value in zip(net.params, before, strict=True):
        np.testing.assert_array_equal(param.get_value(), value, err_msg=param.name)


def test_adam_accepts_the_usual_names():
    theirs = regressor_trajectory(
        "adam", {"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-6}, 3
    )
    ours = regressor_trajectory(
        "adam",
        {
            "learning_rate": 0.01,
            "beta1_halflife": -np.log(2) / np.log(0.9),
            "beta2_halflife": -np.log(2) / np.log(0.999),
            "rms_regularizer": 1e-6,
        },
        3,
    )
    for (w1, b1), (w2, b2) in zip(theirs, ours, strict=True):
        np.testing.assert_allclose(w1, w2, rtol=1e-9)
        np.testing.assert_allclose(b1, b2, rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beta1": 0.9, "beta1_halflife": 7}, "'beta1' and 'beta1_halflife'"),
        ({"beta2": 0.99, "beta2_halflife": 69}, "'beta2' and 'beta2_halflife'"),
        ({"epsilon": 1e-8, "rms_regularizer": 1e-8}, "'epsilon' and 'rms_regularizer'"),
        ({"beta1": 1.0}, "`beta1` must be a number in [0, 1). Received: 1.0"),
        ({"beta2": -0.1}, "`beta2` must be a number in [0, 1). Received: -0.1"),
        ({"epsilon": -1e-8}, "`epsilon` must be a number >= 0. Received: -1e-08"),
        ({"beta1_decay": 0}, "`beta1_decay` must be a number in (0, 1]. Received: 0"),
        ({"beta1_halflife": 0}, "`beta1_halflife` must be a number > 0. Received: 0"),
    ],
)
def test_adam_rejects_conflicting_or_bad_values(kwargs, message):
    opt, theta = quadratic(algo="adam")
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        opt.iterate([A, B], **kwargs)
    np.testing.assert_array_equal(theta.get_value(), THETA0)


def test_optimizers_is_an_attribute_after_importing_theanets():
    # a fresh interpreter, so that nothing else has imported the subpackage
    code = "import theanets; print(theanets.optimizers.Optimizer.__name__)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Optimizer"
    import theanets as package

    assert "optimizers" in package.__all__


def test_bad_algorithm_values_are_rejected():
    with pytest.raises(ConfigurationError, match="Did you mean 'rop'"):
        quadratic(algo="esgd")[0].iterate([A, B], hv_method="ropp")
    with pytest.raises(ConfigurationError, match="rms_halflife"):
        quadratic(algo="rmsprop")[0].iterate([A, B], rms_halflife=0)
    with pytest.raises(ConfigurationError, match="rprop_max_step"):
        quadratic(algo="rprop")[0].iterate([A, B], rprop_min_step=2, rprop_max_step=1)


def test_constructor_validates_its_arguments():
    theta = pytensor.shared(np.zeros(2), name="theta")
    x = pt.vector("x")
    with pytest.raises(ConfigurationError, match="scalar"):
        optimizers.build("sgd", theta * x, [theta], [x])
    with pytest.raises(ConfigurationError, match="shared"):
        optimizers.build("sgd", (theta * x).sum(), [x], [x])
    with pytest.raises(ConfigurationError, match="at least one"):
        optimizers.build("sgd", (theta * x).sum(), [], [x])
    with pytest.raises(ConfigurationError, match="free symbolic"):
        optimizers.build("sgd", (theta * x).sum(), [theta], [theta])
    with pytest.raises(ConfigurationError, match="monitor"):
        optimizers.build("sgd", (theta * x).sum(), [theta], [x], monitors=[("m", theta)])


def test_batch_arity_mismatch_is_reported():
    opt, _ = quadratic(algo="sgd")
    train = Dataset(lambda: [A], iteration_size=1)
    message = r"has 1 array\(s\) but the loss needs 2 input\(s\) \(a, b\)"
    with pytest.raises(ValueError, match=message):
        opt.minimize(train)
    with pytest.raises(ValueError, match="no data"):
        opt.minimize(None)


def test_sparse_inputs_are_batched_by_rows():
    import pytensor.sparse

    x = pytensor.sparse.csr_matrix("x", dtype="float64")
    theta = pytensor.shared(np.ones(3), name="theta")
    loss = pt.sqr(pytensor.sparse.structured_dot(x, theta.dimshuffle(0, "x"))).mean()
    opt = optimizers.build("sgd", loss, [theta], [x], mode=MODE)
    data = scipy.sparse.random(10, 3, density=0.5, format="csr", random_state=1)
    values = opt.evaluate(Dataset([data], batch_size=4, rng=0))
    dense = data.toarray()
    want = np.mean([np.mean((dense[i : i + 4] @ np.ones(3)) ** 2) for i in (0, 4, 8)])
    assert values["loss"] == pytest.approx(want)
