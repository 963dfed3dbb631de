"""The figures of a study's live dashboard (and of ``flask --app study_server summary SLUG --json``).

Counts, CONSORT-style: entered (every participation record), declined consent, started
(at least one analysed trial answered validly: what ``analysis report`` counts as started),
in progress (in the trials, not done yet), completed, excluded by screening (with the reasons),
analysed (completed and not excluded). Then the median time from the first trial to
completion, playback failures, and per condition the analysed trials against the
balance target (expected trials per usable participant times the target number of
participants; see :func:`study_server.studies.balance_targets`).

A handful of grouped queries per call, whatever the number of participants.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any
from typing import Sequence

from markupsafe import Markup
from markupsafe import escape
from sqlalchemy import func
from sqlalchemy import select

from . import design
from .design import condition_of
from .extensions import db
from .models import Participant
from .models import Response
from .models import Study
from .models import Trial
from .models import utcnow
from .studies import balance_targets
from .studies import cell_counts
from .studies import study_blocks

__all__ = ["summary", "participant_counts"]


def _counted(study: Study) -> tuple[Any, Any]:
    """The conditions for the participants the figures count: the study's, pilots apart."""
    return Participant.study_pk == study.id, Participant.pilot.is_(False)


def participant_counts(study: Study) -> dict[str, int]:
    answered = (
        select(Trial.id)
        .where(Trial.participant_pk == Participant.id, Trial.practice.is_(False), Trial.status == "done")
        .exists()
    )
    each = (  # one row per participant, then counted (PostgreSQL cannot group by a correlated subquery)
        select(
            Participant.status.label("status"),
            Participant.excluded.label("excluded"),
            Participant.started_at.is_not(None).label("in_trials"),
            Participant.pilot.label("pilot"),
            answered.label("started"),
        )
        .where(Participant.study_pk == study.id)
        .subquery()
    )
    groups = (each.c.status, each.c.excluded, each.c.in_trials, each.c.pilot, each.c.started)
    rows = db.session.execute(select(*groups, func.count()).group_by(*groups)).all()
    keys = ("entered", "declined", "started", "in_progress", "completed", "excluded", "analysed", "pilot")
    n = dict.fromkeys(keys, 0)
    for status, excluded, in_trials, pilot, started, k in rows:
        if pilot:  # counted apart: pilots are in no other figure
            n["pilot"] += k
            continue
        n["entered"] += k
        n["declined"] += k if status == "declined" else 0
        n["started"] += k if started else 0
        if status == "completed":
            n["completed"] += k
            n["excluded" if excluded else "analysed"] += k
        elif in_trials:
            n["in_progress"] += k
    return n


def _exclusions(study: Study) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(Participant.exclusion_reason, func.count())
        .where(*_counted(study), Participant.status == "completed", Participant.excluded.is_(True))
        .group_by(Participant.exclusion_reason)
        .order_by(func.count().desc())
    ).all()
    return [{"reason": reason or "(no reason recorded)", "participants": k} for reason, k in rows]


def _median_duration(study: Study) -> float | None:
    rows = db.session.execute(
        select(Participant.started_at, Participant.completed_at).where(
            *_counted(study),
            Participant.status == "completed",
            Participant.started_at.is_not(None),
            Participant.completed_at.is_not(None),
        )
    ).all()
    durations = [(done - start).total_seconds() for start, done in rows]
    return round(statistics.median(durations), 1) if durations else None


def _playback(study: Study) -> dict[str, Any]:
    rows = db.session.execute(
        select(Response.failure_reason, func.count(), func.count(func.distinct(Response.participant_pk)))
        .join(Participant, Participant.id == Response.participant_pk)
        .where(Participant.study_pk == study.id, Response.playback_failed.is_(True))
        .group_by(Response.failure_reason)
    ).all()
    people = db.session.execute(
        select(func.count(func.distinct(Response.participant_pk)))
        .join(Participant, Participant.id == Response.participant_pk)
        .where(Participant.study_pk == study.id, Response.playback_failed.is_(True))
    ).scalar_one()
    given_up = db.session.execute(
        select(func.count())
        .select_from(Trial)
        .join(Participant, Participant.id == Trial.participant_pk)
        .where(Participant.study_pk == study.id, Trial.status == "failed")
    ).scalar_one()
    return {
        "failures": sum(r[1] for r in rows),
        "participants": people,
        "trials_given_up": given_up,
        "reasons": {reason or "playback": k for reason, k, _ in rows},
    }


