"""``graphwire.freeze``: the one way from a trained network to its inference module.

Train with the module; deploy the frozen one. A :class:`~graphwire.WiredGraph` trains
and infers through its backend, and keeps nothing between calls. ``freeze`` adds, by one
explicit call, what only a fixed selection allows: a :class:`FrozenGraph` with dead nodes
removed, channels compacted and each block run dense or by the sparse kernels, chosen by
a cost model. Wired layers (what :func:`~graphwire.layers.sparsify` makes) are frozen
into plain layers carrying their effective weights, their dead channels removed across
layers, BatchNorms folded, and each layer run dense or by a sparse layer
(:class:`~graphwire.export.SparseLinear`, :class:`~graphwire.export.SparseConv2d`, ...)
with ReLUs and residual additions fused into it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import skip_init

from graphwire._native.ops import KERNELS
from graphwire._utils import choose, describe, replace_modules
from graphwire.errors import ConfigError
from graphwire.execution.wired import WiredGraph
from graphwire.export._compact import compact_channels
from graphwire.export._fold import fold_batchnorms
from graphwire.export._fuse import fuse_epilogues
from graphwire.export._graph import FrozenGraph
from graphwire.export._layers import sparse_layer
from graphwire.layers import WiredConv1d, WiredConv2d, WiredConv3d, WiredLinear
from graphwire.wiring import WiredModule

__all__ = ["freeze", "compile"]

#: The plain layer each wired layer freezes into (``WiredConv3d`` always runs dense).
_PLAIN: tuple[tuple[type[nn.Module], type[nn.Module]], ...] = (
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
    """Raise for wired modules that ``freeze`` cannot freeze, naming each and what works."""
    bad = [
        f"{name or '<root>'!r} ({type(m).__name__})"
        for name, m in module.named_modules()
        if isinstance(m, WiredModule) and not isinstance(m, WiredGraph) and _plain_of(m) is None
    ]
    if bad:
        raise ConfigError(
            f"module holds wired modules that graphwire.freeze does not support: "
            f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. Supported are {_SUPPORTED}; "
            "replace these by supported layers, or freeze them yourself into plain modules "
            "before freezing."
        )


def _plain_layer(layer: nn.Module) -> nn.Module:
    """The plain ``nn.Linear`` / ``nn.Conv*d`` computing what the wired ``layer`` computes now.

    Its weight is ``layer.effective_weight()`` (zeros where unselected) and its bias
    ``layer``'s; configuration, device, dtype and training flag are ``layer``'s.
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


def _freeze_layers(model: nn.Module, kernel: str, fuse: bool) -> nn.Module:
    """Freeze every wired layer, compact channels, fold, pick each layer's kernel, fuse."""
    model, frozen = replace_modules(
        model, lambda name, m: _plain_of(m) is not None, lambda name, m: _plain_layer(m)
    )
    model, report = compact_channels(model)  # a copy, with the same names
    folded = fold_batchnorms(model)  # BatchNorms after convolutions: into their weights
    frozen_names = set(frozen)
    choices: dict[str, str] = {}

    def lower(name: str, m: nn.Module) -> nn.Module:
        out = sparse_layer(m, kernel)
        choices[name] = "dense" if out is m else "sparse"
        return out

    model, _ = replace_modules(model, lambda name, m: name in frozen_names, lower)
    model.compaction_report = report
    model.layer_kernels = dict(sorted(choices.items()))
    model.folded_batchnorms = folded
    model.fused_epilogues = fuse_epilogues(model) if fuse else {}
    return model


