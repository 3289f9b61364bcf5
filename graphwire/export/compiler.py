"""``graphwire.compile``: freeze wired graphs into fast inference modules.

Every :class:`~graphwire.WiredGraph` already trains and infers through the dense
backend (:class:`~graphwire.lowering.DenseExecutor`). ``compile(mode="eval")`` adds what
only a frozen selection allows: dead nodes removed, channels compacted, and each block
run as a dense product or by the tiled sparse kernel, chosen by a cost model
(:class:`~graphwire.lowering.CompiledGraph`).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from graphwire._utils import choose, describe
from graphwire.errors import ConfigError
from graphwire.execution.wired import WiredGraph
from graphwire.lowering import CompiledGraph

__all__ = ["compile"]

_MODES = ("train", "eval")


def _swap(module: nn.Module, lower, memo: dict[int, nn.Module]) -> nn.Module:
    """``module`` with every ``WiredGraph`` inside replaced by ``lower(wired)``.

    Modules on the way to a ``WiredGraph`` are shallow copies holding the same
    parameters and buffers; the others are reused as they are (the caller deep-copies).
    """
    if id(module) in memo:
        return memo[id(module)]
    if isinstance(module, WiredGraph):
        out = lower(module)
    elif not any(isinstance(m, WiredGraph) for m in module.modules()):
        out = module
    else:
        out = copy.copy(module)
        out._parameters = dict(module._parameters)
        out._buffers = dict(module._buffers)
        out._modules = {
            name: None if child is None else _swap(child, lower, memo)
            for name, child in module._modules.items()
        }
    memo[id(module)] = out
    return out


def compile(module: nn.Module, *, kernel: str = "auto", mode: str | None = None) -> nn.Module:
    """Freeze a :class:`~graphwire.WiredGraph`, or any model holding them, for inference.

    Args:
        module: A ``WiredGraph`` or an ``nn.Module`` containing some.
        kernel: ``"auto"`` picks a dense product or the sparse kernel per block by a cost
            model; ``"dense"`` or ``"sparse"`` forces one.
        mode: Kept from graphwire 0.1, deprecated: ``None`` or ``"eval"`` freeze as
            above; ``"train"`` is a harmless alias that warns and returns ``module``
            itself, since every ``WiredGraph`` trains through the dense backend by default
            (a ``WiredGraph`` built with ``backend="reference"`` is switched to
            ``"auto"``).

    Returns:
        A deep copy of the model with every ``WiredGraph`` replaced by its frozen module,
        switched to ``eval()`` and without gradients (``module`` itself for the
        deprecated ``mode="train"``).

    Raises:
        ConfigError: for an unknown ``mode`` or ``kernel``.
        ConfigError: for a ``module`` that is not a module, holds no ``WiredGraph``, or is
            already compiled.
        GraphError: for an empty selection, or no output reachable under the selection
            (:class:`~graphwire.ReachabilityError`).

    Example:
        >>> import torch
        >>> import graphwire
        >>> from graphwire.graph import layered_dag
        >>> net = graphwire.WiredGraph(layered_dag([8, 32, 32, 4]), density=0.3, seed=0)
        >>> infer = graphwire.compile(net)
        >>> x = torch.randn(4, 8)
        >>> with torch.inference_mode():
        ...     torch.allclose(infer(x), net(x), atol=1e-5)
        True
    """
    if mode is not None:
        choose("mode", mode, dict.fromkeys(_MODES), ConfigError)
    choose("kernel", kernel, dict.fromkeys(CompiledGraph.kernels), ConfigError)
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"module must be a graphwire.WiredGraph or an nn.Module containing some; got "
            f"{describe(module)}."
        )
    if isinstance(module, CompiledGraph):
        raise ConfigError(
            f"module is already compiled ({type(module).__name__}); compile the source "
            "WiredGraph instead."
        )
    wired = [m for m in module.modules() if isinstance(m, WiredGraph)]
    if not wired:
        raise ConfigError(
            f"module {type(module).__name__} holds no graphwire.WiredGraph, so there is nothing "
            "to compile; use torch.compile for ordinary modules."
        )
    if mode == "train":
        warnings.warn(
            "graphwire.compile(mode='train') is no longer needed and returns the module "
            "itself: every WiredGraph trains through the dense backend by default. Drop the "
            "call (set net.backend to choose a backend).",
            FutureWarning,
            stacklevel=2,
        )
        for m in wired:
            if m.backend == "reference":
                m.backend = "auto"
        return module
    with torch.no_grad():
        lowered = _swap(module, lambda w: CompiledGraph(w, kernel=kernel), {})
        if not isinstance(module, WiredGraph):
            lowered = copy.deepcopy(lowered)
    return lowered.requires_grad_(False).eval()
