"""A trained recognizer: backbone + the normalisation it was trained with, and its checkpoint.

The backbone takes normalised joint positions ``(N, T, 25, 3)``; :class:`Recognizer`
keeps the dataset's normalisation (``mean`` ``(25, 3)``, one scalar ``std``) so callers
can move between physical coordinates (metres) and the model's input space, where the
attack optimises.

A checkpoint (``torch.save`` of a plain dict, loadable with ``weights_only=True``) holds
the model name, size and full config, the weights, the class names, the normalisation,
the dataset it was trained on (path and SHA-256) and the training record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from stimuli.errors import DataError
from stimuli.fileio import atomic_write, file_sha256

from .models import build_model_from_config

__all__ = [
    "Recognizer",
    "save_checkpoint",
    "load_checkpoint",
    "file_sha256",
    "CHECKPOINT_FORMAT",
    "pick_device",
]

CHECKPOINT_FORMAT = "smart-study-checkpoint"
CHECKPOINT_VERSION = 1


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when present, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Recognizer(nn.Module):
    """A backbone plus the normalisation of its inputs."""

    def __init__(self, backbone: nn.Module, mean: Any, std: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(25, 3))
        self.register_buffer("std", torch.as_tensor(float(std), dtype=torch.float32))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Physical ``(N, T, 25, 3)`` -> model input space."""
        return (x - self.mean) / self.std

    def unnormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Model input space -> physical coordinates."""
        return x * self.std + self.mean

    def forward(self, x_normalised: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for normalised input ``(N, T, 25, 3)``."""
        return self.backbone(x_normalised)

    def classify(self, x_physical: torch.Tensor) -> torch.Tensor:
        """Logits for physical input."""
        return self.backbone(self.normalise(x_physical))


def save_checkpoint(path: str | Path, *, model: Recognizer, info: dict[str, Any]) -> Path:
    """Write a checkpoint atomically. ``info`` needs ``model``, ``size``, ``config``, ``class_names``."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        **info,
        "normalisation": {"mean": model.mean.cpu().tolist(), "std": float(model.std)},
        "state_dict": {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()},
    }
    atomic_write(path, lambda fh: torch.save(payload, fh))
    return path


def load_checkpoint(path: str | Path, device: torch.device | str | None = None) -> tuple[Recognizer, dict[str, Any]]:
    """Rebuild the recognizer from a checkpoint; returns it (in eval mode) and the info dict."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not a smart-study checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise DataError(f"{path}: checkpoint version {payload.get('version')} not supported")
    try:
        backbone = build_model_from_config(payload["model"], payload["config"])
        backbone.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise DataError(f"{path}: checkpoint does not match its model config ({exc})") from None
    norm = payload["normalisation"]
    model = Recognizer(backbone, norm["mean"], norm["std"]).to(pick_device(device) if not isinstance(device, torch.device) else device)
    model.eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    info["path"] = str(path)
    info["sha256"] = file_sha256(path)
    return model, info
