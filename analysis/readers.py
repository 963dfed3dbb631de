"""Inputs of the report: response exports and stimulus batches, checked against each other.

* :func:`read_responses_frame` reads an export (CSV or JSON, :mod:`stimuli.responses`)
  into a typed DataFrame, one row per trial. CSV files written by the server or by
  ``analysis simulate`` take a vectorised path (a million rows in seconds); anything that
  path cannot vouch for is re-read by :func:`stimuli.responses.read_responses`, whose
  error names the line and column.
* :func:`load_batches` loads stimulus batches (:func:`stimuli.batch.load_batch`) into
  item and variant tables; :func:`attach_batches` checks the responses against them
  (batch ids, item ids, variant names, labels, provenance) and fills missing dataset,
  model and strategy from the batch.

Every problem is a :class:`stimuli.errors.DataError` with a one-line message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Iterable
from typing import Sequence

import numpy as np
import pandas as pd

from stimuli.errors import DataError
from stimuli.fileio import json_default
from stimuli.responses import COLUMN_NAMES
from stimuli.responses import COLUMNS
from stimuli.responses import STUDY_TYPES
from stimuli.responses import read_responses
from stimuli.skeleton import STANDARD

__all__ = [
    "ANALYSIS_COLUMNS",
    "REPORT_COLUMNS",
    "PLAYBACK_COUNTS",
    "playback_counts",
    "read_responses_frame",
    "rows_to_frame",
    "Batches",
    "load_batches",
    "attach_batches",
]

_SKIPPED = ("shown_at", "answered_at", "adaptive_state")
ANALYSIS_COLUMNS = tuple(c for c in COLUMN_NAMES if c not in _SKIPPED)
"""The export's columns that the analysis keeps (timestamps and the adaptive procedure's state are not needed; the
playback log is kept only as the counts :data:`PLAYBACK_COUNTS` name)."""
_COL = {c.name: c for c in COLUMNS}
REPORT_COLUMNS = tuple(
    c
    for c in ANALYSIS_COLUMNS
    if c not in ("recruit_platform", "age", "plays", "seconds", "slowdown", "naturalness_pair", "correct")
)
"""The columns ``analysis report`` uses (reading fewer columns makes a large CSV faster to parse)."""
PLAYBACK_COUNTS = {"hidden_events": ("hidden",), "stall_events": ("waiting", "stalled")}
"""Frame column -> the playback-log event types it counts per row; they replace ``playback_events`` in a frame
(the page logs ``hidden`` when the tab is hidden, ``waiting`` / ``stalled`` when the video waits for data)."""


def playback_counts(events: pd.Series) -> dict[str, np.ndarray]:
    """Per row, how many events of each :data:`PLAYBACK_COUNTS` kind a playback log holds (int64; empty log: 0).

    A log is JSON text (CSV export) or the parsed list (JSON export); text is counted with one regular expression
    per kind, vectorised, without parsing it (a ``"type"`` inside a string value is escaped, so it never matches).
    """
    n = len(events)
    out = {name: np.zeros(n, np.int64) for name in PLAYBACK_COUNTS}
    present = events.notna().to_numpy()
    if not present.any():
        return out
    idx = np.flatnonzero(present)
    vals = events[present]
    if isinstance(vals.iloc[0], str):
        text = vals.astype(str).to_numpy()
        for name, kinds in PLAYBACK_COUNTS.items():
            # a plain substring test first (cheap), the regular expression only on the rows that pass it
            hit = np.fromiter((any(k in v for k in kinds) for v in text), bool, len(text))
            if hit.any():
                pattern = r'"type"\s*:\s*"(?:' + "|".join(kinds) + ')"'
                out[name][idx[hit]] = pd.Series(text[hit]).str.count(pattern).to_numpy(dtype=np.int64)
        return out
    for name, kinds in PLAYBACK_COUNTS.items():
        out[name][idx] = [
            sum(1 for e in v if isinstance(e, dict) and e.get("type") in kinds) if isinstance(v, list) else 0
            for v in vals
        ]
    return out


def _frame_columns(columns: Sequence[str]) -> list[str]:
    """The frame's column names for these export columns (``playback_events`` becomes its counts)."""
    return [k for c in columns for k in (PLAYBACK_COUNTS if c == "playback_events" else (c,))]


