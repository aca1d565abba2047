r"""Squared Jacobian norms of graph outputs, for :class:`~theanets.regularizers.Contractive`.

:func:`jacobian_norm` (and :func:`jacobian_norms`, for several outputs that
share work) computes :math:`\frac{1}{N} \sum_n \|\partial z[n] /
\partial x[n]\|_F^2` by walking the graph of ``z``:

* :func:`_chain_norms` -- the chain rule down a chain of matrix products and
  elementwise functions (:func:`_product_chain`), carried level by level
  by :class:`_ChainSweep`;
* :func:`_closed_form_norm` -- the closed form for an elementwise function
  of products that each read a different input;
* :func:`_vectorized_norm` -- the full Jacobian, everywhere else.

:func:`_dependents` and :func:`_elementwise_region` find which variables
depend on the inputs and how. Nothing here depends on the rest of theanets.
"""

import pytensor
import pytensor.tensor as pt
from pytensor.gradient import jacobian
from pytensor.graph.traversal import toposort
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.math import Dot

__all__ = ["jacobian_norm"]


def _dependents(outputs, xs):
    """Ids of the variables in the graph of ``outputs`` that depend differentiably on ``xs``.

    Dependence is not followed into integer results (such as ``x.shape``), so
    a random mask whose size comes from ``x`` does not count as a function of
    ``x``.
    """
    dep = {id(x) for x in xs}
    for node in toposort(outputs, blockers=xs):
        if any(id(i) in dep for i in node.inputs):
            dep.update(
                id(o) for o in node.outputs if str(getattr(o, "dtype", "")).startswith("float")
            )
    return dep


def _elementwise_region(top, dep, stop):
    """Walk down from ``top`` through Elemwise nodes on the ``dep`` variables.

    Returns the list of variables where the walk stops (``stop(var)`` is
    True for them), or None when a dependent variable is reached that is
    neither elementwise (with unchanged broadcasting) nor a stop.
    """
    frontier, seen, stack = [], set(), [top]
    while stack:
        var = stack.pop()
        if id(var) in seen:
            continue
        seen.add(id(var))
        if stop(var):
            frontier.append(var)
            continue
        node = var.owner
        if node is None or not isinstance(node.op, Elemwise):
            return None
        if var.type.broadcastable != top.type.broadcastable:
            return None
        for inp in node.inputs:
            if id(inp) in dep:
                if inp.type.broadcastable != top.type.broadcastable:
                    return None
                stack.append(inp)
    return frontier


def _is_dot(var):
    return var.owner is not None and isinstance(var.owner.op, Dot)


def _closed_form_norm(z, xs):
    r"""Closed form of :math:`\sum_n \|\partial z[n] / \partial x[n]\|_F^2`, or None.

    Applies when ``z`` (2-D) is an elementwise function of terms ``u_j W_j``
    (``Dot`` nodes), each ``u_j`` an elementwise function of a single input
    ``x_j``, with different inputs for different terms and no other path
    from the inputs to ``z``.
    """
    if z.ndim != 2:
        return None
    dep = _dependents([z], xs)
    if id(z) not in dep:
        return z.sum() * 0
    x_ids = {id(x): x for x in xs}
    frontier = _elementwise_region(z, dep, _is_dot)
    if not frontier:
        return None
    terms, used = [], set()
    for a in frontier:
        u, w = a.owner.inputs
        if id(w) in dep or u.ndim != 2 or w.ndim != 2:
            return None
        leaves = _elementwise_region(u, dep, lambda v: id(v) in x_ids)
        if not leaves or len({id(v) for v in leaves}) != 1:
            return None
        x = leaves[0]
        if id(x) in used:
            return None
        used.add(id(x))
        d2 = pt.sqr(pytensor.grad(z.sum(), a))
        w2 = pt.sqr(w)
        if u is x:
            terms.append((d2 * w2.sum(axis=0)).sum())
        else:
            s2 = pt.sqr(pytensor.grad(u.sum(), x))
            terms.append((d2 * pt.dot(s2, w2)).sum())
    return sum(terms)


def _product_chain(z, dep, x_ids):
    r"""Follow ``z`` down a chain of matrix products to one input, or return None.

    The chain is :math:`z = f_L(a_L)`, :math:`a_l = u_{l-1} W_l`,
    :math:`u_l = f_l(a_l)` and :math:`u_0 = f_0(x)`: each :math:`f` is
    elementwise (with unchanged broadcasting) in the variables that depend on
    the inputs, each product is a ``Dot`` of matrices, no :math:`W_l` depends
    on the inputs, and nothing else connects the inputs to ``z``. Dense and
    tied layers with elementwise activations (also learnable ones, and with
    dropout or noise in between) give such chains; softmax, ``norm:*``,
    maxout, recurrent, convolution and multi-input layers do not.

    Returns
    -------
    (x, [a_1, ..., a_L]) or None
        The input and the products, from the input upwards.
    """
    if z.ndim != 2 or id(z) not in dep:
        return None
    dots, top = [], z
    while True:
        leaves = _elementwise_region(top, dep, lambda v: id(v) in x_ids or _is_dot(v))
        if not leaves or len({id(v) for v in leaves}) != 1:
            return None
        leaf = leaves[0]
        if id(leaf) in x_ids:
            break
        u, w = leaf.owner.inputs
        if id(w) in dep or u.ndim != 2 or w.ndim != 2:
            return None
        dots.append(leaf)
        top = u
    if not dots or leaf.ndim != 2:
        return None
    return leaf, dots[::-1]


