"""Graded attack strength: blends ``q + s (q^ - q)`` along a found perturbation, judged again by the model.

A threshold study needs the same attack at several strengths. Here the family is the
straight line from the original ``q`` to the attacked motion ``q^`` found by the attack:
strength ``s`` in (0, 1] gives ``q + s (q^ - q)`` (``s = 1`` is the attack itself). Each
level is classified again, exactly as the attack judged its own examples: ``success`` by
the threat model's view (``canonical``: through the model's own pipeline; ``raw``: the
backbone on the motion as it is) and ``robust_success`` after the dataset's numpy pipeline
re-preprocesses it. Its perceptual metrics are those of the attack result files.
"""

from __future__ import annotations

from typing import Any
from typing import Sequence

import numpy as np

from stimuli.errors import DataError

__all__ = ["METRICS", "parse_levels", "level_name", "grade"]

METRICS = ("mean_joint_displacement_m", "acceleration_deviation", "bone_length_deviation_m")
"""The perceptual metrics every attacked or graded variant records."""


def parse_levels(text: str | int | Sequence[float]) -> tuple[float, ...]:
    """``"5"`` -> (0.2, 0.4, 0.6, 0.8, 1.0); ``"0.1,0.3,1"`` -> those strengths (sorted, in (0, 1], distinct)."""
    if isinstance(text, int):
        parts: list[str] = [str(text)]
    elif isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
    else:
        parts = [str(v) for v in text]
    if len(parts) == 1 and parts[0].isdigit():
        k = int(parts[0])
        if not 2 <= k <= 20:
            raise DataError(f"--levels: expected a count from 2 to 20 or a list of strengths, got {k}")
        return tuple(round((i + 1) / k, 6) for i in range(k))
    try:
        values = sorted(float(p) for p in parts)
    except ValueError:
        raise DataError(f"--levels: expected a count or comma-separated strengths in (0, 1], got {text!r}") from None
    if not values or any(not 0 < v <= 1 for v in values) or len(set(values)) != len(values):
        raise DataError(f"--levels: strengths must be distinct and in (0, 1], got {text!r}")
    return tuple(values)


def level_name(method: str, strength: float) -> str:
    """The variant name of ``method`` at ``strength`` (``smart-s40`` for 0.4; the method itself at 1)."""
    if strength >= 1.0:
        return method
    return f"{method}-s{round(strength * 100):d}"


def grade(
    model: Any,
    strategy: Any,
    original: np.ndarray,
    adversarial: np.ndarray,
    true: np.ndarray,
    target: np.ndarray,
    strengths: Sequence[float],
    fps: float,
    threat_model: str,
) -> dict[float, dict[str, np.ndarray]]:
    """Per strength: ``adversarial`` ``(N, T, V, 3)``, ``success``, ``robust_success``, ``final_label`` and the
    three perceptual metrics ``(N,)`` of the blends of canonical motions ``original`` and ``adversarial``."""
    import torch

    from .attack.losses import perceptual_metrics
    from .attack.strategies import ClassContext
    from .recognizer import pipeline_logits

    q = np.asarray(original, dtype=np.float32)
    d = np.asarray(adversarial, dtype=np.float32) - q
    clean = pipeline_logits(model, q)
    ctx = ClassContext(
        torch.as_tensor(true, dtype=torch.long),
        clean.argmax(-1),
        torch.softmax(clean, -1),
        torch.as_tensor(target, dtype=torch.long),
    )
    out: dict[float, dict[str, np.ndarray]] = {}
    for s in strengths:
        blend = (q + np.float32(s) * d).astype(np.float32)
        robust_logits = pipeline_logits(model, blend)
        if threat_model == "canonical":
            logits = robust_logits
        else:
            with torch.no_grad():
                logits = model.classify_raw(torch.as_tensor(blend, device=model.mean.device)).float().cpu()
        metrics = perceptual_metrics(torch.as_tensor(q), torch.as_tensor(blend), fps)
        out[float(s)] = {
            "adversarial": blend,
            "success": strategy.success(logits, ctx).numpy().astype(bool),
            "robust_success": (strategy.success(logits, ctx) & strategy.success(robust_logits, ctx)).numpy(),
            "final_label": logits.argmax(-1).numpy().astype(np.int64),
            **{k: v.numpy().astype(np.float64) for k, v in metrics.items()},
        }
    return out
