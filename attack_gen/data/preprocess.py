"""Preprocessing as in this line of work (numpy only).

A recording ``(T, 25, 3)`` becomes fixed-length windows ready for a recognizer:

1. :func:`resample` to a target frame rate (linear interpolation in time; an integer
   ratio such as 120 -> 30 Hz picks exact frames, so bone lengths stay exact);
2. :func:`windows` of ``length`` frames every ``stride`` frames; a recording shorter
   than one window is padded by repeating its last pose (as the SMART authors do);
3. per window, :func:`canonicalise` with the dataset's :class:`Canonical` spec: the joints
   that are one point in the data are tied to one position (the groups of
   :meth:`stimuli.skeleton.Skeleton.coincident_groups`), then :func:`face_forward` (one
   rotation about the vertical (Y) axis so the body faces +Z in the window's first frame;
   hips and shoulders give the across vector; constant over the window, so turning is
   kept), then :func:`center_root` (the root joint, Hips, subtracted in every frame,
   ``"frame"``, the paper's convention; only its first-frame position, ``"first"``; or
   nothing, ``"none"``).
4. per window, its **trajectory** ``(T, 3)``: what centring removed, so that
   ``canonical + trajectory`` is the faced window moved to start above the origin
   (:func:`canonical_windows`). The recognizer never sees it; videos are drawn on it, so a
   walk moves through space.

The recognizer applies the same :class:`Canonical` spec as its first layer
(``attack_gen.recognizer``), so what the centring, facing and tying remove cannot change
a prediction; :func:`canonicalise` is also how robust success re-preprocesses an
adversarial clip.

Normalisation statistics (:func:`normalisation_stats`): a mean per joint coordinate over
training windows and frames, and one global standard deviation (a scalar), as in the
authors' ``preprocess_core.npz``; a single scale keeps bone-length ratios intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stimuli.errors import DataError
from stimuli.motion import check_clip
from stimuli.motion import check_motion
from stimuli.skeleton import STANDARD
from stimuli.skeleton import tie_coincident

__all__ = [
    "PreprocessConfig",
    "resample",
    "windows",
    "face_forward",
    "facing_angle",
    "center_root",
    "Canonical",
    "IDENTITY",
    "canonicalise",
    "canonical_windows",
    "raw_windows",
    "preprocess_motion",
    "normalisation_stats",
    "CENTER_MODES",
]

CENTER_MODES = ("frame", "first", "none")


@dataclass(frozen=True)
class PreprocessConfig:
    """How recordings become windows; saved with every dataset."""

    fps: float = 30.0
    window: int = 60
    stride: int = 10
    center: str = "frame"
    face_forward: bool = True

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.window < 2:
            raise ValueError(f"window must be >= 2 frames, got {self.window}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1 frame, got {self.stride}")
        if self.center not in CENTER_MODES:
            raise ValueError(f"center must be one of {', '.join(CENTER_MODES)}, got {self.center!r}")

    def canonical(self, coincident: tuple[tuple[int, ...], ...] = ()) -> Canonical:
        """The :class:`Canonical` spec of these settings, tying ``coincident``."""
        return Canonical(self.center, self.face_forward, coincident)


@dataclass(frozen=True)
class Canonical:
    """The spatial canonicalisation of a dataset's windows, applied by its recognizer too.

    ``coincident``: groups of joints that are one point in the data (first joint kept,
    the others placed on it); ``face_forward`` and ``center`` as in the module docstring.
    Saved in every dataset, clip set and checkpoint (:meth:`to_json`).
    """

    center: str = "frame"
    face_forward: bool = True
    coincident: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        if self.center not in CENTER_MODES:
            raise DataError(f"canonical.center must be one of {', '.join(CENTER_MODES)}, got {self.center!r}")
        if not isinstance(self.face_forward, bool):
            raise DataError(f"canonical.face_forward must be true or false, got {self.face_forward!r}")
        seen: set[int] = set()
        groups = []
        for g in self.coincident:
            if (
                isinstance(g, (str, bytes))
                or not hasattr(g, "__len__")
                or len(g) < 2
                or not all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < STANDARD.num_joints for j in g)
            ):
                raise DataError(f"canonical.coincident: expected groups of two or more joint indices 0..24, got {g!r}")
            if seen & set(g) or len(set(g)) != len(g):
                raise DataError(f"canonical.coincident: joint groups overlap ({g!r})")
            seen |= set(g)
            groups.append(tuple(int(j) for j in g))
        object.__setattr__(self, "coincident", tuple(groups))

    def to_json(self) -> dict[str, Any]:
        return {
            "center": self.center,
            "face_forward": self.face_forward,
            "coincident": [list(g) for g in self.coincident],
        }

    @classmethod
    def from_json(cls, d: Any) -> Canonical:
        """From :meth:`to_json`'s form; a bad document is a one-line :class:`DataError`."""
        if not isinstance(d, dict) or set(d) != {"center", "face_forward", "coincident"}:
            raise DataError(f"canonical: expected center, face_forward and coincident, got {d!r}")
        if not isinstance(d["coincident"], list):
            raise DataError(f"canonical.coincident: expected a list of joint groups, got {d['coincident']!r}")
        return cls(
            d["center"], d["face_forward"], tuple(tuple(g) if isinstance(g, list) else g for g in d["coincident"])
        )


