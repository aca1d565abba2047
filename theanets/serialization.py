"""Saving and loading networks.

Two formats are written, chosen by file name:

``.npz``
    NumPy's archive format holding every parameter array and the network
    spec as JSON. It is read with ``allow_pickle=False``: loading cannot run
    code.
anything else (``.pkl``, ``.pkl.gz``, ...)
    A pickle of a plain dictionary (spec plus NumPy arrays), gzipped when the
    name ends in ``.gz``. Pickles are read with a restricted unpickler that
    only builds NumPy arrays, plain Python containers and theanets classes;
    anything else (``os.system``, ...) raises
    :class:`pickle.UnpicklingError` before it can run.

Files are written atomically: to a temporary file in the same folder, then
renamed over the destination.
"""

import gzip
import importlib
import io
import json
import os
import pickle
import tempfile

import numpy as np

from . import util

__all__ = ["save", "load", "network_state", "restore_network", "RestrictedUnpickler"]

FORMAT = "theanets"
VERSION = 1


def _loss_spec(loss):
    spec = loss.to_spec()
    return spec


def network_state(network):
    """Return a plain dictionary describing a network: spec and parameter values.

    Parameters
    ----------
    network : :class:`theanets.graph.Network`

    Returns
    -------
    dict
        JSON-friendly spec entries plus a ``params`` dict of NumPy arrays.
    """
    cls = type(network)
    return {
        "format": FORMAT,
        "version": VERSION,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "rng": network.rng if isinstance(network.rng, int) else None,
        "layers": [layer.to_spec() for layer in network.layers],
        "losses": [_loss_spec(loss) for loss in network.losses],
        "params": {p.name: np.array(p.get_value()) for p in network.params},
    }


def restore_network(network, state):
    """Rebuild ``network`` in place from a dictionary made by :func:`network_state`.

    Parameters
    ----------
    network : :class:`theanets.graph.Network`
        A bare instance (its ``__init__`` has not run).
    state : dict

    Raises
    ------
    ValueError
        If the state is not a theanets network description.
    """
    from . import graph, losses

    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError("not a theanets network state")
    graph.Network.__init__(network, layers=(), loss=None, rng=state.get("rng") or 13)
    for spec in state["layers"]:
        spec = dict(spec)
        network.add_layer(spec)
    for spec in state["losses"]:
        spec = dict(spec)
        form = spec.pop("form")
        if spec.get("target") == "input":
            spec["target"] = network.inputs[0]
        network.add_loss(losses.Loss.build(form, **spec))
    values = state["params"]
    params = {p.name: p for p in network.params}
    if set(values) != set(params):
        raise ValueError(
            f"saved parameters {sorted(values)} do not match the network's {sorted(params)}"
        )
    for name, value in values.items():
        want = params[name].get_value(borrow=True)
        if want.shape != np.shape(value):
            raise ValueError(
                f"parameter {name}: saved shape {np.shape(value)}, expected {want.shape}"
            )
        params[name].set_value(np.asarray(value, dtype=want.dtype))


def _class_from_path(path):
    from . import graph

    module, _, name = path.rpartition(".")
    if not module.startswith("theanets"):
        raise ValueError(f"refusing to build non-theanets class {path!r}")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, graph.Network)):
        raise ValueError(f"{path!r} is not a theanets network class")
    return cls


def network_from_state(state):
    """Create a network of the recorded class from a state dictionary.

    Parameters
    ----------
    state : dict
        As made by :func:`network_state`.

    Returns
    -------
    :class:`theanets.graph.Network`
    """
    cls = _class_from_path(state["class"])
    network = cls.__new__(cls)
    restore_network(network, state)
    return network


# ----------------------------------------------------------------------
# restricted unpickling

