"""Running attacks: check a clip set against its checkpoint, attack it into a resumable result file.

What ``attack-gen attack`` and ``transfer`` (:mod:`attack_gen.cli`) and ``bench/`` call:
:func:`run_attack`, :func:`check_clips_match` and :func:`transfer_cell`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from typing import Callable
from typing import TypeVar

import numpy as np

from stimuli.errors import DataError
from stimuli.fileio import file_sha256

from .engine import AttackConfig
from .engine import AttackError
from .engine import ClipResult
from .engine import attack as run_engine
from .engine import resolve_targets
from .results import AttackResult
from .results import check_resumable
from .results import code_version
from .results import load_result
from .results import now
from .results import result_lock
from .results import summarize
from .strategies import ClassContext

__all__ = ["run_attack", "check_clips_match", "transfer_cell"]

F = TypeVar("F", bound=Callable[..., Any])


# ---- checks ---------------------------------------------------------------------------------


def check_clips_match(
    clips: Any, clips_path: Path, info: dict[str, Any], ckpt_path: Path, *, same_checkpoint: bool = True
) -> None:
    """Raise a one-line :class:`DataError` when a clip set does not fit a checkpoint.

    Compares class names, window length, frame rate and (``same_checkpoint``) the
    checkpoint SHA-256 recorded in the clip file, which must be the attacked model's.
    """
    names, want = clips.class_names, list(info.get("class_names", []))
    if names != want:
        diff = next((i for i, (a, b) in enumerate(zip(names, want)) if a != b), min(len(names), len(want)))
        a = names[diff] if diff < len(names) else "<none>"
        b = want[diff] if diff < len(want) else "<none>"
        raise DataError(
            f"{clips_path}: class names differ from checkpoint {ckpt_path} ({len(names)} vs "
            f"{len(want)} classes; class {diff} is {a!r} vs {b!r})"
        )
    t = int(clips.motions.shape[1])
    if info.get("window") is not None and int(info["window"]) != t:
        raise DataError(
            f"{clips_path}: clips have {t} frames; checkpoint {ckpt_path} was trained on {info['window']}-frame windows"
        )
    fps, model_fps = clips.meta.get("fps"), info.get("fps")
    if fps is None:
        raise DataError(f"{clips_path}: clip file has no frame rate (meta.fps)")
    if model_fps is not None and abs(float(fps) - float(model_fps)) > 1e-6:
        raise DataError(f"{clips_path}: clips at {fps} fps; checkpoint {ckpt_path} was trained at {model_fps} fps")
    if same_checkpoint:
        meta = clips.meta.get("checkpoint") or {}
        sha = meta.get("sha256")
        if not sha:
            raise DataError(f"{clips_path}: clip file records no checkpoint hash (meta.checkpoint.sha256)")
        if sha != info.get("sha256"):
            raise DataError(
                f"{clips_path}: collected with checkpoint {meta.get('path')} (sha256 {sha[:12]}), "
                f"not {ckpt_path} (sha256 {str(info.get('sha256'))[:12]})"
            )
    if clips.meta.get("canonical") != info.get("canonical"):
        raise DataError(
            f"{clips_path}: clips were made with canonicalisation {clips.meta.get('canonical')}, "
            f"checkpoint {ckpt_path} applies {info.get('canonical')}"
        )
    k = len(want)
    if len(clips) and (clips.labels.min() < 0 or clips.labels.max() >= k):
        raise DataError(f"{clips_path}: labels outside 0..{k - 1}")


def _parse_target(value: str | None, class_names: list[str]) -> int | None:
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        k = int(value)
        if not 0 <= k < len(class_names):
            raise AttackError(f"--target {k} is outside 0..{len(class_names) - 1}")
        return k
    if value in class_names:
        return class_names.index(value)
    raise AttackError(f"--target {value!r} is neither a class index nor a class name")


# ---- one attack run -------------------------------------------------------------------------


def _record(
    config: AttackConfig, ckpt_path: Path, info: dict[str, Any], clips_path: Path, clips: Any, std: float
) -> dict[str, Any]:
    import torch

    from .results import RESULT_FORMAT
    from .results import RESULT_VERSION

    return {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "created": now(),
        "code_version": code_version(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "checkpoint": {
            "path": str(ckpt_path),
            "sha256": info.get("sha256"),
            "model": info.get("model"),
            "size": info.get("size"),
            "window": info.get("window"),
            "fps": info.get("fps"),
        },
        "clips": {"path": str(clips_path), "sha256": file_sha256(clips_path), "count": len(clips)},
        "dataset": clips.meta.get("dataset"),
        "threat_model": config.threat_model,
        "canonical": info.get("canonical"),
        "class_names": clips.class_names,
        "fps": float(clips.meta["fps"]),
        "geometry_scale": std,
        "config": config.to_json(),
        "strategy_label": config.label,
        "term_weights": config.term_weights(),
        "runs": [],
    }


def run_attack(
    checkpoint: Path,
    clips_path: Path,
    config: AttackConfig,
    out: Path,
    *,
    target_name: str | None = None,
    device: str | None = None,
    limit: int | None = None,
    save_every: float = 30.0,
    progress: bool = True,
) -> tuple[dict[str, Any], AttackResult]:
    """Attack (or resume attacking) a clip set with a checkpoint; write ``out``; return the summary."""
    from tqdm import tqdm

    from attack_gen.data.clips import load_clips
    from attack_gen.recognizer import load_checkpoint

    model, info = load_checkpoint(checkpoint, device)
    clips = load_clips(clips_path)
    check_clips_match(clips, clips_path, info, checkpoint)
    if target_name is not None:
        config = AttackConfig(**{**config.to_json(), "target": _parse_target(target_name, clips.class_names)})
    record = _record(config, checkpoint, info, clips_path, clips, float(model.std))
    with result_lock(out):
        if out.exists():
            result = load_result(out)
            check_resumable(result, record, len(clips), out)
        else:
            result = AttackResult.new(
                record, clips.motions, clips.index, clips.labels, min(config.topk, len(clips.class_names))
            )
            result.path = out
        already = int(result.done.sum())
        todo = result.pending
        if limit is not None:
            todo = todo[: max(limit, 0)]
        segment = {
            "started": now(),
            "device": str(model.mean.device),
            "batch_size": config.batch_size,
            "attacked": 0,
            "seconds": None,
            "code_version": code_version(),
            "torch_version": record["torch_version"],
        }
        result.record.setdefault("runs", []).append(segment)
        start = last_save = time.perf_counter()
        bar = tqdm(
            total=len(todo),
            desc=f"attack {info.get('model')} {config.label} {config.loss}",
            unit="clip",
            file=sys.stderr,
            disable=not progress or not len(todo),
        )

        def on_results(group: list[ClipResult]) -> None:
            nonlocal last_save
            result.update(group)
            segment["attacked"] += len(group)
            if time.perf_counter() - last_save >= save_every:
                segment["seconds"] = time.perf_counter() - start
                result.save(out)
                last_save = time.perf_counter()

        targets = resolve_targets(config, clips.labels, len(clips.class_names))
        if len(todo):
            run_engine(
                model,
                clips.motions,
                clips.labels,
                fps=float(clips.meta["fps"]),
                config=config,
                num_classes=len(clips.class_names),
                targets=targets,
                indices=todo.tolist(),
                on_results=on_results,
                progress=bar.update,
            )
        bar.close()
        segment["seconds"] = time.perf_counter() - start
        segment["finished"] = now()
        result.save(out)
    summary = summarize(result)
    summary.update({"resumed": already, "attacked_this_run": int(segment["attacked"]), "seconds": segment["seconds"]})
    return summary, result


def transfer_cell(strategy: Any, target_model: Any, result: AttackResult, threat_model: str) -> dict[str, Any]:
    """Of the surrogate's successful examples whose original the target recognises, the share that fool it.

    ``fooled`` by the threat model's view (``canonical``: through the target's own pipeline,
    so it equals ``robust_fooled``; ``raw``: the target's backbone on the example as it is);
    ``robust_fooled``: after the target's dataset pipeline re-preprocesses the example.
    """
    import torch

    from attack_gen.recognizer import pipeline_logits
    from attack_gen.train import predict

    ok = np.flatnonzero(result["status"] == "success")
    empty = {
        "eligible": 0,
        "fooled": 0,
        "rate": None,
        "robust_fooled": 0,
        "robust_rate": None,
        "surrogate_successes": int(len(ok)),
    }
    if not len(ok):
        return empty
    true = result["true_label"][ok]
    clean = predict(target_model, result["original"][ok]).argmax(1)
    eligible = ok[clean == true]
    if not len(eligible):
        return empty
    adv = result["adversarial"][eligible]
    t = torch.as_tensor(result["true_label"][eligible])

    def count(logits: torch.Tensor) -> int:
        ctx = ClassContext(t, t, torch.zeros(len(t), logits.shape[1]), torch.as_tensor(result["target"][eligible]))
        return int(strategy.success(logits, ctx).sum())

    robust = count(pipeline_logits(target_model, adv))
    if threat_model == "canonical":
        fooled = robust
    else:
        with torch.no_grad():
            fooled = count(target_model.classify_raw(torch.as_tensor(adv, device=target_model.mean.device)).cpu())
    n = int(len(eligible))
    return {
        "eligible": n,
        "fooled": fooled,
        "rate": fooled / n,
        "robust_fooled": robust,
        "robust_rate": robust / n,
        "surrogate_successes": int(len(ok)),
    }
