"""Attack strategies: the classification loss ``Lc`` and the success test, chosen by name.

Each ``Lc`` is written so that *minimising* ``L = w Lc + (1 - w) Lp`` attacks:

- ``ab``  Anything-but: ``Lc = -CE(y_q, Phi(q^))``, the cross-entropy between the model's
  original prediction ``y_q`` (one-hot) and its current distribution; success when the
  predicted label differs from ``y_q``. (With the soft ``Phi(q)`` as the target, the
  gradient is exactly zero at the start ``q^ = q``, since d CE(p0, softmax(l)) / dl =
  softmax(l) - p0, so the first Adam steps would follow rounding noise.)
- ``abn`` Anything-but-N: ``Lc = -Entropy(Phi(q^))``; success (and stop) once the true
  label is no longer among the top N classes. An option (not the paper):
  ``Lc = KL(u_rest || Phi(q^))`` with ``u_rest`` uniform over the other ``K - 1`` classes.
  Entropy is already largest at the uniform distribution, where the true label is still
  tied with the others; ``u_rest`` instead pushes the true label's probability to zero.
- ``sa``  Specified: ``Lc = CE(Phi(q^), target)``; success when the target is predicted.
  A random target is drawn per clip from a seeded generator among the classes other
  than the true one (:func:`random_targets`).

Tensors: ``logits (N, K)``; the per-clip context :class:`ClassContext` holds ``(N,)``
labels and the ``(N, K)`` original distribution.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "ClassContext",
    "Strategy",
    "AnythingBut",
    "AnythingButN",
    "ABN_LOSSES",
    "uniform_rest_kl",
    "Specified",
    "STRATEGIES",
    "list_strategies",
    "build_strategy",
    "random_targets",
]


@dataclass
class ClassContext:
    """What the class loss and the success test know about each clip (all ``(N, ...)``)."""

    true: torch.Tensor
    """True labels ``(N,)`` long."""
    original: torch.Tensor
    """The model's prediction on the unperturbed clip ``(N,)`` long."""
    original_probs: torch.Tensor
    """The model's predictive distribution on the unperturbed clip ``(N, K)``."""
    target: torch.Tensor
    """SA targets ``(N,)`` long; -1 where there is none."""

    def select(self, rows: torch.Tensor) -> ClassContext:
        return ClassContext(self.true[rows], self.original[rows], self.original_probs[rows], self.target[rows])

    @staticmethod
    def cat(parts: list[ClassContext]) -> ClassContext:
        fields = ("true", "original", "original_probs", "target")
        return ClassContext(*(torch.cat([getattr(p, f) for p in parts]) for f in fields))


class Strategy(abc.ABC):
    """Base class: ``class_loss`` ``(N,)`` to minimise and ``success`` ``(N,)`` bool."""

    name = ""
    needs_target = False

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """The column name in the paper's tables (AB, AB3, AB5, SA)."""

    @abc.abstractmethod
    def class_loss(self, logits: torch.Tensor, ctx: ClassContext) -> torch.Tensor:
        """``(N,)``: the class loss of each clip, to minimise."""

    @abc.abstractmethod
    def success(self, logits: torch.Tensor, ctx: ClassContext) -> torch.Tensor:
        """``(N,)`` bool: which clips the attack has fooled."""

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "label": self.label}


class AnythingBut(Strategy):
    """AB: push the prediction away from the original distribution."""

    name = "ab"

    @property
    def label(self) -> str:
        return "AB"

    def class_loss(self, logits: torch.Tensor, ctx: ClassContext) -> torch.Tensor:
        return -F.cross_entropy(logits, ctx.original, reduction="none")  # (N,)

    def success(self, logits: torch.Tensor, ctx: ClassContext) -> torch.Tensor:
        return logits.argmax(-1) != ctx.original


ABN_LOSSES = ("entropy", "uniform-rest")
"""ABN class losses: the paper's entropy, or the KL divergence to the uniform distribution over the other classes."""


