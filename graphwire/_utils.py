"""Small private helpers shared by graphwire's modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def choose(kind: str, name: str, registry: Mapping[str, T], error: type[Exception]) -> T:
    """Look ``name`` up in ``registry``; on a miss raise ``error`` listing the valid names."""
    try:
        return registry[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in sorted(registry))
        raise error(f"{kind}={name!r} is not known; expected one of {valid}.") from None


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages (shape and dtype of tensors)."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__} of shape {list(shape)} and dtype {dtype}"
    return f"{type(value).__name__} {value!r}"[:200]
