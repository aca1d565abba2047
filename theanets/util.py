"""Utilities shared across theanets: registries, errors, matching, initialisation.

This module holds the small pieces that every other module leans on:

* :class:`ConfigurationError`, raised for bad model or training configuration;
* :class:`Registrar`, the base that keeps a registry of named subclasses so
  that ``Layer.build('lstm', ...)`` or ``Loss.build('xe', ...)`` can find a
  class from a lowercase name;
* glob matching of graph outputs and parameters
  (:func:`outputs_matching`, :func:`params_matching`);
* seeded NumPy initialisation of parameters (:func:`random_matrix`,
  :func:`random_vector`);
* the ``"theanets"`` logger, which prints timestamped lines to the console
  until :mod:`logging` is configured (:func:`log`), and helpers for
  argument checking.
"""

import difflib
import fnmatch
import logging
import math
import numbers
import sys
import time

import numpy as np

__all__ = [
    "ConfigurationError",
    "Registrar",
    "as_float",
    "check_number",
    "check_unknown_kwargs",
    "closest_match",
    "constant_like",
    "is_int",
    "is_real",
    "log",
    "log_enabled",
    "logger",
    "output_name",
    "outputs_matching",
    "params_matching",
    "random_matrix",
    "random_vector",
    "resolve_rng",
    "seed_from",
]

#: The ``"theanets"`` logger; configure it with the :mod:`logging` module.
logger = logging.getLogger("theanets")


class _ConsoleHandler(logging.Handler):
    """Print ``"theanets"`` records to standard output while logging is unconfigured.

    It stands aside as soon as any other handler would receive the records
    (one added to the ``"theanets"`` logger, to an ancestor it propagates to,
    or to the root logger, e.g. by :func:`logging.basicConfig`), so records
    are never shown twice. The stream is looked up at each record, so a
    redirected ``sys.stdout`` is honoured.
    """

    def emit(self, record):
        if not _unconfigured(logging.getLogger(record.name)):
            return
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # pragma: no cover - same policy as logging's handlers
            self.handleError(record)


class _ConsoleFormatter(logging.Formatter):
    """``20250131 142501 theanets <message>``; warnings and errors name their level."""

    def format(self, record):
        stamp = time.strftime("%Y%m%d %H%M%S", time.localtime(record.created))
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            message = f"{record.levelname}: {message}"
        return f"{stamp} {record.name} {message}"


_console = _ConsoleHandler()
_console.setFormatter(_ConsoleFormatter())
for _handler in [h for h in logger.handlers if type(h).__name__ == "_ConsoleHandler"]:
    logger.removeHandler(_handler)  # left by an earlier import of this module
logger.addHandler(_console)


def _unconfigured(start=logger):
    """True when no handler but ours would receive records of ``start``."""
    current = start
    while current is not None:
        if any(h is not _console for h in current.handlers):
            return False
        if not current.propagate:
            break
        current = current.parent
    return True


def log_enabled(level=logging.INFO):
    """Tell whether :func:`log` would emit a message at ``level``.

    Parameters
    ----------
    level : int, optional
        A :mod:`logging` level; defaults to ``logging.INFO``.

    Returns
    -------
    bool
        True if the ``"theanets"`` logger lets the level through, or if
        logging is unconfigured and the level is at least ``INFO`` (the
        console default, see :func:`log`).
    """
    if logger.isEnabledFor(level):
        return True
    return (
        level >= logging.INFO
        and logger.level == logging.NOTSET
        and not logger.disabled
        and logger.manager.disable < level
        and _unconfigured()
    )


