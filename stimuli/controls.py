"""Positive controls: clearly perturbed motions for screening attentive participants (numpy only).

An Indistinguishability trial asks "is the right clip changed?". A participant who always
answers "unchanged" passes the paper's sensitivity screen (right = original); a positive
control (right = an obviously changed clip) catches them, and with it hit and false-alarm
rates and d' can be reported (SPEC §5).

The control, :func:`make_control`, changes only the limbs, so the figure stays the same
person doing the same action:

* **bone lengths**: the left forearm is stretched by ``+35 %`` and the right one shrunk by
  ``-25 %`` (times ``strength``), the hands following their wrists: arms of visibly
  different length, something no real body does;
* **tremor**: a smooth random shake at 2-4 Hz of motion time (three sinusoids per joint
  and axis, random frequencies and phases) of the elbows and wrists (3-D, 6 cm RMS each
  on top of the parent's shake, so about 8.5 cm at the wrists, the hands following) and
  of the knees and ankles (horizontal only, 5 cm RMS each, so that the feet do not sink
  through the floor; the toes follow).

The trunk, head, shoulders and hips are untouched; the length, frame rate and the root
path are kept; the result is finite for finite input and depends only on the motion,
``seed``, ``strength`` and ``fps`` (``numpy.random.default_rng``, whose stream NumPy keeps
stable).

Size, measured on the 219 real HDM05 clips of the shared SMART subset at ``strength=1``
(``tests/test_controls.py`` pins lower bounds): mean joint displacement over frames and
all 25 joints 3.9 cm (3.4-4.4 cm over clips), of the wrists 9.6 cm, the largest single
displacement about 19 cm per clip; mean bone-length deviation over all 24 bones 0.9 cm
(the forearms: 6-9 cm). A SMART attack typically moves joints by about 1 cm or less, so
the control is about 4x the attack's mean displacement and 10x at the hands, where it
shows. In the default 480x480 videos (about 250 px per metre for these clips) the wrists
are displaced by 21 px on average (median over clips; at least 13 px), all joints by 8 px,
against about 2-3 px for a 1 cm attack; at 128x128 a control changes about 5 % of the
pixels of a walking figure strongly, a 5 mm perturbation under 1 %. Unmistakable, yet the
figure and the action stay recognisable.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import MotionFormatError
from .motion import check_clip
from .skeleton import STANDARD

__all__ = ["make_control", "deviation_metrics", "CONTROL_METHOD", "CONTROL_DEFAULTS"]

CONTROL_METHOD = "limb-tremor-bone-v1"
"""Names the design above; saved with every control so a batch says how its controls were made."""

_J = STANDARD.index
_BONE_SCALE = {_J("LeftHand"): +0.35, _J("RightHand"): -0.25}
"""Child joint of the bone (its parent is the elbow) -> relative length change at strength 1."""
_TREMOR_3D = {_J("LeftForeArm"): 0.06, _J("RightForeArm"): 0.06, _J("LeftHand"): 0.06, _J("RightHand"): 0.06}
_TREMOR_FLAT = {_J("LeftLeg"): 0.05, _J("RightLeg"): 0.05, _J("LeftFoot"): 0.05, _J("RightFoot"): 0.05}
"""Joint -> its own RMS shake (m) at strength 1; ``_FLAT`` joints shake horizontally only."""
_FREQ_HZ = (2.0, 4.0)
_SINES = 3

CONTROL_DEFAULTS: dict[str, Any] = {
    "method": CONTROL_METHOD,
    "bone_scale": {STANDARD.joint_names[j]: s for j, s in _BONE_SCALE.items()},
    "tremor_rms_m": {STANDARD.joint_names[j]: a for j, a in {**_TREMOR_3D, **_TREMOR_FLAT}.items()},
    "tremor_hz": list(_FREQ_HZ),
}


def _descendants(j: int) -> list[int]:
    out, stack = [], [j]
    while stack:
        p = stack.pop()
        out.append(p)
        stack += [c for c, parent in enumerate(STANDARD.parents) if parent == p]
    return out


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, rms: float) -> np.ndarray:
    """``(T, 3)`` sums of sinusoids at 2-4 Hz with random phases; ``rms`` is the 3-D RMS magnitude."""
    f = rng.uniform(*_FREQ_HZ, size=(_SINES, 3))
    phase = rng.uniform(0, 2 * math.pi, size=(_SINES, 3))
    w = rng.uniform(0.5, 1.0, size=(_SINES, 3))
    # each axis: sum_k a_k sin(.), RMS sqrt(sum a_k^2 / 2) = rms / sqrt(3)
    a = w / np.sqrt((w**2).sum(0) / 2) * (rms / math.sqrt(3))
    return (a[None] * np.sin(2 * math.pi * f[None] * t[:, None, None] + phase[None])).sum(1)


def make_control(motion: Any, *, seed: int, strength: float = 1.0, fps: float = 30.0) -> np.ndarray:
    """A clearly perturbed copy of ``motion`` ``(T, 25, 3)`` metres (see the module docstring).

    ``seed`` (an integer) fixes the tremor; ``strength`` scales the tremor amplitude and the
    bone-length changes (1.0: the documented design; keep it within ``(0, 2.5]`` so the
    shrunk forearm keeps a length); ``fps`` is the motion's frame rate, which sets the
    tremor's frequency in seconds of motion. Returns float32 ``(T, 25, 3)``.
    """
    x = check_clip(motion, name="control: motion").astype(np.float64)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MotionFormatError(f"control: seed must be an integer >= 0, got {seed!r}")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 2.5:
        raise MotionFormatError(f"control: strength must be a number in (0, 2.5], got {strength!r}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
        raise MotionFormatError(f"control: fps must be a finite number > 0, got {fps!r}")
    T = x.shape[0]
    out = x.copy()
    parents = STANDARD.parents
    # 1. bone lengths: move the bone's child and everything below it along the bone
    for child, rel in _BONE_SCALE.items():
        offset = rel * strength * (x[:, child] - x[:, parents[child]])
        out[:, _descendants(child)] += offset[:, None]
    # 2. tremor: each shaking joint's own noise, added to it and all its descendants
    rng = np.random.default_rng(int(seed))
    t = np.arange(T, dtype=np.float64) / float(fps)
    for j, rms in sorted({**_TREMOR_3D, **_TREMOR_FLAT}.items()):
        n = _smooth_noise(rng, t, rms * strength)
        if j in _TREMOR_FLAT:
            n[:, 1] = 0.0
        out[:, _descendants(j)] += n[:, None]
    return out.astype(np.float32)


def deviation_metrics(original: Any, perturbed: Any, fps: float) -> dict[str, float]:
    """How far ``perturbed`` is from ``original`` (both ``(T, 25, 3)`` metres), as the attack reports it.

    * ``mean_joint_displacement_m``: mean over frames and joints of ``|q^ - q|``;
    * ``acceleration_deviation``: mean over frames and joints of ``|q^'' - q''|`` (m/s^2,
      second forward difference times ``fps^2``; 0 under 3 frames);
    * ``bone_length_deviation_m``: mean over frames and bones of ``|BL(q^) - BL(q)|``.
    """
    q = check_clip(original, name="original").astype(np.float64)
    qh = check_clip(perturbed, name="perturbed").astype(np.float64)
    if q.shape != qh.shape:
        raise MotionFormatError(f"deviation_metrics: shapes differ: {q.shape} vs {qh.shape}")
    d = qh - q
    acc = np.diff(d, n=2, axis=0) * float(fps) ** 2 if len(d) >= 3 else np.zeros((1, 25, 3))
    bl = np.abs(STANDARD.bone_lengths(qh) - STANDARD.bone_lengths(q))
    return {
        "mean_joint_displacement_m": float(np.linalg.norm(d, axis=-1).mean()),
        "acceleration_deviation": float(np.linalg.norm(acc, axis=-1).mean()),
        "bone_length_deviation_m": float(bl.mean()),
    }
