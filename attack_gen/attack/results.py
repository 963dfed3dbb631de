"""The attack result file: one per run, resumable, never half-written.

An ``.npz`` (loadable with ``allow_pickle=False``) with one row per clip of the input
clip set, in its order:

- ``original``, ``adversarial`` ``(N, T, 25, 3)`` float32 metres (``adversarial`` is the
  kept successful iterate, else the last one; NaN while pending);
- ``status`` ``(N,)`` str: ``pending``, ``success``, ``failed``, ``nonfinite``, ``skipped``;
  ``reason`` ``(N,)`` str (why it failed or was skipped; empty on success);
- ``success`` ``(N,)`` bool; ``robust_success`` ``(N,)`` bool: a success whose example still
  passes the strategy's test after the dataset's pipeline re-preprocesses it (equal to
  ``success`` under the ``canonical`` threat model); ``iterations`` ``(N,)`` int (Adam
  steps; -1 pending);
- ``true_label``, ``original_label``, ``final_label``, ``target`` ``(N,)`` int (-1: none);
- ``original_topk``, ``final_topk`` ``(N, k)`` int and ``*_prob`` ``(N, k)`` float32;
- ``loss_class``, ``loss_perceptual``, ``loss_total``, ``loss_position``,
  ``loss_acceleration``, ``loss_bone`` ``(N,)`` float32: the weighted ``Lc``, ``Lp``,
  ``L`` and the raw perceptual terms at the kept iterate;
- ``mean_joint_displacement_m``, ``acceleration_deviation`` (m/s^2),
  ``bone_length_deviation_m`` ``(N,)`` float32 (physical, see ``losses.perceptual_metrics``);
- ``clip_index`` ``(N,)`` int: the windows' indices in the source dataset;
- ``record``: a JSON document with everything needed to reproduce the run (checkpoint
  and clip-file SHA-256, dataset, the threat model and the canonical spec, every
  hyper-parameter, seed, code version, and one entry per run segment: device, batch
  size, clips attacked, seconds).

Resuming: a run whose output file exists loads it, checks it was made from the same
checkpoint, clip file and settings (everything but the batch size, which does not
change results), and attacks only the clips still ``pending``. The file is replaced
atomically (temporary file + rename) each time it is saved, so a ``kill -9`` leaves the
last complete version. A lock file beside it stops two runs writing the same result.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import subprocess
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any
from typing import Iterable
from typing import Iterator

import numpy as np

from stimuli.attack_results import METRIC_KEYS
from stimuli.attack_results import MODEL_DISPLAY
from stimuli.attack_results import RESULT_FORMAT
from stimuli.attack_results import RESULT_VERSION
from stimuli.attack_results import STATUSES
from stimuli.errors import DataError
from stimuli.fileio import atomic_write
from stimuli.fileio import json_default as _json_default
from stimuli.fileio import read_npz

from .engine import ClipResult

__all__ = [
    "RESULT_FORMAT",
    "RESULT_VERSION",
    "AttackResult",
    "load_result",
    "result_lock",
    "summarize",
    "success_table",
    "table_rows",
    "column_label",
    "code_version",
    "MODEL_DISPLAY",
    "check_resumable",
    "now",
    "COLUMNS",
    "LOSS_KEYS",
    "METRIC_KEYS",
]

LOSS_KEYS = ("class", "perceptual", "total", "position", "acceleration", "bone")

_INT_FIELDS = ("iterations", "true_label", "original_label", "final_label", "target")


def code_version() -> dict[str, Any]:
    """The package version and, in a git checkout, the commit (read-only git call)."""
    from attack_gen import __version__

    commit = None
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
            )
            commit = out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"package": __version__, "git_commit": commit}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class AttackResult:
    """All rows of a result file plus its record (see module docstring)."""

    arrays: dict[str, np.ndarray]
    record: dict[str, Any]
    path: Path | None = None
    _dirty: bool = field(default=False, repr=False)

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def new(
        cls, record: dict[str, Any], original: np.ndarray, clip_index: np.ndarray, true_label: np.ndarray, topk: int
    ) -> AttackResult:
        n = len(original)
        a: dict[str, np.ndarray] = {
            "original": np.asarray(original, np.float32),
            "adversarial": np.full_like(original, np.nan, dtype=np.float32),
            "status": np.full(n, "pending", dtype="<U9"),
            "reason": np.full(n, "", dtype="<U1"),
            "success": np.zeros(n, bool),
            "robust_success": np.zeros(n, bool),
            "clip_index": np.asarray(clip_index, np.int64),
        }
        for name in _INT_FIELDS:
            a[name] = np.full(n, -1, np.int64)
        a["true_label"] = np.asarray(true_label, np.int64).copy()
        for name in ("original_topk", "final_topk"):
            a[name] = np.full((n, topk), -1, np.int64)
            a[name + "_prob"] = np.full((n, topk), np.nan, np.float32)
        for name in LOSS_KEYS:
            a["loss_" + name] = np.full(n, np.nan, np.float32)
        for name in METRIC_KEYS:
            a[name] = np.full(n, np.nan, np.float32)
        return cls(a, record)

    def __len__(self) -> int:
        return len(self.arrays["status"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def pending(self) -> np.ndarray:
        """Indices of the clips not attacked yet."""
        return np.flatnonzero(self.arrays["status"] == "pending")

    @property
    def done(self) -> np.ndarray:
        return self.arrays["status"] != "pending"

    # ---- updates ------------------------------------------------------------------------
    def update(self, results: Iterable[ClipResult]) -> None:
        a = self.arrays
        for r in results:
            i = r.index
            a["adversarial"][i] = r.adversarial
            a["status"][i] = r.status
            if len(r.reason) > a["reason"].dtype.itemsize // 4:
                a["reason"] = a["reason"].astype(f"<U{len(r.reason)}")
            a["reason"][i] = r.reason
            a["success"][i] = r.success
            a["robust_success"][i] = r.robust
            for name in _INT_FIELDS:
                a[name][i] = getattr(r, name)
            for name in ("original_topk", "final_topk"):
                k = min(a[name].shape[1], len(getattr(r, name)))
                a[name][i] = -1
                a[name + "_prob"][i] = np.nan
                a[name][i, :k] = getattr(r, name)[:k]
                a[name + "_prob"][i, :k] = getattr(r, name + "_prob")[:k]
            for name in LOSS_KEYS:
                a["loss_" + name][i] = r.losses.get(name, np.nan)
            for name in METRIC_KEYS:
                a[name][i] = r.metrics.get(name, np.nan)
        self._dirty = True

    def fill(self, rows: np.ndarray, other: AttackResult, other_rows: np.ndarray) -> None:
        """Copy rows ``other_rows`` of ``other`` (a shard's result) into rows ``rows``."""
        for name, arr in other.arrays.items():
            mine = self.arrays.get(name)
            if mine is None:
                continue
            if arr.dtype.kind == "U" and arr.dtype.itemsize > mine.dtype.itemsize:
                mine = self.arrays[name] = mine.astype(arr.dtype)
            mine[rows] = arr[other_rows]
        self._dirty = True

    # ---- files --------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        """Write the whole file atomically (temporary file, then rename)."""
        path = Path(path or self.path or "")
        if not path.name:
            raise ValueError("no path to save the attack result to")
        payload = dict(self.arrays)
        payload["record"] = np.array(json.dumps(self.record, default=_json_default))
        atomic_write(path, lambda fh: np.savez(fh, **payload))
        self.path = path
        self._dirty = False
        return path

    @property
    def dirty(self) -> bool:
        return self._dirty


def load_result(path: str | Path) -> AttackResult:
    """Read a result file; a missing, foreign or damaged file is a one-line :class:`DataError`."""
    path = Path(path)
    arrays = read_npz(path, "attack result", ("record",))
    try:
        record = json.loads(str(arrays.pop("record")))
    except ValueError as exc:
        raise DataError(f"{path}: cannot read attack result ({exc})") from None
    if record.get("format") != RESULT_FORMAT:
        raise DataError(f"{path}: not a smart-study attack result (format {record.get('format')!r})")
    if record.get("version") != RESULT_VERSION:
        hint = " (made before robust success was recorded: run the attack again)" if record.get("version") == 1 else ""
        raise DataError(f"{path}: attack result version {record.get('version')} not supported{hint}")
    return AttackResult(arrays, record, path)


@contextlib.contextmanager
def result_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s hidden lock file; clear stale temporary files.

    A second run on the same result file fails at once with a :class:`DataError`. The
    lock dies with its process, so a killed run never leaves the file locked.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / f".{path.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{path}: another run is writing this result file") from None
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


