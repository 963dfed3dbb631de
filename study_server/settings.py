"""Every setting of a study, declared once: its type, default, range and help.

A study is a list of :class:`Block` s (one for a single design, several for a combined
session, run in order) and one :class:`StudySettings`. Each field carries a :class:`Spec` in
its metadata; from these come :func:`study_server.studies.create_study`'s keywords and their
checks (:func:`check`), the admin form's fields (:mod:`study_server.admin`) and the options of
``flask create-study`` (:mod:`study_server.cli`). The paper's values are the defaults
(SPEC §5): 100 trials per participant; naturalness shows each pair twice.
"""

from __future__ import annotations

import math
import re
from dataclasses import Field
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from typing import Any
from typing import Mapping

from stimuli.screening import SENSITIVITY_THRESHOLD

from . import design

__all__ = [
    "Spec",
    "Block",
    "StudySettings",
    "BLOCK_SETTINGS",
    "STUDY_SETTINGS",
    "block_fields",
    "study_fields",
    "spec",
    "check",
    "paper_default",
]


@dataclass(frozen=True)
class Spec:
    """What a setting is: its type, range and the words the form and the command line show.

    ``type`` is ``int``, ``float``, ``bool``, ``str`` or ``tuple`` (a list of names).
    ``lo``/``hi`` bound numbers (``above``: ``lo`` itself is not allowed); ``optional``: None
    is allowed (``help`` says what it means). ``paper``: block settings whose paper value
    depends on the design (the field's default is then None). ``designs``: the designs a
    block setting means something for (the form shows it only there).
    """

    type: type
    label: str
    help: str = ""
    lo: float | None = None
    hi: float | None = None
    above: bool = False
    optional: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    pattern_help: str = ""
    max_length: int | None = None
    cli: str | None = None
    paper: Mapping[str, Any] | None = None
    designs: tuple[str, ...] = design.STUDY_TYPES


def _setting(default: Any, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(**spec)})


def spec(f: Field[Any]) -> Spec:
    """The :class:`Spec` of a settings field."""
    return f.metadata["spec"]


@dataclass(frozen=True)
class Block:
    """One block of a session: a design and its trial settings (a single-design study has one)."""

    study_type: str
    trials: int = _setting(
        None,
        type=int,
        label="trials",
        help="Analysed trials per participant (naturalness: two per motion; paper: 100).",
        lo=1,
        hi=10_000,
        paper={design.DECEITFULNESS: 100, design.NATURALNESS: 100, design.INDISTINGUISHABILITY: 100},
    )
    practice_trials: int = _setting(
        2, type=int, label="practice trials", help="Practice trials before the analysed ones.", lo=0, hi=100
    )
    plays: int = _setting(
        None,
        type=int,
        label="plays per trial",
        help="Times each clip (or pair) plays (paper: naturalness 2, the others 1).",
        lo=1,
        hi=10,
        paper={design.DECEITFULNESS: 1, design.NATURALNESS: 2, design.INDISTINGUISHABILITY: 1},
    )
    seconds: float = _setting(
        None,
        type=float,
        label="seconds shown per play",
        help="Seconds of the clip shown per play (blank: the whole clip).",
        lo=0,
        hi=600,
        above=True,
        optional=True,
    )
    slowdown: float = _setting(
        1.0,
        type=float,
        label="slow-down factor",
        help="1 plays in real time; 2 plays twice as slowly.",
        lo=1 / 16,
        hi=16,
    )
    variants: tuple[str, ...] = _setting(
        (design.SMART,),
        type=tuple,
        label="attacked variant(s) shown",
        help="The attacked variant(s) shown (deceitfulness: one), comma-separated.",
        cli="variant",
        designs=(design.DECEITFULNESS, design.INDISTINGUISHABILITY),
    )
    sensitivity_share: float = _setting(
        0.2,
        type=float,
        label="share of sensitivity trials",
        help="A fraction from 0 to 1 of the trials: original | original.",
        lo=0,
        hi=1,
        designs=(design.INDISTINGUISHABILITY,),
    )
    control_share: float = _setting(
        0.1,
        type=float,
        label="share of positive-control trials",
        help="A fraction from 0 to 1 of the trials: original | a clearly perturbed clip.",
        lo=0,
        hi=1,
        designs=(design.INDISTINGUISHABILITY,),
    )
    procedure: str = _setting(
        "fixed",
        type=str,
        label="procedure",
        help="fixed: the variants named; constant: every graded level of each method named (method of constant "
        "stimuli, each level as often per participant); adaptive: QUEST+ chooses each trial's level per "
        "participant and method (the batch needs graded levels: attack-gen batch --levels).",
        choices=design.PROCEDURES,
        designs=(design.INDISTINGUISHABILITY,),
    )
    practice_feedback: bool = _setting(
        False,
        type=bool,
        label="feedback after practice trials",
        help="After a practice trial with a right answer (a clear change; two identical clips), say whether the "
        "answer was right. Attacked pairs have no right answer and get none.",
        designs=(design.INDISTINGUISHABILITY,),
    )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["variants"] = list(self.variants)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Block:
        return cls(**{**d, "variants": tuple(d["variants"])})


STATUSES = ("open", "pilot", "closed")
"""A study's states: taking participants, taking pilot participants, or not taking any."""
TAKING = ("open", "pilot")
"""The states in which new participants may enter."""


