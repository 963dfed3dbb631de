"""The embedded synthetic dataset: procedural human motions on the standard skeleton.

Every part of the platform runs without downloaded data by falling back on this
module: it writes plausible, seeded human motions of :data:`ACTIONS` on
:data:`stimuli.skeleton.STANDARD` (Y up, metres, the person facing +Z, so the
person's left is +X).

How a clip is made
------------------
1. **A subject.** A rest skeleton (:data:`REST_OFFSETS`, each joint's offset from its
   parent, for an adult of about 1.75 m) is scaled uniformly (:data:`SCALE_RANGE`) and per
   bone group (about +-3 %, the same on both sides). A named subject (``"s01"``...) also
   has habits (:func:`subject_style`): a tempo and an amplitude factor, how much the arms
   swing and the trunk turns in locomotion, :data:`STYLE_KNOBS` style knobs that each
   action reads its own way (how high a waving hand is held, how far a kick is
   chambered...) and a habitual posture (slouch, head carriage, toe-out...). Both are
   drawn from the subject's name alone, so a cross-subject split is meaningful and the
   test subjects move in ways the training subjects do not; ``subject=None`` draws them
   from the clip's seed.
2. **Joint-angle curves.** Each action writes smooth periodic (walk, sneak, jog, waves,
   squat, jumping jack, clap) or repeated one-shot (kicks, punch, elbow strike, bow)
   curves for a fixed set of anatomical channels (:data:`CHANNELS`, degrees), modulated
   per clip by tempo, amplitude and phase, with the pace and the size of the repetitions
   drifting within the clip (a slow time warp and amplitude modulation, about 6 %).
3. **Noise, as in captured data.** Slow drift (a few sinusoids of 0.15-1.2 Hz per
   channel, 1-4 degrees RMS) and fast jitter (many sinusoids of 3-14 Hz, a few hundredths
   of a degree RMS, sized from the residuals of real HDM05 windows) are added to the
   angles, never to positions, so bone lengths stay exact.
4. **Forward kinematics** (vectorised over frames) turns the local rotations into
   positions, so every bone keeps exactly its length in every frame.
5. **Ground contact.** Each foot touches the ground through a heel point (below the
   ankle) and a toe point (below the toe joint). The root height puts the lowest of
   these at y = 0 in every frame, plus a lift in the jumping actions (jog, jumping
   jack). The root moves horizontally so that the supporting point (the lowest one,
   softly weighted) does not slide, and keeps the clip's mean ground velocity while
   airborne: walking, sneaking and jogging therefore travel forward along the facing
   direction with planted feet, and a squat or a bow shifts the hips back over the feet.
   Each clip is centred horizontally (the root's mean x and z over the clip are 0), which
   also keeps float32 coordinates small.

Confusable classes
------------------
Real action sets contain classes that differ in a detail (HDM05's kick-left and
kick-right). :data:`CONFUSABLE_PAIRS` lists the synthetic ones: walk / sneak (a crouched,
slower gait), wave right / wave left, kick right / kick left, punch / elbow strike. They
keep a recognizer from reaching 100 % through a single gross cue, so its decision
boundaries, like those of a model trained on captured data, lie within reach of an
imperceptible perturbation.

Per-clip variation (all from the seed)
--------------------------------------
Body and habits of the subject (above). Tempo: :data:`TEMPO_RANGE` x the subject's x the
action's base frequency. Amplitude: :data:`AMPLITUDE_RANGE` x the subject's. Style: the
subject's knobs and posture, varied a little per clip. Phase: uniform over the cycle (for
the arm raises of the waves, a start time in -0.8..0.4 s). Facing: +Z turned by up to
:data:`FACING_JITTER_DEG`. Noise: :data:`NOISE_SD_SCALE_RANGE` on the drift and
:data:`JITTER_SCALE_RANGE` on the jitter. Everything sampled is recorded in
``meta["params"]``.

Conventions and quirks
----------------------
* Joints 0 (LHipJoint) and 5 (RHipJoint) sit at the root (Hips, 10) and Neck (13)
  at Spine1 (12): these bones have zero length, as in real data.
* Thumbs: in the real HDM05/CMU-derived data each thumb joint (19, 24) coincides with
  its wrist (17, 22), the bone index -> thumb being the hand bone reversed. The synthetic
  data reproduce that exactly (the thumb's offset is minus the index offset, and the
  index joint never rotates), so thumb == wrist in every frame, as in real clips.
* Proportions follow the real HDM05 skeleton (thigh 0.42, shin 0.42, hip offset 0.13,
  two spine bones of 0.12, head joint 0.10 above the neck, shoulders 0.19 from the neck,
  upper arm 0.29, forearm 0.25, hand 0.05): this skeleton has no head-top joint and a
  short spine, so its highest joint (Neck1) sits about 1.33 m above the ground for a
  scale-1 body (1.25 m in real HDM05 clips) although the person it stands for is about
  1.75 m tall; the pelvis is at about 0.99 m.
* ``generate_motion(..., subject=None)`` leaves ``meta["subject"]`` as ``None``.
"""

from __future__ import annotations

import functools
import zlib
from typing import Any
from typing import Callable

import numpy as np

from stimuli.motion import Motion

__all__ = [
    "ACTIONS",
    "CONFUSABLE_PAIRS",
    "CHANNELS",
    "REST_OFFSETS",
    "SCALE_RANGE",
    "TEMPO_RANGE",
    "AMPLITUDE_RANGE",
    "FACING_JITTER_DEG",
    "generate_motion",
    "generate_dataset",
    "subject_body",
    "subject_style",
]

ACTIONS: tuple[str, ...] = (
    "walk",
    "sneak",
    "jog",
    "wave_right",
    "wave_left",
    "wave_both",
    "squat",
    "jumping_jack",
    "kick_right",
    "kick_left",
    "punch_right",
    "elbow_strike_right",
    "bow",
    "clap",
)

CONFUSABLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("walk", "sneak"),
    ("wave_right", "wave_left"),
    ("kick_right", "kick_left"),
    ("punch_right", "elbow_strike_right"),
)
"""Classes that share most of their motion and differ in a detail (the side, the strike,
the posture), as HDM05's kick-left/kick-right or grab/deposit do."""

SCALE_RANGE = (0.85, 1.15)
"""Uniform body scale of a subject (or of a subject-less clip)."""
PROPORTION_SD = 0.03
"""Standard deviation of the per-bone-group length factors (clipped to +-2.5 SD)."""
TEMPO_RANGE = (0.85, 1.18)
"""Per-clip factor on the action's base frequency (times the subject's own tempo)."""
SUBJECT_TEMPO_RANGE = (0.9, 1.1)
"""A subject's habitual tempo factor."""
AMPLITUDE_RANGE = (0.85, 1.15)
"""Per-clip factor on the action's main joint-angle excursions (times the subject's)."""
SUBJECT_AMPLITUDE_RANGE = (0.88, 1.12)
"""A subject's habitual amplitude factor."""
FACING_JITTER_DEG = 12.0
"""The facing direction is +Z rotated about Y by a uniform angle in +-this."""
NOISE_SD_SCALE_RANGE = (0.7, 1.3)
"""Factor on the per-channel angle-noise standard deviations (:data:`_NOISE_SD`)."""
STYLE_KNOBS = 4
"""Number of style knobs (each in -1..1) that every action maps onto its own choices."""
_L, _R = 1.0, -1.0  # side signs: left is +X

# --------------------------------------------------------------------------- body

