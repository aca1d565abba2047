r"""Compare a contractive autoencoder of the 8x8 digits with a plain one.

Both models are the autoencoder of ``digits_autoencoder.py``: they map the
64 pixels to 36 sigmoid units and back with tied weights. The contractive
one adds to its loss the squared Frobenius norm of the Jacobian of the
hidden units with respect to the input,

.. math::
    \|J(x)\|_F^2 = \sum_{k} \left(h_k (1 - h_k)\right)^2 \sum_d W_{dk}^2,
    \qquad h = \sigma(x W + b),

which makes the code insensitive to small changes of the input. Prints, for
each model, the reconstruction :math:`R^2` of clean validation digits, the
measured mean Jacobian norm, and how far the code and the reconstruction move
when Gaussian noise is added to the digits. Writes the two sets of features
side by side with those measures, and noisy digits with both models'
reconstructions::

    python examples/digits_contractive.py --output examples/output
"""

import numpy as np
from _common import digits, image_grid, parse_args, plt, save_figure
from digits_autoencoder import train_autoencoder

NOISE = 0.3
CONTRACTIVE = 0.003


def jacobian_norm(net, x):
    """Mean over ``x`` of the squared Frobenius norm of d(hidden)/d(input)."""
    h = net.encode(x)
    w = net.find("hid1", "w").get_value()
    return float((((h * (1 - h)) ** 2) @ (w**2).sum(axis=0)).mean())


def measure(net, clean, noisy):
    """Reconstruction and sensitivity figures of one trained autoencoder."""
    code_shift = np.linalg.norm(net.encode(noisy) - net.encode(clean), axis=1)
    input_shift = np.linalg.norm(noisy - clean, axis=1)
    denoised = net.predict(noisy)
    return {
        "R^2 clean": net.score(clean),
        "mean ||J||_F^2": jacobian_norm(net, clean),
        "code shift / input shift": float((code_shift / input_shift).mean()),
        "noisy MSE vs clean": float(((denoised - clean) ** 2).mean()),
        "denoised": denoised,
    }


def main(argv=None):
    """Train both models, report and plot; return their measures."""
    args = parse_args(__doc__, argv)
    x_train, x_valid, _, _ = digits()
    noisy = (x_valid + np.random.default_rng(1).normal(0, NOISE, x_valid.shape)).astype("float32")
    results, weights = {}, {}
    for name, penalty in (("plain", 0), ("contractive", CONTRACTIVE)):
        net, history, elapsed = train_autoencoder(x_train, x_valid, args.quick, contractive=penalty)
        results[name] = measure(net, x_valid, noisy)
        weights[name] = net.find("hid1", "w").get_value().T
        print(f"{name} autoencoder ({len(history)} epochs, {elapsed:.1f} s):")
        for key, value in results[name].items():
            if key != "denoised":
                print(f"  {key:>25s}: {value:.4f}")

    keys = ["mean ||J||_F^2", "code shift / input shift", "noisy MSE vs clean"]
    fig = plt.figure(figsize=(12, 4.8))
    grid = fig.add_gridspec(1, 3, width_ratios=(1, 1, 0.9))
    for col, name in enumerate(results):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(image_grid(weights[name], normalize=True), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(f"{name} autoencoder features (R^2 {results[name]['R^2 clean']:.3f})")
        ax.axis("off")
    ax = fig.add_subplot(grid[0, 2])
    ratios = [results["contractive"][k] / results["plain"][k] for k in keys]
    bars = ax.bar(range(len(keys)), ratios, color="tab:orange")
    ax.axhline(1, color="k", linewidth=1, label="plain autoencoder")
    ax.bar_label(bars, fmt="%.2f")
    ax.set_xticks(range(len(keys)), ["Jacobian\nnorm", "code shift\nper input shift", "noisy\nMSE"])
    ax.set_ylabel("contractive / plain")
    ax.set_title(f"Sensitivity (noise std {NOISE})")
    ax.set_ylim(0, 1.25)
    ax.legend(loc="upper right")
    save_figure(fig, args.output, "digits_contractive_features.png")

    count = 10
    rows = [
        ("clean validation digits", x_valid[:count]),
        (f"with Gaussian noise (std {NOISE})", noisy[:count]),
        ("plain autoencoder's reconstruction", results["plain"]["denoised"][:count]),
        ("contractive autoencoder's reconstruction", results["contractive"]["denoised"][:count]),
    ]
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 5.6))
    for ax, (title, images) in zip(axes, rows):
        ax.imshow(image_grid(np.clip(images, 0, 1), cols=count), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    save_figure(fig, args.output, "digits_contractive_noisy.png")
    return results


if __name__ == "__main__":
    main()
