"""Elementwise operations on one element, compiled by the C backend with ``-O1``.

After PyTensor's rewrites, a training graph holds a few elementwise
operations whose every input and output has one element: Adam's bias
corrections, the step counters, the mean of a loss, the sums of penalties.
PyTensor lifts the broadcast of such a scalar above its arithmetic, so they
often end up as fused loops over ``(1, 1)`` tensors with many inputs and
outputs, whose C modules are as long as those of the loops over a whole
weight matrix (110 KB of C for Adam's corrections of a classifier's
weights, eight outputs) and take the compiler over a second each at
PyTensor's ``-O3``. Such modules are about a fifth of a new classifier's
compile time. A loop that runs once gains nothing from ``-O3``'s loop
optimisations; at ``-O1`` GCC compiles such a module in about two thirds
of the time.

:class:`SizeOneElemwise` is PyTensor's ``Elemwise`` with that one
difference: its module is compiled with ``-O1`` (and the FMA contraction
of ``-O3``) in place of ``-O3``; the flags are part of the module's cache
key, so the two never share a module.
The rewrite :func:`use_light_optimisation` puts it in place of every
``Elemwise`` whose inputs and outputs all have a static shape of one
element. It runs after fusion and before PyTensor makes operations work in
place, which keeps the class (``type(op)(scalar_op, inplace_pattern)``).
It is registered by :func:`register`, for the C modes theanets chooses
only (:mod:`theanets.backend`); Numba and JAX never see the class.
"""

import math

from pytensor.tensor.elemwise import Elemwise

__all__ = ["REWRITE", "SizeOneElemwise", "register", "use_light_optimisation"]

#: Name of the rewrite in PyTensor's ``optdb``.
REWRITE = "theanets_size_one_c"


class SizeOneElemwise(Elemwise):
    """An ``Elemwise`` of one-element tensors whose C module is compiled with ``-O1``.

    It computes what :class:`pytensor.tensor.elemwise.Elemwise` computes;
    only the optimisation level of its C module differs.

    Parameters
    ----------
    scalar_op : pytensor.scalar.ScalarOp
        The operation applied to each element.
    inplace_pattern : dict, optional
        Outputs written over inputs, as for ``Elemwise``.
    name, nfunc_spec, openmp : optional
        As for ``Elemwise``.
    """

    def c_compile_args(self, **kwargs):
        """The compiler flags of ``Elemwise``, and ``-O1 -fexpensive-optimizations``.

        The second flag turns on, among others, the pass that fuses a
        multiplication and an addition into one FMA instruction, as ``-O3``
        does, so that the results are those of PyTensor's module bit for bit.

        Parameters
        ----------
        **kwargs
            As for ``Elemwise.c_compile_args`` (the C compiler).

        Returns
        -------
        list of str
        """
        return [*super().c_compile_args(**kwargs), "-O1", "-fexpensive-optimizations"]

    def c_no_compile_args(self, **kwargs):
        """The flags ``Elemwise`` removes, and PyTensor's default ``-O3``.

        Parameters
        ----------
        **kwargs
            As for ``Elemwise.c_no_compile_args`` (the C compiler).

        Returns
        -------
        list of str
        """
        return [*super().c_no_compile_args(**kwargs), "-O3"]


def _one_element(var):
    shape = var.type.shape
    return None not in shape and math.prod(shape) == 1


def _rewrite(fgraph, node):
    if type(node.op) is not Elemwise:
        return None
    if not all(_one_element(var) for var in (*node.inputs, *node.outputs)):
        return None
    op = node.op
    light = SizeOneElemwise(op.scalar_op, op.inplace_pattern, name=op.name)
    return light.make_node(*node.inputs).outputs


def use_light_optimisation():
    """Return the graph rewrite that puts :class:`SizeOneElemwise` in place of one-element loops.

    Returns
    -------
    pytensor.graph.rewriting.basic.GraphRewriter
        Replaces every ``Elemwise`` node whose inputs and outputs all have
        a static shape with one element (none of size unknown or other than
        one) by the same operation as a :class:`SizeOneElemwise`.
    """
    from pytensor.graph.rewriting.basic import in2out, node_rewriter

    return in2out(node_rewriter([Elemwise])(_rewrite), name=REWRITE, ignore_newtrees=True)


def register(optdb):
    """Register :func:`use_light_optimisation` in ``optdb`` as :data:`REWRITE`, without tags.

    A mode runs it when it includes it by name (``mode.including(REWRITE)``);
    PyTensor's own modes, which select rewrites by tag, do not.

    Parameters
    ----------
    optdb : pytensor.graph.rewriting.db.SequenceDB
        PyTensor's ``pytensor.compile.optdb``.
    """
    # after elemwise fusion (49) and the blas rewrites (50.2), before in-place (50.5)
    optdb.register(REWRITE, use_light_optimisation(), position=50.4)
