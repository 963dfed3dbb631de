"""The dataset file: windows of motion, labels, split, and how they were made.

One ``.npz`` file holds

- ``motions``  ``(N, T, 25, 3)`` float32, metres, preprocessed (see :mod:`.preprocess`);
- ``trajectory`` ``(N, T, 3)`` float32, metres: what the canonicalisation removed from
  each window (``motions + trajectory[:, :, None]`` is the window in space; zeros
  where the source has no trajectory);
- ``labels``   ``(N,)`` int64 class indices;
- ``split``    ``(N,)`` uint8, 0 = train, 1 = test;
- ``source``   ``(N,)`` int64 index into ``meta["sources"]`` (the recording of each window);
- ``start``    ``(N,)`` int64 first frame of the window in the resampled recording;
- ``meta``     a JSON document (as a 0-d unicode array): format version, class names,
  fps, preprocessing config, ``canonical`` (the :class:`.preprocess.Canonical` spec the
  windows were made with, which the recognizer applies too), normalisation (``mean`` ``(25, 3)``, one scalar ``std``,
  computed on the training windows), and per recording its path, subject, label,
  split, frame count and padding.

Files are written atomically (a temporary file in the same folder, then a rename), so
an interrupted ``prepare`` never leaves a half-written dataset behind.
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

from .preprocess import Canonical

__all__ = ["Dataset", "FORMAT_VERSION", "save_dataset", "load_dataset", "TRAIN", "TEST"]

FORMAT_VERSION = 2
TRAIN, TEST = 0, 1
_KEYS = ("motions", "trajectory", "labels", "split", "source", "start", "meta")


@dataclass
class Dataset:
    """Windows of motion with labels and a train/test split (see module docstring)."""

    motions: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    source: np.ndarray
    start: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    trajectory: np.ndarray | None = None
    """``(N, T, 3)``; None means zeros (no trajectory)."""

    def __post_init__(self) -> None:
        self.motions = check_motion(self.motions, name="dataset motions")
        n = len(self.motions)
        if self.trajectory is None:
            self.trajectory = np.zeros((n, self.motions.shape[1], 3), np.float32)
        self.trajectory = np.asarray(self.trajectory)
        if self.trajectory.shape != (n, self.motions.shape[1], 3) or not np.isfinite(self.trajectory).all():
            raise DataError(
                f"dataset field 'trajectory': expected finite values of shape "
                f"({n}, {self.motions.shape[1]}, 3), got {self.trajectory.shape}"
            )
        self.trajectory = self.trajectory.astype(np.float32)
        for name in ("labels", "split", "source", "start"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != (n,):
                raise DataError(f"dataset field {name!r}: expected shape ({n},), got {arr.shape}")
            setattr(self, name, arr.astype(np.uint8 if name == "split" else np.int64))
        k = len(self.class_names)
        if n and (self.labels.min() < 0 or self.labels.max() >= k):
            raise DataError(
                f"dataset labels must lie in 0..{k - 1} ({k} class names), got {self.labels.min()}..{self.labels.max()}"
            )
        if n and not set(np.unique(self.split).tolist()) <= {TRAIN, TEST}:
            raise DataError("dataset field 'split': expected 0 (train) or 1 (test)")
        if n and (self.source.min() < 0 or self.source.max() >= len(self.sources)):
            raise DataError("dataset field 'source': index outside meta['sources']")

    # ---- metadata views -------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names", []))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def sources(self) -> list[dict[str, Any]]:
        return list(self.meta.get("sources", []))

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def canonical(self) -> Canonical:
        """The canonicalisation the windows were made with (and the recognizer applies)."""
        return Canonical.from_json(self.meta["canonical"])

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.meta["normalisation"]["mean"], dtype=np.float32)

    @property
    def std(self) -> float:
        return float(self.meta["normalisation"]["std"])

    def subjects(self) -> np.ndarray:
        """The subject of every window (``(N,)`` object array of str)."""
        subj = np.array([str(s.get("subject")) for s in self.sources], dtype=object)
        return subj[self.source] if len(self.source) else subj[:0]

    def subset(self, mask: np.ndarray) -> Dataset:
        """The windows where ``mask`` is true (metadata shared)."""
        mask = np.asarray(mask)
        return Dataset(
            self.motions[mask],
            self.labels[mask],
            self.split[mask],
            self.source[mask],
            self.start[mask],
            self.meta,
            self.trajectory[mask],
        )

    def part(self, which: str) -> Dataset:
        """``"train"`` or ``"test"`` windows."""
        if which not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {which!r}")
        return self.subset(self.split == (TRAIN if which == "train" else TEST))

    def __len__(self) -> int:
        return len(self.motions)


def save_dataset(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` to ``path`` atomically; returns the path."""
    path = Path(path)
    meta = dict(dataset.meta, format="smart-study-dataset", format_version=FORMAT_VERSION)
    atomic_write_npz(
        path,
        {
            "motions": dataset.motions,
            "trajectory": dataset.trajectory,
            "labels": dataset.labels,
            "split": dataset.split,
            "source": dataset.source,
            "start": dataset.start,
            "meta": np.array(json.dumps(meta)),
        },
    )
    return path


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset file; a missing, foreign or corrupt file raises :class:`DataError`."""
    path = Path(path)
    arrays = read_npz(path, "dataset file", ("meta",))
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: field 'meta' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: field 'meta' is not a JSON object")
    if meta.get("format") != "smart-study-dataset":
        raise DataError(f"{path}: not a smart-study dataset (meta.format = {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        hint = (
            " (made before datasets kept trajectories and their canonicalisation: run attack-gen prepare again)"
            if meta.get("format_version") == 1
            else ""
        )
        raise DataError(
            f"{path}: dataset format version {meta.get('format_version')} not supported "
            f"(expected {FORMAT_VERSION}){hint}"
        )
    for key in ("class_names", "fps", "normalisation", "sources", "canonical"):
        if key not in meta:
            raise DataError(f"{path}: meta lacks {key!r}")
    missing = [k for k in _KEYS if k != "meta" and k not in arrays]
    if missing:
        raise DataError(f"{path}: not a smart-study dataset file (missing {', '.join(missing)})")
    try:
        Canonical.from_json(meta["canonical"])
        return Dataset(meta=meta, **{k: arrays[k] for k in _KEYS if k != "meta"})
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
