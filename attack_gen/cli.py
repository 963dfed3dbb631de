"""``attack-gen``, every command in one module: ``prepare`` datasets, ``train`` and ``evaluate`` recognizers,
``collect`` attack sets, ``attack``, ``transfer`` and ``attack-table``, ``batch`` and ``validate-batch``, ``demo``.

Every command that computes figures takes ``--json`` and then prints exactly one JSON
object on stdout; progress bars and logs go to stderr. Bad input ends with a one-line
``Error: ...`` and exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Sequence
from typing import TypeVar

import click

from stimuli.batch import BatchError
from stimuli.batch import Problem
from stimuli.batch import read_manifest
from stimuli.batch import validate_batch as _validate_batch
from stimuli.cliutil import emit as _emit
from stimuli.cliutil import json_default as _json_default
from stimuli.cliutil import log as _log
from stimuli.cliutil import user_errors
from stimuli.errors import DataError
from stimuli.errors import SmartStudyError
from stimuli.fileio import atomic_write_bytes
from stimuli.fileio import file_sha256
from stimuli.paths import data_root

from . import __version__
from .attack.engine import DEFAULT_LR
from .attack.engine import DEFAULT_TEMPERATURE
from .attack.engine import PRECONDITIONERS
from .attack.engine import THREAT_MODELS
from .attack.engine import AttackConfig
from .attack.losses import LOSSES
from .attack.results import MODEL_DISPLAY
from .attack.results import code_version
from .attack.results import load_result
from .attack.results import now
from .attack.results import success_table
from .attack.results import summarize
from .attack.results import table_rows
from .attack.runs import SHARD_SIZE
from .attack.runs import AttackRun
from .attack.runs import check_clips_match
from .attack.runs import run_attack
from .attack.runs import run_attacks
from .attack.runs import transfer_cell
from .attack.strategies import ABN_LOSSES
from .attack.strategies import STRATEGIES
from .jobs import BACKENDS
from .jobs import Runner


def default_dataset_path() -> Path:
    return data_root() / "datasets" / "synthetic.npz"


def ensure_default_dataset(quiet: bool = False) -> Path:
    """The embedded synthetic dataset under the data root, built on first use."""
    from .data.dataset import save_dataset
    from .data.prepare import prepare_synthetic

    path = default_dataset_path()
    if not path.is_file():
        if not quiet:
            _log(f"building the synthetic dataset at {path}")
        save_dataset(prepare_synthetic(), path)
    return path


def _runner_options(fn: F | None = None, *, shards: bool = True) -> Any:
    """The backend options (``shards``: with ``--shard-size``, for the attack commands)."""
    if fn is None:
        return lambda f: _runner_options(f, shards=shards)
    opts = [
        click.option(
            "--backend",
            type=click.Choice(list(BACKENDS)),
            default="local",
            show_default=True,
            help="local: jobs in this process; ray: on Ray (a local Ray, or the cluster at --ray-address).",
        ),
        click.option("--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS; none: start a local Ray)."),
        click.option(
            "--gpus-per-job",
            type=float,
            default=0.0,
            show_default=True,
            help="Ray: GPUs per attack worker (fractional allowed: 0.25 puts four workers on a GPU).",
        ),
        click.option(
            "--cpus-per-job",
            type=float,
            default=1.0,
            show_default=True,
            help="CPUs (torch threads) per job; the same on every backend, so results do not depend on it.",
        ),
        click.option(
            "--shard-size",
            type=int,
            default=SHARD_SIZE,
            show_default=True,
            help="Clips per attack job (the unit that is resumed and spread over workers).",
        ),
    ]
    if not shards:
        opts = opts[:-1]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _runner(
    backend: str,
    ray_address: str | None,
    gpus_per_job: float,
    cpus_per_job: float,
    quiet: bool,
    workers: int | None = None,
) -> Runner:
    return Runner(
        backend=backend,
        address=ray_address,
        num_gpus=gpus_per_job,
        num_cpus=cpus_per_job,
        workers=workers,
        progress=not quiet,
    )


def _split_csv(value: str | None) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()] if value else []


@click.group()
@click.version_option(__version__, prog_name="attack-gen")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    envvar="SMART_STUDY_THREADS",
    help="CPU threads for torch (default: torch's choice; 1 is often fastest on a busy machine).",
)
def cli(threads: int | None) -> None:
    """Offline side of smart-study: data, recognizers, attacks and stimulus batches."""
    if threads:
        import torch

        torch.set_num_threads(threads)


@cli.command()
@click.option(
    "--train",
    "train_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Motion files or folders for training (repeatable). None: the synthetic dataset.",
)
@click.option(
    "--test",
    "test_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Motion files or folders for testing (repeatable).",
)
@click.option("--test-subjects", help="Comma-separated subjects whose recordings form the test set (cross-subject).")
@click.option("--test-fraction", type=float, help="Seeded share of recordings for testing.")
@click.option(
    "--label-rule",
    help="Regex searched in each file's relative path; group 'label' (or 1) is the class. "
    "Default: the name of the folder holding the file.",
)
@click.option("--subject-rule", help="Regex giving each file's subject (group 'subject' or 1). Default: from the file.")
@click.option("--fps", type=float, default=30.0, show_default=True, help="Target frame rate.")
@click.option("--window", type=int, default=60, show_default=True, help="Frames per window.")
@click.option("--stride", type=int, default=10, show_default=True, help="Frames between window starts.")
@click.option(
    "--center",
    type=click.Choice(["frame", "first", "none"]),
    default="frame",
    show_default=True,
    help="Root-centring: every frame (the paper), the first frame only, or none.",
)
@click.option("--no-face-forward", is_flag=True, help="Keep the recorded facing direction.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", help="A name stored in the dataset.")
@click.option("--out", type=click.Path(path_type=Path), help="Dataset file to write (default: under the data root).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results.")
@user_errors
def prepare(
    train_paths: Sequence[Path],
    test_paths: Sequence[Path],
    test_subjects: str | None,
    test_fraction: float | None,
    label_rule: str | None,
    subject_rule: str | None,
    fps: float,
    window: int,
    stride: int,
    center: str,
    no_face_forward: bool,
    seed: int,
    name: str | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Turn raw motion files (or the synthetic generator) into one dataset file."""
    from tqdm import tqdm

    from .data.dataset import save_dataset
    from .data.prepare import SplitSpec
    from .data.prepare import prepare_dataset
    from .data.prepare import prepare_from_smart_npz
    from .data.prepare import prepare_synthetic
    from .data.preprocess import PreprocessConfig

    try:
        config = PreprocessConfig(
            fps=fps, window=window, stride=stride, center=center, face_forward=not no_face_forward
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    split = SplitSpec(
        test_paths=list(test_paths), test_subjects=_split_csv(test_subjects), test_fraction=test_fraction, seed=seed
    )
    if not train_paths:
        if test_paths or test_fraction is not None:
            raise click.UsageError("--test / --test-fraction need --train")
        ds = prepare_synthetic(
            seed=seed, config=config, **({"test_subjects": split.test_subjects} if split.test_subjects else {})
        )
        out = out or default_dataset_path()
    elif (
        len(train_paths) == 1
        and train_paths[0].suffix == ".npz"
        or (len(train_paths) == 1 and (train_paths[0] / "adClassTrain.npz").is_file())
    ):
        ds = prepare_from_smart_npz(train_paths[0], split, name=name)
    else:
        ds = prepare_dataset(
            list(train_paths),
            split,
            config=config,
            label_rule=label_rule,
            subject_rule=subject_rule,
            name=name,
            progress=lambda it: tqdm(it, desc="load", unit="file", disable=as_json),
        )
    if out is None:
        out = data_root() / "datasets" / f"{name or 'dataset'}.npz"
    save_dataset(ds, out)
    n_train = int((ds.split == 0).sum())
    summary = {
        "out": str(out),
        "windows": len(ds),
        "train_windows": n_train,
        "test_windows": len(ds) - n_train,
        "recordings": len(ds.sources),
        "classes": ds.class_names,
        "subjects": sorted({str(s.get("subject")) for s in ds.sources}),
        "fps": ds.fps,
        "window": int(ds.motions.shape[1]),
        "std": ds.std,
        "skipped": ds.meta.get("skipped", []),
    }
    for s in summary["skipped"] if not as_json else ():  # with --json they are in the object
        _log(f"skipped {s['path']}: {s['reason']}")
    _emit(
        as_json,
        summary,
        f"wrote {out}: {len(ds)} windows ({n_train} train, {len(ds) - n_train} test) from "
        f"{len(ds.sources)} recordings, {ds.num_classes} classes",
    )


def _load_ds(dataset: Path | None, quiet: bool) -> tuple[Any, Path]:
    from .data.dataset import load_dataset

    path = dataset or ensure_default_dataset(quiet)
    return load_dataset(path), path


def run_train(
    model_name: str,
    dataset: Path | None,
    out: Path | None,
    *,
    size: str | None = None,
    device: str | None = None,
    quiet: bool = False,
    **settings: Any,
) -> tuple[dict[str, Any], str]:
    """Train one model; ``settings`` are :class:`attack_gen.train.TrainConfig` fields (its defaults otherwise)."""
    from .recognizer import pick_device
    from .train import TrainConfig
    from .train import evaluate
    from .train import train_model

    ds, ds_path = _load_ds(dataset, quiet)
    if size is None:
        size = "paper" if pick_device(device).type == "cuda" else "small"
    cfg = TrainConfig(model=model_name, size=size, **settings)
    out = out or data_root() / "checkpoints" / f"{ds_path.stem}-{model_name}-{size}.pt"
    model, info = train_model(ds, cfg, out=out, dataset_path=ds_path, device=device, progress=not quiet)
    res = evaluate(model, ds.part("test"))
    tr = info["train"]
    payload = {
        "checkpoint": str(out),
        "model": model_name,
        "size": size,
        "test_accuracy": res.accuracy,
        "best_epoch": tr["best_epoch"],
        "epochs_run": tr["epochs_run"],
        "stopped": tr["stopped"],
        "train_seconds": tr["seconds"],
        "device": tr["device"],
        "history": tr["history"],
    }
    why = (
        f"stopped after {tr['epochs_run']} epochs ("
        + (f"no better validation score in {cfg.patience}" if tr["stopped"] == "patience" else "the maximum")
        + ")"
    )
    text = (
        f"{model_name} ({size}): test accuracy {res.accuracy:.2%} on {res.num_windows} windows; "
        f"best epoch {tr['best_epoch']}, {why}; {tr['seconds']:.1f} s; saved {out}"
    )
    return payload, text


def _train_default(name: str) -> Any:
    from dataclasses import fields

    from .train import TrainConfig

    return next(f.default for f in fields(TrainConfig) if f.name == name)


@cli.command()
@click.option(
    "--model",
    "model_name",
    default="stgcn",
    show_default=True,
    help="hrnn, stgcn, asgcn, dgnn or agcn; several, comma-separated, are trained as jobs (at once on Ray).",
)
@click.option("--dataset", type=click.Path(path_type=Path), help="Dataset file (default: the synthetic dataset).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Checkpoint to write (several models: the folder for them); default: under the data root.",
)
@click.option(
    "--size",
    type=click.Choice(["tiny", "small", "paper"]),
    default=None,
    help="Model size: small (CPU) or paper. Default: paper on CUDA, small on CPU.",
)
@click.option(
    "--epochs", type=int, default=_train_default("epochs"), show_default=True, help="At most this many epochs."
)
@click.option(
    "--patience",
    type=int,
    default=_train_default("patience"),
    show_default=True,
    help="Stop after this many epochs without a better validation score (0: never early).",
)
@click.option("--batch-size", type=int, default=_train_default("batch_size"), show_default=True)
@click.option("--lr", type=float, default=_train_default("lr"), show_default=True)
@click.option("--seed", type=int, default=_train_default("seed"), show_default=True)
@click.option(
    "--val-fraction",
    type=float,
    default=_train_default("val_fraction"),
    show_default=True,
    help="Share of training recordings held out to pick the best epoch and to stop.",
)
@click.option("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when present).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--workers", type=int, help="Several models: how many train at once (default: one per CPU).")
@_runner_options(shards=False)
@user_errors
def train(
    model_name: str,
    dataset: Path | None,
    out: Path | None,
    size: str | None,
    device: str | None,
    as_json: bool,
    workers: int | None,
    backend: str,
    ray_address: str | None,
    gpus_per_job: float,
    cpus_per_job: float,
    **settings: Any,
) -> None:
    """Train recognizers until validation stops improving; the best epoch is saved with its config.

    One model with the local backend trains in this process (with a bar per epoch); several, or
    any on Ray, are train jobs: each checkpoint is kept under ``.jobs/`` by the SHA-256 of the
    dataset and the settings, so a rerun skips the models already trained.
    """
    models = _split_csv(model_name)
    if len(models) == 1 and backend == "local":
        _emit(as_json, *run_train(models[0], dataset, out, size=size, device=device, quiet=as_json, **settings))
        return
    runner = _runner(backend, ray_address, gpus_per_job, cpus_per_job, as_json, workers)
    _emit(as_json, *run_train_jobs(models, dataset, out, runner, size=size, device=device, quiet=as_json, **settings))


def run_train_jobs(
    models: Sequence[str],
    dataset: Path | None,
    out: Path | None,
    runner: Runner,
    *,
    size: str | None = None,
    device: str | None = None,
    quiet: bool = False,
    **settings: Any,
) -> tuple[dict[str, Any], str]:
    """Train several models as jobs on ``runner``; checkpoints ``<dataset>-<model>-<size>.pt`` in ``out``."""
    import dataclasses
    import os
    import shutil

    from .recognizer import load_checkpoint
    from .recognizer import pick_device
    from .train import TrainConfig
    from .train import TrainJob
    from .train import evaluate

    if len(set(models)) != len(models):
        raise DataError(f"--model names a model twice: {','.join(models)}")
    ds, ds_path = _load_ds(dataset, quiet)
    size = size or ("paper" if pick_device(device).type == "cuda" else "small")
    folder = out or data_root() / "checkpoints"
    if folder.suffix == ".pt":
        raise DataError(f"--out {folder}: with several models --out is a folder, not a checkpoint")
    sha = file_sha256(ds_path)
    jobs = {
        m: TrainJob(sha, dataclasses.asdict(TrainConfig(model=m, size=size, **settings)), str(ds_path), device)
        for m in models
    }
    try:
        counts = runner.run([(job, folder / ".jobs" / job.filename) for job in jobs.values()], desc="train")
    finally:
        runner.close()
    rows, lines = [], []
    for m, job in jobs.items():
        final = folder / f"{ds_path.stem}-{m}-{size}.pt"
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(folder / ".jobs" / job.filename, tmp)  # the same file, no second copy
        except OSError:
            shutil.copyfile(folder / ".jobs" / job.filename, tmp)
        os.replace(tmp, final)
        model, info = load_checkpoint(final, "cpu")
        res = evaluate(model, ds.part("test"))
        tr = info["train"]
        rows.append(
            {
                "checkpoint": str(final),
                "model": m,
                "size": size,
                "test_accuracy": res.accuracy,
                **{k: tr[k] for k in ("best_epoch", "epochs_run", "stopped", "seconds", "device")},
            }
        )
        lines.append(f"{m} ({size}): test accuracy {res.accuracy:.2%}; best epoch {tr['best_epoch']}; saved {final}")
    payload = {"backend": runner.backend, "jobs": counts, "models": rows}
    return payload, "\n".join([*lines, f"{counts['ran']} trained, {counts['reused']} reused ({runner.backend})"])


def _check_match(info: dict[str, Any], ds: Any, ds_path: Path) -> None:
    from stimuli.errors import DataError

    if list(info["class_names"]) != ds.class_names:
        raise DataError(
            f"{ds_path}: its classes ({ds.num_classes}) differ from the checkpoint's ({len(info['class_names'])})"
        )
    if int(info.get("window", ds.motions.shape[1])) != ds.motions.shape[1]:
        raise DataError(
            f"{ds_path}: windows of {ds.motions.shape[1]} frames; the model was trained on {info['window']}"
        )


def run_evaluate(
    checkpoint: Path, dataset: Path | None, part: str, confusion: Path | None, device: str | None, quiet: bool
) -> tuple[dict[str, Any], str]:
    from .recognizer import load_checkpoint
    from .train import evaluate as run_eval

    model, info = load_checkpoint(checkpoint, device)
    ds, ds_path = _load_ds(dataset, quiet)
    _check_match(info, ds, ds_path)
    res = run_eval(model, ds.part(part))
    if confusion is None:
        confusion = checkpoint.with_suffix(f".{part}-confusion.csv")
    _write_confusion(confusion, res.confusion, ds.class_names)
    payload = {
        "checkpoint": str(checkpoint),
        "dataset": str(ds_path),
        "part": part,
        "model": info["model"],
        "confusion_csv": str(confusion),
        **res.to_json(),
    }
    lines = [f"{info['model']} on {ds_path.name} ({part}): accuracy {res.accuracy:.2%} ({res.num_windows} windows)"]
    for name, acc in res.per_class.items():
        lines.append(f"  {name:<40} {'-' if acc is None else f'{acc:.2%}'}")
    lines.append(f"confusion matrix: {confusion}")
    return payload, "\n".join(lines)


@cli.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--dataset", type=click.Path(path_type=Path), help="Dataset file (default: the synthetic dataset).")
@click.option("--part", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--confusion", type=click.Path(path_type=Path), help="Write the confusion matrix as CSV here.")
@click.option("--device")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def evaluate(
    checkpoint: Path, dataset: Path | None, part: str, confusion: Path | None, device: str | None, as_json: bool
) -> None:
    """Accuracy, per-class accuracy and confusion matrix of a checkpoint on a dataset."""
    _emit(as_json, *run_evaluate(checkpoint, dataset, part, confusion, device, as_json))


def _write_confusion(path: Path, conf: Any, names: list[str]) -> None:
    import csv
    import io

    from stimuli.fileio import atomic_write_bytes

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["true \\ predicted", *names])
    for name, row in zip(names, conf):
        w.writerow([name, *[int(v) for v in row]])
    atomic_write_bytes(path, buf.getvalue().encode())


def run_collect(
    checkpoint: Path, dataset: Path | None, out: Path, part: str, device: str | None, quiet: bool
) -> tuple[dict[str, Any], str]:
    from .data.clips import ClipSet
    from .data.clips import save_clips
    from .recognizer import file_sha256
    from .recognizer import load_checkpoint
    from .train import predict

    model, info = load_checkpoint(checkpoint, device)
    ds, ds_path = _load_ds(dataset, quiet)
    _check_match(info, ds, ds_path)
    idx = (ds.split == (0 if part == "train" else 1)).nonzero()[0]
    pred = predict(model, ds.motions[idx]).argmax(axis=1)
    ok = pred == ds.labels[idx]
    keep = idx[ok]
    clips = ClipSet(
        ds.motions[keep],
        ds.labels[keep],
        pred[ok],
        keep,
        {
            "class_names": ds.class_names,
            "fps": ds.fps,
            "canonical": ds.meta["canonical"],
            "normalisation": ds.meta["normalisation"],
            "dataset": {
                "path": str(ds_path),
                "sha256": file_sha256(ds_path),
                "name": ds.meta.get("name"),
                "part": part,
            },
            "checkpoint": {
                "path": str(checkpoint),
                "sha256": info["sha256"],
                "model": info["model"],
                "size": info.get("size"),
            },
            "sources": [ds.sources[s]["path"] for s in ds.source[keep]],
            "subjects": [ds.sources[s].get("subject") for s in ds.source[keep]],
        },
        ds.trajectory[keep],
    )
    save_clips(clips, out)
    payload = {
        "out": str(out),
        "clips": int(ok.sum()),
        "of": int(len(idx)),
        "accuracy": float(ok.mean()) if len(idx) else 0.0,
    }
    return payload, f"wrote {out}: {ok.sum()} of {len(idx)} {part} clips recognised correctly"


@cli.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--dataset", type=click.Path(path_type=Path), help="Dataset file (default: the synthetic dataset).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Clip file to write.")
@click.option("--part", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--device")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def collect(checkpoint: Path, dataset: Path | None, out: Path, part: str, device: str | None, as_json: bool) -> None:
    """Save the correctly recognised clips of a dataset part: the attack set."""
    _emit(as_json, *run_collect(checkpoint, dataset, out, part, device, as_json))


def _read_display_names(path: Path | None) -> dict[str, str]:
    from stimuli.errors import DataError

    if path is None:
        return {}
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: display names file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(names, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in names.items()
    ):
        raise DataError(f"{path}: expected a JSON object of class name -> non-empty display name")
    return {k: v.strip() for k, v in names.items()}


def _cached_checkpoint(ds_path: Path, model_name: str, size: str, epochs: int, seed: int, quiet: bool) -> Path:
    """The model trained on ``ds_path`` under the data root, trained once and reused."""
    import torch

    ckpt = data_root() / "checkpoints" / f"{ds_path.stem}-{model_name}-{size}.pt"
    if ckpt.is_file():
        info = torch.load(ckpt, map_location="cpu", weights_only=True)
        from .recognizer import CHECKPOINT_VERSION

        if info.get("version") == CHECKPOINT_VERSION and (info.get("dataset") or {}).get("sha256") == file_sha256(
            ds_path
        ):
            if not quiet:
                _log(f"reusing {ckpt}")
            return ckpt
    run_train(model_name, ds_path, ckpt, size=size, quiet=quiet, epochs=epochs, seed=seed)
    return ckpt


def _cached_clips(ckpt: Path, ds_path: Path, quiet: bool) -> Path:
    """The attack set of ``ckpt`` on ``ds_path``'s test part, collected once and reused."""
    from .data.clips import load_clips

    clips = data_root() / "clips" / f"{ckpt.stem}.npz"
    if clips.is_file() and load_clips(clips).meta.get("checkpoint", {}).get("sha256") == file_sha256(ckpt):
        return clips
    run_collect(ckpt, ds_path, clips, "test", None, quiet)
    return clips


@cli.command()
@click.option(
    "--demo",
    is_flag=True,
    help="The embedded default (also when no data, model or clips are given): "
    "synthetic dataset, small ST-GCN (6 epochs, 1 torch thread unless --threads), 20 motions, "
    "360x360 at 20 fps, written to <data root>/batches/demo.",
)
@click.option("--out", type=click.Path(path_type=Path), help="Batch folder to create (must not exist).")
@click.option("--dataset", type=click.Path(path_type=Path), help="Dataset file (default: the synthetic dataset).")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Trained model (default: train the small one).")
@click.option(
    "--clips",
    "clips_path",
    type=click.Path(path_type=Path),
    help="Attack set from `attack-gen collect` (default: collected from the dataset's test part).",
)
@click.option("--model", "model_name", default="stgcn", show_default=True, help="Model to train when no checkpoint.")
@click.option("--size", type=click.Choice(["tiny", "small", "paper"]), default="small", show_default=True)
@click.option("--epochs", type=int, help="Training epochs when no checkpoint (default: 15; demo: 6).")
@click.option("--motions", type=int, default=20, show_default=True, help="Motions in the batch.")
@click.option("--strategy", type=click.Choice(["ab", "abn", "sa"]), default="ab", show_default=True)
@click.option(
    "--threat-model",
    type=click.Choice(["canonical", "raw"]),
    default="canonical",
    show_default=True,
    help="canonical: attack through the model's own preprocessing; raw: the paper's setting.",
)
@click.option(
    "--trajectory",
    type=click.Choice(["original", "in-place"]),
    default="original",
    show_default=True,
    help="Draw every variant on the original's root path (a walk travels), or in place.",
)
@click.option(
    "--balance-labels/--no-balance-labels",
    default=True,
    show_default=True,
    help="Choose motions so that each class is as often the true as the attacked label (label cycles).",
)
@click.option("--top-n", type=int, default=3, show_default=True, help="ABN: N.")
@click.option("--losses", default="smart,l2,l2-acc,l2-bone", show_default=True, help="Attacked variants.")
@click.option("--iterations", type=int, default=300, show_default=True)
@click.option("--lr", type=float, help="Adam learning rate (default: the engine's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--width", type=int, help="Video width in pixels (default 480; demo 360).")
@click.option("--height", type=int, help="Video height in pixels (default 480; demo 360).")
@click.option("--fps", type=float, help="Video frame rate (default 30; demo 20).")
@click.option("--duration", type=float, help="Seconds per video (default 6).")
@click.option("--slowdown", type=float, help="Play the motion this many times slower (default 1).")
@click.option("--fill", type=click.Choice(["loop", "hold"]), help="Short motions loop (default) or hold the last pose.")
@click.option(
    "--indist",
    help="Right-hand variants of the indistinguishability composites, comma-separated "
    "(default: all; demo: original,smart,control).",
)
@click.option(
    "--levels",
    "levels_text",
    help="Graded strengths for threshold studies: a count K (strengths 1/K .. 1) or comma-separated strengths in "
    "(0, 1]; each below 1 adds a variant q + s (q^ - q) per graded method ('none': no levels; demo: 5).",
)
@click.option("--level-methods", help="Losses graded, comma-separated (default: every loss; demo: smart,l2).")
@click.option(
    "--class-weights",
    "class_weights_text",
    help="A second strength family: the graded losses rerun on the chosen motions at these class weights w "
    "(comma-separated, in (0, 1]; variants smart-cw20 ... of the method smart-cw; default: none).",
)
@click.option("--workers", type=int, help="Jobs at once: attack and rendering processes (default: one per CPU).")
@click.option(
    "--display-names",
    "display_file",
    type=click.Path(path_type=Path),
    help="JSON object {class name: words participants read}; the others get stimuli.labels' names.",
)
@click.option("--device")
@click.option("--json", "as_json", is_flag=True)
@_runner_options
@user_errors
def batch(
    demo: bool,
    out: Path | None,
    dataset: Path | None,
    checkpoint: Path | None,
    clips_path: Path | None,
    model_name: str,
    size: str,
    epochs: int | None,
    motions: int,
    strategy: str,
    threat_model: str,
    trajectory: str,
    balance_labels: bool,
    top_n: int,
    losses: str,
    iterations: int,
    lr: float | None,
    seed: int,
    width: int | None,
    height: int | None,
    fps: float | None,
    duration: float | None,
    slowdown: float | None,
    fill: str | None,
    indist: str | None,
    levels_text: str | None,
    level_methods: str | None,
    class_weights_text: str | None,
    workers: int | None,
    display_file: Path | None,
    device: str | None,
    as_json: bool,
    backend: str,
    ray_address: str | None,
    gpus_per_job: float,
    cpus_per_job: float,
    shard_size: int,
) -> None:
    """Attack clips with SMART and its ablations and render a stimulus batch, end to end.

    With no dataset, checkpoint or clips (or with --demo) it builds the demo batch from
    the embedded synthetic dataset. Every stage is reused on a re-run, so a killed run
    resumes where it stopped.
    """
    from stimuli.batch import load_batch

    from .batch import DEMO_INDIST
    from .batch import DEMO_LEVEL_METHODS
    from .batch import DEMO_LEVELS
    from .batch import DEMO_RENDER
    from .batch import BatchJob
    from .batch import build_batch
    from .levels import parse_levels

    demo = demo or not (dataset or checkpoint or clips_path)
    epochs = epochs or (6 if demo else 15)
    if demo and not click.get_current_context().find_root().params.get("threads"):
        import torch

        # one thread: on a shared 2-core machine two torch threads were 3-5x slower (OpenMP waits)
        torch.set_num_threads(1)
    out = out or data_root() / "batches" / ("demo" if demo else "batch")
    if demo and out.is_dir() and (out / "manifest.json").is_file():
        b = load_batch(out)
        _emit(
            as_json,
            {"out": str(out), "batch_id": b.batch_id, "items": len(b.items), "reused": True},
            f"demo batch already built: {out} ({len(b.items)} motions)",
        )
        return
    render: dict[str, Any] = dict(DEMO_RENDER) if demo else {}
    for key, value in (
        ("width", width),
        ("height", height),
        ("fps", fps),
        ("duration", duration),
        ("slowdown", slowdown),
        ("fill", fill),
    ):
        if value is not None:
            render[key] = value
    indist_variants = tuple(_split_csv(indist)) or (DEMO_INDIST if demo else None)
    if levels_text is None:
        levels = DEMO_LEVELS if demo else ()
    else:
        levels = () if levels_text.strip().lower() == "none" else parse_levels(levels_text)
    graded = tuple(_split_csv(level_methods)) or (
        tuple(m for m in DEMO_LEVEL_METHODS if m in _split_csv(losses)) if demo else None
    )
    job = BatchJob(
        motions=motions,
        strategy=strategy,
        threat_model=threat_model,
        trajectory=trajectory,
        display_names=_read_display_names(display_file),
        balance_labels=balance_labels,
        top_n=top_n,
        losses=tuple(_split_csv(losses)),
        iterations=iterations,
        lr=lr,
        seed=seed,
        render=render,
        indistinguishability=indist_variants,
        levels=levels,
        level_methods=graded,
        class_weights=_class_weights(class_weights_text),
    )
    if checkpoint is None:
        ds_path = dataset or ensure_default_dataset(as_json)
        checkpoint = _cached_checkpoint(ds_path, model_name, size, epochs, seed, as_json)
    if clips_path is None:
        ds_path = dataset or ensure_default_dataset(as_json)
        clips_path = _cached_clips(checkpoint, ds_path, as_json)
    summary = build_batch(
        out,
        checkpoint=checkpoint,
        clips_path=clips_path,
        job=job,
        workers=workers,
        device=device,
        progress=not as_json,
        runner=_runner(backend, ray_address, gpus_per_job, cpus_per_job, as_json, workers),
        shard_size=shard_size,
        log=_log if not as_json else (lambda s: None),
    )
    rates = ", ".join(
        f"{k} {v:.0%} (robust {summary['robust_success_rates'][k]:.0%})"
        for k, v in summary["success_rates"].items()
        if v is not None
    )
    _emit(
        as_json,
        summary,
        f"wrote {out}: {summary['items']} motions x {len(summary['variants'])} variants "
        f"({', '.join(summary['variants'])}), drawn "
        f"{'on the original trajectory' if trajectory == 'original' else 'in place'}; "
        f"{threat_model} threat model; attack success on the candidates tried: {rates}; "
        f"attack results in {summary['attacks_dir']}" + _levels_line(summary.get("levels")),
    )


@cli.command("import-attack")
@click.argument("attack_file", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The method's name in the batch (e.g. basar, ifgsm).")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="Our model that judges the clips.")
@click.option(
    "--out", type=click.Path(path_type=Path), help="Batch folder to create (default: <data root>/batches/NAME)."
)
@click.option(
    "--layout",
    type=click.Choice(["ours", "smart"]),
    default="ours",
    show_default=True,
    help="ours: original/adversarial (N, T, 25, 3) metres + labels; smart: the SMART/BEAT npz (oriClips, clips, "
    "tclasses, normalised).",
)
@click.option("--core", type=click.Path(path_type=Path), help="smart: preprocess_core.npz (default: beside the file).")
@click.option("--classes", type=click.Path(path_type=Path), help="smart: the class list (default: beside the file).")
@click.option(
    "--clip-fps", type=float, help="The clips' frame rate (default: the file's, else smart 30, else the model's)."
)
@click.option("--levels", "levels_text", help="Graded strengths, as for `batch --levels` (default: none).")
@click.option("--motions", type=int, help="Import at most this many clips (default: every one that works).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the positive controls.")
@click.option("--width", type=int, help="Video width in pixels (default 480).")
@click.option("--height", type=int, help="Video height in pixels (default 480).")
@click.option("--fps", type=float, help="Video frame rate (default 30).")
@click.option("--duration", type=float, help="Seconds per video (default 6).")
@click.option("--workers", type=int, help="Rendering processes (default: one per CPU).")
@click.option("--device")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def import_attack_command(
    attack_file: Path,
    name: str,
    checkpoint: Path,
    out: Path | None,
    layout: str,
    core: Path | None,
    classes: Path | None,
    clip_fps: float | None,
    levels_text: str | None,
    motions: int | None,
    seed: int,
    width: int | None,
    height: int | None,
    fps: float | None,
    duration: float | None,
    workers: int | None,
    device: str | None,
    as_json: bool,
) -> None:
    """Another attack's adversarial clips as method NAME of a new stimulus batch: judged by our model (success and
    robust success through its own pipeline), with our perceptual metrics, graded levels and positive controls, so
    the same studies and threshold analyses run on them."""
    from .imported import import_attack
    from .levels import parse_levels

    render = {k: v for k, v in (("width", width), ("height", height), ("fps", fps), ("duration", duration)) if v}
    levels = parse_levels(levels_text) if levels_text and levels_text.strip().lower() != "none" else ()
    out = out or data_root() / "batches" / name
    s = import_attack(
        attack_file,
        name=name,
        checkpoint=checkpoint,
        out=out,
        layout=layout,
        core=core,
        classes=classes,
        fps=clip_fps,
        levels=levels,
        motions=motions,
        render=render,
        seed=seed,
        workers=workers,
        device=device,
        log=_log if not as_json else (lambda s: None),
    )
    level_text = ", ".join(
        f"{r['strength']:g}: {r['robust_success_rate']:.0%} ({r['mean_mean_joint_displacement_m'] * 1e3:.1f} mm)"
        for r in s["levels"]
    )
    _emit(
        as_json,
        s,
        f"wrote {out}: {s['items']} of {s['clips_in_file']} clips as method {name!r} "
        f"({', '.join(s['variants'])}); on the clips whose original the model recognises, {name} fools it in "
        f"{s['success_rate']:.0%} (robust {s['robust_success_rate']:.0%}); robust success and mean joint "
        f"displacement by strength: {level_text}",
    )


def _class_weights(text: str | None) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in _split_csv(text))
    except ValueError:
        raise DataError(f"--class-weights: expected comma-separated weights in (0, 1], got {text!r}") from None


def _levels_line(levels: dict[str, Any] | None) -> str:
    """The graded levels' success per method and strength, for the batch's summary line."""
    if not levels:
        return ""
    parts = []
    for method, rows in levels["methods"].items():
        cells = ", ".join(
            f"{r['strength']:g}: {r['success_rate']:.0%} ({r['mean_mean_joint_displacement_m'] * 1e3:.1f} mm)"
            for r in rows
        )
        parts.append(f"{method} {cells}")
    return "; graded levels (strength: success, mean joint displacement): " + "; ".join(parts)


@cli.command()
@click.option("--model", "model_name", default="stgcn", show_default=True)
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def demo(model_name: str, epochs: int, as_json: bool) -> None:
    """The embedded default: synthetic dataset -> small recognizer -> evaluation -> attack set."""
    ds_path = ensure_default_dataset(as_json)
    ckpt = data_root() / "checkpoints" / f"demo-{model_name}.pt"
    clips = data_root() / "clips" / f"demo-{model_name}.npz"
    trained, t1 = run_train(model_name, ds_path, ckpt, size="small", quiet=as_json, epochs=epochs)
    evaluated, t2 = run_evaluate(ckpt, ds_path, "test", None, None, as_json)
    collected, t3 = run_collect(ckpt, ds_path, clips, "test", None, as_json)
    _emit(
        as_json,
        {"dataset": str(ds_path), "train": trained, "evaluate": evaluated, "collect": collected},
        "\n".join([f"dataset: {ds_path}", t1, t2, t3]),
    )


F = TypeVar("F", bound=Callable[..., Any])


# ---- attack, transfer, attack-table ----------------------------------------------------------------
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


def _config(settings: dict[str, Any]) -> AttackConfig:
    """The attack settings from the command's options (each named after an :class:`AttackConfig` field)."""
    return AttackConfig(**settings)


@cli.command("attack")
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
@click.option(
    "--limit", type=int, help="Attack pending clips, in whole shards, until at least this many were attacked this run."
)
@_attack_options
@_runner_options
@user_errors
def attack(
    checkpoint: Path,
    clips_path: Path,
    out: Path,
    limit: int | None,
    target: str | None,
    device: str | None,
    save_every: float,
    as_json: bool,
    backend: str,
    ray_address: str | None,
    gpus_per_job: float,
    cpus_per_job: float,
    shard_size: int,
    **settings: Any,
) -> None:
    """White-box SMART attack on the clips a model recognises; resumable."""
    if target is not None and settings["strategy"] != "sa":
        raise click.UsageError("--target is only used with --strategy sa")
    config = _config(settings)
    summary, _ = run_attack(
        checkpoint,
        clips_path,
        config,
        out,
        target_name=target,
        device=device,
        limit=limit,
        save_every=save_every,
        runner=_runner(backend, ray_address, gpus_per_job, cpus_per_job, as_json),
        shard_size=shard_size,
    )
    summary["table"] = dict(zip(("columns", "rows"), table_rows([summary])))
    summary["table"]["robust_rows"] = table_rows([summary], "robust_success_rate")[1]
    _emit(as_json, summary, _summary_text(summary))


# ---- transfer -------------------------------------------------------------------------------


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


@cli.command("transfer")
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
@_runner_options
@user_errors
def transfer(
    checkpoints: Sequence[Path],
    clip_paths: Sequence[Path],
    out_dir: Path,
    target: str | None,
    device: str | None,
    save_every: float,
    as_json: bool,
    backend: str,
    ray_address: str | None,
    gpus_per_job: float,
    cpus_per_job: float,
    shard_size: int,
    **settings: Any,
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
    if target is not None and settings["strategy"] != "sa":
        raise click.UsageError("--target is only used with --strategy sa")
    config = _config(settings)
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

    tag = "" if config.threat_model == "canonical" else f".{config.threat_model}"
    runs = [
        AttackRun(ckpt, cp, config, out_dir / f"{ckpt.stem}.{config.label}.{config.loss}{tag}.npz", target)
        for ckpt, cp in zip(checkpoints, clip_paths)
    ]
    done = run_attacks(
        runs,
        device=device,
        save_every=save_every,
        runner=_runner(backend, ray_address, gpus_per_job, cpus_per_job, as_json),
        shard_size=shard_size,
    )
    summaries, results = [s for s, _ in done], [r for _, r in done]
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
                matrix[s_name][t_name] = transfer_cell(strat, t_model, result, config.threat_model)
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


@cli.command("attack-table")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@user_errors
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


# ---- validate-batch ----------------------------------------------------------------------------------
@cli.command("validate-batch")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path, file_okay=True, dir_okay=True))
@click.option("--no-decode", is_flag=True, help="Skip decoding the videos (schema, files and hashes only).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def validate_batch(directory: Path, no_decode: bool, as_json: bool) -> None:
    """Check the stimulus batch in DIR: manifest schema, every file present with its SHA-256,
    nothing unexpected, motion arrays, posters, and every video decodable as H.264 yuv420p
    with the declared size, frame rate, duration and frame count.

    Exit status 0 only when the batch is valid; otherwise each problem is printed on its
    own line (with --json: a "problems" list) and the exit status is 1.
    """
    try:
        problems = _validate_batch(directory, decode=not no_decode)
    except SmartStudyError as e:  # e.g. ffmpeg missing
        problems = e.problems if isinstance(e, BatchError) else [Problem("", str(e))]
    summary = _summary(directory) if not problems else {}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(directory),
                    "valid": not problems,
                    "decoded": not no_decode,
                    "problems": [p.to_dict() for p in problems],
                    **summary,
                }
            )
        )
    elif not problems:
        click.echo(
            f"{directory}: valid stimulus batch {summary['batch_id']}: {summary['items']} items x "
            f"{len(summary['variants'])} variants ({', '.join(summary['variants'])}), "
            f"{summary['videos']} videos"
        )
    else:
        for p in problems:
            click.echo(f"Error: {directory}: {p}", err=True)
        if len(problems) > 1:
            click.echo(f"Error: {directory}: not a valid stimulus batch ({len(problems)} problems)", err=True)
    if problems:
        click.get_current_context().exit(1)


def _summary(directory: Path) -> dict[str, object]:
    from stimuli.batch import Batch

    batch = Batch.from_dict(read_manifest(directory), directory)
    videos = sum(1 for _, ref in batch.files() if ref.path.endswith(".mp4"))
    return {
        "batch_id": batch.batch_id,
        "items": len(batch.items),
        "variants": list(batch.variant_names),
        "composites": len(batch.items[0].composites),
        "videos": videos,
    }


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
