"""The screening rule (SPEC §5), once: the server applies it, the analysis and the simulator recompute it.

Indistinguishability only (the other designs have no catch trials):

* **sensitivity** trials (original | original) answered "unchanged" are correct; an
  accuracy below ``threshold`` (0.8 in the paper) excludes the participant;
* **positive controls** (original | clearly perturbed) answered "changed" are hits; the
  misses are always recorded, and with ``control_hit_threshold`` set a hit rate below it
  excludes too. A participant who answers "unchanged" to everything passes the paper's
  screen at 100 %, but shows up here with every control missed (flag
  ``always_unchanged``), and is excluded once a control threshold is set.

Only valid answers count (a trial whose video failed has no answer). Excluded
participants keep their data; the reason is stored as text, e.g.
``"sensitivity accuracy 0.70 < 0.80"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Iterable

__all__ = ["SENSITIVITY_THRESHOLD", "CONTROL_HIT_THRESHOLD", "Answer", "Screening", "screen", "exclusion_reasons"]

SENSITIVITY_THRESHOLD = 0.8
"""The paper's screen: a sensitivity accuracy below this excludes."""
CONTROL_HIT_THRESHOLD = 0.8
"""The positive-control screen when one is applied (a study sets it, or the report's "+controls" row uses it);
by default a study does not screen on controls (the paper has none)."""


@dataclass(frozen=True)
class Answer:
    """One analysed, valid indistinguishability answer: the trial kind and whether 'changed' was said."""

    kind: str
    said_changed: bool


@dataclass(frozen=True)
class Screening:
    excluded: bool
    reason: str | None
    stats: dict[str, Any] = field(default_factory=dict)


def _rate(k: int, n: int) -> float | None:
    return None if n == 0 else k / n


def exclusion_reasons(
    accuracy: float | None,
    control_hit_rate: float | None,
    threshold: float = SENSITIVITY_THRESHOLD,
    control_hit_threshold: float | None = None,
) -> list[str]:
    """Why a participant with this sensitivity accuracy and control hit rate is excluded (empty: kept).

    A rate that is None or NaN (no such trials) excludes no one.
    """
    reasons = []
    if accuracy is not None and accuracy == accuracy and accuracy < threshold:
        reasons.append(f"sensitivity accuracy {accuracy:.2f} < {threshold:.2f}")
    rate = control_hit_rate
    if control_hit_threshold is not None and rate is not None and rate == rate and rate < control_hit_threshold:
        reasons.append(f"positive-control hit rate {rate:.2f} < {control_hit_threshold:.2f}")
    return reasons


def screen(
    answers: Iterable[Answer], threshold: float = SENSITIVITY_THRESHOLD, control_hit_threshold: float | None = None
) -> Screening:
    """Screen one participant's valid indistinguishability answers (see module docstring)."""
    answers = list(answers)
    sens = [a for a in answers if a.kind == "sensitivity"]
    ctrl = [a for a in answers if a.kind == "control"]
    perc = [a for a in answers if a.kind == "perceivability"]
    sens_ok = sum(not a.said_changed for a in sens)
    hits = sum(a.said_changed for a in ctrl)
    stats: dict[str, Any] = {
        "sensitivity_trials": len(sens),
        "sensitivity_correct": sens_ok,
        "sensitivity_accuracy": _rate(sens_ok, len(sens)),
        "false_alarms": len(sens) - sens_ok,
        "control_trials": len(ctrl),
        "control_hits": hits,
        "control_misses": len(ctrl) - hits,
        "control_hit_rate": _rate(hits, len(ctrl)),
        "perceivability_trials": len(perc),
        "perceivability_changed": sum(a.said_changed for a in perc),
        "threshold": threshold,
        "control_hit_threshold": control_hit_threshold,
    }
    flags = []
    if answers and not any(a.said_changed for a in answers):
        flags.append("always_unchanged")
    if answers and all(a.said_changed for a in answers):
        flags.append("always_changed")
    if ctrl and hits == 0:
        flags.append("missed_every_control")
    stats["flags"] = flags
    reasons = exclusion_reasons(
        stats["sensitivity_accuracy"], stats["control_hit_rate"], threshold, control_hit_threshold
    )
    return Screening(bool(reasons), "; ".join(reasons) or None, stats)
