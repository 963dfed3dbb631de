"""Attack result files with known counts, for tests of ``analysis``.

:func:`write_fake_result` / :func:`write_fake_transfer` write files in the attack result
and transfer formats (:mod:`stimuli.attack_results`) from numpy, with known counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from typing import Sequence

import numpy as np

__all__ = ["write_fake_result", "write_fake_transfer"]


def write_fake_result(
    path: str | Path,
    *,
    model: str = "agcn",
    dataset: str = "hdm05_smart_subset",
    strategy: str = "ab",
    top_n: int | None = None,
    loss: str = "smart",
    status: Sequence[str] = ("success", "success", "success", "failed", "skipped"),
    true_label: Sequence[int] | None = None,
    final_label: Sequence[int] | None = None,
    class_names: Sequence[str] = ("walk", "run", "jump"),
    frames: int = 8,
    fps: float = 30.0,
    scale: float = 0.01,
    seed: int = 0,
    threat_model: str = "canonical",
    robust: Sequence[bool] | None = None,
) -> Path:
    """An attack result ``.npz`` in the format of ``attack_gen.attack.results`` (numpy only).

    ``robust``: which successes are robust (default: all of them).
    """
    from attack_gen.data.synthetic import generate_motion

    rng = np.random.default_rng(seed)
    status = np.array(list(status))
    n = len(status)
    orig = np.stack(
        [generate_motion("walk", seed=seed + i, fps=fps, num_frames=frames).positions for i in range(n)]
    ).astype(np.float32)
    adv = (orig + scale * rng.standard_normal(orig.shape)).astype(np.float32)
    true = np.array(true_label if true_label is not None else [i % len(class_names) for i in range(n)], np.int64)
    final = np.array(
        final_label
        if final_label is not None
        else [(t + 1) % len(class_names) if s == "success" else t for t, s in zip(true, status)],
        np.int64,
    )
    label = {"ab": "AB", "sa": "SA"}.get(strategy, f"AB{top_n}")
    record = {
        "format": "smart-study-attack-result",
        "version": 2,
        "checkpoint": {"model": model},
        "dataset": {"name": dataset},
        "class_names": list(class_names),
        "fps": fps,
        "config": {"strategy": strategy, "top_n": top_n, "loss": loss, "threat_model": threat_model},
        "strategy_label": label,
    }
    arrays = {
        "original": orig,
        "adversarial": adv,
        "status": status.astype("<U9"),
        "reason": np.full(n, ""),
        "success": status == "success",
        "robust_success": (status == "success") & (np.ones(n, bool) if robust is None else np.asarray(robust)),
        "iterations": np.full(n, 10),
        "true_label": true,
        "original_label": true,
        "final_label": final,
        "target": np.full(n, -1),
        "mean_joint_displacement_m": np.linalg.norm(adv - orig, axis=-1).mean((1, 2)).astype(np.float32),
        "record": np.array(json.dumps(record)),
    }
    path = Path(path)
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    return path


def write_fake_transfer(
    path: str | Path,
    rates: dict[tuple[str, str], tuple[int, int]],
    *,
    label: str = "AB",
    loss: str = "smart",
    dataset: str = "ntu60",
    threat_model: str = "canonical",
    robust: dict[tuple[str, str], int] | None = None,
) -> Path:
    """A transfer summary ``.json``: ``rates[(surrogate, target)] = (fooled, eligible)``; ``robust``: robust
    fooled counts where they differ from ``fooled``."""
    models = list(dict.fromkeys([s for s, _ in rates] + [t for _, t in rates]))

    def cell(s: str, t: str) -> dict[str, Any]:
        fooled, eligible = rates.get((s, t), (0, 0))
        kr = (robust or {}).get((s, t), fooled)
        return {
            "eligible": eligible,
            "fooled": fooled,
            "rate": fooled / eligible if eligible else None,
            "robust_fooled": kr,
            "robust_rate": kr / eligible if eligible else None,
        }

    matrix = {s: {t: cell(s, t) for t in models} for s in models}
    doc = {
        "version": 2,
        "threat_model": threat_model,
        "strategy": label.lower(),
        "label": label,
        "loss": loss,
        "models": models,
        "matrix": matrix,
        "white_box": {m: {"dataset": dataset} for m in models},
    }
    Path(path).write_text(json.dumps(doc))
    return Path(path)