def log(msg, *args, level=logging.INFO, **kwargs):
    """Log a message through the ``"theanets"`` logger.

    While :mod:`logging` is not configured, messages of level ``INFO`` and
    above are printed to standard output with a timestamp, as
    ``20250131 142501 theanets <message>``. Configuring logging in any of
    the usual ways takes over: ``logging.getLogger('theanets').setLevel(
    logging.WARNING)`` silences the informational messages, and a handler
    (for instance from :func:`logging.basicConfig`) on the root or the
    ``"theanets"`` logger receives the messages instead of the console,
    under the usual level rules.

    Parameters
    ----------
    msg : str
        A message, with ``{}`` placeholders filled from ``args`` and
        ``kwargs`` by :meth:`str.format`.
    *args
        Values for the positional placeholders.
    level : int, optional
        A :mod:`logging` level; defaults to ``logging.INFO``.
    **kwargs
        Values for the named placeholders.

    Examples
    --------
    >>> import theanets
    >>> theanets.log('{} layers, {name}', 3, name='net')  # prints the time  # doctest: +SKIP
    20250131 142501 theanets 3 layers, net
    """
    if not log_enabled(level):
        return
    text = msg.format(*args, **kwargs) if args or kwargs else msg
    if logger.isEnabledFor(level):
        logger.log(level, text, stacklevel=2)
    else:
        # unconfigured logging: the root logger's default WARNING threshold
        # would drop the record, so hand it to the handlers directly
        record = logger.makeRecord(logger.name, level, "(theanets)", 0, text, None, None)
        logger.handle(record)


def _float_x():
    import pytensor

    return pytensor.config.floatX


def as_float(array):
    """Convert an array-like to a NumPy array of dtype ``floatX``.

    Parameters
    ----------
    array : array-like
        Values of any real dtype.

    Returns
    -------
    ndarray
        The values as a contiguous array of ``pytensor.config.floatX``.
    """
    return np.ascontiguousarray(array, dtype=_float_x())


class ConfigurationError(ValueError):
    """A model, layer or training run was configured in a way that cannot work.

    It derives from :class:`ValueError`, so ``except ValueError`` also catches it.
    """


def closest_match(name, candidates):
    """Return a ``" Did you mean 'x'?"`` hint for a misspelt name, or ``""``.

    Parameters
    ----------
    name : str
        The name that was given.
    candidates : iterable of str
        The names that would have been valid.

    Returns
    -------
    str
        A sentence suggesting the closest candidate, or an empty string.
    """
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def check_unknown_kwargs(kwargs, known, where):
    """Raise :class:`ConfigurationError` if ``kwargs`` has names not in ``known``.

    Parameters
    ----------
    kwargs : dict
        The keyword arguments that were given.
    known : iterable of str
        The names that are understood.
    where : str
        What received the arguments, used in the message (e.g. ``"layer 'hid1'"``).

    Raises
    ------
    ConfigurationError
        Naming the first unknown argument and suggesting the closest known one.
    """
    known = set(known)
    for name in kwargs:
        if name not in known:
            raise ConfigurationError(
                f"{where} got an unknown keyword argument {name!r}.{closest_match(name, known)}"
            )


