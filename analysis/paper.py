"""The SMART paper's published numbers (CVPR 2021; ``SPEC.md`` §4), as data.

Everything the report puts "beside ours" comes from here, in percent, keyed by the
paper's names: datasets ``HDM05``, ``MHAD``, ``NTU``; models ``HRNN``, ``ST-GCN``,
``AS-GCN``, ``DGNN``, ``2s-AGCN``; strategies ``AB``, ``AB3``, ``AB5``, ``SA``. Use
:func:`paper_dataset`, :func:`paper_model` and :func:`paper_strategy` to map our names
(``hdm05_smart_subset``, ``agcn``, ``abn`` with ``top_n=3``...) onto them.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from stimuli.attack_results import MODEL_DISPLAY
from stimuli.attack_results import strategy_label

__all__ = [
    "DATASETS",
    "MODELS",
    "STRATEGIES",
    "METHODS",
    "WHITE_BOX",
    "TRANSFER",
    "DECEITFULNESS",
    "INDISTINGUISHABILITY",
    "NATURALNESS_ORDER",
    "PERCEPTUAL_SETTING",
    "PERCEPTUAL_PARTICIPANTS",
    "MODEL_NAMES",
    "paper_dataset",
    "paper_model",
    "paper_strategy",
    "display_model",
]

DATASETS = ("HDM05", "MHAD", "NTU")
MODELS = ("HRNN", "ST-GCN", "AS-GCN", "DGNN", "2s-AGCN")
"""The paper's row order."""
STRATEGIES = ("AB", "AB3", "AB5", "SA")
METHODS = ("smart", "l2", "l2-acc", "l2-bone")
"""SMART and its ablations (the Naturalness study's methods), in the batch's variant names."""

MODEL_NAMES = MappingProxyType(
    {**MODEL_DISPLAY, "2s-agcn": "2s-AGCN", "st-gcn": "ST-GCN", "as-gcn": "AS-GCN", "2sagcn": "2s-AGCN"}
)
"""Our registry names (``attack_gen.models``) and spellings of them -> the paper's names."""


def _table(rows: dict[str, dict[str, tuple[float, float, float]]]) -> MappingProxyType:
    out = {}
    for model, cols in rows.items():
        for strategy, values in cols.items():
            for dataset, v in zip(DATASETS, values):
                out[(model, dataset, strategy)] = v
    return MappingProxyType(out)


WHITE_BOX = _table(
    {
        "HRNN": {
            "AB": (100, 100, 99.56),
            "AB3": (100, 100, 99.84),
            "AB5": (100, 100, 99.62),
            "SA": (67.19, 57.41, 49.17),
        },
        "ST-GCN": {
            "AB": (99.57, 99.96, 100),
            "AB3": (93.30, 76.86, 95.86),
            "AB5": (90.28, 70.5, 91.32),
            "SA": (74.95, 66.93, 100),
        },
        "AS-GCN": {
            "AB": (99.36, 92.84, 97.43),
            "AB3": (91.46, 42.07, 91.18),
            "AB5": (82.83, 22.34, 82.47),
            "SA": (64.62, 40.18, 99.48),
        },
        "DGNN": {
            "AB": (96.09, 94.46, 92.51),
            "AB3": (93.55, 87.54, 98.73),
            "AB5": (86.32, 74.27, 97.62),
            "SA": (97.26, 96.13, 99.99),
        },
        "2s-AGCN": {
            "AB": (99.18, 95.97, 100),
            "AB3": (83.40, 55.9, 100),
            "AB5": (75.2, 32.08, 100),
            "SA": (96.72, 97.53, 100),
        },
        "mean": {
            "AB": (98.84, 96.65, 97.9),
            "AB3": (92.34, 72.47, 97.12),
            "AB5": (86.93, 59.84, 94.21),
            "SA": (80.15, 71.64, 89.73),
        },
    }
)
"""Tables 1-3: white-box success rate (%) by ``(model, dataset, strategy)``; ``model="mean"``: the mean row."""

TRANSFER = MappingProxyType(
    {
        ("DGNN", "2s-AGCN", "AB"): 90.6,
        ("DGNN", "2s-AGCN", "AB5"): 90.99,
        ("DGNN", "AS-GCN", "AB"): 7.24,
        ("DGNN", "AS-GCN", "AB5"): 7.63,
        ("2s-AGCN", "DGNN", "AB"): 98.37,
        ("2s-AGCN", "DGNN", "AB5"): 98.46,
        ("2s-AGCN", "AS-GCN", "AB"): 98.10,
        ("2s-AGCN", "AS-GCN", "AB5"): 98.96,
        ("AS-GCN", "DGNN", "AB"): 10.90,
        ("AS-GCN", "DGNN", "AB5"): 12.97,
        ("AS-GCN", "2s-AGCN", "AB"): 91.17,
        ("AS-GCN", "2s-AGCN", "AB5"): 91.99,
    }
)
"""Table 4: black-box transfer success (%) on NTU by ``(surrogate, target, strategy)``."""

DECEITFULNESS = MappingProxyType({"overall": 93.32, "HDM05": 86.77, "MHAD": 96.38})
"""Share (%) of trials where the ground-truth label was chosen (Section 4.5.1)."""
INDISTINGUISHABILITY = MappingProxyType({"overall": 81.9, "HDM05": 80.83, "MHAD": 83.97})
"""Share (%) of attacked (perceivability) trials judged unchanged, after screening (Section 4.5.1)."""
NATURALNESS_ORDER = ("smart", "l2-acc", "l2", "l2-bone")
"""Fig. 6: users' preference, most natural first (SMART > l2-acc > l2 > l2-bone); the paper gives no numbers."""
PERCEPTUAL_SETTING = MappingProxyType({"model": "2s-AGCN", "strategy": "AB", "datasets": ("HDM05", "MHAD")})
PERCEPTUAL_PARTICIPANTS = 37


def paper_dataset(name: Any) -> str | None:
    """``"hdm05_smart_subset"`` -> ``"HDM05"``; MHAD (Berkeley) and NTU likewise; anything else None."""
    if not isinstance(name, str):
        return None
    s = name.lower()
    if s.startswith("hdm"):
        return "HDM05"
    if "mhad" in s or "berkeley" in s:
        return "MHAD"
    if s.startswith("ntu"):
        return "NTU"
    return None


def paper_model(name: Any) -> str | None:
    """``"agcn"`` (or ``"agcn:ckpt"`` from a transfer file, or ``"2s-AGCN"``) -> ``"2s-AGCN"``; unknown -> None."""
    if not isinstance(name, str):
        return None
    key = name.split(":", 1)[0].strip().lower()
    if key in MODEL_NAMES:
        return MODEL_NAMES[key]
    for m in MODELS:
        if m.lower() == key:
            return m
    return None


def display_model(name: Any) -> str:
    """The paper's name where there is one, else the name as given."""
    return paper_model(name) or str(name)


def paper_strategy(strategy: Any, top_n: Any = None) -> str | None:
    """``("abn", 3)`` -> ``"AB3"``, ``"ab"`` -> ``"AB"``, ``"AB5"`` -> ``"AB5"``, ``"sa"`` -> ``"SA"``; else None."""
    return strategy_label(strategy, top_n)
