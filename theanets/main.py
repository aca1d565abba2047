"""The :class:`Experiment` wrapper kept for compatibility with older scripts."""

import os

from . import graph, util

__all__ = ["Experiment"]


class Experiment:
    """Hold a network and forward training and persistence calls to it.

    Older theanets scripts created an experiment first and trained through
    it; new code can use the network directly.

    Parameters
    ----------
    network : str, Network or Network subclass
        A path to a saved model (loaded), a network instance (used as is), or
        a network class (instantiated with the remaining arguments).
    *args, **kwargs
        Passed to the network class when one is given.

    Attributes
    ----------
    network : :class:`theanets.graph.Network`

    Examples
    --------
    >>> import theanets
    >>> exp = Experiment(theanets.Regressor, [3, 2])
    >>> type(exp.network).__name__
    'Regressor'
    """

    def __init__(self, network, *args, **kwargs):
        if isinstance(network, (str, os.PathLike)):
            if args or kwargs:
                raise util.ConfigurationError("Experiment(path) takes no other arguments")
            self.network = graph.Network.load(network)
        elif isinstance(network, graph.Network):
            if args or kwargs:
                raise util.ConfigurationError("Experiment(network) takes no other arguments")
            self.network = network
        elif isinstance(network, type) and issubclass(network, graph.Network):
            self.network = network(*args, **kwargs)
        else:
            raise util.ConfigurationError(
                f"Experiment needs a model path, a Network or a Network class, got {network!r}"
            )

    def train(self, *args, **kwargs):
        """Train the network; see :meth:`theanets.graph.Network.train`.

        Parameters
        ----------
        *args, **kwargs
            Training data and options, passed on to the network.

        Returns
        -------
        (dict, dict)
            Training and validation monitor values from the last epoch.
        """
        return self.network.train(*args, **kwargs)

    def itertrain(self, *args, **kwargs):
        """Train the network step by step; see :meth:`theanets.graph.Network.itertrain`.

        Parameters
        ----------
        *args, **kwargs
            The training data and options of :meth:`train`.

        Returns
        -------
        generator of (dict, dict)
            Yields the training and validation monitor values after each
            epoch; training advances as it is iterated.
        """
        return self.network.itertrain(*args, **kwargs)

    def save(self, path):
        """Save the network; see :meth:`theanets.graph.Network.save`.

        Parameters
        ----------
        path : str, path or file object
            Where to save; the file name's suffix picks the format.
        """
        self.network.save(path)

    def load(self, path):
        """Replace the network by one loaded from ``path`` and return it.

        Parameters
        ----------
        path : str, path or file object
            A saved model, in any format :meth:`theanets.graph.Network.load`
            reads.

        Returns
        -------
        :class:`theanets.graph.Network`
            The loaded network, now this experiment's :attr:`network`.
        """
        self.network = graph.Network.load(path)
        return self.network
