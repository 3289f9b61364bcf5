"""Small private helpers shared by graphwire's modules."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

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


def replace_modules(
    model: nn.Module,
    pick: Callable[[str, nn.Module], bool],
    make: Callable[[str, nn.Module], nn.Module],
) -> tuple[nn.Module, list[str]]:
    """Replace, in place, every submodule ``m`` found under ``name`` where ``pick(name, m)``.

    The one module-replacement helper of graphwire (``sparsify``, ``freeze`` and the
    inference passes all replace through it). The replacement is ``make(name, m)``; a
    module found under several names is made once, at its first name, and the
    replacement is shared the same way. The subtree of a replaced module is not searched.

    Args:
        model: The root; a ``pick("", model)`` replaces the root itself (returned).
        pick: Whether to replace the module found under a qualified name.
        make: The replacement of a picked module.

    Returns:
        ``(root, names)``: the root (``model`` unless it was replaced) and every name
        replaced, in module order.

    Example:
        >>> from torch import nn
        >>> from graphwire._utils import replace_modules
        >>> shared = nn.ReLU()
        >>> net = nn.Sequential(nn.Linear(2, 2), shared, nn.Linear(2, 2), shared)
        >>> net, names = replace_modules(
        ...     net, lambda name, m: isinstance(m, nn.ReLU), lambda name, m: nn.Tanh()
        ... )
        >>> names, net[1] is net[3]
        (['1', '3'], True)
    """
    if pick("", model):
        return make("", model), [""]
    made: dict[int, nn.Module] = {}
    names: list[str] = []
    for parent_name, parent in list(model.named_modules(remove_duplicate=False)):
        if any(parent_name == n or parent_name.startswith(f"{n}.") for n in names):
            continue  # inside a replaced module
        for child_name, child in list(parent._modules.items()):  # every name, shared too
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if child is None or not pick(name, child):
                continue
            if id(child) not in made:
                made[id(child)] = make(name, child)
            setattr(parent, child_name, made[id(child)])
            names.append(name)
    return model, names