def freeze(module: nn.Module, *, kernel: str = "auto", fuse: bool = True) -> nn.Module:
    """Freeze wired graphs and wired layers, or any model holding them, for inference.

    A :class:`~graphwire.WiredGraph` becomes a :class:`~graphwire.export.FrozenGraph`
    (dead nodes removed, dense or sparse blocks). The wired layers
    (:class:`~graphwire.layers.WiredLinear`, ``WiredConv1d``, ``WiredConv2d``,
    ``WiredConv3d``, what :func:`~graphwire.layers.sparsify` makes) are, in order:

    1. frozen into plain ``nn.Linear`` / ``nn.Conv*d`` layers with their effective
       weights (zeros where unselected);
    2. compacted: output channels whose weights are all unselected are removed with the
       matching input channels of the layers reading them
       (:func:`~graphwire.export.compact_channels`);
    3. each run as the fastest of its dense layer (on the compacted channels) and a
       sparse layer (:class:`~graphwire.export.SparseLinear`,
       :class:`~graphwire.export.SparseConv2d`, or a ``SparseConv1d``), chosen by the
       cost model on the layer's device, or as ``kernel`` forces. ``WiredConv3d``
       always becomes a dense ``nn.Conv3d``.

    Before step 3, every inference BatchNorm that reads a convolution alone is folded
    into it (zero weights stay zero). After it, with ``fuse``, a ReLU or a residual
    addition (and the ReLU after it) that alone reads a sparse convolution's output is
    fused into that convolution, whose kernel applies it as it stores (the submodules
    rewritten become ``torch.fx.GraphModule`` objects with the same submodule names).

    The network is frozen as it computes in evaluation mode (a copy is switched to
    ``eval()`` first); the call changes nothing in ``module``. Freeze again after further
    training: the frozen module is a snapshot.

    A model frozen from wired layers carries four plain attributes (not tensors, not in
    its ``state_dict``): ``compaction_report``, the channels removed per layer
    (a :class:`~graphwire.export.CompactionReport`), ``layer_kernels``, ``{layer name:
    "dense" | "sparse"}``, ``folded_batchnorms``, the names of the BatchNorms folded (now
    ``nn.Identity``), and ``fused_epilogues``, ``{convolution name: "relu" | "add" |
    "add+relu"}``.

    Args:
        module: A ``WiredGraph``, a wired layer, or an ``nn.Module`` containing some.
        kernel: ``"auto"`` picks a dense product or the sparse kernel per block and per
            layer by the cost model; ``"dense"`` or ``"sparse"`` forces one (layers
            without a sparse path, ``Conv3d``, stay dense).
        fuse: Fuse ReLUs and residual additions into the sparse convolutions before
            them (``False`` keeps every submodule's class and ``forward``).

    Returns:
        A copy of the model with every ``WiredGraph`` and wired layer replaced by its
        frozen module, in ``eval()`` mode and without gradients.

    Raises:
        ConfigError: for an unknown ``kernel``; for a ``module`` that is not a module,
            holds no ``WiredGraph`` or wired layer, is frozen already, or holds a wired
            module of another kind (the message names it and lists what is supported).
        GraphError: for an empty selection, or no output reachable under the selection
            (:class:`~graphwire.ReachabilityError`).

    Example:
        >>> import torch
        >>> import graphwire
        >>> from graphwire.graph import layered_dag
        >>> net = graphwire.WiredGraph(layered_dag([8, 32, 32, 4]), density=0.3, seed=0)
        >>> frozen = graphwire.freeze(net)
        >>> x = torch.randn(4, 8)
        >>> with torch.inference_mode():
        ...     torch.allclose(frozen(x), net(x), atol=1e-5)
        True

        A sparsified network:

        >>> from torch import nn
        >>> from graphwire.layers import sparsify
        >>> dense = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3))
        >>> sparse = sparsify(dense, density=0.1, seed=0).eval()
        >>> fast = graphwire.freeze(sparse, kernel="sparse")
        >>> sorted(fast.layer_kernels.items())
        [('0', 'sparse'), ('2', 'sparse')]
        >>> x = torch.randn(2, 3, 12, 12)
        >>> with torch.inference_mode():
        ...     torch.allclose(fast(x), sparse(x), atol=1e-5)
        True
    """
    choose("kernel", kernel, dict.fromkeys(KERNELS), ConfigError)
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"module must be a graphwire.WiredGraph, a wired layer or an nn.Module "
            f"containing some; got {describe(module)}."
        )
    if isinstance(module, FrozenGraph):
        raise ConfigError(
            f"module is frozen already ({type(module).__name__}); freeze the source "
            "WiredGraph instead."
        )
    _check_supported(module)
    wired = [m for m in module.modules() if isinstance(m, WiredGraph)]
    layers = [m for m in module.modules() if _plain_of(m) is not None]
    if not wired and not layers:
        raise ConfigError(
            f"module {type(module).__name__} holds no graphwire.WiredGraph and no wired layer "
            "(graphwire.layers.sparsify makes them), so there is nothing to freeze; use "
            "torch.compile for ordinary modules."
        )
    with torch.no_grad():
        model = copy.deepcopy(module).eval()  # frozen as it computes in evaluation mode
        model, _ = replace_modules(
            model,
            lambda name, m: isinstance(m, WiredGraph),
            lambda name, m: FrozenGraph(m.spec(), kernel=kernel),
        )
        if layers:
            model = _freeze_layers(model, kernel, fuse)
    return model.requires_grad_(False).eval()


def compile(module: nn.Module, *, kernel: str = "auto", fuse: bool = True) -> nn.Module:
    """Alias of :func:`~graphwire.freeze`, its name before graphwire 0.2.

    ``graphwire.compile(net)`` is ``graphwire.freeze(net)``: same arguments, same result.
    New code should call :func:`~graphwire.freeze`, which says what it does (the module
    it returns is a frozen snapshot for inference, not a compiled training module as
    with ``torch.compile``).

    Example:
        >>> import graphwire
        >>> from graphwire.graph import layered_dag
        >>> net = graphwire.WiredGraph(layered_dag([4, 8, 2]), density=0.5, seed=0)
        >>> type(graphwire.compile(net)).__name__
        'FrozenGraph'
    """
    return freeze(module, kernel=kernel, fuse=fuse)
