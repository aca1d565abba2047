"""Counter a class imbalance with a weighted loss (``weighted=True``).

Three overlapping Gaussian clouds in the plane make a three-class problem in
which class 2 is rare (4% of the examples). A classifier trained to minimise
the plain cross-entropy can ignore that class at little cost. A classifier
built with ``weighted=True`` takes a third array, one weight per example;
weighting every example by the inverse frequency of its class makes the rare
class count as much as the others in the loss. Prints and plots the
per-class recall (the fraction of each class found) of both models on
held-out data, and draws their decision regions::

    python examples/weighted_classification.py --output examples/output
"""

import numpy as np
from _common import parse_args, plt, save_figure, train

import theanets

CENTERS = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.2]])
SHARES = np.array([0.48, 0.48, 0.04])
COLORS = ["tab:blue", "tab:green", "tab:red"]


def make_data(count, rng):
    """Draw ``count`` labelled points; class ``k`` has probability ``SHARES[k]``."""
    labels = rng.choice(len(SHARES), size=count, p=SHARES).astype("int32")
    points = CENTERS[labels] + rng.normal(scale=0.6, size=(count, 2))
    return points.astype("float32"), labels


def class_weights(labels):
    """One weight per example: the inverse frequency of its class, averaging 1."""
    counts = np.bincount(labels, minlength=len(SHARES))
    weights = len(labels) / (len(SHARES) * counts[labels])
    return weights.astype("float32")


def recall(net, x, y):
    """Fraction of the examples of each class that ``net`` labels correctly."""
    predicted = net.predict(x)
    return np.array([(predicted[y == k] == k).mean() for k in range(len(SHARES))])


def main(argv=None):
    """Train both models, report and plot; return their per-class recalls."""
    args = parse_args(__doc__, argv)
    rng = np.random.default_rng(4)
    x_train, y_train = make_data(1000 if args.quick else 3000, rng)
    x_valid, y_valid = make_data(1000, rng)
    x_test, y_test = make_data(3000, rng)
    options = dict(
        algo="adam",
        learning_rate=1e-2,
        batch_size=64,
        validate_every=2,
        patience=5,
        max_updates=50 if args.quick else 2000,
    )
    plain = theanets.Classifier([2, (16, "tanh"), 3])
    _, elapsed = train(plain, [x_train, y_train], [x_valid, y_valid], **options)
    weighted = theanets.Classifier([2, (16, "tanh"), 3], weighted=True)
    w_train, w_valid = class_weights(y_train), class_weights(y_valid)
    history, more = train(
        weighted, [x_train, y_train, w_train], [x_valid, y_valid, w_valid], **options
    )
    print(f"trained both models in {elapsed + more:.1f} s ({len(history)} epochs weighted)")

    print(f"training examples per class: {np.bincount(y_train).tolist()}")
    recalls = {}
    for name, net in (("unweighted", plain), ("weighted", weighted)):
        recalls[name] = recall(net, x_test, y_test)
        print(
            f"{name:>10s}: accuracy {net.score(x_test, y_test):.3f}, recall per class "
            + ", ".join(f"{r:.3f}" for r in recalls[name])
        )

    grid = np.linspace(-3, 3, 121, dtype="float32")
    xx, yy = np.meshgrid(grid, grid)
    points = np.column_stack([xx.ravel(), yy.ravel()])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    shown = rng.permutation(len(x_test))[:600]
    for ax, (name, net) in zip(axes, (("unweighted", plain), ("weighted", weighted))):
        regions = net.predict(points).reshape(xx.shape)
        ax.contourf(xx, yy, regions, levels=[-0.5, 0.5, 1.5, 2.5], colors=COLORS, alpha=0.25)
        sizes = np.where(y_test[shown] == 2, 16, 5)
        ax.scatter(*x_test[shown].T, c=np.array(COLORS)[y_test[shown]], s=sizes)
        ax.set_title(f"{name} classifier: decision regions")
        ax.set_aspect("equal")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
    ax = axes[2]
    offsets = np.arange(len(SHARES))
    for shift, (name, values) in zip((-0.2, 0.2), recalls.items()):
        bars = ax.bar(offsets + shift, values, width=0.4, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(offsets, [f"class {k}\n({100 * s:.0f}% of data)" for k, s in enumerate(SHARES)])
    ax.set_ylabel("recall on test data")
    ax.set_ylim(0, 1.2)
    ax.legend(loc="upper center", ncol=2)
    ax.set_title("Recall per class")
    save_figure(fig, args.output, "weighted_classification.png")
    return recalls


if __name__ == "__main__":
    main()
