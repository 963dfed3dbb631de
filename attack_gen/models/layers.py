"""Building blocks shared by the target models.

Every model takes joint positions ``(N, T, V=25, C=3)`` (the canonical layout, already
normalised by the caller) and converts them at its boundary; the GCNs work in
``(N, C, T, V)``. Inputs are single-person (M = 1): NTU's second body is not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from stimuli.skeleton import STANDARD
from stimuli.skeleton import Skeleton

from .graph import parent_index

__all__ = [
    "check_joints",
    "Bones",
    "frame_differences",
    "DataBatchNorm",
    "GraphConv",
    "TemporalConv",
    "TemporalUnit",
    "pointwise_residual",
    "temporal_resample",
    "check_config",
]


def check_joints(x: torch.Tensor, model: str, skeleton: Skeleton = STANDARD) -> None:
    """Raise ``ValueError`` quoting the bad shape unless ``x`` is ``(N, T, V, 3)`` float."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model}: expected a torch.Tensor of joint positions, got {type(x).__name__}")
    v = skeleton.num_joints
    if x.ndim != 4 or x.shape[2] != v or x.shape[3] != 3:
        raise ValueError(f"{model}: expected joint positions of shape (N, T, V={v}, C=3), got {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{model}: need at least one clip and one frame, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{model}: expected floating-point joint positions, got dtype {x.dtype}")


class Bones(nn.Module):
    """Parameter-free bone layer: ``(N, T, V, C) -> (N, T, V, C)``, ``x[:, :, child] - x[:, :, parent]``.

    Bone ``j`` sits at its child joint ``j``; the root has no parent and gets a zero bone,
    so V stays 25 (as 2s-AGCN pads its bone data). Gradients flow back to the joints.
    """

    def __init__(self, skeleton: Skeleton = STANDARD) -> None:
        super().__init__()
        self.register_buffer("parent", torch.from_numpy(parent_index(skeleton)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x[:, :, self.parent]


def frame_differences(x: torch.Tensor) -> torch.Tensor:
    """Motion data ``(N, T, ...)``: ``x[t + 1] - x[t]``, the last frame zero (T is kept)."""
    d = x[:, 1:] - x[:, :-1]
    return torch.cat([d, torch.zeros_like(x[:, :1])], dim=1)


class DataBatchNorm(nn.Module):
    """BatchNorm over every (joint, coordinate) channel: ``(N, T, V, C) -> (N, C, T, V)``."""

    def __init__(self, num_nodes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(num_nodes * in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.shape[2]
        x = self.bn(rearrange(x, "n t v c -> n (v c) t"))
        return rearrange(x, "n (v c) t -> n c t v", v=v)


class GraphConv(nn.Module):
    """ST-GCN's spatial graph convolution: a 1x1 conv to ``K`` groups, then ``sum_k x_k A_k``."""

    def __init__(self, in_channels: int, out_channels: int, num_subsets: int) -> None:
        super().__init__()
        self.k = num_subsets
        self.conv = nn.Conv2d(in_channels, out_channels * num_subsets, kernel_size=1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        # x (N, C_in, T, V), a (K, V, V) -> (N, C_out, T, V)
        x = rearrange(self.conv(x), "n (k c) t v -> n k c t v", k=self.k)
        return torch.einsum("nkctv,kvw->nctw", x, a)


class TemporalConv(nn.Sequential):
    """Conv over time (kernel ``(k, 1)``, 'same' padding) then BatchNorm (2s-AGCN's ``unit_tcn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 9, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, (kernel_size, 1), (stride, 1), ((kernel_size - 1) // 2, 0)),
            nn.BatchNorm2d(out_channels),
        )


class TemporalUnit(nn.Sequential):
    """ST-GCN's temporal unit: BN, ReLU, conv over time, BN, dropout."""

    def __init__(self, channels: int, kernel_size: int = 9, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, (kernel_size, 1), (stride, 1), ((kernel_size - 1) // 2, 0)),
            nn.BatchNorm2d(channels),
            nn.Dropout(dropout),
        )


def pointwise_residual(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a strided 1x1 conv + BN (the ST-GCN / 2s-AGCN residual)."""
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return TemporalConv(in_channels, out_channels, kernel_size=1, stride=stride)


def temporal_resample(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Linearly resample ``(N, T, V, C)`` to ``frames`` frames (differentiable)."""
    v = x.shape[2]
    y = F.interpolate(rearrange(x, "n t v c -> n (v c) t"), size=frames, mode="linear", align_corners=True)
    return rearrange(y, "n (v c) t -> n t v c", v=v)


def check_config(
    model: str, num_classes: int, channels: tuple[int, ...], strides: tuple[int, ...], temporal_kernel: int
) -> None:
    """Shared sanity checks of a GCN config; raises ``ValueError`` naming the bad value."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{model}: num_classes must be a positive integer, got {num_classes!r}")
    if len(channels) == 0 or len(channels) != len(strides):
        raise ValueError(f"{model}: channels {channels} and strides {strides} must be non-empty and of equal length")
    if any(c < 1 for c in channels) or any(s not in (1, 2) for s in strides):
        raise ValueError(f"{model}: channels must be >= 1 and strides 1 or 2, got {channels} / {strides}")
    if temporal_kernel < 1 or temporal_kernel % 2 == 0:
        raise ValueError(f"{model}: temporal_kernel must be odd and >= 1, got {temporal_kernel}")
