"""The SMART attack (CVPR 2021), as the paper defines it.

- :mod:`.losses`     the perceptual loss and its ablations (``smart``, ``l2``, ``l2-acc``,
  ``l2-bone``), pure functions on tensors;
- :mod:`.strategies` the class losses and success tests (``ab``, ``abn``, ``sa``);
- :mod:`.engine`     the batched Adam optimiser with per-clip early exit (:func:`attack`);
- :mod:`.results`    the resumable result file, summaries and the paper's success table;
- :mod:`.commands`   ``attack-gen attack``, ``transfer`` and ``attack-table``.

Example::

    from attack_gen.attack import AttackConfig, attack
    from attack_gen.recognizer import load_checkpoint
    from attack_gen.data.clips import load_clips

    model, info = load_checkpoint("stgcn.pt")
    clips = load_clips("stgcn-clips.npz")
    results = attack(model, clips.motions, clips.labels, fps=clips.meta["fps"],
                     config=AttackConfig(strategy="abn", top_n=3, loss="smart"))
"""

from .engine import DEFAULT_LR
from .engine import STATUSES
from .engine import AttackConfig
from .engine import AttackError
from .engine import ClipResult
from .engine import adam_step
from .engine import attack
from .engine import resolve_targets
from .losses import LOSSES
from .losses import TERMS
from .losses import PerceptualWeights
from .losses import list_losses
from .losses import perceptual_loss
from .losses import perceptual_metrics
from .losses import perceptual_terms
from .strategies import STRATEGIES
from .strategies import build_strategy
from .strategies import list_strategies
from .strategies import random_targets

__all__ = [
    "AttackConfig",
    "AttackError",
    "ClipResult",
    "STATUSES",
    "DEFAULT_LR",
    "attack",
    "adam_step",
    "resolve_targets",
    "LOSSES",
    "TERMS",
    "PerceptualWeights",
    "list_losses",
    "perceptual_terms",
    "perceptual_loss",
    "perceptual_metrics",
    "STRATEGIES",
    "build_strategy",
    "list_strategies",
    "random_targets",
]
