"""Train a small convolutional network on the 8x8 handwritten digits of scikit-learn.

The images are reshaped to ``(8, 8, 1)`` (width, height, channels), passed
through two 3x3 convolutions with 2x2 max pooling between them, flattened,
and classified by a softmax layer. The script prints the validation accuracy
and writes the loss curves, the confusion matrix and the first layer's filters
as one PNG file::

    python examples/digits_convolution.py --output examples/output

``--quick`` trains for a few epochs only (as the tests do).
"""

from _common import (
    digits,
    image_grid,
    parse_args,
    plot_losses,
    plt,
    save_figure,
    show_confusion,
    train,
)

import theanets


def build_network():
    """8x8x1 -> conv 3x3x16 (same) -> pool 2 -> conv 3x3x32 (same) -> pool 2 -> 10.

    ``impl='scatter'`` makes the first compilation quick (seconds rather than
    minutes with PyTensor's default Numba backend); on images this small the
    slower training step it brings is not noticeable.
    """
    return theanets.convolution.Classifier(
        [
            (8, 8, 1),
            dict(form="conv2", size=16, filter_size=3, border_mode="same", impl="scatter"),
            dict(form="pool2", pool_size=2, activation="linear"),
            dict(form="conv2", size=32, filter_size=3, border_mode="same", impl="scatter"),
            dict(form="pool2", pool_size=2, activation="linear"),
            dict(form="flatten", activation="linear"),
            10,
        ]
    )


def main(argv=None):
    """Train, report and plot; return the validation accuracy."""
    args = parse_args(__doc__, argv)
    x_train, x_valid, y_train, y_valid = digits()
    # Rows of 64 pixels in reading order: row r, column c -> (width c, height r).
    x_train = x_train.reshape(-1, 8, 8, 1).transpose(0, 2, 1, 3).copy()
    x_valid = x_valid.reshape(-1, 8, 8, 1).transpose(0, 2, 1, 3).copy()

    net = build_network()
    history, elapsed = train(
        net,
        [x_train, y_train],
        [x_valid, y_valid],
        algo="adam",
        learning_rate=3e-3,
        batch_size=32,
        validate_every=1,
        patience=5,
        max_updates=40 if args.quick else 2000,
    )

    accuracy = net.score(x_valid, y_valid)
    print(f"validation accuracy: {accuracy:.3f}  ({len(history)} epochs, {elapsed:.1f} s)")

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4))
    plot_losses(ax1, history, "cross-entropy", ("training loss", "validation loss"))
    ax1.set_title("Loss curves")
    show_confusion(ax2, y_valid, net.predict(x_valid), accuracy, name="digit")
    # First-layer filters, (filters, 1, width, height): draw height as rows.
    filters = net.find("hid1", "w").get_value()[:, 0].transpose(0, 2, 1)
    grid = image_grid(filters.reshape(len(filters), -1), shape=(3, 3), cols=8, normalize=True)
    ax3.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1)
    ax3.set_axis_off()
    ax3.set_title("First-layer 3x3 filters")
    save_figure(fig, args.output, "digits_convolution.png")
    return accuracy


if __name__ == "__main__":
    main()
