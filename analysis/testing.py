"""Helpers for tests and benchmarks of ``analysis``: a tiny real stimulus batch and fake attack results.

* :func:`build_test_batch` writes a real batch (H.264 videos, posters) of a few synthetic
  motions at 96x96, 10 fps, 1 s with the writer; the attacked variants are small smooth
  deterministic perturbations (no attack engine, no torch) and only the composites the
  analysis tests name are rendered (a few seconds on two cores).
  :func:`cached_batch` builds it once per process into a temporary folder.
* :func:`write_fake_result` / :func:`write_fake_transfer` write files in the attack
  result / transfer formats (:mod:`analysis.attack_files`) from numpy, with known counts.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["TEST_ACTIONS", "build_test_batch", "cached_batch", "write_fake_result", "write_fake_transfer"]

TEST_ACTIONS = ("walk", "wave_right", "squat", "jumping_jack", "kick_right", "punch_right")
_BUILT: dict[tuple, Path] = {}


def _perturb(x: np.ndarray, k: int, scale: float) -> np.ndarray:
    t = np.arange(len(x), dtype=np.float32)[:, None, None]
    j = np.arange(25, dtype=np.float32)[None, :, None]
    c = np.arange(3, dtype=np.float32)[None, None, :]
    return (x + scale * (k + 1) * np.sin(0.4 * t + 0.7 * j + 1.3 * c + k)).astype(np.float32)


def build_test_batch(out: str | Path, n_items: int = 5, dataset: str = "hdm05", model: str = "agcn",
                     strategy: str = "ab", workers: int = 2) -> Path:  # fmt: skip
    """Write the test batch (``n_items`` <= 6 synthetic motions; every variant fools the model but l2-bone on item 2)."""
    from attack_gen.data.synthetic import generate_motion
    from stimuli.batch import (
        ATTACK_VARIANTS,
        BatchItemInput,
        CompositePlan,
        Label,
        SourceClip,
        VariantInput,
        write_batch,
    )
    from stimuli.render import RenderConfig

    if not 1 <= n_items <= len(TEST_ACTIONS):
        raise ValueError(f"n_items must be in 1..{len(TEST_ACTIONS)}, got {n_items}")
    items = []
    for i, action in enumerate(TEST_ACTIONS[:n_items]):
        x = generate_motion(action, seed=i, fps=10.0, num_frames=10).positions.astype(np.float32)
        true = Label(action, i)
        other = Label(TEST_ACTIONS[(i + 1) % len(TEST_ACTIONS)], (i + 1) % len(TEST_ACTIONS))
        variants: dict[str, VariantInput] = {"original": VariantInput(x, final_label=true)}
        for k, name in enumerate(ATTACK_VARIANTS):
            fooled = not (i == 2 and name == "l2-bone")
            moved = _perturb(x, k, 0.004 * (1 + i % 3))
            disp = float(np.linalg.norm(moved - x, axis=-1).mean())
            variants[name] = VariantInput(moved, final_label=other if fooled else true, success=fooled,
                                          metrics={"mean_joint_displacement_m": disp})  # fmt: skip
        items.append(BatchItemInput(variants, true_label=true, attacked_label=other, motion_fps=10.0,
                                    source=SourceClip(dataset, window=i, file=f"test-{i}.npz")))  # fmt: skip
    write_batch(out, items, render_config=RenderConfig(width=96, height=96, fps=10.0, duration=1.0),
                generator_config={"command": "analysis.testing.build_test_batch", "n_items": n_items},
                provenance={"dataset": {"name": dataset}, "model": {"name": model}, "attack": {"strategy": strategy}},
                composites=CompositePlan(naturalness=("smart", "l2"), indistinguishability=("original", "smart")),
                workers=workers)  # fmt: skip
    return Path(out)


def cached_batch(n_items: int = 5, **kw: Any) -> Path:
    """The test batch, built on first use in this process (removed at exit). Treat it as read-only."""
    key = (n_items, tuple(sorted(kw.items())))
    if key not in _BUILT:
        tmp = Path(tempfile.mkdtemp(prefix="analysis-test-batch-"))
        atexit.register(shutil.rmtree, tmp, True)
        _BUILT[key] = build_test_batch(tmp / "batch", n_items, **kw)
    return _BUILT[key]



def write_fake_result(path: str | Path, *, model: str = "agcn", dataset: str = "hdm05_smart_subset",
                      strategy: str = "ab", top_n: int | None = None, loss: str = "smart",
                      status: Sequence[str] = ("success", "success", "success", "failed", "skipped"),
                      true_label: Sequence[int] | None = None, final_label: Sequence[int] | None = None,
                      class_names: Sequence[str] = ("walk", "run", "jump"), frames: int = 8, fps: float = 30.0,
                      scale: float = 0.01, seed: int = 0, threat_model: str = "canonical",
                      robust: Sequence[bool] | None = None) -> Path:  # fmt: skip
    """An attack result ``.npz`` in the format of ``attack_gen.attack.results`` (numpy only).

    ``robust``: which successes are robust (default: all of them).
    """
    from attack_gen.data.synthetic import generate_motion

    rng = np.random.default_rng(seed)
    status = np.array(list(status))
    n = len(status)
    orig = np.stack([generate_motion("walk", seed=seed + i, fps=fps, num_frames=frames).positions
                     for i in range(n)]).astype(np.float32)  # fmt: skip
    adv = (orig + scale * rng.standard_normal(orig.shape)).astype(np.float32)
    true = np.array(true_label if true_label is not None else [i % len(class_names) for i in range(n)], np.int64)
    final = np.array(final_label if final_label is not None else
                     [(t + 1) % len(class_names) if s == "success" else t for t, s in zip(true, status)], np.int64)
    label = {"ab": "AB", "sa": "SA"}.get(strategy, f"AB{top_n}")
    record = {"format": "smart-study-attack-result", "version": 2, "checkpoint": {"model": model},
              "dataset": {"name": dataset}, "class_names": list(class_names), "fps": fps,
              "config": {"strategy": strategy, "top_n": top_n, "loss": loss, "threat_model": threat_model},
              "strategy_label": label}  # fmt: skip
    arrays = {"original": orig, "adversarial": adv, "status": status.astype("<U9"), "reason": np.full(n, ""),
              "success": status == "success",
              "robust_success": (status == "success") & (np.ones(n, bool) if robust is None else np.asarray(robust)),
              "iterations": np.full(n, 10), "true_label": true,
              "original_label": true, "final_label": final, "target": np.full(n, -1),
              "mean_joint_displacement_m": np.linalg.norm(adv - orig, axis=-1).mean((1, 2)).astype(np.float32),
              "record": np.array(json.dumps(record))}  # fmt: skip
    path = Path(path)
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    return path


def write_fake_transfer(path: str | Path, rates: dict[tuple[str, str], tuple[int, int]], *, label: str = "AB",
                        loss: str = "smart", dataset: str = "ntu60", threat_model: str = "canonical",
                        robust: dict[tuple[str, str], int] | None = None) -> Path:  # fmt: skip
    """A transfer summary ``.json``: ``rates[(surrogate, target)] = (fooled, eligible)``; ``robust``: robust
    fooled counts where they differ from ``fooled``."""
    models = list(dict.fromkeys([s for s, _ in rates] + [t for _, t in rates]))
    def cell(s: str, t: str) -> dict[str, Any]:
        fooled, eligible = rates.get((s, t), (0, 0))
        kr = (robust or {}).get((s, t), fooled)
        return {"eligible": eligible, "fooled": fooled, "rate": fooled / eligible if eligible else None,
                "robust_fooled": kr, "robust_rate": kr / eligible if eligible else None}

    matrix = {s: {t: cell(s, t) for t in models} for s in models}
    doc = {"version": 2, "threat_model": threat_model, "strategy": label.lower(), "label": label, "loss": loss,
           "models": models, "matrix": matrix,
           "white_box": {m: {"dataset": dataset} for m in models}}  # fmt: skip
    Path(path).write_text(json.dumps(doc))
    return Path(path)
