"""Speed of recurrent training: LSTM and GRU regressors vs PyTorch on the CPU.

For each cell, a regressor with 32 inputs, 128 recurrent units and 32
outputs is trained on sequences of 50 time steps in batches of 64 (float32,
SGD with momentum 0.9, mean squared error). Contenders, timed side by side in
one process with interleaved repetitions:

* ``theanets``: ``net.itertrain`` with the default implementation (the fused
  recurrent loop of :mod:`theanets.layers.fused`) in the mode theanets
  chooses (:func:`theanets.backend.choose_mode`, recorded as ``mode``);
* ``theanets_numba`` / ``theanets_cvm``: the same in the other of PyTensor's
  Numba and C backends;
* ``scan``: ``net.itertrain`` with ``impl='scan'``, the reference loop
  written with :func:`pytensor.scan` (Numba backend: the C backend takes
  minutes to compile it on a cold cache; ``--no-scan`` skips it);
* ``torch``: ``torch.nn.LSTM``/``torch.nn.GRU`` plus a linear layer, with
  ``torch.optim.SGD`` (same learning rate and momentum).

Every contender is timed with the default thread settings (BLAS and PyTorch
use every core) and with one thread (:mod:`threadpoolctl` limits the BLAS
libraries, ``torch.set_num_threads`` PyTorch). Figures are milliseconds per
training step: the median over the repetitions and the fastest and slowest
one, plus the ratio of medians to PyTorch's. The load average of the machine
is recorded before and after, because other processes on the same cores
change these figures, multithreaded ones most.

Run ``python benchmarks/bench_recurrent.py``; results go to
``benchmarks/results.json`` under ``recurrent``.
"""

import argparse
import json
import os
import statistics

import numpy as np
from _common import interleaved_times, ratio, record, set_float32, thread_limit, torch_or_none

INPUTS, HIDDEN, OUTPUTS = 32, 128, 32
STEPS, BATCH = 50, 64
LEARNING_RATE, MOMENTUM = 0.01, 0.9
TORCH_CELLS = {"lstm": "LSTM", "gru": "GRU"}


def make_data(rng, batches):
    x = rng.normal(size=(BATCH * batches, STEPS, INPUTS)).astype("float32")
    y = np.tanh(np.cumsum(x[..., :OUTPUTS], axis=1) / 5).astype("float32")
    return x, y


def theanets_epoch(cell, x, y, impl="auto", mode=None):
    """Return (network, callable running one epoch of ``net.itertrain``).

    ``mode`` (a PyTensor mode name) is set with :func:`theanets.backend.set_mode`
    while the training function compiles; None keeps the automatic choice.
    """
    import theanets

    layer = dict(form=cell, size=HIDDEN, activation="tanh", impl=impl)
    net = theanets.recurrent.Regressor([INPUTS, layer, OUTPUTS])
    run = net.itertrain(
        [x, y],
        algo="sgd",
        learning_rate=LEARNING_RATE,
        momentum=MOMENTUM,
        batch_size=BATCH,
        validate_every=10**9,
        patience=10**9,
    )
    if mode is None:
        next(run)  # compiles; epoch 0 includes the initial validation
        return net, lambda: next(run)
    previous = theanets.backend.set_mode(mode)
    try:
        next(run)
    finally:
        theanets.backend.set_mode(previous)
    return net, lambda: next(run)


def torch_epoch(torch, cell, x, y):
    """One epoch of the equivalent PyTorch model (its own initial values)."""
    torch.manual_seed(0)
    rnn = getattr(torch.nn, TORCH_CELLS[cell])(INPUTS, HIDDEN, batch_first=True)
    out = torch.nn.Linear(HIDDEN, OUTPUTS)
    params = list(rnn.parameters()) + list(out.parameters())
    opt = torch.optim.SGD(params, lr=LEARNING_RATE, momentum=MOMENTUM)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def epoch():
        for i in range(0, len(x), BATCH):
            opt.zero_grad()
            hidden, _ = rnn(tx[i : i + BATCH])
            loss = ((out(hidden) - ty[i : i + BATCH]) ** 2).mean()
            loss.backward()
            opt.step()

    return epoch


def summarize(times, batches):
    """Per-step milliseconds: median and [fastest, slowest], per contender."""
    per_step = {k: [1000 * t / batches for t in v] for k, v in times.items()}
    median = {k: round(statistics.median(v), 2) for k, v in per_step.items()}
    spread = {k: [round(min(v), 2), round(max(v), 2)] for k, v in per_step.items()}
    return median, spread


def load_average():
    """The 1-minute load average, or None where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, default=4, help="training steps per epoch")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--no-scan", action="store_true", help="skip the scan contender")
    args = parser.parse_args(argv)
    import theanets  # (before PyTensor: lets theanets point the C backend at BLAS)

    set_float32()
    torch = torch_or_none()
    default_threads = torch.get_num_threads() if torch is not None else None
    rng = np.random.default_rng(0)
    x, y = make_data(rng, args.batches)
    mode = str(theanets.backend.choose_mode())
    other = "NUMBA" if mode.upper() != "NUMBA" else "CVM"

    results = {
        "config": dict(
            inputs=INPUTS,
            hidden=HIDDEN,
            outputs=OUTPUTS,
            steps=STEPS,
            batch=BATCH,
            dtype="float32",
            optimizer="sgd+momentum",
        ),
        "mode": mode,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_average(),
    }
    for cell in args.cells.split(","):
        contenders = {
            "theanets": theanets_epoch(cell, x, y)[1],
            f"theanets_{other.lower()}": theanets_epoch(cell, x, y, mode=other)[1],
        }
        if not args.no_scan:
            contenders["scan"] = theanets_epoch(cell, x, y, impl="scan", mode="NUMBA")[1]
        if torch is not None:
            contenders["torch"] = torch_epoch(torch, cell, x, y)
        results[cell] = {}
        for label, threads in (("default_threads", None), ("threads_1", 1)):
            if torch is not None:
                torch.set_num_threads(threads or default_threads)
            with thread_limit(threads):
                times = interleaved_times(contenders, repeats=args.repeats)
            median, spread = summarize(times, args.batches)
            torch_ms = median.get("torch")
            results[cell][label] = {
                "train_step_ms": median,
                "train_step_ms_min_max": spread,
                "ratio_vs_torch": {
                    k: ratio(v, torch_ms) for k, v in median.items() if k != "torch"
                },
                "load_average": load_average(),
            }
            print(cell, label, json.dumps(results[cell][label]), flush=True)
        if torch is not None:
            torch.set_num_threads(default_threads)
    results["load_average_after"] = load_average()
    record("recurrent", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
