"""What the views and the CLI do to the database: import batches, create studies, enrol, run the queue.

* :func:`import_batch` - validate a stimulus batch folder and record it (idempotent).
* :func:`create_study` - a study with every setting on its row (paper defaults; tests
  use short ones). Used by ``init-demo``, the tests and, later, the admin side.
* :func:`new_participant` / :func:`enrol` - a participation, then its whole trial
  sequence, decided from the participant's seed and the balance counts.
* :func:`current_state` - the current (and next, for preloading) trial as the page sees
  it: opaque attempt reference, media tokens, the options; nothing else.
* :func:`record_answer` - store one answer (or a playback failure) exactly once, and
  complete and screen the participant after the last one.

Functions that change the database commit their own transaction.
"""

from __future__ import annotations

import functools
import math
import re
import secrets
from pathlib import Path
from typing import Any
from typing import Mapping

from flask import url_for
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from stimuli.batch import MANIFEST
from stimuli.batch import check_batch
from stimuli.batch import load_batch
from stimuli.errors import DataError
from stimuli.errors import SmartStudyError
from stimuli.fileio import file_sha256

from . import design
from .extensions import db
from .models import Attempt
from .models import Batch
from .models import MediaToken
from .models import Participant
from .models import Response
from .models import Stimulus
from .models import Study
from .models import Trial
from .models import utcnow
from .screening import Answer
from .screening import screen

__all__ = [
    "StudyConfigError",
    "PAPER_DEFAULTS",
    "import_batch",
    "batch_files",
    "create_study",
    "cell_counts",
    "new_participant",
    "find_participant",
    "enrol",
    "current_state",
    "record_answer",
    "complete",
    "rescreen",
]

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

PAPER_DEFAULTS: dict[str, dict[str, int]] = {
    design.DECEITFULNESS: {"trials": 100, "plays": 1},
    design.NATURALNESS: {"trials": 100, "plays": 2},
    design.INDISTINGUISHABILITY: {"trials": 100, "plays": 1},
}
"""Trials per participant and plays per trial in the paper (SPEC §5): 100; 50 motions x 2, twice; 100."""


class StudyConfigError(SmartStudyError, ValueError):
    """A study cannot be created with these settings (the message names the setting and the value)."""


# ---- batches ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _load(root: str, manifest_sha256: str) -> Any:
    return load_batch(root)


def batch_files(batch: Batch) -> Any:
    """The :class:`stimuli.batch.Batch` of a recorded batch (loaded once per process)."""
    return _load(batch.root, batch.manifest_sha256)


def import_batch(root: str | Path, *, decode: bool = True) -> Batch:
    """Validate the batch at ``root`` (schema, hashes, and with ``decode`` every video) and record it.

    Importing the same batch again returns the existing row (its folder updated if it
    moved); a different batch with the same id raises :class:`DataError`.
    """
    root = Path(root).resolve()
    sb = check_batch(root, decode=decode)
    sha = file_sha256(root / MANIFEST)
    existing = db.session.execute(select(Batch).where(Batch.batch_id == sb.batch_id)).scalar_one_or_none()
    if existing is not None:
        if existing.manifest_sha256 != sha:
            raise DataError(f"{root}: batch id {sb.batch_id!r} was already imported with a different manifest")
        if existing.root != str(root):
            existing.root = str(root)
            db.session.commit()
        return existing
    first = sb.items[0]
    prov = sb.provenance
    batch = Batch(batch_id=sb.batch_id, root=str(root), manifest_sha256=sha,
                  dataset=_name(prov.dataset), model=_name(prov.model),
                  strategy=str(prov.attack.get("strategy")) if prov.attack.get("strategy") is not None else None,
                  n_items=len(sb.items), variants=sb.variant_roles(),
                  clip_seconds=float(first.variants[design.ORIGINAL].video.duration))  # fmt: skip
    for item in sb.items:
        for name, v in item.variants.items():
            batch.stimuli.append(Stimulus(item_id=item.id, key=name, video_path=v.video.path,
                                          video_bytes=v.video.bytes, poster_path=v.poster.path,
                                          duration=v.video.duration, width=v.video.width,
                                          height=v.video.height))  # fmt: skip
        for c in item.composites:
            batch.stimuli.append(Stimulus(item_id=item.id, key=f"{c.left}|{c.right}", left=c.left, right=c.right,
                                          video_path=c.video.path, video_bytes=c.video.bytes,
                                          poster_path=c.poster.path, duration=c.video.duration,
                                          width=c.video.width, height=c.video.height))  # fmt: skip
    db.session.add(batch)
    db.session.commit()
    return batch


