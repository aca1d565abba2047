"""Shared test settings and small datasets.

PyTensor is configured strictly for the tests (optimisation and shape errors
raise) before it is first imported. Unless ``PYTENSOR_FLAGS`` already names a
mode, tests compile with ``FAST_COMPILE``: on the suite's many tiny graphs it
is about 25 times faster end to end than the default Numba backend, whose
per-graph compilation dominates. A test that requests the ``default_mode``
fixture compiles under the mode users get instead; ``tests/test_modes.py``
checks that it does, and that every test named after the default mode asks
for it.
"""

import os

_flags = os.environ.get("PYTENSOR_FLAGS", "")
_strict = "on_opt_error=raise,on_shape_error=raise"
if "mode=" not in _flags:
    _strict += ",mode=FAST_COMPILE"
os.environ["PYTENSOR_FLAGS"] = f"{_flags},{_strict}" if _flags else _strict

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import theanets  # noqa: E402, F401

#: PyTensor's own default for ``config.mode``: ``Mode`` compiles with
#: ``config.linker`` ('auto', which is Numba in PyTensor 3) and
#: ``config.optimizer``, exactly what a user gets without any flags.
DEFAULT_MODE = "Mode"


@pytest.fixture
def default_mode():
    """Compile with PyTensor's default mode (the one users get) inside the test.

    Sets ``pytensor.config.mode`` for the duration of the test, overriding
    the suite-wide ``FAST_COMPILE`` flag, and restores it afterwards.
    Functions compiled with ``mode=None`` (all of theanets' own) pick it up.
    """
    import pytensor

    with pytensor.config.change_flags(mode=DEFAULT_MODE):
        assert pytensor.config.mode == DEFAULT_MODE
        yield DEFAULT_MODE


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator for each test."""
    return np.random.default_rng(1234)


def _float(a):
    import pytensor

    return np.asarray(a, dtype=pytensor.config.floatX)


@pytest.fixture
def regression_data(rng):
    """Inputs (64, 4) and targets (64, 3) from a smooth function."""
    x = rng.normal(size=(64, 4))
    y = np.tanh(x @ rng.normal(size=(4, 3)))
    return _float(x), _float(y)


@pytest.fixture
def classification_data(rng):
    """Inputs (90, 4) and integer labels in 0..2 from three blobs."""
    centers = rng.normal(scale=3, size=(3, 4))
    labels = np.repeat(np.arange(3), 30)
    x = centers[labels] + rng.normal(size=(90, 4))
    return _float(x), labels.astype("int32")
