"""Speed of a small convnet training step: theanets vs hand-written PyTensor vs PyTorch.

The network: 28x28x1 inputs, two 3x3 convolutions (32 and 64 filters, relu)
each followed by 2x2 max pooling, a 128-unit relu layer and a 10-way softmax;
batch 64, float32, plain SGD. Contenders, timed side by side in one process
with interleaved repetitions:

* ``theanets``: ``net.itertrain(algo='sgd')`` (one epoch = ``BATCHES`` steps);
* ``pytensor``: one compiled PyTensor function of ``net.loss()`` and SGD
  updates of ``net.params`` (the same graph without the trainer);
* ``torch``: the same model in PyTorch on the CPU.

Every contender uses one BLAS/PyTorch thread by default (``--threads``), and
PyTensor's default (Numba) backend unless ``--mode`` names another, e.g.
``--mode CVM`` for the C backend. Run ``python benchmarks/bench_convolution.py``;
results go to ``benchmarks/results.json`` under ``convolution`` (or
``convolution_<mode>``).
"""

import argparse
import json
import os
import statistics
import sys


def _threads(argv):
    """The --threads value, read before NumPy/BLAS are loaded (default 1)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
    return "1"


# BLAS libraries read their thread count when they are loaded. One thread for
# every contender keeps the comparison fair on a machine shared with other jobs
# (busy cores make multithreaded BLAS and PyTorch spin and stall).
THREADS = int(_threads(sys.argv[1:]))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    interleaved_times,
    ratio,
    record,
    set_float32,
    torch_or_none,
)

BATCH = 64
BATCHES = 8
LEARNING_RATE = 0.01
SHAPE = (28, 28, 1)
CLASSES = 10


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


def theanets_epoch(net, x, y):
    """A callable running one epoch of ``net.itertrain`` with SGD."""
    run = net.itertrain(
        [x, y],
        algo="sgd",
        learning_rate=LEARNING_RATE,
        batch_size=BATCH,
        validate_every=10**9,
        patience=10**9,
    )
    next(run)  # the first epoch includes the initial validation
    return lambda: next(run)


def pytensor_epoch(net, x, y):
    """One epoch of a compiled PyTensor step: ``net.loss()`` plus SGD updates."""
    import pytensor

    loss = net.loss()
    params = net.params
    grads = pytensor.grad(loss, params)
    rate = np.float32(LEARNING_RATE)
    step = pytensor.function(
        net.variables, loss, updates=[(p, p - rate * g) for p, g in zip(params, grads)]
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


def interleaved_stats(contenders, repeats, warmup=1):
    """Time callables in interleaved rounds; return (median, minimum) seconds per call.

    The minimum is the steadier figure on a machine shared with other jobs
    (contention only ever adds time); the median is reported beside it.
    """
    times = interleaved_times(contenders, repeats=repeats, warmup=warmup)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def blas_ops(fn):
    """Names of the matrix-product ops in a compiled function's graph."""
    names = [type(node.op).__name__ for node in fn.maker.fgraph.toposort()]
    return sorted(
        {n for n in names if n in ("Dot", "Dot22", "Gemm", "Dot22Scalar", "Gemv", "MatMul")}
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/PyTorch threads (1)")
    parser.add_argument(
        "--mode", default=None, help="PyTensor mode, e.g. CVM for the C backend (default: Numba)"
    )
    args = parser.parse_args(argv)
    import theanets  # noqa: F401  (first: it points PyTensor's C backend at OpenBLAS)

    set_float32()
    import pytensor

    if args.mode:
        pytensor.config.mode = args.mode

    torch = torch_or_none()
    if torch is not None:
        torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    x, y = make_data(rng)

    net = theanets_network()
    reference, step = pytensor_epoch(theanets_network(), x, y)
    contenders = {"theanets": theanets_epoch(net, x, y), "pytensor": reference}
    agreement = None
    if torch is not None:
        torch_run, model, loss_at = torch_epoch(torch, theanets_network(), x, y)
        contenders["torch"] = torch_run
        # Same weights, same data: both libraries must agree on the loss.
        ours = float(theanets_network().loss_value(x[:BATCH], y[:BATCH]))
        with torch.no_grad():
            agreement = abs(ours - float(loss_at(0)))
    stats = interleaved_stats(contenders, repeats=args.repeats)
    step_ms = {k: 1000 * v[0] / BATCHES for k, v in stats.items()}
    best_ms = {k: 1000 * v[1] / BATCHES for k, v in stats.items()}
    results = {
        "network": "28x28x1 conv3x3x32 pool2 conv3x3x64 pool2 dense128 softmax10, batch 64",
        "mode": f"{pytensor.config.mode} ({type(step.maker.linker).__name__})",
        "threads": THREADS,
        "matrix_product_ops": blas_ops(step),
        "train_step_ms_median": {k: round(v, 2) for k, v in step_ms.items()},
        "train_step_ms_min": {k: round(v, 2) for k, v in best_ms.items()},
        "train_ratio_vs_torch": ratio(step_ms["theanets"], step_ms.get("torch")),
        "train_ratio_vs_torch_min": ratio(best_ms["theanets"], best_ms.get("torch")),
        "pytensor_ratio_vs_torch": ratio(step_ms["pytensor"], step_ms.get("torch")),
        "train_ratio_vs_pytensor": ratio(step_ms["theanets"], step_ms["pytensor"]),
        "initial_loss_abs_diff_vs_torch": None if agreement is None else float(f"{agreement:.2g}"),
    }
    record("convolution" + (f"_{args.mode.lower()}" if args.mode else ""), results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
