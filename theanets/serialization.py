"""Saving and loading networks.

Two formats are written, chosen by file name:

``.npz``
    NumPy's archive format holding every parameter array and the network
    spec as JSON. It is read with ``allow_pickle=False``: loading cannot run
    code.
anything else (``.pkl``, ``.pkl.gz``, ...)
    A pickle of a plain dictionary (spec plus NumPy arrays), gzipped when the
    name ends in ``.gz``. Pickles are read with a restricted unpickler that
    only builds NumPy arrays, plain Python containers and theanets network
    classes; anything else (``os.system``, ...) raises
    :class:`pickle.UnpicklingError` before it can run.

Model files pickled by Theano-era theanets (0.7, 0.8) are read too, without
Theano: the first Theano object met while reading raises the internal
:class:`LegacyPickleError`, and the bytes are read again by
:class:`theanets.legacy.LegacyUnpickler`, which turns every Theano and old
theanets object into an inert stand-in that
:func:`theanets.legacy.network_from_legacy` converts (see
:mod:`theanets.legacy`).

Files are written atomically: to a temporary file in the same folder, then
renamed over the destination.

A file that cannot be read as a model -- not a pickle or archive at all,
cut short, or holding something else -- raises :class:`ValueError` naming
the file, with the original error as its ``__cause__``. A pickle that asks
for a global outside the allow-list raises :class:`UnsafePickleError`
instead.

This module sits above :mod:`theanets.graph` and the models, and builds
networks only through the public methods of :class:`~theanets.graph.Network`
(:meth:`~theanets.graph.Network.from_layers`, ``add_layer``, ``add_loss``).
It registers :func:`save`, :func:`load`, :func:`network_state` and
:func:`network_from_state` with :func:`theanets.graph.implements`, as what
:meth:`~theanets.graph.Network.save`, :meth:`~theanets.graph.Network.load`
and pickling call. The allow-list itself lives in :mod:`theanets._unpickle`,
shared with :mod:`theanets.legacy`.
"""

import gzip
import importlib
import io
import json
import os
import pickle
import secrets
import stat

import numpy as np

from . import _unpickle, graph, legacy, losses, util
from ._unpickle import LegacyPickleError, UnsafePickleError, python3_name  # noqa: F401

__all__ = [
    "save",
    "load",
    "network_state",
    "restore_network",
    "RestrictedUnpickler",
    "LegacyPickleError",
    "UnsafePickleError",
]

FORMAT = "theanets"
VERSION = 1


@graph.implements("state")
def network_state(network):
    """Return a plain dictionary describing a network: spec and parameter values.

    Parameters
    ----------
    network : :class:`theanets.graph.Network`

    Returns
    -------
    dict
        JSON-friendly spec entries plus a ``params`` dict of NumPy arrays.
        An integer seed (also a NumPy integer) is kept as ``rng``; a
        :class:`numpy.random.RandomState` is recorded as None, and the
        restored network then uses the default seed 13.
    """
    cls = type(network)
    return {
        "format": FORMAT,
        "version": VERSION,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "rng": int(network.rng) if util.is_int(network.rng) else None,
        "layers": [layer.to_spec() for layer in network.layers],
        "losses": [loss.to_spec() for loss in network.losses],
        "params": {p.name: np.array(p.get_value()) for p in network.params},
    }


def restore_network(network, state):
    """Rebuild ``network`` in place from a dictionary made by :func:`network_state`.

    Parameters
    ----------
    network : :class:`theanets.graph.Network`
        A bare instance (its ``__init__`` has not run), as unpickling makes.
    state : dict

    Raises
    ------
    ValueError
        If the state is not a theanets network description.
    """
    network.__setstate__(state)


def _class_from_path(path):
    module, _, name = path.rpartition(".")
    if not module.startswith("theanets"):
        raise ValueError(f"refusing to build non-theanets class {path!r}")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, graph.Network)):
        raise ValueError(f"{path!r} is not a theanets network class")
    return cls


@graph.implements("from_state")
def network_from_state(state, cls=None):
    """Create a network from a state dictionary.

    Parameters
    ----------
    state : dict
        As made by :func:`network_state`.
    cls : type, optional
        The :class:`~theanets.graph.Network` subclass to build; by default
        the class the state records.

    Returns
    -------
    :class:`theanets.graph.Network`

    Raises
    ------
    LegacyPickleError
        If the state is a Theano-era ``(layers, losses)`` pair.
    ValueError
        If the state is not a theanets network description, or its
        parameters do not fit the network it describes.
    """
    if isinstance(state, tuple) and len(state) == 2:
        # Theano-era networks pickled their state as (layers, losses).
        raise LegacyPickleError("a network state in the Theano-era (layers, losses) form")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError("not a theanets network state")
    rng = state.get("rng")
    if rng is None:
        rng = 13
    elif not util.is_int(rng):
        raise ValueError(f"the saved rng must be an integer seed or None, got {rng!r}")
    if cls is None:
        cls = _class_from_path(state["class"])
    network = cls.from_layers((), rng=int(rng))
    for spec in state["layers"]:
        network.add_layer(dict(spec))
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
    return network


