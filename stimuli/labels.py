"""Class labels as participants read them: a display name for every class name.

Dataset class names are identifiers (``elbow_strike_right``, HDM05's ``kickLFront1Reps``).
A Deceitfulness trial asks people which of two labels describes a motion, so they must
read as words: ``elbow strike (right)``, ``kick forward (left)``. :func:`display_name`
gives one for any name: the curated HDM05 names below, else a rule (words split at
underscores, hyphens and case changes; repetition counts dropped; a trailing or leading
side word, ``L``/``R`` included, put in brackets). A batch keeps the display name of
each class it uses, and a researcher can override any of them (``attack-gen batch
--display-names FILE``).
"""

from __future__ import annotations

import re
from typing import Mapping

__all__ = ["DISPLAY_NAMES", "display_name", "display_names"]

DISPLAY_NAMES: Mapping[str, str] = {
    # HDM05 "cut" classes (hdm05_cut_amc)
    "depositFloorR": "put something down on the floor (right hand)",
    "elbowToKnee1RepsLelbowStart": "elbow to knee",
    "grabHighR": "grab something high (right hand)",
    "hopBothLegs1hops": "hop on both legs",
    "jogLeftCircle4StepsRstart": "jog in a circle",
    "kickLFront1Reps": "kick forward (left)",
    "lieDownFloor": "lie down on the floor",
    "rotateArmsBothBackward1Reps": "rotate both arms backward",
    "sneak2StepsLStart": "sneak",
    "squat1Reps": "squat",
    "throwBasketball": "throw a basketball",
    # the 65-class HDM05 list of the SMART authors (hdm05_smart_subset)
    "cartwheel": "cartwheel",
    "depositFR": "put something down in front (right hand)",
    "depositLR": "put something down low (right hand)",
    "elbow_to_knee": "elbow to knee",
    "grabFR": "grab something in front (right hand)",
    "grabLR": "grab something low (right hand)",
    "jogRC": "jog in a circle (to the right)",
    "kickLS": "kick sideways (left)",
    "kickRF": "kick forward (right)",
    "lie_down": "lie down",
    "punchLS": "punch sideways (left)",
    "shuffle": "shuffle",
    "sit_downF": "sit down on the floor",
    "sneak": "sneak",
    "squat": "squat",
    "stand_upLF": "stand up from lying on the floor",
    "stand_upSF": "stand up from sitting on the floor",
    "throwFR": "throw forward (right hand)",
    "throwSD": "throw while sitting",
    "throwST": "throw while standing",
    "walk_inplace": "walk on the spot",
    "walk_rightRC": "walk sideways to the right",
}

_SIDES = {"left": "left", "right": "right", "both": "both", "l": "left", "r": "right"}
_COUNT = re.compile(r"^\d+(reps?|hops?|steps?)?$", re.IGNORECASE)


def display_name(name: str) -> str:
    """The words a participant reads for class ``name`` (see the module docstring)."""
    if name in DISPLAY_NAMES:
        return DISPLAY_NAMES[name]
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", name)
    words = [w for w in re.split(r"[\s_\-]+", spaced) if w]
    words = [w for w in words if not _COUNT.match(w) and w.lower() not in ("reps", "rep")]
    side = None
    if len(words) > 1 and words[-1].lower() in _SIDES:
        side = _SIDES[words.pop().lower()]
    elif len(words) > 1 and words[0].lower() in ("left", "right"):
        side = words.pop(0).lower()
    text = " ".join(w.lower() if not w.isupper() or len(w) > 1 else w for w in words) or name
    return f"{text} ({side})" if side else text


def display_names(names: list[str] | tuple[str, ...], overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{class name: display name}`` for ``names``, ``overrides`` taking precedence."""
    over = dict(overrides or {})
    return {n: over.get(n) or display_name(n) for n in names}