IDENTITY_KEYS = ("checkpoint.sha256", "clips.sha256", "config", "fps", "geometry_scale")
"""Record fields that must match for a run to resume an existing result file."""


def _get(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def check_resumable(existing: AttackResult, record: dict[str, Any], num_clips: int, path: Path) -> None:
    """Raise a one-line :class:`DataError` naming what differs between ``existing`` and this run."""
    for key in IDENTITY_KEYS:
        old, new = _get(existing.record, key), _get(record, key)
        if key == "config" and isinstance(old, dict) and isinstance(new, dict):
            old = {k: v for k, v in old.items() if k != "batch_size"}
            new = {k: v for k, v in new.items() if k != "batch_size"}
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if diff:
                what = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
                raise DataError(f"{path}: exists with other settings ({what}); use another --out or delete it")
        elif old != new:
            raise DataError(
                f"{path}: exists from another run ({key} {old!r}, this run {new!r}); use another --out or delete it"
            )
    if len(existing) != num_clips:
        raise DataError(f"{path}: has {len(existing)} clips, the clip file {num_clips}")


# ---- summaries ----------------------------------------------------------------------------


def _mean(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def summarize(result: AttackResult) -> dict[str, Any]:
    """Success rate, iterations, losses and perceptual metrics of a result (JSON-ready).

    ``success_rate`` = successes / attacked clips (success + failed + nonfinite); skipped
    and pending clips are not counted. ``robust_success_rate``: the same for the successes
    that survive the pipeline's re-preprocessing. Losses and metrics are means over the successful
    clips (the adversarial examples); ``*_all`` variants include failed ones.
    """
    a, rec = result.arrays, result.record
    status = a["status"]
    counts = {s: int((status == s).sum()) for s in STATUSES}
    attacked = counts["success"] + counts["failed"] + counts["nonfinite"]
    ok = status == "success"
    robust = int((ok & a["robust_success"]).sum())
    tried = np.isin(status, ("success", "failed"))
    cfg = rec.get("config", {})
    its = a["iterations"][ok]
    return {
        "out": str(result.path) if result.path else None,
        "model": _get(rec, "checkpoint.model"),
        "checkpoint": _get(rec, "checkpoint.path"),
        "clips_file": _get(rec, "clips.path"),
        "dataset": _get(rec, "dataset.name"),
        "strategy": cfg.get("strategy"),
        "threat_model": cfg.get("threat_model"),
        "label": rec.get("strategy_label"),
        "loss": cfg.get("loss"),
        "top_n": cfg.get("top_n") if cfg.get("strategy") == "abn" else None,
        "clips": len(result),
        "attacked": attacked,
        "succeeded": counts["success"],
        "failed": counts["failed"],
        "nonfinite": counts["nonfinite"],
        "skipped": counts["skipped"],
        "pending": counts["pending"],
        "success_rate": counts["success"] / attacked if attacked else None,
        "robust_succeeded": robust,
        "robust_success_rate": robust / attacked if attacked else None,
        "iterations": {
            "mean_success": float(its.mean()) if len(its) else None,
            "median_success": float(np.median(its)) if len(its) else None,
            "max_success": int(its.max()) if len(its) else None,
            "mean_all": _mean(a["iterations"][tried]),
        },
        "losses": {k: _mean(a["loss_" + k][ok]) for k in LOSS_KEYS},
        "perceptual": {k: _mean(a[k][ok]) for k in METRIC_KEYS},
        "perceptual_all": {k: _mean(a[k][tried]) for k in METRIC_KEYS},
        "config": cfg,
    }


COLUMNS = ("AB", "AB3", "AB5", "SA")


def column_label(summary: dict[str, Any]) -> str:
    """The table column of a run: AB, AB3, AB5, SA (another ABn as it is), marked ``(raw)`` under that threat model."""
    label = str(summary.get("label"))
    return f"{label} (raw)" if summary.get("threat_model") == "raw" else label


def table_rows(
    summaries: Iterable[dict[str, Any]], key: str = "success_rate"
) -> tuple[list[str], dict[str, dict[str, float | None]]]:
    """Columns and ``{model: {column: rate}}`` in the paper's layout (``key``: which rate).

    Columns are AB, AB3, AB5, SA (plus any other ABn and the ``raw`` threat model's runs
    present); rows follow the paper's model order. A model/column given twice (e.g. two
    losses) keeps the last one.
    """
    rows: dict[str, dict[str, float | None]] = {}
    extra: list[str] = []
    for s in summaries:
        model = str(s.get("model"))
        label = column_label(s)
        if label not in COLUMNS and label not in extra:
            extra.append(label)
        rows.setdefault(model, {})[label] = s.get(key)
    order = [m for m in MODEL_DISPLAY if m in rows] + sorted(m for m in rows if m not in MODEL_DISPLAY)
    columns = list(COLUMNS) + sorted(extra)
    return columns, {m: rows[m] for m in order}


def success_table(summaries: Iterable[dict[str, Any]]) -> str:
    """The paper's Tables 1-3 layout: rows models, columns AB / AB3 / AB5 / SA; cells success / robust success, %."""
    summaries = list(summaries)
    columns, rows = table_rows(summaries)
    _, robust = table_rows(summaries, "robust_success_rate")
    used = [c for c in columns if c in COLUMNS or any(c in r for r in rows.values())]
    width = max([len("model")] + [len(MODEL_DISPLAY.get(m, m)) for m in rows] + [len("mean")])
    cw = max(15, *(len(c) for c in used))
    head = f"{'model':<{width}}  " + "  ".join(f"{c:>{cw}}" for c in used)
    lines = ["success / robust success (%)", head, "-" * len(head)]

    def cell(v: float | None, r: float | None) -> str:
        def pct(x: float | None) -> str:
            return f"{100 * x:.2f}" if x is not None and math.isfinite(x) else "-"

        return f"{'-' if v is None else pct(v) + ' / ' + pct(r):>{cw}}"

    def mean(table: dict[str, dict[str, float | None]], c: str) -> float | None:
        vals = [r[c] for r in table.values() if r.get(c) is not None]
        return float(np.mean(vals)) if vals else None

    for m, r in rows.items():
        lines.append(
            f"{MODEL_DISPLAY.get(m, m):<{width}}  " + "  ".join(cell(r.get(c), robust[m].get(c)) for c in used)
        )
    if len(rows) > 1:
        lines.append(f"{'mean':<{width}}  " + "  ".join(cell(mean(rows, c), mean(robust, c)) for c in used))
    return "\n".join(lines)
