"""AS-GCN (Li, Chen, Chen, Zhang, Wang & Tian, CVPR 2019): actional-structural GCN.

Two kinds of links feed each block's graph convolution:

- **S-links** (structural): the spatial partition of the skeleton with ``max_hop`` 3
  (7 subsets: self, then same-or-farther / closer neighbours at 1, 2 and 3 hops), with
  a learnable edge-importance mask per block, as ``net/as_gcn.py`` + ``graph.py``.
- **A-links** (actional): the actional-link inference module (AIM) is an encoder that
  reads the clip (resampled to ``aim_frames`` frames; the reference reads 50) and
  returns, for every ordered joint pair, probabilities over ``aim_edge_types`` link
  types (4; type 0 means "no link"). Types 1.. become per-sample graphs
  ``normalise(P_k + I)`` (column-normalised), weighted by ``actional_weight`` (lambda
  = 0.5 in the reference) and added to the S-link output.

Here the AIM is trained jointly with the classifier, by back-propagating the
classification loss through the soft link probabilities (no Gumbel sampling, so eval is
deterministic and the attack's gradient flows through the A-links too). The reference
pre-trains it as an encoder-decoder (NRI-style recurrent decoder predicting the next
frame); that decoder and the auxiliary future-prediction head are not included.

Nine blocks 64, 64, 64, 128 (stride 2), 128, 128, 256 (stride 2), 256, 256; temporal
kernel 9; dropout 0.5; data BN; global average pooling; FC. Single person (M = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange
from torch import nn

from stimuli.skeleton import NUM_JOINTS

from .graph import stgcn_adjacency
from .layers import DataBatchNorm
from .layers import TemporalUnit
from .layers import check_config
from .layers import check_joints
from .layers import pointwise_residual
from .layers import temporal_resample
from .registry import register_model

__all__ = ["ASGCNConfig", "ASGCN", "ActionalLinkInference"]


@dataclass
class ASGCNConfig:
    num_classes: int
    channels: tuple[int, ...] = (64, 64, 64, 128, 128, 128, 256, 256, 256)
    strides: tuple[int, ...] = (1, 1, 1, 2, 1, 1, 2, 1, 1)
    temporal_kernel: int = 9
    dropout: float = 0.5
    edge_importance: bool = True
    max_hop: int = 3
    aim_edge_types: int = 4
    aim_hidden: int = 128
    aim_frames: int = 50
    aim_dropout: float = 0.5
    actional_weight: float = 0.5

    def __post_init__(self) -> None:
        check_config("asgcn", self.num_classes, self.channels, self.strides, self.temporal_kernel)
        if self.aim_edge_types < 2:
            raise ValueError(f"asgcn: aim_edge_types must be >= 2 (type 0 is 'no link'), got {self.aim_edge_types}")
        if self.aim_hidden < 1 or self.aim_frames < 2:
            raise ValueError(
                f"asgcn: need aim_hidden >= 1 and aim_frames >= 2, got {self.aim_hidden}, {self.aim_frames}"
            )
        for name in ("dropout", "aim_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"asgcn: {name} must be in [0, 1), got {getattr(self, name)}")


SIZES = {
    "paper": {},
    "small": {
        "channels": (16, 32, 32, 64),
        "strides": (1, 2, 1, 2),
        "dropout": 0.2,
        "aim_hidden": 32,
        "aim_frames": 20,
    },
    "tiny": {
        "channels": (8, 16),
        "strides": (1, 2),
        "dropout": 0.0,
        "aim_hidden": 8,
        "aim_frames": 8,
        "aim_dropout": 0.0,
    },
}


class _MLP(nn.Module):
    """fc-ELU-dropout-fc-ELU, then BatchNorm over features: ``(N, L, in) -> (N, L, out)``."""

    def __init__(self, n_in: int, n_hid: int, n_out: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, n_hid), nn.ELU(), nn.Dropout(dropout), nn.Linear(n_hid, n_out), nn.ELU()
        )
        self.bn = nn.BatchNorm1d(n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return self.bn(rearrange(y, "n l c -> n c l")).transpose(1, 2)


class ActionalLinkInference(nn.Module):
    """AIM encoder: joints ``(N, T, V, 3)`` -> link-type probabilities ``(N, V*(V-1), edge_types)``.

    Node -> edge -> node -> edge message passing over all ordered pairs (sender, receiver)
    of distinct joints, as the reference's ``InteractionNet`` (factor graph version).
    """

    def __init__(self, frames: int, hidden: int, edge_types: int, dropout: float, num_nodes: int = NUM_JOINTS) -> None:
        super().__init__()
        self.frames, self.v, self.edge_types = frames, num_nodes, edge_types
        send, recv = np.nonzero(1 - np.eye(num_nodes))  # ordered pairs, row-major
        self.register_buffer("send", torch.from_numpy(send), persistent=False)
        self.register_buffer("recv", torch.from_numpy(recv), persistent=False)
        self.mlp1 = _MLP(frames * 3, hidden, hidden, dropout)
        self.mlp2 = _MLP(2 * hidden, hidden, hidden, dropout)
        self.mlp3 = _MLP(hidden, hidden, hidden, dropout)
        self.mlp4 = _MLP(3 * hidden, hidden, hidden, dropout)
        self.fc_out = nn.Linear(hidden, edge_types)

    def node2edge(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, self.recv], x[:, self.send]], dim=-1)  # (N, E, 2h)

    def edge2node(self, e: torch.Tensor) -> torch.Tensor:
        agg = e.new_zeros(e.shape[0], self.v, e.shape[2]).index_add(1, self.recv, e)  # sum of incoming
        return agg / self.v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(temporal_resample(x, self.frames), "n t v c -> n v (t c)")
        x = self.mlp1(x)  # (N, V, h)
        skip = e = self.mlp2(self.node2edge(x))  # (N, E, h)
        x = self.mlp3(self.edge2node(e))
        e = self.mlp4(torch.cat([self.node2edge(x), skip], dim=-1))
        return torch.softmax(self.fc_out(e), dim=-1)

    def adjacency(self, probs: torch.Tensor) -> torch.Tensor:
        """A-link graphs ``(N, edge_types - 1, V, V)``; ``[v, w]`` weighs the link v -> w."""
        n, v = probs.shape[0], self.v
        links = probs[..., 1:].transpose(1, 2)  # (N, K_a, E), type 0 ("no link") dropped
        a = probs.new_zeros(n, links.shape[1], v * v)
        a = a.index_copy(2, self.send * v + self.recv, links).view(n, -1, v, v)
        a = a + torch.eye(v, device=probs.device, dtype=probs.dtype)
        return a / a.sum(dim=2, keepdim=True)  # column-normalised


class ASGCNBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k_s: int,
        k_a: int,
        kernel_size: int,
        stride: int,
        dropout: float,
        actional_weight: float,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.k_s, self.k_a, self.lam = k_s, k_a, actional_weight
        self.conv = nn.Conv2d(in_channels, out_channels * (k_s + k_a), 1)
        self.tcn = TemporalUnit(out_channels, kernel_size, stride, dropout)
        self.residual = pointwise_residual(in_channels, out_channels, stride) if residual else None

    def forward(self, x: torch.Tensor, a_s: torch.Tensor, a_act: torch.Tensor) -> torch.Tensor:
        # x (N, C_in, T, V); a_s (K_s, V, V) S-links; a_act (N, K_a, V, V) A-links
        res = 0 if self.residual is None else self.residual(x)
        y = rearrange(self.conv(x), "n (k c) t v -> n k c t v", k=self.k_s + self.k_a)
        y_s, y_a = y.split([self.k_s, self.k_a], dim=1)  # split, not slices: no zero-filled gradients
        y_s = torch.einsum("nkctv,kvw->nctw", y_s, a_s)
        y_a = torch.einsum("nkctv,nkvw->nctw", y_a, a_act)
        return torch.relu(self.tcn(y_s + self.lam * y_a) + res)


@register_model("asgcn", config=ASGCNConfig, sizes=SIZES)
class ASGCN(nn.Module):
    def __init__(self, config: ASGCNConfig) -> None:
        super().__init__()
        self.config = config
        a = torch.from_numpy(stgcn_adjacency(max_hop=config.max_hop))  # (7, V, V)
        self.register_buffer("A", a)
        k_s, k_a = a.shape[0], config.aim_edge_types - 1
        self.aim = ActionalLinkInference(
            config.aim_frames, config.aim_hidden, config.aim_edge_types, config.aim_dropout
        )
        self.data_bn = DataBatchNorm(a.shape[-1])
        blocks, c_in = [], 3
        for i, (c_out, stride) in enumerate(zip(config.channels, config.strides)):
            blocks.append(
                ASGCNBlock(
                    c_in,
                    c_out,
                    k_s,
                    k_a,
                    config.temporal_kernel,
                    stride,
                    config.dropout,
                    config.actional_weight,
                    residual=i > 0,
                )
            )
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.edge_importance = (
            nn.ParameterList([nn.Parameter(torch.ones_like(a)) for _ in blocks]) if config.edge_importance else None
        )
        self.fc = nn.Linear(c_in, config.num_classes)

    def actional_links(self, x: torch.Tensor) -> torch.Tensor:
        """The A-link graphs the AIM infers for joints ``x``: ``(N, aim_edge_types - 1, V, V)``."""
        check_joints(x, "asgcn")
        return self.aim.adjacency(self.aim(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_act = self.actional_links(x)  # (N, K_a, V, V)
        h = self.data_bn(x)  # (N, 3, T, V)
        for i, block in enumerate(self.blocks):
            a_s = self.A if self.edge_importance is None else self.A * self.edge_importance[i]
            h = block(h, a_s, a_act)
        return self.fc(h.mean(dim=(2, 3)))
