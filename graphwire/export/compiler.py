"""``graphwire.compile``: freeze wired graphs and wired layers into fast inference modules.

Every :class:`~graphwire.WiredGraph` already trains and infers through the dense
backend (:class:`~graphwire.lowering.DenseExecutor`). ``compile(mode="eval")`` adds what
only a frozen selection allows: dead nodes removed, channels compacted, and each block
run as a dense product or by the tiled sparse kernel, chosen by a cost model
(:class:`~graphwire.lowering.CompiledGraph`). Wired layers (what
:func:`~graphwire.layers.sparsify` makes) are frozen into plain layers carrying their
effective weights, their dead channels removed across layers, and each is run dense or
by a sparse layer (:func:`~graphwire.lowering.lower_layer`).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils import skip_init

from graphwire._utils import choose, describe
from graphwire.errors import ConfigError
from graphwire.execution.wired import WiredGraph
from graphwire.export._compact import compact_channels
from graphwire.export._fold import fold_batchnorms
from graphwire.export._fuse import fuse_epilogues
from graphwire.layers import WiredConv1d, WiredConv2d, WiredConv3d, WiredLayer, WiredLinear
from graphwire.lowering import CompiledGraph, lower_layer
from graphwire.wiring import WiredModule

__all__ = ["compile", "freeze_layer"]

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


#: The plain layer each wired layer freezes into (``WiredConv3d`` always runs dense).
_PLAIN: tuple[tuple[type[WiredLayer], type[nn.Module]], ...] = (
    (WiredLinear, nn.Linear),
    (WiredConv1d, nn.Conv1d),
    (WiredConv2d, nn.Conv2d),
    (WiredConv3d, nn.Conv3d),
)
_SUPPORTED = (
    "graphwire.WiredGraph, WiredLinear, WiredConv1d, WiredConv2d (dense or sparse) and "
    "WiredConv3d (dense)"
)


def _plain_of(layer: nn.Module) -> type[nn.Module] | None:
    return next((plain for wired, plain in _PLAIN if isinstance(layer, wired)), None)


def _check_supported(module: nn.Module) -> None:
    """Raise for wired modules that ``compile`` cannot freeze, naming each and what works."""
    bad = [
        f"{name or '<root>'!r} ({type(m).__name__})"
        for name, m in module.named_modules()
        if isinstance(m, WiredModule)
        and not isinstance(m, WiredGraph)
        and not (isinstance(m, WiredLayer) and _plain_of(m) is not None)
    ]
    if bad:
        raise ConfigError(
            f"module holds wired modules that graphwire.compile does not support: "
            f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. Supported are {_SUPPORTED}; "
            "replace these by supported layers, or freeze them yourself into plain modules "
            "before compiling."
        )


def freeze_layer(layer: WiredLayer) -> nn.Module:
    """The plain ``nn.Linear`` / ``nn.Conv*d`` computing what ``layer`` computes now.

    Its weight is ``layer.effective_weight()`` (zeros where unselected) and its bias
    ``layer``'s; configuration, device, dtype and training flag are ``layer``'s.

    Args:
        layer: A :class:`~graphwire.layers.WiredLinear`, ``WiredConv1d``, ``WiredConv2d``
            or ``WiredConv3d``.

    Returns:
        A new plain layer (``layer`` is left untouched).

    Example:
        >>> import torch
        >>> from graphwire.export import freeze_layer
        >>> from graphwire.layers import WiredConv2d
        >>> wired = WiredConv2d(3, 4, 3, padding=1, density=0.2, seed=0)
        >>> plain = freeze_layer(wired)
        >>> type(plain).__name__, int((plain.weight != 0).sum()) == int(wired.edge_mask.sum())
        ('Conv2d', True)
        >>> x = torch.randn(1, 3, 5, 5)
        >>> torch.allclose(plain(x), wired(x))
        True
    """
    plain = _plain_of(layer)
    weight = layer.effective_weight().detach()
    has_bias = layer.bias is not None
    factory = {"device": weight.device, "dtype": weight.dtype}
    if plain is nn.Linear:
        args: tuple = (layer.in_features, layer.out_features)
        kwargs: dict = {"bias": has_bias}
    else:
        args = (layer.in_channels, layer.out_channels, layer.kernel_size)
        kwargs = {
            "stride": layer.stride,
            "padding": layer.padding,
            "dilation": layer.dilation,
            "groups": layer.groups,
            "bias": has_bias,
            "padding_mode": layer.padding_mode,
        }
    out = skip_init(plain, *args, **kwargs, **factory)  # no draw from the global RNG
    with torch.no_grad():
        out.weight.copy_(weight)
        if has_bias:
            out.bias.copy_(layer.bias.detach())
    return out.train(layer.training)


def _replace(model: nn.Module, pick, make) -> tuple[nn.Module, list[str]]:
    """``model`` with each submodule ``m`` where ``pick(m)`` replaced by ``make(m)``.

    A module reachable under several names is replaced once (its replacement is shared
    the same way). Returns the new root and every name replaced.
    """
    memo: dict[int, nn.Module] = {}
    names: list[str] = []
    if pick(model):
        return make(model), [""]
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent._modules.items()):  # every name, shared too
            if child is None or not pick(child):
                continue
            if id(child) not in memo:
                memo[id(child)] = make(child)
            setattr(parent, child_name, memo[id(child)])
            names.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    return model, names


def _compile_layers(model: nn.Module, kernel: str, fuse: bool) -> nn.Module:
    """Freeze every wired layer, compact channels, pick each layer's kernel, fuse epilogues."""
    model, frozen = _replace(model, lambda m: isinstance(m, WiredLayer), freeze_layer)
    model, report = compact_channels(model)
    folded = fold_batchnorms(model)  # BatchNorms after convolutions: into their weights
    frozen_names = set(frozen)
    by_id: dict[int, str] = {}  # each lowered module: the first name it was found under
    choices: dict[str, str] = {}

    def pick(m: nn.Module) -> bool:
        return id(m) in ids

    ids = set()
    for name, m in model.named_modules(remove_duplicate=False):
        if name in frozen_names and isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            ids.add(id(m))
            by_id.setdefault(id(m), name)

    def lower(m: nn.Module) -> nn.Module:
        out = lower_layer(m, kernel)
        choices[by_id[id(m)]] = "dense" if out is m else "sparse"
        return out

    model, _ = _replace(model, pick, lower)
    model.compaction_report = report
    model.layer_kernels = dict(sorted(choices.items()))
    model.folded_batchnorms = folded
    model.fused_epilogues = fuse_epilogues(model) if fuse else {}
    return model


