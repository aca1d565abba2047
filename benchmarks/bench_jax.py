"""Training steps under PyTensor's JAX backend vs theanets' default backend vs PyTorch.

Three workloads, float32, one epoch = ``--batches`` training steps of
``net.itertrain`` (the path users take):

* ``mlp``: a 784-512-512-10 relu classifier, batch 128, SGD with momentum;
* ``lstm``: 32 inputs, a 128-unit LSTM, 32 outputs, 50 time steps, batch 64,
  SGD with momentum, mean squared error;
* ``conv``: 28x28x1 inputs, conv 3x3x32, pool 2, conv 3x3x64, pool 2, a
  128-unit relu layer and 10 classes, batch 64, plain SGD.

Contenders, timed side by side in one process with interleaved repetitions
(median and minimum of the rounds reported):

* ``default``: theanets with the backend it picks by itself
  (:func:`theanets.backend.choose_mode`, no settings);
* ``jax``: theanets with ``theanets.backend.set_mode('JAX')``, on JAX's
  default device;
* ``torch``: the same model in PyTorch on the CPU (its own initial values).

Each workload also reports the absolute difference between the first
training loss of the two theanets backends (same initial values, same data):
both compute the same numbers.

The script times every contender twice, in two fresh processes: with the
default number of threads and with one thread (``OMP_NUM_THREADS``, the
BLAS variables, ``torch.set_num_threads`` and XLA's CPU thread flags, all set
before the libraries load). When JAX's default device is a GPU it adds a
third process: ``jax`` on the GPU against PyTorch on CUDA, with the device
named in the results; without a GPU the results say so.

Run ``python benchmarks/bench_jax.py`` (``--quick`` for a short smoke run);
results go to ``benchmarks/results.json`` under ``jax``.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

WORKLOADS = ("mlp", "lstm", "conv")
LEARNING_RATE, MOMENTUM = 0.01, 0.9
MLP_SIZES, MLP_BATCH = (784, 512, 512, 10), 128
LSTM_SIZES, LSTM_STEPS, LSTM_BATCH = (32, 128, 32), 50, 64
CONV_SHAPE, CONV_BATCH, CLASSES = (28, 28, 1), 64, 10


# ----------------------------------------------------------------------
# workloads: data, theanets networks, PyTorch models


def make_data(workload, rng, batches):
    """Training arrays (x, y) for ``batches`` steps of ``workload``; and the batch size."""
    if workload == "mlp":
        n = MLP_BATCH * batches
        x = rng.normal(size=(n, MLP_SIZES[0])).astype("float32")
        return x, rng.integers(0, MLP_SIZES[-1], size=n).astype("int32"), MLP_BATCH
    if workload == "lstm":
        n, (ni, _, no) = LSTM_BATCH * batches, LSTM_SIZES
        x = rng.normal(size=(n, LSTM_STEPS, ni)).astype("float32")
        y = rng.normal(size=(n, LSTM_STEPS, no)).astype("float32")
        return x, y, LSTM_BATCH
    n = CONV_BATCH * batches
    x = rng.normal(size=(n, *CONV_SHAPE)).astype("float32")
    return x, rng.integers(0, CLASSES, size=n).astype("int32"), CONV_BATCH


def theanets_network(workload):
    import theanets

    if workload == "mlp":
        a, b, c, d = MLP_SIZES
        return theanets.Classifier([a, (b, "relu"), (c, "relu"), d], rng=1)
    if workload == "lstm":
        ni, nh, no = LSTM_SIZES
        return theanets.recurrent.Regressor([ni, (nh, "lstm"), no], rng=1)
    return theanets.convolution.Classifier(
        [
            CONV_SHAPE,
            dict(form="conv2", size=32, filter_size=3),
            dict(form="pool2", pool_size=2, activation="linear"),
            dict(form="conv2", size=64, filter_size=3),
            dict(form="pool2", pool_size=2, activation="linear"),
            dict(form="flatten", activation="linear"),
            (128, "relu"),
            CLASSES,
        ],
        rng=1,
    )


def theanets_epoch(workload, mode, x, y, batch):
    """A callable running one epoch of ``net.itertrain`` compiled in ``mode``; its first loss."""
    from theanets import backend

    net = theanets_network(workload)
    run = net.itertrain(
        [x, y],
        algo="sgd",
        learning_rate=LEARNING_RATE,
        momentum=0 if workload == "conv" else MOMENTUM,
        batch_size=batch,
        validate_every=10**9,
        patience=10**9,
    )

    def epoch():
        # the mode is looked up whenever a function is needed: hold it for the call
        previous = backend.set_mode(mode)
        try:
            return next(run)
        finally:
            backend.set_mode(previous)

    first, _ = epoch()  # compiles; epoch 0 is the initial validation
    return epoch, first["loss"]


def torch_epoch(torch, workload, x, y, batch, device):
    """One epoch of the same model in PyTorch on ``device``."""
    nn = torch.nn
    torch.manual_seed(0)
    if workload == "mlp":
        a, b, c, d = MLP_SIZES
        model = nn.Sequential(
            nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c), nn.ReLU(), nn.Linear(c, d)
        )
        loss_fn, tx = nn.CrossEntropyLoss(), torch.from_numpy(x)
        ty = torch.from_numpy(y.astype("int64"))
    elif workload == "lstm":
        ni, nh, no = LSTM_SIZES

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = nn.LSTM(ni, nh, batch_first=True)
                self.out = nn.Linear(nh, no)

            def forward(self, inputs):
                return self.out(self.rnn(inputs)[0])

        model, tx, ty = Model(), torch.from_numpy(x), torch.from_numpy(y)

        def loss_fn(out, target):
            return ((out - target) ** 2).mean()

    else:
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
        loss_fn = nn.CrossEntropyLoss()
        tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        ty = torch.from_numpy(y.astype("int64"))
    model, tx, ty = model.to(device), tx.to(device), ty.to(device)
    momentum = 0 if workload == "conv" else MOMENTUM
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=momentum)

    def epoch():
        for i in range(0, len(tx), batch):
            opt.zero_grad()
            loss = loss_fn(model(tx[i : i + batch]), ty[i : i + batch])
            loss.backward()
            opt.step()
        if device != "cpu":
            torch.cuda.synchronize()

    return epoch


# ----------------------------------------------------------------------
# one measuring process


def measure(args):
    """Time every workload in this process; return the results."""
    import statistics

    import numpy as np
    from _common import interleaved_times, ratio, set_float32, torch_or_none

    import theanets  # noqa: F401  (first: it points PyTensor's C backend at OpenBLAS)

    set_float32()
    import jax

    from theanets import backend

    torch = torch_or_none()
    gpu = args.device == "gpu"
    device = "cuda" if gpu else "cpu"
    if torch is not None:
        if args.threads:
            torch.set_num_threads(args.threads)
        if gpu and not torch.cuda.is_available():
            torch = None
    results = {
        "jax_device": f"{jax.default_backend()}: {jax.devices()[0].device_kind}",
        "default_mode": str(backend.choose_mode()),
        "threads": args.threads or "default",
    }
    if torch is not None and gpu:
        results["torch_device"] = torch.cuda.get_device_name(0)
    for workload in args.workloads.split(","):
        rng = np.random.default_rng(0)
        x, y, batch = make_data(workload, rng, args.batches)
        contenders, first = {}, {}
        if not gpu:
            contenders["default"], first["default"] = theanets_epoch(workload, None, x, y, batch)
        contenders["jax"], first["jax"] = theanets_epoch(workload, "JAX", x, y, batch)
        if torch is not None:
            contenders["torch"] = torch_epoch(torch, workload, x, y, batch, device)
        times = interleaved_times(contenders, repeats=args.repeats)
        median = {k: 1000 * statistics.median(v) / args.batches for k, v in times.items()}
        best = {k: 1000 * min(v) / args.batches for k, v in times.items()}
        worst = {k: 1000 * max(v) / args.batches for k, v in times.items()}
        entry = {
            "train_step_ms_median": {k: round(v, 2) for k, v in median.items()},
            "train_step_ms_min": {k: round(v, 2) for k, v in best.items()},
            "train_step_ms_max": {k: round(v, 2) for k, v in worst.items()},
            "jax_ratio_vs_torch": ratio(median["jax"], median.get("torch")),
        }
        if "default" in median:
            entry["jax_ratio_vs_default"] = ratio(median["jax"], median["default"])
            entry["default_ratio_vs_torch"] = ratio(median["default"], median.get("torch"))
            entry["first_loss_abs_diff_default_vs_jax"] = float(
                f"{abs(first['jax'] - first['default']):.2g}"
            )
        results[workload] = entry
        print(workload, json.dumps(entry), flush=True)
    return results


# ----------------------------------------------------------------------
# the driver: one process per setting


def _environment(threads):
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
    return env


def _worker(options, threads, device):
    """Run :func:`measure` in a fresh process; return its results (or the error)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--device", device]
    command += ["--threads", str(threads or 0), *options]
    env = _environment(threads)
    if device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    sys.stdout.write(proc.stdout)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _has_gpu():
    code = "import jax; print(jax.default_backend())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() == "gpu"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=2, help="training steps per epoch")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="2 repeats of 1 step, no 1-thread run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.batches = 2, 1
    if args.worker:
        print(json.dumps(measure(args)))
        return
    from _common import record

    options = ["--repeats", str(args.repeats), "--batches", str(args.batches)]
    options += ["--workloads", args.workloads]
    results = {
        "config": "float32; mlp 784-512-512-10 batch 128; lstm 32-128-32 x 50 steps batch 64; "
        "conv 28x28x1 c3x3x32 p2 c3x3x64 p2 d128 s10 batch 64; SGD"
    }
    results["cpu_default_threads"] = _worker(options, 0, "cpu")
    if not args.quick:
        results["cpu_1_thread"] = _worker(options, 1, "cpu")
    if _has_gpu():
        results["gpu"] = _worker(options, 0, "gpu")
    else:
        results["gpu"] = "not measured: JAX sees no GPU on this machine (CPU figures only)"
    record("jax", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
