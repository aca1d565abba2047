"""Saving and loading this package's own model files (theanets.serialization)."""

import gzip
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import theanets
from theanets import serialization

SUFFIXES = [".pkl", ".pkl.gz", ".npz"]


def _model(rng=13):
    return theanets.Regressor([3, (4, "tanh"), 2], rng=rng)


# ----------------------------------------------------------------------
# the seed


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("seed", [0, 5, np.int64(0), np.int32(7), np.uint8(3)])
def test_integer_seed_is_kept(tmp_path, suffix, seed):
    path = tmp_path / f"model{suffix}"
    _model(seed).save(path)
    loaded = theanets.Network.load(path)
    assert loaded.rng == int(seed)
    assert type(loaded.rng) is int


def test_seed_survives_pickling_the_network():
    clone = pickle.loads(pickle.dumps(_model(np.int64(0))))
    assert clone.rng == 0


def test_random_state_seed_loads_with_the_default(tmp_path):
    _model(np.random.RandomState(3)).save(tmp_path / "model.npz")
    assert theanets.Network.load(tmp_path / "model.npz").rng == 13


def test_saved_seed_that_is_not_an_integer_is_refused():
    state = serialization.network_state(_model(4))
    state["rng"] = "four"
    data = pickle.dumps(state)
    with pytest.raises(ValueError, match="rng must be an integer seed or None, got 'four'"):
        theanets.Network.load(io.BytesIO(data))


# ----------------------------------------------------------------------
# files that are not readable models


def _npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _bad_files():
    saved = io.BytesIO()
    _model().save(saved)
    npz = serialization.dumps(_model(), "npz")
    return {
        "random.pkl": (np.random.RandomState(0).bytes(256), pickle.UnpicklingError),
        "empty.pkl": (b"", ValueError),
        "truncated.npz": (npz[: len(npz) // 2], zipfile.BadZipFile),
        "arrays.npz": (_npz_bytes(a=np.arange(3)), ValueError),
        "other-spec.npz": (_npz_bytes(__spec__=np.array('{"format": "x"}')), ValueError),
        "corrupt.pkl.gz": (gzip.compress(saved.getvalue())[:40], EOFError),
        "bad-crc.pkl.gz": (gzip.compress(b"x" * 10)[:-8] + bytes(8), gzip.BadGzipFile),
        "dict.pkl": (pickle.dumps({"weights": np.ones(3)}), ValueError),
        "array.pkl": (pickle.dumps(np.ones(3)), ValueError),
        "truncated.pkl": (saved.getvalue()[:-20], pickle.UnpicklingError),
    }


@pytest.mark.parametrize("name", sorted(_bad_files()))
def test_unreadable_file_is_named(tmp_path, name):
    data, cause = _bad_files()[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match="is not a readable theanets model file") as info:
        theanets.Network.load(path)
    assert repr(str(path)) in str(info.value)
    assert isinstance(info.value.__cause__, cause)
    assert not isinstance(info.value, pickle.UnpicklingError)


def test_unreadable_file_object_is_named(tmp_path):
    path = tmp_path / "random.pkl"
    path.write_bytes(b"\x00\x01 random")
    with open(path, "rb") as handle:
        with pytest.raises(ValueError, match="random.pkl' is not a readable"):
            theanets.Network.load(handle)
    with pytest.raises(ValueError, match="the data is not a readable"):
        theanets.Network.load(io.BytesIO(b"\x00\x01 random"))


def test_missing_file_is_the_usual_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        theanets.Network.load(tmp_path / "missing.npz")


def test_unconvertible_state_names_the_file(tmp_path):
    state = serialization.network_state(_model())
    state["params"].pop("out.b")
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(state))
    with pytest.raises(ValueError, match=r"cannot load the model in '.*model.pkl'.*out\.b"):
        theanets.Network.load(path)


def test_refused_global_stays_an_unpickling_error(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"format": "theanets", "x": Payload()}))
    with pytest.raises(serialization.UnsafePickleError, match="refusing to load .*system"):
        theanets.Network.load(path)
    assert issubclass(serialization.UnsafePickleError, pickle.UnpicklingError)
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------
# atomic writes


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"model{suffix}"
    _model(1).save(path)
    before = path.read_bytes()

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(serialization.os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        _model(2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]
    assert theanets.Network.load(path).rng == 1


def test_saved_file_has_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        _model().save(tmp_path / "new.npz")
        assert os.stat(tmp_path / "new.npz").st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "new.npz", 0o640)
        _model().save(tmp_path / "new.npz")  # replacing keeps the file's mode
        assert os.stat(tmp_path / "new.npz").st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)
