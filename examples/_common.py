"""Boilerplate shared by the example scripts: command line, data, training loop, figures.

Every example reads ``--output`` (the folder its PNG files go to) and
``--quick`` (train briefly, as the tests do), computes in float32 and draws
with matplotlib's non-interactive Agg backend, so it runs without a display.

The models here are tiny, so :func:`parse_args` also limits BLAS to one
thread: for matrices this small, waking more threads costs more than it
saves, and on a machine whose cores are busy with other work it can make
training ten or twenty times slower.
"""

import argparse
import importlib.util
import logging
import os
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytensor  # noqa: E402

__all__ = [
    "digits",
    "image_grid",
    "parse_args",
    "plot_losses",
    "plt",
    "save_figure",
    "show_confusion",
    "single_blas_thread",
    "train",
]


def parse_args(doc, argv=None):
    """Parse ``--output`` and ``--quick``; create the output folder and set float32.

    Parameters
    ----------
    doc : str
        The script's module docstring; its first line is the description.
    argv : list of str, optional
        Arguments (default: the command line).

    Returns
    -------
    argparse.Namespace
        With ``output`` (str) and ``quick`` (bool).
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--output", default="examples/output", help="folder for the PNG files")
    parser.add_argument("--quick", action="store_true", help="train briefly (for tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.makedirs(args.output, exist_ok=True)
    pytensor.config.floatX = "float32"
    single_blas_thread()
    return args


def single_blas_thread():
    """Limit every BLAS library loaded by NumPy and SciPy to one thread.

    Uses ``threadpoolctl`` (a dependency of scikit-learn) when it is
    installed; does nothing otherwise. SciPy's BLAS, which compiled PyTensor
    functions call, is loaded first so that it is limited too.
    """
    try:
        import scipy.linalg  # noqa: F401
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return
    threadpool_limits(limits=1, user_api="blas")


def digits(seed=0, test_size=0.25):
    """Return scikit-learn's 8x8 digits split into training and validation parts.

    Parameters
    ----------
    seed : int, optional
        Seed of the split, which keeps each digit's share in both parts.
    test_size : float, optional
        Fraction of the images kept for validation.

    Returns
    -------
    (x_train, x_valid, y_train, y_valid)
        Images as float32 rows of 64 pixels scaled to [0, 1], labels as int32,
        in random order.
    """
    x, y = _digits_data()
    rng = np.random.default_rng(seed)
    valid = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        valid[members[: int(round(test_size * len(members)))]] = True
    train_rows, valid_rows = (
        rng.permutation(np.flatnonzero(~valid)),
        rng.permutation(np.flatnonzero(valid)),
    )
    return x[train_rows], x[valid_rows], y[train_rows], y[valid_rows]


def _digits_data():
    """The 1797 digit images (scaled to [0, 1]) and their labels.

    Reads the file that ``sklearn.datasets.load_digits`` reads, without
    importing scikit-learn (which takes about a second); falls back to
    ``load_digits`` where the file is not found.
    """
    spec = importlib.util.find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
        if os.path.exists(path):
            table = np.loadtxt(path, delimiter=",", dtype=np.float32)
            return table[:, :-1] / np.float32(16.0), table[:, -1].astype("int32")
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype("float32"), data.target.astype("int32")


def train(net, train_data, valid_data=None, **kwargs):
    """Train ``net`` with ``itertrain`` and record the losses after each epoch.

    Parameters
    ----------
    net : theanets.Network
        The model.
    train_data, valid_data
        Training and validation data as ``net.itertrain`` takes them.
    **kwargs
        Training options (``algo``, ``learning_rate``, regularizers...).

    Returns
    -------
    history : ndarray
        One row per epoch: training loss, validation loss.
    elapsed : float
        Seconds spent training.
    """
    rows = []
    start = time.time()
    for tm, vm in net.itertrain(train_data, valid_data, **kwargs):
        rows.append((tm["loss"], vm["loss"]))
    return np.array(rows, dtype=float).reshape(-1, 2), time.time() - start


def plot_losses(ax, curves, ylabel="loss", labels=("training", "validation"), log=True):
    """Draw loss curves against the epoch.

    Parameters
    ----------
    ax : matplotlib Axes
    curves : ndarray or list of ndarray
        A 2-D array with one curve per column (as :func:`train` returns),
        or a list of 1-D arrays, possibly of different lengths.
    ylabel : str, optional
        Label of the y axis.
    labels : sequence of str, optional
        Legend entry of each curve.
    log : bool, optional
        Draw the y axis on a log scale.
    """
    if isinstance(curves, np.ndarray) and curves.ndim == 2:
        curves = list(curves.T)
    for curve, label in zip(curves, labels):
        ax.plot(curve, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend()


def show_confusion(ax, labels, predicted, accuracy, classes=10, name="class"):
    """Count (true, predicted) label pairs, print the counts and draw them on ``ax``.

    Parameters
    ----------
    ax : matplotlib Axes
    labels, predicted : ndarray of int
        True and predicted classes.
    accuracy : float
        Shown in the title.
    classes : int, optional
        Number of classes.
    name : str, optional
        What a class is called in the printout and the axis labels.

    Returns
    -------
    ndarray
        ``matrix[i, j]`` counts the examples of class ``i`` predicted as ``j``.
    """
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    print(f"confusion matrix (rows: true {name}, columns: predicted):")
    print(matrix)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7)
    ax.set_xlabel(f"predicted {name}")
    ax.set_ylabel(f"true {name}")
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    ax.set_title(f"Confusion matrix (accuracy {accuracy:.3f})")
    return matrix


def image_grid(images, shape=(8, 8), cols=None, pad=1, normalize=False):
    """Tile equally shaped images into one 2-D array with blank gaps between them.

    Parameters
    ----------
    images : ndarray
        One flattened image per row.
    shape : (int, int), optional
        Height and width of each image.
    cols : int, optional
        Images per row of the grid (default: about the square root).
    pad : int, optional
        Blank pixels between tiles.
    normalize : bool, optional
        Divide each image by its largest absolute value, so it lies in
        [-1, 1] (useful for weights; draw with a diverging colour map).

    Returns
    -------
    ndarray
        The grid, NaN in the gaps (drawn as background by ``imshow``).
    """
    images = np.asarray(images, dtype=float)
    n = len(images)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w = shape
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan)
    for k, image in enumerate(images):
        if normalize:
            scale = np.abs(image).max()
            image = image / scale if scale > 0 else image
        r, c = divmod(k, cols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image.reshape(
            shape
        )
    return grid


def save_figure(fig, output, name):
    """Lay out, save as ``<output>/<name>`` at 100 dpi, close and report a figure.

    Returns
    -------
    str
        The path written.
    """
    fig.tight_layout()
    path = os.path.join(output, name)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
    return path
