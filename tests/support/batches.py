"""Tiny real stimulus batches for tests and benchmarks: one builder, two presets.

Both are written by the real writer (H.264 videos, posters) from synthetic motions at
96x96, 10 fps, 1 s; the attacked variants are small smooth deterministic perturbations
(no attack engine, no torch), and every variant fools the model except ``l2-bone`` on the
third item.

* :func:`server_batch` - three or four items whose every attack yields ``jog``, every
  composite rendered: what the study server's tests import (:data:`SERVER_ACTIONS`).
* :func:`analysis_batch` - up to six items, each attacked to the next item's class, with a
  displacement metric, only the composites the analysis tests name.
* :func:`threshold_batch` - the server batch's items with SMART and l2 graded: variants of role
  ``level`` at strengths :data:`THRESHOLD_LEVELS` (the blend ``x + s (x^ - x)``; they fool the model
  from 0.75 on), SMART "rerun" at class weights :data:`THRESHOLD_WEIGHTS` (method ``smart-cw``), the mean
  joint displacement of every attacked clip, original|X composites only.

Each is built once per process into a temporary folder (removed at exit); treat it as
read-only. :func:`build_batch` writes one anywhere.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SERVER_ACTIONS",
    "ANALYSIS_ACTIONS",
    "THRESHOLD_LEVELS",
    "build_batch",
    "server_batch",
    "analysis_batch",
    "threshold_batch",
    "perturb",
]

SERVER_ACTIONS = ("walk", "wave_right", "squat", "jumping_jack")
"""True classes of the server batch's items (in order); every attack on them yields 'jog', except l2-bone on the
third."""
ANALYSIS_ACTIONS = ("walk", "wave_right", "squat", "jumping_jack", "kick_right", "punch_right")
THRESHOLD_LEVELS = (0.25, 0.5, 0.75)
"""Strengths of the threshold batch's level variants (1: the attack itself)."""
THRESHOLD_WEIGHTS = (0.2, 0.8)
"""Class weights of the threshold batch's SMART reruns (variants smart-cw20, smart-cw80 of the method smart-cw)."""

_BUILT: dict[tuple[Any, ...], Path] = {}


def perturb(x: np.ndarray, k: int, scale: float) -> np.ndarray:
    """``x`` moved by a smooth deterministic pattern of amplitude ``scale * (k + 1)`` metres."""
    t = np.arange(len(x), dtype=np.float32)[:, None, None]
    j = np.arange(x.shape[1], dtype=np.float32)[None, :, None]
    c = np.arange(3, dtype=np.float32)[None, None, :]
    return (x + scale * (k + 1) * np.sin(0.4 * t + 0.7 * j + 1.3 * c + k)).astype(np.float32)


