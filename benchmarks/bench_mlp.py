"""Speed of the core path: MLP training step, predict latency, first call, memory.

Compares, side by side in one run with interleaved repetitions:

1. a 784-512-512-10 classifier training step (batch 128, float32, SGD with
   momentum): ``net.itertrain`` vs a hand-written PyTensor step on the same
   graph, compiled in the mode theanets chose (:mod:`theanets.backend`) and in
   PyTensor's default mode (Numba), vs PyTorch on the CPU; plus theanets' own
   compiled step called in a bare loop, which separates the cost of the
   training loop (batching, checks, monitors) from that of the compiled graph;
   and the wall time of one epoch; then ``net.itertrain`` and the hand-written
   PyTensor step again, interleaved with each other only
   (``train_ratio_vs_pytensor_pairwise``). At this size a step's time
   depends on its neighbours (PyTorch's threads still spinning, caches
   warmed by a contender with the same parameters): on a quiet machine the
   five-way rounds gave 1.13 where the two-way rounds gave 1.01;
2. ``predict`` latency at batch 1 and throughput at batch 4096 vs PyTorch's
   ``no_grad`` forward pass;
3. the first call of ``train`` (graph build + compile) with a warm and a cold
   compile cache;
4. peak memory of training the MLP vs PyTorch.

Run ``python benchmarks/bench_mlp.py``; results go to ``benchmarks/results.json``.
"""

import argparse
import json
import statistics
import tempfile

import numpy as np
from _common import (
    interleaved,
    interleaved_times,
    ratio,
    record,
    run_python,
    set_float32,
    torch_or_none,
)

SIZES = [784, 512, 512, 10]
BATCH = 128
BATCHES = 20
LEARNING_RATE = 0.01
MOMENTUM = 0.9


def make_data(rng):
    x = rng.normal(size=(BATCH * BATCHES, SIZES[0])).astype("float32")
    y = rng.integers(0, SIZES[-1], size=BATCH * BATCHES).astype("int32")
    return x, y


def theanets_epoch(x, y):
    """Return (network, callable running one epoch of net.itertrain)."""
    import theanets

    net = theanets.Classifier([SIZES[0], (SIZES[1], "relu"), (SIZES[2], "relu"), SIZES[3]])
    run = net.itertrain(
        [x, y],
        algo="sgd",
        learning_rate=LEARNING_RATE,
        momentum=MOMENTUM,
        batch_size=BATCH,
        validate_every=10**9,
        patience=10**9,
    )
    next(run)  # epoch 0 includes the initial validation
    return net, lambda: next(run)


def bare_step_epoch(net, x, y):
    """One epoch of theanets' compiled training step, called in a plain loop."""
    import theanets

    (opt,) = theanets.trainer._cache(net, "optimizers").values()
    (step,) = opt._step_fns.values()

    def epoch():
        for i in range(0, len(x), BATCH):
            step(x[i : i + BATCH], y[i : i + BATCH])

    return epoch


def pytensor_epoch(x, y, params, mode=None):
    """One epoch of a hand-written PyTensor SGD+momentum step on the same graph."""
    import pytensor
    import pytensor.tensor as pt

    xs = pt.matrix("x", dtype="float32")
    ys = pt.vector("y", dtype="int32")
    shared = [pytensor.shared(p.copy()) for p in params]
    h = xs
    for i in range(0, len(shared) - 2, 2):
        h = pt.maximum(pt.dot(h, shared[i]) + shared[i + 1], 0)
    logits = pt.dot(h, shared[-2]) + shared[-1]
    prob = pt.special.softmax(logits, axis=-1)
    loss = -pt.log(prob[pt.arange(ys.shape[0]), ys]).mean()
    updates = []
    for param, grad in zip(shared, pytensor.grad(loss, shared)):
        velocity = pytensor.shared(np.zeros_like(param.get_value()))
        step = MOMENTUM * velocity - LEARNING_RATE * grad
        updates += [(velocity, step), (param, param + step)]
    fn = pytensor.function([xs, ys], loss, updates=updates, mode=mode)

    def epoch():
        for i in range(0, len(x), BATCH):
            fn(x[i : i + BATCH], y[i : i + BATCH])

    return epoch


def torch_model(torch, params):
    layers = []
    for i in range(0, len(params), 2):
        linear = torch.nn.Linear(*params[i].shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(params[i].T.copy()))
            linear.bias.copy_(torch.from_numpy(params[i + 1].copy()))
        layers.append(linear)
        if i + 2 < len(params):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def torch_epoch(torch, x, y, params):
    model = torch_model(torch, params)
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype("int64"))

    def epoch():
        for i in range(0, len(x), BATCH):
            opt.zero_grad()
            loss = loss_fn(model(tx[i : i + BATCH]), ty[i : i + BATCH])
            loss.backward()
            opt.step()

    return epoch


FIRST_CALL = """
import time, numpy as np
start = time.perf_counter()
import pytensor
pytensor.config.floatX = 'float32'
import theanets
imported = time.perf_counter()
x = np.random.default_rng(0).normal(size=(256, 784)).astype('float32')
y = np.random.default_rng(1).integers(0, 10, 256).astype('int32')
net = theanets.Classifier([784, (512, 'relu'), (512, 'relu'), 10])
net.train([x, y], algo='sgd', learning_rate=0.01, momentum=0.9, batch_size=128, max_updates=1)
print(imported - start, time.perf_counter() - imported)
"""