def _name(d: Mapping[str, Any]) -> str | None:
    v = d.get("name")
    return None if v is None else str(v)[:128]


def _item_infos(sb: Any) -> list[design.ItemInfo]:
    out = []
    for it in sb.items:
        labels: dict[str, str | None] = {}
        success: dict[str, bool | None] = {}
        for name, v in it.variants.items():
            if v.role != "attack":
                continue
            label = v.final_label or it.attacked_label
            labels[name] = None if label is None else label.name
            success[name] = v.success
        out.append(design.ItemInfo(it.id, it.true_label.name, labels, success))
    return out


def _controls(sb: Any) -> list[str]:
    composites = sb.composite_plan.indistinguishability or ()
    return [n for n, r in sb.variant_roles().items() if r == "control" and n in composites]


def _ablations(sb: Any) -> list[str]:
    return [n for n in (sb.composite_plan.naturalness or ()) if n != design.SMART]


# ---- studies ---------------------------------------------------------------------------------
def _check(ok: bool, message: str) -> None:
    if not ok:
        raise StudyConfigError(message)


def _is_num(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int)


def create_study(
    slug: str,
    batch: Batch | str,
    study_type: str,
    *,
    title: str | None = None,
    trials: int | None = None,
    practice_trials: int = 2,
    plays: int | None = None,
    seconds: float | None = None,
    slowdown: float = 1.0,
    sensitivity_share: float = 0.2,
    control_share: float = 0.1,
    screening_threshold: float = 0.8,
    control_hit_threshold: float | None = None,
    stall_limit_s: float = 10.0,
    max_attempts: int = 3,
    variants: list[str] | None = None,
    allow_anonymous: bool = True,
    completion_code: str | None = None,
    target_participants: int | None = None,
    status: str = "open",
) -> Study:
    """Create (and commit) a study; bad settings raise :class:`StudyConfigError` naming the setting.

    ``batch`` is a recorded :class:`Batch` or its ``batch_id``. Defaults are the paper's
    (:data:`PAPER_DEFAULTS`; seconds: the batch's clip length). ``variants``: the attacked
    variant shown in deceitfulness (one) or indistinguishability (one or more),
    default ``["smart"]``; naturalness compares SMART with every ablation the batch's
    naturalness composites hold. Shares, thresholds and rates are fractions in [0, 1].
    """
    _check(isinstance(slug, str) and bool(SLUG.match(slug)),
           f"slug must be lower-case letters, digits and '-' (at most 64), got {slug!r}")  # fmt: skip
    _check(study_type in design.STUDY_TYPES, f"study_type must be one of {', '.join(design.STUDY_TYPES)}, "
                                             f"got {study_type!r}")  # fmt: skip
    if isinstance(batch, str):
        row = db.session.execute(select(Batch).where(Batch.batch_id == batch)).scalar_one_or_none()
        _check(row is not None, f"no imported batch with id {batch!r}")
        batch = row
    assert isinstance(batch, Batch)
    taken = db.session.execute(select(Study.id).where(Study.slug == slug)).first()
    _check(taken is None, f"a study with slug {slug!r} exists already")
    defaults = PAPER_DEFAULTS[study_type]
    trials = defaults["trials"] if trials is None else trials
    plays = defaults["plays"] if plays is None else plays
    seconds = batch.clip_seconds if seconds is None else seconds
    variants = [design.SMART] if variants is None else list(variants)
    _check(_is_int(trials) and trials >= 1, f"trials must be an integer >= 1, got {trials!r}")
    _check(_is_int(practice_trials) and practice_trials >= 0,
           f"practice_trials must be an integer >= 0, got {practice_trials!r}")  # fmt: skip
    _check(_is_int(plays) and 1 <= plays <= 10, f"plays must be an integer in 1..10, got {plays!r}")
    _check(_is_num(seconds) and 0 < seconds <= batch.clip_seconds + 1e-6,
           f"seconds must be > 0 and at most the batch's clip length {batch.clip_seconds:g}, got {seconds!r}")
    _check(_is_num(slowdown) and 1 / 16 <= slowdown <= 16, f"slowdown must be in 1/16..16, got {slowdown!r}")
    for name, v in (("sensitivity_share", sensitivity_share), ("control_share", control_share),
                    ("screening_threshold", screening_threshold)):  # fmt: skip
        _check(_is_num(v) and 0 <= v <= 1, f"{name} must be in [0, 1], got {v!r}")
    _check(control_hit_threshold is None or (_is_num(control_hit_threshold) and 0 <= control_hit_threshold <= 1),
           f"control_hit_threshold must be None or in [0, 1], got {control_hit_threshold!r}")
    _check(_is_num(stall_limit_s) and stall_limit_s > 0, f"stall_limit_s must be > 0, got {stall_limit_s!r}")
    _check(_is_int(max_attempts) and 1 <= max_attempts <= 10,
           f"max_attempts must be an integer in 1..10, got {max_attempts!r}")  # fmt: skip
    _check(completion_code is None or (isinstance(completion_code, str) and bool(CODE.match(completion_code))),
           f"completion_code must be letters, digits, '_' or '-', got {completion_code!r}")
    _check(target_participants is None or (_is_int(target_participants) and target_participants >= 1),
           f"target_participants must be None or an integer >= 1, got {target_participants!r}")
    _check(status in ("open", "closed"), f"status must be 'open' or 'closed', got {status!r}")
    roles = batch.variants
    for v in variants:
        _check(roles.get(v) == "attack", f"variant {v!r} is not an attacked variant of batch {batch.batch_id!r} "
                                         f"(attacked: {', '.join(n for n, r in roles.items() if r == 'attack')})")
    if study_type == design.DECEITFULNESS:
        _check(len(variants) == 1, f"deceitfulness shows one attacked variant, got {variants}")
    if study_type == design.NATURALNESS:
        _check(trials % 2 == 0, f"naturalness trials must be even (two per motion), got {trials}")
    if study_type == design.INDISTINGUISHABILITY:
        n_sens, n_ctrl, n_perc = design.split_counts(trials, [sensitivity_share, control_share]) if (
            sensitivity_share + control_share <= 1) else (0, 0, -1)  # fmt: skip
        _check(n_perc >= 1, f"sensitivity_share {sensitivity_share} and control_share {control_share} of "
                            f"{trials} trials leave no perceivability trial")  # fmt: skip
    study = Study(slug=slug, title=title or slug, study_type=study_type, batch=batch, status=status, trials=trials,
                  practice_trials=practice_trials, plays=plays, seconds=float(seconds), slowdown=float(slowdown),
                  sensitivity_share=float(sensitivity_share), control_share=float(control_share),
                  screening_threshold=float(screening_threshold),
                  control_hit_threshold=None if control_hit_threshold is None else float(control_hit_threshold),
                  stall_limit_s=float(stall_limit_s), max_attempts=max_attempts, variants=variants,
                  allow_anonymous=allow_anonymous, completion_code=completion_code,
                  target_participants=target_participants)  # fmt: skip
    try:
        plan(study, seed=0, counts={})  # the batch can serve this design
    except ValueError as e:
        if study in db.session:
            db.session.expunge(study)
        raise StudyConfigError(f"study {slug!r}: {e}") from None
    db.session.add(study)
    db.session.commit()
    return study


