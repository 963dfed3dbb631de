"""Running attacks: check a clip set against its checkpoint, attack it into a resumable result file.

What ``attack-gen attack`` and ``transfer`` (:mod:`attack_gen.cli`) and ``bench/`` call:
:func:`run_attack`, :func:`check_clips_match` and :func:`transfer_cell`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Callable
from typing import ClassVar
from typing import Sequence
from typing import TypeVar

import numpy as np

from attack_gen.jobs import Job
from attack_gen.jobs import Runner
from stimuli.attack_results import RESULT_FORMAT
from stimuli.attack_results import RESULT_VERSION
from stimuli.errors import DataError
from stimuli.fileio import file_sha256

from .engine import AttackConfig
from .engine import AttackError
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

__all__ = ["run_attack", "run_attacks", "AttackRun", "AttackShard", "SHARD_SIZE", "check_clips_match", "transfer_cell"]

SHARD_SIZE = 16
"""Clips per attack job: small enough to spread a run over workers, large enough for the engine's batching."""

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


@dataclass(frozen=True)
class AttackShard(Job):
    """Attack rows ``rows`` of a clip file with a checkpoint and settings; the output is those rows' result file.

    The key holds the checkpoint's and clip file's SHA-256 and the settings a result depends
    on (everything but the batch size); the paths and the device only say where to find them.
    SA targets come from the settings' seed and the whole clip file's labels, so a shard gets
    the same targets wherever it runs.
    """

    kind: ClassVar[str] = "attack"

    checkpoint_sha256: str
    clips_sha256: str
    config: dict[str, Any]
    rows: tuple[int, ...]
    checkpoint: str = field(default="", metadata={"key": False})
    clips: str = field(default="", metadata={"key": False})
    batch_size: int = field(default=32, metadata={"key": False})
    device: str | None = field(default=None, metadata={"key": False})

    def describe(self) -> str:
        return f"attack {Path(self.checkpoint).name} {self.config['loss']} rows {self.rows[0]}-{self.rows[-1]}"

    def run(self, out: Path, cache: dict[str, Any]) -> None:
        from attack_gen.data.clips import load_clips
        from attack_gen.recognizer import load_checkpoint

        mkey, ckey = f"model:{self.checkpoint_sha256}:{self.device}", f"clips:{self.clips_sha256}"
        if mkey not in cache:
            cache[mkey] = load_checkpoint(self.checkpoint, self.device)
        if ckey not in cache:
            cache[ckey] = load_clips(self.clips), file_sha256(self.clips)
        (model, info), (clips, clips_sha) = cache[mkey], cache[ckey]
        if info.get("sha256") != self.checkpoint_sha256:
            raise DataError(f"{self.checkpoint}: not the checkpoint this job was made for (its SHA-256 differs)")
        if clips_sha != self.clips_sha256:
            raise DataError(f"{self.clips}: not the clip file this job was made for (its SHA-256 differs)")
        config = AttackConfig(**{**self.config, "batch_size": self.batch_size})
        num_classes = len(clips.class_names)
        rows = list(self.rows)
        targets = resolve_targets(config, clips.labels, num_classes)
        found = run_engine(
            model,
            clips.motions,
            clips.labels,
            fps=float(clips.meta["fps"]),
            config=config,
            num_classes=num_classes,
            targets=targets,
            indices=rows,
        )
        part = AttackResult.new(
            {"format": RESULT_FORMAT, "version": RESULT_VERSION, "shard": self.key, "device": str(model.mean.device)},
            clips.motions[rows],
            clips.index[rows],
            clips.labels[rows],
            min(config.topk, num_classes),
        )
        position = {row: k for k, row in enumerate(rows)}
        part.update(dataclasses.replace(r, index=position[r.index]) for r in found)
        part.save(out)


@dataclass
class AttackRun:
    """One result file to make: a checkpoint, its clip file, the settings and the output path."""

    checkpoint: Path
    clips: Path
    config: AttackConfig
    out: Path
    target_name: str | None = None


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
    runner: Runner | None = None,
    shard_size: int = SHARD_SIZE,
) -> tuple[dict[str, Any], AttackResult]:
    """Attack (or resume attacking) a clip set with a checkpoint; write ``out``; return the summary."""
    run = AttackRun(Path(checkpoint), Path(clips_path), config, Path(out), target_name)
    return run_attacks(
        [run],
        device=device,
        limit=limit,
        save_every=save_every,
        progress=progress,
        runner=runner,
        shard_size=shard_size,
    )[0]