# ---- responses ------------------------------------------------------------------------------
def _finish(df: pd.DataFrame, where: str, columns: Sequence[str] = ANALYSIS_COLUMNS) -> pd.DataFrame:
    """Typed columns: strings as categories, required ints as int64, optional bools as nullable booleans."""
    out = {}
    for name in columns:
        col, s = _COL[name], df[name]
        if col.type == "str":
            out[name] = s.astype("category")
        elif col.type == "int":
            out[name] = s.astype("int64") if col.required else s.astype("Int64")
        elif col.type == "float":
            out[name] = s.astype("float64")
        elif col.type == "bool":
            out[name] = s.astype("bool") if col.required else s.astype("boolean")
        else:  # the playback log: only its counts are kept
            out.update(playback_counts(s))
    frame = pd.DataFrame(out)
    bad = frame["study_type"].dropna().unique().tolist()
    bad = sorted(str(b) for b in bad if b not in STUDY_TYPES)
    if bad:
        raise DataError(
            f"{where}: unknown study_type {', '.join(map(repr, bad))}; expected one of {', '.join(STUDY_TYPES)}"
        )
    check_consistent(frame, where)
    return frame


_DERIVED = {  # study type -> (derived column, the answer that makes it true)
    "deceitfulness": ("chose_true_label", "true_label"),
    "indistinguishability": ("said_changed", "changed"),
}


def check_consistent(df: pd.DataFrame, where: str) -> None:
    """Refuse responses that an export cannot produce: one trial twice, or an answer its derived column contradicts.

    Rows are named by their number in ``where`` (1 = the first data row) with participant and trial.
    """
    key = [c for c in ("study", "participant", "block", "trial_index", "attempt") if c in df]
    if len(key) == 5 and len(df):  # (a trial whose playback failed is shown again: a new attempt, a new row)
        dup = df.duplicated(key, keep="first").to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            r = df.iloc[i]
            raise DataError(
                f"{where}: row {i + 1} repeats participant {r['participant']}'s trial {r['trial_index']} "
                f"(block {r['block']}, attempt {r['attempt']}) of study {r['study']} ({int(dup.sum())} "
                "repeated rows); an export has one row per attempt at a trial"
            )
    if "answer" not in df or "study_type" not in df:
        return
    answered = df["answer"].notna().to_numpy()
    st = df["study_type"].astype(str).to_numpy()
    ans = df["answer"].astype(str).to_numpy()
    for study_type, (col, yes) in _DERIVED.items():
        if col not in df:
            continue
        m = answered & (st == study_type) & df[col].notna().to_numpy()
        bad = m & (df[col].fillna(False).astype(bool).to_numpy() != (ans == yes))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            r = df.iloc[i]
            raise DataError(
                f"{where}: row {i + 1} (participant {r['participant']}, trial {r['trial_index']}): answer "
                f"{r['answer']!r} but {col} is {bool(r[col])}; the two must agree "
                f"({int(bad.sum())} such rows)"
            )


def rows_to_frame(rows: Sequence[dict[str, Any]], where: str = "responses") -> pd.DataFrame:
    """A typed DataFrame from export rows (dicts with every column, as :func:`stimuli.responses.make_row` gives)."""
    if not rows:
        return _finish(pd.DataFrame({c: pd.Series([], dtype=object) for c in ANALYSIS_COLUMNS}), where)
    raw = pd.DataFrame.from_records(list(rows), columns=list(COLUMN_NAMES))
    conv = {}
    for name in ANALYSIS_COLUMNS:
        col, s = _COL[name], raw[name]
        if col.type in ("int", "float"):
            conv[name] = pd.to_numeric(s)
        elif col.type == "bool":
            conv[name] = s.astype("boolean") if not col.required else s.astype(bool)
        else:
            conv[name] = s
    return _finish(pd.DataFrame(conv), where)


