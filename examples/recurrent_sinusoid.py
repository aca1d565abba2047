"""Continue a sum of two sine waves with a recurrent regressor.

A layer of 32 tanh recurrent units (``'rnn'``) reads a wave one value per
time step and predicts the value at the next step. It is trained on random
40-step windows cut out of a long wave (:func:`theanets.recurrent.batches`).
To continue the wave, the model is then run in closed loop: its prediction
is appended to the sequence and fed back as the next input, so after the
priming part it sees only its own output. Prints the one-step-ahead error on
held-out data and the error of the closed-loop continuation, and writes both
next to the true wave, with the loss curves::

    python examples/recurrent_sinusoid.py --output examples/output
"""

import numpy as np
from _common import parse_args, plot_losses, plt, save_figure, train

import theanets

STEPS = 40
PRIME = 60


def wave(t):
    """The signal: two sine waves of periods 25 and about 9.3 steps."""
    return (np.sin(2 * np.pi * t / 25) + 0.5 * np.sin(2 * np.pi * t / 9.3)).astype("float32")


def continuation(net, primer, steps):
    """Extend ``primer`` by ``steps`` values, feeding each prediction back in."""
    values = list(primer)
    for _ in range(steps):
        sequence = np.asarray(values, dtype="float32")[None, :, None]
        values.append(float(net.predict(sequence)[0, -1, 0]))
    return np.array(values[len(primer) :])


def main(argv=None):
    """Train, continue the wave and plot; return the closed-loop MSE."""
    args = parse_args(__doc__, argv)
    series = wave(np.arange(3000))
    held_out = wave(np.arange(3000, 3400))
    train_fn = theanets.recurrent.batches(
        [series[:-1, None], series[1:, None]], steps=STEPS, batch_size=32, rng=1
    )
    valid_fn = theanets.recurrent.batches(
        [held_out[:-1, None], held_out[1:, None]], steps=STEPS, batch_size=64, rng=2
    )
    net = theanets.recurrent.Regressor([1, (32, "rnn", "tanh"), 1])
    history, elapsed = train(
        net,
        train_fn,
        valid_fn,
        algo="adam",
        learning_rate=3e-3,
        train_batches=20,
        valid_batches=2,
        validate_every=2,
        patience=10,
        max_updates=30 if args.quick else 2000,
    )
    x_valid, y_valid = valid_fn()
    one_step = float(((net.predict(x_valid) - y_valid) ** 2).mean())
    ahead = 20 if args.quick else 100
    generated = continuation(net, held_out[:PRIME], ahead)
    truth = held_out[PRIME : PRIME + ahead]
    closed = float(((generated - truth) ** 2).mean())
    print(f"trained {len(history)} epochs in {elapsed:.1f} s; signal variance {series.var():.3f}")
    print(f"one-step-ahead MSE on held-out windows: {one_step:.5f}")
    print(f"closed-loop MSE over {ahead} generated steps: {closed:.5f}")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4), width_ratios=(2, 1))
    t = np.arange(PRIME + ahead)
    ax1.plot(t, held_out[: PRIME + ahead], color="0.6", linewidth=3, label="true wave")
    ax1.plot(t[:PRIME], held_out[:PRIME], color="k", linewidth=1.5, label="priming input")
    ax1.plot(t[PRIME:], generated, color="tab:red", linestyle="--", label="closed-loop prediction")
    ax1.axvline(PRIME - 0.5, color="k", linewidth=0.8, linestyle=":")
    ax1.set_xlabel("time step")
    ax1.set_ylabel("value")
    ax1.legend(loc="lower left", ncol=3, fontsize=8)
    ax1.set_title(f"Continuation of the wave (MSE {closed:.4f} over {ahead} steps)")
    plot_losses(ax2, history, "mean squared error")
    ax2.set_title("Loss curves (one-step-ahead)")
    save_figure(fig, args.output, "recurrent_sinusoid.png")
    return closed


if __name__ == "__main__":
    main()