def _conditions(study: Study) -> list[dict[str, Any]]:
    counts = cell_counts(study)
    rates = balance_targets(study)
    target_n = study.target_participants
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"cells": [], "rate": 0.0})
    for cell in sorted(set(rates) | set(counts)):
        g = groups[condition_of(cell)]
        g["cells"].append(counts.get(cell, 0))
        g["rate"] += rates.get(cell, 0.0)
    out = []
    for name, g in groups.items():
        cells = g["cells"]
        rate = g["rate"]
        out.append(
            {
                "condition": name,
                "trials": sum(cells),
                "cells": len(cells),
                "min_per_cell": min(cells),
                "max_per_cell": max(cells),
                "per_participant": round(rate, 3),
                "target": None if target_n is None else round(rate * target_n, 1),
                "target_per_cell": None if target_n is None else round(rate * target_n / len(cells), 2),
            }
        )
    return out


def summary(study: Study) -> dict[str, Any]:
    """Every figure of the dashboard, as plain JSON-able data."""
    n = participant_counts(study)
    target = study.target_participants
    return {
        "study": study.slug,
        "title": study.title,
        "study_type": study.study_type,
        "blocks": [b.study_type for b in study_blocks(study)],
        "status": study.status,
        "batch_id": study.batch.batch_id,
        "target_participants": target,
        "participants": n,
        "progress": None if not target else round(n["analysed"] / target, 4),
        "exclusions": _exclusions(study),
        "median_duration_s": _median_duration(study),
        "playback": _playback(study),
        "conditions": _conditions(study),
        "updated_at": utcnow().isoformat(timespec="seconds") + "Z",
    }


# ---- data quality ----------------------------------------------------------------------------------
FAST_MS = 250.0
"""An answer this soon after answering became possible is too fast to be a judgement of the clip."""
FAST_SHARE = 0.25
"""Flag a participant when at least this share of their analysed answers are too fast."""
SAME_SHARE = 0.9
"""Flag one side or one label position chosen on at least this share of a design's trials (at least MIN_TRIALS)."""
MIN_TRIALS = 6


def quality_flags(study: Study, only: Sequence[int] | None = None) -> dict[str, list[str]]:
    """Per participant (public id; non-pilot, analysed trials answered validly): what a researcher may want to
    look at before analysing, each one line. Flags, not exclusions: the screening decides those.

    * too fast: at least ``FAST_SHARE`` of answers under ``FAST_MS`` ms;
    * one side / one label position / one answer: naturalness left or right, deceitfulness the same label
      position, on at least ``SAME_SHARE`` of at least ``MIN_TRIALS`` trials; indistinguishability the same
      answer to every one (its answers are not positions, and 'unchanged' to most is what an invisible attack
      gives);
    * left the page: the tab was hidden during trials (the page logs ``hidden`` events).

    ``only``: just these participants (primary keys), e.g. those a page lists.
    """
    query = (
        select(Participant.public_id, Trial.design, Response.choice, Response.response_time_ms, Response.events)
        .join(Trial, Response.trial_pk == Trial.id)
        .join(Participant, Response.participant_pk == Participant.id)
        .where(*_counted(study), Trial.practice.is_(False), Response.valid.is_(True))
    )
    if only is not None:
        query = query.where(Participant.id.in_(list(only)))
    rows = db.session.execute(query).all()
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"rt": [], "choices": defaultdict(list), "hidden": 0})
    for pid, kind, choice, rt, events in rows:
        p = per[pid]
        if rt is not None:
            p["rt"].append(rt)
        p["choices"][kind].append(choice)
        p["hidden"] += sum(1 for e in events or [] if isinstance(e, dict) and e.get("type") == "hidden")
    out: dict[str, list[str]] = {}
    for pid, p in per.items():
        flags = []
        fast = sum(1 for rt in p["rt"] if rt < FAST_MS)
        if p["rt"] and fast / len(p["rt"]) >= FAST_SHARE:
            flags.append(f"too fast: {fast} of {len(p['rt'])} answers under {FAST_MS:g} ms")
        for kind, choices in sorted(p["choices"].items()):
            if len(choices) < MIN_TRIALS:
                continue
            top, k = max(((c, choices.count(c)) for c in set(choices)), key=lambda x: (x[1], str(x[0])))
            if kind == design.INDISTINGUISHABILITY:
                if k == len(choices):
                    flags.append(f"one answer: {top} to all {k} {kind} trials")
            elif k / len(choices) >= SAME_SHARE:
                what = "side" if kind == design.NATURALNESS else "label position"
                flags.append(f"one {what}: {top} on {k} of {len(choices)} {kind} trials")
        if p["hidden"]:
            flags.append(f"left the page {p['hidden']} time{'s' if p['hidden'] != 1 else ''} during trials")
        if flags:
            out[pid] = flags
    return out