# Each joint's offset from its parent in the rest pose (metres, scale 1): standing
# upright, facing +Z, arms hanging, every local frame aligned with the world axes.
REST_OFFSETS = np.zeros((25, 3))
for _side, _base in ((_L, 0), (_R, 5)):
    REST_OFFSETS[_base + 0] = (0.0, 0.0, 0.0)  # LHipJoint / RHipJoint: at the root
    REST_OFFSETS[_base + 1] = (0.095 * _side, -0.085, 0.03)  # hip joint
    REST_OFFSETS[_base + 2] = (0.0, -0.42, 0.0)  # knee
    REST_OFFSETS[_base + 3] = (0.0, -0.42, 0.0)  # ankle
    REST_OFFSETS[_base + 4] = (0.0, -0.05, 0.13)  # toe base
REST_OFFSETS[11] = (0.0, 0.12, 0.0)  # Spine
REST_OFFSETS[12] = (0.0, 0.12, 0.0)  # Spine1
REST_OFFSETS[13] = (0.0, 0.0, 0.0)  # Neck: at Spine1
REST_OFFSETS[14] = (0.0, 0.10, 0.0)  # Neck1 (head joint)
for _side, _base in ((_L, 15), (_R, 20)):
    REST_OFFSETS[_base + 0] = (0.18 * _side, 0.06, -0.02)  # shoulder
    REST_OFFSETS[_base + 1] = (0.0, -0.29, 0.0)  # elbow
    REST_OFFSETS[_base + 2] = (0.0, -0.25, 0.0)  # wrist
    REST_OFFSETS[_base + 3] = (0.0, -0.05, 0.0)  # HandIndex1
    REST_OFFSETS[_base + 4] = (0.0, 0.05, 0.0)  # thumb: back at the wrist, as in real data
REST_OFFSETS.setflags(write=False)

_HEEL_DROP = 0.07  # the sole below the ankle joint (scale 1)
_TOE_DROP = 0.02  # the sole below the toe joint

# bone groups that vary together (same factor on both sides)
_GROUPS: dict[str, tuple[int, ...]] = {
    "hip_width": (1, 6),
    "thigh": (2, 7),
    "shin": (3, 8),
    "foot": (4, 9),
    "spine": (11, 12),
    "head": (14,),
    "shoulder_width": (15, 20),
    "upper_arm": (16, 21),
    "forearm": (17, 22),
    "hand": (18, 19, 23, 24),
}


def _body_from_rng(rng: np.random.Generator) -> dict[str, Any]:
    scale = float(rng.uniform(*SCALE_RANGE))
    lim = 2.5 * PROPORTION_SD
    factors = {g: float(1.0 + np.clip(rng.normal(0.0, PROPORTION_SD), -lim, lim)) for g in _GROUPS}
    offsets = REST_OFFSETS * scale
    for g, joints in _GROUPS.items():
        offsets[list(joints)] *= factors[g]
    foot = scale * factors["foot"]
    return {
        "scale": scale,
        "proportions": factors,
        "offsets": offsets,
        "heel_drop": _HEEL_DROP * foot,
        "toe_drop": _TOE_DROP * foot,
    }


@functools.lru_cache(maxsize=256)
def _subject_body(subject: str) -> dict[str, Any]:
    body = _body_from_rng(np.random.default_rng([0x5EB0D1, zlib.crc32(subject.encode("utf-8"))]))
    body["offsets"].setflags(write=False)
    return body


def subject_body(subject: str) -> dict[str, Any]:
    """The body of a named subject: ``scale``, ``proportions`` (per bone group), ``offsets`` (25, 3).

    Drawn from the name alone (CRC-32 as the seed), so it is the same in every clip,
    dataset and run.
    """
    body = _subject_body(subject)
    return {**body, "proportions": dict(body["proportions"]), "offsets": body["offsets"].copy()}


# ----------------------------------------------------------------------- rotations

_AXIS_INDEX = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}


