"""Learn sparse features of the 8x8 digits with a tied-weight autoencoder.

The encoder maps the 64 pixels to 36 sigmoid units and the decoder reuses the
encoder's weights transposed (a ``'tied'`` layer), so the model has one weight
matrix. A ``hidden_l1`` penalty on the hidden activations makes most units
stay near zero for any one image, which turns the features into strokes and
blobs; a small ``weight_l2`` penalty clears the weights of the border
pixels, which are blank in every image. Prints the reconstruction
:math:`R^2` and the sparsity of the code, and writes the learnt features
(the columns of the weight matrix, as images), reconstructions of validation
digits and the loss curves::

    python examples/digits_autoencoder.py --output examples/output
"""

from _common import digits, image_grid, parse_args, plot_losses, plt, save_figure, train

import theanets

HIDDEN = 36


def train_autoencoder(x_train, x_valid, quick=False, **regularizers):
    """Train a 64-36-64 sigmoid autoencoder with tied weights.

    Parameters
    ----------
    x_train, x_valid : ndarray
        Training and validation images, one row of 64 pixels each.
    quick : bool, optional
        Stop after a few updates.
    **regularizers
        Regularizer keyword arguments for ``train`` (``hidden_l1=0.05`` ...).

    Returns
    -------
    (net, history, seconds)
    """
    net = theanets.Autoencoder([64, (HIDDEN, "sigmoid"), ("tied", 64, "sigmoid")])
    history, elapsed = train(
        net,
        [x_train],
        [x_valid],
        algo="adam",
        learning_rate=1e-2,
        batch_size=64,
        validate_every=5,
        patience=10,
        max_updates=60 if quick else 3000,
        **regularizers,
    )
    return net, history, elapsed


def main(argv=None):
    """Train, report and plot; return the validation reconstruction R^2."""
    args = parse_args(__doc__, argv)
    x_train, x_valid, _, _ = digits()
    net, history, elapsed = train_autoencoder(
        x_train, x_valid, args.quick, hidden_l1=0.05, weight_l2=3e-3
    )
    score = net.score(x_valid)
    code = net.encode(x_valid)
    active = (code > 0.1).mean()
    print(f"validation reconstruction R^2: {score:.3f}  ({len(history)} epochs, {elapsed:.1f} s)")
    print(f"mean hidden activation: {code.mean():.3f}; units above 0.1: {100 * active:.1f}%")

    weights = net.find("hid1", "w").get_value().T
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), width_ratios=(1.1, 1))
    axes[0].imshow(image_grid(weights, normalize=True), cmap="RdBu_r", vmin=-1, vmax=1)
    axes[0].set_title(f"{HIDDEN} learnt features (hid1.w; red > 0, blue < 0)")
    axes[0].axis("off")
    plot_losses(axes[1], history, "mean squared error + hidden L1")
    axes[1].set_title("Loss curves")
    save_figure(fig, args.output, "digits_autoencoder_features.png")

    shown = x_valid[:12]
    rebuilt = net.predict(shown)
    fig, axes = plt.subplots(2, 1, figsize=(10, 2.6))
    for ax, images, title in ((axes[0], shown, "validation digits"), (axes[1], rebuilt, "")):
        ax.imshow(image_grid(images, cols=len(images)), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title or f"their reconstructions (R^2 {score:.3f} on the validation set)")
        ax.axis("off")
    save_figure(fig, args.output, "digits_autoencoder_reconstructions.png")
    return score


if __name__ == "__main__":
    main()
