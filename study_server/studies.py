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
import re
import secrets
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
from .settings import BLOCK_SETTINGS
from .settings import STUDY_SETTINGS
from .settings import Block
from .settings import block_fields
from .settings import check as check_setting
from .settings import paper_default
from .settings import study_fields

__all__ = [
    "StudyConfigError",
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


class StudyConfigError(SmartStudyError, ValueError):
    """A study cannot be created with these settings (the message names the setting and the value).

    ``field`` is the setting's name (e.g. ``"trials"``) when one setting is at fault, and
    ``block`` the index of the block it belongs to in a combined session.
    """

    def __init__(self, message: str, field: str | None = None, block: int | None = None):
        super().__init__(message)
        self.field = field
        self.block = block


def study_blocks(study: Study) -> list[Block]:
    """The blocks of ``study`` in order."""
    return [Block.from_dict(b) for b in study.blocks]


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


def _levels(sb: Any) -> dict[str, list[tuple[str, float]]]:
    """Method -> its graded variants (name, strength) with an original|variant composite, weakest first: the
    method's own variant (strength 1) and its ``level`` variants (``attack-gen batch --levels``)."""
    composites = set(sb.composite_plan.indistinguishability or ())
    out: dict[str, list[tuple[str, float]]] = {}
    for name, v in sb.items[0].variants.items() if sb.items else ():
        if v.role in ("attack", "level") and name in composites:
            method = str(v.info.get("method", name)) if v.role == "level" else name
            out.setdefault(method, []).append((name, float(v.info.get("strength", 1.0))))
    return {m: sorted(vs, key=lambda t: t[1]) for m, vs in out.items() if len(vs) > 1}


# ---- studies ---------------------------------------------------------------------------------
def _check(ok: bool, message: str, field: str | None = None, block: int | None = None) -> None:
    if not ok:
        raise StudyConfigError(message, field, block)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _checked(fs: Sequence[Any], value_of: Any, check: Any) -> dict[str, Any]:
    """Each setting of ``fs`` checked (:func:`study_server.settings.check`); ``check(False, message, name)``
    reports the first one at fault."""
    out: dict[str, Any] = {}
    for f in fs:
        try:
            out[f.name] = check_setting(f, value_of(f))
        except ValueError as e:
            check(False, str(e), f.name)
    return out


def _block(batch: Batch, study_type: Any, given: Mapping[str, Any], index: int | None = None) -> Block:
    """One block's settings, checked; the defaults (the paper's for the design) for those not given or None.
    ``index`` is set for a block of a combined session."""
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
    values = _checked(block_fields(), lambda f: _or(given.get(f.name), paper_default(f, study_type)), check)
    if values["seconds"] is None:
        values["seconds"] = batch.clip_seconds
    b = Block(study_type, **values)
    check(
        b.seconds <= batch.clip_seconds + 1e-6,
        f"seconds must be at most the batch's clip length {batch.clip_seconds:g}, got {b.seconds!r}",
        "seconds",
    )
    roles = batch.variants
    graded = _levels(batch_files(batch)) if study_type == design.INDISTINGUISHABILITY and b.procedure != "fixed" else {}
    for v in b.variants:
        check(
            roles.get(v) == "attack" or v in graded,  # a family of levels only (smart-cw) is shown by its levels
            f"variant {v!r} is not an attacked variant of batch {batch.batch_id!r} "
            f"(attacked: {', '.join(n for n, r in roles.items() if r == 'attack')})",
            "variants",
        )
    if study_type == design.DECEITFULNESS:
        check(len(b.variants) == 1, f"deceitfulness shows one attacked variant, got {list(b.variants)}", "variants")
    if study_type == design.NATURALNESS:
        check(b.trials % 2 == 0, f"naturalness trials must be even (two per motion), got {b.trials}", "trials")
    if study_type == design.INDISTINGUISHABILITY and b.procedure != "fixed":
        for v in b.variants:
            check(
                v in graded,
                f"procedure {b.procedure}: variant {v!r} has no graded levels in batch {batch.batch_id!r} "
                f"(graded: {', '.join(graded) or 'none; make them with attack-gen batch --levels'})",
                "variants",
            )
    if study_type == design.INDISTINGUISHABILITY:
        shares = [b.sensitivity_share, b.control_share]
        n_perc = design.split_counts(b.trials, shares)[2] if sum(shares) <= 1 else -1
        check(
            n_perc >= 1,
            f"sensitivity_share {b.sensitivity_share} and control_share {b.control_share} of "
            f"{b.trials} trials leave no perceivability trial",
            "sensitivity_share",
        )
    return b


def create_study(
    slug: str,
    batch: Batch | str,
    study_type: str,
    *,
    blocks: Sequence[Mapping[str, Any]] | None = None,
    **given: Any,
) -> Study:
    """Create (and commit) a study; bad settings raise :class:`StudyConfigError` naming the setting.

    ``batch`` is a recorded :class:`Batch` or its ``batch_id``. ``given``: any setting of
    :class:`~study_server.settings.StudySettings` and of :class:`~study_server.settings.Block`
    (their fields' metadata give each one's meaning, default and range; the defaults are the
    paper's). ``variants``: the attacked variant shown in deceitfulness (one) or
    indistinguishability (one or more); naturalness compares SMART with every ablation the
    batch's naturalness composites hold.

    ``study_type="combined"``: a session of ``blocks`` run in order, each a mapping with
    ``study_type`` and any block settings; block settings given as keywords here are every
    block's default. Screening uses the indistinguishability block's trials.
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
    unknown = sorted(set(given) - {*BLOCK_SETTINGS, *STUDY_SETTINGS})
    _check(not unknown, f"unknown setting(s) {', '.join(unknown)}", unknown[0] if unknown else None)
    if "allow_anonymous" not in given and given.get("completion_code"):
        given = {**given, "allow_anonymous": False}  # a paid study takes only recruited people unless told
    values = _checked(study_fields(), lambda f: given.get(f.name, f.default), _check)
    if isinstance(batch, str):
        row = db.session.execute(select(Batch).where(Batch.batch_id == batch)).scalar_one_or_none()
        _check(row is not None, f"no imported batch with id {batch!r}", "batch")
        batch = row
    assert isinstance(batch, Batch)
    taken = db.session.execute(select(Study.id).where(Study.slug == slug)).first()
    _check(taken is None, f"a study with slug {slug!r} exists already", "slug")
    shared = {k: v for k, v in given.items() if k in BLOCK_SETTINGS}
    if study_type == design.COMBINED:
        _check(blocks is not None and len(blocks) >= 1, "a combined session needs at least one block", "blocks")
        assert blocks is not None
        made = []
        for i, b in enumerate(blocks):
            unknown = sorted(set(b) - {"study_type", *BLOCK_SETTINGS})
            _check(not unknown, f"block {i + 1}: unknown setting(s) {', '.join(unknown)}", "blocks", i)
            own = {k: v for k, v in b.items() if k != "study_type"}
            made.append(_block(batch, b.get("study_type"), {**shared, **own}, index=i))
    else:
        _check(blocks is None, "blocks are for combined sessions only", "blocks")
        made = [_block(batch, study_type, shared)]
    values["title"] = values["title"] or slug
    study = Study(slug=slug, study_type=study_type, batch=batch, blocks=[b.to_dict() for b in made], **values)
    try:
        plan(study, seed=0, counts={})  # the batch can serve this design
    except ValueError as e:
        with db.session.no_autoflush:  # the backref put it in batch.studies: take it out, unflushed
            if study in batch.studies:
                batch.studies.remove(study)
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
    return f"b{index}:" if study.study_type == design.COMBINED else ""


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
        b.procedure,
        _levels(sb),
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
            procedure=b.procedure,
            levels=_levels(sb),
        )
        out.update({prefix + c: r for c, r in rates.items()})
    return out


def cell_counts(study: Study) -> dict[str, int]:
    """Analysed trials answered validly per balancing cell, over completed, non-excluded, non-pilot participants."""
    rows = db.session.execute(
        select(Trial.cell, func.count())
        .join(Participant, Trial.participant_pk == Participant.id)
        .where(
            Participant.study_pk == study.id,
            Participant.status == "completed",
            Participant.excluded.is_(False),
            Participant.pilot.is_(False),
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
        pilot=study.status == "pilot",
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
                method=s.method,
                strength=s.strength,
                adaptive={"procedure": "quest+", "pending": True}
                if s.procedure == "adaptive" and not s.practice
                else None,
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
    adaptive = (p.study.blocks[cur.block].get("procedure") or "fixed") == "adaptive"
    if len(pending) > 1 and (pending[1].block != cur.block or adaptive):
        # nothing to preload from the next block; nor in an adaptive block, where a level is chosen only when its
        # trial comes up: were the other trials preloaded, a slower start would tell the graded trials apart
        pending = pending[:1]
    if _unchosen(cur):
        _choose_level(p, cur)
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


def _unchosen(t: Trial) -> bool:
    return bool(t.adaptive and t.adaptive.get("pending"))


def _choose_level(p: Participant, t: Trial) -> None:
    """QUEST+ chooses the level of adaptive trial ``t`` from the participant's valid analysed answers in its block
    so far (this method's graded trials and the sensitivity trials); the trial now shows it, with the state it was
    chosen in (in the caller's transaction)."""
    from stimuli.adaptive import choose

    levels = _levels(batch_files(p.study.batch))[str(t.method)]
    rows = db.session.execute(
        select(Trial.kind, Trial.strength, Response.answer)
        .join(Response, Response.trial_pk == Trial.id)
        .where(
            Trial.participant_pk == p.id,
            Trial.block == t.block,
            Trial.practice.is_(False),
            Response.valid.is_(True),
            (Trial.kind == "sensitivity") | ((Trial.method == t.method) & Trial.adaptive.is_not(None)),
        )
        .order_by(Response.id)
    ).all()
    history = [(0.0 if kind == "sensitivity" else float(s), ans == "changed") for kind, s, ans in rows]
    c = choose([s for _, s in levels], history)
    name = levels[c.index][0]
    key = design.ORIGINAL + "|" + name
    t.stimulus_pk = db.session.execute(
        select(Stimulus.id).where(
            Stimulus.batch_pk == p.study.batch_pk, Stimulus.item_id == t.item_id, Stimulus.key == key
        )
    ).scalar_one()
    info = next(it for it in batch_files(p.study.batch).items if it.id == t.item_id)
    label = info.variant(name).final_label
    t.variant = t.right_variant = name
    t.strength = c.strength
    t.attacked_label = None if label is None else label.name
    t.adaptive = c.to_dict()


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
        Study.blocks,
        Trial.design,
        Trial.kind,
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
    right = PRACTICE_KEY.get(att.kind) if att.practice and att.design == design.INDISTINGUISHABILITY else None
    if right and not failed and att.blocks[att.block].get("practice_feedback"):
        result["feedback"] = {"right": answer == right, "answer": right}
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


PRACTICE_KEY = {"control": "changed", "sensitivity": "unchanged"}
"""The right answer of the practice trials that have one (indistinguishability)."""


def _to_block(p: Participant, block: int) -> None:
    """Move the participant on to ``block``: its instructions come next (in the caller's transaction)."""
    p.block = block
    p.status = "instructions"


# ---- completion and screening ------------------------------------------------------------------
def _screen(p: Participant) -> None:
    """Screen a participant on their valid analysed indistinguishability answers (in the caller's transaction)."""
    study = p.study
    if all(b["study_type"] != design.INDISTINGUISHABILITY for b in study.blocks):
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


# ---- preview -----------------------------------------------------------------------------------
def preview(study: Study, seed: int) -> list[dict[str, Any]]:
    """The trials a participant with ``seed`` would get on an empty study, each as the page shows it and
    with its condition: for a researcher's preview. Nothing is written, so balancing is untouched."""
    stimuli = {
        (s.item_id, s.key): s.id
        for s in db.session.execute(select(Stimulus).where(Stimulus.batch_pk == study.batch_pk)).scalars()
    }
    blocks = study_blocks(study)
    out = []
    for i, pl in enumerate(plan(study, seed, {})):
        s, b = pl.spec, pl.settings
        out.append(
            {
                "index": i,
                "block": pl.block + 1,
                "blocks": len(blocks),
                "design": s.design,
                "practice": s.practice,
                "kind": s.kind,
                "condition": "practice" if s.practice else design.condition_of(s.cell),
                "item_id": s.item_id,
                "stimulus_pk": stimuli[(s.item_id, s.stimulus)],
                "variant": s.variant,
                "left_variant": s.left_variant,
                "right_variant": s.right_variant,
                "true_label": s.true_label,
                "attacked_label": s.attacked_label,
                "prompt": _PROMPTS[s.design],
                "options": _options(s, study.batch.label_names),
                "layout": "single" if s.design == design.DECEITFULNESS else "pair",
                "plays": b.plays,
                "slowdown": b.slowdown,
            }
        )
    return out
