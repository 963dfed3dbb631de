"""The response export: rows in the format of :mod:`stimuli.responses` (one row per stored attempt).

* :func:`response_rows` - the rows of one study (inside an app context);
* :func:`export_csv` / :func:`export_json` - the files the dashboard and
  ``flask --app study_server export`` write (``analysis report`` reads them);
* :func:`export_psych_ds` - the same rows as a Psych-DS dataset (``export-psych-ds``): a
  ``dataset_description.json`` (schema.org JSON-LD naming and describing every variable) and
  ``data/study-<slug>_data.csv`` per study (values missing written ``NA``, the standard's
  recommendation; the slug's letters and digits only, as the file-name keyword values allow).

Every stored attempt is a row: practice (flagged), playback failures (``valid`` false)
and the answers of excluded participants (``excluded`` true, with the reason) included,
so the analysis decides what to count.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from stimuli.errors import DataError
from stimuli.responses import COLUMNS
from stimuli.responses import make_row
from stimuli.responses import rows_to_csv
from stimuli.responses import rows_to_json

from . import design
from .extensions import db
from .models import Participant
from .models import Response
from .models import Study
from .models import Trial
from .study_file import study_file_text

__all__ = ["response_rows", "row_for", "export_csv", "export_json", "export_psych_ds", "FORMATS"]

FORMATS = ("csv", "json")


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="milliseconds") + "Z"


def row_for(study: Study, p: Participant, t: Trial, r: Response) -> dict[str, Any]:
    """The export row of one stored attempt."""
    batch = study.batch
    values: dict[str, Any] = {
        "participant": p.public_id,
        "study": study.slug,
        "study_type": t.design,
        "recruit_platform": p.platform,
        "age": p.age,
        "participant_completed": p.status == "completed",
        "excluded": p.excluded,
        "exclusion_reason": p.exclusion_reason,
        "pilot": p.pilot,
        "block": t.block,
        "trial_index": t.position,
        "practice": t.practice,
        "attempt": r.attempt,
        "valid": r.valid,
        "batch_id": batch.batch_id,
        "item_id": t.item_id,
        "dataset": batch.dataset,
        "model": batch.model,
        "strategy": batch.strategy,
        "true_label": t.true_label,
        "attacked_label": t.attacked_label,
        "variant": t.variant,
        "left_variant": t.left_variant,
        "right_variant": t.right_variant,
        "plays": t.plays,
        "seconds": t.seconds,
        "slowdown": t.slowdown,
        "answer": r.answer,
        "response_time_ms": r.response_time_ms,
        "playback_failed": r.playback_failed,
        "playback_events": r.events,
        "shown_at": _iso(r.shown_at),
        "answered_at": _iso(r.answered_at),
    }
    if t.design == design.DECEITFULNESS:
        values["label_order"] = t.label_order
        if r.valid:
            values["chose_true_label"] = r.answer == "true_label"
    elif t.design == design.NATURALNESS:
        values["naturalness_pair"] = t.naturalness_pair
        if r.valid and r.answer in ("left", "right"):
            values["preferred_variant"] = t.left_variant if r.answer == "left" else t.right_variant
    else:
        values["trial_kind"] = t.kind
        values["procedure"] = (study.blocks[t.block].get("procedure") or "fixed") if not t.practice else None
        values["method"], values["strength"], values["adaptive_state"] = t.method, t.strength, t.adaptive
        if r.valid:
            values["said_changed"] = r.answer == "changed"
            values["correct"] = (r.answer == "changed") == (t.kind != "sensitivity")
    return make_row(**values)


def response_rows(study: Study) -> list[dict[str, Any]]:
    """Every stored attempt of ``study`` (practice included, flagged), ordered by participant and position.

    One query; the study and its batch are loaded once.
    """
    q = (
        select(Participant, Trial, Response)
        .join(Trial, Trial.participant_pk == Participant.id)
        .join(Response, Response.trial_pk == Trial.id)
        .where(Participant.study_pk == study.id)
        .order_by(Participant.id, Trial.position, Response.attempt)
    )
    return [row_for(study, p, t, r) for p, t, r in db.session.execute(q).all()]


def export_csv(study: Study) -> str:
    """The study's responses as CSV (``stimuli.responses`` columns)."""
    return rows_to_csv(response_rows(study))


def export_json(study: Study) -> str:
    """The study's responses as the JSON export document, with the study file of every setting they were taken under."""
    return rows_to_json(response_rows(study), study=study.slug, study_files={study.slug: study_file_text(study)})


def _psych_ds_cell(kind: str, value: Any) -> str:
    if value is None:
        return "NA"
    if kind == "bool":
        return "true" if value else "false"
    if kind == "json":
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def psych_ds_name(slug: str) -> str:
    """The data file of a study: ``study-<the slug's letters and digits>_data.csv``."""
    return f"study-{re.sub(r'[^A-Za-z0-9]', '', slug)}_data.csv"


def export_psych_ds(studies: list[Study], out: Path) -> dict[str, Any]:
    """Write ``studies``' responses as a Psych-DS dataset in the new folder ``out`` (all or nothing)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists already; give a new folder for the dataset")
    names = [psych_ds_name(s.slug) for s in studies]
    if len(set(names)) != len(names):
        raise DataError(f"studies {', '.join(s.slug for s in studies)}: two give the same data file name")
    description = {
        "@context": "https://schema.org/",
        "@type": "Dataset",
        "name": f"smart-study responses: {', '.join(s.slug for s in studies)}",
        "description": (
            "Answers of people to clips of 3D skeletal motion, original and adversarially attacked "
            "(deceitfulness, naturalness and indistinguishability designs); one row per stored attempt at a trial, "
            "practice and playback failures included and flagged."
        ),
        "keywords": ["adversarial attacks", "human motion perception", "skeletal action recognition"],
        "variableMeasured": [{"@type": "PropertyValue", "name": c.name, "description": c.description} for c in COLUMNS],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "data").mkdir()
        (tmp / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
        rows_written = 0
        for study, name in zip(studies, names):
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow([c.name for c in COLUMNS])
            for row in response_rows(study):
                w.writerow([_psych_ds_cell(c.type, row[c.name]) for c in COLUMNS])
                rows_written += 1
            (tmp / "data" / name).write_text(buf.getvalue(), encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "folder": str(out),
        "files": ["dataset_description.json", *(f"data/{n}" for n in names)],
        "rows": rows_written,
    }
