"""Registering theanets' operations with PyTensor's backends, once and when first needed.

The operations theanets defines (:mod:`theanets.layers._matmul`,
:mod:`theanets.layers._conv_ops`, :mod:`theanets.layers.fused`) bring their
own implementations for PyTensor's Numba backend and, for some, graph
rewrites. Registering those imports Numba, which ``import theanets`` does
not, so a module registers its operations when the first of them is made or
unpickled (:class:`BackendOp`), and only the first time (:func:`once`).

Nothing here imports Numba or another backend until a registration runs.
"""

import functools

from pytensor.graph.op import Op

__all__ = ["BackendOp", "numba_dispatch", "once"]


def once(register):
    """Make a registration function run on its first call only.

    Parameters
    ----------
    register : callable
        A function of no arguments that registers implementations with
        PyTensor (a second registration under the same name would fail).

    Returns
    -------
    callable
        A function of no arguments that calls ``register`` the first time
        and does nothing afterwards, also when the first call raised.
    """
    done = []

    @functools.wraps(register)
    def register_once():
        if not done:
            done.append(True)
            register()

    return register_once


def numba_dispatch():
    """PyTensor's decorators for Numba implementations of operations.

    Returns
    -------
    (callable, callable) or None
        ``(numba_njit, register_funcify_default_op_cache_key)`` from
        :mod:`pytensor.link.numba.dispatch.basic`, or None where PyTensor
        has no such module (the operations then run their ``perform``).
    """
    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_default_op_cache_key,
        )
    except ImportError:  # pragma: no cover - a PyTensor without this Numba backend
        return None
    return numba_njit, register_funcify_default_op_cache_key


class BackendOp(Op):
    """An operation whose backend implementations are registered when one is first made.

    Subclasses set :attr:`register_backends` to a function made by
    :func:`once`; constructing or unpickling an instance calls it, so a
    graph never holds an operation whose backends do not know it yet.
    Subclasses with their own ``__init__`` call ``super().__init__()``.
    """

    #: Registers the class's backend implementations (wrapped in :func:`once`).
    register_backends = staticmethod(lambda: None)

    def __init__(self):
        self.register_backends()

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.register_backends()
