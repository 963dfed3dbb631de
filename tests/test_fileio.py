"""``stimuli.fileio``: npz reading with one-line errors, and the JSON default."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from stimuli.errors import DataError
from stimuli.fileio import NPY_LOCK
from stimuli.fileio import json_default
from stimuli.fileio import load_npy
from stimuli.fileio import read_npz


def test_read_npz_returns_the_arrays_and_can_keep_only_the_required(tmp_path: Path) -> None:
    p = tmp_path / "a.npz"
    np.savez(p, x=np.arange(3), y=np.ones(2))
    got = read_npz(p, "thing")
    assert set(got) == {"x", "y"} and got["x"].tolist() == [0, 1, 2]
    assert set(read_npz(p, "thing", ("y",), only_required=True)) == {"y"}


def test_read_npz_errors_name_the_file_and_what_was_expected(tmp_path: Path) -> None:
    p = tmp_path / "a.npz"
    with pytest.raises(DataError, match=r"a\.npz: thing not found$"):
        read_npz(p, "thing")
    np.savez(p, x=np.arange(3))
    with pytest.raises(DataError, match=r"a\.npz: not a smart-study thing \(missing y, z\)$"):
        read_npz(p, "thing", ("x", "y", "z"))
    p.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"a\.npz: cannot read thing \("):
        read_npz(p, "thing")
    with open(p, "wb") as fh:
        np.save(fh, np.arange(3))  # an .npy array under an .npz name
    with pytest.raises(DataError, match=r"a\.npz: cannot read thing \(a single \.npy array, not an \.npz archive\)$"):
        read_npz(p, "thing")
    np.savez(p, o=np.array([{"a": 1}], dtype=object))  # a pickle is refused, not loaded
    with pytest.raises(DataError, match=r"cannot read thing \(.*allow_pickle"):
        read_npz(p, "thing")


def test_json_default_handles_numpy_and_paths() -> None:
    doc = {"a": np.int64(3), "b": np.float32(0.5), "c": np.arange(2), "d": Path("/x/y")}
    assert json.loads(json.dumps(doc, default=json_default)) == {"a": 3, "b": 0.5, "c": [0, 1], "d": "/x/y"}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        json.dumps(object(), default=json_default)


@pytest.mark.parametrize("reader", ["load_npy", "read_npz"])
def test_numpy_headers_are_parsed_one_thread_at_a_time(tmp_path: Path, reader: str) -> None:
    # NumPy parses .npy headers with ast.literal_eval, which CPython 3.11 can break when two
    # threads run it at once (gh-106905: "AST constructor recursion depth mismatch"); the
    # batch validator loads motions from a thread pool. A reader must wait for NPY_LOCK.
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", arr)
    np.savez(tmp_path / "a.npz", x=arr)
    got: list[np.ndarray] = []
    started = threading.Event()

    def load() -> None:
        started.set()
        got.append(load_npy(tmp_path / "a.npy") if reader == "load_npy" else read_npz(tmp_path / "a.npz", "x")["x"])

    with NPY_LOCK:
        t = threading.Thread(target=load)
        t.start()
        assert started.wait(10)
        t.join(0.3)
        assert t.is_alive() and not got  # waiting for the lock
    t.join(10)
    assert not t.is_alive()
    np.testing.assert_array_equal(got[0], arr)
