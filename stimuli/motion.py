"""The canonical motion layout, checked at module boundaries.

One array layout everywhere: a batch of motions is ``(N, T, V=25, C=3)`` float32 (clips,
frames, joints of :data:`stimuli.skeleton.STANDARD`, xyz); one motion is ``(T, 25, 3)``.
Coordinates are metres, Y up. Models convert to their own layouts at their boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np

from .errors import MotionFormatError
from .skeleton import NUM_JOINTS

__all__ = ["Motion", "check_motion", "check_clip", "MOTION_DTYPE"]

MOTION_DTYPE = np.float32


def _check(arr: Any, ndim: int, layout: str, name: str, allow_nonfinite: bool) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != ndim or arr.shape[-2:] != (NUM_JOINTS, 3):
        raise MotionFormatError(f"{name}: expected shape {layout} with V={NUM_JOINTS}, C=3, got {tuple(arr.shape)}")
    if arr.shape[-3] == 0:
        raise MotionFormatError(f"{name}: has no frames (T=0)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise MotionFormatError(f"{name}: expected a float array, got dtype {arr.dtype}")
    arr = arr.astype(MOTION_DTYPE, copy=False)
    if not allow_nonfinite and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        where = ", ".join(f"{axis}={i}" for axis, i in zip(layout.strip("()").split(", "), bad))
        raise MotionFormatError(f"{name}: contains NaN or Inf (first at {where})")
    return arr


def check_motion(arr: Any, *, name: str = "motion", allow_nonfinite: bool = False) -> np.ndarray:
    """Validate a batch of motions ``(N, T, 25, 3)``; returns it as float32.

    Raises :class:`MotionFormatError` naming the problem (shape, dtype, NaN/Inf position).
    """
    return _check(arr, 4, "(N, T, V, C)", name, allow_nonfinite)


def check_clip(arr: Any, *, name: str = "motion", allow_nonfinite: bool = False) -> np.ndarray:
    """Validate one motion ``(T, 25, 3)``; returns it as float32."""
    return _check(arr, 3, "(T, V, C)", name, allow_nonfinite)


@dataclass
class Motion:
    """One recording on the standard skeleton.

    ``positions`` is ``(T, 25, 3)`` float32 in metres, Y up; ``fps`` its frame rate;
    ``meta`` says where it came from (``source`` path, ``format``, ``subject`` where
    known, and loader-specific notes).
    """

    positions: np.ndarray
    fps: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions = check_clip(self.positions, name=str(self.meta.get("source", "motion")))
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise MotionFormatError(f"{self.meta.get('source', 'motion')}: frame rate must be > 0, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps
