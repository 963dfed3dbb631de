"""The five target models and their registry.

Every model maps joint positions ``(N, T, V=25, C=3)`` (the canonical layout, already
normalised by the caller; single person, so NTU's second body is not used) to logits
``(N, num_classes)``; T is free. Build one by name::

    model = build_model("stgcn", num_classes=65, size="small")
    ckpt = {"model": "stgcn", "config": dataclasses.asdict(model.config), ...}
    model = build_model_from_config(ckpt["model"], ckpt["config"])

Names: ``hrnn``, ``stgcn``, ``asgcn``, ``dgnn``, ``agcn`` (2s-AGCN). Sizes: ``paper``
(the published architectures), ``small`` (same family, CPU-trainable), ``tiny`` (tests).
"""

from __future__ import annotations

from . import agcn  # noqa: F401  (each registers its model)
from . import asgcn  # noqa: F401  (each registers its model)
from . import dgnn  # noqa: F401  (each registers its model)
from . import hrnn  # noqa: F401  (each registers its model)
from . import stgcn  # noqa: F401  (each registers its model)
from .agcn import AGCN
from .agcn import AGCNConfig
from .asgcn import ASGCN
from .asgcn import ASGCNConfig
from .dgnn import DGNN
from .dgnn import DGNNConfig
from .hrnn import HRNN
from .hrnn import HRNNConfig
from .registry import MODELS
from .registry import ModelSpec
from .registry import build_model
from .registry import build_model_from_config
from .registry import list_models
from .registry import model_config
from .registry import register_model
from .stgcn import STGCN
from .stgcn import STGCNConfig

__all__ = [
    "MODELS",
    "ModelSpec",
    "register_model",
    "build_model",
    "build_model_from_config",
    "list_models",
    "model_config",
    "HRNN",
    "HRNNConfig",
    "STGCN",
    "STGCNConfig",
    "ASGCN",
    "ASGCNConfig",
    "DGNN",
    "DGNNConfig",
    "AGCN",
    "AGCNConfig",
]
