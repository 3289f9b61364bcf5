"""Folding inference BatchNorms into the convolution before them.

In ``eval()`` mode a BatchNorm is a per-channel affine map,
``y = gamma * (x - mean) / sqrt(var + eps) + beta``. Where it reads a convolution and
nothing else reads that convolution, the map folds into the convolution's weight (each
output channel scaled) and bias, and the BatchNorm becomes an ``nn.Identity``. A weight
that is zero stays zero, so a sparse layer keeps its pattern; the network computes what
it computed, to float rounding, with one pass over every feature map fewer.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx, nn

from graphwire._utils import replace_modules
from graphwire.export._trace import BATCHNORM, Tracer, untraceable

__all__ = ["fold_batchnorms"]

# a convolution and the BatchNorm of its kind: Conv1d - BatchNorm1d, ...
_PAIRS = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}


@torch.no_grad()
def _fold(conv: nn.Module, bn: nn.Module) -> None:
    """Fold ``bn`` (eval mode, running statistics) into ``conv``, in place."""
    var, mean = bn.running_var.double(), bn.running_mean.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    shift = (bias - mean) * scale + (bn.bias.double() if bn.bias is not None else 0.0)
    view = (-1,) + (1,) * (conv.weight.dim() - 1)
    conv.weight.copy_((conv.weight.double() * scale.view(view)).to(conv.weight.dtype))
    new_bias = shift.to(dtype=conv.weight.dtype, device=conv.weight.device)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias, requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(new_bias)


def fold_batchnorms(model: nn.Module) -> list[str]:
    """Fold every eligible inference BatchNorm into the convolution it reads, in place.

    A BatchNorm is folded where it is in ``eval()`` mode with running statistics, is
    called once, reads the output of one convolution of its dimension
    (``Conv2d`` -> ``BatchNorm2d``, ...) called once, and nothing else reads that output.
    It is replaced by ``nn.Identity``. Anything else is left as it is, and a model that
    does not trace with ``torch.fx`` is not changed.

    Args:
        model: The network, changed in place.

    Returns:
        The names of the BatchNorms folded.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from graphwire.export._fold import fold_batchnorms
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> net[1].running_mean.fill_(0.5)  # doctest: +ELLIPSIS
        tensor(...)
        >>> x = torch.randn(2, 3, 6, 6)
        >>> before = net(x)
        >>> fold_batchnorms(net), type(net[1]).__name__
        (['1'], 'Identity')
        >>> torch.allclose(net(x), before, atol=1e-6)
        True
    """
    opaque = untraceable(model, frozenset())
    if opaque is None:
        return []
    graph = Tracer(frozenset(opaque)).trace(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    # calls per module object (one module may be reachable under several names)
    calls = Counter(id(modules[n.target]) for n in graph.nodes if n.op == "call_module")
    folded = []
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, BATCHNORM) or bn.training or bn.running_var is None:
            continue
        source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if not isinstance(source, fx.Node) or source.op != "call_module":
            continue
        conv = modules[source.target]
        if (
            _PAIRS.get(type(conv)) is not type(bn)
            or calls[id(bn)] != 1
            or calls[id(conv)] != 1
            or len(source.users) != 1
            or conv.out_channels != bn.num_features
        ):
            continue
        _fold(conv, bn)
        folded.append(node.target)
    replace_modules(model, lambda name, m: name in folded, lambda name, m: nn.Identity())
    return folded
