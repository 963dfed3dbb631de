"""The response export: one row per trial, the format the server writes and analysis reads.

The study server exports every trial of a study as CSV (``responses.csv``) or JSON (an
object ``{"format": "smart-study-responses", "version": 1, "rows": [...]}``) with the
columns below; ``analysis`` reads either. Columns that do not apply to a study type are
empty (CSV) or ``null`` (JSON). Booleans are ``true``/``false`` in JSON and ``1``/``0``
in CSV. Stimulus and variant names appear here because the export is for researchers;
participants never see them.

This module is the single definition of the columns (torch-free, no pandas): the server
builds rows with :func:`make_row`, and readers parse files with :func:`read_responses`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Iterable

from .errors import DataError

__all__ = [
    "Column",
    "COLUMNS",
    "COLUMN_NAMES",
    "STUDY_TYPES",
    "RESPONSES_FORMAT",
    "make_row",
    "rows_to_csv",
    "rows_to_json",
    "read_responses",
]

RESPONSES_FORMAT = "smart-study-responses"
STUDY_TYPES = ("deceitfulness", "naturalness", "indistinguishability")

_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "json": object}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    required: bool = False
    """Never empty, in every row."""


COLUMNS: tuple[Column, ...] = (
    # who and where
    Column("participant", "str", "opaque participant id (not the recruiting id)", True),
    Column("study", "str", "study slug", True),
    Column("study_type", "str", "deceitfulness, naturalness or indistinguishability", True),
    Column("recruit_platform", "str", "prolific, mturk or anonymous", True),
    Column("age", "int", "participant's age in years, if given"),
    Column("participant_completed", "bool", "the participant reached the end of the study", True),
    Column("excluded", "bool", "the participant is excluded by screening (data kept)", True),
    Column("exclusion_reason", "str", "why (e.g. 'sensitivity accuracy 0.70 < 0.80'); empty if not excluded"),
    Column("pilot", "bool", "a pilot participant: left out of balancing, and of the analysis unless asked (empty: no)"),
    # the trial
    Column("block", "int", "block number within the session (0 for single-study sessions)", True),
    Column("trial_index", "int", "position in the participant's sequence (0-based, practice included)", True),
    Column("practice", "bool", "practice trial (not analysed)", True),
    Column("attempt", "int", "1, or more when a trial was given again after a playback failure", True),
    Column("valid", "bool", "playback succeeded and the answer counts", True),
    # the stimulus
    Column("batch_id", "str", "stimulus batch id", True),
    Column("item_id", "str", "motion item (clip) id within the batch", True),
    Column("dataset", "str", "dataset name from the batch provenance"),
    Column("model", "str", "attacked model name from the batch provenance"),
    Column("strategy", "str", "attack strategy (ab, ab3, ab5, sa)"),
    Column("true_label", "str", "ground-truth class name", True),
    Column("attacked_label", "str", "class the attacked clip is classified as"),
    Column("variant", "str", "single-clip trials: the variant shown; pair trials: the right-hand variant"),
    Column("left_variant", "str", "pair trials: the left-hand variant"),
    Column("right_variant", "str", "pair trials: the right-hand variant"),
    Column("procedure", "str", "indistinguishability: fixed, constant (constant stimuli) or adaptive (QUEST+)"),
    Column("method", "str", "graded (threshold) trials: the attack method of the right-hand clip"),
    Column("strength", "float", "graded trials: its strength s of the blend q + s (q^ - q), 1 the attack itself"),
    Column("adaptive_state", "json", "adaptive trials: the QUEST+ state the level was chosen in"),
    Column("plays", "int", "times the clip(s) were played", True),
    Column("seconds", "float", "seconds per play", True),
    Column("slowdown", "float", "playback slow-down factor (1 = real time)", True),
    # the answer
    Column("answer", "str", "raw answer: true_label/attacked_label, left/right/cant_tell, changed/unchanged"),
    Column("label_order", "str", "deceitfulness: order the two labels were shown, e.g. 'attacked,true'"),
    Column("chose_true_label", "bool", "deceitfulness: the ground-truth label was chosen"),
    Column("naturalness_pair", "str", "naturalness: 'smart-vs-ablation' or 'ablation-vs-ablation'"),
    Column("preferred_variant", "str", "naturalness: the variant judged more natural; empty for can't tell"),
    Column("trial_kind", "str", "indistinguishability: sensitivity, perceivability or control"),
    Column("said_changed", "bool", "indistinguishability: answered 'changed'"),
    Column("correct", "bool", "indistinguishability: unchanged on sensitivity, changed otherwise"),
    Column("response_time_ms", "float", "from when answering became possible to the answer"),
    Column("playback_failed", "bool", "the video failed (stalled past the limit or errored)", True),
    Column("playback_events", "json", "list of playback events logged by the browser"),
    Column("shown_at", "str", "ISO 8601 UTC time the trial was shown"),
    Column("answered_at", "str", "ISO 8601 UTC time the answer was stored"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
_BY_NAME = {c.name: c for c in COLUMNS}


def _coerce(col: Column, value: Any, where: str) -> Any:
    """Parse ``value`` (from CSV text or JSON) into the column's type; '' and None are missing."""
    if value is None or value == "":
        if col.required:
            raise DataError(f"{where}: column {col.name!r} is required")
        return None
    try:
        if col.type == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true"):
                return True
            if text in ("0", "false"):
                return False
            raise ValueError(value)
        if col.type == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if col.type == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if col.type == "json":
            return json.loads(value) if isinstance(value, str) else value
        return str(value)
    except (ValueError, TypeError):
        raise DataError(f"{where}: column {col.name!r}: expected {col.type}, got {value!r}") from None


