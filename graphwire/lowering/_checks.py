"""The one input check of every wired forward pass (reference, dense and frozen)."""

from __future__ import annotations

import torch
from torch import Tensor

from graphwire._utils import describe
from graphwire.errors import GraphError

__all__ = ["check_features"]


def _describe(x: object) -> str:
    """The shared description of ``x`` (_utils.describe), with a tensor's device."""
    return f"{describe(x)} on {x.device}" if isinstance(x, Tensor) else describe(x)


def check_features(x: object, n_inputs: int, like: Tensor, floating: torch.dtype | None) -> None:
    """Check the input features ``x`` of a wired module; raise :class:`GraphError` naming ``x``.

    Args:
        x: What the caller passed.
        n_inputs: Input nodes of the graph (``x.shape[1]``).
        like: A tensor of the module (its device is the one ``x`` must be on).
        floating: The dtype ``x`` must have (the module's weights'), or ``None`` for any
            floating dtype. Under ``torch.autocast`` any floating dtype is accepted.

    Example:
        >>> import torch
        >>> from graphwire.lowering import check_features
        >>> check_features(torch.ones(3, 2, dtype=torch.long), 2, torch.zeros(1), None)
        Traceback (most recent call last):
            ...
        graphwire.errors.GraphError: x must hold floating-point features ...
    """
    shape = f"[B, n_inputs={n_inputs}] or [B, {n_inputs}, *F]"
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[1] != n_inputs:
        raise GraphError(f"x must have shape {shape}; got {_describe(x)}.")
    if not x.is_floating_point():
        raise GraphError(
            f"x must hold floating-point features of shape {shape}; got {_describe(x)}. "
            "Convert it with x.float()."
        )
    if x.device != like.device:
        raise GraphError(
            f"x is on {x.device} but the module is on {like.device}; move one of them, e.g. "
            f"x.to({str(like.device)!r})."
        )
    if floating is not None and x.dtype != floating:
        if torch.is_autocast_enabled(x.device.type):
            return
        raise GraphError(
            f"x has dtype {x.dtype} but the module's weights are {floating}; convert with "
            f"x.to({floating}) or module.to({x.dtype})."
        )
