"""Train a classifier on the 8x8 handwritten digits that ship with scikit-learn.

Prints the validation accuracy and the confusion matrix, and writes the loss
curves and the confusion matrix as PNG files::

    python examples/digits_classifier.py --output examples/output
"""

from _common import digits, parse_args, plot_losses, plt, save_figure, show_confusion, train

import theanets


def main(argv=None):
    """Train, report and plot; return the validation accuracy."""
    args = parse_args(__doc__, argv)
    x_train, x_valid, y_train, y_valid = digits()
    net = theanets.Classifier([64, (64, "relu"), 10])
    history, elapsed = train(
        net,
        [x_train, y_train],
        [x_valid, y_valid],
        algo="adam",
        learning_rate=3e-3,
        batch_size=32,
        validate_every=1,
        patience=10,
        max_updates=100 if args.quick else 6000,
        weight_l2=1e-5,
    )

    accuracy = net.score(x_valid, y_valid)
    print(f"validation accuracy: {accuracy:.3f}  ({len(history)} epochs, {elapsed:.1f} s)")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    plot_losses(ax1, history, "cross-entropy", ("training loss", "validation loss"))
    ax1.set_title("Loss curves")
    show_confusion(ax2, y_valid, net.predict(x_valid), accuracy, name="digit")
    save_figure(fig, args.output, "digits_classifier.png")
    return accuracy


if __name__ == "__main__":
    main()