def plan(study: Study, seed: int, counts: Mapping[str, int]) -> list[design.TrialSpec]:
    """The trial sequence of a participant with this seed, given the balance counts."""
    sb = batch_files(study.batch)
    infos = _item_infos(sb)
    if study.study_type == design.DECEITFULNESS:
        return design.design_deceitfulness(infos, study.trials, study.practice_trials, counts, seed,
                                           study.variants[0])  # fmt: skip
    if study.study_type == design.NATURALNESS:
        return design.design_naturalness(infos, study.trials, study.practice_trials, counts, seed, _ablations(sb))
    return design.design_indistinguishability(infos, study.trials, study.practice_trials, counts, seed,
                                              study.variants, _controls(sb), study.sensitivity_share,
                                              study.control_share)  # fmt: skip


def cell_counts(study: Study) -> dict[str, int]:
    """Analysed trials answered validly per balancing cell, over completed, non-excluded participants."""
    rows = db.session.execute(
        select(Trial.cell, func.count())
        .join(Participant, Trial.participant_pk == Participant.id)
        .where(Participant.study_pk == study.id, Participant.status == "completed",
               Participant.excluded.is_(False), Trial.practice.is_(False), Trial.status == "done")
        .group_by(Trial.cell)
    ).all()  # fmt: skip
    return {cell: n for cell, n in rows}