def compile(
    module: nn.Module, *, kernel: str = "auto", mode: str | None = None, fuse: bool = True
) -> nn.Module:
    """Freeze wired graphs and wired layers, or any model holding them, for inference.

    A :class:`~graphwire.WiredGraph` becomes a :class:`~graphwire.lowering.CompiledGraph`
    (dead nodes removed, dense or sparse blocks). The wired layers
    (:class:`~graphwire.layers.WiredLinear`, ``WiredConv1d``, ``WiredConv2d``,
    ``WiredConv3d``, what :func:`~graphwire.layers.sparsify` makes) are, in order:

    1. frozen into plain ``nn.Linear`` / ``nn.Conv*d`` layers with their effective
       weights (zeros where unselected; :func:`~graphwire.export.freeze_layer`);
    2. compacted: output channels whose weights are all unselected are removed with the
       matching input channels of the layers reading them (``compact_channels``);
    3. each run as the fastest of its dense layer (on the compacted channels) and a
       sparse layer (:class:`~graphwire.lowering.SparseLinear`,
       :class:`~graphwire.lowering.SparseConv1d`,
       :class:`~graphwire.lowering.SparseConv2d`), chosen by the cost model
       :func:`~graphwire.lowering.layer_sparse_wins` on the layer's device, or as
       ``kernel`` forces. ``WiredConv3d`` always becomes a dense ``nn.Conv3d``.

    Before step 3, every inference BatchNorm that reads a convolution alone is folded
    into it (:func:`~graphwire.export.fold_batchnorms`; zero weights stay zero). After
    it, with ``fuse``, a ReLU or a residual addition (and the ReLU after it) that alone
    reads a sparse convolution's output is fused into that convolution, whose kernel
    applies it as it stores (:func:`~graphwire.export.fuse_epilogues`; the submodules
    rewritten become ``torch.fx.GraphModule`` objects with the same submodule names).

    A model compiled from wired layers carries four plain attributes (not tensors, not
    in its ``state_dict``): ``compaction_report``, the channels removed per layer,
    ``layer_kernels``, ``{layer name: "dense" | "sparse"}``, ``folded_batchnorms``,
    the names of the BatchNorms folded (now ``nn.Identity``), and ``fused_epilogues``,
    ``{convolution name: "relu" | "add" | "add+relu"}``.

    Args:
        module: A ``WiredGraph``, a wired layer, or an ``nn.Module`` containing some.
        kernel: ``"auto"`` picks a dense product or the sparse kernel per block and per
            layer by a cost model; ``"dense"`` or ``"sparse"`` forces one (layers without
            a sparse path, ``Conv3d``, stay dense).
        mode: Kept from graphwire 0.1, deprecated: ``None`` or ``"eval"`` freeze as
            above; ``"train"`` is a harmless alias that warns and returns ``module``
            itself, since every ``WiredGraph`` trains through the dense backend by default
            (a ``WiredGraph`` built with ``backend="reference"`` is switched to
            ``"auto"``).
        fuse: Fuse ReLUs and residual additions into the sparse convolutions before
            them (``False`` keeps every submodule's class and ``forward``).

    Returns:
        A deep copy of the model with every ``WiredGraph`` and wired layer replaced by
        its frozen module, switched to ``eval()`` and without gradients (``module``
        itself for the deprecated ``mode="train"``).

    Raises:
        ConfigError: for an unknown ``mode`` or ``kernel``.
        ConfigError: for a ``module`` that is not a module, holds no ``WiredGraph`` or
            wired layer, is already compiled, or holds a wired module of another kind
            (the message names it and lists what is supported).
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

        A sparsified network:

        >>> from torch import nn
        >>> from graphwire.layers import sparsify
        >>> dense = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3))
        >>> sparse = sparsify(dense, density=0.1, seed=0).eval()
        >>> fast = graphwire.compile(sparse, kernel="sparse")
        >>> sorted(fast.layer_kernels.items())
        [('0', 'sparse'), ('2', 'sparse')]
        >>> x = torch.randn(2, 3, 12, 12)
        >>> with torch.inference_mode():
        ...     torch.allclose(fast(x), sparse(x), atol=1e-5)
        True
    """
    if mode is not None:
        choose("mode", mode, dict.fromkeys(_MODES), ConfigError)
    choose("kernel", kernel, dict.fromkeys(CompiledGraph.kernels), ConfigError)
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"module must be a graphwire.WiredGraph, a wired layer or an nn.Module "
            f"containing some; got {describe(module)}."
        )
    if isinstance(module, CompiledGraph):
        raise ConfigError(
            f"module is already compiled ({type(module).__name__}); compile the source "
            "WiredGraph instead."
        )
    _check_supported(module)
    wired = [m for m in module.modules() if isinstance(m, WiredGraph)]
    layers = [m for m in module.modules() if isinstance(m, WiredLayer)]
    if not wired and not layers:
        raise ConfigError(
            f"module {type(module).__name__} holds no graphwire.WiredGraph and no wired layer "
            "(graphwire.layers.sparsify makes them), so there is nothing to compile; use "
            "torch.compile for ordinary modules."
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
        if isinstance(module, WiredGraph):
            return CompiledGraph(module, kernel=kernel).requires_grad_(False).eval()
        lowered = _swap(module, lambda w: CompiledGraph(w, kernel=kernel), {}) if wired else module
        lowered = copy.deepcopy(lowered)
        if layers:
            lowered = _compile_layers(lowered, kernel, fuse)
    return lowered.requires_grad_(False).eval()