def build_batch(
    out: str | Path,
    n_items: int,
    *,
    preset: str,
    dataset: str = "synthetic",
    model: str = "stgcn",
    strategy: str = "ab",
    workers: int = 2,
) -> Path:
    """Write the ``preset`` ("server" or "analysis") batch of ``n_items`` items to ``out``; returns ``out``."""
    from attack_gen.data.synthetic import generate_motion
    from stimuli.batch import ATTACK_VARIANTS
    from stimuli.batch import BatchItemInput
    from stimuli.batch import CompositePlan
    from stimuli.batch import Label
    from stimuli.batch import SourceClip
    from stimuli.batch import VariantInput
    from stimuli.batch import write_batch
    from stimuli.render import RenderConfig

    actions = ANALYSIS_ACTIONS if preset == "analysis" else SERVER_ACTIONS
    losses = ("smart", "l2") if preset == "threshold" else ATTACK_VARIANTS
    if not 1 <= n_items <= len(actions):
        raise ValueError(f"n_items must be in 1..{len(actions)}, got {n_items}")
    items = []
    for i, action in enumerate(actions[:n_items]):
        x = generate_motion(action, seed=i, fps=10.0, num_frames=10).positions.astype(np.float32)
        if preset != "analysis":
            true, attacked, scale = Label(action, 10 + i), Label("jog", 1), 0.015
        else:
            nxt = (i + 1) % len(actions)
            true, attacked, scale = Label(action, i), Label(actions[nxt], nxt), 0.004 * (1 + i % 3)
        variants: dict[str, VariantInput] = {"original": VariantInput(x, final_label=true)}
        for k, name in enumerate(losses):
            fooled = not (i == 2 and name == "l2-bone")
            moved = perturb(x, k, scale)
            metrics = {"mean_joint_displacement_m": float(np.linalg.norm(moved - x, axis=-1).mean())}
            variants[name] = VariantInput(
                moved,
                final_label=attacked if fooled else true,
                success=fooled,
                metrics=metrics if preset != "server" else {},
            )
            for s in THRESHOLD_LEVELS if preset == "threshold" else ():
                blend = (x + s * (moved - x)).astype(np.float32)
                variants[f"{name}-s{round(s * 100)}"] = VariantInput(
                    blend,
                    final_label=attacked if s >= 0.75 else true,
                    success=s >= 0.75,
                    metrics={"mean_joint_displacement_m": float(np.linalg.norm(blend - x, axis=-1).mean())},
                    info={"method": name, "strength": s, "robust_success": s >= 0.75},
                    role="level",
                )
            for w in THRESHOLD_WEIGHTS if preset == "threshold" and name == "smart" else ():
                rerun = perturb(x, 2, scale * w)  # another pattern: a rerun finds another perturbation
                variants[f"smart-cw{round(w * 100)}"] = VariantInput(
                    rerun,
                    final_label=attacked if w > 0.5 else true,
                    success=w > 0.5,
                    metrics={"mean_joint_displacement_m": float(np.linalg.norm(rerun - x, axis=-1).mean())},
                    info={"method": "smart-cw", "strength": w, "class_weight": w, "robust_success": w > 0.5},
                    role="level",
                )
        items.append(
            BatchItemInput(
                variants,
                true_label=true,
                attacked_label=attacked,
                motion_fps=10.0,
                source=SourceClip(dataset, window=i, file=f"{preset}-{i}.npz"),
            )
        )
    composites = {
        "server": None,
        "analysis": CompositePlan(naturalness=("smart", "l2"), indistinguishability=("original", "smart")),
        "threshold": CompositePlan(naturalness=("smart", "l2"), indistinguishability=None),
    }[preset]
    write_batch(
        out,
        items,
        render_config=RenderConfig(width=96, height=96, fps=10.0, duration=1.0),
        generator_config={"command": "tests.support.batches.build_batch", "preset": preset, "n_items": n_items},
        provenance={"dataset": {"name": dataset}, "model": {"name": model}, "attack": {"strategy": strategy}},
        workers=workers,
        **({} if composites is None else {"composites": composites}),
    )
    return Path(out)


def _cached(n_items: int, preset: str, **kw: Any) -> Path:
    key = (preset, n_items, tuple(sorted(kw.items())))
    if key not in _BUILT:
        tmp = Path(tempfile.mkdtemp(prefix=f"{preset}-test-batch-"))
        atexit.register(shutil.rmtree, tmp, True)
        _BUILT[key] = build_batch(tmp / "batch", n_items, preset=preset, **kw)
    return _BUILT[key]


def server_batch(n_items: int = 3) -> Path:
    """The study server's test batch (``n_items`` <= 4), built on first use in this process."""
    return _cached(n_items, "server")


def threshold_batch(n_items: int = 3) -> Path:
    """The threshold test batch (``n_items`` <= 4), built on first use in this process."""
    return _cached(n_items, "threshold")


def analysis_batch(n_items: int = 5, **kw: Any) -> Path:
    """The analysis test batch (``n_items`` <= 6; ``dataset``, ``model``, ``strategy`` as in the provenance)."""
    kw.setdefault("dataset", "hdm05")
    kw.setdefault("model", "agcn")
    return _cached(n_items, "analysis", **kw)
