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
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path
from typing import Any
from typing import Mapping
from typing import Sequence

from flask import current_app
from flask import url_for
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from stimuli.batch import MANIFEST
from stimuli.batch import check_batch
from stimuli.batch import load_batch
from stimuli.errors import DataError
from stimuli.errors import SmartStudyError
from stimuli.fileio import file_sha256
from stimuli.labels import display_name
from stimuli.screening import SENSITIVITY_THRESHOLD
from stimuli.screening import Answer
from stimuli.screening import screen

from . import design
from .extensions import db
from .models import Attempt
from .models import AuditEvent
from .models import Batch
from .models import MediaToken
from .models import Participant
from .models import Response
from .models import Stimulus
from .models import Study
from .models import Trial
from .models import utcnow

__all__ = [
    "StudyConfigError",
    "PAPER_DEFAULTS",
    "Block",
    "study_blocks",
    "ImportResult",
    "import_batch",
    "import_batch_result",
    "batch_files",
    "create_study",
    "cell_counts",
    "new_participant",
    "find_participant",
    "enrol",
    "current_state",
    "record_answer",
    "complete",
    "balance_targets",
    "audit",
    "withdraw",
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
    """A study cannot be created with these settings (the message names the setting and the value).

    ``field`` is the setting's name (e.g. ``"trials"``) when one setting is at fault, and
    ``block`` the index of the block it belongs to in a combined session.
    """

    def __init__(self, message: str, field: str | None = None, block: int | None = None):
        super().__init__(message)
        self.field = field
        self.block = block


@dataclass(frozen=True)
class Block:
    """One block of a session: a design and its trial settings (a single-design study has one)."""

    study_type: str
    trials: int
    practice_trials: int
    plays: int
    seconds: float
    slowdown: float
    variants: tuple[str, ...]
    sensitivity_share: float
    control_share: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["variants"] = list(self.variants)
        return d


def study_blocks(study: Study) -> list[Block]:
    """The blocks of ``study`` in order: its ``blocks`` column, or one block from its own settings."""
    if study.blocks:
        return [Block(**{**b, "variants": tuple(b["variants"])}) for b in study.blocks]
    return [
        Block(
            study.study_type,
            study.trials,
            study.practice_trials,
            study.plays,
            study.seconds,
            study.slowdown,
            tuple(study.variants),
            study.sensitivity_share,
            study.control_share,
        )
    ]


# ---- batches ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _load(root: str, manifest_sha256: str) -> Any:
    return load_batch(root)


def batch_files(batch: Batch) -> Any:
    """The :class:`stimuli.batch.Batch` of a recorded batch (loaded once per process)."""
    return _load(batch.root, batch.manifest_sha256)


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_batch_result` did: ``created`` (new rows), ``moved`` (a known batch's folder changed)."""

    batch: Batch
    created: bool
    moved: bool
    stimuli: int

    @property
    def message(self) -> str:
        b = self.batch
        if self.created:
            return f"imported batch {b.batch_id!r}: {b.n_items} motions, {self.stimuli} videos"
        if self.moved:
            return f"batch {b.batch_id!r} was already imported; only its folder changed, to {b.root}"
        return f"batch {b.batch_id!r} was already imported: nothing changed"

    def to_dict(self) -> dict[str, Any]:
        b = self.batch
        return {
            "batch_id": b.batch_id,
            "root": b.root,
            "created": self.created,
            "moved": self.moved,
            "items": b.n_items,
            "stimuli": self.stimuli,
            "variants": b.variants,
            "dataset": b.dataset,
            "model": b.model,
            "strategy": b.strategy,
        }


def import_batch(root: str | Path, *, decode: bool = True) -> Batch:
    """Validate the batch at ``root`` and record it; see :func:`import_batch_result`."""
    return import_batch_result(root, decode=decode).batch


def import_batch_result(root: str | Path, *, decode: bool = True) -> ImportResult:
    """Validate the batch at ``root`` (schema, hashes, and with ``decode`` every video) and record it.

    Everything is written in one transaction (the batch and all its stimuli, or nothing).
    Importing the same batch again changes nothing (only its folder, if it moved); a
    different batch with the same id raises :class:`DataError`; an invalid one
    :class:`stimuli.batch.BatchError` listing every problem.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    sb = check_batch(root, decode=decode)
    sha = file_sha256(root / MANIFEST)
    existing = db.session.execute(select(Batch).where(Batch.batch_id == sb.batch_id)).scalar_one_or_none()
    if existing is not None:
        if existing.manifest_sha256 != sha:
            raise DataError(f"{root}: batch id {sb.batch_id!r} was already imported with a different manifest")
        n = db.session.execute(
            select(func.count()).select_from(Stimulus).where(Stimulus.batch_pk == existing.id)
        ).scalar_one()
        moved = existing.root != str(root)
        if moved:
            existing.root = str(root)
            db.session.commit()
        return ImportResult(existing, False, moved, n)
    first = sb.items[0]
    prov = sb.provenance
    batch = Batch(
        batch_id=sb.batch_id,
        root=str(root),
        manifest_sha256=sha,
        dataset=_name(prov.dataset),
        model=_name(prov.model),
        strategy=str(prov.attack.get("strategy")) if prov.attack.get("strategy") is not None else None,
        n_items=len(sb.items),
        variants=sb.variant_roles(),
        label_names=_label_names(sb),
        clip_seconds=float(first.variants[design.ORIGINAL].video.duration),
    )
    for item in sb.items:
        for name, v in item.variants.items():
            batch.stimuli.append(
                Stimulus(
                    item_id=item.id,
                    key=name,
                    video_path=v.video.path,
                    video_bytes=v.video.bytes,
                    poster_path=v.poster.path,
                    duration=v.video.duration,
                    width=v.video.width,
                    height=v.video.height,
                )
            )
        for c in item.composites:
            batch.stimuli.append(
                Stimulus(
                    item_id=item.id,
                    key=f"{c.left}|{c.right}",
                    left=c.left,
                    right=c.right,
                    video_path=c.video.path,
                    video_bytes=c.video.bytes,
                    poster_path=c.poster.path,
                    duration=c.video.duration,
                    width=c.video.width,
                    height=c.video.height,
                )
            )
    db.session.add(batch)
    try:
        db.session.commit()
    except IntegrityError:  # imported concurrently by someone else: theirs stands
        db.session.rollback()
        return import_batch_result(root, decode=False)
    return ImportResult(batch, True, False, len(batch.stimuli))


def _label_names(sb: Any) -> dict[str, str]:
    """Class name -> display text of every label the batch's items carry."""
    out: dict[str, str] = {}
    for it in sb.items:
        labels = [it.true_label, it.attacked_label, *(v.final_label for v in it.variants.values())]
        for lab in labels:
            if lab is not None:
                out.setdefault(lab.name, lab.text)
    return out


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
def _check(ok: bool, message: str, field: str | None = None, block: int | None = None) -> None:
    if not ok:
        raise StudyConfigError(message, field, block)


def _is_num(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int)


BLOCK_SETTINGS = (
    "trials",
    "practice_trials",
    "plays",
    "seconds",
    "slowdown",
    "variants",
    "sensitivity_share",
    "control_share",
)
"""Settings a block of a combined session may set for itself (the rest are the study's)."""


def _block(
    batch: Batch,
    study_type: Any,
    *,
    trials: Any,
    practice_trials: Any,
    plays: Any,
    seconds: Any,
    slowdown: Any,
    variants: Any,
    sensitivity_share: Any,
    control_share: Any,
    index: int | None = None,
) -> Block:
    """One block's settings, checked (paper defaults filled in); ``index`` set for a block of a combined session."""
    where = "" if index is None else f"block {index + 1} ({study_type}): "

    def check(ok: bool, message: str, field: str | None = None) -> None:
        _check(ok, where + message, field, index)

    check(
        study_type in design.STUDY_TYPES,
        f"study_type must be one of {', '.join(design.STUDY_TYPES)}"
        f"{'' if index is not None else ' or ' + design.COMBINED}, "
        f"got {study_type!r}",
        "study_type",
    )
    defaults = PAPER_DEFAULTS[study_type]
    trials = defaults["trials"] if trials is None else trials
    plays = defaults["plays"] if plays is None else plays
    seconds = batch.clip_seconds if seconds is None else seconds
    slowdown = 1.0 if slowdown is None else slowdown
    variants = [design.SMART] if variants is None else variants
    check(_is_int(trials) and trials >= 1, f"trials must be an integer >= 1, got {trials!r}", "trials")
    check(
        _is_int(practice_trials) and practice_trials >= 0,
        f"practice_trials must be an integer >= 0, got {practice_trials!r}",
        "practice_trials",
    )
    check(_is_int(plays) and 1 <= plays <= 10, f"plays must be an integer in 1..10, got {plays!r}", "plays")
    check(
        _is_num(seconds) and 0 < seconds <= batch.clip_seconds + 1e-6,
        f"seconds must be > 0 and at most the batch's clip length {batch.clip_seconds:g}, got {seconds!r}",
        "seconds",
    )
    check(_is_num(slowdown) and 1 / 16 <= slowdown <= 16, f"slowdown must be in 1/16..16, got {slowdown!r}", "slowdown")
    for name, v in (("sensitivity_share", sensitivity_share), ("control_share", control_share)):
        check(_is_num(v) and 0 <= v <= 1, f"{name} must be in [0, 1], got {v!r}", name)
    check(
        isinstance(variants, (list, tuple)) and bool(variants) and all(isinstance(v, str) for v in variants),
        f"variants must be a non-empty list of variant names, got {variants!r}",
        "variants",
    )
    roles = batch.variants
    for v in variants:
        check(
            roles.get(v) == "attack",
            f"variant {v!r} is not an attacked variant of batch {batch.batch_id!r} "
            f"(attacked: {', '.join(n for n, r in roles.items() if r == 'attack')})",
            "variants",
        )
    if study_type == design.DECEITFULNESS:
        check(len(variants) == 1, f"deceitfulness shows one attacked variant, got {list(variants)}", "variants")
    if study_type == design.NATURALNESS:
        check(trials % 2 == 0, f"naturalness trials must be even (two per motion), got {trials}", "trials")
    if study_type == design.INDISTINGUISHABILITY:
        n_sens, n_ctrl, n_perc = (
            design.split_counts(trials, [sensitivity_share, control_share])
            if (sensitivity_share + control_share <= 1)
            else (0, 0, -1)
        )
        check(
            n_perc >= 1,
            f"sensitivity_share {sensitivity_share} and control_share {control_share} of "
            f"{trials} trials leave no perceivability trial",
            "sensitivity_share",
        )
    return Block(
        study_type,
        trials,
        practice_trials,
        plays,
        float(seconds),
        float(slowdown),
        tuple(variants),
        float(sensitivity_share),
        float(control_share),
    )


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
    screening_threshold: float = SENSITIVITY_THRESHOLD,
    control_hit_threshold: float | None = None,
    stall_limit_s: float = 10.0,
    max_attempts: int = 3,
    variants: list[str] | None = None,
    allow_anonymous: bool = True,
    completion_code: str | None = None,
    target_participants: int | None = None,
    status: str = "open",
    prolific_redirect: bool = True,
    blocks: Sequence[Mapping[str, Any]] | None = None,
) -> Study:
    """Create (and commit) a study; bad settings raise :class:`StudyConfigError` naming the setting.

    ``batch`` is a recorded :class:`Batch` or its ``batch_id``. Defaults are the paper's
    (:data:`PAPER_DEFAULTS`; seconds: the batch's clip length). ``variants``: the attacked
    variant shown in deceitfulness (one) or indistinguishability (one or more),
    default ``["smart"]``; naturalness compares SMART with every ablation the batch's
    naturalness composites hold. Shares, thresholds and rates are fractions in [0, 1].

    ``study_type="combined"``: a session of ``blocks`` run in order, each a mapping with
    ``study_type`` and any of :data:`BLOCK_SETTINGS` (missing ones: the paper's defaults
    for that design, else the arguments given here), each with its own instructions.
    Screening uses the indistinguishability block's trials.
    """
    _check(
        isinstance(slug, str) and bool(SLUG.match(slug)),
        f"slug must be lower-case letters, digits and '-' (at most 64), got {slug!r}",
        "slug",
    )
    _check(
        study_type in design.DESIGNS,
        f"study_type must be one of {', '.join(design.DESIGNS)}, got {study_type!r}",
        "study_type",
    )
    _check(
        title is None or (isinstance(title, str) and len(title) <= 200), "title must be at most 200 characters", "title"
    )
    if isinstance(batch, str):
        row = db.session.execute(select(Batch).where(Batch.batch_id == batch)).scalar_one_or_none()
        _check(row is not None, f"no imported batch with id {batch!r}", "batch")
        batch = row
    assert isinstance(batch, Batch)
    taken = db.session.execute(select(Study.id).where(Study.slug == slug)).first()
    _check(taken is None, f"a study with slug {slug!r} exists already", "slug")
    shared = {
        "practice_trials": practice_trials,
        "seconds": seconds,
        "slowdown": slowdown,
        "variants": variants,
        "sensitivity_share": sensitivity_share,
        "control_share": control_share,
    }
    if study_type == design.COMBINED:
        _check(blocks is not None and len(blocks) >= 1, "a combined session needs at least one block", "blocks")
        assert blocks is not None
        made = []
        for i, b in enumerate(blocks):
            unknown = sorted(set(b) - {"study_type", *BLOCK_SETTINGS})
            _check(not unknown, f"block {i + 1}: unknown setting(s) {', '.join(unknown)}", "blocks", i)
            settings = {**shared, "trials": None, "plays": None, **{k: v for k, v in b.items() if k != "study_type"}}
            made.append(_block(batch, b.get("study_type"), index=i, **settings))
    else:
        _check(blocks is None, "blocks are for combined sessions only", "blocks")
        made = [_block(batch, study_type, trials=trials, plays=plays, **shared)]
    for name, v in (("screening_threshold", screening_threshold),):
        _check(_is_num(v) and 0 <= v <= 1, f"{name} must be in [0, 1], got {v!r}", name)
    _check(
        control_hit_threshold is None or (_is_num(control_hit_threshold) and 0 <= control_hit_threshold <= 1),
        f"control_hit_threshold must be None or in [0, 1], got {control_hit_threshold!r}",
        "control_hit_threshold",
    )
    _check(
        _is_num(stall_limit_s) and stall_limit_s > 0,
        f"stall_limit_s must be > 0, got {stall_limit_s!r}",
        "stall_limit_s",
    )
    _check(
        _is_int(max_attempts) and 1 <= max_attempts <= 10,
        f"max_attempts must be an integer in 1..10, got {max_attempts!r}",
        "max_attempts",
    )
    _check(
        completion_code is None or (isinstance(completion_code, str) and bool(CODE.match(completion_code))),
        f"completion_code must be letters, digits, '_' or '-', got {completion_code!r}",
        "completion_code",
    )
    _check(
        target_participants is None or (_is_int(target_participants) and target_participants >= 1),
        f"target_participants must be None or an integer >= 1, got {target_participants!r}",
        "target_participants",
    )
    _check(status in ("open", "closed"), f"status must be 'open' or 'closed', got {status!r}", "status")
    first = made[0]
    indist = next((b for b in made if b.study_type == design.INDISTINGUISHABILITY), first)
    study = Study(
        slug=slug,
        title=title or slug,
        study_type=study_type,
        batch=batch,
        status=status,
        trials=sum(b.trials for b in made),
        practice_trials=sum(b.practice_trials for b in made),
        plays=first.plays,
        seconds=first.seconds,
        slowdown=first.slowdown,
        sensitivity_share=indist.sensitivity_share,
        control_share=indist.control_share,
        screening_threshold=float(screening_threshold),
        control_hit_threshold=None if control_hit_threshold is None else float(control_hit_threshold),
        stall_limit_s=float(stall_limit_s),
        max_attempts=max_attempts,
        variants=list(dict.fromkeys(v for b in made for v in b.variants)),
        allow_anonymous=bool(allow_anonymous),
        completion_code=completion_code,
        target_participants=target_participants,
        prolific_redirect=bool(prolific_redirect),
        blocks=[b.to_dict() for b in made] if study_type == design.COMBINED else None,
    )
    try:
        plan(study, seed=0, counts={})  # the batch can serve this design
    except ValueError as e:
        if study in db.session:
            db.session.expunge(study)
        raise StudyConfigError(f"study {slug!r}: {e}") from None
    db.session.add(study)
    db.session.commit()
    return study


@dataclass(frozen=True)
class Planned:
    """One planned trial of a participant's sequence: its block and its :class:`design.TrialSpec`."""

    block: int
    settings: Block
    spec: design.TrialSpec


def _block_prefix(study: Study, index: int) -> str:
    """Cells of a combined session's blocks are kept apart by a prefix (``b0:``); none for single designs."""
    return f"b{index}:" if study.blocks else ""


def _plan_block(sb: Any, b: Block, seed: int | str, counts: Mapping[str, int]) -> list[design.TrialSpec]:
    infos = _item_infos(sb)
    if b.study_type == design.DECEITFULNESS:
        return design.design_deceitfulness(infos, b.trials, b.practice_trials, counts, seed, b.variants[0])
    if b.study_type == design.NATURALNESS:
        return design.design_naturalness(infos, b.trials, b.practice_trials, counts, seed, _ablations(sb))
    return design.design_indistinguishability(
        infos,
        b.trials,
        b.practice_trials,
        counts,
        seed,
        list(b.variants),
        _controls(sb),
        b.sensitivity_share,
        b.control_share,
    )


def plan(study: Study, seed: int, counts: Mapping[str, int]) -> list[Planned]:
    """The trial sequence of a participant with this seed, given the balance counts: block after block."""
    sb = batch_files(study.batch)
    out: list[Planned] = []
    for i, b in enumerate(study_blocks(study)):
        prefix = _block_prefix(study, i)
        if prefix:
            mine = {c[len(prefix) :]: n for c, n in counts.items() if c.startswith(prefix)}
            specs = _plan_block(sb, b, f"{seed}/b{i}", mine)
            specs = [replace(s, cell=prefix + s.cell) for s in specs]
        else:
            specs = _plan_block(sb, b, seed, counts)
        out.extend(Planned(i, b, s) for s in specs)
    return out


def balance_targets(study: Study) -> dict[str, float]:
    """Expected analysed trials per balancing cell for each usable participant (times the target: the goal)."""
    sb = batch_files(study.batch)
    infos = _item_infos(sb)
    out: dict[str, float] = {}
    for i, b in enumerate(study_blocks(study)):
        prefix = _block_prefix(study, i)
        rates = design.cell_rates(
            b.study_type,
            infos,
            b.trials,
            variants=b.variants,
            ablations=_ablations(sb),
            controls=_controls(sb),
            sensitivity_share=b.sensitivity_share,
            control_share=b.control_share,
        )
        out.update({prefix + c: r for c, r in rates.items()})
    return out


def cell_counts(study: Study) -> dict[str, int]:
    """Analysed trials answered validly per balancing cell, over completed, non-excluded participants."""
    rows = db.session.execute(
        select(Trial.cell, func.count())
        .join(Participant, Trial.participant_pk == Participant.id)
        .where(
            Participant.study_pk == study.id,
            Participant.status == "completed",
            Participant.excluded.is_(False),
            Trial.practice.is_(False),
            Trial.status == "done",
        )
        .group_by(Trial.cell)
    ).all()
    return {cell: n for cell, n in rows}


# ---- participants ----------------------------------------------------------------------------
def find_participant(study: Study, platform: str, recruit_id: str) -> Participant | None:
    return db.session.execute(
        select(Participant).where(
            Participant.study_pk == study.id, Participant.platform == platform, Participant.recruit_id == recruit_id
        )
    ).scalar_one_or_none()


def new_participant(study: Study, platform: str, recruit_id: str, info: Mapping[str, Any]) -> Participant:
    """Record a new participation (commits); if the same recruiting id raced us here, return that one."""
    p = Participant(
        public_id=f"p-{secrets.token_hex(8)}",
        study=study,
        platform=platform,
        recruit_id=recruit_id,
        recruit_info=dict(info),
        seed=secrets.randbits(62),
        status="consent",
    )
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
    planned = plan(study, p.seed, cell_counts(study))
    stimuli = {
        (s.item_id, s.key): s.id
        for s in db.session.execute(select(Stimulus).where(Stimulus.batch_pk == study.batch_pk)).scalars()
    }
    for i, x in enumerate(planned):
        s, b = x.spec, x.settings
        db.session.add(
            Trial(
                participant=p,
                position=i,
                queue=i,
                status="pending",
                attempts=0,
                block=x.block,
                practice=s.practice,
                design=s.design,
                kind=s.kind,
                cell=s.cell,
                item_id=s.item_id,
                stimulus_pk=stimuli[(s.item_id, s.stimulus)],
                variant=s.variant,
                left_variant=s.left_variant,
                right_variant=s.right_variant,
                true_label=s.true_label,
                attacked_label=s.attacked_label,
                label_order=s.label_order,
                naturalness_pair=s.naturalness_pair,
                plays=b.plays,
                seconds=b.seconds,
                slowdown=b.slowdown,
            )
        )
    p.status = "about"
    p.block = 0
    p.consented_at = utcnow()
    db.session.commit()


# ---- the trial queue ---------------------------------------------------------------------------
def _pending(p: Participant, limit: int = 2) -> list[Trial]:
    """The next pending trials in presentation order: block by block, then by queue (a failed trial is
    given again at the end of its block)."""
    return list(
        db.session.execute(
            select(Trial)
            .where(Trial.participant_pk == p.id, Trial.status == "pending")
            .order_by(Trial.block, Trial.queue, Trial.position)
            .limit(limit)
        ).scalars()
    )


def _open_attempt(trial: Trial) -> Attempt:
    """The trial's open attempt, or a new one with fresh media tokens."""
    last = trial.attempt_rows[-1] if trial.attempt_rows else None
    if last is not None and not last.closed:
        return last
    att = Attempt(
        trial=trial,
        participant_pk=trial.participant_pk,
        number=trial.attempts + 1,
        ref=secrets.token_urlsafe(12),
        served=0,
        closed=False,
        created_at=utcnow(),
    )
    trial.attempts += 1
    for kind in ("video", "poster"):
        att.tokens.append(
            MediaToken(
                token=secrets.token_urlsafe(24),
                participant_pk=trial.participant_pk,
                stimulus_pk=trial.stimulus_pk,
                kind=kind,
                revoked=False,
            )
        )
    db.session.add(att)
    return att


def _media(att: Attempt) -> dict[str, str]:
    return {t.kind: url_for("media.serve", token=t.token) for t in att.tokens}


_OPTIONS = {
    design.NATURALNESS: [
        ("left", "Left is more natural"),
        ("right", "Right is more natural"),
        ("cant_tell", "Can't tell"),
    ],
    design.INDISTINGUISHABILITY: [("changed", "Changed"), ("unchanged", "Unchanged")],
}
_PROMPTS = {
    design.DECEITFULNESS: "Which label describes the motion best?",
    design.NATURALNESS: "Which motion looks more natural?",
    design.INDISTINGUISHABILITY: "Is the clip on the right changed compared with the original on the left?",
}


def _options(t: Trial | Row[Any], names: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """The answer options of a trial; ``names``: class name -> the words shown (Deceitfulness labels)."""
    if t.design == design.DECEITFULNESS:
        names = names or {}
        labels = {
            k: names.get(v) or display_name(v) if v else ""
            for k, v in (("true", t.true_label), ("attacked", t.attacked_label))
        }
        pairs = [(str(i + 1), labels[k]) for i, k in enumerate((t.label_order or "true,attacked").split(","))]
    else:
        pairs = _OPTIONS[t.design]
    return [{"value": v, "label": text, "key": str(i + 1)} for i, (v, text) in enumerate(pairs)]


def _progress(p: Participant, block: int) -> dict[str, int]:
    """Practice and analysed trials done and in all, within the current block."""
    rows = db.session.execute(
        select(Trial.practice, Trial.status, func.count())
        .where(Trial.participant_pk == p.id, Trial.block == block)
        .group_by(Trial.practice, Trial.status)
    ).all()
    n = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for practice, status, c in rows:
        n[(bool(practice), status == "pending")] += c
    return {
        "practice_done": n[(True, False)],
        "practice_total": n[(True, False)] + n[(True, True)],
        "done": n[(False, False)],
        "total": n[(False, False)] + n[(False, True)],
    }


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
    if cur.block != p.block:  # a block is over: its instructions first
        _to_block(p, cur.block)
        db.session.commit()
        return {"status": "redirect", "url": url_for("participant.instructions", slug=p.study.slug)}
    if len(pending) > 1 and pending[1].block != cur.block:
        pending = pending[:1]  # nothing to preload from the next block
    att = _open_attempt(cur)
    att.served += 1
    if att.shown_at is None:
        att.shown_at = utcnow()
    nxt = _open_attempt(pending[1]) if len(pending) > 1 else None
    db.session.flush()
    prog = _progress(p, cur.block)
    state: dict[str, Any] = {
        "status": "trial",
        "attempt": att.ref,
        "phase": "practice" if cur.practice else "main",
        "progress": prog,
        "question": cur.design,
        "prompt": _PROMPTS[cur.design],
        "options": _options(cur, p.study.batch.label_names),
        "layout": "single" if cur.design == design.DECEITFULNESS else "pair",
        "captions": {
            design.DECEITFULNESS: [],
            design.NATURALNESS: ["Left", "Right"],
            design.INDISTINGUISHABILITY: ["Original", "Compare"],
        }[cur.design],
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


def _decode(t: Trial | Row[Any], choice: str) -> str:
    values = [o["value"] for o in _options(t)]
    if choice not in values:
        raise AnswerRejected(400, f"answer must be one of {', '.join(values)}")
    if t.design == design.DECEITFULNESS:
        order = (t.label_order or "true,attacked").split(",")
        return f"{order[int(choice) - 1]}_label"
    return choice


_STORED = select(Response.idempotency_key, Response.choice, Response.result).where(
    Response.attempt_pk == bindparam("a")
)


def _stored(attempt_pk: int, data: Mapping[str, Any], missing: str = "this trial has already been answered") -> dict:
    """After a lost race for ``attempt_pk``: the stored result if it is this very answer, else 409.

    ``missing`` is the 409's message when no answer is stored for the attempt at all.
    """
    stored = db.session.connection().execute(_STORED, {"a": attempt_pk}).first()
    if stored is None:
        raise AnswerRejected(409, missing)
    if stored.idempotency_key == data["key"] and stored.choice == data.get("answer"):
        return stored.result or {}
    raise AnswerRejected(409, "this trial has already been answered")


def played_through(events: Sequence[Mapping[str, Any]], plays: int) -> bool:
    """Whether the page reports the trial's clip played as often as required: its ``answerable`` event, or a
    ``play-end`` event numbered ``plays`` (the page logs both; see ``static/trial.js``)."""
    return any(
        e.get("type") == "answerable" or (e.get("type") == "play-end" and (e.get("n") or 0) >= plays) for e in events
    )


_ANSWER_CONTEXT = (
    select(
        Attempt.id,
        Attempt.participant_pk,
        Attempt.trial_pk,
        Attempt.number,
        Attempt.served,
        Attempt.shown_at,
        Attempt.closed,
        Participant.public_id,
        Participant.status.label("participant_status"),
        Participant.block.label("participant_block"),
        Study.slug,
        Study.max_attempts,
        Trial.design,
        Trial.true_label,
        Trial.attacked_label,
        Trial.label_order,
        Trial.plays,
        Trial.practice,
        Trial.attempts,
        Trial.block,
        Response.id.label("response_pk"),
    )
    .join(Trial, Trial.id == Attempt.trial_pk)
    .join(Participant, Participant.id == Attempt.participant_pk)
    .join(Study, Study.id == Participant.study_pk)
    .outerjoin(Response, Response.attempt_pk == Attempt.id)
    .where(Attempt.ref == bindparam("ref"))
)
"""An attempt (by ``ref``) with what its answer is checked against: trial, participant, study, stored answer."""


# The answer path's statements, built once (their parameters bound per answer).
_PENDING = (
    select(Trial.id, Trial.block)
    .where(Trial.participant_pk == bindparam("p"), Trial.status == "pending")
    .order_by(Trial.block, Trial.queue, Trial.position)
    .limit(bindparam("n"))
)
_CLOSE = update(Attempt).where(Attempt.id == bindparam("a"), Attempt.closed.is_(False)).values(closed=True)
_LAST_QUEUE = select(func.max(Trial.queue)).where(Trial.participant_pk == bindparam("p"))
_REVOKE = update(MediaToken).where(MediaToken.attempt_pk == bindparam("a")).values(revoked=True)
_INSERT_RESPONSE = insert(Response)
_TO_BLOCK = (
    update(Participant).where(Participant.id == bindparam("p")).values(block=bindparam("to"), status="instructions")
)


def _pending_rows(participant_pk: int, limit: int) -> list[Row[Any]]:
    """(id, block) of the participant's next pending trials, in presentation order (as :func:`_pending`)."""
    return list(db.session.connection().execute(_PENDING, {"p": participant_pk, "n": limit}))


def record_answer(slug: str, public_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Store one answer or playback failure (``data``: validated payload) of participant ``public_id`` of study
    ``slug``, in one transaction; returns the stored result.

    A retry (same attempt, same key and answer) returns the stored result again; a
    different answer to an answered attempt, an attempt that is not the current one, one
    not yet shown, or one of a participant not at the trials stage raises
    :class:`AnswerRejected` (409); an unknown attempt, or one that is not this
    participant's in this study, 404 (the caller tells apart a session without a
    participant). An answer is refused (400) unless it reports its clip played to the end.

    Exactly once: the attempt goes from open to closed in a guarded update (a concurrent
    duplicate finds it closed and writes nothing; PostgreSQL makes it wait for the first
    to commit), and the unique ``response.attempt_pk`` is the last guard; the loser
    answers with what the winner stored. The statements are SQLAlchemy Core on the
    session's connection: two reads, then the writes (the ORM's bookkeeping of objects
    would cost more than the statements themselves on this path, which every participant
    takes every few seconds).
    """
    conn = db.session.connection()  # Core on the session's connection and transaction
    att = conn.execute(_ANSWER_CONTEXT, {"ref": data["attempt"]}).first()
    if att is None or att.public_id != public_id or att.slug != slug:
        raise AnswerRejected(404, "no such trial")
    if att.response_pk is not None:
        return _stored(att.id, data)
    if att.participant_status != "trials":
        raise AnswerRejected(409, "the study is not at the trials stage")
    following = _pending_rows(att.participant_pk, 2)
    if not following or following[0].id != att.trial_pk or att.closed:
        return _stored(att.id, data, "not the current trial")
    if not att.served:  # handed out for preloading only: never shown as the current trial
        raise AnswerRejected(409, "this trial has not been shown yet")
    failed = bool(data.get("playback_failed"))
    choice = answer = None
    if not failed:
        choice = data.get("answer")
        if not isinstance(choice, str):
            raise AnswerRejected(400, "answer missing")
        if not played_through(data.get("events") or [], att.plays):
            raise AnswerRejected(400, "the answer does not report the clip played to the end")
        answer = _decode(att, choice)
        if data.get("rt_ms") is None:
            raise AnswerRejected(400, "rt_ms missing")
    try:
        closed = conn.execute(_CLOSE, {"a": att.id})
        if closed.rowcount != 1:  # a concurrent request closed it first
            db.session.rollback()
            return _stored(att.id, data)
        result = _bookkeeping(conn, att, data, choice, answer, following[1:])
        db.session.commit()
    except IntegrityError:  # the same attempt's answer was inserted by a concurrent request first
        db.session.rollback()
        return _stored(att.id, data)
    return result


def _bookkeeping(
    conn: Connection,
    att: Row[Any],
    data: Mapping[str, Any],
    choice: str | None,
    answer: str | None,
    after: Sequence[Row[Any]],
) -> dict[str, Any]:
    """The writes of one closed attempt ``att`` (a row of :data:`_ANSWER_CONTEXT`; in the caller's transaction):
    its media revoked, its response stored, the trial done (or, after a playback failure, given again at the end
    of its block or given up), and the participant moved on to the next block, or completed and screened;
    returns the result for the page. ``after``: the pending trial that came after this one, if any."""
    failed = answer is None
    retry = failed and not att.practice and att.attempts < att.max_attempts
    if not failed:
        change: dict[str, Any] = {"status": "done"}
    elif retry:  # given again later: to the end of the queue, with a new attempt and new tokens
        last = conn.execute(_LAST_QUEUE, {"p": att.participant_pk}).scalar_one()
        change = {"queue": int(last) + 1}
    else:
        change = {"status": "failed"}
    conn.execute(update(Trial).where(Trial.id == att.trial_pk).values(**change))
    conn.execute(_REVOKE, {"a": att.id})
    following = _pending_rows(att.participant_pk, 1) if retry else list(after)  # (given again: maybe first)
    done = not following
    result = {
        "stored": True,
        "valid": not failed,
        "retry": retry,
        "done": done,
        "redirect": url_for("participant.done", slug=att.slug) if done else None,
    }
    conn.execute(
        _INSERT_RESPONSE,
        {
            "participant_pk": att.participant_pk,
            "trial_pk": att.trial_pk,
            "attempt": att.number,
            "attempt_pk": att.id,
            "idempotency_key": data["key"],
            "choice": choice,
            "answer": answer,
            "valid": not failed,
            "playback_failed": failed,
            "failure_reason": (data.get("reason") or "playback") if failed else None,
            "response_time_ms": None if failed else float(data["rt_ms"]),
            "events": [*(data.get("events") or []), {"type": "server-served", "n": att.served}],
            "client": dict(data.get("client") or {}),
            "shown_at": att.shown_at,
            "answered_at": utcnow(),
            "result": result,
        },
    )
    if done:  # once per participant: through the ORM
        complete(db.session.get_one(Participant, att.participant_pk))
    elif following[0].block != att.participant_block:
        conn.execute(_TO_BLOCK, {"p": att.participant_pk, "to": following[0].block})
    return result


def _to_block(p: Participant, block: int) -> None:
    """Move the participant on to ``block``: its instructions come next (in the caller's transaction)."""
    p.block = block
    p.status = "instructions"


# ---- completion and screening ------------------------------------------------------------------
def _screen(p: Participant) -> None:
    """Screen a participant on their valid analysed indistinguishability answers (in the caller's transaction)."""
    study = p.study
    blocks = study.blocks or [{"study_type": study.study_type}]
    if all(b["study_type"] != design.INDISTINGUISHABILITY for b in blocks):
        p.excluded, p.exclusion_reason, p.screening = False, None, {}
        return
    rows = db.session.execute(
        select(Trial.kind, Response.answer)
        .join(Response, Response.trial_pk == Trial.id)
        .where(
            Trial.participant_pk == p.id,
            Trial.practice.is_(False),
            Response.valid.is_(True),
            Trial.design == design.INDISTINGUISHABILITY,
        )
    ).all()
    s = screen(
        [Answer(kind, ans == "changed") for kind, ans in rows], study.screening_threshold, study.control_hit_threshold
    )
    p.excluded, p.exclusion_reason, p.screening = s.excluded, s.reason, s.stats


def complete(p: Participant) -> None:
    """Mark the participant completed and screen them (in the caller's transaction)."""
    p.status = "completed"
    p.completed_at = utcnow()
    _screen(p)


# ---- researchers' changes: withdrawal, the audit log ---------------------------------------------
def audit(actor: str, action: str, study: str | None = None, **detail: Any) -> AuditEvent:
    """Add an audit event to the current transaction (the caller commits) and log it."""
    event = AuditEvent(at=utcnow(), actor=actor[:254], action=action[:32], study=study, detail=detail)
    db.session.add(event)
    current_app.logger.info("audit: %s %s %s %s", actor, action, study or "-", detail)
    return event


def withdraw(p: Participant, actor: str) -> dict[str, Any]:
    """Delete every record of participant ``p`` (answers, trials, attempts, media tokens, the participation).

    One transaction, with an audit event that keeps the opaque participant id and the
    counts but nothing about the person (no recruiting id). Balance counts follow at
    once: they are computed from what is stored. Returns what was deleted.
    """
    study = p.study
    pk = p.id
    info = {"participant": p.public_id, "platform": p.platform, "status": p.status}
    counts = {}
    for name, model in (
        ("media_tokens", MediaToken),
        ("responses", Response),
        ("attempts", Attempt),
        ("trials", Trial),
    ):
        counts[name] = db.session.execute(delete(model).where(model.participant_pk == pk)).rowcount
    db.session.execute(delete(Participant).where(Participant.id == pk))
    audit(actor, "withdraw", study.slug, **info, **{k: counts[k] for k in ("responses", "trials")})
    db.session.commit()
    db.session.expire_all()
    return {**info, "study": study.slug, **counts}