class AnythingButN(Strategy):
    """ABN: flatten the predictive distribution until the true label leaves the top N.

    ``loss="entropy"`` (the paper, eq. 6): ``Lc = -Entropy(Phi(q^))``.
    ``loss="uniform-rest"``: ``Lc = KL(u_rest || Phi(q^))``, ``u_rest`` uniform over the
    ``K - 1`` classes other than the true one (see the module docstring).
    """

    name = "abn"

    def __init__(self, top_n: int = 3, loss: str = "entropy") -> None:
        if top_n < 1:
            raise ValueError(f"ABN needs top_n >= 1, got {top_n}")
        if loss not in ABN_LOSSES:
            raise ValueError(f"unknown ABN loss {loss!r}; known: {', '.join(ABN_LOSSES)}")
        self.top_n = int(top_n)
        self.loss = loss

    @property
    def label(self) -> str:
        return f"AB{self.top_n}"

    def class_loss(self, logits: torch.Tensor, ctx: ClassContext) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=-1)
        if self.loss == "entropy":
            entropy = -(logp.exp() * logp).sum(-1)  # (N,)
            return -entropy
        return uniform_rest_kl(logp, ctx.true)

    def success(self, logits: torch.Tensor, ctx: ClassContext) -> torch.Tensor:
        if self.top_n >= logits.shape[-1]:
            return torch.zeros(len(logits), dtype=torch.bool, device=logits.device)
        top = logits.topk(self.top_n, dim=-1).indices  # (N, top_n)
        return ~(top == ctx.true[:, None]).any(-1)

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "top_n": self.top_n, "loss": self.loss}


def uniform_rest_kl(logp: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """``KL(u_rest || p) = -log(K - 1) - 1/(K - 1) sum_{k != true} log p_k`` per row ``(N,)``.

    ``logp (N, K)`` log-probabilities, ``true (N,)``; ``u_rest`` puts ``1/(K - 1)`` on every
    class but the true one. 0 exactly at ``p = u_rest``; needs ``K >= 2``.
    """
    k = logp.shape[-1]
    if k < 2:
        raise ValueError("the uniform-rest ABN loss needs at least 2 classes")
    rest = logp.sum(-1) - logp.gather(-1, true[:, None]).squeeze(-1)
    return -math.log(k - 1) - rest / (k - 1)


class Specified(Strategy):
    """SA: pull the prediction to a chosen class."""

    name = "sa"
    needs_target = True

    @property
    def label(self) -> str:
        return "SA"

    def class_loss(self, logits: torch.Tensor, ctx: ClassContext) -> torch.Tensor:
        if (ctx.target < 0).any():
            raise ValueError("SA needs a target for every clip")
        return F.cross_entropy(logits, ctx.target, reduction="none")

    def success(self, logits: torch.Tensor, ctx: ClassContext) -> torch.Tensor:
        return logits.argmax(-1) == ctx.target


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "ab": lambda top_n=3, abn_loss="entropy": AnythingBut(),
    "abn": lambda top_n=3, abn_loss="entropy": AnythingButN(top_n, abn_loss),
    "sa": lambda top_n=3, abn_loss="entropy": Specified(),
}


def list_strategies() -> list[str]:
    return list(STRATEGIES)


def build_strategy(name: str, top_n: int = 3, abn_loss: str = "entropy") -> Strategy:
    """A strategy by name (``ab``, ``abn``, ``sa``); an unknown name lists the known ones.

    ``abn_loss`` picks the ABN class loss (:data:`ABN_LOSSES`); other strategies ignore it.
    """
    try:
        make = STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown attack strategy {name!r}; known: {', '.join(STRATEGIES)}") from None
    return make(top_n=top_n, abn_loss=abn_loss)


def random_targets(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """One SA target per clip, uniform over the classes other than its true label.

    Drawn for the whole clip set at once from ``numpy.random.default_rng(seed)``, so a
    clip's target depends only on the seed and its position in the set (never on how
    clips are batched, or on which were already done before a resume).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if num_classes < 2:
        raise ValueError(f"SA needs at least 2 classes, got {num_classes}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    offset = np.random.default_rng(seed).integers(1, num_classes, size=len(labels))  # 1..K-1
    return (labels + offset) % num_classes
