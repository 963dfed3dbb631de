"""DGNN (Shi, Zhang, Cheng & Lu, CVPR 2019): directed graph neural network.

The skeleton is a directed acyclic graph: vertices are joints, edges are bones
(``STANDARD.bones``, 24 of them) directed from parent to child. Vertex features are
joint coordinates, edge features bone vectors, both computed from the joint positions
(the bone layer is parameter-free). Each DGN block updates vertices first,
``v' = h_v([v, mean of incoming edges, mean of outgoing edges])``, then edges from their
source and target vertices, ``e' = h_e([e, v'_source, v'_target])`` (the update order
of the paper's equations as we read them), using learnable source / target incidence
matrices initialised from the graph; each ``h`` is a 1x1 conv + BN + ReLU. One temporal conv (kernel 9) + BN, shared by
vertices and edges, follows, with a residual and ReLU. Ten blocks 64 x4,
128 (stride 2) x3, 256 (stride 2) x3; FC on globally pooled vertex + edge features.

Two streams with separate weights, scores (logits) summed: spatial (joints + bones) and
motion (frame differences of joints and bones, last frame zero). Both are on by default
in every size (``streams`` in the config selects them). Single person (M = 1).

The paper has no official code; the unofficial port (kenziyuliu/DGNN-PyTorch) differs in
padding the incidence matrices to 300 edges with self-loops, normalising them once for
both directions and updating edges from the old vertices (it shares the temporal conv
between vertices and edges, as here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stimuli.skeleton import STANDARD

from .graph import skeleton_incidence
from .layers import Bones
from .layers import DataBatchNorm
from .layers import TemporalConv
from .layers import check_config
from .layers import check_joints
from .layers import frame_differences
from .layers import pointwise_residual
from .registry import register_model

__all__ = ["DGNNConfig", "DGNN", "DGNBlock", "DGNNStream"]

STREAMS = ("spatial", "motion")


@dataclass
class DGNNConfig:
    num_classes: int
    channels: tuple[int, ...] = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
    strides: tuple[int, ...] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
    temporal_kernel: int = 9
    learnable_incidence: bool = True
    streams: tuple[str, ...] = STREAMS

    def __post_init__(self) -> None:
        check_config("dgnn", self.num_classes, self.channels, self.strides, self.temporal_kernel)
        if not self.streams or set(self.streams) - set(STREAMS) or len(set(self.streams)) != len(self.streams):
            raise ValueError(f"dgnn: streams must be distinct names from {STREAMS}, got {self.streams}")


SIZES = {
    "paper": {},
    "small": {"channels": (16, 32, 32, 64), "strides": (1, 2, 1, 2)},
    "tiny": {"channels": (8, 16), "strides": (1, 2)},
}


class DGNBlock(nn.Module):
    """Vertex then edge update: ``(N, C_in, T, V), (N, C_in, T, E) -> (N, C_out, T, V), (N, C_out, T, E)``."""

    def __init__(
        self, in_channels: int, out_channels: int, source: torch.Tensor, target: torch.Tensor, learnable: bool = True
    ) -> None:
        super().__init__()
        # source / target: (V, E) incidence, one 1 per column
        if learnable:
            self.source, self.target = nn.Parameter(source.clone()), nn.Parameter(target.clone())
        else:
            self.register_buffer("source", source.clone())
            self.register_buffer("target", target.clone())
        # each vertex averages its incoming (outgoing) edges: divide by the graph's degrees
        self.register_buffer("in_degree", target.sum(1, keepdim=True).clamp(min=1))
        self.register_buffer("out_degree", source.sum(1, keepdim=True).clamp(min=1))
        self.h_v = nn.Sequential(nn.Conv2d(3 * in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU())
        self.h_e = nn.Sequential(
            nn.Conv2d(in_channels + 2 * out_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU()
        )

    def forward(self, fv: torch.Tensor, fe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e_in = torch.einsum("ncte,ve->nctv", fe, self.target / self.in_degree)  # (N, C, T, V)
        e_out = torch.einsum("ncte,ve->nctv", fe, self.source / self.out_degree)
        fv = self.h_v(torch.cat([fv, e_in, e_out], dim=1))  # (N, C_out, T, V)
        v_src = torch.einsum("nctv,ve->ncte", fv, self.source)  # (N, C_out, T, E)
        v_tgt = torch.einsum("nctv,ve->ncte", fv, self.target)
        fe = self.h_e(torch.cat([fe, v_src, v_tgt], dim=1))
        return fv, fe


class DGNNUnit(nn.Module):
    """DGN block, then one temporal conv shared by vertices and edges, residual, ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        source: torch.Tensor,
        target: torch.Tensor,
        kernel_size: int,
        stride: int,
        learnable: bool,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.num_nodes = source.shape[0]
        self.dgn = DGNBlock(in_channels, out_channels, source, target, learnable)
        self.tcn = TemporalConv(out_channels, out_channels, kernel_size, stride)
        self.residual = pointwise_residual(in_channels, out_channels, stride) if residual else None

    def forward(self, fv: torch.Tensor, fe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # vertices and edges side by side along the last axis: (N, C, T, V + E)
        res = 0 if self.residual is None else self.residual(torch.cat([fv, fe], dim=-1))
        fv, fe = self.dgn(fv, fe)
        out = torch.relu(self.tcn(torch.cat([fv, fe], dim=-1)) + res)
        return out[..., : self.num_nodes], out[..., self.num_nodes :]


class DGNNStream(nn.Module):
    """One stream: joints ``(N, T, V, 3)`` and bones ``(N, T, E, 3)`` -> ``(N, num_classes)``."""

    def __init__(self, config: DGNNConfig, source: torch.Tensor, target: torch.Tensor) -> None:
        super().__init__()
        v, e = source.shape
        self.bn_v, self.bn_e = DataBatchNorm(v), DataBatchNorm(e)
        units, c_in = [], 3
        for i, (c_out, stride) in enumerate(zip(config.channels, config.strides)):
            units.append(
                DGNNUnit(
                    c_in,
                    c_out,
                    source,
                    target,
                    config.temporal_kernel,
                    stride,
                    config.learnable_incidence,
                    residual=i > 0,
                )
            )
            c_in = c_out
        self.units = nn.ModuleList(units)
        self.fc = nn.Linear(2 * c_in, config.num_classes)

    def forward(self, joints: torch.Tensor, bones: torch.Tensor) -> torch.Tensor:
        fv, fe = self.bn_v(joints), self.bn_e(bones)  # (N, 3, T, V), (N, 3, T, E)
        for unit in self.units:
            fv, fe = unit(fv, fe)
        return self.fc(torch.cat([fv.mean(dim=(2, 3)), fe.mean(dim=(2, 3))], dim=1))


@register_model("dgnn", config=DGNNConfig, sizes=SIZES)
class DGNN(nn.Module):
    def __init__(self, config: DGNNConfig) -> None:
        super().__init__()
        self.config = config
        source, target = (torch.from_numpy(m) for m in skeleton_incidence())  # (V, E) each
        self.bones = Bones()
        self.register_buffer("edge_child", torch.from_numpy(STANDARD.bone_children), persistent=False)
        self.streams = nn.ModuleDict({s: DGNNStream(config, source, target) for s in config.streams})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_joints(x, "dgnn")
        bones = self.bones(x)[:, :, self.edge_child]  # (N, T, E=24, 3), edge e = bone of its child joint
        out = 0
        for name, stream in self.streams.items():
            if name == "spatial":
                out = out + stream(x, bones)
            else:
                out = out + stream(frame_differences(x), frame_differences(bones))
        return out