class Registrar:
    """Base for class hierarchies that keep a registry of named subclasses.

    A class that derives directly from :class:`Registrar` becomes the root of a
    registry. Each subclass defined below it is registered under its lowercase
    class name and under every alias in its ``__extra_registration_keys__``
    attribute, as soon as the class statement runs; user-defined subclasses
    therefore become available by name at once. A user class may take over a
    name from another user class (a warning is logged), but the names of the
    built-in classes cannot be taken.

    Examples
    --------
    >>> class Shape(Registrar):
    ...     pass
    >>> class Square(Shape):
    ...     __extra_registration_keys__ = ['box']
    >>> type(Shape.build('box')).__name__
    'Square'
    """

    __extra_registration_keys__ = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if Registrar in cls.__bases__:
            cls._registry = {}
            return
        keys = [cls.__name__.lower()]
        keys.extend(k.lower() for k in cls.__dict__.get("__extra_registration_keys__", ()))
        for key in keys:
            previous = cls._registry.get(key)
            if previous is not None and not _same_definition(previous, cls):
                if _is_builtin(previous):
                    raise ConfigurationError(
                        f"cannot register {cls.__qualname__} as {key!r}: that name belongs to "
                        f"the built-in {previous.__module__}.{previous.__qualname__}"
                    )
                logger.warning(
                    "%s now names %s.%s (it named %s.%s)",
                    key,
                    cls.__module__,
                    cls.__qualname__,
                    previous.__module__,
                    previous.__qualname__,
                )
            cls._registry[key] = cls

    @classmethod
    def registered_names(cls):
        """Return the sorted list of names in this class's registry.

        Returns
        -------
        list of str
            Every registered name and alias.
        """
        return sorted(cls._registry)

    @classmethod
    def get_class(cls, key):
        """Return the class registered as ``key``: upstream master's name for :meth:`lookup`.

        Parameters
        ----------
        key : str
            A name or alias, looked up as :meth:`lookup` does.

        Returns
        -------
        type
            What ``lookup(key)`` returns.
        """
        return cls.lookup(key)

    @classmethod
    def lookup(cls, key):
        """Return the registered class for a name.

        Parameters
        ----------
        key : str
            A registered name or alias (case-insensitive).

        Returns
        -------
        type
            The class registered under ``key``.

        Raises
        ------
        ConfigurationError
            If nothing is registered under ``key``; the message lists the
            valid names and suggests the closest one.
        """
        if not isinstance(key, str):
            raise ConfigurationError(
                f"expected the name of a {cls.__name__.lower()}, got {type(key).__name__} {key!r}"
            )
        try:
            return cls._registry[key.lower()]
        except KeyError:
            names = cls.registered_names()
            raise ConfigurationError(
                f"unknown {cls._registry_kind()} {key!r}.{closest_match(key.lower(), names)} "
                f"Valid names: {', '.join(names)}"
            ) from None

    @classmethod
    def is_registered(cls, key):
        """Tell whether ``key`` names a registered class.

        Parameters
        ----------
        key : str
            A candidate name.

        Returns
        -------
        bool
            True when :meth:`lookup` would succeed.
        """
        return isinstance(key, str) and key.lower() in cls._registry

    @classmethod
    def build(cls, key, *args, **kwargs):
        """Create an instance of the class registered under ``key``.

        Parameters
        ----------
        key : str
            A registered name or alias.
        *args, **kwargs
            Passed to the class constructor.

        Returns
        -------
        object
            The new instance.
        """
        return cls.lookup(key)(*args, **kwargs)

    @classmethod
    def _registry_kind(cls):
        for klass in cls.__mro__:
            if Registrar in klass.__bases__:
                return klass.__name__.lower()
        return cls.__name__.lower()


def _is_builtin(cls):
    """True for classes defined inside the theanets package itself."""
    return cls.__module__ == "theanets" or cls.__module__.startswith("theanets.")


def _same_definition(a, b):
    """True when two classes are (re)definitions of the same named class."""
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__


def _as_patterns(patterns):
    if patterns is None:
        return ("*",)
    if isinstance(patterns, str):
        return (patterns,)
    return tuple(patterns)


def outputs_matching(outputs, patterns):
    """Yield ``(name, expression)`` pairs of graph outputs matching glob patterns.

    Parameters
    ----------
    outputs : dict
        Maps fully scoped output names (``'hid1:out'``) to expressions.
    patterns : str or sequence of str
        Shell-style glob(s); an output matches if it matches any of them.

    Yields
    ------
    (str, expression)
        Matching outputs, in the dictionary's order.
    """
    patterns = _as_patterns(patterns)
    for name, expr in outputs.items():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            yield name, expr


def params_matching(layers, patterns):
    """Yield ``(name, parameter)`` pairs of layer parameters matching glob patterns.

    Parameters
    ----------
    layers : sequence of :class:`theanets.layers.Layer`
        The layers whose parameters are searched.
    patterns : str or sequence of str
        Shell-style glob(s) matched against names like ``'hid1.w'``.

    Yields
    ------
    (str, shared variable)
        Matching parameters, in layer order then parameter order.
    """
    patterns = _as_patterns(patterns)
    for layer in layers:
        for param in layer.params:
            if any(fnmatch.fnmatchcase(param.name, p) for p in patterns):
                yield param.name, param


