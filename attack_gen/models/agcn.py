"""2s-AGCN (Shi, Zhang, Cheng & Lu, CVPR 2019): two-stream adaptive graph convolutional network.

Each AGCN unit sums over the three subsets k (identity, inward, outward links, each
column-normalised) the graph ``A_k + B_k + C_k``: ``A_k`` fixed, ``B_k`` a free learnable
matrix initialised to 1e-6, ``C_k = softmax(theta_k(x)^T phi_k(x))`` a per-sample graph
from two 1x1 embeddings of width ``C_out / 4`` (softmax over the sending joints,
logits divided by the embedding size as in ``model/agcn.py``). Unit: adaptive graph conv
+ BN + residual, ReLU; then a temporal conv (kernel 9) + BN with the block residual,
ReLU. Ten layers 64 x4, 128 (stride 2) x3, 256 (stride 2) x3; global average pool; FC.

Two streams with separate weights: joints, and bones computed from the joints by the
parameter-free :class:`~attack_gen.models.layers.Bones` layer (root bone zero). Their
scores (logits) are summed, so one forward pass attacks the fused model through joint
positions. Single person (M = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .graph import skeleton_agcn_subsets
from .layers import Bones
from .layers import DataBatchNorm
from .layers import TemporalConv
from .layers import check_config
from .layers import check_joints
from .layers import pointwise_residual
from .registry import register_model

__all__ = ["AGCNConfig", "AGCN", "AdaptiveGraphConv", "AGCNStream"]

STREAMS = ("joint", "bone")


@dataclass
class AGCNConfig:
    num_classes: int
    channels: tuple[int, ...] = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
    strides: tuple[int, ...] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
    temporal_kernel: int = 9
    embed_ratio: int = 4  # C_k embeddings have C_out // embed_ratio channels
    streams: tuple[str, ...] = STREAMS

    def __post_init__(self) -> None:
        check_config("agcn", self.num_classes, self.channels, self.strides, self.temporal_kernel)
        if self.embed_ratio < 1:
            raise ValueError(f"agcn: embed_ratio must be >= 1, got {self.embed_ratio}")
        if not self.streams or set(self.streams) - set(STREAMS) or len(set(self.streams)) != len(self.streams):
            raise ValueError(f"agcn: streams must be distinct names from {STREAMS}, got {self.streams}")


SIZES = {
    "paper": {},
    "small": {"channels": (16, 32, 32, 64), "strides": (1, 2, 1, 2)},
    "tiny": {"channels": (8, 16), "strides": (1, 2)},
}


class AdaptiveGraphConv(nn.Module):
    """``sum_k W_k x (A_k + B_k + C_k)`` + BN + residual, ReLU: ``(N, C_in, T, V) -> (N, C_out, T, V)``."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor, embed_ratio: int) -> None:
        super().__init__()
        k = a.shape[0]
        self.k, self.embed = k, max(1, out_channels // embed_ratio)
        self.register_buffer("A", a)
        self.B = nn.Parameter(torch.full_like(a, 1e-6))
        self.theta = nn.Conv2d(in_channels, self.embed * k, 1)
        self.phi = nn.Conv2d(in_channels, self.embed * k, 1)
        # sum_k conv_d_k(.) == one 1x1 conv over the K concatenated groups (one summed bias)
        self.conv_d = nn.Conv2d(in_channels * k, out_channels, 1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.down = pointwise_residual(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = rearrange(self.theta(x), "n (k e) t v -> n k v (e t)", k=self.k)
        phi = rearrange(self.phi(x), "n (k e) t w -> n k (e t) w", k=self.k)
        c = torch.softmax(theta @ phi / theta.shape[-1], dim=-2)  # (N, K, V, V), each column sums to 1
        graph = self.A + self.B + c
        y = torch.einsum("nctv,nkvw->nkctw", x, graph)  # (N, K, C_in, T, V)
        y = self.conv_d(rearrange(y, "n k c t w -> n (k c) t w"))
        return torch.relu(self.bn(y) + self.down(x))


class AGCNBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        a: torch.Tensor,
        kernel_size: int,
        stride: int,
        embed_ratio: int,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.gcn = AdaptiveGraphConv(in_channels, out_channels, a, embed_ratio)
        self.tcn = TemporalConv(out_channels, out_channels, kernel_size, stride)
        self.residual = pointwise_residual(in_channels, out_channels, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = 0 if self.residual is None else self.residual(x)
        return torch.relu(self.tcn(self.gcn(x)) + res)


class AGCNStream(nn.Module):
    """One single-stream AGCN: ``(N, T, V, 3) -> (N, num_classes)``."""

    def __init__(self, config: AGCNConfig, a: torch.Tensor) -> None:
        super().__init__()
        self.data_bn = DataBatchNorm(a.shape[-1])
        blocks, c_in = [], 3
        for i, (c_out, stride) in enumerate(zip(config.channels, config.strides)):
            blocks.append(AGCNBlock(c_in, c_out, a, config.temporal_kernel, stride, config.embed_ratio, residual=i > 0))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.data_bn(x))  # (N, C, T', V)
        return self.fc(x.mean(dim=(2, 3)))


@register_model("agcn", config=AGCNConfig, sizes=SIZES)
class AGCN(nn.Module):
    def __init__(self, config: AGCNConfig) -> None:
        super().__init__()
        self.config = config
        a = torch.from_numpy(skeleton_agcn_subsets())  # (3, V, V)
        self.bones = Bones()
        self.streams = nn.ModuleDict({s: AGCNStream(config, a) for s in config.streams})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_joints(x, "agcn")
        inputs = {"joint": lambda: x, "bone": lambda: self.bones(x)}
        return sum(stream(inputs[name]()) for name, stream in self.streams.items())
