"""The :class:`Regularizer` base class: arguments, registry, cache keys.

Every regularizer class, built in or defined by a user, derives from
:class:`Regularizer` and is registered under its lowercase class name when
it is defined. :func:`freeze` turns option values into the hashable parts
of :meth:`Regularizer.cache_key`.
"""

import numbers

import numpy as np

from .. import util
from ._matching import check_pattern

__all__ = ["Regularizer"]


def freeze(value):
    """A hashable stand-in for an option value (for cache keys).

    Parameters
    ----------
    value : object
        A pattern or option: a number, string, sequence, dict, array...

    Returns
    -------
    hashable
        Equal for equal plain values and arrays; other objects stand for
        themselves (by identity).
    """
    if value is None or isinstance(value, (str, bool, numbers.Number)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    return (type(value).__qualname__, id(value))


class Regularizer(util.Registrar):
    r"""A regularizer of a neural network model.

    Subclasses override :meth:`loss` to add a term to the training loss, or
    :meth:`modify_graph` to rewrite graph outputs as they are built (rarely
    both). Every subclass is registered under its lowercase class name (plus
    the aliases in ``__extra_registration_keys__``), so it can be asked for
    by keyword: ``net.train(..., myregularizer=0.1)`` builds
    ``MyRegularizer(weight=0.1)`` and ``myregularizer=dict(weight=0.1,
    pattern='hid1:out')`` passes the dict to the constructor.

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Shell-style glob(s) naming the parameters (``'hid1.w'``) or graph
        outputs (``'hid1:out'``) the regularizer applies to. ``None`` means
        the subclass's default.
    weight : float, optional
        Strength of the regularizer: the multiplier of its loss term, or
        (for dropout and noise) its rate. Must be a finite real number; the
        built-in regularizers also require it to be non-negative.

    Attributes
    ----------
    pattern : str, tuple of str or None
        The glob pattern(s).
    weight : float
        The strength.

    Notes
    -----
    The total training loss of a network with losses :math:`\mathcal{L}_j`
    (weights :math:`\lambda_j`) and regularizers :math:`R_r` (weights
    :math:`w_r`) is

    .. math::
        \mathcal{L} = \sum_j \lambda_j \mathcal{L}_j + \sum_r w_r R_r .

    Examples
    --------
    A custom regularizer that penalises short weight columns. Defining the
    class registers it, so its lowercase name works as a keyword at once:

    >>> import numpy as np
    >>> import theanets
    >>> class ShortColumns(theanets.Regularizer):
    ...     def loss(self, layers, outputs):
    ...         return sum((1 / (p * p).sum(axis=0)).sum()
    ...                    for layer in layers for p in layer.params if p.ndim == 2)
    >>> theanets.Regularizer.is_registered('shortcolumns')
    True

    It is asked for when training, and ``loss``/``loss_value`` include its
    term, multiplied by the weight:

    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    >>> net = theanets.Regressor([4, 8, 2])
    >>> _ = net.train([x, y], algo='sgd', max_updates=2, shortcolumns=0.001)
    >>> ws = [net.find(name, 'w').get_value() for name in ('hid1', 'out')]
    >>> expected = sum((1 / (w ** 2).sum(axis=0)).sum() for w in ws)
    >>> extra = net.loss_value(x, y, shortcolumns=1.0) - net.loss_value(x, y)
    >>> bool(np.isclose(extra, expected))
    True
    """

    #: Whether the weight must be non-negative (True for the built-ins).
    _NONNEGATIVE_WEIGHT = False

    def __init__(self, pattern=None, weight=0.0):
        self.pattern = check_pattern(pattern, type(self).__name__)
        self.weight = self._check_weight(weight)

    @classmethod
    def build(cls, key, *args, **kwargs):
        """Create the regularizer registered under ``key``.

        Positional arguments follow the constructor's order, ``(pattern,
        weight, ...)``, except that a number given first is the weight, so
        ``Regularizer.build('weight_l2', 0.01)`` works as it did in
        Theano-era scripts.

        Parameters
        ----------
        key : str
            A registered name or alias (``'weight_l2'``, ``'hidden_l1'``...).
        *args
            ``(pattern, weight, ...)``, or a single number: the weight.
        **kwargs
            More constructor arguments.

        Returns
        -------
        Regularizer

        Raises
        ------
        ConfigurationError
            For an unknown name, or when a number given first (the weight) is
            followed by more positional arguments or by ``weight=``.

        Examples
        --------
        >>> Regularizer.build('weight_l2', 0.01)
        WeightL2(pattern=None, weight=0.01)
        >>> Regularizer.build('hidden_l1', 'hid1:out', 0.1)
        HiddenL1(pattern='hid1:out', weight=0.1)
        """
        klass = cls.lookup(key)
        if args and util.is_real(args[0]):
            if len(args) > 1 or "weight" in kwargs:
                raise util.ConfigurationError(
                    f"Regularizer.build({key!r}, {', '.join(map(repr, args))}): a number "
                    "given first is the weight; give the other arguments by keyword "
                    "(pattern=..., ...)"
                )
            args, kwargs = (), {**kwargs, "weight": args[0]}
        return klass(*args, **kwargs)

    def _check_weight(self, weight):
        low = 0 if self._NONNEGATIVE_WEIGHT else None
        return util.check_number("weight", weight, low=low, where=type(self).__name__)

    def log(self):
        """Log a one-line description of this regularizer."""
        util.log(
            "regularizer {}: weight {}, pattern {}", type(self).__name__, self.weight, self.pattern
        )

    def loss(self, layers, outputs):
        """Compute a scalar term to add to the model's loss.

        Parameters
        ----------
        layers : list of :class:`theanets.layers.Layer`
            The layers of the model being regularized.
        outputs : dict
            Maps the fully scoped name of every graph output
            (``'hid1:out'``, ...) to its expression.

        Returns
        -------
        scalar expression or number
            The term, before multiplication by :attr:`weight`; 0 by default.
        """
        return 0

    def modify_graph(self, outputs):
        """Rewrite the outputs of one layer while the graph is built.

        Parameters
        ----------
        outputs : dict
            Maps the fully scoped names of one layer's outputs to their
            expressions. The dictionary is changed in place; the network
            keeps whatever it holds afterwards. The default does nothing.

        Notes
        -----
        The network calls this while it builds the graph, once after each
        layer, so a change is seen by the later layers and by the losses.
        For example, :class:`BernoulliDropout` replaces each matching output
        with an expression in which randomly chosen entries are set to zero
        each time it is evaluated (keeping the unchanged output under
        ``'<name>-predrop'``), and :class:`GaussianNoise` adds noise the same
        way. Any regularizer that needs to change the structure of the
        computation graph implements this method; one that only adds a term
        to the loss implements :meth:`loss`.
        """

    def pop_updates(self):
        """Return and forget the ``(shared, expression)`` updates made so far.

        The network calls this after each :meth:`modify_graph` and compiles
        the updates into every function that evaluates the graph (random
        streams use them to advance). The default has none.

        Returns
        -------
        list of (shared variable, expression)
        """
        return []

    def cache_key(self):
        """Return a hashable description of this regularizer.

        Two regularizers with equal keys build equal graphs, so compiled
        functions may be shared between them. The key holds the class, the
        weight, the pattern and every public attribute (options such as
        ``wrt`` and the ``rng`` seed).

        Returns
        -------
        tuple
        """
        cls = type(self)
        options = tuple(
            sorted(
                (k, freeze(v))
                for k, v in vars(self).items()
                if not k.startswith("_") and k not in ("weight", "pattern")
            )
        )
        extra = getattr(self, "_stream_index", 0)
        return (
            cls.__module__,
            cls.__qualname__,
            self.weight,
            freeze(self.pattern),
            options,
            extra,
        )

    def _check_network(self, network):
        """Warn (or raise) when this regularizer cannot apply to a network.

        Called by :func:`from_kwargs`; the default checks nothing.
        """

    def __repr__(self):
        return f"{type(self).__name__}(pattern={self.pattern!r}, weight={self.weight!r})"
