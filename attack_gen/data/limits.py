"""What a motion file may contain: numbers written in ASCII, and values a human capture can have.

Every loader reads its numbers with :func:`number` (or :func:`numbers`): plain ASCII
decimal notation only (Python's ``float`` would also take ``"nan"``, ``"1_000"``, Arabic-Indic
or full-width digits), finite. What a loader produces is then checked against the limits
below by :func:`check_motion_limits`, so a file of garbage ends in a one-line
:class:`stimuli.errors.DataError` naming the file and the frame, never in a dataset whose
normalisation is ``1e26``.

The limits are wide enough for any real capture (large volumes, long spins, high-speed
cameras) and far from what a corrupted value gives:

========================  ====================  ==================================================
quantity                  limit                 why
========================  ====================  ==================================================
joint position            ``|x| <= 1000 m``     capture volumes are tens of metres
bone length / offset      ``<= 3 m``            the longest human bone is about 0.5 m
frame rate                ``1 .. 10000 Hz``     Kinect 30 Hz, optical capture 60-480 Hz
rotation angle            ``|a| <= 100000 deg`` about 280 turns: unwrapped spins of long takes
========================  ====================  ==================================================
"""

from __future__ import annotations

import math
import re
from typing import Iterable

import numpy as np

from stimuli.errors import DataError

__all__ = [
    "MAX_POSITION_M",
    "MAX_BONE_M",
    "MIN_FPS",
    "MAX_FPS",
    "MAX_ANGLE_DEG",
    "MAX_RAW_VALUE",
    "number",
    "DECIMAL_CHARS",
    "check_fps",
    "check_angles",
    "check_motion_limits",
    "metres",
]

MAX_POSITION_M = 1000.0
MAX_BONE_M = 3.0
MIN_FPS, MAX_FPS = 1.0, 10000.0
MAX_ANGLE_DEG = 1e5
MAX_RAW_VALUE = 1e7
"""Any number of a joint-angle file (offsets, translations) in its own unit: 10 km in mm, 250 km in
inches; beyond it the file is corrupt, whatever its unit (and forward kinematics would overflow)."""

DECIMAL_CHARS = frozenset("0123456789.eE+-")
"""The characters of plain decimal numbers: a text of tokens made of only these, each of which ``float``
accepts, holds plain ASCII decimals only (a quick test before a token-by-token one)."""

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def number(tok: str) -> float | None:
    """``tok`` as a finite float when it is a plain ASCII decimal number, else None."""
    if not isinstance(tok, str) or not _NUMBER.fullmatch(tok):
        return None
    v = float(tok)
    return v if math.isfinite(v) else None


def check_fps(fps: float, where: str) -> float:
    """``fps`` if it lies in ``MIN_FPS .. MAX_FPS``; else a one-line error naming ``where``."""
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        raise DataError(f"{where}: frame rate {fps!r} Hz is outside {MIN_FPS:g}..{MAX_FPS:g} Hz")
    return float(fps)


def check_angles(values: Iterable[float] | np.ndarray, where: str) -> None:
    """A one-line error naming ``where`` when a rotation angle (degrees) exceeds :data:`MAX_ANGLE_DEG`."""
    a = np.abs(np.asarray(values, dtype=np.float64))
    if a.size and not (a <= MAX_ANGLE_DEG).all():
        raise DataError(f"{where}: rotation angle {float(a.max()):g} degrees exceeds {MAX_ANGLE_DEG:g}")


def metres(positions: np.ndarray, source: str) -> np.ndarray:
    """Positions in metres as float32, after checking they are finite and within :data:`MAX_POSITION_M`
    in full precision (a float32 cast would turn 1e300 into Inf silently)."""
    p = np.asarray(positions, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(p) <= MAX_POSITION_M).all(axis=tuple(range(1, p.ndim)))
    if bad.any():
        f = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: frame {f}: a joint position is not finite or lies more than "
            f"{MAX_POSITION_M:g} m from the origin"
        )
    return p.astype(np.float32)


def check_motion_limits(positions: np.ndarray, fps: float, source: str) -> None:
    """Check a loaded recording ``(T, 25, 3)`` metres against the limits (module docstring).

    The first violation is a one-line :class:`DataError` naming ``source`` and the frame.
    """
    from stimuli.skeleton import STANDARD

    check_fps(fps, source)
    p = np.asarray(positions, dtype=np.float64)
    finite = np.isfinite(p).all(axis=(1, 2))
    if not finite.all():
        raise DataError(f"{source}: frame {int(np.flatnonzero(~finite)[0])}: position is NaN or infinite")
    far = np.abs(p).max(axis=(1, 2)) > MAX_POSITION_M
    if far.any():
        f = int(np.flatnonzero(far)[0])
        raise DataError(
            f"{source}: frame {f}: a joint lies {np.abs(p[f]).max():.3g} m from the origin "
            f"(more than {MAX_POSITION_M:g} m)"
        )
    bones = STANDARD.bone_lengths(p)
    long = bones.max(axis=1) > MAX_BONE_M
    if long.any():
        f = int(np.flatnonzero(long)[0])
        b = int(bones[f].argmax())
        child, parent = STANDARD.bones[b]
        raise DataError(
            f"{source}: frame {f}: bone {STANDARD.joint_names[parent]}-{STANDARD.joint_names[child]} "
            f"is {bones[f, b]:.3g} m long (more than {MAX_BONE_M:g} m)"
        )
