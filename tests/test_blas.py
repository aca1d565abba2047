"""Tests for theanets._blas: PyTensor's C backend is linked to a pip-provided OpenBLAS."""

import sys
import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from theanets import _blas


def test_configure_blas_never_raises_and_is_idempotent():
    _blas.configure_blas()
    _blas.configure_blas()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fix targets Linux only")
def test_c_backend_uses_blas_without_warnings():
    if "scipy_" not in pytensor.config.blas__ldflags:
        pytest.skip("blas__ldflags was set by the user, not by theanets")
    x = pt.matrix("x", dtype="float64")
    y = pt.matrix("y", dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn = pytensor.function([x, y], pt.dot(x, y), mode="CVM")
    ops = [type(node.op).__name__ for node in fn.maker.fgraph.toposort()]
    assert "Dot22" in ops
    assert all(getattr(thunk, "cthunk", None) is not None for thunk in fn.vm.thunks)
    a = np.random.default_rng(0).normal(size=(7, 5))
    b = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_allclose(fn(a, b), a @ b, rtol=1e-12)
