"""Regularizers from keyword arguments: :func:`from_kwargs` and :func:`known_kwargs`.

The keyword arguments of training and evaluation calls (``weight_l2=1e-4``,
``hidden_dropout=0.5``, ``contractive=dict(...)``...) name registered
regularizers or the shortcuts of :data:`SPECIAL_KWARGS`; this module turns
them into :class:`~theanets.regularizers.Regularizer` instances, in an order
that depends on the arguments only. Both functions are re-exported by
:mod:`theanets.regularizers`.
"""

import inspect

from .. import util
from ._matching import layer_roles, out_patterns, warn
from .base import Regularizer
from .noise import DEFAULT_SEED, BernoulliDropout, GaussianNoise, separate_streams, uses_streams

__all__ = ["from_kwargs", "known_kwargs"]

#: Keyword arguments of :func:`from_kwargs` that are not registry names.
SPECIAL_KWARGS = (
    "input_dropout",
    "hidden_dropout",
    "output_dropout",
    "dropout",
    "input_noise",
    "hidden_noise",
    "output_noise",
    "noise",
    "rng",
    "regularizers",
)


def known_kwargs():
    """Return the keyword argument names that :func:`from_kwargs` understands.

    Computed on each call, so regularizer classes defined later (in user
    code) are included.

    Returns
    -------
    set of str
        Registered regularizer names and aliases, plus ``input_dropout``,
        ``hidden_dropout``, ``output_dropout``, ``dropout``, ``input_noise``,
        ``hidden_noise``, ``output_noise``, ``noise``, ``rng`` and
        ``regularizers``.
    """
    return set(Regularizer.registered_names()) | set(SPECIAL_KWARGS)


def _constructor_names(cls):
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):  # pragma: no cover
        return None
    names = set()
    for p in list(sig.parameters.values())[1:]:
        if p.kind is p.VAR_KEYWORD:
            return None
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(p.name)
    return names


def _build(cls, value, argname, **defaults):
    """Build one regularizer from a keyword argument's value."""
    if isinstance(value, Regularizer):
        return value
    if isinstance(value, dict):
        kwargs = dict(value)
        names = _constructor_names(cls)
        if names is not None:
            for key in kwargs:
                if key not in names:
                    raise util.ConfigurationError(
                        f"{argname}: {cls.__name__} got an unknown keyword argument {key!r}."
                        f"{util.closest_match(key, names)} Valid: {', '.join(sorted(names))}"
                    )
            defaults = {k: v for k, v in defaults.items() if k in names}
    elif util.is_real(value):
        kwargs = dict(weight=value)
        names = _constructor_names(cls)
        if names is not None:
            defaults = {k: v for k, v in defaults.items() if k in names}
    else:
        raise util.ConfigurationError(
            f"{argname} must be a number (the weight), a dict of {cls.__name__} keyword "
            f"arguments or a Regularizer, got {type(value).__name__} {value!r}"
        )
    try:
        return cls(**{**defaults, **kwargs})
    except util.ConfigurationError as err:
        raise util.ConfigurationError(f"{argname}={value!r}: {err}") from err
    except TypeError as err:
        raise util.ConfigurationError(
            f"{argname}={value!r}: cannot build {cls.__name__}: {err}"
        ) from err


def _is_off(value):
    """A bare zero (or None) switches a keyword regularizer off."""
    return value is None or (util.is_real(value) and value == 0)