# ---- participants ----------------------------------------------------------------------------
def find_participant(study: Study, platform: str, recruit_id: str) -> Participant | None:
    return db.session.execute(
        select(Participant).where(Participant.study_pk == study.id, Participant.platform == platform,
                                  Participant.recruit_id == recruit_id)
    ).scalar_one_or_none()  # fmt: skip


def new_participant(study: Study, platform: str, recruit_id: str, info: Mapping[str, Any]) -> Participant:
    """Record a new participation (commits); if the same recruiting id raced us here, return that one."""
    p = Participant(public_id=f"p-{secrets.token_hex(8)}", study=study, platform=platform, recruit_id=recruit_id,
                    recruit_info=dict(info), seed=secrets.randbits(62), status="consent")  # fmt: skip
    db.session.add(p)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = find_participant(study, platform, recruit_id)
        if existing is None:
            raise
        return existing
    return p


def enrol(p: Participant) -> None:
    """Decide the participant's whole sequence (seeded, balanced) and store it; consent given. Commits."""
    study = p.study
    specs = plan(study, p.seed, cell_counts(study))
    stimuli = {(s.item_id, s.key): s.id for s in db.session.execute(
        select(Stimulus).where(Stimulus.batch_pk == study.batch_pk)).scalars()}  # fmt: skip
    for i, s in enumerate(specs):
        db.session.add(Trial(participant=p, position=i, queue=i, status="pending", attempts=0, block=0,
                             practice=s.practice, design=s.design, kind=s.kind, cell=s.cell, item_id=s.item_id,
                             stimulus_pk=stimuli[(s.item_id, s.stimulus)], variant=s.variant,
                             left_variant=s.left_variant, right_variant=s.right_variant, true_label=s.true_label,
                             attacked_label=s.attacked_label, label_order=s.label_order,
                             naturalness_pair=s.naturalness_pair, plays=study.plays, seconds=study.seconds,
                             slowdown=study.slowdown))  # fmt: skip
    p.status = "about"
    p.consented_at = utcnow()
    db.session.commit()


# ---- the trial queue ---------------------------------------------------------------------------
def _pending(p: Participant, limit: int = 2) -> list[Trial]:
    return list(db.session.execute(
        select(Trial).where(Trial.participant_pk == p.id, Trial.status == "pending")
        .order_by(Trial.queue, Trial.position).limit(limit)).scalars())  # fmt: skip


def _open_attempt(trial: Trial) -> Attempt:
    """The trial's open attempt, or a new one with fresh media tokens."""
    last = trial.attempt_rows[-1] if trial.attempt_rows else None
    if last is not None and not last.closed:
        return last
    att = Attempt(trial=trial, participant_pk=trial.participant_pk, number=trial.attempts + 1,
                  ref=secrets.token_urlsafe(12), served=0, closed=False, created_at=utcnow())  # fmt: skip
    trial.attempts += 1
    for kind in ("video", "poster"):
        att.tokens.append(MediaToken(token=secrets.token_urlsafe(24), participant_pk=trial.participant_pk,
                                     stimulus_pk=trial.stimulus_pk, kind=kind, revoked=False))  # fmt: skip
    db.session.add(att)
    return att


def _media(att: Attempt) -> dict[str, str]:
    return {t.kind: url_for("media.serve", token=t.token) for t in att.tokens}


_OPTIONS = {
    design.NATURALNESS: [("left", "Left is more natural"), ("right", "Right is more natural"),
                         ("cant_tell", "Can't tell")],
    design.INDISTINGUISHABILITY: [("changed", "Changed"), ("unchanged", "Unchanged")],
}  # fmt: skip
_PROMPTS = {
    design.DECEITFULNESS: "Which label describes the motion best?",
    design.NATURALNESS: "Which motion looks more natural?",
    design.INDISTINGUISHABILITY: "Is the clip on the right changed compared with the original on the left?",
}


def _options(t: Trial) -> list[dict[str, str]]:
    if t.design == design.DECEITFULNESS:
        labels = {"true": t.true_label, "attacked": t.attacked_label or ""}
        pairs = [(str(i + 1), labels[k]) for i, k in enumerate((t.label_order or "true,attacked").split(","))]
    else:
        pairs = _OPTIONS[t.design]
    return [{"value": v, "label": text, "key": str(i + 1)} for i, (v, text) in enumerate(pairs)]