def _read_csv_fast(path: Path, columns: Sequence[str]) -> pd.DataFrame | None:
    """The vectorised CSV path; None when the file needs the row-by-row reader (for its exact error or odd values)."""
    header = pd.read_csv(path, nrows=0, dtype=str).columns.tolist()
    missing = [c for c in COLUMN_NAMES if c not in header]
    if missing:
        raise DataError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
    if len(set(header)) != len(header):
        return None
    dtypes: dict[str, Any] = {}
    for name in columns:
        t = _COL[name].type
        dtypes[name] = "category" if t == "str" else (object if t == "json" else "float64")
    try:
        df = pd.read_csv(path, usecols=list(columns), dtype=dtypes, na_values=[""], keep_default_na=False, engine="c")
    except (ValueError, pd.errors.ParserError):
        return None
    for name in columns:
        col = _COL[name]
        s = df[name]
        if col.required and s.isna().any():
            return None
        if col.type == "bool" and not s.dropna().isin((0.0, 1.0)).all():
            return None
        if col.type == "int":
            v = s.dropna().to_numpy()
            if len(v) and not np.all(np.mod(v, 1) == 0):
                return None
        if col.type == "bool":
            df[name] = s.astype("boolean") if not col.required else s.astype(bool)
        elif col.type == "int" and not col.required:
            df[name] = s.astype("Int64")
        elif col.type == "str" and col.required and (s.cat.categories.astype(str) == "").any():
            return None
    return df


