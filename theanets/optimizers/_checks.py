"""Validation of numeric training options, shared by the optimizers and datasets.

Every check raises :class:`theanets.util.ConfigurationError` with a message
that names the option, states what was expected and shows the value given,
for example ``"`batch_size` must be an integer >= 1. Received: 0"``.
"""

import math
import numbers

import numpy as np

from .. import util


def is_int(value):
    """Return True for an integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """Return True for a real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fail(name, expected, value):
    raise util.ConfigurationError(f"`{name}` must be {expected}. Received: {value!r}")


def check_number(name, value, low=0.0, high=None, low_open=False, high_open=True):
    """Return ``value`` as a float after checking that it is a finite number in range.

    Parameters
    ----------
    name : str
        The option's name, used in the error message.
    value : object
        The value to check.
    low, high : float or None, optional
        Bounds; None means unbounded on that side. By default the range is
        ``[0, inf)``.
    low_open, high_open : bool, optional
        Whether the bounds are excluded (default: ``low`` included, ``high``
        excluded).

    Returns
    -------
    float

    Raises
    ------
    ConfigurationError
        If ``value`` is not a finite real number or is out of range.
    """
    if not is_real(value) or not math.isfinite(value):
        _fail(name, "a finite number", value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if high is None:
            expected = f"a number {'>' if low_open else '>='} {low:g}"
        elif low is None:
            expected = f"a number {'<' if high_open else '<='} {high:g}"
        else:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            expected = f"a number in {left}{low:g}, {high:g}{right}"
        _fail(name, expected, value)
    return float(value)


def check_count(name, value, minimum, allow_none=False):
    """Return ``value`` as an int after checking that it is an integer >= ``minimum``.

    Parameters
    ----------
    name : str
        The option the count is given for (named when it is refused).
    value : object
        The count given.
    minimum : int
        The smallest value allowed.
    allow_none : bool, optional
        Whether None is allowed (it is returned unchanged).

    Returns
    -------
    int or None

    Raises
    ------
    ConfigurationError
        If ``value`` is not an integer (bools and floats such as ``2.0`` are
        refused) or is smaller than ``minimum``.
    """
    if value is None and allow_none:
        return None
    if not is_int(value) or value < minimum:
        what = "None or an integer" if allow_none else "an integer"
        _fail(name, f"{what} >= {minimum}", value)
    return int(value)


def halflife_to_decay(name, halflife):
    r"""Return the moving-average weight :math:`\gamma = e^{-\ln 2 / h}` of a half-life.

    Parameters
    ----------
    name : str
        The option's name, used in the error message.
    halflife : float
        The half-life :math:`h > 0`, in updates.

    Returns
    -------
    float
        :math:`\gamma \in (0, 1)`.

    Raises
    ------
    ConfigurationError
        If ``halflife`` is not a finite positive number.
    """
    h = check_number(name, halflife, low=0.0, low_open=True)
    return float(np.exp(-np.log(2) / h))
