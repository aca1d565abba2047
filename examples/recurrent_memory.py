"""Remember a value over many time steps: a plain RNN next to an LSTM.

Each input sequence has two channels. The first holds a random value
:math:`v \\in [-1, 1]` at time step 0 and zeros after it; the second holds
distracting Gaussian noise at every step. The target is :math:`v` at every
step, so the model has to store the value in its state on the first step
and keep it there while the noise arrives. Both models are trained on
sequences of 20 steps and then tested on sequences three times as long.
Prints the mean squared error of each model at the last training step and
at the end of the long sequences (guessing 0 scores 1/3), and writes the
error per time step together with the outputs for a few test sequences::

    python examples/recurrent_memory.py --output examples/output
"""

import numpy as np
from _common import parse_args, plot_losses, plt, save_figure, train

import theanets

STEPS = 20
TEST_STEPS = 60
FORMS = ("rnn", "lstm")


def sequences(count, steps, rng):
    """Draw inputs ``(count, steps, 2)`` and targets ``(count, steps, 1)``."""
    value = rng.uniform(-1, 1, size=count)
    x = np.zeros((count, steps, 2), dtype="float32")
    x[:, 0, 0] = value
    x[:, :, 1] = rng.normal(size=(count, steps))
    y = np.repeat(value[:, None, None], steps, axis=1).astype("float32")
    return x, y


def main(argv=None):
    """Train both models, report and plot; return their errors per time step."""
    args = parse_args(__doc__, argv)
    rng = np.random.default_rng(3)
    x_valid, y_valid = sequences(256, STEPS, rng)
    x_test, y_test = sequences(500, TEST_STEPS, rng)
    errors, outputs, histories = {}, {}, {}
    for form in FORMS:
        net = theanets.recurrent.Regressor([2, (16, form, "tanh"), 1])
        histories[form], elapsed = train(
            net,
            lambda: list(sequences(32, STEPS, rng)),
            [x_valid, y_valid],
            algo="adam",
            learning_rate=1e-2,
            train_batches=20,
            validate_every=2,
            patience=10,
            max_updates=20 if args.quick else 800,
        )
        prediction = net.predict(x_test)
        errors[form] = ((prediction - y_test) ** 2).mean(axis=(0, 2))
        outputs[form] = prediction[:4, :, 0]
        print(
            f"{form:>4s} ({len(histories[form])} epochs, {elapsed:.1f} s): MSE at step "
            f"{STEPS} {errors[form][STEPS - 1]:.4f}, at step {TEST_STEPS} {errors[form][-1]:.4f}"
        )

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    steps = np.arange(1, TEST_STEPS + 1)
    for form in FORMS:
        axes[0].plot(steps, errors[form], label=form)
    axes[0].axhline(1 / 3, color="0.5", linestyle=":", label="guessing 0")
    axes[0].axvspan(0.5, STEPS + 0.5, color="0.9", label="training length")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("time step")
    axes[0].set_ylabel("mean squared error")
    axes[0].set_title("Error of the remembered value")
    axes[0].legend(fontsize=8)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, color in enumerate(colors[:4]):
        axes[1].axhline(y_test[k, 0, 0], color=color, linewidth=4, alpha=0.3)
        for form, style in zip(FORMS, (":", "-")):
            axes[1].plot(steps, outputs[form][k], color=color, linestyle=style)
    axes[1].axvline(STEPS + 0.5, color="k", linewidth=0.8, linestyle="--")
    axes[1].set_xlabel("time step")
    axes[1].set_ylabel("output")
    axes[1].set_title(f"Outputs ({FORMS[0]} dotted, {FORMS[1]} solid; wide: value)")
    curves = [histories[form][:, 1] for form in FORMS]
    plot_losses(axes[2], curves, "mean squared error", labels=FORMS)
    axes[2].set_title("Validation loss")
    save_figure(fig, args.output, "recurrent_memory.png")
    return errors


if __name__ == "__main__":
    main()