def read_responses_frame(path: str | Path, columns: Sequence[str] = ANALYSIS_COLUMNS) -> pd.DataFrame:
    """The responses of an export file (CSV or JSON) as a typed DataFrame (see the module docstring).

    ``columns``: the export's columns to keep (every column is still required in the file).
    """
    bad = [c for c in columns if c not in ANALYSIS_COLUMNS]
    if bad:
        raise ValueError(f"not analysis columns: {', '.join(bad)}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: responses file not found")
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip()
    if not head:
        raise DataError(f"{path}: empty responses file")
    if not head.startswith(b"{"):
        try:
            df = _read_csv_fast(path, columns)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: empty responses file") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
        if df is not None:
            return _finish(df, str(path), columns)
    try:
        rows = read_responses(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return rows_to_frame(rows, str(path))[_frame_columns(columns)]


# ---- batches --------------------------------------------------------------------------------
@dataclass
class Batches:
    """Loaded stimulus batches as tables.

    ``items``: ``batch_id, item_id, dataset, model, strategy, true_label, attacked_label,
    motion_fps``; ``variants``: ``batch_id, item_id, variant, role, success, final_label``
    plus one column per perceptual metric found.
    """

    batches: dict[str, Any]
    roots: dict[str, Path]
    items: pd.DataFrame
    variants: pd.DataFrame

    def motion(self, batch_id: str, item_id: str, variant: str) -> np.ndarray:
        """A variant's motion ``(T, 25, 3)`` float32 metres, read from the batch folder."""
        b = self.batches[batch_id]
        ref = b.item(item_id).variant(variant).motion
        try:
            return np.load(b.path(ref), allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as e:
            raise DataError(f"{b.path(ref)}: cannot read motion ({e})") from None

    def canonical_motion(self, batch_id: str, item_id: str, variant: str) -> np.ndarray:
        """A variant's motion with the item's root path taken out (the original's root at the origin).

        A batch draws every variant of an item on the original's trajectory (or all in place), so
        subtracting the original's root per frame gives the motions the attack compared, as the
        recognizer saw them; speeds and accelerations then exclude the walk itself.
        """
        root = self.motion(batch_id, item_id, "original")[:, STANDARD.root : STANDARD.root + 1]
        return self.motion(batch_id, item_id, variant) - root

    @property
    def provenance(self) -> dict[str, dict[str, Any]]:
        return {bid: b.provenance.to_dict() for bid, b in self.batches.items()}


def _prov_name(d: dict[str, Any], *keys: str) -> str | None:
    for k in keys:
        v = d.get(k)
        if v is not None:
            return str(v)
    return None


def load_batches(dirs: Iterable[str | Path]) -> Batches:
    """Load every batch folder (manifest and file checks; no video is decoded)."""
    from stimuli.batch import load_batch

    batches: dict[str, Any] = {}
    roots: dict[str, Path] = {}
    items, variants = [], []
    for d in dirs:
        d = Path(d)
        b = load_batch(d)
        if b.batch_id in batches:
            raise DataError(f"{d}: batch {b.batch_id!r} is also given as {roots[b.batch_id]}")
        batches[b.batch_id], roots[b.batch_id] = b, d
        prov = b.provenance
        dataset = _prov_name(prov.dataset, "name")
        model = _prov_name(prov.model, "name", "model")
        strategy = _prov_name(prov.attack, "strategy_label", "strategy")
        threat = prov.attack.get("threat_model") if isinstance(prov.attack, dict) else None
        for it in b.items:
            items.append(
                {
                    "batch_id": b.batch_id,
                    "item_id": it.id,
                    "dataset": dataset or it.source.dataset,
                    "model": model,
                    "strategy": strategy,
                    "true_label": it.true_label.name,
                    "attacked_label": None if it.attacked_label is None else it.attacked_label.name,
                    "motion_fps": it.motion_fps,
                    "threat_model": threat,
                }
            )
            for name, v in it.variants.items():
                variants.append(
                    {
                        "batch_id": b.batch_id,
                        "item_id": it.id,
                        "variant": name,
                        "role": v.role,
                        "success": v.success,
                        "robust_success": v.info.get("robust_success"),
                        "method": v.info.get("method", name) if v.role in ("attack", "level") else None,
                        "strength": float(v.info.get("strength", 1.0)) if v.role in ("attack", "level") else None,
                        "final_label": None if v.final_label is None else v.final_label.name,
                        **{f"metric:{k}": val for k, val in v.metrics.items()},
                    }
                )
    if not batches:
        raise DataError("no stimulus batch given (--batch DIR)")
    return Batches(batches, roots, pd.DataFrame(items), pd.DataFrame(variants))


def _listing(values: Iterable[Any], limit: int = 5) -> str:
    vals = [str(v) for v in values]
    more = f" (and {len(vals) - limit} more)" if len(vals) > limit else ""
    return ", ".join(repr(v) for v in vals[:limit]) + more


_KEY_COLS = ("batch_id", "item_id", "true_label", "dataset", "model", "strategy")


def _combinations(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The distinct combinations of the key columns (few), their row counts, and each row's combination.

    Works on category codes, so a million rows cost one ``np.unique`` of integers.
    """
    cats = {c: (df[c] if isinstance(df[c].dtype, pd.CategoricalDtype) else df[c].astype("category")) for c in _KEY_COLS}
    key = np.zeros(len(df), np.int64)
    radix = 1
    for c in _KEY_COLS:
        r = len(cats[c].cat.categories) + 1
        radix *= r
        if radix >= 2**62:
            raise DataError("responses: too many distinct batch / item / label values to check")  # pragma: no cover
        key = key * r + (cats[c].cat.codes.to_numpy().astype(np.int64) + 1)
    uniq, inverse = np.unique(key, return_inverse=True)
    combos: dict[str, list[Any]] = {}
    rest = uniq.copy()
    for c in reversed(_KEY_COLS):
        r = len(cats[c].cat.categories) + 1
        code = rest % r - 1
        rest //= r
        values = np.asarray(cats[c].cat.categories.astype(str), dtype=object)
        combos[c] = [values[k] if k >= 0 else None for k in code]
    out = pd.DataFrame({c: combos[c] for c in _KEY_COLS})
    out["rows"] = np.bincount(inverse, minlength=len(uniq))
    return out, inverse


def attach_batches(df: pd.DataFrame, batches: Batches, where: str = "responses") -> pd.DataFrame:
    """Check responses against the batches and fill dataset/model/strategy where the export left them empty.

    Raises :class:`DataError` for a batch id that is not among the batches, an item id
    the batch lacks, a variant the batch lacks, a true label or provenance that differs
    from the batch's. Adds ``item_key`` (batch id and item id: one clip).
    """
    if df.empty:
        raise DataError(f"{where}: no responses")
    combos, inverse = _combinations(df)
    known = set(batches.batches)
    unknown = combos[~combos["batch_id"].isin(known)]
    if len(unknown):
        given = ", ".join(f"{bid!r} ({batches.roots[bid]})" for bid in batches.batches)
        raise DataError(
            f"{where}: batch_id {_listing(unknown['batch_id'].unique())} ({int(unknown['rows'].sum())} "
            f"rows) is not the batch given: {given}"
        )
    items = batches.items
    pos = pd.MultiIndex.from_frame(items[["batch_id", "item_id"]]).get_indexer(
        pd.MultiIndex.from_frame(combos[["batch_id", "item_id"]])
    )
    if (pos < 0).any():
        bad = combos[pos < 0]
        raise DataError(
            f"{where}: unknown item id(s) {_listing(bad['item_id'].unique())} in batch "
            f"{bad['batch_id'].iloc[0]!r} ({int(bad['rows'].sum())} rows)"
        )
    names = set(batches.variants["variant"].astype(str))
    for col in ("variant", "left_variant", "right_variant", "preferred_variant"):
        s = df[col]
        vals = pd.Series(
            (s.cat.categories if isinstance(s.dtype, pd.CategoricalDtype) else s.dropna().unique())
        ).astype(str)
        bad_v = [v for v in vals if v not in names and (s == v).any()]
        if bad_v:
            raise DataError(
                f"{where}: column {col!r} names variant(s) {_listing(bad_v)} that the batch lacks; "
                f"its variants: {', '.join(sorted(names))}"
            )
    matched = items.iloc[pos].reset_index(drop=True)
    mism = combos["true_label"].to_numpy() != matched["true_label"].astype(str).to_numpy()
    if mism.any():
        i = int(np.flatnonzero(mism)[0])
        raise DataError(
            f"{where}: item {combos['item_id'].iloc[i]!r} of batch {combos['batch_id'].iloc[i]!r} has true "
            f"label {matched['true_label'].iloc[i]!r} in the batch, but {combos['true_label'].iloc[i]!r} "
            f"in the responses ({int(combos.loc[mism, 'rows'].sum())} rows)"
        )
    out = df.copy(deep=False)
    for col in ("dataset", "model", "strategy"):
        mine = combos[col]
        theirs = matched[col].astype(object).where(matched[col].notna(), None)
        diff = mine.notna() & theirs.notna() & (mine.astype(str) != theirs.astype(str))
        if diff.any():
            i = int(np.flatnonzero(diff.to_numpy())[0])
            raise DataError(
                f"{where}: {col} {mine.iloc[i]!r} differs from batch {combos['batch_id'].iloc[i]!r}'s "
                f"provenance ({theirs.iloc[i]!r}) in {int(combos.loc[diff, 'rows'].sum())} rows"
            )
        filled = mine.where(mine.notna(), theirs)
        codes, cats = pd.factorize(filled.astype(object), use_na_sentinel=True)
        out[col] = pd.Categorical.from_codes(codes[inverse], cats.astype(str))
    key_codes, key_cats = pd.factorize(combos["batch_id"] + "\x1f" + combos["item_id"])
    out["item_key"] = pd.Categorical.from_codes(key_codes[inverse], key_cats)
    return out


def describe_inputs(df: pd.DataFrame) -> dict[str, Any]:
    """Counts of the raw input (rows per study type, studies, batches), JSON-ready."""
    return {
        "rows": int(len(df)),
        "study_types": {str(k): int(v) for k, v in df["study_type"].value_counts(sort=False).items() if v},
        "studies": sorted(str(s) for s in df["study"].dropna().unique()),
        "batches": sorted(str(s) for s in df["batch_id"].dropna().unique()),
    }


def dumps(obj: Any) -> str:
    """JSON with numpy scalars and NaN (as null) handled."""

    def clean(o: Any) -> Any:
        if isinstance(o, float) and not np.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, np.floating):
            return clean(float(o))
        return o

    return json.dumps(clean(obj), default=json_default, indent=1)