def make_row(**values: Any) -> dict[str, Any]:
    """A complete row: every column present (missing ones None), values type-checked."""
    unknown = sorted(set(values) - set(COLUMN_NAMES))
    if unknown:
        raise DataError(f"unknown response column(s): {', '.join(unknown)}")
    row = {name: _coerce(_BY_NAME[name], values.get(name), "response row") for name in COLUMN_NAMES}
    if row["study_type"] not in STUDY_TYPES:
        raise DataError(f"response row: study_type must be one of {', '.join(STUDY_TYPES)}, got {row['study_type']!r}")
    return row


def _csv_cell(col: Column, value: Any) -> str:
    if value is None:
        return ""
    if col.type == "bool":
        return "1" if value else "0"
    if col.type == "json":
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMN_NAMES)
    for row in rows:
        w.writerow([_csv_cell(c, row.get(c.name)) for c in COLUMNS])
    return buf.getvalue()


def rows_to_json(rows: Iterable[dict[str, Any]], **extra: Any) -> str:
    return json.dumps({"format": RESPONSES_FORMAT, "version": 1, **extra, "rows": list(rows)})


def read_responses(path: str | Path) -> list[dict[str, Any]]:
    """Read an export (CSV or JSON, by content); rows are type-checked, errors name the row.

    Raises :class:`DataError` for a missing file, unknown format, missing columns or a
    bad value (naming the line or row and the column).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: responses file not found")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataError(f"{path}: empty responses file")
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        if doc.get("format") != RESPONSES_FORMAT:
            raise DataError(f"{path}: not a smart-study responses file (format {doc.get('format')!r})")
        raw = doc.get("rows")
        if not isinstance(raw, list):
            raise DataError(f"{path}: 'rows' must be a list")
        out = []
        for i, r in enumerate(raw):
            if not isinstance(r, dict):
                raise DataError(f"{path}: rows[{i}] must be an object")
            missing = [c for c in COLUMN_NAMES if c not in r]
            if missing:
                raise DataError(f"{path}: rows[{i}] lacks column(s) {', '.join(missing)}")
            out.append({c.name: _coerce(c, r[c.name], f"{path}: rows[{i}]") for c in COLUMNS})
        return out
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    missing = [c for c in COLUMN_NAMES if c not in header]
    if missing:
        raise DataError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
    idx = {name: header.index(name) for name in COLUMN_NAMES}
    out = []
    for lineno, cells in enumerate(reader, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise DataError(f"{path}: line {lineno}: {len(cells)} fields, expected {len(header)}")
        out.append({c.name: _coerce(c, cells[idx[c.name]], f"{path}: line {lineno}") for c in COLUMNS})
    return out
