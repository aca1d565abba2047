"""A matrix product with transpose flags, and how each PyTensor backend runs it.

:class:`MatMul` is the product behind the convolution layers' patch
matrices and its gradients. Each backend learns of it when the first
:class:`MatMul` is made (see :mod:`theanets.layers._dispatch`):

* the C backend rewrites it into ``dot`` products of transposes, which its
  BLAS rewrites then turn into ``Dot22``/``Gemm``;
* the Numba backend compiles it to :func:`numpy.dot` of the (transposed)
  operands, which passes the transposes to BLAS as flags;
* the JAX backend's version is registered by
  :mod:`theanets.layers.jax_dispatch`;
* without compilation, :meth:`MatMul.perform` calls :func:`numpy.dot`.
"""

import numpy as np
import pytensor.scalar
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import node_rewriter

from ._dispatch import BackendOp, numba_dispatch, once

__all__ = ["MatMul"]


@once
def _register_backends():
    """Register the C backend's rewrite and the Numba implementation of :class:`MatMul`."""
    from pytensor.compile import optdb
    from pytensor.graph.rewriting.basic import in2out

    # In the C backend, the BLAS rewrites (position 1.7) then turn the products
    # into Dot22/Gemm. Backends that skip C-only rewrites (Numba) keep MatMul.
    optdb.register(
        "theanets_lower_matmul", in2out(_lower_matmul), "fast_run", "cxx_only", position=1.65
    )
    numba = numba_dispatch()
    if numba is not None:
        _register_numba(*numba)


class MatMul(BackendOp):
    """Matrix product with optional transposes: :math:`C = op(A)\\, op(B)`.

    ``op`` is the transpose where ``trans_a``/``trans_b`` say so. The
    convolution layers use it for their patch products, and so do its
    gradients:

    .. math::
        \\frac{\\partial L}{\\partial A} = G\\, op(B)^\\top, \\qquad
        \\frac{\\partial L}{\\partial B} = op(A)^\\top G

    (transposed back when the operand enters transposed). The transposes are
    flags rather than separate operations because PyTensor's Numba backend
    copies a transposed view before multiplying it (a slow strided copy of a
    large patch or gradient matrix), while a transpose taken inside one
    compiled function is passed to BLAS as a flag. For the C backend the op
    is rewritten into ordinary ``dot`` products of transposes, which become
    ``Dot22``/``Gemm``; without compilation, :meth:`perform` calls
    :func:`numpy.dot`.

    Parameters
    ----------
    trans_a, trans_b : bool
        Whether to transpose the first / second operand.
    """

    __props__ = ("trans_a", "trans_b")

    register_backends = staticmethod(_register_backends)

    def __init__(self, trans_a=False, trans_b=False):
        self.trans_a = bool(trans_a)
        self.trans_b = bool(trans_b)
        super().__init__()

    def make_node(self, a, b):
        """Build the node for matrices ``a`` and ``b`` (cast to a common float dtype)."""
        a, b = pt.as_tensor_variable(a), pt.as_tensor_variable(b)
        if a.ndim != 2 or b.ndim != 2:
            raise TypeError(f"MatMul needs matrices, got {a.ndim}-D and {b.ndim}-D inputs")
        dtype = pytensor.scalar.upcast(a.dtype, b.dtype)
        a, b = pt.cast(a, dtype), pt.cast(b, dtype)
        rows = a.type.shape[1] if self.trans_a else a.type.shape[0]
        cols = b.type.shape[0] if self.trans_b else b.type.shape[1]
        out = pt.tensor(dtype=dtype, shape=(rows, cols))
        return Apply(self, [a, b], [out])

    def perform(self, node, inputs, output_storage):
        """Multiply with NumPy."""
        a, b = inputs
        out = np.dot(a.T if self.trans_a else a, b.T if self.trans_b else b)
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, shapes):
        """Output shape from the input shapes."""
        (ar, ac), (br, bc) = shapes
        return [(ac if self.trans_a else ar, br if self.trans_b else bc)]

    def pullback(self, inputs, outputs, cotangents):
        """Gradients of both operands, as MatMul products again."""
        a, b = inputs
        (g,) = cotangents
        ta, tb = self.trans_a, self.trans_b
        grad_a = MatMul(tb, True)(b, g) if ta else MatMul(False, not tb)(g, b)
        grad_b = MatMul(True, ta)(g, a) if tb else MatMul(not ta, False)(a, g)
        return [grad_a, grad_b]


@node_rewriter([MatMul])
def _lower_matmul(fgraph, node):
    """Replace :class:`MatMul` by ``dot`` of transposes (for the C backend's BLAS rewrites)."""
    a, b = node.inputs
    op = node.op
    return [pt.dot(a.T if op.trans_a else a, b.T if op.trans_b else b)]


def _register_numba(numba_njit, register_funcify_default_op_cache_key):
    """Give :class:`MatMul` a Numba implementation that passes transposes to BLAS."""

    @register_funcify_default_op_cache_key(MatMul)
    def _funcify(op, node, **kwargs):
        if op.trans_a and op.trans_b:

            @numba_njit
            def matmul(a, b):
                return np.dot(a.T, b.T)

        elif op.trans_a:

            @numba_njit
            def matmul(a, b):
                return np.dot(a.T, b)

        elif op.trans_b:

            @numba_njit
            def matmul(a, b):
                return np.dot(a, b.T)

        else:

            @numba_njit
            def matmul(a, b):
                return np.dot(a, b)

        return matmul, 1
