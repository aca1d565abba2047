"""What a regularizer applies to: layer roles, glob patterns and matched graph outputs.

Shared by every module of :mod:`theanets.regularizers`: the ``pattern``
(and ``wrt``) arguments are checked here, networks' layers are split into
input, hidden and output layers, and graph output names are matched against
patterns. :func:`warn` logs the warning a regularizer gives when its
pattern matches nothing in a network.
"""

import fnmatch
import logging

from .. import util
from ..layers.base import Input

#: Suffixes under which dropout and noise keep the unmodified outputs.
KEPT_SUFFIXES = ("-predrop", "-prenoise")


def warn(msg, *args):
    """Log a warning through :func:`theanets.util.log`.

    Parameters
    ----------
    msg : str
        Message with ``{}`` fields.
    *args
        Values of the fields.
    """
    util.log(msg, *args, level=logging.WARNING)


def glob_escape(name):
    """Escape glob metacharacters so that ``name`` matches only itself.

    Parameters
    ----------
    name : str

    Returns
    -------
    str
    """
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def check_pattern(pattern, where):
    """Check a ``pattern`` argument: None, a glob string or a sequence of them.

    Parameters
    ----------
    pattern : object
        The value given.
    where : str
        What to name in the error message.

    Returns
    -------
    None, str or tuple of str

    Raises
    ------
    ConfigurationError
        For anything else.
    """
    if pattern is None or isinstance(pattern, str):
        return pattern
    if isinstance(pattern, (list, tuple)) and all(isinstance(p, str) for p in pattern):
        return tuple(pattern)
    raise util.ConfigurationError(
        f"{where}: pattern must be a glob string or a sequence of them, got {pattern!r}"
    )


def patterns(pattern):
    """The globs of a checked pattern, as a tuple.

    Parameters
    ----------
    pattern : str or sequence of str

    Returns
    -------
    tuple of str
    """
    return (pattern,) if isinstance(pattern, str) else tuple(pattern)


def layer_roles(layers):
    """Split layers into input, hidden and output layers.

    Parameters
    ----------
    layers : sequence of :class:`theanets.layers.Layer`
        A network's layers, in order.

    Returns
    -------
    (list, list, list)
        The :class:`~theanets.layers.Input` layers; the others but the last;
        the last layer (unless it is an input).
    """
    layers = list(layers)
    inputs = [layer for layer in layers if isinstance(layer, Input)]
    outputs = [layers[-1]] if layers and not isinstance(layers[-1], Input) else []
    hidden = [layer for layer in layers if layer not in inputs and layer not in outputs]
    return inputs, hidden, outputs


def out_patterns(layers):
    """Patterns that match exactly the main outputs of ``layers``.

    Parameters
    ----------
    layers : sequence of :class:`theanets.layers.Layer`

    Returns
    -------
    tuple of str
        One escaped ``'<layer>:out'`` glob per layer.
    """
    return tuple(glob_escape(layer.output_name) for layer in layers)


def match_names(names, pattern):
    """Names matching a glob (or any glob of a sequence), in the given order.

    The unmodified copies kept by dropout and noise (``'-predrop'``,
    ``'-prenoise'``) only match patterns that mention those suffixes.

    Parameters
    ----------
    names : iterable of str
        Graph output names.
    pattern : str or sequence of str

    Returns
    -------
    list of str
    """
    pats = patterns(pattern)
    mention = any(s in p for p in pats for s in KEPT_SUFFIXES)
    result = []
    for name in names:
        if not mention and name.endswith(KEPT_SUFFIXES):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in pats):
            result.append(name)
    return result
