"""The attack-result contract, once: the constants ``attack_gen`` writes with and the reader ``analysis`` uses.

Numpy and json only (no torch). Two kinds of file (``attack-gen attack`` / ``attack-gen transfer`` write them):

* an **attack result** ``.npz`` (``allow_pickle=False``) with a JSON ``record``
  (``format: "smart-study-attack-result"``, ``version: 2``). Fields this module needs:

  - arrays, one row per clip: ``status`` (str: success, failed, nonfinite, skipped,
    pending), ``success`` (bool), ``robust_success`` (bool: the success survives the
    dataset pipeline's re-preprocessing), ``true_label`` and ``final_label`` (int, -1 none),
    ``original`` and ``adversarial`` ``(N, T, 25, 3)`` float32 metres; optional: the
    perceptual metrics ``mean_joint_displacement_m``, ``acceleration_deviation``,
    ``bone_length_deviation_m`` and ``iterations``;
  - record: ``config.strategy`` (ab, abn, sa), ``config.top_n`` (abn), ``config.loss``
    (smart, l2, l2-acc, l2-bone), ``config.threat_model`` (canonical, raw), ``checkpoint.model``,
    ``dataset.name``, ``fps``,
    optional ``strategy_label`` (AB, AB3, ...) and ``class_names``.

* a **transfer summary** ``.json`` (``transfer.<label>.<loss>[.raw].json``, ``version: 2``):
  ``label``, ``loss``, ``threat_model``, ``models`` (list of names) and
  ``matrix[surrogate][target]`` = ``{"eligible", "fooled", "rate", "robust_fooled",
  "robust_rate"}``; optional ``white_box[name].dataset``.

:func:`read_attack_files` sorts paths into the two kinds by content; every problem is a
one-line :class:`stimuli.errors.DataError` naming the file and field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Iterable

import numpy as np

from stimuli.errors import DataError
from stimuli.fileio import read_npz

__all__ = [
    "RESULT_FORMAT",
    "RESULT_VERSION",
    "TRANSFER_VERSION",
    "THREAT_MODELS",
    "STATUSES",
    "ATTACKED",
    "METRIC_KEYS",
    "MODEL_DISPLAY",
    "strategy_label",
    "AttackRun",
    "TransferRun",
    "read_attack_result",
    "read_transfer",
    "read_attack_files",
]

RESULT_FORMAT = "smart-study-attack-result"
RESULT_VERSION = 2
TRANSFER_VERSION = 2
THREAT_MODELS = ("canonical", "raw")
STATUSES = ("pending", "success", "failed", "nonfinite", "skipped")
"""A clip's status in a result: not yet attacked, fooled, not fooled, diverged, not eligible."""
ATTACKED = ("success", "failed", "nonfinite")
"""The statuses of clips that were attacked."""
METRIC_KEYS = ("mean_joint_displacement_m", "acceleration_deviation", "bone_length_deviation_m")
"""The perceptual metrics stored per clip (``stimuli.controls.deviation_metrics``)."""
MODEL_DISPLAY = {"hrnn": "HRNN", "stgcn": "ST-GCN", "asgcn": "AS-GCN", "dgnn": "DGNN", "agcn": "2s-AGCN"}
"""Registry name -> the paper's name, in the paper's row order."""
_REQUIRED_ARRAYS = ("status", "success", "robust_success", "true_label", "final_label", "original", "adversarial")
_OPTIONAL_ARRAYS = (*METRIC_KEYS, "iterations")


def strategy_label(strategy: Any, top_n: Any = None) -> str | None:
    """``("abn", 3)`` -> ``"AB3"``, ``"ab"`` -> ``"AB"``, ``"AB5"`` -> ``"AB5"``, ``"sa"`` -> ``"SA"``; else None."""
    if not isinstance(strategy, str):
        return None
    s = strategy.strip().upper()
    if s == "ABN" and top_n is not None:
        s = f"AB{int(top_n)}"
    return s if s in ("AB", "SA") or re.fullmatch(r"AB\d+", s) else None


@dataclass
class AttackRun:
    """One white-box attack run: what was attacked, how, and per clip what happened."""

    path: Path
    model: str
    dataset: str
    strategy: str
    label: str
    loss: str
    fps: float
    class_names: list[str]
    status: np.ndarray
    success: np.ndarray
    robust_success: np.ndarray
    threat_model: str
    true_label: np.ndarray
    final_label: np.ndarray
    original: np.ndarray
    adversarial: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def attacked(self) -> np.ndarray:
        """Clips that were attacked (success, failed or non-finite; skipped and pending clips are not)."""
        return np.isin(self.status, ATTACKED)

    def class_name(self, k: int) -> str:
        return self.class_names[k] if 0 <= k < len(self.class_names) else str(k)


@dataclass
class TransferRun:
    """A black-box transfer matrix: ``matrix[surrogate][target] = {"eligible", "fooled", "rate"}``."""

    path: Path
    label: str
    loss: str
    models: list[str]
    matrix: dict[str, dict[str, dict[str, Any]]]
    dataset: str | None
    threat_model: str


