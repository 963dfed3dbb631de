"""The clip set: the correctly recognised test windows of a model (the attack set).

An ``.npz`` with ``motions`` ``(N, T, 25, 3)`` float32 metres (canonical, as in the
dataset), ``trajectory`` ``(N, T, 3)`` (what the canonicalisation removed; see
:mod:`.dataset`), ``labels`` ``(N,)`` true classes, ``predictions`` ``(N,)`` (equal to the
labels: only correctly recognised clips are attacked), ``index`` ``(N,)`` the window indices in
the source dataset, and ``meta``
(JSON: class names, fps, the normalisation, the dataset's and checkpoint's paths and
SHA-256, the model name). Written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np

from stimuli.errors import DataError
from stimuli.fileio import atomic_write_npz
from stimuli.fileio import read_npz
from stimuli.motion import check_motion

__all__ = ["ClipSet", "save_clips", "load_clips", "CLIPS_FORMAT"]

CLIPS_FORMAT = "smart-study-clips"
CLIPS_VERSION = 2
_KEYS = ("motions", "trajectory", "labels", "predictions", "index", "meta")


@dataclass
class ClipSet:
    motions: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    index: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    trajectory: np.ndarray | None = None
    """``(N, T, 3)``; None means zeros."""

    def __post_init__(self) -> None:
        self.motions = check_motion(self.motions, name="clip motions")
        n = len(self.motions)
        shape = (n, self.motions.shape[1], 3)
        self.trajectory = np.zeros(shape, np.float32) if self.trajectory is None else np.asarray(self.trajectory)
        if self.trajectory.shape != shape or not np.isfinite(self.trajectory).all():
            raise DataError(
                f"clip set field 'trajectory': expected finite values of shape {shape}, got {self.trajectory.shape}"
            )
        self.trajectory = self.trajectory.astype(np.float32)
        for name in ("labels", "predictions", "index"):
            arr = np.asarray(getattr(self, name)).astype(np.int64)
            if arr.shape != (n,):
                raise DataError(f"clip set field {name!r}: expected shape ({n},), got {arr.shape}")
            setattr(self, name, arr)

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names", []))

    def __len__(self) -> int:
        return len(self.motions)


def save_clips(clips: ClipSet, path: str | Path) -> Path:
    path = Path(path)
    meta = dict(clips.meta, format=CLIPS_FORMAT, format_version=CLIPS_VERSION)
    atomic_write_npz(
        path,
        {
            "motions": clips.motions,
            "trajectory": clips.trajectory,
            "labels": clips.labels,
            "predictions": clips.predictions,
            "index": clips.index,
            "meta": np.array(json.dumps(meta)),
        },
    )
    return path


def load_clips(path: str | Path) -> ClipSet:
    path = Path(path)
    arrays = read_npz(path, "clip file", ("meta",))
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as exc:
        raise DataError(f"{path}: cannot read clip file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CLIPS_FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise DataError(f"{path}: not a smart-study clip set (meta.format = {fmt!r})")
    if meta.get("format_version") != CLIPS_VERSION:
        raise DataError(
            f"{path}: clip file version {meta.get('format_version')} not supported (expected "
            f"{CLIPS_VERSION}; collect it again with attack-gen collect)"
        )
    missing = [k for k in _KEYS if k != "meta" and k not in arrays]
    if missing:
        raise DataError(f"{path}: not a smart-study clip set (missing {', '.join(missing)})")
    try:
        return ClipSet(meta=meta, **{k: arrays[k] for k in _KEYS if k != "meta"})
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