def from_kwargs(network, **kwargs):
    r"""Build the list of regularizers asked for by keyword arguments.

    Keyword arguments this function does not know are ignored (callers pass
    optimizer settings along); :func:`known_kwargs` lists those it knows.

    Parameters
    ----------
    network : :class:`theanets.graph.Network`
        The model; its layers define "input", "hidden" and "output".
    **kwargs
        The regularizers to build, by keyword; each is optional, and any
        other keyword is ignored:

        ``input_dropout``, ``hidden_dropout``, ``output_dropout`` : float or dict
            :class:`BernoulliDropout` with that drop probability on the ``:out``
            of the input layers, the hidden layers (neither input nor last) or
            the output layer. A dict gives constructor arguments instead.
        ``input_noise``, ``hidden_noise``, ``output_noise`` : float or dict
            :class:`GaussianNoise` with that standard deviation on the same
            outputs.
        ``dropout`` : dict
            Maps glob patterns of graph outputs to drop probabilities, e.g.
            ``{'hid1:out': 0.5}``.
        ``noise`` : dict
            Maps glob patterns of graph outputs to noise standard deviations.
        ``rng`` : int
            Seed of the random streams of dropout and noise (default
            :data:`DEFAULT_SEED`). Every dropout or noise regularizer, and every
            output it changes, draws from its own stream derived from this seed.
        ``regularizers`` : list or dict
            A list of :class:`Regularizer` instances, used as they are, or a
            dict of more keyword arguments, merged with the others.
        ``<name>`` : float, dict or Regularizer
            Any registered regularizer name or alias (``weight_l2``,
            ``weight_decay``, ``weight_l1``, ``weight_sparsity``, ``hidden_l1``,
            ``hidden_sparsity``, ``contractive``, ``recurrent_norm``,
            ``recurrent_state``, ``bernoullidropout``, ``gaussiannoise``, or the
            lowercase name of a user subclass): a number is the weight, a dict
            holds constructor arguments.

    Returns
    -------
    list of :class:`Regularizer`
        In a fixed order (the ``regularizers`` list, then dropout and noise
        on inputs, hidden layers and outputs, then ``dropout``, ``noise``,
        then registered names in alphabetical order), so the same arguments
        always build the same graph.

    Raises
    ------
    ConfigurationError
        For values of the wrong type or range and unknown constructor
        arguments in dict form.

    Notes
    -----
    A bare ``0`` (or ``None``) for a keyword switches it off. Patterns that
    match nothing in the network are logged as warnings.

    Examples
    --------
    >>> from theanets import Regressor
    >>> net = Regressor([4, 8, 2])
    >>> regs = from_kwargs(net, weight_l2=1e-4, hidden_dropout=0.5, learning_rate=0.1)
    >>> regs[0]
    BernoulliDropout(pattern=('hid1:out',), weight=0.5, rng=13)
    >>> regs[1]
    WeightL2(pattern=None, weight=0.0001)
    """
    kwargs = dict(kwargs)
    result = []
    extra = kwargs.pop("regularizers", None)
    if isinstance(extra, dict):
        for key, value in extra.items():
            if key in kwargs and kwargs[key] is not value:
                raise util.ConfigurationError(
                    f"regularizer {key!r} is given both as a keyword argument and in "
                    "regularizers={...}"
                )
            kwargs[key] = value
    elif isinstance(extra, Regularizer):
        result.append(extra)
    elif isinstance(extra, (list, tuple)):
        for item in extra:
            if not isinstance(item, Regularizer):
                raise util.ConfigurationError(
                    "regularizers=[...] must hold Regularizer instances, got "
                    f"{type(item).__name__} {item!r}"
                )
            result.append(item)
    elif extra is not None:
        raise util.ConfigurationError(
            "regularizers must be a list of Regularizer instances or a dict of keyword "
            f"arguments, got {type(extra).__name__} {extra!r}"
        )

    seed = util.seed_from(kwargs.get("rng"), default=DEFAULT_SEED)
    layers = list(getattr(network, "layers", []))
    inputs, hidden, outputs = layer_roles(layers)
    roles = dict(input=inputs, hidden=hidden, output=outputs)
    for where in ("input", "hidden", "output"):
        for kind, cls in (("dropout", BernoulliDropout), ("noise", GaussianNoise)):
            argname = f"{where}_{kind}"
            value = kwargs.get(argname)
            if _is_off(value):
                continue
            if not roles[where]:
                warn(
                    "{}={!r}: this network has no {} layers; nothing to change",
                    argname,
                    value,
                    where,
                )
                continue
            result.append(_build(cls, value, argname, pattern=out_patterns(roles[where]), rng=seed))
    for kind, cls in (("dropout", BernoulliDropout), ("noise", GaussianNoise)):
        value = kwargs.get(kind)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise util.ConfigurationError(
                f"{kind} must be a dict mapping glob patterns of graph outputs to "
                f"{'drop probabilities' if kind == 'dropout' else 'standard deviations'}, "
                f"e.g. {kind}={{'hid1:out': 0.3}}; got {type(value).__name__} {value!r}"
            )
        for pattern, rate in value.items():
            if not isinstance(pattern, str):
                raise util.ConfigurationError(
                    f"{kind}: keys must be glob patterns (strings), got {pattern!r}"
                )
            if _is_off(rate):
                continue
            result.append(_build(cls, rate, f"{kind}[{pattern!r}]", pattern=pattern, rng=seed))
    for key in sorted(kwargs):
        if key in SPECIAL_KWARGS or not Regularizer.is_registered(key):
            continue
        value = kwargs[key]
        if _is_off(value):
            continue
        cls = Regularizer.lookup(key)
        defaults = dict(rng=seed) if uses_streams(cls) else {}
        result.append(_build(cls, value, key, **defaults))

    separate_streams(result)

    if layers:
        for reg in result:
            reg._check_network(network)
    return result