def run_attacks(
    runs: Sequence[AttackRun],
    *,
    device: str | None = None,
    limit: int | None = None,
    save_every: float = 30.0,
    progress: bool = True,
    runner: Runner | None = None,
    shard_size: int = SHARD_SIZE,
) -> list[tuple[dict[str, Any], AttackResult]]:
    """Attack every run's clips as shards of ``shard_size`` rows (jobs, see :mod:`attack_gen.jobs`), all runs at once.

    Each run's result file is resumed when it exists (made from the same checkpoint, clip
    file and settings, or refused naming the difference). ``limit``: per run, attack
    pending clips in whole shards until at least this many were attacked or none are left.
    Finished shards are kept in ``.jobs/<result name>/`` beside the result file until the run ends
    (they are then in the saved result file), so a killed run loses no finished shard; the result
    file is rewritten as shards arrive (at most every ``save_every`` seconds) and at the end.
    Returns ``(summary, result)`` per run.
    """
    from attack_gen.data.clips import load_clips
    from attack_gen.recognizer import load_checkpoint

    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise DataError(f"--shard-size must be an integer >= 1, got {shard_size!r}")
    runner = runner or Runner(progress=progress)
    states = []
    with contextlib.ExitStack() as stack:
        for run in runs:
            model, info = load_checkpoint(run.checkpoint, "cpu")
            clips = load_clips(run.clips)
            check_clips_match(clips, run.clips, info, run.checkpoint)
            config = run.config
            if run.target_name is not None:
                config = AttackConfig(
                    **{**config.to_json(), "target": _parse_target(run.target_name, clips.class_names)}
                )
            record = _record(config, run.checkpoint, info, run.clips, clips, float(model.std))
            del model
            stack.enter_context(result_lock(run.out))
            if run.out.exists():
                result = load_result(run.out)
                check_resumable(result, record, len(clips), run.out)
            else:
                result = AttackResult.new(
                    record, clips.motions, clips.index, clips.labels, min(config.topk, len(clips.class_names))
                )
                result.path = run.out
            state = _RunState(run, result, int(result.done.sum()), run.out.parent / ".jobs" / run.out.name)
            segment = {
                "started": now(),
                "backend": runner.backend,
                "batch_size": config.batch_size,
                "shard_size": shard_size,
                "attacked": 0,
                "seconds": None,
                "code_version": code_version(),
                "torch_version": record["torch_version"],
            }
            result.record.setdefault("runs", []).append(segment)
            state.segment = segment
            pending = ~result.done
            budget = limit if limit is not None else len(clips)
            for start in range(0, len(clips), shard_size):
                # the pending rows of this window (a resumed file's done rows are not attacked again)
                rows = tuple(r for r in range(start, min(start + shard_size, len(clips))) if pending[r])
                if not rows or budget <= 0:
                    continue
                budget -= len(rows)
                shard = AttackShard(
                    checkpoint_sha256=record["checkpoint"]["sha256"],
                    clips_sha256=record["clips"]["sha256"],
                    config=config.identity(),
                    rows=rows,
                    checkpoint=str(run.checkpoint),
                    clips=str(run.clips),
                    batch_size=config.batch_size,
                    device=device,
                )
                state.shards[shard.key] = shard

            states.append(state)

        owner = {key: st for st in states for key in st.shards}
        start_t = last_save = time.perf_counter()

        def merge(job: Job, path: Path, reused: bool) -> None:
            nonlocal last_save
            st = owner[job.key]
            part = load_result(path)
            rows = np.asarray(job.rows)  # type: ignore[attr-defined]
            fresh = st.result.arrays["status"][rows] == "pending"
            st.result.fill(rows[fresh], part, np.flatnonzero(fresh))
            if reused:
                st.resumed += int(fresh.sum())
            else:
                st.segment["attacked"] += int(fresh.sum())
                st.segment["device"] = part.record.get("device")
            if time.perf_counter() - last_save >= save_every:
                for s in states:
                    if s.result.dirty:
                        s.result.save(s.run.out)
                last_save = time.perf_counter()

        tags = sorted({r.config.loss for r in runs})
        work = [(shard, st.jobs / shard.filename) for st in states for shard in st.shards.values()]
        try:
            counts = runner.run(work, desc=f"attack {','.join(tags)}", on_done=merge)
        finally:
            seconds = time.perf_counter() - start_t
            for st in states:
                st.segment["seconds"] = seconds
                st.segment["finished"] = now()
                st.result.save(st.run.out)
                # every finished shard is now in the saved result file (only a kill keeps them for the rerun)
                shutil.rmtree(st.jobs, ignore_errors=True)
                with contextlib.suppress(OSError):
                    st.jobs.parent.rmdir()  # .jobs/, once no other result uses it
        out = []
        for st in states:
            summary = summarize(st.result)
            summary.update(
                {
                    "resumed": st.resumed,
                    "attacked_this_run": int(st.segment["attacked"]),
                    "seconds": st.segment["seconds"],
                    "backend": runner.backend,
                    "jobs": counts,
                }
            )
            out.append((summary, st.result))
    return out


@dataclass
class _RunState:
    run: AttackRun
    result: AttackResult
    resumed: int
    jobs: Path
    shards: dict[str, AttackShard] = field(default_factory=dict)
    segment: dict[str, Any] = field(default_factory=dict)


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