# ----------------------------------------------------------------------
# restricted unpickling


class RestrictedUnpickler(_unpickle.AllowListUnpickler):
    """An unpickler that only builds NumPy arrays, containers and theanets networks.

    Any other global a pickle refers to raises :class:`UnsafePickleError`
    naming it, so a crafted file cannot run code while it is being loaded. A
    Theano global, or a ``theanets.*`` name that is not one of this
    package's network classes, raises :class:`LegacyPickleError` (a
    subclass): such files are read by :class:`theanets.legacy.LegacyUnpickler`
    instead.

    Parameters
    ----------
    file, fix_imports, encoding, errors, buffers
        As for :class:`pickle.Unpickler`, which reads the pickle from ``file``.
    """

    def theanets_global(self, module, name):
        """Accept this package's network classes (a pickled network names its class).

        Parameters
        ----------
        module, name : str

        Returns
        -------
        type or None
            The :class:`~theanets.graph.Network` subclass, or None for any
            other name (those come from Theano-era files).
        """
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return None
        return obj if isinstance(obj, type) and issubclass(obj, graph.Network) else None


def _restricted_loads(data):
    # latin1 lets NumPy rebuild arrays pickled by Python 2 (their data are str).
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


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
        if "__spec__" not in archive.files:
            raise ValueError(
                f"a NumPy archive without a theanets model spec (it holds "
                f"{', '.join(archive.files[:5]) or 'nothing'})"
            )
        state = json.loads(str(archive["__spec__"]))
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("a NumPy archive whose __spec__ is not a theanets model spec")
        state["params"] = {
            key[len("param/") :]: archive[key] for key in archive.files if key.startswith("param/")
        }
    return state


def _write_atomic(path, data):
    """Write ``data`` to a new file beside ``path``, then rename it over ``path``.

    The new file gets the permissions of the file it replaces, or those of a
    newly created file (``0o666`` less the umask).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}-{os.path.basename(path)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if os.path.exists(path):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
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


@graph.implements("save")
def save(network, target):
    """Save a network to a path or a writable binary file object.

    Parameters
    ----------
    network : :class:`theanets.graph.Network`
    target : str, path-like or file object
        ``*.npz`` is written as an archive; ``*.gz`` is gzipped; anything
        else is a pickle. A file object receives a pickle. A path is written
        atomically: if saving fails, a file already there is left as it was.
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


def _parse(data):
    """Read model-file bytes into ``(kind, object)`` without building a network."""
    if not data:
        raise ValueError("the file is empty")
    if _is_gzip(data):
        data = gzip.decompress(data)
    if _is_npz(data):
        return "npz", _state_from_npz_bytes(data)
    try:
        obj = _restricted_loads(data)
    except LegacyPickleError:
        return "legacy", legacy.legacy_loads(data)
    is_state = isinstance(obj, dict) and obj.get("format") == FORMAT
    if not (is_state or isinstance(obj, (graph.Network, legacy.LegacyObject))):
        raise ValueError(f"the pickle holds a {type(obj).__name__}, not a theanets model")
    return "pickle", obj


def _network_from_parsed(kind, obj):
    if isinstance(obj, graph.Network):
        return obj
    if kind == "npz" or isinstance(obj, dict):
        return network_from_state(obj)
    return legacy.network_from_legacy(obj)


def _describe(err):
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def loads(data, name=None):
    """Load a network from bytes in any supported format.

    Parameters
    ----------
    data : bytes
    name : str or path-like, optional
        Where the data came from, for error messages.

    Returns
    -------
    :class:`theanets.graph.Network`

    Raises
    ------
    UnsafePickleError
        If a pickle refers to a global outside the allow-list.
    ValueError
        If the data are not a readable theanets model (the reason is the
        exception's ``__cause__``), or hold a model that cannot be converted
        (a :class:`~theanets.util.ConfigurationError` stays one).
    """
    where = "the data" if name is None else repr(os.fsdecode(name))
    try:
        kind, obj = _parse(data)
    except UnsafePickleError:
        raise
    except Exception as err:
        raise ValueError(
            f"{where} is not a readable theanets model file ({_describe(err)})"
        ) from err
    try:
        return _network_from_parsed(kind, obj)
    except Exception as err:
        cls = util.ConfigurationError if isinstance(err, util.ConfigurationError) else ValueError
        raise cls(f"cannot load the model in {where}: {_describe(err)}") from err


@graph.implements("load")
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
    FileNotFoundError, OSError
        If the file cannot be opened.
    UnsafePickleError
        If a pickle refers to anything but arrays, containers and theanets
        classes (nothing it names has run).
    ValueError
        If the file is not a readable theanets model, or its model cannot be
        converted; the message names the file and the original error is the
        ``__cause__``.
    """
    if hasattr(source, "read"):
        data = source.read()
        name = getattr(source, "name", None)
        name = name if isinstance(name, (str, bytes, os.PathLike)) else None
    else:
        name = os.fspath(source)
        with open(name, "rb") as handle:
            data = handle.read()
    network = loads(data, name)
    util.log("loaded model {!r}", network)
    return network
