"""Training, evaluation, and collection of the correctly recognised clips."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from stimuli.errors import DataError
from stimuli.fileio import file_sha256

from . import __version__
from .data.dataset import Dataset
from .jobs import Job
from .models import build_model_from_config
from .models import list_models
from .models import model_config
from .recognizer import Recognizer
from .recognizer import pick_device
from .recognizer import save_checkpoint

__all__ = ["TrainConfig", "train_model", "predict", "evaluate", "EvalResult", "seed_everything"]


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved in the checkpoint."""

    model: str = "stgcn"
    size: str = "small"
    epochs: int = 200
    """At most this many epochs; with validation, training stops earlier (``patience``)."""
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    val_fraction: float = 0.15
    """Share of the training recordings held out to choose the best epoch (0: last epoch)."""
    patience: int = 15
    """Stop after this many epochs without a better validation score (accuracy, then loss);
    the learning rate halves after a third of that without a lower validation loss.
    0: never stop early."""
    augment_rotation_deg: float = 15.0
    """Random rotation about the vertical axis, +- this many degrees."""
    augment_scale: float = 0.1
    """Random uniform body scale in [1 - s, 1 + s]."""
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.model not in list_models():
            raise DataError(f"unknown model {self.model!r}; known: {', '.join(list_models())}")
        if self.epochs < 1 or self.batch_size < 1:
            raise DataError("epochs and batch size must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise DataError(f"val fraction must be in [0, 1), got {self.val_fraction}")
        if self.patience < 0:
            raise DataError(f"patience must be >= 0, got {self.patience}")


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def _val_split(ds: Dataset, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of training and validation windows; whole recordings go to validation."""
    idx = np.arange(len(ds))
    if fraction <= 0:
        return idx, idx[:0]
    rng = np.random.default_rng(seed)
    val_sources: set[int] = set()
    # per class, hold out about `fraction` of its recordings (at least one if it has >= 3)
    for c in np.unique(ds.labels):
        srcs = np.unique(ds.source[ds.labels == c])
        k = int(round(fraction * len(srcs)))
        if k == 0 and len(srcs) >= 3:
            k = 1
        val_sources.update(rng.permutation(srcs)[:k].tolist())
    is_val = np.isin(ds.source, list(val_sources))
    return idx[~is_val], idx[is_val]


def _augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random rotation about Y and body scale, per clip (physical coordinates)."""
    n = x.shape[0]
    if cfg.augment_rotation_deg > 0:
        ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(cfg.augment_rotation_deg)
        c, s = torch.cos(ang), torch.sin(ang)
        rot = torch.zeros(n, 3, 3)
        rot[:, 0, 0], rot[:, 0, 2], rot[:, 1, 1], rot[:, 2, 0], rot[:, 2, 2] = c, s, 1.0, -s, c
        x = torch.einsum("ntvc,ndc->ntvd", x, rot.to(x.device))
    if cfg.augment_scale > 0:
        scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * cfg.augment_scale
        x = x * scale.to(x.device)[:, None, None, None]
    return x


@torch.no_grad()
def predict(model: Recognizer, motions: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits ``(N, K)`` for physical motions ``(N, T, 25, 3)``."""
    model.eval()
    device = model.mean.device
    out = []
    for i in range(0, len(motions), batch_size):
        x = torch.as_tensor(motions[i : i + batch_size], device=device)
        out.append(model.classify(x).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


@dataclass
class EvalResult:
    accuracy: float
    per_class: dict[str, float | None]
    confusion: np.ndarray
    """Rows: true class, columns: predicted class (counts)."""
    predictions: np.ndarray
    num_windows: int

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "num_windows": self.num_windows,
            "per_class_accuracy": self.per_class,
            "confusion": self.confusion.tolist(),
        }


def evaluate(model: Recognizer, ds: Dataset, class_names: list[str] | None = None) -> EvalResult:
    """Window accuracy, per-class accuracy and confusion matrix on ``ds``."""
    names = class_names or ds.class_names
    if len(ds) == 0:
        raise DataError("nothing to evaluate: the dataset part has no windows")
    pred = predict(model, ds.motions).argmax(axis=1)
    k = len(names)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (ds.labels, pred), 1)
    per = {}
    for c, name in enumerate(names):
        total = conf[c].sum()
        per[name] = float(conf[c, c] / total) if total else None
    return EvalResult(float((pred == ds.labels).mean()), per, conf, pred, len(ds))


def train_model(
    ds: Dataset,
    cfg: TrainConfig,
    *,
    out: str | Path,
    dataset_path: str | Path | None = None,
    device: str | None = None,
    log: Callable[[str], None] = lambda s: None,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> tuple[Recognizer, dict[str, Any]]:
    """Train on the train part of ``ds``; save the best checkpoint at ``out``."""
    from tqdm import tqdm

    gen = seed_everything(cfg.seed)
    dev = pick_device(device)
    train_all = ds.part("train")
    tr_idx, va_idx = _val_split(train_all, cfg.val_fraction, cfg.seed)
    x_tr = torch.as_tensor(train_all.motions[tr_idx])
    y_tr = torch.as_tensor(train_all.labels[tr_idx])
    val = train_all.subset(va_idx) if len(va_idx) else None

    mcfg = model_config(cfg.model, cfg.size, ds.num_classes, **(overrides or {}))
    backbone = build_model_from_config(cfg.model, asdict(mcfg))
    model = Recognizer(backbone, ds.mean, ds.std, ds.canonical).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=max(1, cfg.patience // 3))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    history: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, stopped = 0, "max_epochs"
    start = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {cfg.model}", disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(perm), cfg.batch_size):
            b = perm[i : i + cfg.batch_size]
            if len(b) < 2 and len(perm) > 1:
                continue  # BatchNorm needs >= 2 samples
            # the pipeline's preprocessing first (a no-op on the dataset's canonical windows), then the
            # augmentation, so that its rotations are not undone by the re-facing
            x = _augment(model.canonical(x_tr[b].to(dev)).cpu(), cfg, gen).to(dev)
            y = y_tr[b].to(dev)
            logits = model(model.normalise(x))
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(b)
            correct += int((logits.argmax(1) == y).sum())
            total += len(b)
        rec = {
            "epoch": epoch,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": loss_sum / max(total, 1),
            "train_acc": correct / max(total, 1),
        }
        if val is not None:
            logits = torch.as_tensor(predict(model, val.motions))
            rec["val_loss"] = float(nn.functional.cross_entropy(logits, torch.as_tensor(val.labels)))
            rec["val_acc"] = float((logits.argmax(1).numpy() == val.labels).mean())
            key = (rec["val_acc"], -rec["val_loss"])
        else:
            key = (float(epoch), 0.0)  # no validation: keep the last epoch
        history.append(rec)
        if best is None or key > best:
            best, best_epoch = key, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        sched.step(rec["val_loss"] if val is not None else rec["train_loss"])
        bar.set_postfix({k: f"{v:.3g}" for k, v in rec.items() if k != "epoch"})
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
        if val is not None and cfg.patience and epoch - best_epoch >= cfg.patience:
            stopped = "patience"
            break
    seconds = time.perf_counter() - start
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    info = {
        "model": cfg.model,
        "size": cfg.size,
        "config": asdict(mcfg),
        "class_names": ds.class_names,
        "fps": ds.fps,
        "window": int(ds.motions.shape[1]),
        "dataset": {
            "path": str(dataset_path) if dataset_path else None,
            "sha256": file_sha256(dataset_path) if dataset_path else None,
            "name": ds.meta.get("name"),
        },
        "train": {
            "config": asdict(cfg),
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "stopped": stopped,
            "history": history,
            "seconds": seconds,
            "device": str(dev),
            "train_windows": int(len(tr_idx)),
            "val_windows": int(len(va_idx)),
        },
        "code_version": __version__,
    }
    save_checkpoint(out, model=model, info=info)
    return model, info


@dataclass(frozen=True)
class TrainJob(Job):
    """Train one model on a dataset file (named by its SHA-256); the output is the checkpoint.

    The key holds the dataset's hash and every :class:`TrainConfig` field (the seed among
    them), so the same job trains the same model wherever it runs.
    """

    kind: ClassVar[str] = "train"

    dataset_sha256: str
    config: dict[str, Any]
    dataset: str = field(default="", metadata={"key": False})
    device: str | None = field(default=None, metadata={"key": False})

    @property
    def filename(self) -> str:
        return f"train-{self.config['model']}-{self.key[:32]}.pt"

    def describe(self) -> str:
        return f"train {self.config['model']} ({self.config['size']})"

    def run(self, out: Path, cache: dict[str, Any]) -> None:
        from .data.dataset import load_dataset

        if file_sha256(self.dataset) != self.dataset_sha256:
            raise DataError(f"{self.dataset}: not the dataset this job was made for (its SHA-256 differs)")
        train_model(
            load_dataset(self.dataset),
            TrainConfig(**self.config),
            out=out,
            dataset_path=self.dataset,
            device=self.device,
            progress=False,
        )