def _get(d: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        d = d.get(key) if isinstance(d, dict) else None
    return d


def read_attack_result(path: str | Path) -> AttackRun:
    """Read and check one ``.npz`` attack result (see the module docstring for the fields used)."""
    path = Path(path)
    z = read_npz(path, "attack result", ("record",))
    try:
        record = json.loads(str(z["record"]))
    except ValueError as e:
        raise DataError(f"{path}: cannot read attack result ({e})") from None
    missing = [k for k in _REQUIRED_ARRAYS if k not in z]
    if missing:
        raise DataError(f"{path}: attack result lacks array(s) {', '.join(missing)}")
    arrays = {k: z[k] for k in (*_REQUIRED_ARRAYS, *_OPTIONAL_ARRAYS) if k in z}
    if not isinstance(record, dict) or record.get("format") != RESULT_FORMAT:
        fmt = record.get("format") if isinstance(record, dict) else None
        raise DataError(f"{path}: not a smart-study attack result (record format {fmt!r})")
    if record.get("version") != RESULT_VERSION:
        raise DataError(
            f"{path}: attack result version {record.get('version')!r} not supported "
            f"(this code reads version {RESULT_VERSION})"
        )
    needed = {
        "config.strategy": str,
        "config.loss": str,
        "config.threat_model": str,
        "checkpoint.model": str,
        "fps": (int, float),
    }
    for key, typ in needed.items():
        v = _get(record, key)
        if not isinstance(v, typ) or isinstance(v, bool):
            raise DataError(f"{path}: record field {key!r} missing or of the wrong type ({v!r})")
    n = len(arrays["status"])
    for k, a in arrays.items():
        if a.shape[:1] != (n,):
            raise DataError(f"{path}: array {k!r} has {a.shape[0] if a.ndim else 0} rows, 'status' has {n}")
    for k in ("original", "adversarial"):
        if arrays[k].ndim != 4 or arrays[k].shape[2:] != (25, 3):
            raise DataError(f"{path}: array {k!r} must have shape (N, T, 25, 3), got {arrays[k].shape}")
    if arrays["original"].shape != arrays["adversarial"].shape:
        raise DataError(
            f"{path}: 'original' {arrays['original'].shape} and 'adversarial' "
            f"{arrays['adversarial'].shape} differ in shape"
        )
    if _get(record, "config.threat_model") not in THREAT_MODELS:
        raise DataError(
            f"{path}: record field 'config.threat_model' is {_get(record, 'config.threat_model')!r}; "
            f"expected one of {', '.join(THREAT_MODELS)}"
        )
    status = arrays["status"].astype(str)
    odd = sorted(set(status) - set(STATUSES))
    if odd:
        raise DataError(f"{path}: unknown status value(s) {', '.join(odd)}; expected {', '.join(STATUSES)}")
    strategy = str(_get(record, "config.strategy"))
    label = record.get("strategy_label") or strategy_label(strategy, _get(record, "config.top_n")) or strategy
    names_ = record.get("class_names")
    return AttackRun(
        path=path,
        model=str(_get(record, "checkpoint.model")),
        dataset=str(_get(record, "dataset.name") or "unknown"),
        strategy=strategy,
        label=str(label),
        loss=str(_get(record, "config.loss")),
        fps=float(record["fps"]),
        class_names=[str(c) for c in names_] if isinstance(names_, list) else [],
        status=status,
        success=arrays["success"].astype(bool),
        robust_success=arrays["robust_success"].astype(bool) & arrays["success"].astype(bool),
        threat_model=str(_get(record, "config.threat_model")),
        true_label=arrays["true_label"].astype(np.int64),
        final_label=arrays["final_label"].astype(np.int64),
        original=arrays["original"].astype(np.float32),
        adversarial=arrays["adversarial"].astype(np.float32),
        metrics={k: arrays[k] for k in _OPTIONAL_ARRAYS if k in arrays},
    )


def read_transfer(path: str | Path) -> TransferRun:
    """Read and check one transfer summary ``.json``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: transfer summary not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a JSON transfer summary ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("matrix"), dict) or not isinstance(doc.get("models"), list):
        raise DataError(f"{path}: not a transfer summary (expected 'models' and 'matrix')")
    if doc.get("version") != TRANSFER_VERSION:
        raise DataError(
            f"{path}: transfer summary version {doc.get('version')!r} not supported (this code reads "
            f"version {TRANSFER_VERSION}, which reports robust success; run attack-gen transfer again)"
        )
    if doc.get("threat_model") not in THREAT_MODELS:
        raise DataError(
            f"{path}: field 'threat_model' is {doc.get('threat_model')!r}; expected one of {', '.join(THREAT_MODELS)}"
        )
    models = [str(m) for m in doc["models"]]
    matrix = doc["matrix"]
    keys = {"eligible", "fooled", "rate", "robust_fooled", "robust_rate"}
    for s in models:
        for t in models:
            row = matrix.get(s)
            cell = row.get(t) if isinstance(row, dict) else None
            if not isinstance(cell, dict) or not keys <= set(cell):
                raise DataError(f"{path}: matrix[{s!r}][{t!r}] must have {', '.join(sorted(keys))}")
    wb = doc.get("white_box") if isinstance(doc.get("white_box"), dict) else {}
    datasets = {str(wb[m]["dataset"]) for m in models if isinstance(wb.get(m), dict) and wb[m].get("dataset")}
    label = doc.get("label") or strategy_label(doc.get("strategy"), _get(doc, "config.top_n")) or "?"
    return TransferRun(
        path,
        str(label),
        str(doc.get("loss") or "smart"),
        models,
        matrix,
        datasets.pop() if len(datasets) == 1 else None,
        str(doc["threat_model"]),
    )


def read_attack_files(paths: Iterable[str | Path]) -> tuple[list[AttackRun], list[TransferRun]]:
    """Results (``.npz``) and transfer summaries (``.json``), recognised by content."""
    runs, transfers = [], []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise DataError(f"{p}: attack file not found")
        with p.open("rb") as fh:
            magic = fh.read(4)
        if magic.startswith(b"PK"):
            runs.append(read_attack_result(p))
        elif magic.lstrip()[:1] in (b"{", b""):
            transfers.append(read_transfer(p))
        else:
            raise DataError(f"{p}: neither an attack result (.npz) nor a transfer summary (.json)")
    return runs, transfers
