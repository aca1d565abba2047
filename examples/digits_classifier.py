"""Train a classifier on the 8x8 handwritten digits that ship with scikit-learn.

Prints the validation accuracy and the confusion matrix, and writes the loss
curves and the confusion matrix as PNG files::

    python examples/digits_classifier.py --output examples/output
"""

import argparse
import logging
import os
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytensor  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import theanets  # noqa: E402


def load_data(seed=0):
    """Return (train, valid) lists of [inputs, labels] scaled to [0, 1]."""
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    x_train, x_valid, y_train, y_valid = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y
    )
    return [x_train, y_train], [x_valid, y_valid]


def confusion_matrix(labels, predicted, classes=10):
    """Count (true, predicted) label pairs."""
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="examples/output", help="folder for the PNG files")
    parser.add_argument("--quick", action="store_true", help="train briefly (for tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.makedirs(args.output, exist_ok=True)
    pytensor.config.floatX = "float32"

    train, valid = load_data()
    net = theanets.Classifier([64, (64, "relu"), 10])
    history = []
    start = time.time()
    for tm, vm in net.itertrain(
        train,
        valid,
        algo="adam",
        learning_rate=3e-3,
        batch_size=32,
        validate_every=1,
        patience=10,
        max_updates=400 if args.quick else 6000,
        weight_l2=1e-5,
    ):
        history.append((tm["loss"], vm["loss"], vm.get("acc", np.nan)))
    elapsed = time.time() - start

    accuracy = net.score(*valid)
    matrix = confusion_matrix(valid[1], net.predict(valid[0]))
    print(f"validation accuracy: {accuracy:.3f}  ({len(history)} epochs, {elapsed:.1f} s)")
    print("confusion matrix (rows: true digit, columns: predicted):")
    print(matrix)

    history = np.array(history)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(history[:, 0], label="training loss")
    ax1.plot(history[:, 1], label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.set_yscale("log")
    ax1.legend()
    ax1.set_title("Loss curves")
    ax2.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax2.text(j, i, str(count), ha="center", va="center", fontsize=7)
    ax2.set_xlabel("predicted digit")
    ax2.set_ylabel("true digit")
    ax2.set_xticks(range(10))
    ax2.set_yticks(range(10))
    ax2.set_title(f"Confusion matrix (accuracy {accuracy:.3f})")
    fig.tight_layout()
    path = os.path.join(args.output, "digits_classifier.png")
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")
    return accuracy


if __name__ == "__main__":
    main()