# ---- charts (server-side SVG: no script, no library; the tables beside them hold the same figures) ----------
_W, _BAR_H, _GAP, _LABEL_W = 680, 22, 8, 240


def _svg(title: str, height: int, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {_W} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def bar_chart(title: str, bars: list[tuple[str, float, float | None]]) -> Markup:
    """Horizontal bars ``(label, value, target or None)``; a target is a tick on its bar's row."""
    top = max([1.0, *(v for _, v, _ in bars), *(t for _, _, t in bars if t is not None)])
    span = _W - _LABEL_W - 60
    body = []
    for i, (label, value, target) in enumerate(bars):
        y = i * (_BAR_H + _GAP)
        w = span * value / top
        body.append(
            f'<text x="{_LABEL_W - 8}" y="{y + 16}" text-anchor="end" class="label">{escape(label)}</text>'
            f'<rect x="{_LABEL_W}" y="{y}" width="{w:.1f}" height="{_BAR_H}" class="bar"/>'
            f'<text x="{_LABEL_W + w + 6:.1f}" y="{y + 16}" class="value">{value:g}</text>'
        )
        if target is not None:
            x = _LABEL_W + span * target / top
            body.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 2}" y2="{y + _BAR_H + 2}" class="target">'
                f"<title>target {target:g}</title></line>"
            )
    return _svg(title, max(1, len(bars)) * (_BAR_H + _GAP), body)


def line_chart(title: str, points: list[tuple[datetime, int]]) -> Markup:
    """A step line of a count over time (completions), with its first and last times and its total."""
    h, left, bottom = 180, 40, 30
    if not points:
        return _svg(title, 40, ['<text x="0" y="24" class="label">None yet.</text>'])
    t0, t1 = points[0][0], points[-1][0]
    dt = max((t1 - t0).total_seconds(), 1.0)
    top = max(n for _, n in points)
    xs = [left + (_W - left - 20) * (t - t0).total_seconds() / dt for t, _ in points]
    ys = [h - bottom - (h - bottom - 10) * n / top for _, n in points]
    path = f"M{left},{h - bottom} " + " ".join(
        f"L{x:.1f},{ys[i - 1] if i else h - bottom:.1f} L{x:.1f},{y:.1f}" for i, (x, y) in enumerate(zip(xs, ys))
    )
    body = [
        f'<line x1="{left}" x2="{_W - 20}" y1="{h - bottom}" y2="{h - bottom}" class="axis"/>',
        f'<path d="{path}" class="line"/>',
        f'<text x="{left}" y="{h - 8}" class="label">{t0:%Y-%m-%d %H:%M} UTC</text>',
        f'<text x="{_W - 20}" y="{h - 8}" text-anchor="end" class="label">{t1:%Y-%m-%d %H:%M} UTC</text>',
        f'<text x="{left - 6}" y="{ys[-1] + 4:.1f}" text-anchor="end" class="value">{top}</text>',
    ]
    return _svg(title, h, body)


def charts(study: Study, data: dict[str, Any]) -> dict[str, Markup]:
    """The dashboard's three charts from its figures (``data``: :func:`summary`) and the completion times."""
    done = db.session.execute(
        select(Participant.completed_at)
        .where(*_counted(study), Participant.status == "completed", Participant.completed_at.is_not(None))
        .order_by(Participant.completed_at)
    ).scalars()
    n = data["participants"]
    screening = [("Analysed", n["analysed"], None)]
    screening += [(f"Excluded: {e['reason']}", e["participants"], None) for e in data["exclusions"]]
    screening += [("In progress", n["in_progress"], None), ("Declined consent", n["declined"], None)]
    return {
        "completions": line_chart("Completions over time (cumulative)", [(t, i + 1) for i, t in enumerate(done)]),
        "screening": bar_chart("Participants by outcome", screening),
        "conditions": bar_chart(
            "Analysed trials per condition, against the target",
            [(c["condition"], c["trials"], c["target"]) for c in data["conditions"]],
        ),
    }
