"""The model registry: every network of the paper by name, with overridable settings."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from graphwire import ConfigError

__all__ = ["register_model", "create_model", "list_models", "model_defaults"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def _lookup(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; on a miss a ConfigError listing the valid names."""
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in sorted(_MODELS))
        raise ConfigError(f"model={name!r} is not known; expected one of {valid}.") from None


def register_model(
    name: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``(**settings) -> nn.Module`` under ``name`` (default: its name).

    Example:
        >>> from torch import nn
        >>> from models import create_model, register_model
        >>> @register_model("my_linear")
        ... def my_linear(num_classes: int = 10) -> nn.Module:
        ...     return nn.Linear(4, num_classes)
        >>> create_model("my_linear", num_classes=3).out_features
        3
    """

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _MODELS and _MODELS[key] is not fn:
            raise ConfigError(f"model name {key!r} is already registered; choose another name.")
        _MODELS[key] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """The registered model names, sorted.

    Example:
        >>> from models import list_models
        >>> "tiny_static" in list_models()
        True
    """
    return sorted(_MODELS)


def model_defaults(name: str) -> dict[str, Any]:
    """The settings a model accepts and their defaults.

    Example:
        >>> from models import model_defaults
        >>> model_defaults("tiny_static")["num_nodes"]
        800
    """
    fn = _lookup(name)
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the model registered as ``name`` with some settings overridden.

    Raises:
        ConfigError: for an unknown name (the message lists the valid ones) or a setting the
            model does not take (the message lists those it takes).

    Example:
        >>> from models import create_model
        >>> net = create_model("tiny_static", in_channels=1, image_size=8, num_nodes=40,
        ...                    k=200, stem_channels=8, readout=8, seed=0)
        >>> type(net).__name__
        'TinyClassifier'
    """
    fn = _lookup(name)
    accepted = model_defaults(name)
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ConfigError(
            f"model {name!r} takes no setting {', '.join(map(repr, unknown))}; it takes "
            f"{', '.join(sorted(accepted))}."
        )
    return fn(**overrides)
