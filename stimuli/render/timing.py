"""Which pose each video frame shows: the frame schedule (fps, duration, loop/hold, slow-down)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .config import RenderConfig
from .config import RenderError

__all__ = ["frame_schedule", "resample"]


def frame_schedule(
    num_motion_frames: int, motion_fps: float, config: RenderConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Motion frames ``(i0, i1, w)`` for every video frame: pose = ``(1 - w) X[i0] + w X[i1]``.

    Video frame ``k`` (``0 <= k < round(duration * fps)``) shows motion time
    ``k / fps / slowdown``, i.e. motion frame position ``s = k * motion_fps / (fps * slowdown)``,
    interpolated linearly between the two nearest motion frames. Past the motion's end:

    * ``"loop"``: the motion restarts, ``s`` is taken modulo ``T`` (the number of motion
      frames), so one loop lasts ``T / motion_fps`` seconds of motion time; the last frame
      is held for its own frame interval and is never blended with the first.
    * ``"hold"``: the last pose stays, ``s`` is clipped to ``T - 1``.

    Positions within 1e-9 of a whole frame are snapped to it, so an output frame that
    falls on a motion frame shows exactly that frame (``w == 0``).
    """
    n = num_motion_frames
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise RenderError(f"frame schedule: the motion must have >= 1 frame, got {num_motion_frames!r}")
    fps = motion_fps
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise RenderError(f"frame schedule: motion_fps must be a finite number > 0, got {motion_fps!r}")
    T = int(num_motion_frames)
    k = np.arange(config.num_frames, dtype=np.float64)
    s = k * float(motion_fps) / (float(config.fps) * float(config.slowdown))
    near = np.round(s)
    s = np.where(np.abs(s - near) < 1e-9, near, s)
    if config.fill == "loop":
        s = np.mod(s, T)
        i0 = np.floor(s).astype(np.int64)
        i1 = np.minimum(i0 + 1, T - 1)
    else:
        s = np.minimum(s, T - 1)
        i0 = np.floor(s).astype(np.int64)
        i1 = np.minimum(i0 + 1, T - 1)
    w = s - i0
    w = np.where(i1 == i0, 0.0, w)
    return i0, i1, w


def resample(motion: np.ndarray, motion_fps: float, config: RenderConfig) -> np.ndarray:
    """The pose of every video frame, ``(num_frames, 25, 3)`` float64 (see :func:`frame_schedule`)."""
    i0, i1, w = frame_schedule(motion.shape[0], motion_fps, config)
    x = np.asarray(motion, dtype=np.float64)
    w = w[:, None, None]
    return (1.0 - w) * x[i0] + w * x[i1]