class _ChainSweep:
    r"""Squared Jacobian norms along product chains that share their first product.

    For a chain :math:`a_l = u_{l-1} W_l`, :math:`u_l = f_l(a_l)` the
    Jacobian of one example is the product

    .. math::
        J_l = \frac{\partial u_l}{\partial x} =
        \operatorname{diag}(s)\, W_1 \operatorname{diag}(f_1')\, W_2 \cdots
        W_l \operatorname{diag}(f_l'), \qquad s = \partial u_0 / \partial x,

    (rows index inputs, columns units). Level by level, the sweep carries for
    every example either :math:`J_l` itself (``'jacobian'``, an array of shape
    ``(n_in, batch, n_l)``) or its Gram matrix :math:`J_l^\top J_l`
    (``'gram'``, ``(n_l, batch, n_l)``), whichever needs fewer
    multiplications for these layer sizes: the Jacobians cost
    :math:`n_{in} n_{l-1} n_l` per example and level, the Gram matrices
    :math:`n_{l-1}^2 n_l + n_{l-1} n_l^2`, and without an input rewrite
    (:math:`s = 1`) the first Gram matrix :math:`W_1^\top W_1` is the same for
    all examples. The batch is the middle axis, so that every product with a
    weight matrix is one matrix product for the whole batch, and the
    per-example factors broadcast along contiguous rows. The
    norm of :math:`z = f_L(a_L)` is :math:`\sum_k f_L'(a_k)^2 \, c_k`, where
    :math:`c_k` is the squared norm of column :math:`k` of
    :math:`\partial a_L / \partial x`. Each level is computed once however
    many outputs use it.
    """

    def __init__(self, x, chains, mode=None):
        self.x = x
        self.below = {}
        for dots in chains:
            for lower, upper in zip([None, *dots[:-1]], dots, strict=True):
                self.below[id(upper)] = lower
        u0 = chains[0][0].owner.inputs[0]
        self.s = None if u0 is x else pytensor.grad(u0.sum(), x)
        self.mode = mode or self._cheaper(chains)
        self._cache = {}

    def _cheaper(self, chains):
        """The mode with fewer multiplications per example ('jacobian' if sizes are unknown)."""
        n_in = self.x.type.shape[-1]
        inner = {id(a) for dots in chains for a in dots[:-1]}
        levels = {id(a): a for dots in chains for a in dots}
        jacobian = gram = 0
        for key, a in levels.items():
            lower = self.below[key]
            n = a.type.shape[-1]
            m = (lower if lower is not None else self.x).type.shape[-1]
            if None in (n_in, m, n):
                return "jacobian"
            if lower is None:
                if key in inner and self.s is not None:
                    gram += n_in * n * n
                continue
            jacobian += n_in * m * n
            gram += m * m * n + (m * n * n if key in inner else 0)
        return "gram" if gram < jacobian else "jacobian"

    def _memo(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def derivative(self, f, a):
        """``d f / d a`` for an elementwise function ``f`` of ``a``."""
        return self._memo(("d", id(f), id(a)), lambda: pytensor.grad(f.sum(), a))

    def norm(self, z, dots):
        r""":math:`\sum_n \|\partial z[n] / \partial x[n]\|_F^2` for ``z = f(dots[-1])``."""
        top = dots[-1]
        return (pt.sqr(self.derivative(z, top)) * self.columns(top)).sum()

    def columns(self, a):
        """Squared column norms of each example's ``d a / d x``, shape (batch, n)."""
        w = a.owner.inputs[1]
        if self.below[id(a)] is None:
            w2 = pt.sqr(w)
            return w2.sum(axis=0)[None, :] if self.s is None else pt.dot(pt.sqr(self.s), w2)
        if self.mode == "jacobian":
            return self._memo(("c", id(a)), lambda: pt.sqr(self.jacobian_pre(a)).sum(axis=0))
        return self.gram_step(a)[0]

    def jacobian_pre(self, a):
        """Each example's ``d a / d x``, shape (n_in, batch, n)."""
        return self._memo(("j", id(a)), lambda: self._jacobian_pre(a))

    def _jacobian_pre(self, a):
        u, w = a.owner.inputs
        lower = self.below[id(a)]
        if lower is None:
            return w[:, None, :] if self.s is None else self.s.T[:, :, None] * w[:, None, :]
        jac = self.jacobian_pre(lower) * self.derivative(u, lower)[None, :, :]
        return _dot_rows(jac, w)

    def gram_pre(self, a):
        """Each example's ``(d a / d x)^T (d a / d x)``: (n, batch, n), or (n, n) if constant."""
        return self._memo(("g", id(a)), lambda: self._gram_pre(a))

    def _gram_pre(self, a):
        w = a.owner.inputs[1]
        if self.below[id(a)] is not None:
            return _dot_cols(w, self.gram_step(a)[1])
        if self.s is None:
            return pt.dot(w.T, w)
        return _dot_cols(w, pt.sqr(self.s).T[:, :, None] * w[:, None, :])

    def gram_step(self, a):
        """Columns of ``a = u W`` and ``S W`` (m, batch, n), S the Gram matrix of ``u``."""
        return self._memo(("t", id(a)), lambda: self._gram_step(a))

    def _gram_step(self, a):
        u, w = a.owner.inputs
        lower = self.below[id(a)]
        gram, d = self.gram_pre(lower), self.derivative(u, lower)
        if gram.ndim == 2:
            # the same G for every example: S W = d * (G (d * W))
            scaled = d.T[:, :, None] * w[:, None, :]
            prod = _dot_cols(gram.T, scaled)
            return (scaled * prod).sum(axis=0), d.T[:, :, None] * prod
        prod = _dot_rows(d.T[:, :, None] * gram * d[None, :, :], w)
        return (w[:, None, :] * prod).sum(axis=0), prod


def _dot_rows(t, w):
    """``t[i, b, :] @ w`` for a 3-D ``t``, as one matrix product."""
    prod = pt.dot(t.reshape((-1, t.shape[2])), w)
    return prod.reshape((t.shape[0], t.shape[1], w.shape[1]))


def _dot_cols(w, t):
    """``w.T @ t[:, b, :]`` for a 3-D ``t``, as one matrix product."""
    prod = pt.dot(w.T, t.reshape((t.shape[0], -1)))
    return prod.reshape((w.shape[1], t.shape[1], t.shape[2]))


def _chain_norms(zs, xs, mode=None):
    r""":math:`\sum_n \|\partial z[n] / \partial x[n]\|_F^2` by the chain rule, for each ``z``.

    Outputs that are not at the top of a product chain (see
    :func:`_product_chain`) get None. Chains that start with the same
    product share one :class:`_ChainSweep`; ``mode`` forces its choice
    (``'jacobian'`` or ``'gram'``).
    """
    dep = _dependents(zs, xs)
    x_ids = {id(x) for x in xs}
    chains = [_product_chain(z, dep, x_ids) for z in zs]
    groups = {}
    for chain in chains:
        if chain is not None:
            groups.setdefault(id(chain[1][0]), []).append(chain)
    sweeps = {key: _ChainSweep(g[0][0], [c[1] for c in g], mode) for key, g in groups.items()}
    return [
        None if chain is None else sweeps[id(chain[1][0])].norm(z, chain[1])
        for z, chain in zip(zs, chains, strict=True)
    ]


def _vectorized_norm(z, xs):
    r""":math:`\sum_n \|\partial z[n] / \partial x[n]\|_F^2` from the full Jacobian."""
    connected = [x for x in xs if id(z) in _dependents([z], [x])]
    if not connected:
        return z.sum() * 0
    flat = z.sum(axis=0).flatten()
    jacs = jacobian(flat, connected, vectorize=True, disconnected_inputs="ignore")
    return sum(pt.sqr(j).sum() for j in jacs)


def jacobian_norms(zs, xs, closed_form=True):
    """:func:`jacobian_norm` of each of ``zs``, sharing the work of common chains.

    Parameters
    ----------
    zs : list of tensor
        Expressions whose first axis indexes examples.
    xs : list of tensor
        Input variables.
    closed_form : bool, optional
        As for :func:`jacobian_norm`.

    Returns
    -------
    list of scalar expression
        One per ``z``, of its dtype.
    """
    totals = _chain_norms(zs, xs) if closed_form else [None] * len(zs)
    norms = []
    for z, total in zip(zs, totals, strict=True):
        if total is None and closed_form:
            total = _closed_form_norm(z, xs)
        if total is None:
            total = _vectorized_norm(z, xs)
        norms.append(pt.cast(total / pt.cast(z.shape[0], z.dtype), z.dtype))
    return norms


def jacobian_norm(z, xs, closed_form=True):
    r"""Mean over examples of the squared Frobenius norm of per-example Jacobians.

    .. math::
        \frac{1}{N} \sum_{n=1}^N \sum_{x \in X}
        \left\| \frac{\partial z[n]}{\partial x[n]} \right\|_F^2

    Parameters
    ----------
    z : tensor
        An expression whose first axis indexes examples.
    xs : list of tensor
        Input variables, first axis also indexing examples.
    closed_form : bool, optional
        Use the chain rule through matrix products and elementwise functions
        where the graph of ``z`` allows it (default True); False always
        forms the Jacobian with :func:`pytensor.gradient.jacobian`. Both give
        the same value.

    Returns
    -------
    scalar expression
        Of the same dtype as ``z``.

    Notes
    -----
    Examples must not interact (see :class:`~theanets.regularizers.Contractive`,
    which also says how the norm is computed).
    """
    return jacobian_norms([z], xs, closed_form)[0]
