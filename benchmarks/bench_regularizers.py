"""Cost of regularizers per training step.

A 784-256-784 autoencoder (float32, batch 128) is trained with plain SGD,
once without regularizers and once with each of ``weight_l2``,
``hidden_l1``, ``input_dropout``, ``input_noise`` and ``contractive``. One
step is a call of a compiled PyTensor function that evaluates the loss and
applies the updates the trainer would apply: the SGD rule of
:mod:`theanets.optimizers` (``Optimizer.get_updates``) plus the graph's own
updates (random streams of dropout and noise).

Configurations are timed in interleaved rounds, so slow drifts of a shared
machine hit them all alike; the median time per step of each is printed
with its ratio to the unregularized step.

Usage::

    python benchmarks/bench_regularizers.py [--rounds 7] [--steps 20]
        [--activation sigmoid] [--jacobian]

On a busy machine, pin BLAS to one thread (``OMP_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1``): multi-threaded matrix products that compete for
cores make every timing erratic.

``--jacobian`` also times the contractive penalty computed through the
general (vectorized Jacobian) path instead of the closed form, to show why
the closed form is used where it applies.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import pytensor  # noqa: E402

import theanets  # noqa: E402
from theanets import optimizers  # noqa: E402
from theanets import regularizers as R  # noqa: E402

CONFIGS = [
    ("none", {}),
    ("weight_l2", dict(weight_l2=1e-4)),
    ("hidden_l1", dict(hidden_l1=0.1)),
    ("input_dropout", dict(input_dropout=0.3)),
    ("input_noise", dict(input_noise=0.1)),
    ("contractive", dict(contractive=0.1)),
]


def build_step(net, kwargs, learning_rate=0.01):
    """Compile one SGD training step for the network with these regularizers."""
    loss = net.loss(**kwargs)
    opt = optimizers.build("sgd", loss, net.params, net.variables)
    updates = list(net.updates(**kwargs)) + list(opt.get_updates(learning_rate=learning_rate))
    return pytensor.function(net.variables, loss, updates=updates)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument(
        "--jacobian",
        action="store_true",
        help="also time contractive through the general Jacobian path",
    )
    args = parser.parse_args(argv)

    pytensor.config.floatX = "float32"
    print(
        f"pytensor {pytensor.__version__}, mode {pytensor.config.mode}, "
        f"floatX {pytensor.config.floatX}"
    )
    net = theanets.Autoencoder([784, (args.hidden, args.activation), 784])
    initial = [p.get_value() for p in net.params]
    rng = np.random.default_rng(0)
    batches = [rng.uniform(size=(args.batch, 784)).astype(pytensor.config.floatX) for _ in range(8)]

    configs = list(CONFIGS)
    steps = {}
    for name, kwargs in configs:
        start = time.perf_counter()
        steps[name] = build_step(net, kwargs)
        print(f"compiled {name:<22s} in {time.perf_counter() - start:5.2f} s")
    if args.jacobian:
        closed = R._closed_form_norm
        R._closed_form_norm = lambda z, xs: None  # force the vectorized Jacobian
        try:
            name = "contractive (jacobian)"
            start = time.perf_counter()
            steps[name] = build_step(net, dict(contractive=0.1))
            print(f"compiled {name:<22s} in {time.perf_counter() - start:5.2f} s")
            configs.append((name, None))
        finally:
            R._closed_form_norm = closed

    times = {name: [] for name, _ in configs}
    for fn in steps.values():  # warm up
        fn(batches[0])
    for _ in range(args.rounds):
        for name, _ in configs:
            fn = steps[name]
            n = args.steps if "jacobian" not in name else max(1, args.steps // 10)
            start = time.perf_counter()
            for i in range(n):
                fn(batches[i % len(batches)])
            times[name].append((time.perf_counter() - start) / n)
        for param, value in zip(net.params, initial, strict=True):
            param.set_value(value)

    base = np.median(times["none"])
    print(f"\n{'regularizer':<24s}{'ms/step':>10s}{'ratio':>8s}")
    for name, _ in configs:
        t = np.median(times[name])
        print(f"{name:<24s}{1000 * t:10.2f}{t / base:8.2f}")


if __name__ == "__main__":
    main()