@dataclass(frozen=True)
class StudySettings:
    """The settings of a study as a whole: screening, running and recruiting."""

    title: str | None = _setting(
        None,
        type=str,
        label="Title",
        help="Researchers see it; participants do not (blank: the link name).",
        optional=True,
        max_length=200,
    )
    header: str | None = _setting(
        None,
        type=str,
        label="Header participants see",
        help="On every participant page and as the window title (blank: 'Motion perception study').",
        optional=True,
        max_length=100,
    )
    consent_text: str | None = _setting(
        None,
        type=str,
        label="Information and consent text",
        help="What participants read before they agree; blank lines separate paragraphs "
        "(blank: the standard text, which gives the number of clips and how answers are stored).",
        optional=True,
        max_length=10_000,
    )
    screening_threshold: float = _setting(
        SENSITIVITY_THRESHOLD,
        type=float,
        label="Screening: minimum sensitivity accuracy",
        help="Participants below it are excluded (their data is kept).",
        lo=0,
        hi=1,
        cli="threshold",
    )
    control_hit_threshold: float | None = _setting(
        None,
        type=float,
        label="Screening: minimum positive-control hit rate",
        help="Blank: misses are recorded but do not exclude.",
        lo=0,
        hi=1,
        optional=True,
        cli="control-threshold",
    )
    stall_limit_s: float = _setting(
        10.0,
        type=float,
        label="Seconds a stalled video may wait before the trial is given again",
        lo=1,
        hi=600,
    )
    max_attempts: int = _setting(3, type=int, label="Attempts per trial when videos fail", lo=1, hi=10)
    target_participants: int | None = _setting(
        None,
        type=int,
        label="Target number of analysed participants",
        help="For the dashboard's balance targets.",
        lo=1,
        hi=1_000_000,
        optional=True,
        cli="target",
    )
    completion_code: str | None = _setting(
        None,
        type=str,
        label="Completion code (e.g. Prolific's)",
        optional=True,
        pattern=r"[A-Za-z0-9_-]{1,64}",
        pattern_help="letters, digits, '_' or '-' (at most 64)",
    )
    prolific_redirect: bool = _setting(
        True, type=bool, label="Send Prolific participants back to Prolific with the code"
    )
    allow_anonymous: bool = _setting(
        True,
        type=bool,
        label="Allow entry without a Prolific or MTurk id",
        help="Default: allowed, unless the study has a completion code (a paid study: only recruited people).",
    )
    status: str = _setting(
        "open",
        type=str,
        label="Status",
        help="open: taking participants; pilot: taking pilot participants (recorded and exported, flagged, "
        "left out of balancing and, unless asked, of the analysis).",
        choices=STATUSES,
    )


def block_fields() -> tuple[Field[Any], ...]:
    """The settings of a block (every field of :class:`Block` but its design)."""
    return tuple(f for f in fields(Block) if f.name != "study_type")


def study_fields() -> tuple[Field[Any], ...]:
    return fields(StudySettings)


BLOCK_SETTINGS = tuple(f.name for f in block_fields())
"""Settings each block has for itself."""
STUDY_SETTINGS = tuple(f.name for f in study_fields())


def paper_default(f: Field[Any], study_type: str) -> Any:
    """A block setting's default for ``study_type``: the paper's value where it depends on the design."""
    s = spec(f)
    return s.paper[study_type] if s.paper else f.default


def _range(s: Spec) -> str:
    if s.type is int:
        return f"in {s.lo:g}..{s.hi:g}" if s.hi is not None else f">= {s.lo:g}"
    lo = "(" if s.above else "["
    return f"in {lo}{s.lo:g}, {s.hi:g}]"


def check(f: Field[Any], value: Any) -> Any:
    """``value`` for setting ``f``, normalised (floats as float, names as a tuple); ValueError naming the
    setting and what was expected otherwise."""
    s, name = spec(f), f.name
    if value is None and s.optional:
        return None
    ok = False
    want = ""
    if s.type is bool:
        ok, want = isinstance(value, bool), "true or false"
    elif s.type is int:
        ok = not isinstance(value, bool) and isinstance(value, int)
        ok = ok and (s.lo is None or value >= s.lo) and (s.hi is None or value <= s.hi)
        want = f"an integer {_range(s)}"
    elif s.type is float:
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        ok = ok and (s.lo is None or value > s.lo or (value == s.lo and not s.above))
        ok = ok and (s.hi is None or value <= s.hi)
        want = f"a number {_range(s)}"
        value = float(value) if ok else value
    elif s.type is tuple:
        ok = isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) and v for v in value)
        want = "a non-empty list of names"
        value = tuple(value) if ok else value
    elif s.choices:
        ok, want = value in s.choices, f"one of {', '.join(s.choices)}"
    else:
        ok = isinstance(value, str)
        ok = ok and (s.max_length is None or len(value) <= s.max_length)
        ok = ok and (s.pattern is None or re.fullmatch(s.pattern, value) is not None)
        want = s.pattern_help or (f"text of at most {s.max_length} characters" if s.max_length else "text")
    if not ok:
        either = "None or " if s.optional and s.type is not str else ""  # blank text is None: no need to say it
        raise ValueError(f"{name} must be {either}{want}, got {value!r}")
    return value