def _rot(axis: str, deg: np.ndarray) -> np.ndarray:
    """Rotations ``(..., 3, 3)`` about a world axis by ``deg`` degrees (column vectors)."""
    a = np.deg2rad(np.asarray(deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(a.shape + (3, 3))
    i, j = _AXIS_INDEX[axis]
    k = 3 - i - j
    out[..., k, k] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


def _swing(flex: np.ndarray, abd: np.ndarray, side: np.ndarray | float) -> np.ndarray:
    """Rotation swinging a downward limb forward by ``flex`` and outward by ``abd`` (degrees).

    One rotation about a horizontal axis (rotation vector ``(-flex, 0, side*abd)``), so
    combined flexion and abduction stay well defined; left limbs (side +1) abduct
    towards +X. Arguments broadcast; the result is ``(..., 3, 3)``.
    """
    x = np.deg2rad(-np.asarray(flex, dtype=np.float64))
    z = np.deg2rad(side * np.asarray(abd, dtype=np.float64))
    x, z = np.broadcast_arrays(x, z)
    theta = np.hypot(x, z)
    small = theta < 1e-8
    th = np.where(small, 1.0, theta)
    a = np.where(small, 1.0, np.sin(th) / th)
    b = np.where(small, 0.5, (1.0 - np.cos(th)) / th**2)
    # R = I + a K + b K^2 for K = [[0, -z, 0], [z, 0, -x], [0, x, 0]]
    out = np.empty(x.shape + (3, 3))
    out[..., 0, 0] = 1.0 - b * z * z
    out[..., 0, 1] = -a * z
    out[..., 0, 2] = b * x * z
    out[..., 1, 0] = a * z
    out[..., 1, 1] = 1.0 - b * (x * x + z * z)
    out[..., 1, 2] = -a * x
    out[..., 2, 0] = b * x * z
    out[..., 2, 1] = a * x
    out[..., 2, 2] = 1.0 - b * x * x
    return out


# --------------------------------------------------------------------- channels

CHANNELS: tuple[str, ...] = (
    "pelvis_pitch",
    "pelvis_roll",
    "pelvis_yaw",
    "spine_pitch",
    "spine_roll",
    "spine_yaw",
    "chest_pitch",
    "chest_roll",
    "chest_yaw",
    "neck_pitch",
    "neck_roll",
    "neck_yaw",
    *(
        f"{s}_{c}"
        for s in ("l", "r")
        for c in (
            "hip_flex",
            "hip_abd",
            "hip_rot",
            "knee",
            "ankle",
            "shoulder_flex",
            "shoulder_abd",
            "shoulder_rot",
            "elbow",
            "wrist",
        )
    ),
)
"""Joint-angle channels in degrees. Signs: pitch + leans forward, roll + leans to the
person's left, yaw + turns to the left; hip/shoulder flex + swings the limb forward,
abd + away from the midline, rot + external (toes/palms out); knee + bends (shin back),
elbow + bends (forearm forward), ankle + points the toes down, wrist + flexes."""

_REST_POSE = {
    "l_shoulder_abd": 7.0,
    "r_shoulder_abd": 7.0,
    "l_elbow": 8.0,
    "r_elbow": 8.0,
    "l_knee": 3.0,
    "r_knee": 3.0,
    "l_hip_flex": 1.5,
    "r_hip_flex": 1.5,
    "l_ankle": 1.5,
    "r_ankle": 1.5,
}

# slow noise standard deviation per channel kind (degrees)
_NOISE_SD = {
    "pelvis": 1.0,
    "spine": 1.0,
    "chest": 1.0,
    "neck": 1.0,
    "hip": 1.5,
    "knee": 1.5,
    "ankle": 1.0,
    "shoulder": 2.0,
    "elbow": 3.0,
    "wrist": 4.0,
}

# fast jitter (degrees RMS per channel kind), measured against real capture: the median
# residual of the joints from a 5-frame quadratic fit in HDM05 (30 fps) windows
_JITTER_SD = {
    "pelvis": 0.04,
    "spine": 0.018,
    "chest": 0.018,
    "neck": 0.03,
    "hip": 0.02,
    "knee": 0.012,
    "ankle": 0.1,
    "shoulder": 0.03,
    "elbow": 0.025,
    "wrist": 0.03,
}
_JITTER_BAND_HZ = (3.0, 14.0)
_JITTER_WAVES = 10

# habitual posture of a subject: standard deviation (degrees) of the offset per channel
# (limb channels: the same on both sides plus an asymmetric part of 40 %)
_POSTURE_SD = {
    "pelvis_pitch": 2.0,
    "spine_pitch": 3.0,
    "chest_pitch": 2.0,
    "neck_pitch": 4.0,
    "neck_roll": 1.5,
    "chest_roll": 1.0,
    "hip_abd": 1.5,
    "hip_rot": 5.0,
    "knee": 2.0,
    "shoulder_flex": 3.0,
    "shoulder_abd": 3.0,
    "shoulder_rot": 5.0,
    "elbow": 5.0,
    "wrist": 5.0,
}
_CLIP_POSTURE_SD = 1.0  # per-clip wobble of the posture (degrees, every channel above)


def _noise_kind(channel: str) -> str:
    part = channel.split("_")
    return part[1] if part[0] in ("l", "r") else part[0]


def _waves(t: np.ndarray, rng: np.random.Generator, sd: np.ndarray, band: tuple[float, float], k: int) -> np.ndarray:
    """``(len(sd), T)``: per channel, ``k`` sinusoids with frequencies in ``band`` (Hz), RMS ``sd``.

    A function of continuous time (any frame rate samples the same curve) whose random
    draws do not depend on the number of frames.
    """
    n = len(sd)
    freq = rng.uniform(band[0], band[1], (n, k))
    phase = rng.uniform(0.0, 2 * np.pi, (n, k))
    amp = rng.rayleigh(1.0, (n, k))
    amp *= np.sqrt(2.0) / np.linalg.norm(amp, axis=1, keepdims=True)  # RMS of the sum = 1
    waves = np.sin(2 * np.pi * freq[..., None] * t + phase[..., None])  # (n, k, T)
    return sd[:, None] * np.einsum("nk,nkt->nt", amp, waves)


def _smooth_noise(t: np.ndarray, rng: np.random.Generator, sd: np.ndarray) -> np.ndarray:
    """Slow drift: per channel, 3 sinusoids of 0.15-1.2 Hz, RMS ``sd``."""
    return _waves(t, rng, sd, (0.15, 1.2), 3)


def _jitter(t: np.ndarray, rng: np.random.Generator, sd: np.ndarray) -> np.ndarray:
    """Fast jitter as in optical motion capture: per channel, many sinusoids of 3-14 Hz."""
    return _waves(t, rng, sd, _JITTER_BAND_HZ, _JITTER_WAVES)


# ------------------------------------------------------------------------ style


def _lerp(lo: float, hi: float, knob: float) -> float:
    """``lo`` at knob -1, ``hi`` at knob +1."""
    return lo + (hi - lo) * 0.5 * (knob + 1.0)


def _style_from_rng(rng: np.random.Generator) -> dict[str, Any]:
    posture: dict[str, float] = {}
    for name, sd in _POSTURE_SD.items():
        if name in ("pelvis_pitch", "spine_pitch", "chest_pitch", "neck_pitch", "neck_roll", "chest_roll"):
            posture[name] = float(rng.normal(0.0, sd))
        else:
            common, odd = rng.normal(0.0, sd, 1)[0], rng.normal(0.0, 0.4 * sd, 2)
            posture["l_" + name], posture["r_" + name] = float(common + odd[0]), float(common + odd[1])
    return {
        "tempo": float(rng.uniform(*SUBJECT_TEMPO_RANGE)),
        "amplitude": float(rng.uniform(*SUBJECT_AMPLITUDE_RANGE)),
        "arm_swing": float(rng.uniform(0.45, 1.5)),
        "trunk": float(rng.uniform(0.5, 1.6)),
        "knobs": [float(v) for v in rng.uniform(-1.0, 1.0, STYLE_KNOBS)],
        "posture": posture,
    }


@functools.lru_cache(maxsize=256)
def _subject_style(subject: str) -> dict[str, Any]:
    return _style_from_rng(np.random.default_rng([0x57F1E, zlib.crc32(subject.encode("utf-8"))]))


def subject_style(subject: str) -> dict[str, Any]:
    """The habits of a named subject, drawn from the name alone (as :func:`subject_body`).

    ``tempo`` and ``amplitude`` (factors on every action's), ``arm_swing`` and ``trunk``
    (factors on the arm swing and the trunk's rotations in locomotion), ``knobs``
    (:data:`STYLE_KNOBS` values in -1..1 that each action reads its way: how high the
    waving hand is held, how far a kick is chambered, how the arms are held in a squat...)
    and ``posture`` (habitual offsets in degrees per channel: slouch, head carriage,
    toe-out, carrying angle of the elbows...).
    """
    style = _subject_style(subject)
    return {**style, "knobs": list(style["knobs"]), "posture": dict(style["posture"])}


def _clip_style(style: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One clip's style: the subject's habits, varied a little."""
    knobs = np.clip(0.75 * np.asarray(style["knobs"]) + rng.normal(0.0, 0.35, STYLE_KNOBS), -1.0, 1.0)
    posture = {c: v + float(rng.normal(0.0, _CLIP_POSTURE_SD)) for c, v in style["posture"].items()}
    return {
        "arm_swing": style["arm_swing"] * float(rng.uniform(0.85, 1.15)),
        "trunk": style["trunk"] * float(rng.uniform(0.85, 1.15)),
        "knobs": [float(v) for v in knobs],
        "posture": posture,
    }


def _warp(t: np.ndarray, rng: np.random.Generator, depth: float) -> tuple[np.ndarray, list[float]]:
    """A time warp ``t + w(t)``: the pace drifts by about +-``depth`` (relative) at 0.1-0.4 Hz."""
    freq = rng.uniform(0.1, 0.4, 2)
    phase = rng.uniform(0.0, 2 * np.pi, 2)
    dev = depth * rng.uniform(0.4, 1.0, 2) / np.sqrt(2.0)
    w = sum(d / (2 * np.pi * g) * np.sin(2 * np.pi * g * t + p) for d, g, p in zip(dev, freq, phase))
    return t + w, [float(v) for v in dev]


def _drift(t: np.ndarray, rng: np.random.Generator, depth: float) -> np.ndarray:
    """A slow relative modulation ``1 + m(t)``, ``|m| <= depth``: repetitions differ in size."""
    freq = rng.uniform(0.15, 0.6, 2)
    phase = rng.uniform(0.0, 2 * np.pi, 2)
    w = rng.uniform(0.3, 1.0, 2)
    w = depth * w / w.sum()
    return 1.0 + sum(k * np.sin(2 * np.pi * g * t + p) for k, g, p in zip(w, freq, phase))


# ------------------------------------------------------------------ action curves


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _pulse(phase: np.ndarray, duty: float) -> tuple[np.ndarray, np.ndarray]:
    """Repeated one-shot movement: ``(p, u)``; p = sin^2(pi u) in the active part, else 0.

    The active part fills ``duty`` of each cycle and peaks (u = 0.5) at phase = pi.
    """
    cyc = np.mod(phase / (2 * np.pi), 1.0)
    u = (cyc - (1.0 - duty) / 2) / duty
    active = (u >= 0) & (u <= 1)
    u = np.where(active, u, 0.0)
    return np.where(active, np.sin(np.pi * u) ** 2, 0.0), u


def _softmax0(x: np.ndarray, lo: float, width: float = 4.0) -> np.ndarray:
    """Smooth ``max(x, lo)``."""
    return lo + width * np.logaddexp(0.0, (x - lo) / width)


def _flat_ankle(hip: np.ndarray, knee: np.ndarray, lo: float = -20.0) -> np.ndarray:
    """Ankle angle keeping the foot level (limited to ``lo`` of dorsiflexion)."""
    return _softmax0(hip - knee, lo)


class _Cycle:
    """A smooth periodic curve over a cycle ``c`` in [0, 1), from key points.

    The key points are joined linearly around the cycle and the result is smoothed with
    a circular Gaussian of ``width`` (in cycles), so straight stretches stay straight
    and corners are rounded.
    """

    _N = 512

    def __init__(self, points: tuple[tuple[float, float], ...], width: float = 0.03) -> None:
        c, v = np.array(points, dtype=float).T
        grid = np.arange(self._N) / self._N
        dense = np.interp(grid, c, v, period=1.0)
        d = np.minimum(grid, 1.0 - grid)  # circular distance from 0
        kernel = np.exp(-0.5 * (d / width) ** 2)
        smooth = np.real(np.fft.ifft(np.fft.fft(dense) * np.fft.fft(kernel / kernel.sum())))
        self._grid, self._values = grid, smooth

    def __call__(self, c: np.ndarray) -> np.ndarray:
        return np.interp(c, self._grid, self._values, period=1.0)


# Gait curves over one stride of a leg, c = 0 at its heel strike: hip (in units of the
# hip amplitude) and knee in degrees; in stance ("stance" ~ 1) the ankle keeps the foot
# at "pitch" in the world (+ toes down: toes up at heel strike, flat, heel rising, toe
# off), in swing it takes the anatomical "ankle" angle. Walking: stance 0-0.6 with the
# hip extending steadily (an even pace), swing 0.6-1 with about 1.5 cm of toe clearance.
# Jogging: stance 0-0.35, a flight, swing.
_WALK = {
    "hip": _Cycle(((0.0, 1.0), (0.55, -1.0), (0.62, -1.08), (0.75, -0.2), (0.88, 1.1), (0.95, 1.18))),
    "knee": _Cycle(
        (
            (0.0, 4.0),
            (0.13, 11.0),
            (0.38, 5.0),
            (0.5, 9.0),
            (0.6, 36.0),
            (0.72, 60.0),
            (0.82, 52.0),
            (0.88, 38.0),
            (0.94, 15.0),
            (0.99, 5.0),
        )
    ),
    "pitch": _Cycle(((0.0, -14.0), (0.1, 0.0), (0.42, 0.0), (0.52, 12.0), (0.6, 35.0), (0.75, 40.0), (0.9, 0.0))),
    "ankle": _Cycle(((0.0, 2.0), (0.5, 5.0), (0.62, 18.0), (0.72, 6.0), (0.8, -4.0), (0.9, -7.0))),
    "stance": _Cycle(((0.0, 1.0), (0.5, 1.0), (0.62, 0.0), (0.92, 0.0))),
}
_JOG = {
    "hip": _Cycle(((0.0, 0.85), (0.35, -1.0), (0.45, -0.9), (0.6, 0.1), (0.82, 1.05), (0.95, 0.95))),
    "knee": _Cycle(((0.0, 18.0), (0.12, 38.0), (0.33, 18.0), (0.45, 55.0), (0.62, 100.0), (0.82, 55.0), (0.95, 22.0))),
    "pitch": _Cycle(((0.0, -6.0), (0.08, 0.0), (0.22, 4.0), (0.35, 40.0), (0.55, 45.0), (0.8, 8.0), (0.92, -4.0))),
    "ankle": _Cycle(((0.0, 0.0), (0.35, 20.0), (0.5, 10.0), (0.7, -5.0), (0.9, -5.0))),
    "stance": _Cycle(((0.0, 1.0), (0.3, 1.0), (0.4, 0.0), (0.92, 0.0))),
}


def _gait(t, f, a, ph, ch, curves, hip_amp, arm_amp, hip_off=0.0, knee_off=0.0):
    """Both legs half a cycle apart; each arm swings with the opposite leg.

    ``hip_off`` and ``knee_off`` (degrees) bend the legs throughout (a crouch); the
    foot still rolls over the ground as in the upright gait.
    """
    base = f * t + ph / (2 * np.pi)
    for s, o, shift in (("l", "r", 0.0), ("r", "l", 0.5)):
        c = np.mod(base + shift, 1.0)
        stance = np.clip(curves["stance"](c), 0.0, 1.0)
        hip = hip_off + hip_amp * a * curves["hip"](c)
        knee = knee_off * (0.5 + 0.5 * stance) + a * curves["knee"](c)  # no extra heel lift in swing
        ch[f"{s}_hip_flex"], ch[f"{s}_knee"] = hip, knee
        # the foot keeps its pitch in stance and a natural ankle angle in swing
        ch[f"{s}_ankle"] = stance * (curves["pitch"](c) + hip - knee) + (1.0 - stance) * curves["ankle"](c)
        ch[f"{s}_hip_abd"] = 2.0 + 0 * t
        arm = curves["hip"](np.mod(c - 0.04, 1.0))  # a little behind the leg
        ch[f"{o}_shoulder_flex"] = arm_amp * a * arm
    return np.mod(base, 1.0)


def _walk(t, f, a, ph, ch, ctx):
    k, st = ctx["knobs"], ctx["style"]
    soft = _lerp(0.0, 7.0, k[1])  # knees kept a little bent, or not
    c = _gait(t, f, a, ph, ch, _WALK, 21.0, 17.0 * st["arm_swing"], hip_off=0.5 * soft, knee_off=soft)
    elbow = _lerp(6.0, 30.0, k[0])
    for s in ("l", "r"):
        ch[f"{s}_shoulder_flex"] += 3.0
        ch[f"{s}_elbow"] = elbow + 0.6 * np.maximum(ch[f"{s}_shoulder_flex"], 0.0)
        ch[f"{s}_shoulder_abd"] = _lerp(5.0, 12.0, k[2]) + 0 * t
    swing = np.sin(2 * np.pi * c)
    ch["pelvis_yaw"] = -5.0 * st["trunk"] * a * swing
    ch["chest_yaw"] = 6.0 * st["trunk"] * a * swing
    ch["pelvis_roll"] = 2.0 * st["trunk"] * np.sin(4 * np.pi * c)
    ch["spine_pitch"] = _lerp(0.0, 6.0, k[3]) + 0 * t
    return np.zeros_like(t)


def _sneak(t, f, a, ph, ch, ctx):
    """Creeping: a slow walk on bent knees, the trunk leaning forward, the arms held bent."""
    k, st = ctx["knobs"], ctx["style"]
    crouch = _lerp(0.65, 1.0, k[0])
    c = _gait(t, f, a, ph, ch, _WALK, 24.0, 6.0 * st["arm_swing"], hip_off=24.0 * crouch, knee_off=34.0 * crouch)
    for s in ("l", "r"):
        ch[f"{s}_shoulder_flex"] += _lerp(10.0, 40.0, k[1])
        ch[f"{s}_elbow"] = _lerp(45.0, 95.0, k[2]) + 0 * t
        ch[f"{s}_shoulder_abd"] = _lerp(10.0, 25.0, k[3]) + 0 * t
        ch[f"{s}_shoulder_rot"] = -10.0 + 0 * t
    swing = np.sin(2 * np.pi * c)
    ch["pelvis_yaw"] = -4.0 * st["trunk"] * a * swing
    ch["chest_yaw"] = 3.0 * st["trunk"] * a * swing
    ch["pelvis_pitch"] = 16.0 * crouch + 0 * t
    ch["spine_pitch"] = 6.0 + 0 * t
    ch["neck_pitch"] = -14.0 * crouch + 0 * t  # looking ahead
    return np.zeros_like(t)


def _jog(t, f, a, ph, ch, ctx):
    k, st = ctx["knobs"], ctx["style"]
    a = 1.0 + 0.5 * (a - 1.0)  # half the usual amplitude range: the speed also grows with tempo
    c = _gait(t, f, a, ph, ch, _JOG, 26.0, 30.0 * (0.6 + 0.4 * st["arm_swing"]))
    elbow = _lerp(70.0, 100.0, k[0])
    for s in ("l", "r"):
        ch[f"{s}_hip_flex"] += 6.0
        ch[f"{s}_ankle"] += 6.0
        ch[f"{s}_shoulder_flex"] += 8.0
        ch[f"{s}_elbow"] = elbow + 0.4 * ch[f"{s}_shoulder_flex"]
        ch[f"{s}_shoulder_abd"] = _lerp(8.0, 18.0, k[2]) + 0 * t
        ch[f"{s}_shoulder_rot"] = -15.0 + 0 * t
    swing = np.sin(2 * np.pi * c)
    ch["pelvis_pitch"] = _lerp(3.0, 10.0, k[1]) + 0 * t
    ch["spine_pitch"] = 4.0 + 0 * t
    ch["pelvis_yaw"] = -7.0 * st["trunk"] * a * swing
    ch["chest_yaw"] = 9.0 * st["trunk"] * a * swing
    # a short flight after each toe-off (c in 0.35-0.5 for either leg)
    lift = np.zeros_like(t)
    for shift in (0.0, 0.5):
        u = (np.mod(c + shift, 1.0) - 0.34) / 0.18
        lift += np.where((u > 0) & (u < 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)
    return 0.05 * a * lift


def _raise_envelope(t, rng_t0):
    return _smoothstep((t - rng_t0) / 0.6)


def _wave_right(t, f, a, ph, ch, ctx):
    k = ctx["knobs"]
    env = _raise_envelope(t, ctx["raise_start_s"])
    phi = 2 * np.pi * _lerp(1.6, 2.4, k[3]) * f * t + ph
    ch["r_shoulder_abd"] = 7.0 + env * _lerp(62.0, 98.0, k[0]) * a
    ch["r_shoulder_flex"] = env * _lerp(0.0, 30.0, k[2])
    ch["r_shoulder_rot"] = env * 85.0
    ch["r_elbow"] = 8.0 + env * (_lerp(60.0, 100.0, k[1]) + 28.0 * a * np.sin(phi))
    ch["r_wrist"] = env * 12.0 * np.sin(phi - 0.6)
    ch["chest_roll"] = env * 3.0
    return np.zeros_like(t)


def _wave_both(t, f, a, ph, ch, ctx):
    k = ctx["knobs"]
    env = _raise_envelope(t, ctx["raise_start_s"])
    phi = 2 * np.pi * 1.1 * f * t + ph
    sway = _lerp(12.0, 24.0, k[1]) * a * np.sin(phi)
    up = np.minimum(_lerp(125.0, 155.0, k[0]) * a, 160.0)
    for s, sg in (("l", -1.0), ("r", 1.0)):
        ch[f"{s}_shoulder_abd"] = 7.0 + env * (up + sg * sway)
        ch[f"{s}_shoulder_rot"] = env * 60.0
        ch[f"{s}_shoulder_flex"] = env * _lerp(0.0, 20.0, k[3])
        ch[f"{s}_elbow"] = 8.0 + env * (_lerp(5.0, 30.0, k[2]) + 10.0 * np.sin(2 * phi))
        ch[f"{s}_wrist"] = env * 20.0 * np.sin(2 * phi)
    ch["chest_roll"] = env * 4.0 * a * np.sin(phi)
    return np.zeros_like(t)


def _squat(t, f, a, ph, ch, ctx):
    k = ctx["knobs"]
    d = 0.5 - 0.5 * np.cos(2 * np.pi * f * t + ph)
    d = _smoothstep(d)
    depth = np.minimum(a, 1.1)
    arms, elbow = _lerp(30.0, 90.0, k[0]), _lerp(0.0, 60.0, k[1])
    for s in ("l", "r"):
        hip = 3.0 + 92.0 * depth * d
        knee = 4.0 + 118.0 * depth * d
        ch[f"{s}_hip_flex"], ch[f"{s}_knee"] = hip, knee
        ch[f"{s}_ankle"] = _flat_ankle(hip, knee, lo=-45.0)
        ch[f"{s}_hip_abd"] = _lerp(3.0, 12.0, k[2]) + 6.0 * d
        ch[f"{s}_hip_rot"] = _lerp(0.0, 18.0, k[2]) + 0 * t
        ch[f"{s}_shoulder_flex"] = 4.0 + arms * d
        ch[f"{s}_shoulder_abd"] = 7.0 + 0 * t
        ch[f"{s}_elbow"] = 8.0 + elbow * d
    ch["pelvis_pitch"] = _lerp(26.0, 38.0, k[3]) * depth * d
    ch["spine_pitch"] = 6.0 * d
    ch["neck_pitch"] = -8.0 * d
    return np.zeros_like(t)


def _jumping_jack(t, f, a, ph, ch, ctx):
    k = ctx["knobs"]
    phi = 2 * np.pi * f * t + ph
    o = _smoothstep(0.5 - 0.5 * np.cos(phi))
    land = np.cos(phi) ** 2
    air = np.sin(phi) ** 2
    up = np.minimum(_lerp(130.0, 160.0, k[0]) * a, 165.0)
    for s in ("l", "r"):
        ch[f"{s}_shoulder_abd"] = 8.0 + up * o
        ch[f"{s}_shoulder_rot"] = 70.0 * o
        ch[f"{s}_elbow"] = _lerp(3.0, 25.0, k[1]) + 0 * t
        ch[f"{s}_hip_abd"] = 2.0 + _lerp(12.0, 20.0, k[2]) * a * o
        knee = 6.0 + 24.0 * land
        hip = 3.0 + 12.0 * land
        ch[f"{s}_knee"], ch[f"{s}_hip_flex"] = knee, hip
        ch[f"{s}_ankle"] = _flat_ankle(hip, knee) + 28.0 * air
    ch["pelvis_pitch"] = 4.0 * land
    return _lerp(0.06, 0.12, k[3]) * a * air


def _kick_right(t, f, a, ph, ch, ctx):
    k = ctx["knobs"]
    p, u = _pulse(2 * np.pi * f * t + ph, 0.55)
    a = np.minimum(a, 1.2)
    chamber = _lerp(40.0, 95.0, k[0])  # how far the knee bends before and after the kick
    ch["r_hip_flex"] = 3.0 + _lerp(62.0, 82.0, k[1]) * a * p
    ch["r_knee"] = 5.0 + chamber * np.sin(2 * np.pi * u) ** 2 * (u > 0) + 4.0 * (1 - p)
    ch["r_ankle"] = 1.5 + 22.0 * p
    ch["l_knee"] = 8.0 + 10.0 * p
    ch["l_hip_flex"] = 4.0 + 6.0 * p
    ch["l_ankle"] = _flat_ankle(ch["l_hip_flex"], ch["l_knee"])
    ch["pelvis_pitch"] = -10.0 * a * p
    ch["chest_pitch"] = -4.0 * p
    guard = _lerp(0.0, 1.0, k[2])  # arms loose, or up like a fighter's
    for s in ("l", "r"):
        ch[f"{s}_shoulder_abd"] = 10.0 + 30.0 * p
        ch[f"{s}_shoulder_flex"] = 5.0 + 30.0 * guard + 15.0 * p
        ch[f"{s}_elbow"] = 20.0 + 60.0 * guard + 30.0 * p
    return np.zeros_like(t)


GUARD_ROT = -20.0


def _guard_stance(t, ch, k) -> tuple[float, float]:
    """Fists in front of the chin, left foot forward; returns the guard's (shoulder flex, elbow)."""
    flex, elbow = _lerp(35.0, 55.0, k[0]), _lerp(105.0, 125.0, k[0])
    for s in ("l", "r"):
        ch[f"{s}_shoulder_flex"] = flex + 0 * t
        ch[f"{s}_shoulder_abd"] = 20.0 + 0 * t
        ch[f"{s}_shoulder_rot"] = GUARD_ROT + 0 * t
        ch[f"{s}_elbow"] = elbow + 0 * t
        ch[f"{s}_wrist"] = -5.0 + 0 * t
    ch["l_hip_flex"], ch["r_hip_flex"] = _lerp(8.0, 18.0, k[3]) + 0 * t, -_lerp(3.0, 9.0, k[3]) + 0 * t
    ch["l_knee"], ch["r_knee"] = 14.0 + 0 * t, 8.0 + 0 * t
    ch["l_hip_abd"], ch["r_hip_abd"] = 4.0 + 0 * t, 4.0 + 0 * t
    ch["r_hip_rot"] = 15.0 + 0 * t
    return flex, elbow


def _flat_feet(ch):
    for s in ("l", "r"):
        ch[f"{s}_ankle"] = _flat_ankle(ch[f"{s}_hip_flex"], ch[f"{s}_knee"])


def _punch_right(t, f, a, ph, ch, ctx):
    k = ctx["knobs"]
    p, _ = _pulse(2 * np.pi * f * t + ph, 0.5)
    flex, elbow = _guard_stance(t, ch, k)
    a = np.minimum(a, 1.2)
    ch["r_shoulder_flex"] = flex + (_lerp(72.0, 92.0, k[1]) - flex) * a * p
    ch["r_shoulder_abd"] = 20.0 - 12.0 * p
    ch["r_shoulder_rot"] = GUARD_ROT * (1 - p) - 10 * p
    ch["r_elbow"] = elbow - (elbow - 7.0) * p
    ch["l_elbow"] = elbow + 10.0 * p
    twist = _lerp(10.0, 18.0, k[2])
    ch["chest_yaw"] = twist * a * p
    ch["spine_yaw"] = 0.6 * twist * a * p
    ch["pelvis_yaw"] = 6.0 * p
    ch["spine_pitch"] = 4.0 + 4.0 * p
    ch["l_knee"] = ch["l_knee"] + 4.0 * p
    _flat_feet(ch)
    return np.zeros_like(t)


def _elbow_strike_right(t, f, a, ph, ch, ctx):
    """The punch's guard and footwork, but the right elbow swings round at shoulder height."""
    k = ctx["knobs"]
    p, _ = _pulse(2 * np.pi * f * t + ph, 0.45)
    flex, elbow = _guard_stance(t, ch, k)
    a = np.minimum(a, 1.2)
    ch["r_shoulder_flex"] = flex + (_lerp(50.0, 70.0, k[1]) - flex) * p
    ch["r_shoulder_abd"] = 20.0 + _lerp(45.0, 65.0, k[1]) * a * p
    ch["r_shoulder_rot"] = GUARD_ROT * (1 - p) + 10.0 * p
    ch["r_elbow"] = elbow + (140.0 - elbow) * p
    ch["l_elbow"] = elbow + 10.0 * p
    twist = _lerp(16.0, 26.0, k[2])
    ch["chest_yaw"] = twist * a * p
    ch["spine_yaw"] = 0.6 * twist * a * p
    ch["pelvis_yaw"] = 8.0 * p
    ch["spine_pitch"] = 4.0 + 3.0 * p
    ch["l_knee"] = ch["l_knee"] + 4.0 * p
    _flat_feet(ch)
    return np.zeros_like(t)


def _bow(t, f, a, ph, ch, ctx):
    k = ctx["knobs"]
    p, _ = _pulse(2 * np.pi * f * t + ph, 0.7)
    a = np.minimum(a, 1.15)
    ch["pelvis_pitch"] = 38.0 * a * p
    ch["spine_pitch"] = 12.0 * a * p
    ch["chest_pitch"] = 8.0 * a * p
    ch["neck_pitch"] = _lerp(0.0, 12.0, k[2]) * p
    trunk = 62.0 * a * p
    arms = _lerp(0.4, 0.95, k[0])  # hands slide down the thighs, or the arms hang
    for s in ("l", "r"):
        ch[f"{s}_hip_flex"] = 2.0 + 6.0 * p
        ch[f"{s}_knee"] = 3.0 + _lerp(3.0, 12.0, k[1]) * p
        ch[f"{s}_ankle"] = _flat_ankle(ch[f"{s}_hip_flex"], ch[f"{s}_knee"])
        ch[f"{s}_shoulder_flex"] = arms * trunk
        ch[f"{s}_shoulder_abd"] = 5.0 + 0 * t
        ch[f"{s}_elbow"] = _lerp(5.0, 25.0, k[3]) + 0 * t
    return np.zeros_like(t)


_CLAP_GAP = 0.06  # distance across between the hands when they meet (scale 1)


def _clap_adduction(body: dict[str, Any], arms: dict[str, float]) -> float:
    """The shoulder abduction (degrees) at which this body's hands are ``_CLAP_GAP`` apart.

    ``arms`` holds the other arm channels (both sides). The gap is the smaller of the
    wrist-to-wrist and index-to-index distances across.
    """
    grid = np.linspace(-40.0, 20.0, 61)
    ch = {c: np.full(grid.size, _REST_POSE.get(c, 0.0)) for c in CHANNELS}
    for s in ("l", "r"):
        for name, v in arms.items():
            ch[f"{s}_{name}"] = np.full(grid.size, v)
        ch[f"{s}_shoulder_abd"] = grid
    pos = _forward_kinematics(body["offsets"], ch, 0.0, grid.size)
    gap = np.minimum(pos[:, 17, 0] - pos[:, 22, 0], pos[:, 18, 0] - pos[:, 23, 0])  # grows with abduction
    return float(np.interp(_CLAP_GAP * body["scale"], gap, grid))


def _clap(t, f, a, ph, ch, ctx):
    k = ctx["knobs"]
    phi = 2 * np.pi * 2.0 * f * t + ph
    c = _smoothstep(0.5 - 0.5 * np.cos(phi))  # 1: hands together
    arms = {
        "shoulder_flex": _lerp(38.0, 65.0, k[0]),
        "shoulder_rot": -5.0,
        "elbow": _lerp(58.0, 78.0, k[1]),
        "wrist": -15.0,
    }
    closed = _clap_adduction(ctx["body"], arms)
    ctx["clap_adduction_deg"] = closed
    gains = ctx.setdefault("noise_gain", {})
    for s in ("l", "r"):
        ch[f"{s}_shoulder_flex"] = arms["shoulder_flex"] + 0 * t
        ch[f"{s}_shoulder_abd"] = closed + (_lerp(14.0, 28.0, k[2]) * a + 8.0) * (1.0 - c)
        ch[f"{s}_shoulder_rot"] = arms["shoulder_rot"] + 0 * t
        ch[f"{s}_elbow"] = arms["elbow"] - 12.0 * (1.0 - c)
        ch[f"{s}_wrist"] = arms["wrist"] + 0 * t
        # the hands must meet, not miss or pass through each other: mirrored, smaller
        # arm noise (posture and jitter included), none on the adduction at the clap
        gains[f"{s}_shoulder_abd"] = 0.6 * (1.0 - c)
        for name in ("shoulder_flex", "shoulder_rot", "elbow", "wrist"):
            gains[f"{s}_{name}"] = 0.3
    ctx["mirror_noise"] = ("shoulder_flex", "shoulder_abd", "shoulder_rot", "elbow", "wrist")
    return np.zeros_like(t)


# ---------------------------------------------------------------- mirrored actions

_MIRROR_NEGATE = frozenset(f"{k}_{r}" for k in ("pelvis", "spine", "chest", "neck") for r in ("roll", "yaw"))


def _other_side(channel: str) -> str:
    if channel.startswith("l_"):
        return "r_" + channel[2:]
    if channel.startswith("r_"):
        return "l_" + channel[2:]
    return channel


def _mirrored(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """The action ``fn`` done with the other side: left and right channels swap, and the
    trunk's rolls and turns change sign."""

    def action(t, f, a, ph, ch, ctx):
        flight = fn(t, f, a, ph, ch, ctx)
        old = dict(ch)
        for c in CHANNELS:
            src = old[_other_side(c)]
            ch[c] = -src if c in _MIRROR_NEGATE else src
        if "noise_gain" in ctx:
            ctx["noise_gain"] = {_other_side(c): g for c, g in ctx["noise_gain"].items()}
        return flight

    return action


# base frequency (Hz) of each action and whether its start is an arm raise
_ACTION_SPECS: dict[str, tuple[Callable[..., np.ndarray], float, bool]] = {
    "walk": (_walk, 0.9, False),
    "sneak": (_sneak, 0.55, False),
    "jog": (_jog, 1.35, False),
    "wave_right": (_wave_right, 1.0, True),
    "wave_left": (_mirrored(_wave_right), 1.0, True),
    "wave_both": (_wave_both, 1.0, True),
    "squat": (_squat, 0.4, False),
    "jumping_jack": (_jumping_jack, 0.85, False),
    "kick_right": (_kick_right, 0.6, False),
    "kick_left": (_mirrored(_kick_right), 0.6, False),
    "punch_right": (_punch_right, 0.85, False),
    "elbow_strike_right": (_elbow_strike_right, 0.85, False),
    "bow": (_bow, 0.38, False),
    "clap": (_clap, 1.1, False),
}
assert tuple(_ACTION_SPECS) == ACTIONS


# ------------------------------------------------------------------------- FK

_SIDES = np.array([1.0, -1.0])[:, None]  # (left, right) against frames


def _hinge_x(g: np.ndarray, deg: np.ndarray) -> np.ndarray:
    """``g @ Rx(deg)`` for stacks of rotations ``g (..., 3, 3)`` and angles ``deg (...)``."""
    a = np.deg2rad(deg)[..., None]
    c, s = np.cos(a), np.sin(a)
    out = g.copy()
    out[..., 1] = g[..., 1] * c + g[..., 2] * s
    out[..., 2] = g[..., 2] * c - g[..., 1] * s
    return out


def _forward_kinematics(offsets: np.ndarray, ch: dict[str, np.ndarray], facing_deg: float, T: int) -> np.ndarray:
    """Root-at-origin positions ``(T, 25, 3)`` (float64) from the channels.

    Walks the standard skeleton's chains (trunk, then both legs and both arms at once):
    a joint's global rotation is its parent's times its local rotation, and its
    position its parent's plus the parent's rotation applied to its offset. The joints
    the standard skeleton places at another joint (0, 5 at the root, 13 at 12) have
    zero offsets; the index joints never rotate, so each thumb (offset minus the index
    offset) sits at its wrist.
    """

    def pair(name: str) -> np.ndarray:
        return np.stack([ch["l_" + name], ch["r_" + name]])  # (2, T)

    def trunk(k: str) -> np.ndarray:
        return _rot("y", ch[f"{k}_yaw"]) @ _rot("x", ch[f"{k}_pitch"]) @ _rot("z", -ch[f"{k}_roll"])

    o = offsets
    pos = np.zeros((T, 25, 3))
    facing = _rot("y", facing_deg)
    g_root = facing @ trunk("pelvis")  # Hips (10); LHipJoint (0) and RHipJoint (5) share it
    pos[:, 11] = g_root @ o[11]
    g = g_root @ trunk("spine")
    pos[:, 12] = pos[:, 11] + g @ o[12]
    g = g @ trunk("chest")
    pos[:, 13] = pos[:, 12] + g @ o[13]
    g_neck = g @ trunk("neck")
    pos[:, 14] = pos[:, 13] + g_neck @ o[14]

    def limb(g: np.ndarray, joints: list[int]) -> np.ndarray:
        """``(T, 2, 3)`` offsets of the (left, right) ``joints`` turned by ``g (2 or 1, T, 3, 3)``."""
        return np.swapaxes(g @ o[joints][:, None, :, None], 0, 1)[..., 0]

    # legs (left, right) are posed in the facing frame, whatever the pelvis does
    hip_j, knee_j, ankle_j, toe_j = ([k, k + 5] for k in (1, 2, 3, 4))
    pos[:, hip_j] = limb(g_root[None], hip_j)
    g = facing @ _swing(pair("hip_flex"), pair("hip_abd"), _SIDES) @ _rot("y", _SIDES * pair("hip_rot"))
    pos[:, knee_j] = pos[:, hip_j] + limb(g, knee_j)
    g = _hinge_x(g, pair("knee"))
    pos[:, ankle_j] = pos[:, knee_j] + limb(g, ankle_j)
    g = _hinge_x(g, pair("ankle"))
    pos[:, toe_j] = pos[:, ankle_j] + limb(g, toe_j)

    # arms hang off the neck joint (13)
    sh_j, el_j, wr_j, ix_j, th_j = ([k, k + 5] for k in (15, 16, 17, 18, 19))
    pos[:, sh_j] = pos[:, 13:14] + limb(g_neck[None], sh_j)
    g = g_neck[None] @ _swing(pair("shoulder_flex"), pair("shoulder_abd"), _SIDES)
    g = g @ _rot("y", _SIDES * pair("shoulder_rot"))
    pos[:, el_j] = pos[:, sh_j] + limb(g, el_j)
    g = _hinge_x(g, -pair("elbow"))
    pos[:, wr_j] = pos[:, el_j] + limb(g, wr_j)
    g = _hinge_x(g, -pair("wrist"))
    pos[:, ix_j] = pos[:, wr_j] + limb(g, ix_j)
    pos[:, th_j] = pos[:, ix_j] + limb(g, th_j)  # the index joint does not rotate
    return pos


_CONTACT_SOFTNESS = 0.003  # metres: how much higher a point may be and still bear weight
_CONTACTS = np.array([3, 4, 8, 9])  # heel (below the ankle) and toe points of both feet


def _place(pos: np.ndarray, body: dict[str, Any], flight: np.ndarray) -> np.ndarray:
    """Ground contact (lowest sole at y=0, plus ``flight``) and no-slip horizontal root motion.

    Each foot touches the ground through a heel point (below the ankle) and a toe point
    (below the toe joint); the lowest of the four carries the body (softly weighted so
    that support passes smoothly from heel to toe and from foot to foot), and the root
    moves horizontally so that the supporting point does not slide.
    """
    drop = np.array([body["heel_drop"], body["toe_drop"]] * 2)
    sole = pos[:, _CONTACTS, 1] - drop  # (T, 4)
    lowest = sole.min(1)
    w = np.exp(-(sole - lowest[:, None]) / (_CONTACT_SOFTNESS * body["scale"]))
    w /= w.sum(1, keepdims=True)
    root = np.zeros((pos.shape[0], 3))
    if pos.shape[0] > 1:
        wm = 0.5 * (w[1:] + w[:-1])
        step = -(wm[..., None] * np.diff(pos[:, _CONTACTS][..., [0, 2]], axis=0)).sum(1)  # (T-1, 2)
        # airborne (flight > 0): carry on at the clip's mean velocity on the ground
        air = 1.0 - np.exp(-0.5 * (flight[1:] + flight[:-1]) / (_CONTACT_SOFTNESS * body["scale"]))
        if (air < 0.5).any():
            held = step[air < 0.5].mean(0)
            step = (1.0 - air[:, None]) * step + air[:, None] * held
        root[1:, [0, 2]] = np.cumsum(step, 0)
    root[:, [0, 2]] -= root[:, [0, 2]].mean(0)
    root[:, 1] = -lowest + flight
    return pos + root[:, None, :]


# ------------------------------------------------------------------------ API

_WARP_DEPTH = 0.06  # relative drift of the pace within a clip
_DRIFT_DEPTH = 0.06  # relative drift of the amplitude from one repetition to the next
JITTER_SCALE_RANGE = (0.7, 1.4)
"""Per-clip factor on the jitter (capture sessions differ in their noise)."""


def _rng(seed: int | np.random.Generator) -> tuple[np.random.Generator, int | None]:
    if isinstance(seed, np.random.Generator):
        return seed, None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a numpy Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed)), int(seed)


def generate_motion(
    action: str,
    *,
    seed: int | np.random.Generator,
    fps: float = 30.0,
    num_frames: int = 90,
    subject: str | None = None,
) -> Motion:
    """One seeded synthetic clip of ``action`` (one of :data:`ACTIONS`) on the standard skeleton.

    ``subject`` fixes the body and the habits (see :func:`subject_body`,
    :func:`subject_style`); ``None`` draws both from the seed. ``meta`` holds
    ``source``/``format`` ``"synthetic"``, ``action``, ``subject``, ``seed`` (``None``
    when a Generator was given) and the sampled ``params``.
    """
    try:
        fn, base_freq, raises = _ACTION_SPECS[action]
    except (KeyError, TypeError):
        raise KeyError(f"unknown synthetic action {action!r}; known: {', '.join(ACTIONS)}") from None
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if subject is not None and not isinstance(subject, str):
        raise TypeError(f"subject must be a string or None, got {type(subject).__name__}")
    rng, seed_int = _rng(seed)
    T = int(num_frames)
    t = np.arange(T) / float(fps)

    if subject is not None:
        body, habits = _subject_body(subject), _subject_style(subject)
    else:
        body = _body_from_rng(rng)
        habits = _style_from_rng(rng)
    style = _clip_style(habits, rng)
    tempo = habits["tempo"] * float(rng.uniform(*TEMPO_RANGE))
    amp = habits["amplitude"] * float(rng.uniform(*AMPLITUDE_RANGE))
    phase = float(rng.uniform(0.0, 2 * np.pi))
    facing = float(rng.uniform(-FACING_JITTER_DEG, FACING_JITTER_DEG))
    noise_scale = float(rng.uniform(*NOISE_SD_SCALE_RANGE))
    jitter_scale = float(rng.uniform(*JITTER_SCALE_RANGE))
    freq = base_freq * tempo
    warped, warp_dev = _warp(t, rng, _WARP_DEPTH)
    amp_t = amp * _drift(t, rng, _DRIFT_DEPTH)
    params: dict[str, Any] = {
        "scale": body["scale"],
        "proportions": dict(body["proportions"]),
        "tempo": tempo,
        "frequency_hz": freq,
        "amplitude": amp,
        "phase_rad": phase,
        "facing_deg": facing,
        "noise_scale": noise_scale,
        "jitter_scale": jitter_scale,
        "pace_drift": warp_dev,
        "style": style,
    }

    ch = {c: np.full(T, _REST_POSE.get(c, 0.0)) for c in CHANNELS}
    ctx: dict[str, Any] = {"body": body, "style": style, "knobs": np.asarray(style["knobs"])}
    if raises:
        ctx["raise_start_s"] = float(rng.uniform(-0.8, 0.4))  # negative: already raised
    flight = fn(warped, freq, amp_t, phase, ch, ctx)
    params.update({k: v for k, v in ctx.items() if k not in ("body", "style", "knobs", "noise_gain", "mirror_noise")})

    kinds = [_noise_kind(c) for c in CHANNELS]
    sd = np.array([_NOISE_SD[k] for k in kinds]) * noise_scale
    noise = _smooth_noise(t, rng, sd)
    noise += _jitter(t, rng, np.array([_JITTER_SD[k] for k in kinds]) * jitter_scale)
    # the habitual posture; a bent knee is matched at the ankle so the foot stays level
    posture = dict(style["posture"])
    for s in ("l", "r"):
        posture[f"{s}_ankle"] = posture.get(f"{s}_ankle", 0.0) + posture.get(f"{s}_knee", 0.0)
    noise += np.array([posture.get(c, 0.0) for c in CHANNELS])[:, None]
    for c, gain in ctx.get("noise_gain", {}).items():
        noise[CHANNELS.index(c)] *= gain
    for c in ctx.get("mirror_noise", ()):  # the right side copies the left side's noise
        noise[CHANNELS.index("r_" + c)] = noise[CHANNELS.index("l_" + c)]
    for i, c in enumerate(CHANNELS):
        ch[c] = np.asarray(ch[c], float) + noise[i]
    for s in ("l", "r"):  # no hyperextension
        ch[f"{s}_knee"] = np.maximum(ch[f"{s}_knee"], 0.0)
        ch[f"{s}_elbow"] = np.maximum(ch[f"{s}_elbow"], 0.0)

    pos = _forward_kinematics(body["offsets"], ch, facing, T)
    pos = _place(pos, body, np.asarray(flight, float))
    meta = {
        "source": "synthetic",
        "format": "synthetic",
        "action": action,
        "subject": subject,
        "seed": seed_int,
        "params": params,
    }
    return Motion(pos.astype(np.float32), float(fps), meta)


def generate_dataset(
    samples_per_class: int = 20,
    *,
    seed: int = 0,
    fps: float = 30.0,
    num_frames: int = 90,
    subjects: int = 8,
) -> list[tuple[Motion, str]]:
    """``samples_per_class`` clips of every action, as ``(motion, class name)``, class by class.

    Deterministic for a seed; sample ``i`` of class ``c`` gets its own seed (derived
    from ``(seed, c, i)``, so asking for more samples keeps the first ones) and subject
    ``"s{(i + c) % subjects + 1:02d}"``, so every subject performs every class.
    """
    for name, v in (("samples_per_class", samples_per_class), ("subjects", subjects)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    width = max(2, len(str(subjects)))
    out: list[tuple[Motion, str]] = []
    for c, action in enumerate(ACTIONS):
        for i in range(samples_per_class):
            sample_seed = int(np.random.default_rng([int(seed), c, i]).integers(2**31))
            subject = f"s{(i + c) % subjects + 1:0{width}d}"
            motion = generate_motion(action, seed=sample_seed, fps=fps, num_frames=num_frames, subject=subject)
            out.append((motion, action))
    return out
