"""Solve XOR with a classifier of two inputs, four tanh units and two classes.

XOR is the smallest problem no linear model solves: the classes of
``(0, 0), (1, 1)`` and ``(0, 1), (1, 0)`` cannot be separated by a line. One
small hidden layer is enough. Prints the predicted probability of class 1 at
each corner and writes the decision surface over the plane, with the training
points on top, and the loss curve::

    python examples/xor_classifier.py --output examples/output
"""

import numpy as np
from _common import parse_args, plot_losses, plt, save_figure, train

import theanets

CORNERS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype="float32")
LABELS = np.array([0, 1, 1, 0], dtype="int32")


def main(argv=None):
    """Train, report and plot; return the accuracy on the four corners."""
    args = parse_args(__doc__, argv)
    net = theanets.Classifier([2, (4, "tanh"), 2], rng=3)
    history, elapsed = train(
        net,
        [CORNERS, LABELS],
        algo="adam",
        learning_rate=0.05,
        batch_size=4,
        validate_every=25,
        patience=1000,
        max_updates=60 if args.quick else 500,
    )
    proba = net.predict_proba(CORNERS)[:, 1]
    accuracy = net.score(CORNERS, LABELS)
    print(
        f"accuracy on the four corners: {accuracy:.2f}  ({len(history)} updates, {elapsed:.1f} s)"
    )
    for (a, b), label, p in zip(CORNERS.astype(int), LABELS, proba):
        print(f"  {a} xor {b} = {label}   P(class 1) = {p:.3f}")

    grid = np.linspace(-0.5, 1.5, 101, dtype="float32")
    xx, yy = np.meshgrid(grid, grid)
    surface = net.predict_proba(np.column_stack([xx.ravel(), yy.ravel()]))[:, 1]
    surface = surface.reshape(xx.shape)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    image = ax1.contourf(xx, yy, surface, levels=np.linspace(0, 1, 21), cmap="RdBu_r")
    ax1.contour(xx, yy, surface, levels=[0.5], colors="k", linewidths=1.5)
    for label, marker, color in ((0, "o", "white"), (1, "s", "black")):
        x = CORNERS[LABELS == label]
        ax1.scatter(
            x[:, 0], x[:, 1], marker=marker, c=color, edgecolors="k", s=120, label=f"class {label}"
        )
    ax1.legend(loc="upper center", ncol=2, framealpha=0.9)
    fig.colorbar(image, ax=ax1, label="P(class 1)")
    ax1.set_xlabel("$x_1$")
    ax1.set_ylabel("$x_2$")
    ax1.set_aspect("equal")
    ax1.set_title(f"Decision surface (accuracy {accuracy:.2f})")
    plot_losses(ax2, history[:, :1], "cross-entropy", labels=("training",))
    ax2.set_title("Training loss")
    save_figure(fig, args.output, "xor_classifier.png")
    return accuracy


if __name__ == "__main__":
    main()
