"""A trained recognizer: its dataset's preprocessing, the normalisation, the backbone; its checkpoint.

A real pipeline classifies what its own preprocessing makes of a motion, so
:class:`Recognizer` owns that preprocessing: :class:`Canonicaliser`, a differentiable
first layer applying the dataset's :class:`attack_gen.data.preprocess.Canonical` spec
(tie the joints that are one point in the data, face forward, root-centre). Then the
dataset's normalisation (``mean`` ``(25, 3)``, one scalar ``std``), then the backbone,
which takes normalised joint positions ``(N, T, 25, 3)``.

- :meth:`Recognizer.classify`: physical motion (metres) -> logits, through the whole
  pipeline. Whatever the preprocessing removes (a root path, a split of coincident
  joints) cannot change its output.
- :meth:`Recognizer.classify_raw`: the backbone on the normalised motion, with no
  preprocessing (what the paper's code attacked: the ``raw`` threat model).
- :func:`pipeline_logits`: the dataset's numpy pipeline re-applied to each clip, then the
  network: how robust success re-preprocesses an adversarial clip.

A checkpoint (``torch.save`` of a plain dict, loadable with ``weights_only=True``) holds
the model name, size and full config, the weights, the class names, the canonical spec,
the normalisation, the dataset it was trained on (path and SHA-256) and the training
record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stimuli.errors import DataError
from stimuli.fileio import atomic_write
from stimuli.fileio import file_sha256
from stimuli.skeleton import STANDARD

from .data.preprocess import IDENTITY
from .data.preprocess import Canonical
from .data.preprocess import canonicalise
from .models import build_model_from_config

__all__ = [
    "Recognizer",
    "Canonicaliser",
    "pipeline_logits",
    "save_checkpoint",
    "load_checkpoint",
    "file_sha256",
    "CHECKPOINT_FORMAT",
    "pick_device",
]

CHECKPOINT_FORMAT = "smart-study-checkpoint"
CHECKPOINT_VERSION = 2


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when present, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_ACROSS = (
    STANDARD.index("LeftUpLeg"),
    STANDARD.index("RightUpLeg"),
    STANDARD.index("LeftArm"),
    STANDARD.index("RightArm"),
)


class Canonicaliser(nn.Module):
    """A :class:`Canonical` spec as a differentiable layer: ``(N, T, 25, 3)`` metres -> canonical.

    The same maps as :func:`attack_gen.data.preprocess.canonicalise`, in this order: every
    joint of a coincident group is placed on the group's first joint; with
    ``face_forward`` one rotation about +Y, from frame 0's hips and shoulders, so that
    frame 0 faces +Z; then the root is subtracted per frame (``frame``), its frame-0
    position (``first``), or nothing (``none``).
    """

    def __init__(self, spec: Canonical = IDENTITY) -> None:
        super().__init__()
        self.spec = spec
        src = torch.arange(STANDARD.num_joints)
        for first, *others in spec.coincident:
            src[others] = first
        self.register_buffer("src", src, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec, r = self.spec, STANDARD.root
        if spec.coincident:
            x = x.index_select(2, self.src)
        root = x[:, :, r : r + 1]  # (N, T, 1, 3)
        if spec.center == "frame":
            x = x - root
        elif spec.center == "first":
            x = x - root[:, :1]
        if not spec.face_forward:
            return x
        keep_y = torch.tensor([1.0, 0.0, 1.0], dtype=x.dtype, device=x.device)
        pivot = root[:, :1] * keep_y  # frame 0's root on the floor: face_forward's pivot
        if spec.center == "none":
            x = x - pivot
        f0 = x[:, 0]
        lh, rh, ls, rs = _ACROSS
        across = (f0[:, lh] - f0[:, rh]) + (f0[:, ls] - f0[:, rs])  # (N, 3)
        fx, fz = -across[:, 2], across[:, 0]  # forward = across x up
        norm = torch.sqrt(fx * fx + fz * fz)
        ok = norm > 1e-9
        safe = torch.where(ok, norm, torch.ones_like(norm))
        c = torch.where(ok, fz / safe, torch.ones_like(norm))[:, None, None]  # cos of the correction
        s = torch.where(ok, -fx / safe, torch.zeros_like(norm))[:, None, None]  # its sine
        px, py, pz = x[..., 0], x[..., 1], x[..., 2]
        x = torch.stack([c * px + s * pz, py, c * pz - s * px], dim=-1)
        if spec.center == "none":
            x = x + pivot
        return x


class Recognizer(nn.Module):
    """The dataset's preprocessing, the normalisation of its inputs, and a backbone."""

    def __init__(self, backbone: nn.Module, mean: Any, std: float, canonical: Canonical = IDENTITY) -> None:
        super().__init__()
        self.backbone = backbone
        self.canonical = Canonicaliser(canonical)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(25, 3))
        self.register_buffer("std", torch.as_tensor(float(std), dtype=torch.float32))

    @property
    def spec(self) -> Canonical:
        return self.canonical.spec

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Physical ``(N, T, 25, 3)`` -> model input space."""
        return (x - self.mean) / self.std

    def unnormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Model input space -> physical coordinates."""
        return x * self.std + self.mean

    def forward(self, x_normalised: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of the backbone for normalised input ``(N, T, 25, 3)`` (no preprocessing)."""
        return self.backbone(x_normalised)

    def classify(self, x_physical: torch.Tensor) -> torch.Tensor:
        """Logits for physical input, through the dataset's preprocessing: what the pipeline sees."""
        return self.backbone(self.normalise(self.canonical(x_physical)))

    def classify_raw(self, x_physical: torch.Tensor) -> torch.Tensor:
        """Logits for physical input taken as it is (the ``raw`` threat model)."""
        return self.backbone(self.normalise(x_physical))


@torch.no_grad()
def pipeline_logits(model: Recognizer, motions: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """Logits ``(N, K)`` (CPU) of physical clips ``(N, T, 25, 3)`` after the dataset's own numpy pipeline.

    Each clip is canonicalised again (:func:`attack_gen.data.preprocess.canonicalise`:
    re-tied, re-faced where the dataset faces, re-centred), then normalised and classified.
    """
    device = model.mean.device
    out = []
    for i in range(0, len(motions), batch_size):
        chunk = np.stack([canonicalise(m, model.spec) for m in np.asarray(motions[i : i + batch_size])])
        out.append(model.classify_raw(torch.as_tensor(chunk, device=device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def save_checkpoint(path: str | Path, *, model: Recognizer, info: dict[str, Any]) -> Path:
    """Write a checkpoint atomically. ``info`` needs ``model``, ``size``, ``config``, ``class_names``."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        **info,
        "canonical": model.spec.to_json(),
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
    if payload.get("version") == 1:
        raise DataError(
            f"{path}: checkpoint version 1 predates recognizers that apply their dataset's "
            "preprocessing; train it again with attack-gen train on a dataset from attack-gen prepare"
        )
    if payload.get("version") != CHECKPOINT_VERSION:
        raise DataError(f"{path}: checkpoint version {payload.get('version')} not supported")
    try:
        backbone = build_model_from_config(payload["model"], payload["config"])
        backbone.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise DataError(f"{path}: checkpoint does not match its model config ({exc})") from None
    norm = payload["normalisation"]
    try:
        spec = Canonical.from_json(payload.get("canonical"))
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    model = Recognizer(backbone, norm["mean"], norm["std"], spec).to(
        pick_device(device) if not isinstance(device, torch.device) else device
    )
    model.eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    info["path"] = str(path)
    info["sha256"] = file_sha256(path)
    return model, info
