"""Mini-batches of training data: dense or sparse arrays, or a callable.

A :class:`Dataset` cuts a set of aligned arrays (one per symbolic input of a
loss) into contiguous mini-batches along one axis and hands them out in a
shuffled order, or calls a user function that produces each batch itself.
"""

import numpy as np
import pytensor
import scipy.sparse

from .. import util

__all__ = ["Dataset"]


def as_array_list(value):
    """Return ``value`` as a sequence of arrays, wrapping one lone array in a list.

    Parameters
    ----------
    value : object
        A dense or sparse array, or a list or tuple of them.

    Returns
    -------
    list, tuple or None
        ``[value]`` for a lone array, a list or tuple as it is, and None for
        anything else (the caller names what it expected).
    """
    if isinstance(value, np.ndarray) or scipy.sparse.issparse(value):
        return [value]
    return value if isinstance(value, (list, tuple)) else None


def _convert(array, index=None):
    """Return ``array`` with floats as ``floatX``; integer arrays keep their dtype.

    Dense arrays come back C-contiguous (a copy is made only when needed);
    sparse matrices keep their format.
    """
    float_x = pytensor.config.floatX
    if scipy.sparse.issparse(array):
        if array.dtype.kind in "fb" and array.dtype != float_x:
            array = array.astype(float_x)
        return array
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind in "fb":
        if array.dtype != float_x or not array.flags.c_contiguous:
            array = np.ascontiguousarray(array, dtype=float_x)
    elif kind in "iu":
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
    else:
        where = "" if index is None else f"input {index} "
        raise TypeError(
            f"{where}must hold real numbers (float, int or bool), got dtype {array.dtype}"
        )
    return array


