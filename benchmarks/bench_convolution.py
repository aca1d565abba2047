"""Speed of a small convnet: training steps vs PyTorch, and the first compile on a cold cache.

The network: 28x28x1 inputs, two 3x3 convolutions (32 and 64 filters, relu)
each followed by 2x2 max pooling, a 128-unit relu layer and a 10-way softmax;
batch 64, float32, plain SGD. Contenders, timed side by side in one process
with interleaved repetitions:

* ``theanets``: ``net.itertrain(algo='sgd')`` (one epoch = ``BATCHES`` steps)
  in the mode theanets chooses (:func:`theanets.backend.choose_mode`,
  recorded as ``mode``);
* ``theanets_numba`` / ``theanets_cvm``: the same in the other of PyTensor's
  Numba and C backends;
* ``pytensor``: one PyTensor function of ``net.loss()`` and SGD updates of
  ``net.params``, compiled in the same mode as ``theanets`` (the same graph
  without the training loop);
* ``torch``: the same model in PyTorch on the CPU, from the same weights.

Every contender is timed with the default thread settings and with one thread
(:mod:`threadpoolctl` limits the BLAS libraries, ``torch.set_num_threads``
PyTorch); figures are milliseconds per training step, the median over the
repetitions and the fastest and slowest one. The load average of the machine
is recorded too: other processes on the same cores slow multithreaded runs
most.

The first compile is measured in a fresh Python process with empty compile
caches (``PYTENSOR_FLAGS=base_compiledir=<new folder>``, which holds both
PyTensor's C modules and its Numba cache, and ``NUMBA_CACHE_DIR=<new
folder>``): the time from building the network to the end of the first
training epoch (``next(net.itertrain(...))``: compiling the training and
validation functions, the initial validation and one epoch), in wall seconds
and in CPU seconds of the process and the compilers it starts (less sensitive
to a busy machine). ``--cold-modes`` chooses the modes (default: the
automatic one; ``none`` skips it).

Run ``python benchmarks/bench_convolution.py``; results go to
``benchmarks/results.json`` under ``convolution``.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (
    interleaved_times,
    ratio,
    record,
    run_python,
    set_float32,
    thread_limit,
    torch_or_none,
)

BATCH = 64
BATCHES = 8
LEARNING_RATE = 0.01
SHAPE = (28, 28, 1)
CLASSES = 10

#: Run in a fresh process: time the first epoch of a new network in ``mode`` (or 'auto').
FIRST_EPOCH = """
import os, resource, sys, time
sys.path.insert(0, {here!r})
start = time.perf_counter()
import numpy as np
import theanets
import bench_convolution as bench
bench.set_float32()
if {mode!r} != 'auto':
    theanets.backend.set_mode({mode!r})
x, y = bench.make_data(np.random.default_rng(0))
begin = time.perf_counter()
net = bench.theanets_network()
bench.theanets_epoch(net, x, y)
wall = time.perf_counter() - begin
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
cpu = sum(u.ru_utime + u.ru_stime for u in usage)
print(round(wall, 2), round(cpu, 2), round(begin - start, 2))
"""


def make_data(rng):
    x = rng.normal(size=(BATCH * BATCHES,) + SHAPE).astype("float32")
    y = rng.integers(0, CLASSES, size=BATCH * BATCHES).astype("int32")
    return x, y


def theanets_network():
    import theanets

    return theanets.convolution.Classifier(
        [
            SHAPE,
            dict(form="conv2", size=32, filter_size=3),
            dict(form="pool2", pool_size=2, activation="linear"),
            dict(form="conv2", size=64, filter_size=3),
            dict(form="pool2", pool_size=2, activation="linear"),
            dict(form="flatten", activation="linear"),
            (128, "relu"),
            CLASSES,
        ]
    )


def theanets_epoch(net, x, y, mode=None):
    """A callable running one epoch of ``net.itertrain`` with SGD (compiled in ``mode``)."""
    import theanets

    run = net.itertrain(
        [x, y],
        algo="sgd",
        learning_rate=LEARNING_RATE,
        batch_size=BATCH,
        validate_every=10**9,
        patience=10**9,
    )
    if mode is None:
        next(run)  # the first epoch includes the initial validation
        return lambda: next(run)
    previous = theanets.backend.set_mode(mode)
    try:
        next(run)
    finally:
        theanets.backend.set_mode(previous)
    return lambda: next(run)


def pytensor_epoch(net, x, y, mode):
    """One epoch of a compiled PyTensor step: ``net.loss()`` plus SGD updates."""
    import pytensor

    loss = net.loss()
    params = net.params
    grads = pytensor.grad(loss, params)
    rate = np.float32(LEARNING_RATE)
    step = pytensor.function(
        net.variables,
        loss,
        updates=[(p, p - rate * g) for p, g in zip(params, grads)],
        mode=mode,
    )

    def epoch():
        for i in range(0, len(x), BATCH):
            step(x[i : i + BATCH], y[i : i + BATCH])

    return epoch, step


def torch_epoch(torch, net, x, y):
    """The same model in PyTorch, on (batch, channels, width, height), from the same weights."""
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 5 * 5, 128),
        nn.ReLU(),
        nn.Linear(128, CLASSES),
    )
    values = {p.name: p.get_value() for p in net.params}
    with torch.no_grad():
        for layer, name in ((model[0], "hid1"), (model[3], "hid3")):
            # theanets convolves (flipped filter); torch cross-correlates.
            layer.weight.copy_(torch.from_numpy(values[f"{name}.w"][:, :, ::-1, ::-1].copy()))
            layer.bias.copy_(torch.from_numpy(values[f"{name}.b"]))
        # theanets flattens (width, height, channels); torch (channels, width, height)
        w = values["hid6.w"].reshape(5, 5, 64, 128).transpose(2, 0, 1, 3).reshape(-1, 128)
        model[7].weight.copy_(torch.from_numpy(w.T.copy()))
        model[7].bias.copy_(torch.from_numpy(values["hid6.b"]))
        model[9].weight.copy_(torch.from_numpy(values["out.w"].T.copy()))
        model[9].bias.copy_(torch.from_numpy(values["out.b"]))
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # (batch, C, W, H)
    ty = torch.from_numpy(y.astype("int64"))

    def loss_at(i):
        return loss_fn(model(tx[i : i + BATCH]), ty[i : i + BATCH])

    def epoch():
        for i in range(0, len(x), BATCH):
            opt.zero_grad()
            loss = loss_at(i)
            loss.backward()
            opt.step()

    return epoch, model, loss_at


def load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def blas_ops(fn):
    """Names of the matrix-product ops in a compiled function's graph."""
    names = [type(node.op).__name__ for node in fn.maker.fgraph.toposort()]
    return sorted(
        {n for n in names if n in ("Dot", "Dot22", "Gemm", "Dot22Scalar", "Gemv", "MatMul")}
    )


