"""HRNN / HBRNN-L (Du, Wang & Wang, CVPR 2015): hierarchical bidirectional RNN over body parts.

Nine layers as in the paper: the skeleton is split into five parts (``STANDARD.parts``:
trunk, left arm, right arm, left leg, right leg), each fed to its own bidirectional tanh
RNN (bl1); fusion fl1 concatenates the trunk's outputs with each limb's (4 streams) for
bl2; fl2 concatenates trunk+arms (upper body) and trunk+legs (lower body) for bl3; fl3
concatenates the two for bl4, a bidirectional LSTM ("-L"); a fully connected layer maps
each frame to class scores, which are accumulated over time; the softmax is left to the
loss (logits are returned). The accumulation is the mean over frames (the paper's sum
divided by T, so logits do not grow with clip length).

Each BRNN is one cuDNN-style ``nn.RNN`` / ``nn.LSTM`` call over the whole sequence.
Hidden sizes (per direction, bl1..bl4) default to 30, 60, 90, 120: the scale of the
paper's networks, not re-read per dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .graph import part_indices
from .layers import check_joints
from .registry import register_model

__all__ = ["HRNNConfig", "HRNN"]

LIMBS = ("left_arm", "right_arm", "left_leg", "right_leg")


@dataclass
class HRNNConfig:
    num_classes: int
    hidden: tuple[int, ...] = (30, 60, 90, 120)  # units per direction in bl1, bl2, bl3, bl4
    dropout: float = 0.0  # on the fused features between layers (the paper uses none)

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"hrnn: num_classes must be a positive integer, got {self.num_classes!r}")
        if len(self.hidden) != 4 or any(h < 1 for h in self.hidden):
            raise ValueError(f"hrnn: hidden must be 4 positive sizes (bl1..bl4), got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"hrnn: dropout must be in [0, 1), got {self.dropout}")


SIZES = {
    "paper": {},
    "small": {"hidden": (16, 32, 48, 64)},
    "tiny": {"hidden": (8, 8, 8, 8)},
}


def _brnn(in_features: int, hidden: int) -> nn.RNN:
    return nn.RNN(in_features, hidden, nonlinearity="tanh", batch_first=True, bidirectional=True)


@register_model("hrnn", config=HRNNConfig, sizes=SIZES)
class HRNN(nn.Module):
    def __init__(self, config: HRNNConfig) -> None:
        super().__init__()
        self.config = config
        parts = part_indices()
        self.part_names = ("trunk",) + LIMBS
        for name in self.part_names:
            self.register_buffer(f"idx_{name}", torch.tensor(parts[name]), persistent=False)
        h1, h2, h3, h4 = config.hidden
        self.bl1 = nn.ModuleList([_brnn(3 * len(parts[p]), h1) for p in self.part_names])  # 5 parts
        self.bl2 = nn.ModuleList([_brnn(4 * h1, h2) for _ in LIMBS])  # trunk + each limb
        self.bl3 = nn.ModuleList([_brnn(4 * h2, h3) for _ in range(2)])  # upper, lower body
        self.bl4 = nn.LSTM(4 * h3, h4, batch_first=True, bidirectional=True)  # whole body
        self.drop = nn.Dropout(config.dropout)
        self.fc = nn.Linear(2 * h4, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_joints(x, "hrnn")
        # bl1: each part (N, T, J_p, 3) -> (N, T, J_p*3) -> (N, T, 2*h1)
        trunk, la, ra, ll, rl = (
            rnn(rearrange(x[:, :, getattr(self, f"idx_{p}")], "n t j c -> n t (j c)"))[0]
            for p, rnn in zip(self.part_names, self.bl1)
        )
        # fl1 + bl2: trunk fused with each limb -> 4 x (N, T, 2*h2)
        fused = [self.drop(torch.cat([trunk, limb], dim=-1)) for limb in (la, ra, ll, rl)]
        t_la, t_ra, t_ll, t_rl = (rnn(f)[0] for rnn, f in zip(self.bl2, fused))
        # fl2 + bl3: upper body (trunk + arms), lower body (trunk + legs) -> 2 x (N, T, 2*h3)
        upper = self.bl3[0](self.drop(torch.cat([t_la, t_ra], dim=-1)))[0]
        lower = self.bl3[1](self.drop(torch.cat([t_ll, t_rl], dim=-1)))[0]
        # fl3 + bl4 (BLSTM): whole body -> (N, T, 2*h4)
        body = self.bl4(self.drop(torch.cat([upper, lower], dim=-1)))[0]
        # fc per frame, accumulated over time -> (N, num_classes)
        return self.fc(body).mean(dim=1)
