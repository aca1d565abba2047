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
"""

import gzip
import importlib
import io
import json
import numbers
import os
import pickle
import secrets
import stat

import numpy as np

from . import util

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


def _loss_spec(loss):
    spec = loss.to_spec()
    return spec


def _seed(rng):
    """The integer seed to record for a network's ``rng`` (None for a RandomState)."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return int(rng)
    return None


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
        "rng": _seed(network.rng),
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

    if isinstance(state, tuple) and len(state) == 2:
        # Theano-era networks pickled their state as (layers, losses).
        raise LegacyPickleError("a network state in the Theano-era (layers, losses) form")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError("not a theanets network state")
    rng = state.get("rng")
    if rng is None:
        rng = 13
    elif isinstance(rng, bool) or not isinstance(rng, numbers.Integral):
        raise ValueError(f"the saved rng must be an integer seed or None, got {rng!r}")
    graph.Network.__init__(network, layers=(), loss=None, rng=int(rng))
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


class LegacyPickleError(pickle.UnpicklingError):
    """Raised while unpickling when the data turns out to be a Theano-era model file.

    :class:`RestrictedUnpickler` raises it on the first ``theano.*`` global,
    or ``theanets.*`` name that is not a network class of this package, and
    :func:`restore_network` on a network state in the old ``(layers,
    losses)`` form. :func:`loads` catches it and reads the data again with
    :class:`theanets.legacy.LegacyUnpickler`.
    """


class UnsafePickleError(pickle.UnpicklingError):
    """Raised when a pickle refers to a global outside the allow-list.

    :class:`RestrictedUnpickler` (and the Theano-era reader) raise it before
    anything the global names could run. It is a
    :class:`pickle.UnpicklingError`, so code catching that keeps working.
    """


def _latin1_encode(text, encoding="latin1"):
    """Stand-in for ``_codecs.encode`` as used by protocol-2 pickles of bytes."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"refusing to decode bytes with codec {encoding!r}")
    return text.encode("latin1")


def _numpy_core(module):
    """NumPy 2 moved ``numpy.core`` to ``numpy._core``; avoid the deprecated alias."""
    if module.startswith("numpy.core."):
        modern = "numpy._core." + module[len("numpy.core.") :]
        try:
            return importlib.import_module(modern)
        except ImportError:
            pass
    return importlib.import_module(module)


#: Modules renamed in Python 3 that Python 2 pickles refer to.
_PYTHON2_MODULES = {"copy_reg": "copyreg", "__builtin__": "builtins"}


def python3_name(module, name):
    """Translate a Python 2 global (``copy_reg``, ``__builtin__``) to its Python 3 name.

    :meth:`pickle.Unpickler.find_class` does this itself for old protocols;
    unpicklers that override it call this first.

    Parameters
    ----------
    module, name : str
        The global as written in the pickle.

    Returns
    -------
    (str, str)
        The module and name to look up.
    """
    return _PYTHON2_MODULES.get(module, module), name


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only builds NumPy arrays, containers and theanets networks.

    Any other global a pickle refers to raises :class:`UnsafePickleError`
    naming it, so a crafted file cannot run code while it is being loaded. A
    Theano global, or a ``theanets.*`` name that is not one of this
    package's network classes, raises :class:`LegacyPickleError` (a
    subclass): such files are read by :class:`theanets.legacy.LegacyUnpickler`
    instead.
    """

    #: Extra ``(module, name) -> object`` mappings, e.g. inert stand-ins for
    #: classes of Theano-era files.
    extra_globals = {}

    def find_class(self, module, name):
        """Return an allowed global, or raise :class:`UnsafePickleError`."""
        module, name = python3_name(module, name)
        if (module, name) in self.extra_globals:
            return self.extra_globals[(module, name)]
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in _SAFE_GLOBALS:
            return getattr(_numpy_core(module), name)
        if module == "numpy" and name.endswith("Dtype") or module == "numpy.dtypes":
            return super().find_class(module, name)
        if module == "theano" or module.startswith("theano."):
            raise LegacyPickleError(f"{module}.{name} is a Theano class")
        if module.startswith("theanets.") or module == "theanets":
            # Files of this package hold no theanets objects but (when a network
            # itself was pickled) its model class; other theanets names come from
            # Theano-era files.
            from . import graph

            try:
                obj = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                obj = None
            if isinstance(obj, type) and issubclass(obj, graph.Network):
                return obj
            raise LegacyPickleError(f"{module}.{name} is not a network class of this theanets")
        raise UnsafePickleError(
            f"refusing to load {module}.{name}: only NumPy arrays, plain containers and "
            "theanets network classes may appear in a theanets model file"
        )


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
        from . import legacy

        return "legacy", legacy.legacy_loads(data)
    from . import graph, legacy

    is_state = isinstance(obj, dict) and obj.get("format") == FORMAT
    if not (is_state or isinstance(obj, (graph.Network, legacy.LegacyObject))):
        raise ValueError(f"the pickle holds a {type(obj).__name__}, not a theanets model")
    return "pickle", obj


def _network_from_parsed(kind, obj):
    from . import graph, legacy

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
