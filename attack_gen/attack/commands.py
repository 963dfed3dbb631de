"""``attack-gen attack``, ``attack-gen transfer`` and ``attack-gen attack-table``.

Plain ``click.Command`` objects registered on the main ``attack-gen`` group; each turns
:class:`SmartStudyError` into a one-line ``Error: ...`` (exit 1). With ``--json`` a
command prints exactly one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Sequence
from typing import TypeVar

import click
import numpy as np

from stimuli.cliutil import emit as _emit
from stimuli.cliutil import json_default as _json_default
from stimuli.cliutil import user_errors as _user_errors
from stimuli.errors import DataError
from stimuli.fileio import atomic_write_bytes
from stimuli.fileio import file_sha256

from .engine import DEFAULT_LR
from .engine import DEFAULT_TEMPERATURE
from .engine import PRECONDITIONERS
from .engine import THREAT_MODELS
from .engine import AttackConfig
from .engine import AttackError
from .engine import ClipResult
from .engine import attack as run_engine
from .engine import resolve_targets
from .losses import LOSSES
from .results import MODEL_DISPLAY
from .results import AttackResult
from .results import check_resumable
from .results import code_version
from .results import load_result
from .results import now
from .results import result_lock
from .results import success_table
from .results import summarize
from .results import table_rows
from .strategies import ABN_LOSSES
from .strategies import STRATEGIES
from .strategies import ClassContext

__all__ = ["attack", "transfer", "attack_table", "run_attack", "check_clips_match", "commands"]

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


def _summary_text(s: dict[str, Any]) -> str:
    rate = "-" if s["success_rate"] is None else f"{100 * s['success_rate']:.2f} %"
    p = s["perceptual"]

    def fmt(v: float | None, unit: str, scale: float = 1.0) -> str:
        return "-" if v is None else f"{v * scale:.3g} {unit}"

    robust = "-" if s["robust_success_rate"] is None else f"{100 * s['robust_success_rate']:.2f} %"
    lines = [
        f"{MODEL_DISPLAY.get(str(s['model']), s['model'])} {s['label']} ({s['loss']}, {s['threat_model']} threat "
        f"model): success {rate} ({s['succeeded']} of {s['attacked']} attacked; {s['skipped']} skipped, "
        f"{s['nonfinite']} non-finite, {s['pending']} pending)",
        f"robust success (the example re-preprocessed by the dataset's pipeline still fools the model): {robust} "
        f"({s['robust_succeeded']} of {s['attacked']})",
        f"iterations to success: mean {s['iterations']['mean_success']}, median {s['iterations']['median_success']}",
        f"successful examples: mean joint displacement {fmt(p['mean_joint_displacement_m'], 'mm', 1e3)}, "
        f"acceleration deviation {fmt(p['acceleration_deviation'], 'm/s^2')}, "
        f"bone-length deviation {fmt(p['bone_length_deviation_m'], 'mm', 1e3)}",
        "",
        success_table([s]),
        "",
        f"wrote {s['out']}",
    ]
    return "\n".join(lines)


_STRATEGY = click.option(
    "--strategy",
    type=click.Choice(list(STRATEGIES)),
    default="ab",
    show_default=True,
    help="ab: anything-but; abn: anything-but-N; sa: specified target.",
)


def _attack_options(fn: F) -> F:
    opts = [
        _STRATEGY,
        click.option(
            "--threat-model",
            type=click.Choice(list(THREAT_MODELS)),
            default="canonical",
            show_default=True,
            help="canonical: attack the model through its own preprocessing, moving the "
            "skeleton's real degrees of freedom; raw: the backbone on unpreprocessed input, all 75 numbers "
            "per frame free (the paper's code; for reproduction).",
        ),
        click.option("--top-n", type=int, default=3, show_default=True, help="ABN: N."),
        click.option(
            "--target",
            help="SA: target class (index or name). Default: a seeded random class per clip, never its true one.",
        ),
        click.option(
            "--loss",
            type=click.Choice(list(LOSSES)),
            default="smart",
            show_default=True,
            help="Perceptual loss: the full SMART loss or an ablation.",
        ),
        click.option("--iterations", type=int, default=300, show_default=True, help="Adam steps at most."),
        click.option(
            "--lr",
            type=float,
            default=DEFAULT_LR,
            show_default=True,
            help="Adam learning rate (normalised input units).",
        ),
        click.option(
            "--lr-final",
            type=float,
            help="Decay the rate geometrically to this at the last iteration (default: constant rate).",
        ),
        click.option(
            "--temperature",
            type=float,
            help="T of Phi = softmax(logits / T) in the class loss; 1 = plain softmax "
            "(default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_TEMPERATURE.items()) + ").",
        ),
        click.option(
            "--precondition",
            type=click.Choice(list(PRECONDITIONERS)),
            default="perceptual",
            show_default=True,
            help="perceptual: Adam in coordinates that whiten l_dyn along time, then "
            "l_bl within each frame; dynamics: l_dyn only; none: Adam on q^.",
        ),
        click.option(
            "--abn-loss",
            type=click.Choice(list(ABN_LOSSES)),
            default="entropy",
            show_default=True,
            help="ABN class loss: the paper's entropy, or KL to uniform over the other classes.",
        ),
        click.option("--class-weight", type=float, default=0.4, show_default=True, help="w in L = w Lc + (1-w) Lp."),
        click.option("--alpha", type=float, default=0.3, show_default=True, help="Lp = alpha l_dyn + (1-alpha) l_bl."),
        click.option("--beta0", type=float, default=0.6, show_default=True, help="Position weight in l_dyn."),
        click.option("--beta2", type=float, default=0.4, show_default=True, help="Acceleration weight in l_dyn."),
        click.option(
            "--gamma-spine", type=float, default=0.04, show_default=True, help="Joint weight of the 5 spinal joints."
        ),
        click.option(
            "--gamma-other", type=float, default=0.02, show_default=True, help="Joint weight of the other 20 joints."
        ),
        click.option("--batch-size", type=int, default=32, show_default=True, help="Clips optimised together."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seeds the SA targets."),
        click.option("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when present)."),
        click.option(
            "--save-every",
            type=float,
            default=30.0,
            show_default=True,
            help="Seconds between saves of the result file while running.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _config(
    strategy: str,
    top_n: int,
    loss: str,
    iterations: int,
    lr: float,
    class_weight: float,
    alpha: float,
    beta0: float,
    beta2: float,
    gamma_spine: float,
    gamma_other: float,
    batch_size: int,
    seed: int,
    **optimiser: Any,
) -> AttackConfig:
    """``optimiser``: ``lr_final``, ``temperature``, ``precondition``, ``abn_loss``."""
    return AttackConfig(
        strategy=strategy,
        top_n=top_n,
        loss=loss,
        iterations=iterations,
        lr=lr,
        class_weight=class_weight,
        alpha=alpha,
        beta0=beta0,
        beta2=beta2,
        gamma_spine=gamma_spine,
        gamma_other=gamma_other,
        batch_size=batch_size,
        seed=seed,
        **optimiser,
    )


@click.command("attack")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="The attacked model.")
@click.option(
    "--clips",
    "clips_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Clip file from `attack-gen collect` with this checkpoint.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Result file (.npz); an existing one from the same settings is resumed.",
)
@click.option("--limit", type=int, help="Attack at most this many of the pending clips in this run.")
@_attack_options
@_user_errors
def attack(
    checkpoint: Path,
    clips_path: Path,
    out: Path,
    limit: int | None,
    strategy: str,
    top_n: int,
    target: str | None,
    loss: str,
    iterations: int,
    lr: float,
    class_weight: float,
    alpha: float,
    beta0: float,
    beta2: float,
    gamma_spine: float,
    gamma_other: float,
    batch_size: int,
    seed: int,
    device: str | None,
    save_every: float,
    as_json: bool,
    **optimiser: Any,
) -> None:
    """White-box SMART attack on the clips a model recognises; resumable."""
    if target is not None and strategy != "sa":
        raise click.UsageError("--target is only used with --strategy sa")
    config = _config(
        strategy,
        top_n,
        loss,
        iterations,
        lr,
        class_weight,
        alpha,
        beta0,
        beta2,
        gamma_spine,
        gamma_other,
        batch_size,
        seed,
        **optimiser,
    )
    summary, _ = run_attack(
        checkpoint, clips_path, config, out, target_name=target, device=device, limit=limit, save_every=save_every
    )
    summary["table"] = dict(zip(("columns", "rows"), table_rows([summary])))
    summary["table"]["robust_rows"] = table_rows([summary], "robust_success_rate")[1]
    _emit(as_json, summary, _summary_text(summary))


# ---- transfer -------------------------------------------------------------------------------


def _transfer_cell(strategy: Any, target_model: Any, result: AttackResult, threat_model: str) -> dict[str, Any]:
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


def _transfer_text(
    names: list[str], matrix: dict[str, dict[str, dict[str, Any]]], label: str, loss: str, threat_model: str
) -> str:
    corner = "surrogate \\ target"
    width = max(len(corner), *(len(n) for n in names))
    head = f"{corner:<{width}}  " + "  ".join(f"{n:>17}" for n in names)
    lines = [
        f"transfer success / robust success (%), {label}, {loss} loss, {threat_model} threat model; "
        "diagonal: white-box (in brackets)",
        head,
        "-" * len(head),
    ]
    for s in names:
        cells = []
        for t in names:
            c = matrix[s][t]
            v = "-" if c["rate"] is None else f"{100 * c['rate']:.2f} / {100 * c['robust_rate']:.2f}"
            cells.append(f"{('(' + v + ')') if s == t else v:>17}")
        lines.append(f"{s:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


@click.command("transfer")
@click.option(
    "--checkpoint",
    "checkpoints",
    type=click.Path(path_type=Path),
    multiple=True,
    required=True,
    help="A model (repeat, two or more); each in turn is the surrogate.",
)
@click.option(
    "--clips",
    "clip_paths",
    type=click.Path(path_type=Path),
    multiple=True,
    required=True,
    help="Each checkpoint's clip file, in the same order as --checkpoint.",
)
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for one result file per surrogate (resumed when present) and transfer.json.",
)
@_attack_options
@_user_errors
def transfer(
    checkpoints: Sequence[Path],
    clip_paths: Sequence[Path],
    out_dir: Path,
    strategy: str,
    top_n: int,
    target: str | None,
    loss: str,
    iterations: int,
    lr: float,
    class_weight: float,
    alpha: float,
    beta0: float,
    beta2: float,
    gamma_spine: float,
    gamma_other: float,
    batch_size: int,
    seed: int,
    device: str | None,
    save_every: float,
    as_json: bool,
    **optimiser: Any,
) -> None:
    """Black-box transfer: attack each model in turn, test its examples on every other one.

    Every ordered pair (surrogate, target) gets: of the surrogate's successful
    adversarial clips whose original the target recognises, the share that also fool
    the target by the same strategy's success test. The diagonal is the white-box rate.
    """
    from attack_gen.data.clips import load_clips
    from attack_gen.recognizer import load_checkpoint

    if len(checkpoints) < 2:
        raise click.UsageError("transfer needs at least two --checkpoint")
    if len(clip_paths) != len(checkpoints):
        raise click.UsageError(
            f"give one --clips per --checkpoint ({len(checkpoints)} checkpoints, {len(clip_paths)} clip files)"
        )
    if target is not None and strategy != "sa":
        raise click.UsageError("--target is only used with --strategy sa")
    config = _config(
        strategy,
        top_n,
        loss,
        iterations,
        lr,
        class_weight,
        alpha,
        beta0,
        beta2,
        gamma_spine,
        gamma_other,
        batch_size,
        seed,
        **optimiser,
    )
    # validate every pair up front, before any long attack
    infos = []
    for ckpt, cp in zip(checkpoints, clip_paths):
        model, info = load_checkpoint(ckpt, "cpu")
        check_clips_match(load_clips(cp), cp, info, ckpt)
        infos.append(info)
        del model
    first_ckpt, first = checkpoints[0], infos[0]
    for ckpt, info in zip(checkpoints[1:], infos[1:]):
        for key in ("class_names", "window", "fps"):
            if info.get(key) != first.get(key):
                raise DataError(f"{ckpt}: {key} differs from {first_ckpt}'s; transfer needs models of one dataset")
    names = []
    for ckpt, info in zip(checkpoints, infos):
        name = (
            f"{info.get('model')}:{ckpt.stem}"
            if [i.get("model") for i in infos].count(info.get("model")) > 1
            else str(info.get("model"))
        )
        names.append(name)

    results, summaries = [], []
    for ckpt, cp in zip(checkpoints, clip_paths):
        tag = "" if config.threat_model == "canonical" else f".{config.threat_model}"
        out = out_dir / f"{ckpt.stem}.{config.label}.{config.loss}{tag}.npz"
        summary, result = run_attack(ckpt, cp, config, out, target_name=target, device=device, save_every=save_every)
        results.append(result)
        summaries.append(summary)
    matrix: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    strat = config.build_strategy()
    for j, (t_name, ckpt) in enumerate(zip(names, checkpoints)):
        t_model, _ = load_checkpoint(ckpt, device)
        for i, (s_name, result) in enumerate(zip(names, results)):
            if i == j:
                s = summaries[i]
                matrix[s_name][t_name] = {
                    "eligible": s["attacked"],
                    "fooled": s["succeeded"],
                    "rate": s["success_rate"],
                    "robust_fooled": s["robust_succeeded"],
                    "robust_rate": s["robust_success_rate"],
                    "white_box": True,
                    "result": s["out"],
                }
            else:
                matrix[s_name][t_name] = _transfer_cell(strat, t_model, result, config.threat_model)
        del t_model
    payload = {
        "format": "smart-study-transfer",
        "version": 2,
        "threat_model": config.threat_model,
        "strategy": config.strategy,
        "label": config.label,
        "loss": config.loss,
        "models": names,
        "checkpoints": [str(c) for c in checkpoints],
        "matrix": matrix,
        "white_box": {n: s for n, s in zip(names, summaries)},
        "config": config.to_json(),
        "created": now(),
        "code_version": code_version(),
    }
    tag = "" if config.threat_model == "canonical" else f".{config.threat_model}"
    summary_path = out_dir / f"transfer.{config.label}.{config.loss}{tag}.json"
    atomic_write_bytes(summary_path, json.dumps(payload, indent=1, default=_json_default).encode())
    payload["out"] = str(summary_path)
    _emit(
        as_json,
        payload,
        _transfer_text(names, matrix, config.label, config.loss, config.threat_model) + f"\n\nwrote {summary_path}",
    )


# ---- table ------------------------------------------------------------------------------------


@click.command("attack-table")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@_user_errors
def attack_table(results: Sequence[Path], as_json: bool) -> None:
    """The paper's success table (rows models, columns AB / AB3 / AB5 / SA) from result files."""
    summaries = [{**summarize(load_result(p)), "out": str(p)} for p in results]
    columns, rows = table_rows(summaries)
    robust = table_rows(summaries, "robust_success_rate")[1]
    _emit(
        as_json,
        {"columns": columns, "rows": rows, "robust_rows": robust, "results": summaries},
        success_table(summaries),
    )


commands = (attack, transfer, attack_table)