class Dataset:
    """Hand out mini-batches of data in a shuffled order.

    Parameters
    ----------
    inputs : sequence of array-like, or callable
        Either one array per input of the loss, all with the same length along
        ``axis`` (NumPy arrays, anything :func:`numpy.asarray` accepts, or
        SciPy CSR/CSC sparse matrices, which are cut by rows when ``axis`` is 0),
        or a callable taking no arguments that returns one batch (a list or
        tuple of arrays) per call. A single array is treated as a list of one.
    name : str, optional
        A label used in log messages; defaults to ``'dataset'``.
    batch_size : int, optional
        Number of samples per batch, at least 1 (use the number of samples for
        one full batch). Defaults to 32. Ignored for a callable.
    iteration_size : int, optional
        Number of batches in one pass (one epoch) over the dataset. Defaults to
        the number of distinct batches; a larger value cycles through the data,
        a smaller one leaves the rest for the next pass. For a callable it
        defaults to ``len(inputs)`` when the callable has a length and to 100
        otherwise.
    axis : int, optional
        Axis along which the arrays are cut into batches. Defaults to 0 (rows;
        for recurrent data of shape ``(batch, time, features)`` this cuts along
        the batch axis).
    rng : None, int, :class:`numpy.random.RandomState` or :class:`numpy.random.Generator`
        Source of randomness for shuffling; an integer seeds a fresh state. With
        None an unseeded state is used.

    Raises
    ------
    ConfigurationError
        If ``batch_size`` is not an integer >= 1 or ``iteration_size`` is
        neither None nor an integer >= 1.
    ValueError
        If no arrays are given, an array is empty or has no ``axis`` dimension,
        or the arrays do not all have the same length along ``axis``.
    TypeError
        If an input holds values that are not real numbers, or a callable
        returns something that is not a list or tuple of arrays.

    Notes
    -----
    Batches are contiguous slices ``[i * batch_size, (i + 1) * batch_size)``
    along ``axis`` (the last one may be shorter); slicing a C-contiguous array
    along axis 0 gives a view, so no data are copied per batch. What is
    shuffled is the *order of the batches*, not the samples inside them: the
    order is drawn once when the dataset is built and again every time all
    batches have been handed out. A pass of ``iteration_size`` batches
    therefore starts where the previous pass stopped.

    Floating point and boolean arrays are converted once, at construction, to
    ``pytensor.config.floatX``; integer arrays (class labels) keep their
    integer dtype. Batches from a callable are converted the same way on each
    call.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(10.0).reshape(5, 2)
    >>> y = np.arange(5)
    >>> ds = Dataset([x, y], batch_size=2, rng=0)
    >>> len(ds), sorted(len(b[0]) for b in ds)
    (3, [1, 2, 2])
    """

    def __init__(self, inputs, name=None, batch_size=32, iteration_size=None, axis=0, rng=None):
        self.name = name or "dataset"
        self.batch_size = util.check_number("batch_size", batch_size, low=1, integer=True)
        self.iteration_size = util.check_number(
            "iteration_size", iteration_size, low=1, integer=True, allow_none=True
        )
        self.axis = axis
        self.rng = util.resolve_rng(rng, kind="any")
        self._callable = None
        self._arrays = None
        self._slices = []
        self._order = np.zeros(0, dtype=int)
        self._index = 0
        if callable(inputs):
            self._init_callable(inputs)
        else:
            self._init_arrays(inputs, axis)

    # ------------------------------------------------------------------ setup

    def _init_callable(self, func):
        self._callable = func
        if self.iteration_size is None:
            try:
                self.iteration_size = max(1, len(func))
            except TypeError:
                self.iteration_size = 100
        util.log("{}: {} mini-batches from a callable", self.name, self.iteration_size)

    def _init_arrays(self, inputs, axis):
        if isinstance(inputs, (np.ndarray,)) or scipy.sparse.issparse(inputs):
            inputs = [inputs]
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(
                f"{self.name}: expected a list or tuple of arrays or a callable, "
                f"got {type(inputs).__name__}"
            )
        if len(inputs) == 0:
            raise ValueError(f"{self.name}: no data arrays were given")
        arrays = [_convert(x, i) for i, x in enumerate(inputs)]
        lengths = []
        for i, x in enumerate(arrays):
            ndim = len(x.shape)
            if scipy.sparse.issparse(x) and axis not in (0, 1):
                raise ValueError(
                    f"{self.name}: sparse input {i} can only be cut along axis 0 or 1, not {axis}"
                )
            if not -ndim <= axis < ndim:
                raise ValueError(
                    f"{self.name}: input {i} has shape {x.shape}, which has no axis {axis}"
                )
            lengths.append(x.shape[axis])
        if len(set(lengths)) != 1:
            shapes = "; ".join(f"input {i}: {x.shape}" for i, x in enumerate(arrays))
            raise ValueError(
                f"{self.name}: arrays must have the same length along axis {axis}, "
                f"got {lengths} ({shapes})"
            )
        total = lengths[0]
        if total == 0:
            raise ValueError(f"{self.name}: the data arrays are empty (length 0 along axis {axis})")
        size = self.batch_size
        self._arrays = arrays
        for start in range(0, total, size):
            stop = min(total, start + size)
            where = []
            for x in arrays:
                index = [slice(None)] * len(x.shape)
                index[axis] = slice(start, stop)
                where.append(tuple(index))
            self._slices.append(where)
        if self.iteration_size is None:
            self.iteration_size = len(self._slices)
        self.shuffle()
        util.log(
            "{}: {} of {} mini-batches of {}",
            self.name,
            self.iteration_size,
            len(self._slices),
            "; ".join(str(x.shape) for x in arrays),
        )

    # -------------------------------------------------------------- iteration

    @property
    def num_batches(self):
        """Number of distinct batches (an int; for a callable, its :attr:`iteration_size`)."""
        return len(self._slices) if self._callable is None else self.iteration_size

    def __len__(self):
        """Return the number of batches in one pass, ``iteration_size``."""
        return self.iteration_size

    def __iter__(self):
        """Iterate over one pass (``iteration_size`` batches)."""
        return self.iterate(shuffle=True)

    def shuffle(self):
        """Draw a new random order for the batches (no effect for a callable)."""
        if self._slices:
            self._order = self.rng.permutation(len(self._slices))
        self._index = 0

    def iterate(self, shuffle=True):
        """Generate one pass of ``iteration_size`` batches.

        Parameters
        ----------
        shuffle : bool, optional
            Draw a new batch order whenever every batch has been handed out.
            Defaults to True; with False the same order is reused.

        Yields
        ------
        list of arrays
            One batch: an array (view or sparse slice) per input.
        """
        for _ in range(self.iteration_size):
            if self._callable is not None:
                yield self._call()
            else:
                yield self._next(shuffle)

    def _next(self, shuffle):
        where = self._slices[self._order[self._index]]
        batch = [x[w] for x, w in zip(self._arrays, where, strict=True)]
        self._index += 1
        if self._index >= len(self._slices):
            if shuffle:
                self.shuffle()
            self._index = 0
        return batch

    def _call(self):
        returned = self._callable()
        batch = as_array_list(returned)
        if batch is None:
            raise TypeError(
                f"{self.name}: the batch callable must return a list or tuple of arrays, "
                f"got {type(returned).__name__}"
            )
        return [_convert(x, i) for i, x in enumerate(batch)]

    def __repr__(self):
        if self._callable is not None:
            return f"Dataset(name={self.name!r}, callable, iteration_size={self.iteration_size})"
        shapes = [x.shape for x in self._arrays]
        return (
            f"Dataset(name={self.name!r}, shapes={shapes}, batch_size={self.batch_size}, "
            f"iteration_size={self.iteration_size})"
        )
