"""Learn the Zen of Python one character at a time and write more of it.

The text is the Zen of Python (PEP 20, in the public domain), which ships
with every Python as the ROT13-encoded string of the standard-library module
:mod:`this`. :class:`theanets.recurrent.Text` turns it into character
classes and :meth:`~theanets.recurrent.Text.classifier_batches` into random
windows of one-hot characters, each labelled with the character that follows.
A recurrent classifier learns to predict the next character. Prints text
generated with :meth:`~theanets.recurrent.Classifier.predict_sequence`,
which samples each next character from the predicted distribution (with a
fixed seed, so runs repeat), after a line's start and after a primer the text
does not contain, and writes the loss curves and the probabilities
the model gives each character along one line of the text::

    python examples/recurrent_text.py --output examples/output
"""

import codecs
import contextlib
import io

import numpy as np
from _common import parse_args, plot_losses, plt, save_figure, train

import theanets

PRIMER = "Beautiful is "
SAMPLE_PRIMER = "Python is "
PROBE = "Now is better than never."


def zen_of_python():
    """Return the Zen of Python, decoded from the standard library's ``this`` module."""
    with contextlib.redirect_stdout(io.StringIO()):  # importing ``this`` prints the text
        import this
    return codecs.decode(this.s, "rot13")


def main(argv=None):
    """Train, generate text and plot; return the next-character accuracy."""
    args = parse_args(__doc__, argv)
    text = theanets.recurrent.Text(zen_of_python(), min_count=1, unknown="~")
    k = text.num_classes
    print(f"{len(text.text)} characters, {k} classes: {text.alphabet!r} + unknown")
    net = theanets.recurrent.Classifier([k, (64, "gru", "tanh"), k])
    history, elapsed = train(
        net,
        text.classifier_batches(steps=40, batch_size=32, rng=1),
        text.classifier_batches(steps=40, batch_size=64, rng=2),
        algo="adam",
        learning_rate=1e-2,
        max_gradient_norm=5,
        train_batches=20,
        valid_batches=2,
        validate_every=2,
        patience=20,
        max_updates=20 if args.quick else 600,
    )
    x, y = text.classifier_batches(steps=40, batch_size=256, rng=3)()
    accuracy = net.score(x, y)
    print(
        f"trained {len(history)} epochs in {elapsed:.1f} s; next-character accuracy {accuracy:.3f}"
    )
    length = 40 if args.quick else 300
    continued = net.predict_sequence(text.encode(PRIMER), length, rng=3)
    print(f"sampled continuation of {PRIMER!r}:")
    print(PRIMER + text.decode(list(continued)))
    sampled = net.predict_sequence(text.encode(SAMPLE_PRIMER), length, rng=4)
    print(f"sampled continuation of {SAMPLE_PRIMER!r}:")
    print(SAMPLE_PRIMER + text.decode(list(sampled)))

    labels = np.array(text.encode(PROBE))
    proba = net.predict_proba(np.eye(k, dtype="float32")[labels[None, :-1]])[0]
    names = {"\n": "\\n", " ": "\u2423", text.unknown: "other"}
    chars = [names.get(c, c) for c in text.unknown + text.alphabet]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.5), width_ratios=(1, 2.2))
    plot_losses(ax1, history, "cross-entropy")
    ax1.set_title(f"Loss curves (accuracy {accuracy:.3f})")
    ax2.imshow(proba.T, cmap="Greys", aspect="auto", vmin=0, vmax=1, interpolation="nearest")
    ax2.scatter(
        np.arange(len(labels) - 1),
        labels[1:],
        marker="o",
        facecolors="none",
        edgecolors="tab:red",
        s=40,
        label="actual next character",
    )
    ax2.set_xticks(range(len(labels) - 1), list(PROBE[:-1]))
    ax2.set_yticks(range(k), chars, fontsize=7)
    ax2.set_xlabel("character read")
    ax2.set_ylabel("next character")
    ax2.legend(loc="upper right", fontsize=8)
    ax2.set_title("P(next character) along one line (darker: more probable)")
    save_figure(fig, args.output, "recurrent_text.png")
    return accuracy


if __name__ == "__main__":
    main()
