"""ST-GCN (Yan, Xiong & Lin, AAAI 2018): spatial temporal graph convolutional network.

Layout of the paper / reference code (``net/st_gcn.py``): BatchNorm on the input data;
10 blocks 64, 64, 64, 64, 128 (stride 2), 128, 128, 256 (stride 2), 256, 256, each a
spatial graph conv over the spatial-configuration partition (root / centripetal /
centrifugal, K = 3, max_hop 1, centre ``STANDARD.center``) followed by a temporal conv
(kernel 9) with a residual; dropout 0.5 (not in the first block); a learnable
edge-importance mask per block; global average pooling; a linear classifier (the
reference's 1x1 conv). Single person (M = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .graph import stgcn_adjacency
from .layers import DataBatchNorm
from .layers import GraphConv
from .layers import TemporalUnit
from .layers import check_config
from .layers import check_joints
from .layers import pointwise_residual
from .registry import register_model

__all__ = ["STGCNConfig", "STGCN", "STGCNBlock"]


@dataclass
class STGCNConfig:
    num_classes: int
    channels: tuple[int, ...] = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
    strides: tuple[int, ...] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
    temporal_kernel: int = 9
    dropout: float = 0.5
    edge_importance: bool = True
    max_hop: int = 1

    def __post_init__(self) -> None:
        check_config("stgcn", self.num_classes, self.channels, self.strides, self.temporal_kernel)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"stgcn: dropout must be in [0, 1), got {self.dropout}")


SIZES = {
    "paper": {},
    "small": {"channels": (16, 32, 32, 64), "strides": (1, 2, 1, 2), "dropout": 0.2},
    "tiny": {"channels": (8, 16), "strides": (1, 2), "dropout": 0.0},
}


class STGCNBlock(nn.Module):
    """Graph conv -> temporal unit, plus residual, then ReLU: ``(N, C_in, T, V) -> (N, C_out, T/s, V)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_subsets: int,
        kernel_size: int,
        stride: int = 1,
        dropout: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.gcn = GraphConv(in_channels, out_channels, num_subsets)
        self.tcn = TemporalUnit(out_channels, kernel_size, stride, dropout)
        self.residual = pointwise_residual(in_channels, out_channels, stride) if residual else None

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        res = 0 if self.residual is None else self.residual(x)
        return torch.relu(self.tcn(self.gcn(x, a)) + res)


@register_model("stgcn", config=STGCNConfig, sizes=SIZES)
class STGCN(nn.Module):
    def __init__(self, config: STGCNConfig) -> None:
        super().__init__()
        self.config = config
        a = torch.from_numpy(stgcn_adjacency(max_hop=config.max_hop))  # (K, V, V)
        self.register_buffer("A", a)
        k, v = a.shape[0], a.shape[1]
        self.data_bn = DataBatchNorm(v)
        blocks, c_in = [], 3
        for i, (c_out, stride) in enumerate(zip(config.channels, config.strides)):
            blocks.append(
                STGCNBlock(
                    c_in,
                    c_out,
                    k,
                    config.temporal_kernel,
                    stride,
                    dropout=0.0 if i == 0 else config.dropout,
                    residual=i > 0,
                )
            )
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.edge_importance = (
            nn.ParameterList([nn.Parameter(torch.ones_like(a)) for _ in blocks]) if config.edge_importance else None
        )
        self.fc = nn.Linear(c_in, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_joints(x, "stgcn")
        x = self.data_bn(x)  # (N, T, V, 3) -> (N, 3, T, V)
        for i, block in enumerate(self.blocks):
            a = self.A if self.edge_importance is None else self.A * self.edge_importance[i]
            x = block(x, a)  # (N, C_i, T_i, V)
        return self.fc(x.mean(dim=(2, 3)))  # global average pool -> (N, num_classes)