_SAFE_GLOBALS = {
    ("builtins", name)
    for name in ("dict", "list", "tuple", "set", "frozenset", "complex", "bytearray", "slice")
} | {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.random", "__RandomState_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random.mtrand", "RandomState"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only builds NumPy arrays, containers and theanets classes.

    Any other global a pickle refers to raises :class:`pickle.UnpicklingError`
    naming it, so a crafted file cannot run code while it is being loaded.
    """

    #: Extra ``(module, name) -> object`` mappings, e.g. inert stand-ins for
    #: classes of Theano-era files.
    extra_globals = {}

    def find_class(self, module, name):
        """Return an allowed global, or raise :class:`pickle.UnpicklingError`."""
        if (module, name) in self.extra_globals:
            return self.extra_globals[(module, name)]
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if module == "numpy" and name.endswith("Dtype") or module == "numpy.dtypes":
            return super().find_class(module, name)
        if module.startswith("theanets.") or module == "theanets":
            obj = super().find_class(module, name)
            if isinstance(obj, type):
                return obj
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only NumPy arrays, plain containers and "
            "theanets classes may appear in a theanets model file"
        )


def _restricted_loads(data):
    return RestrictedUnpickler(io.BytesIO(data)).load()


# ----------------------------------------------------------------------
# files


def _is_gzip(data):
    return data[:2] == b"\x1f\x8b"


def _is_npz(data):
    return data[:4] == b"PK\x03\x04"


def _state_to_npz_bytes(state):
    spec = {k: v for k, v in state.items() if k != "params"}
    arrays = {f"param/{name}": value for name, value in state["params"].items()}
    buffer = io.BytesIO()
    np.savez(buffer, __spec__=np.array(json.dumps(spec)), **arrays)
    return buffer.getvalue()


def _state_from_npz_bytes(data):
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        state = json.loads(str(archive["__spec__"]))
        state["params"] = {
            key[len("param/") :]: archive[key] for key in archive.files if key.startswith("param/")
        }
    return state


def _write_atomic(path, data):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dumps(network, fmt="pickle"):
    """Serialise a network to bytes.

    Parameters
    ----------
    network : :class:`theanets.graph.Network`
    fmt : {'pickle', 'npz'}

    Returns
    -------
    bytes
    """
    state = network_state(network)
    if fmt == "npz":
        return _state_to_npz_bytes(state)
    if fmt != "pickle":
        raise util.ConfigurationError(f"unknown model file format {fmt!r}; use 'pickle' or 'npz'")
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def save(network, target):
    """Save a network to a path or a writable binary file object.

    Parameters
    ----------
    network : :class:`theanets.graph.Network`
    target : str, path-like or file object
        ``*.npz`` is written as an archive; ``*.gz`` is gzipped; anything
        else is a pickle. A file object receives a pickle.
    """
    if hasattr(target, "write"):
        target.write(dumps(network))
        return
    name = os.fspath(target)
    if name.endswith(".npz"):
        data = dumps(network, "npz")
    else:
        data = dumps(network)
        if name.endswith(".gz"):
            data = gzip.compress(data, mtime=0)
    _write_atomic(name, data)
    util.log("saved model to {}", name)


def loads(data):
    """Load a network from bytes in any supported format.

    Parameters
    ----------
    data : bytes

    Returns
    -------
    :class:`theanets.graph.Network`
    """
    if _is_gzip(data):
        data = gzip.decompress(data)
    if _is_npz(data):
        return network_from_state(_state_from_npz_bytes(data))
    obj = _restricted_loads(data)
    return _network_from_loaded(obj)


def _network_from_loaded(obj):
    from . import graph

    if isinstance(obj, graph.Network):
        return obj
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return network_from_state(obj)
    from . import legacy

    return legacy.network_from_legacy(obj)


def load(source):
    """Load a network from a path or a readable binary file object.

    Parameters
    ----------
    source : str, path-like or file object

    Returns
    -------
    :class:`theanets.graph.Network`

    Raises
    ------
    pickle.UnpicklingError
        If a pickle refers to anything but arrays, containers and theanets
        classes.
    ValueError
        If the file is not a theanets model.
    """
    if hasattr(source, "read"):
        data = source.read()
    else:
        with open(os.fspath(source), "rb") as handle:
            data = handle.read()
    network = loads(data)
    util.log("loaded model {!r}", network)
    return network