IDENTITY = Canonical(center="none", face_forward=False)
"""No canonicalisation at all (a recognizer built without a dataset, e.g. in tests)."""


def resample(positions: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Resample ``(T, V, 3)`` from ``fps_in`` to ``fps_out`` by linear interpolation in time.

    Output frame ``k`` is the pose at time ``k / fps_out``; frames past the last input
    time are not produced (at least one frame always is).
    """
    positions = check_clip(positions)
    if fps_in <= 0 or fps_out <= 0:
        raise ValueError(f"frame rates must be > 0, got {fps_in} -> {fps_out}")
    if fps_in == fps_out:
        return positions.copy()
    t_in = positions.shape[0]
    ratio = fps_in / fps_out
    n_out = int(np.floor((t_in - 1) / ratio + 1e-9)) + 1
    src = np.arange(n_out, dtype=np.float64) * ratio  # fractional input frame of each output
    lo = np.floor(src + 1e-9).astype(np.int64)
    lo = np.minimum(lo, t_in - 1)
    hi = np.minimum(lo + 1, t_in - 1)
    w = (src - lo).clip(0.0, 1.0)[:, None, None]
    exact = w[:, 0, 0] < 1e-9
    out = positions[lo].astype(np.float64) * (1 - w) + positions[hi].astype(np.float64) * w
    out[exact] = positions[lo[exact]]
    return out.astype(np.float32)


def windows(positions: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut ``(T, V, 3)`` into ``(W, length, V, 3)`` windows every ``stride`` frames.

    Returns the windows, their start frames, and how many frames were padded (a clip
    shorter than ``length`` is padded by repeating its last pose; otherwise 0). The
    last window is aligned to the clip's end when the stride would skip the tail.
    """
    positions = check_clip(positions)
    t = positions.shape[0]
    if t < length:
        pad = np.repeat(positions[-1:], length - t, axis=0)
        return np.concatenate([positions, pad])[None], np.array([0]), length - t
    starts = list(range(0, t - length + 1, stride))
    if starts[-1] != t - length:
        starts.append(t - length)  # cover the tail
    idx = np.asarray(starts)[:, None] + np.arange(length)[None, :]
    return positions[idx], np.asarray(starts), 0


def facing_angle(frame: np.ndarray) -> float:
    """The angle (radians, about +Y) by which to rotate a pose ``(V, 3)`` so it faces +Z.

    The across vector runs from the right to the left joints (hips and shoulders);
    the facing direction is across x up. With Y up and facing +Z, left is +X.
    """
    left = [STANDARD.index("LeftUpLeg"), STANDARD.index("LeftArm")]
    right = [STANDARD.index("RightUpLeg"), STANDARD.index("RightArm")]
    across = (frame[left] - frame[right]).sum(axis=0).astype(np.float64)
    forward = np.cross(across, np.array([0.0, 1.0, 0.0]))
    forward[1] = 0.0
    if np.linalg.norm(forward) < 1e-9:
        return 0.0
    # current heading angle of `forward` measured from +Z towards +X
    heading = np.arctan2(forward[0], forward[2])
    return float(-heading)


def _rotate_y(positions: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return (positions.astype(np.float64) @ rot.T).astype(np.float32)


def face_forward(positions: np.ndarray) -> np.ndarray:
    """Rotate ``(T, V, 3)`` about the root's vertical axis so frame 0 faces +Z."""
    positions = check_clip(positions)
    angle = facing_angle(positions[0])
    root = positions[0, STANDARD.root].copy()
    root[1] = 0.0
    return _rotate_y(positions - root, angle) + root


def center_root(positions: np.ndarray, mode: str = "frame") -> np.ndarray:
    """Subtract the root (Hips) per frame (``"frame"``), its first position (``"first"``), or not."""
    positions = check_clip(positions)
    r = STANDARD.root
    if mode == "frame":
        return positions - positions[:, r : r + 1]
    if mode == "first":
        return positions - positions[0:1, r : r + 1]
    if mode == "none":
        return positions.copy()
    raise ValueError(f"center must be one of {', '.join(CENTER_MODES)}, got {mode!r}")


def canonicalise(window: np.ndarray, spec: Canonical) -> np.ndarray:
    """One window ``(T, 25, 3)`` in the dataset's canonical form: tie, face, centre (module docstring)."""
    w = tie_coincident(check_clip(window), spec.coincident)
    if spec.face_forward:
        w = face_forward(w)
    return center_root(w, spec.center)


def canonical_windows(wins: np.ndarray, spec: Canonical) -> tuple[np.ndarray, np.ndarray]:
    """Canonical windows ``(W, T, 25, 3)`` and their trajectories ``(W, T, 3)`` from raw ones.

    ``canonical[w] + trajectory[w][:, None]`` is window ``w`` tied and faced, moved
    horizontally so that its root starts above the origin (its height is kept).
    """
    wins = check_motion(wins, name="windows")
    canon = np.empty_like(wins)
    traj = np.empty((len(wins), wins.shape[1], 3), dtype=np.float32)
    r = STANDARD.root
    for i, w in enumerate(wins):
        faced = tie_coincident(w, spec.coincident)
        if spec.face_forward:
            faced = face_forward(faced)
        canon[i] = center_root(faced, spec.center)
        start = faced[0, r] * np.array([1.0, 0.0, 1.0], dtype=np.float32)
        traj[i] = faced[:, r] - canon[i, :, r] - start
    return canon, traj


def raw_windows(positions: np.ndarray, fps: float, config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Steps 1 and 2: one recording ``(T, 25, 3)`` at ``fps`` -> windows ``(W, window, 25, 3)``, not canonical yet.

    Returns the windows, their start frames (at the target rate) and the padding count.
    """
    pos = resample(positions, fps, config.fps)
    return windows(pos, config.window, config.stride)


def preprocess_motion(
    positions: np.ndarray, fps: float, config: PreprocessConfig, coincident: tuple[tuple[int, ...], ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One recording ``(T, 25, 3)`` at ``fps`` -> canonical windows ``(W, window, 25, 3)``.

    Returns the windows, their trajectories ``(W, window, 3)``, their start frames (at
    the target rate) and the padding count. ``coincident``: the joint groups to tie.
    """
    wins, starts, padded = raw_windows(positions, fps, config)
    canon, traj = canonical_windows(wins, config.canonical(coincident))
    return canon, traj, starts, padded


def normalisation_stats(motions: np.ndarray) -> tuple[np.ndarray, float]:
    """Mean per joint coordinate ``(25, 3)`` and one global std over ``(N, T, 25, 3)``.

    The std is taken over all coordinates after removing the per-coordinate mean
    (one scalar, like the SMART authors' ``Xstd``), so normalising never distorts
    bone-length ratios.
    """
    motions = check_motion(motions, name="training motions")
    x = motions.astype(np.float64)
    mean = x.mean(axis=(0, 1))
    std = float(np.sqrt(((x - mean) ** 2).mean()))
    if not std > 0:
        raise ValueError("training motions have zero variance; cannot normalise")
    return mean.astype(np.float32), std
