"""Record reference optimizer trajectories from ``torch.optim``.

The tests of :mod:`theanets.optimizers` compare our algorithms, step by step,
with these recorded values; the tests themselves do not need torch.

The problem is a linear regressor ``y = x W + b`` fitted by the mean squared
error ``mean((x W + b - y)^2)`` over all elements, with one full batch of 8
examples, 3 inputs and 2 outputs, in float64. Each case takes ``STEPS`` updates
from the same start and records ``W`` and ``b`` after every one.

To regenerate ``tests/fixtures/torch_optimizers.json``, run with an interpreter
that has torch (a throw-away virtual environment outside the repository is
enough)::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python scripts/make_optimizer_fixtures.py

Every case stores the torch optimizer and its keyword arguments next to the
theanets algorithm and keyword arguments that implement the same rule. The
parameter mappings are:

* ``SGD(lr, momentum)`` is ``sgd`` with the same ``learning_rate`` and
  ``momentum``: torch keeps a buffer ``b <- mu b + g`` and moves by
  ``-lr b``; theanets keeps the velocity ``v = -lr b``. With
  ``nesterov=True`` both move by ``mu^2 v - (1 + mu) lr g`` and keep
  ``v <- mu v - lr g`` (``nag``, or ``sgd`` with ``nesterov=True``).
* ``torch.nn.utils.clip_grad_value_(c)`` before the step is
  ``max_gradient_elem=c``.
* ``Rprop(lr, etas=(down, up), step_sizes=(lo, hi))`` is ``rprop`` with
  ``learning_rate=lr``, ``rprop_decrease=down``, ``rprop_increase=up``,
  ``rprop_min_step=lo`` and ``rprop_max_step=hi`` (both are iRprop-).
* ``RMSprop(alpha, centered=True)`` is ``rmsprop`` with a half-life ``h``
  where ``alpha = exp(-ln 2 / h)``. torch adds ``eps`` outside the square
  root and theanets (following Graves 2013 and downhill) inside it, so the
  cases use ``eps = rms_regularizer = 0``.
* ``Adagrad`` likewise adds ``eps`` outside the square root; cases use 0.
* ``Adadelta(lr=1, rho)`` is ``adadelta`` with ``rho = exp(-ln 2 / h)`` and
  ``eps = rms_regularizer`` (the same formula, Zeiler 2012).
* ``Adam(lr, betas, eps)`` is ``adam`` with ``beta1``/``beta2`` (or their
  half-lives) and ``epsilon`` (Kingma & Ba 2015, Algorithm 1).
"""

import json
import math
import os

import numpy as np
import torch

STEPS = 6
HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, os.pardir, "tests", "fixtures", "torch_optimizers.json")


def decay(halflife):
    """The moving-average weight of a half-life, as theanets computes it."""
    return float(np.exp(-np.log(2) / halflife))


def problem():
    rs = np.random.RandomState(20130616)
    x = rs.randn(8, 3)
    y = x @ rs.randn(3, 2) + 0.3 * rs.randn(8, 2) + 0.5
    w0 = 0.5 * rs.randn(3, 2)
    b0 = np.array([0.2, -0.1])
    return {"x": x, "y": y, "w0": w0, "b0": b0}


