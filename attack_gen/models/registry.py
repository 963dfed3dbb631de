"""Model registry: name -> (model class, config dataclass, named sizes).

Each model file decorates its class with :func:`register_model`, giving its config
dataclass and the overrides that make each size ("paper" = the published architecture,
"small" = a CPU-trainable member of the same family, "tiny" = unit tests). A checkpoint
stores ``dataclasses.asdict(model.config)`` and rebuilds with
:func:`build_model_from_config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from typing import Callable
from typing import Mapping
from typing import TypeVar

from torch import nn

__all__ = [
    "ModelSpec",
    "MODELS",
    "register_model",
    "list_models",
    "model_config",
    "build_model",
    "build_model_from_config",
]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model_cls: type[nn.Module]
    config_cls: type
    sizes: Mapping[str, Mapping[str, Any]]


MODELS: dict[str, ModelSpec] = {}

M = TypeVar("M", bound=type[nn.Module])


def register_model(name: str, *, config: type, sizes: Mapping[str, Mapping[str, Any]]) -> Callable[[M], M]:
    """Class decorator: register ``cls(config_instance)`` under ``name`` with its sizes."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config for model {name!r} must be a dataclass, got {config!r}")
    if "paper" not in sizes:
        raise ValueError(f"model {name!r} must define a 'paper' size; got {sorted(sizes)}")

    def decorator(cls: M) -> M:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered (by {MODELS[name].model_cls.__name__})")
        frozen_sizes = MappingProxyType({k: MappingProxyType(dict(v)) for k, v in sizes.items()})
        MODELS[name] = ModelSpec(name=name, model_cls=cls, config_cls=config, sizes=frozen_sizes)
        return cls

    return decorator


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    return sorted(MODELS)


def _make_config(spec: ModelSpec, values: Mapping[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"{spec.name}: unknown config field(s) {unknown}; known: {', '.join(sorted(fields))}")
    # JSON / asdict round trips turn tuples into lists; configs hold tuples
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return spec.config_cls(**values)


def model_config(name: str, size: str = "paper", num_classes: int | None = None, **overrides: Any) -> Any:
    """The config dataclass of model ``name`` at ``size``, with ``overrides`` applied."""
    spec = _spec(name)
    if size not in spec.sizes:
        raise KeyError(f"model {name!r} has no size {size!r}; known: {', '.join(spec.sizes)}")
    if num_classes is None:
        raise ValueError(f"{name}: num_classes is required")
    return _make_config(spec, {**spec.sizes[size], **overrides, "num_classes": num_classes})


def build_model(name: str, num_classes: int, size: str = "paper", **overrides: Any) -> nn.Module:
    """Build model ``name`` (see :func:`list_models`) for ``num_classes`` classes."""
    config = model_config(name, size, num_classes, **overrides)
    return _spec(name).model_cls(config)


def build_model_from_config(name: str, config: Mapping[str, Any] | Any) -> nn.Module:
    """Rebuild a model from its config dataclass or its ``dataclasses.asdict`` dict."""
    spec = _spec(name)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"{name}: config must be a mapping or a dataclass, got {type(config).__name__}")
    return spec.model_cls(_make_config(spec, config))