def first_epoch_cold(mode):
    """Wall and CPU seconds of the first epoch in a fresh process with empty caches."""
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as cold:
        env = {
            "PYTENSOR_FLAGS": f"base_compiledir={cold}/pytensor",
            "NUMBA_CACHE_DIR": f"{cold}/numba",
        }
        out = run_python(FIRST_EPOCH.format(here=here, mode=mode), env=env)
    wall, cpu, imports = (float(v) for v in out.strip().splitlines()[-1].split())
    return {"wall_s": wall, "cpu_s": cpu, "import_s": imports}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--cold-modes",
        default="auto",
        help="modes for the cold first compile, comma-separated ('auto', 'CVM', 'NUMBA'; 'none')",
    )
    args = parser.parse_args(argv)
    import theanets  # (first: it points PyTensor's C backend at OpenBLAS)

    set_float32()
    torch = torch_or_none()
    default_threads = torch.get_num_threads() if torch is not None else None
    rng = np.random.default_rng(0)
    x, y = make_data(rng)
    mode = str(theanets.backend.choose_mode())
    other = "NUMBA" if mode.upper() != "NUMBA" else "CVM"
    load_before = load_average()

    reference, step = pytensor_epoch(theanets_network(), x, y, mode)
    contenders = {
        "theanets": theanets_epoch(theanets_network(), x, y),
        f"theanets_{other.lower()}": theanets_epoch(theanets_network(), x, y, mode=other),
        "pytensor": reference,
    }
    agreement = None
    if torch is not None:
        torch_run, model, loss_at = torch_epoch(torch, theanets_network(), x, y)
        contenders["torch"] = torch_run
        # Same weights, same data: both libraries must agree on the loss.
        ours = float(theanets_network().loss_value(x[:BATCH], y[:BATCH]))
        with torch.no_grad():
            agreement = abs(ours - float(loss_at(0)))

    results = {
        "network": "28x28x1 conv3x3x32 pool2 conv3x3x64 pool2 dense128 softmax10, batch 64",
        "mode": mode,
        "matrix_product_ops": blas_ops(step),
        "initial_loss_abs_diff_vs_torch": None if agreement is None else float(f"{agreement:.2g}"),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
    }
    for label, threads in (("default_threads", None), ("threads_1", 1)):
        if torch is not None:
            torch.set_num_threads(threads or default_threads)
        with thread_limit(threads):
            times = interleaved_times(contenders, repeats=args.repeats)
        per_step = {k: [1000 * t / BATCHES for t in v] for k, v in times.items()}
        median = {k: round(statistics.median(v), 2) for k, v in per_step.items()}
        results[label] = {
            "train_step_ms": median,
            "train_step_ms_min_max": {
                k: [round(min(v), 2), round(max(v), 2)] for k, v in per_step.items()
            },
            "ratio_vs_torch": {
                k: ratio(v, median.get("torch")) for k, v in median.items() if k != "torch"
            },
            "train_ratio_vs_pytensor": ratio(median["theanets"], median["pytensor"]),
            "load_average": load_average(),
        }
        print(label, json.dumps(results[label]), flush=True)
    if torch is not None:
        torch.set_num_threads(default_threads)

    cold_modes = [] if args.cold_modes == "none" else args.cold_modes.split(",")
    results["first_epoch_cold_cache"] = {m: first_epoch_cold(m) for m in cold_modes}
    results["load_average_after"] = load_average()
    record("convolution", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
