"""What crosses from a wired graph to its lowerings: a plain description, and the input check.

:class:`~graphwire.WiredGraph` hands every backend (and :func:`graphwire.freeze`) a
:class:`WiredSpec`: the graph, the mode, the effective edge weights, the selection, the
node operations, the steps and the solver, all read at one moment. A lowering reads
nothing else of the module: no private attribute of a higher room.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from graphwire._utils import describe
from graphwire.backends.dynamics import ODESolver
from graphwire.errors import GraphError
from graphwire.graph.channel_graph import ChannelGraph

__all__ = ["WiredSpec", "check_features"]


@dataclass(slots=True)
class WiredSpec:
    """A wired graph as its lowerings see it: plain values, no module.

    Built afresh at every call (a lowering reads it and lets it go; it is not a place to
    keep anything), so it is a plain slotted dataclass: cheap to build.

    Attributes:
        graph: The candidate edges, inputs and outputs.
        mode: ``"dag"``, ``"discrete"`` or ``"continuous"``.
        weight: ``[E]`` effective edge weights, the ones the forward pass uses (zero where
            unselected for most rules; differentiable during training).
        mask: Boolean ``[E]``: the selected edges.
        node_op: ``f_v`` of all ``N`` nodes, called as ``node_op(x, nodes)`` with ``x``
            ``[B, n, *F]`` and ``nodes`` the int64 ids of those ``n`` nodes.
        input_op: The operation applied to the data at the input nodes, called likewise.
        steps: Time steps of ``mode="discrete"``.
        solver: The ODE solver of ``mode="continuous"``.
    """

    graph: ChannelGraph
    mode: str
    weight: Tensor
    mask: Tensor
    node_op: nn.Module
    input_op: nn.Module
    steps: int
    solver: ODESolver


def _describe(x: object) -> str:
    """The shared description of ``x`` (_utils.describe), with a tensor's device."""
    return f"{describe(x)} on {x.device}" if isinstance(x, Tensor) else describe(x)


def check_features(x: object, n_inputs: int, like: Tensor, floating: torch.dtype | None) -> None:
    """Check the input features ``x`` of a wired module; raise :class:`GraphError` naming ``x``.

    The one input check of every wired forward pass (both backends and the frozen graph).

    Args:
        x: What the caller passed.
        n_inputs: Input nodes of the graph (``x.shape[1]``).
        like: A tensor of the module (its device is the one ``x`` must be on).
        floating: The dtype ``x`` must have (the module's weights'), or ``None`` for any
            floating dtype. Under ``torch.autocast`` any floating dtype is accepted.

    Example:
        >>> import torch
        >>> from graphwire.backends.spec import check_features
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