#: (name, torch class, torch kwargs, elementwise clip or None, theanets algo, theanets kwargs)
CASES = [
    ("sgd", "SGD", {"lr": 0.1}, None, "sgd", {"learning_rate": 0.1}),
    (
        "sgd-momentum",
        "SGD",
        {"lr": 0.1, "momentum": 0.9},
        None,
        "sgd",
        {"learning_rate": 0.1, "momentum": 0.9},
    ),
    (
        "sgd-nesterov",
        "SGD",
        {"lr": 0.1, "momentum": 0.9, "nesterov": True},
        None,
        "sgd",
        {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
    ),
    (
        "nag",
        "SGD",
        {"lr": 0.05, "momentum": 0.7, "nesterov": True},
        None,
        "nag",
        {"learning_rate": 0.05, "momentum": 0.7},
    ),
    (
        "sgd-clip",
        "SGD",
        {"lr": 0.1},
        0.05,
        "sgd",
        {"learning_rate": 0.1, "max_gradient_elem": 0.05},
    ),
    (
        "rprop",
        "Rprop",
        {"lr": 0.05, "etas": (0.99, 1.01), "step_sizes": (0.0, 100.0)},
        None,
        "rprop",
        {"learning_rate": 0.05},
    ),
    (
        "rprop-flips",
        "Rprop",
        {"lr": 0.6, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0)},
        None,
        "rprop",
        {
            "learning_rate": 0.6,
            "rprop_decrease": 0.5,
            "rprop_increase": 1.2,
            "rprop_min_step": 1e-6,
            "rprop_max_step": 50.0,
        },
    ),
    (
        "rmsprop",
        "RMSprop",
        {"lr": 0.01, "alpha": decay(14), "eps": 0.0, "centered": True},
        None,
        "rmsprop",
        {"learning_rate": 0.01, "rms_halflife": 14, "rms_regularizer": 0.0},
    ),
    (
        "rmsprop-momentum",
        "RMSprop",
        {"lr": 0.02, "alpha": decay(3), "eps": 0.0, "centered": True, "momentum": 0.5},
        None,
        "rmsprop",
        {"learning_rate": 0.02, "rms_halflife": 3, "rms_regularizer": 0.0, "momentum": 0.5},
    ),
    (
        "adagrad",
        "Adagrad",
        {"lr": 0.1, "eps": 0.0},
        None,
        "adagrad",
        {"learning_rate": 0.1, "rms_regularizer": 0.0},
    ),
    (
        "adadelta",
        "Adadelta",
        {"lr": 1.0, "rho": decay(14), "eps": 1e-6},
        None,
        "adadelta",
        {"rms_halflife": 14, "rms_regularizer": 1e-6},
    ),
    (
        "adadelta-short",
        "Adadelta",
        {"lr": 1.0, "rho": decay(2), "eps": 1e-3},
        None,
        "adadelta",
        {"rms_halflife": 2, "rms_regularizer": 1e-3},
    ),
    (
        "adam",
        "Adam",
        {"lr": 0.01, "betas": (decay(7), decay(69)), "eps": 1e-8},
        None,
        "adam",
        {"learning_rate": 0.01},
    ),
    (
        "adam-betas",
        "Adam",
        {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3},
        None,
        "adam",
        {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-3},
    ),
]


def run(data, klass, kwargs, clip):
    """Take ``STEPS`` full-batch updates with a torch optimizer."""
    x = torch.tensor(data["x"], dtype=torch.float64)
    y = torch.tensor(data["y"], dtype=torch.float64)
    w = torch.tensor(data["w0"], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(data["b0"], dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, klass)([w, b], foreach=False, **kwargs)
    trajectory = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_value_([w, b], clip)
        opt.step()
        trajectory.append({"w": w.detach().numpy().tolist(), "b": b.detach().numpy().tolist()})
    return trajectory


def sign_flips(data, trajectory):
    """Count gradient sign changes along a trajectory (to check rprop-flips)."""
    x, y = data["x"], data["y"]
    n = y.size
    grads = []
    for w, b in [(data["w0"], data["b0"])] + [
        (np.array(s["w"]), np.array(s["b"])) for s in trajectory
    ]:
        r = x @ w + b - y
        grads.append(np.concatenate([(2 / n * x.T @ r).ravel(), 2 / n * r.sum(axis=0)]))
    signs = np.sign(grads)
    return int((signs[1:] != signs[:-1]).sum())


def main():
    torch.set_default_dtype(torch.float64)
    data = problem()
    cases = []
    for name, klass, kwargs, clip, algo, ours in CASES:
        trajectory = run(data, klass, kwargs, clip)
        assert all(math.isfinite(v) for s in trajectory for v in np.ravel(s["w"])), name
        if name == "rprop-flips":
            assert sign_flips(data, trajectory) > 0, "rprop-flips should overshoot"
        cases.append(
            {
                "name": name,
                "torch": klass,
                "torch_kwargs": {
                    k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()
                },
                "clip_grad_value": clip,
                "algo": algo,
                "kwargs": ours,
                "trajectory": trajectory,
            }
        )
    fixture = {
        "description": (
            "torch.optim trajectories of a linear regressor, loss mean((x W + b - y)^2), "
            "full batch, float64; written by scripts/make_optimizer_fixtures.py"
        ),
        "torch_version": torch.__version__,
        "steps": STEPS,
        "problem": {k: v.tolist() for k, v in data.items()},
        "cases": cases,
    }
    with open(OUTPUT, "w") as handle:
        json.dump(fixture, handle, indent=1)
        handle.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(OUTPUT)}")


if __name__ == "__main__":
    main()
