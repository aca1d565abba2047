"""Speed of recurrent training: LSTM and GRU regressors vs PyTorch on the CPU.

For each cell, a regressor with 32 inputs, 128 recurrent units and 32
outputs is trained on sequences of 50 time steps in batches of 64 (float32,
SGD with momentum 0.9, mean squared error). Contenders, timed side by side in
one process with interleaved repetitions (medians reported):

* ``theanets``: ``net.itertrain`` with the default implementation (the fused
  recurrent loop of :mod:`theanets.layers.fused`) and PyTensor's default
  backend;
* ``theanets_c``: the same with PyTensor's C backend (``mode='FAST_RUN'``);
* ``scan``: ``net.itertrain`` with ``impl='scan'`` (the reference
  :func:`pytensor.scan` loop), default backend;
* ``scan_c``: ``impl='scan'`` with the C backend (``--scan-c``; compiling
  it takes minutes on a cold cache);
* ``torch``: ``torch.nn.LSTM``/``torch.nn.GRU`` plus a linear layer, with
  ``torch.optim.SGD`` (same learning rate and momentum).

Run ``python benchmarks/bench_recurrent.py``; results go to
``benchmarks/results.json`` under ``recurrent``.
"""

import argparse
import contextlib
import json
import os

import numpy as np
from _common import interleaved, ratio, record, set_float32, torch_or_none

INPUTS, HIDDEN, OUTPUTS = 32, 128, 32
STEPS, BATCH = 50, 64
LEARNING_RATE, MOMENTUM = 0.01, 0.9
TORCH_CELLS = {"lstm": "LSTM", "gru": "GRU"}


def make_data(rng, batches):
    x = rng.normal(size=(BATCH * batches, STEPS, INPUTS)).astype("float32")
    y = np.tanh(np.cumsum(x[..., :OUTPUTS], axis=1) / 5).astype("float32")
    return x, y


def theanets_epoch(cell, x, y, impl="auto", mode=None):
    """Return (network, callable running one epoch of ``net.itertrain``)."""
    import pytensor

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
    flags = {} if mode is None else {"mode": mode}
    with pytensor.config.change_flags(**flags):
        next(run)  # compiles; epoch 0 includes the initial validation
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


def thread_limit(threads):
    """Limit every BLAS/OpenMP pool in the process (NumPy's, SciPy's, PyTorch's)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    return ThreadpoolController().limit(limits=threads)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, default=4, help="training steps per epoch")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument(
        "--threads", default=f"1,{os.cpu_count() or 1}", help="thread counts to time, e.g. 1,2"
    )
    parser.add_argument("--scan-c", action="store_true", help="also time scan with the C backend")
    parser.add_argument("--no-scan", action="store_true", help="skip the scan contenders")
    args = parser.parse_args(argv)
    import theanets  # noqa: F401  (before PyTensor: lets theanets point the C backend at BLAS)

    set_float32()
    torch = torch_or_none()
    rng = np.random.default_rng(0)
    x, y = make_data(rng, args.batches)
    threads = sorted({int(t) for t in args.threads.split(",")})

    results = {
        "config": dict(
            inputs=INPUTS,
            hidden=HIDDEN,
            outputs=OUTPUTS,
            steps=STEPS,
            batch=BATCH,
            dtype="float32",
            optimizer="sgd+momentum",
        )
    }
    for cell in args.cells.split(","):
        contenders = {}
        contenders["theanets"] = theanets_epoch(cell, x, y)[1]
        contenders["theanets_c"] = theanets_epoch(cell, x, y, mode="CVM")[1]
        if not args.no_scan:
            contenders["scan"] = theanets_epoch(cell, x, y, impl="scan")[1]
            if args.scan_c:
                contenders["scan_c"] = theanets_epoch(cell, x, y, impl="scan", mode="CVM")[1]
        if torch is not None:
            contenders["torch"] = torch_epoch(torch, cell, x, y)
        results[cell] = {}
        for count in threads:
            if torch is not None:
                torch.set_num_threads(count)
            with thread_limit(count):
                epoch = interleaved(contenders, repeats=args.repeats)
            step_ms = {k: round(1000 * v / args.batches, 2) for k, v in epoch.items()}
            torch_ms = step_ms.get("torch")
            results[cell][f"threads_{count}"] = {
                "train_step_ms": step_ms,
                "ratio_vs_torch": {
                    k: ratio(v, torch_ms) for k, v in step_ms.items() if k != "torch"
                },
            }
            print(cell, count, json.dumps(results[cell][f"threads_{count}"]), flush=True)
    record("recurrent", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
