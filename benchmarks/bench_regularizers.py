"""Cost of regularizers per training step.

Two models are trained with plain SGD, batch 128; one step is a call of a
compiled PyTensor function that evaluates the loss and applies the updates
the trainer would apply: the SGD rule of :mod:`theanets.optimizers`
(``Optimizer.get_updates``) plus the graph's own updates (random streams of
dropout and noise).

* ``shallow``: a 784-256-784 sigmoid autoencoder (float32), once without
  regularizers and once with each of ``weight_l2``, ``hidden_l1``,
  ``input_dropout``, ``input_noise`` and ``contractive``.
* ``deep``: the contractive penalty beyond the first layer, on a
  256-128-64-128-256 sigmoid autoencoder in the default float type (what a
  new user gets): the plain step against ``contractive`` on ``hid1:out``,
  ``hid2:out`` and ``hid3:out`` (each alone) and the default
  ``contractive=0.1`` (every hidden layer). Timed with the default number
  of BLAS threads and with one thread (through ``threadpoolctl`` when it is
  installed); the time to compile each step and run it once, and the first
  ``itertrain`` epoch of a new network (compiling included), are reported
  too.

Configurations are timed in interleaved rounds, so slow drifts of a shared
machine hit them all alike; the median time per step of each is printed
with its spread (min-max over rounds) and its ratio to the unregularized
step. Results go to ``benchmarks/results.json`` under ``regularizers``.

Usage::

    python benchmarks/bench_regularizers.py [--rounds 7] [--steps 20]
        [--activation sigmoid] [--jacobian] [--only shallow|deep]

``--jacobian`` also times the contractive penalty as it was computed before
the chain rule was used beyond the first layer: the full Jacobian from
:func:`pytensor.gradient.jacobian` (vectorized), on the shallow model
instead of the closed form and on the deep model for ``hid2:out``,
``hid3:out`` and the default pattern (about a minute to compile each); the
deep rows then also give ``speedup_vs_jacobian``.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# theanets before PyTensor: it points PyTensor's C backend at a BLAS
import theanets  # noqa: E402, I001
import numpy as np  # noqa: E402
import pytensor  # noqa: E402
from _common import interleaved_times, record, thread_limit  # noqa: E402

from theanets import optimizers  # noqa: E402
from theanets.regularizers import _jacobian as J  # noqa: E402

CONFIGS = [
    ("none", {}),
    ("weight_l2", dict(weight_l2=1e-4)),
    ("hidden_l1", dict(hidden_l1=0.1)),
    ("input_dropout", dict(input_dropout=0.3)),
    ("input_noise", dict(input_noise=0.1)),
    ("contractive", dict(contractive=0.1)),
]

DEEP_LAYERS = [256, (128, "sigmoid"), (64, "sigmoid"), (128, "sigmoid"), 256]
DEEP_CONFIGS = [
    ("plain", {}),
    ("hid1:out", dict(contractive=dict(weight=0.1, pattern="hid1:out"))),
    ("hid2:out", dict(contractive=dict(weight=0.1, pattern="hid2:out"))),
    ("hid3:out", dict(contractive=dict(weight=0.1, pattern="hid3:out"))),
    ("default", dict(contractive=0.1)),
]


def step_mode():
    """The mode theanets compiles its own functions with (PyTensor's default if it has none)."""
    backend = getattr(theanets, "backend", None)
    return backend.choose_mode() if backend is not None else None


def build_step(net, kwargs, learning_rate=0.01):
    """Compile one SGD training step for the network with these regularizers."""
    loss = net.loss(**kwargs)
    opt = optimizers.build("sgd", loss, net.params, net.variables)
    updates = list(net.updates(**kwargs)) + list(opt.get_updates(learning_rate=learning_rate))
    return pytensor.function(net.variables, loss, updates=updates, mode=step_mode())


@contextlib.contextmanager
def general_path(closed_form=True):
    """Build contractive penalties without the chain rule, as before it was used.

    The first layer keeps its closed form unless ``closed_form`` is False;
    everything else forms the full Jacobian.
    """
    saved = J._chain_norms, J._closed_form_norm
    J._chain_norms = lambda zs, xs, mode=None: [None] * len(zs)
    if not closed_form:
        J._closed_form_norm = lambda z, xs: None
    try:
        yield
    finally:
        J._chain_norms, J._closed_form_norm = saved


def compile_steps(net, configs, batch):
    """Compile each configuration; return (steps, seconds to compile and run once)."""
    steps, seconds = {}, {}
    for name, kwargs in configs:
        start = time.perf_counter()
        steps[name] = build_step(net, kwargs)
        steps[name](batch)
        seconds[name] = round(time.perf_counter() - start, 2)
        print(f"compiled {name:<24s} in {seconds[name]:6.2f} s", flush=True)
    return steps, seconds


def time_steps(steps, batches, rounds, counts):
    """Interleaved rounds of ``counts[name]`` steps; seconds per step, one entry per round."""

    def runner(name):
        fn, n = steps[name], counts[name]

        def run():
            for i in range(n):
                fn(batches[i % len(batches)])

        return run

    times = interleaved_times({name: runner(name) for name in steps}, repeats=rounds)
    return {name: [t / counts[name] for t in values] for name, values in times.items()}


def summarize(times, base):
    """Median, spread and ratio (to ``base``) per configuration, printed as a table."""
    reference = statistics.median(times[base])
    print(f"\n{'config':<26s}{'ms/step':>10s}{'min-max':>18s}{'ratio':>8s}")
    table = {}
    for name, values in times.items():
        median = statistics.median(values)
        row = dict(
            ms=round(1000 * median, 3),
            min_ms=round(1000 * min(values), 3),
            max_ms=round(1000 * max(values), 3),
            ratio=round(median / reference, 2),
        )
        spread = f"{row['min_ms']:.2f}-{row['max_ms']:.2f}"
        print(f"{name:<26s}{row['ms']:10.2f}{spread:>18s}{row['ratio']:8.2f}")
        table[name] = row
    return table


def shallow(args):
    """The 784-256-784 autoencoder with each regularizer (float32)."""
    with pytensor.config.change_flags(floatX="float32"):
        net = theanets.Autoencoder([784, (args.hidden, args.activation), 784])
        initial = [p.get_value() for p in net.params]
        rng = np.random.default_rng(0)
        batches = [rng.uniform(size=(args.batch, 784)).astype("float32") for _ in range(8)]
        configs = list(CONFIGS)
        steps, _ = compile_steps(net, configs, batches[0])
        if args.jacobian:
            with general_path(closed_form=False):
                steps.update(
                    compile_steps(net, [("contractive (jacobian)", CONFIGS[-1][1])], batches[0])[0]
                )
        counts = {
            name: args.steps if "jacobian" not in name else max(1, args.steps // 10)
            for name in steps
        }
        times = time_steps(steps, batches, args.rounds, counts)
        for param, value in zip(net.params, initial, strict=True):
            param.set_value(value)
    print(f"\nshallow: 784-{args.hidden}-784 {args.activation} autoencoder, float32")
    return summarize(times, "none")


def first_epoch(kwargs, batch, batches=10):
    """Seconds for a new network's first ``itertrain`` epoch (compiling, validating, training)."""
    net = theanets.Autoencoder(DEEP_LAYERS)
    data = np.random.default_rng(1).uniform(size=(batch * batches, 256))
    start = time.perf_counter()
    run = net.itertrain([data], algo="sgd", batch_size=batch, validate_every=100, **kwargs)
    next(run)
    return round(time.perf_counter() - start, 2)


def deep(args):
    """The contractive penalty on the 256-128-64-128-256 autoencoder, default float type."""
    net = theanets.Autoencoder(DEEP_LAYERS)
    initial = [p.get_value() for p in net.params]
    rng = np.random.default_rng(0)
    dtype = pytensor.config.floatX
    batches = [rng.uniform(size=(args.batch, 256)).astype(dtype) for _ in range(8)]
    steps, compile_s = compile_steps(net, DEEP_CONFIGS, batches[0])
    if args.jacobian:
        with general_path():
            more, seconds = compile_steps(
                net, [(f"{name} (jacobian)", kw) for name, kw in DEEP_CONFIGS[2:]], batches[0]
            )
        steps.update(more)
        compile_s.update(seconds)
    # fewer steps per round for the slow configurations
    counts = {name: args.steps if name in ("plain", "hid1:out") else 2 for name in steps}
    results = dict(
        network=f"256-128-64-128-256 sigmoid autoencoder, batch {args.batch}, {dtype}, sgd",
        mode=str(step_mode() or pytensor.config.mode),
        compile_and_first_step_s=compile_s,
        first_epoch_s=dict(plain=first_epoch({}, args.batch)),
    )
    results["first_epoch_s"]["default"] = first_epoch(dict(contractive=0.1), args.batch)
    if args.jacobian:
        with general_path():
            results["first_epoch_s"]["default (jacobian)"] = first_epoch(
                dict(contractive=0.1), args.batch
            )
    print("first epoch of a new network (s):", results["first_epoch_s"])
    for label, threads in (("threads_default", None), ("threads_1", 1)):
        with thread_limit(threads) if threads else contextlib.nullcontext():
            times = time_steps(steps, batches, args.rounds, counts)
        print(f"\ndeep: {results['network']}, {label}")
        results[label] = summarize(times, "plain")
        for name in list(times):
            if name.endswith(" (jacobian)"):
                chain = name[: -len(" (jacobian)")]
                speedup = results[label][name]["ms"] / results[label][chain]["ms"]
                results[label][chain]["speedup_vs_jacobian"] = round(speedup, 2)
        for param, value in zip(net.params, initial, strict=True):
            param.set_value(value)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per round (fast configs)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--only", choices=["shallow", "deep"])
    parser.add_argument("--no-record", action="store_true", help="do not write results.json")
    parser.add_argument(
        "--jacobian",
        action="store_true",
        help="also time contractive through the general Jacobian path",
    )
    args = parser.parse_args(argv)
    print(f"pytensor {pytensor.__version__}, mode {step_mode() or pytensor.config.mode}")
    results = {}
    if args.only != "deep":
        results["shallow"] = shallow(args)
    if args.only != "shallow":
        results["deep"] = deep(args)
    if not args.no_record:
        record("regularizers", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