def _progress(p: Participant) -> dict[str, int]:
    rows = db.session.execute(
        select(Trial.practice, Trial.status, func.count())
        .where(Trial.participant_pk == p.id).group_by(Trial.practice, Trial.status)
    ).all()  # fmt: skip
    n = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for practice, status, c in rows:
        n[(bool(practice), status == "pending")] += c
    return {"practice_done": n[(True, False)], "practice_total": n[(True, False)] + n[(True, True)],
            "done": n[(False, False)], "total": n[(False, False)] + n[(False, True)]}


def current_state(p: Participant) -> dict[str, Any]:
    """The page's view of where the participant is (commits the attempts it opens).

    ``{"status": "trial", ...}`` with the current trial's opaque ``attempt`` reference,
    its media URLs and options, and the next trial's media to preload; or
    ``{"status": "done", "url": ...}``.
    """
    for _ in range(3):
        try:
            return _state(p)
        except IntegrityError:  # a concurrent request opened the same attempt: read it again
            db.session.rollback()
    return _state(p)


def _state(p: Participant) -> dict[str, Any]:
    if p.status == "completed":
        return {"status": "done", "url": url_for("participant.done", slug=p.study.slug)}
    pending = _pending(p, 2)
    if not pending:  # nothing left (e.g. the last trial failed every attempt): finish now
        complete(p)
        db.session.commit()
        return {"status": "done", "url": url_for("participant.done", slug=p.study.slug)}
    cur = pending[0]
    att = _open_attempt(cur)
    att.served += 1
    if att.shown_at is None:
        att.shown_at = utcnow()
    nxt = _open_attempt(pending[1]) if len(pending) > 1 else None
    db.session.flush()
    prog = _progress(p)
    state: dict[str, Any] = {
        "status": "trial",
        "attempt": att.ref,
        "phase": "practice" if cur.practice else "main",
        "progress": prog,
        "question": cur.design,
        "prompt": _PROMPTS[cur.design],
        "options": _options(cur),
        "layout": "single" if cur.design == design.DECEITFULNESS else "pair",
        "captions": {design.DECEITFULNESS: [], design.NATURALNESS: ["Left", "Right"],
                     design.INDISTINGUISHABILITY: ["Original", "Compare"]}[cur.design],  # fmt: skip
        "video": _media(att)["video"],
        "poster": _media(att)["poster"],
        "plays": cur.plays,
        "seconds": cur.seconds,
        "rate": 1.0 / cur.slowdown,
        "stall_limit_s": p.study.stall_limit_s,
        "notice": "practice-over" if (not cur.practice and prog["practice_total"] and prog["done"] == 0) else None,
        "next": None if nxt is None else {"video": _media(nxt)["video"], "poster": _media(nxt)["poster"]},
    }
    db.session.commit()
    return state


