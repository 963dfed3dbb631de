"""From a source skeleton's joint positions to the standard 25 joints, and length units.

Shared by the Acclaim (:mod:`attack_gen.data.acclaim`) and BVH (:mod:`attack_gen.data.bvh`)
loaders. Both run forward kinematics over *every* joint of the source skeleton and then
call :func:`select_standard`, which picks the 25 joints of
:data:`stimuli.skeleton.STANDARD` by name.

Joint-position convention
-------------------------
A BVH joint named after an Acclaim bone ``X`` sits at the *start* of bone ``X`` (the end
of its parent bone); Acclaim's root sits at the root translation. Each source joint is
"the start of the bone of that name", and the end of a leaf bone (or a BVH ``End Site``)
is the joint ``"<name>.end"``. Checked on ``hdm05_bvh_basar``: the BVH's joints selected
with the SMART authors' CMU indices reproduce their ``1.mat`` to 1e-8 ASF units.

The CMU 31-joint BVH conversions (``cmu_mocap/bvh/01_01.bvh``, and the CMU rest skeleton
the SMART/BASAR authors retarget HDM05 onto) are the ASF with the ``thorax``, ``lwrist``
and ``rwrist`` bones shortened to zero length: there ``Neck`` sits on ``Spine1`` and
``LThumb``/``LeftFingerBase`` on ``LeftHand``, which is why bone 13-12 has zero length
in the SMART data and the thumb coincides with the wrist. The AMC loader does the same
by default (``collapse=`` in :func:`attack_gen.data.acclaim.load_amc`), and then
``01_01.amc`` and ``01_01.bvh`` give the same joints to 1e-4 ASF units.

Naming schemes (tried in this order; names compare case-insensitively)
----------------------------------------------------------------------
``cmu``     CMU 31-joint BVH names (``Hips LHipJoint LeftUpLeg ... LFingers LThumb``), also
            the 25-joint ``hdm05_rest.bvh`` which already uses the standard names
            (``LeftHandIndex1``), and the standard names themselves.
``asf``     Acclaim bone names (``root``/``hip``, ``lhipjoint``, ``lfemur``, ...), as in an
            ASF or a BVH converted from one. The map from bone names to the standard
            joints is :data:`ASF_TO_CMU` followed by the SMART authors' selection
            :data:`CMU31_TO_STANDARD` from the CMU 31-joint order :data:`CMU31_NAMES`.
``daz``     the Poser/DAZ-style CMU conversion (``hip abdomen chest neck head lCollar
            lShldr lForeArm lHand lThumb1 lIndex1 ... lButtock lThigh lShin lFoot``),
            e.g. ``cmu_mocap/bvh/10_01.bvh``: Spine=abdomen, Spine1=chest, Neck=neck,
            Neck1=head, LeftHandIndex1=lIndex1, LThumb=lThumb1 (the thumb base),
            LeftToeBase=the foot's End Site; LHipJoint/RHipJoint at the root (``hip``),
            which is rigid because the buttock joints do not rotate in these files.
``bandai``  Bandai Namco's 22 joints (``joint_Root Hips Spine Chest Neck Head Shoulder_L
            UpperArm_L LowerArm_L Hand_L ... UpperLeg_L LowerLeg_L Foot_L Toes_L``):
            Spine1=Chest, Neck=Neck, Neck1=Head.

Joints a scheme lacks are placed as in the SMART data, so that every bone keeps a
constant length:

- ``LHipJoint``/``RHipJoint`` (Bandai, DAZ): at the root (``Hips``), as in the SMART data
  where bones 0-10 and 5-10 have zero length.
- ``LeftHandIndex1``/``RightHandIndex1`` (Bandai): the hand's ``End Site`` (5 cm along
  the hand in Bandai's files). A skeleton without one gets a point
  :data:`SYNTH_FINGER_M` (4 cm, the SMART data's 0.72 ASF units) beyond the wrist along
  the forearm (elbow->wrist) direction.
- ``LThumb``/``RThumb`` (Bandai): at the wrist (``LeftHand``), as in the SMART data where
  the thumb joint coincides with the wrist.

``Neck`` is the source's neck-base joint (not ``Spine1``'s position) for DAZ and Bandai:
the head joint ``Neck1`` hangs off it, and only a joint that the neck rotation does not
move keeps bone 14-13 rigid. Bandai's clavicles (``Shoulder_L``/``_R``) rotate, so its
neck-to-shoulder bones 15-13 and 20-13 (about 10.5 cm) change length by up to 2.7 cm in
the real files (a dance clip; ~0.2-1 cm in most): the standard skeleton has no clavicle
to absorb a shrug. All other bones are rigid.

Units
-----
Acclaim files declare their length unit (``:units length 0.45`` = 1/0.45 inch); BVH files
do not. :func:`detect_unit` infers it from the leg (thigh + shin) length, see there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping
from typing import Sequence

import numpy as np

from stimuli.errors import DataError
from stimuli.skeleton import STANDARD

__all__ = [
    "CMU31_NAMES",
    "CMU31_TO_STANDARD",
    "ASF_TO_CMU",
    "SCHEMES",
    "UNITS",
    "SYNTH_FINGER_M",
    "INCH_M",
    "asf_unit_to_m",
    "detect_unit",
    "leg_length",
    "match_scheme",
    "resolve_unit",
    "select_standard",
    "subject_from_name",
]

INCH_M = 0.0254

CMU31_NAMES: tuple[str, ...] = (
    "Hips",
    "LHipJoint",
    "LeftUpLeg",
    "LeftLeg",
    "LeftFoot",
    "LeftToeBase",
    "RHipJoint",
    "RightUpLeg",
    "RightLeg",
    "RightFoot",
    "RightToeBase",
    "LowerBack",
    "Spine",
    "Spine1",
    "Neck",
    "Neck1",
    "Head",
    "LeftShoulder",
    "LeftArm",
    "LeftForeArm",
    "LeftHand",
    "LeftFingerBase",
    "LeftHandIndex1",
    "LThumb",
    "RightShoulder",
    "RightArm",
    "RightForeArm",
    "RightHand",
    "RightFingerBase",
    "RightHandIndex1",
    "RThumb",
)
"""The CMU 31-joint skeleton (BVH joint order), from which the SMART authors select 25."""

CMU31_TO_STANDARD: tuple[int, ...] = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    0,
    12,
    13,
    14,
    15,
    18,
    19,
    20,
    22,
    23,
    25,
    26,
    27,
    29,
    30,
)
"""For each standard joint, its index in :data:`CMU31_NAMES` (the authors' ``process_bvh_file``)."""

ASF_TO_CMU: Mapping[str, str] = {
    "root": "Hips",
    "lhipjoint": "LHipJoint",
    "lfemur": "LeftUpLeg",
    "ltibia": "LeftLeg",
    "lfoot": "LeftFoot",
    "ltoes": "LeftToeBase",
    "rhipjoint": "RHipJoint",
    "rfemur": "RightUpLeg",
    "rtibia": "RightLeg",
    "rfoot": "RightFoot",
    "rtoes": "RightToeBase",
    "lowerback": "LowerBack",
    "upperback": "Spine",
    "thorax": "Spine1",
    "lowerneck": "Neck",
    "upperneck": "Neck1",
    "head": "Head",
    "lclavicle": "LeftShoulder",
    "lhumerus": "LeftArm",
    "lradius": "LeftForeArm",
    "lwrist": "LeftHand",
    "lhand": "LeftFingerBase",
    "lfingers": "LeftHandIndex1",
    "lthumb": "LThumb",
    "rclavicle": "RightShoulder",
    "rhumerus": "RightArm",
    "rradius": "RightForeArm",
    "rwrist": "RightHand",
    "rhand": "RightFingerBase",
    "rfingers": "RightHandIndex1",
    "rthumb": "RThumb",
}
"""Acclaim (HDM05/CMU ASF) bone name -> CMU 31-joint name (the joint at the bone's start)."""

SYNTH_FINGER_M = 0.04
"""Metres beyond the wrist, along the forearm, of a synthesised ``*HandIndex1`` joint."""


def _asf_scheme() -> dict[str, tuple[str, ...]]:
    cmu_to_asf = {v: k for k, v in ASF_TO_CMU.items()}
    scheme = {std: (cmu_to_asf[CMU31_NAMES[i]],) for std, i in zip(STANDARD.joint_names, CMU31_TO_STANDARD)}
    scheme["Hips"] = ("root", "hip", "hips")
    return scheme


def _cmu_scheme() -> dict[str, tuple[str, ...]]:
    scheme = {std: (CMU31_NAMES[i],) for std, i in zip(STANDARD.joint_names, CMU31_TO_STANDARD)}
    scheme["LeftHandIndex1"] = ("LeftHandIndex1", "LFingers")
    scheme["RightHandIndex1"] = ("RightHandIndex1", "RFingers")
    return scheme


# Each scheme maps a standard joint name to candidate source names, tried in order.
# "=X" places the joint at standard joint X's position; "~finger:L"/"~finger:R" is the
# synthesised finger point described in the module docstring.
SCHEMES: dict[str, dict[str, tuple[str, ...]]] = {
    "cmu": _cmu_scheme(),
    "asf": _asf_scheme(),
    "daz": {
        "LHipJoint": ("=Hips",),
        "LeftUpLeg": ("lThigh",),
        "LeftLeg": ("lShin",),
        "LeftFoot": ("lFoot",),
        "LeftToeBase": ("lToe", "lFoot.end"),
        "RHipJoint": ("=Hips",),
        "RightUpLeg": ("rThigh",),
        "RightLeg": ("rShin",),
        "RightFoot": ("rFoot",),
        "RightToeBase": ("rToe", "rFoot.end"),
        "Hips": ("hip",),
        "Spine": ("abdomen",),
        "Spine1": ("chest",),
        "Neck": ("neck",),
        "Neck1": ("head",),
        "LeftArm": ("lShldr",),
        "LeftForeArm": ("lForeArm",),
        "LeftHand": ("lHand",),
        "LeftHandIndex1": ("lIndex1", "lMid1", "lHand.end", "~finger:L"),
        "LThumb": ("lThumb1", "=LeftHand"),
        "RightArm": ("rShldr",),
        "RightForeArm": ("rForeArm",),
        "RightHand": ("rHand",),
        "RightHandIndex1": ("rIndex1", "rMid1", "rHand.end", "~finger:R"),
        "RThumb": ("rThumb1", "=RightHand"),
    },
    "bandai": {
        "LHipJoint": ("=Hips",),
        "LeftUpLeg": ("UpperLeg_L",),
        "LeftLeg": ("LowerLeg_L",),
        "LeftFoot": ("Foot_L",),
        "LeftToeBase": ("Toes_L",),
        "RHipJoint": ("=Hips",),
        "RightUpLeg": ("UpperLeg_R",),
        "RightLeg": ("LowerLeg_R",),
        "RightFoot": ("Foot_R",),
        "RightToeBase": ("Toes_R",),
        "Hips": ("Hips",),
        "Spine": ("Spine",),
        "Spine1": ("Chest",),
        "Neck": ("Neck",),
        "Neck1": ("Head",),
        "LeftArm": ("UpperArm_L",),
        "LeftForeArm": ("LowerArm_L",),
        "LeftHand": ("Hand_L",),
        "LeftHandIndex1": ("Hand_L.end", "~finger:L"),
        "LThumb": ("=LeftHand",),
        "RightArm": ("UpperArm_R",),
        "RightForeArm": ("LowerArm_R",),
        "RightHand": ("Hand_R",),
        "RightHandIndex1": ("Hand_R.end", "~finger:R"),
        "RThumb": ("=RightHand",),
    },
}

# --------------------------------------------------------------------------- units


@dataclass(frozen=True)
class Unit:
    name: str
    to_m: float


UNITS: tuple[Unit, ...] = (
    Unit("m", 1.0),
    Unit("cm", 0.01),
    Unit("mm", 0.001),
    Unit("inch", INCH_M),
    Unit("asf_0.45", INCH_M / 0.45),
)
"""Candidate BVH length units; ``asf_0.45`` is the Acclaim unit of HDM05/CMU (1/0.45 inch)."""

_TYPICAL_LEG_M = 0.85  # thigh + shin of an adult
_PLAUSIBLE_LEG_M = (0.35, 1.6)


def asf_unit_to_m(length: float) -> float:
    """Metres per Acclaim length unit: ``:units length L`` means 1 unit = 1/L inch."""
    return INCH_M / float(length)


def detect_unit(leg_length: float, *, source: str = "motion") -> tuple[str, float]:
    """The unit ``(name, metres per unit)`` of a skeleton whose thigh+shin is ``leg_length``.

    Rule: among :data:`UNITS` (m, cm, mm, inch, ASF 1/0.45 inch) take the one whose
    implied leg length is closest, on a log scale, to 0.85 m (an adult's thigh + shin).
    Neighbouring candidates differ by at least x2.2, so legs of 0.57-1.27 m are always
    told apart correctly. If even the best candidate implies a leg outside 0.35-1.6 m
    the unit is not guessed: :class:`DataError` asks for an explicit ``scale=``.
    """
    if not (np.isfinite(leg_length) and leg_length > 0):
        raise DataError(f"{source}: cannot detect the length unit: leg length is {leg_length!r}; pass scale=")
    best = min(UNITS, key=lambda u: abs(np.log(leg_length * u.to_m / _TYPICAL_LEG_M)))
    leg_m = leg_length * best.to_m
    if not _PLAUSIBLE_LEG_M[0] <= leg_m <= _PLAUSIBLE_LEG_M[1]:
        raise DataError(
            f"{source}: cannot detect the length unit: the leg (thigh + shin) is {leg_length:g} file units, "
            f"{leg_m:.3g} m even in the closest unit ({best.name}); pass scale= (metres per file unit)"
        )
    return best.name, best.to_m


def leg_length(positions: np.ndarray) -> float:
    """Mean thigh + shin length (median over frames) of standard-joint positions ``(T, 25, 3)``."""
    idx = STANDARD.index
    total = 0.0
    for hip, knee, ankle in (("LeftUpLeg", "LeftLeg", "LeftFoot"), ("RightUpLeg", "RightLeg", "RightFoot")):
        p = positions[:, [idx(hip), idx(knee), idx(ankle)]]
        lengths = np.linalg.norm(p[:, 1] - p[:, 0], axis=-1) + np.linalg.norm(p[:, 2] - p[:, 1], axis=-1)
        total += float(np.median(lengths))
    return total / 2.0


def resolve_unit(positions: np.ndarray, scale: float | None, *, source: str = "motion") -> tuple[str, float]:
    """``(unit name, metres per unit)``: ``scale`` when given, else :func:`detect_unit`."""
    if scale is not None:
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise DataError(f"{source}: scale must be a number (metres per file unit), got {scale!r}") from None
        if not (np.isfinite(scale) and scale > 0):
            raise DataError(f"{source}: scale must be > 0 (metres per file unit), got {scale!r}")
        for u in UNITS:
            if np.isclose(u.to_m, scale, rtol=1e-9):
                return u.name, scale
        return "custom", scale
    return detect_unit(leg_length(positions), source=source)


# ------------------------------------------------------------------ joint selection


def _lookup(names: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, n in enumerate(names):
        out.setdefault(n.lower(), i)
    return out


def _missing(scheme: Mapping[str, tuple[str, ...]], lut: Mapping[str, int]) -> list[str]:
    """Standard joints of ``scheme`` with no candidate among the source names."""
    missing = []
    for std in STANDARD.joint_names:
        cands = scheme[std]
        if not any(c.startswith(("=", "~")) or c.lower() in lut for c in cands):
            missing.append(f"{std} ({'/'.join(cands)})")
    return missing


def _direct_matches(scheme: Mapping[str, tuple[str, ...]], lut: Mapping[str, int]) -> int:
    return sum(any(c.lower() in lut for c in cands) for cands in scheme.values())


def match_scheme(names: Sequence[str], *, schemes: Sequence[str] | None = None, source: str = "motion") -> str:
    """The first naming scheme of :data:`SCHEMES` (or of ``schemes``) with all 25 joints.

    Raises :class:`DataError` listing the joints the closest scheme (the one matching
    the most source names) lacks.
    """
    lut = _lookup(names)
    candidates = list(SCHEMES) if schemes is None else list(schemes)
    for scheme_name in candidates:
        if not _missing(SCHEMES[scheme_name], lut):
            return scheme_name
    closest = max(candidates, key=lambda n: _direct_matches(SCHEMES[n], lut))
    missing = _missing(SCHEMES[closest], lut)
    shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
    raise DataError(
        f"{source}: unknown skeleton naming: closest scheme {closest!r} lacks "
        f"{len(missing)} required joint(s): {', '.join(missing)}; source joints: {shown}"
    )


def select_standard(
    positions: np.ndarray,
    names: Sequence[str],
    *,
    unit_to_m: float | None = None,
    scheme: str | None = None,
    source: str = "motion",
) -> tuple[np.ndarray, str, dict[str, str]]:
    """Pick the 25 standard joints from source positions ``(T, J, 3)`` named ``names``.

    Returns ``(positions (T, 25, 3) in the source's units, scheme name, synthesised)``
    where ``synthesised`` maps each standard joint placed by a rule rather than taken
    from a source joint to that rule (``"=Hips"``: at that joint; ``"~finger:L"``: the
    synthesised finger point). ``unit_to_m`` sets the
    synthesised finger offset (:data:`SYNTH_FINGER_M`); it is needed only then, and
    taken as 1 when ``None``.
    """
    positions = np.asarray(positions, dtype=np.float64)
    scheme = match_scheme(names, schemes=None if scheme is None else (scheme,), source=source)
    spec = SCHEMES[scheme]
    lut = _lookup(names)
    T = positions.shape[0]
    out = np.full((T, STANDARD.num_joints, 3), np.nan)
    pending: list[tuple[int, str]] = []
    for j, std in enumerate(STANDARD.joint_names):
        for cand in spec[std]:
            if cand.startswith(("=", "~")):
                pending.append((j, cand))
                break
            k = lut.get(cand.lower())
            if k is not None:
                out[:, j] = positions[:, k]
                break
        else:  # pragma: no cover - match_scheme guarantees a candidate
            raise AssertionError(std)
    finger = SYNTH_FINGER_M / (unit_to_m or 1.0)
    for j, cand in pending:
        if cand.startswith("="):
            out[:, j] = out[:, STANDARD.index(cand[1:])]
    for j, cand in pending:
        if cand.startswith("~finger:"):
            side = "Left" if cand.endswith("L") else "Right"
            elbow, wrist = out[:, STANDARD.index(f"{side}ForeArm")], out[:, STANDARD.index(f"{side}Hand")]
            d = wrist - elbow
            norm = np.linalg.norm(d, axis=-1, keepdims=True)
            d = np.divide(d, norm, out=np.zeros_like(d), where=norm > 0)
            out[:, j] = wrist + finger * d
    synthesised = {STANDARD.joint_names[j]: cand for j, cand in pending}
    return out, scheme, synthesised


def subject_from_name(stem: str) -> str | None:
    """Subject from a file name: HDM05 ``HDM_bd_...`` -> ``bd``; CMU ``01_01`` -> ``01``."""
    parts = stem.split("_")
    if len(parts) >= 2 and parts[0].upper() == "HDM" and parts[1]:
        return parts[1]
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return parts[0]
    return None
