"""Regularizers (placeholder: replaced by the full module)."""

from . import util

__all__ = ["Regularizer", "from_kwargs", "known_kwargs"]


class Regularizer(util.Registrar):
    """Base class for regularizers."""

    def __init__(self, pattern=None, weight=0.0):
        self.pattern = pattern
        self.weight = weight

    def log(self):
        """Log a line about this regularizer."""

    def loss(self, layers, outputs):
        """Return a scalar loss term."""
        return 0

    def modify_graph(self, outputs):
        """Rewrite one layer's outputs."""

    def cache_key(self):
        """Hashable description."""
        return (type(self).__name__, self.pattern, self.weight)


def known_kwargs():
    """Names understood by from_kwargs."""
    return {"regularizers", "rng"}


def from_kwargs(network, **kwargs):
    """Build regularizers from keyword arguments."""
    return []