# ---- answers -----------------------------------------------------------------------------------
class AnswerRejected(Exception):
    """The answer cannot be stored: ``status`` (HTTP) and a message for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _decode(t: Trial, choice: str) -> str:
    values = [o["value"] for o in _options(t)]
    if choice not in values:
        raise AnswerRejected(400, f"answer must be one of {', '.join(values)}")
    if t.design == design.DECEITFULNESS:
        order = (t.label_order or "true,attacked").split(",")
        return f"{order[int(choice) - 1]}_label"
    return choice


def _same(r: Response, data: Mapping[str, Any]) -> bool:
    return r.idempotency_key == data["key"] and r.choice == data.get("answer")


def record_answer(p: Participant, data: Mapping[str, Any]) -> dict[str, Any]:
    """Store one answer (``data``: validated payload) in its own transaction; returns the stored result.

    A retry (same attempt, same key and answer) returns the stored result again; a
    different answer to an answered attempt, an attempt that is not the current one, or
    one of a finished participant raises :class:`AnswerRejected` (409); an unknown
    attempt, or another participant's, 404.
    """
    att = db.session.execute(select(Attempt).where(Attempt.ref == data["attempt"])).scalar_one_or_none()
    if att is None or att.participant_pk != p.id:
        raise AnswerRejected(404, "no such trial")
    existing = db.session.execute(select(Response).where(Response.attempt_pk == att.id)).scalar_one_or_none()
    if existing is not None:
        if _same(existing, data):
            return existing.result
        raise AnswerRejected(409, "this trial has already been answered")
    if p.status != "trials":
        raise AnswerRejected(409, "the study is not at the trials stage")
    pending = _pending(p, 1)
    trial = att.trial
    if not pending or pending[0].id != trial.id or att.closed:
        raise AnswerRejected(409, "not the current trial")
    failed = bool(data.get("playback_failed"))
    choice = None if failed else data.get("answer")
    if not failed:
        if not isinstance(choice, str):
            raise AnswerRejected(400, "answer missing")
        answer = _decode(trial, choice)
        if data.get("rt_ms") is None:
            raise AnswerRejected(400, "rt_ms missing")
    else:
        answer = None
    att_id = att.id
    try:
        return _store(p, trial, att, data, failed, choice, answer)
    except IntegrityError:  # a concurrent request stored this attempt first
        db.session.rollback()
        existing = db.session.execute(select(Response).where(Response.attempt_pk == att_id)).scalar_one_or_none()
        if existing is not None and _same(existing, data):
            return existing.result
        raise AnswerRejected(409, "this trial has already been answered") from None


def _store(p: Participant, trial: Trial, att: Attempt, data: Mapping[str, Any], failed: bool, choice: str | None,
           answer: str | None) -> dict[str, Any]:  # fmt: skip
    """Write the answer, move the queue on, complete the participant after the last trial; commit."""
    study = p.study
    retry = failed and not trial.practice and trial.attempts < study.max_attempts
    if not failed:
        trial.status = "done"
    elif retry:  # given again later: to the end of the queue, with a new attempt and new tokens
        last = db.session.execute(select(func.max(Trial.queue)).where(Trial.participant_pk == p.id)).scalar_one()
        trial.queue = int(last) + 1
    else:
        trial.status = "failed"
    att.closed = True
    db.session.execute(update(MediaToken).where(MediaToken.attempt_pk == att.id).values(revoked=True))
    events = list(data.get("events") or [])
    events.append({"type": "server-served", "n": att.served})
    resp = Response(participant_pk=p.id, trial_pk=trial.id, attempt=att.number, attempt_pk=att.id,
                    idempotency_key=data["key"], choice=choice, answer=answer, valid=not failed,
                    playback_failed=failed, failure_reason=(data.get("reason") or "playback") if failed else None,
                    response_time_ms=None if failed else float(data["rt_ms"]), events=events,
                    client=dict(data.get("client") or {}), shown_at=att.shown_at, answered_at=utcnow(),
                    result={})  # fmt: skip
    db.session.add(resp)
    db.session.flush()
    done = not _pending(p, 1)
    if done:
        complete(p)
    resp.result = {"stored": True, "valid": not failed, "retry": retry, "done": done,
                   "redirect": url_for("participant.done", slug=study.slug) if done else None}  # fmt: skip
    db.session.commit()
    return resp.result


# ---- completion and screening ------------------------------------------------------------------
def _screen(p: Participant) -> None:
    study = p.study
    if study.study_type != design.INDISTINGUISHABILITY:
        p.excluded, p.exclusion_reason, p.screening = False, None, {}
        return
    rows = db.session.execute(
        select(Trial.kind, Response.answer)
        .join(Response, Response.trial_pk == Trial.id)
        .where(Trial.participant_pk == p.id, Trial.practice.is_(False), Response.valid.is_(True))
    ).all()  # fmt: skip
    s = screen([Answer(kind, ans == "changed") for kind, ans in rows], study.screening_threshold,
               study.control_hit_threshold)  # fmt: skip
    p.excluded, p.exclusion_reason, p.screening = s.excluded, s.reason, s.stats


def complete(p: Participant) -> None:
    """Mark the participant completed and screen them (in the caller's transaction)."""
    p.status = "completed"
    p.completed_at = utcnow()
    _screen(p)


def rescreen(study: Study) -> dict[str, int]:
    """Screen every completed participant of ``study`` again with its current thresholds; commits."""
    n = excluded = 0
    for p in db.session.execute(select(Participant).where(Participant.study_pk == study.id,
                                                          Participant.status == "completed")).scalars():  # fmt: skip
        _screen(p)
        n += 1
        excluded += p.excluded
    db.session.commit()
    return {"completed": n, "excluded": excluded, "analysed": n - excluded}