def resolve_rng(rng, kind="random_state"):
    """Return a NumPy random source for a seed or an existing source.

    Parameters
    ----------
    rng : None, int, RandomState or Generator
        An integer seed creates a fresh source; an existing source of an
        accepted kind is returned as is; None creates an unseeded source.
    kind : {"random_state", "generator", "any"}, optional
        What to return: a :class:`numpy.random.RandomState` (a Generator is
        refused), a :class:`numpy.random.Generator` (a RandomState is
        refused), or, for ``"any"``, a RandomState made from a seed or the
        RandomState or Generator given.

    Returns
    -------
    numpy.random.RandomState or numpy.random.Generator
        The source to draw from.

    Raises
    ------
    ConfigurationError
        If ``rng`` is of another type (a bool included), or a source of a
        kind that is not accepted.
    ValueError
        If ``kind`` is not one of the names above.
    """
    if kind not in ("random_state", "generator", "any"):
        raise ValueError(f"kind must be 'random_state', 'generator' or 'any', got {kind!r}")
    if rng is None or is_int(rng):
        return np.random.default_rng(rng) if kind == "generator" else np.random.RandomState(rng)
    if isinstance(rng, np.random.RandomState) and kind != "generator":
        return rng
    if isinstance(rng, np.random.Generator) and kind != "random_state":
        return rng
    wanted = {
        "random_state": "a numpy RandomState",
        "generator": "a numpy Generator",
        "any": "a numpy RandomState or Generator",
    }[kind]
    raise ConfigurationError(f"rng must be an int seed or {wanted}, got {rng!r}")


def seed_from(rng, default=None, high=2**31 - 1, where="rng"):
    """Return an integer seed for an ``rng`` argument.

    Parameters
    ----------
    rng : None, int, RandomState or Generator
        An integer is the seed itself; a NumPy random source gives one draw
        from ``[0, high)``; None gives ``default``.
    default : int or None, optional
        The seed returned for None.
    high : int, optional
        Exclusive upper bound of a drawn seed.
    where : str, optional
        What to name in the error message.

    Returns
    -------
    int or None
        ``default`` when ``rng`` is None.

    Raises
    ------
    ConfigurationError
        For a negative integer, a bool or another type.
    """
    if rng is None:
        return default
    if is_int(rng):
        if rng < 0:
            raise ConfigurationError(f"{where} must be a non-negative seed. Received: {rng!r}")
        return int(rng)
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(high))
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(high))
    raise ConfigurationError(
        f"{where} must be an integer seed (or a NumPy RandomState/Generator to draw one from). "
        f"Received: {rng!r}"
    )


def is_int(value):
    """Tell whether ``value`` is an integer (a NumPy one included) and not a bool.

    Parameters
    ----------
    value : object
        The value to test.

    Returns
    -------
    bool
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """Tell whether ``value`` is a real number (a NumPy one included) and not a bool.

    Parameters
    ----------
    value : object
        Anything; integers count as real numbers, bools and complex numbers
        do not.

    Returns
    -------
    bool
        True for a real number, which may still be infinite or NaN.
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bounds_text(low, high, low_open, high_open, integer, plain):
    """Describe the range of :func:`check_number` in words (``plain``) or symbols."""
    noun = "integer" if integer else ("finite number" if plain else "number")
    if low is None and high is None:
        return f"an {noun}" if integer else f"a {noun}"
    if low is not None and high is not None:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"{'an integer' if integer else 'a number'} in {left}{low:g}, {high:g}{right}"
    if plain and high is None and not integer and low == 0:
        return f"a positive {noun}" if low_open else f"a non-negative {noun} (>= 0)"
    if plain and high is None and integer and (low, low_open) in ((1, False), (0, True)):
        return "a positive integer"
    article = "an" if integer else "a"
    if high is None:
        return f"{article} {noun} {'>' if low_open else '>='} {low:g}"
    return f"{article} {noun} {'<' if high_open else '<='} {high:g}"


def check_number(
    name,
    value,
    low=None,
    high=None,
    *,
    integer=False,
    low_open=False,
    high_open=False,
    allow_none=False,
    where=None,
):
    """Check that an option is a number in range and return it as a float or an int.

    Without ``where`` the message follows the Keras style, e.g. ``"`batch_size`
    must be an integer >= 1. Received: 0"``; with it, the message starts with
    the owner and describes the range in words, e.g. ``"batches: steps must
    be a positive integer. Received: 0"``.

    Parameters
    ----------
    name : str
        The option's name, used in the error message.
    value : object
        The value to check.
    low, high : float or None, optional
        Bounds of the range; None leaves that side unbounded.
    integer : bool, optional
        Whether the value must be an integer (floats such as ``2.0`` are
        refused) rather than a finite real number.
    low_open, high_open : bool, optional
        Whether ``low`` and ``high`` themselves are excluded.
    allow_none : bool, optional
        Whether None is allowed; it is returned unchanged.
    where : str, optional
        The owner of the option (a layer, a loss, a function) to name first.

    Returns
    -------
    float, int or None
        An int when ``integer`` is true, a float otherwise, None for an
        allowed None.

    Raises
    ------
    ConfigurationError
        If ``value`` is a bool, is not a (finite) number of the right kind
        or is out of range.
    """
    if value is None and allow_none:
        return None
    plain = where is not None
    expected = _bounds_text(low, high, low_open, high_open, integer, plain)
    if allow_none:
        expected = f"None or {expected}"
    if integer:
        ok = is_int(value)
    else:
        ok = is_real(value) and math.isfinite(value)
        if not ok and not plain:
            expected = "a finite number"
    if ok:
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        ok = not (too_low or too_high)
    if not ok:
        what = f"{where}: {name}" if plain else f"`{name}`"
        raise ConfigurationError(f"{what} must be {expected}. Received: {value!r}")
    return int(value) if integer else float(value)


