"""Atomic file writes and hashing, shared by every part that writes results."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path
from typing import IO
from typing import Any
from typing import Callable
from typing import Sequence

import numpy as np

__all__ = [
    "NPY_LOCK",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_npz",
    "file_sha256",
    "json_default",
    "load_npy",
    "read_npz",
]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it into place.

    The file at ``path`` is therefore either the complete new content or untouched; an
    interruption (exception, kill) leaves at most a hidden ``.tmp`` file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_default(obj: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays, paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


NPY_LOCK = threading.Lock()
"""Held while NumPy parses ``.npy`` headers. NumPy reads them with ``ast.literal_eval``, and on
CPython 3.11 (3.11.7 here) two threads doing that at once can raise ``SystemError: AST
constructor recursion depth mismatch`` (CPython gh-106905): the batch validator checks files
in threads, and the study server runs requests in threads."""


def load_npy(path: str | Path) -> np.ndarray:
    """``np.load(path, allow_pickle=False)`` for a ``.npy`` file, safe to call from several threads."""
    with NPY_LOCK:
        return np.load(path, allow_pickle=False)


def read_npz(
    path: str | Path, what: str, required: Sequence[str] = (), *, only_required: bool = False
) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file (no pickles; all, or only ``required``), or a one-line :class:`DataError`.

    ``what`` names the file in the messages: ``"<path>: <what> not found"``, ``"<path>: not
    a smart-study <what> (missing a, b)"`` when a ``required`` array is absent, and
    ``"<path>: cannot read <what> (<reason>)"`` for a damaged or foreign file.
    """
    from .errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        # our own handle: np.load leaves its file open when the archive is damaged
        with open(path, "rb") as fh, NPY_LOCK:
            z = np.load(fh, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy array
                raise DataError(f"{path}: cannot read {what} (a single .npy array, not an .npz archive)")
            with z:
                missing = [k for k in required if k not in z.files]
                if missing:
                    raise DataError(f"{path}: not a smart-study {what} (missing {', '.join(missing)})")
                return {k: z[k] for k in (required if only_required else z.files)}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: cannot read {what} ({exc})") from None