MEMORY = """
import numpy as np, sys
which = sys.argv[1] if len(sys.argv) > 1 else '{which}'
x = np.random.default_rng(0).normal(size=(2560, 784)).astype('float32')
y = np.random.default_rng(1).integers(0, 10, 2560).astype('int32')
if which == 'theanets':
    import pytensor
    pytensor.config.floatX = 'float32'
    import theanets
    net = theanets.Classifier([784, (512, 'relu'), (512, 'relu'), 10])
    net.train([x, y], algo='sgd', learning_rate=0.01, momentum=0.9, batch_size=128,
              max_updates=40)
else:
    import torch
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype('int64'))
    for step in range(40):
        i = (step % 20) * 128
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(tx[i:i+128]), ty[i:i+128]).backward()
        opt.step()
# VmHWM (not ru_maxrss, which a child inherits from its parent across exec)
with open('/proc/self/status') as handle:
    hwm = [line for line in handle if line.startswith('VmHWM')][0]
print(int(hwm.split()[1]) / 1024)
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    set_float32()
    torch = torch_or_none()
    rng = np.random.default_rng(0)
    x, y = make_data(rng)

    net, ours = theanets_epoch(x, y)
    import theanets

    mode = theanets.backend.choose_mode()
    params = [p.get_value() for p in net.params]
    contenders = {
        "theanets": ours,
        "theanets_bare_step": bare_step_epoch(net, x, y),
        "pytensor": pytensor_epoch(x, y, params, mode=mode),
        "pytensor_numba": pytensor_epoch(x, y, params, mode="NUMBA"),
        "torch": torch_epoch(torch, x, y, params) if torch else None,
    }
    epoch_times = interleaved_times(contenders, repeats=args.repeats)
    # The goal's comparison on its own: theanets and the hand-written step
    # alternate with nothing in between (no other library's threads or caches).
    pair_times = interleaved_times(
        {"theanets": ours, "pytensor": contenders["pytensor"]}, repeats=2 * args.repeats
    )
    pair_ms = {k: 1000 * statistics.median(v) / BATCHES for k, v in pair_times.items()}
    epoch = {k: statistics.median(v) for k, v in epoch_times.items()}
    step_ms = {k: 1000 * v / BATCHES for k, v in epoch.items()}
    spread_ms = {
        k: [round(1000 * min(v) / BATCHES, 3), round(1000 * max(v) / BATCHES, 3)]
        for k, v in epoch_times.items()
    }

    x1 = x[:1]
    xl = np.repeat(x, 2, axis=0)[:4096]
    predict = {"theanets_b1": lambda: net.predict_proba(x1)}
    throughput = {"theanets": lambda: net.predict_proba(xl)}
    if torch:
        model = torch_model(torch, params).eval()
        t1, tl = torch.from_numpy(x1), torch.from_numpy(xl)

        def torch_forward(t):
            with torch.no_grad():
                return torch.softmax(model(t), dim=-1)

        predict["torch_b1"] = lambda: torch_forward(t1)
        throughput["torch"] = lambda: torch_forward(tl)
    latency = interleaved(predict, repeats=200, warmup=5)
    bulk = interleaved(throughput, repeats=args.repeats, warmup=1)

    def last_line(out):  # the child's log lines come first
        return [float(v) for v in out.strip().splitlines()[-1].split()]

    run_python(FIRST_CALL)  # warm the compile cache
    warm = last_line(run_python(FIRST_CALL))
    with tempfile.TemporaryDirectory() as cold_dir:
        cold_env = {
            "PYTENSOR_FLAGS": f"base_compiledir={cold_dir}",
            "NUMBA_CACHE_DIR": f"{cold_dir}/numba-cache",
        }
        cold = last_line(run_python(FIRST_CALL, env=cold_env))

    # Peak resident memory of a whole process that trains the MLP (imports included).
    memory = {"theanets": last_line(run_python(MEMORY.format(which="theanets")))[0]}
    if torch:
        memory["torch"] = last_line(run_python(MEMORY.format(which="torch")))[0]

    results = {
        "train_step_ms": {k: round(v, 3) for k, v in step_ms.items()},
        "train_step_ms_min_max": spread_ms,
        "train_epoch_s": {k: round(v, 4) for k, v in epoch.items()},
        "mode": str(mode),
        "train_ratio_vs_pytensor": ratio(step_ms["theanets"], step_ms["pytensor"]),
        "train_pair_step_ms": {k: round(v, 3) for k, v in pair_ms.items()},
        "train_pair_step_ms_min_max": {
            k: [round(1000 * min(v) / BATCHES, 3), round(1000 * max(v) / BATCHES, 3)]
            for k, v in pair_times.items()
        },
        "train_ratio_vs_pytensor_pairwise": ratio(pair_ms["theanets"], pair_ms["pytensor"]),
        "train_ratio_vs_pytensor_numba": ratio(step_ms["theanets"], step_ms["pytensor_numba"]),
        "train_loop_ratio_vs_bare_step": ratio(step_ms["theanets"], step_ms["theanets_bare_step"]),
        "train_ratio_vs_torch": ratio(step_ms["theanets"], step_ms.get("torch")),
        "predict_b1_us": {k: round(1e6 * v, 1) for k, v in latency.items()},
        "predict_b1_ratio_vs_torch": ratio(latency["theanets_b1"], latency.get("torch_b1")),
        "predict_b4096_ms": {k: round(1000 * v, 2) for k, v in bulk.items()},
        "predict_b4096_ratio_vs_torch": ratio(bulk["theanets"], bulk.get("torch")),
        "first_train_call_s": {
            "import_warm": round(warm[0], 2),
            "build_and_compile_warm": round(warm[1], 2),
            "import_cold": round(cold[0], 2),
            "build_and_compile_cold": round(cold[1], 2),
        },
        "peak_memory_mb": {k: round(v, 1) for k, v in memory.items()},
    }
    record("mlp", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