def constant_like(value, like):
    """Return a PyTensor constant holding ``value`` in the dtype of ``like``.

    Using the dtype of the expression a constant is combined with keeps
    float32 graphs in float32.

    Parameters
    ----------
    value : float or array-like
        The constant's value.
    like : pytensor.tensor.TensorVariable
        The expression whose dtype the constant takes.

    Returns
    -------
    pytensor.tensor.TensorConstant
    """
    import pytensor.tensor as pt

    return pt.constant(np.asarray(value, dtype=like.dtype))


def output_name(name):
    """Return ``name`` with the output suffix ``":out"`` when it names a bare layer.

    Parameters
    ----------
    name : str
        A layer name (``"hid1"``) or a full output name (``"hid1:pre"``).

    Returns
    -------
    str
        ``name`` unchanged when it holds a colon, ``name + ":out"`` otherwise.
    """
    return name if ":" in name else f"{name}:out"


def random_matrix(rows, cols, mean=0, std=1, sparsity=0, radius=0, diagonal=0, rng=None):
    """Draw a matrix of initial weights.

    Values are drawn as ``mean + std * N(0, 1)``. Then, in this order:

    * if ``0 < sparsity < 1``, a Bernoulli mask keeps each entry with
      probability ``1 - sparsity`` (the leading diagonal is always kept);
    * if ``radius > 0``, the matrix is rescaled so that its largest singular
      value equals ``radius``;
    * if ``diagonal`` is nonzero, the result is replaced by ``diagonal`` times
      the (rectangular) identity.

    Parameters
    ----------
    rows, cols : int
        Shape of the matrix.
    mean, std : float, optional
        Mean and standard deviation of the Gaussian draw.
    sparsity : float, optional
        Fraction of entries set to zero, in ``[0, 1)``.
    radius : float, optional
        Target spectral scale; 0 leaves the draw as it is.
    diagonal : float, optional
        If nonzero, return ``diagonal * I`` instead of random values.
    rng : None, int or RandomState, optional
        Source of randomness; an int creates a fresh state seeded with it.

    Returns
    -------
    ndarray of shape (rows, cols), dtype floatX
        The initial weights.
    """
    rng = resolve_rng(rng)
    arr = mean + std * rng.randn(rows, cols)
    if 0 < sparsity < 1:
        keep = rng.binomial(n=1, p=1 - sparsity, size=(rows, cols)).astype(bool)
        k = min(rows, cols)
        keep[:k, :k] |= np.eye(k, dtype=bool)
        arr *= keep
    if radius > 0:
        u, s, vt = np.linalg.svd(arr, full_matrices=False)
        arr = u @ np.diag(radius * s / abs(s[0])) @ vt
    if diagonal != 0:
        arr = diagonal * np.eye(max(rows, cols))[:rows, :cols]
    return as_float(arr)


def random_vector(size, mean=0, std=1, rng=None):
    """Draw a vector of initial values as ``mean + std * N(0, 1)``.

    Parameters
    ----------
    size : int
        Length of the vector.
    mean, std : float, optional
        Mean and standard deviation of the draw.
    rng : None, int or RandomState, optional
        Source of randomness; an int creates a fresh state seeded with it.

    Returns
    -------
    ndarray of shape (size,), dtype floatX
        The initial values.
    """
    rng = resolve_rng(rng)
    return as_float(mean + std * rng.randn(size))
