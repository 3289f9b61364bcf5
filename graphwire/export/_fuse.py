"""Epilogue fusion: a ReLU and a residual addition after a sparse convolution, into it.

A frozen CIFAR ResNet spends about a seventh of its time at batch 16 in the ReLUs and
residual additions between its sparse convolutions (separate passes over memory, each a
torch call). :class:`~graphwire.export.SparseConv2d` can apply both as its kernel
stores the outputs; this pass rewrites the modules whose ``forward`` calls such a
convolution followed by them.
"""

from __future__ import annotations

import operator
from collections import Counter

import torch
import torch.nn.functional as F
from torch import fx, nn

from graphwire._utils import replace_modules
from graphwire.export._layers import SparseConv2d

__all__ = ["fuse_epilogues"]


class _ChildrenTracer(fx.Tracer):
    """Traces one module's own ``forward``: every submodule is a single call."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # noqa: D102
        return True


def _is_relu(node: fx.Node, x: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is ``relu(x)`` (module, function or method, in place or not)."""
    if node.op == "call_module":
        return type(modules.get(node.target)) is nn.ReLU and node.args == (x,) and not node.kwargs
    if node.op == "call_function" and node.target in (torch.relu, torch.relu_, F.relu):
        extra = node.args[1:] + tuple(node.kwargs.values())
        return node.args[:1] == (x,) and set(node.kwargs) <= {"inplace"} and len(extra) <= 1
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return node.args == (x,) and not node.kwargs
    return False


def _residual(node: fx.Node, x: fx.Node) -> fx.Node | None:
    """The other operand where ``node`` is ``x + other`` (or ``other + x``), else ``None``.

    In-place additions count only where they write into ``x`` (``x += other``), since
    writing into ``other`` would be an effect the fused call does not have.
    """
    if node.kwargs or len(node.args) != 2 or node.args[0] is node.args[1]:
        return None
    a, b = node.args
    if node.op == "call_function" and node.target in (operator.add, torch.add):
        other = b if a is x else a if b is x else None
    elif (node.op == "call_function" and node.target is operator.iadd) or (
        node.op == "call_method" and node.target in ("add", "add_")
    ):
        other = b if a is x else a if (b is x and node.target == "add") else None
    else:
        return None
    return other if isinstance(other, fx.Node) else None


def _fuse_in(
    module: nn.Module, prefix: str, once: set[int]
) -> tuple[dict[str, str], fx.Graph] | None:
    """Fuse epilogues in ``module``'s own ``forward``: what was fused and the new graph.

    ``None`` where nothing was (the module's layers are then unchanged).

    Only direct children that are sparse convolutions called once (``once``) are fused.
    """
    try:
        graph = _ChildrenTracer().trace(module)
    except Exception:  # noqa: BLE001  (any failure means: leave the module as it is)
        return None
    modules = dict(module.named_children())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    for node in list(graph.nodes):  # folded BatchNorms: nn.Identity between conv and ReLU
        if node.op == "call_module" and type(modules.get(node.target)) is nn.Identity:
            if len(node.args) == 1 and not node.kwargs:
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
    fused: dict[str, str] = {}
    convs = [
        n
        for n in graph.nodes
        if n.op == "call_module"
        and isinstance(modules.get(n.target), SparseConv2d)
        and calls[n.target] == 1
        and id(modules[n.target]) in once
        and len(n.args) == 1
        and not n.kwargs
    ]
    for conv in convs:
        layer = modules[conv.target]
        if len(conv.users) != 1 or layer.fused_relu:
            continue
        (user,) = conv.users
        if _is_relu(user, conv, modules):  # relu(conv(x))
            user.replace_all_uses_with(conv)
            graph.erase_node(user)
            layer.fused_relu = True
            fused[f"{prefix}{conv.target}"] = "relu"
            continue
        other = _residual(user, conv)
        if other is None:
            continue
        relu = next(iter(user.users)) if len(user.users) == 1 else None
        relu = relu if relu is not None and _is_relu(relu, user, modules) else None
        with graph.inserting_before(user):  # conv(x, other): other exists by now
            call = graph.call_module(conv.target, (conv.args[0], other))
        (relu or user).replace_all_uses_with(call)
        for dead in (relu, user, conv):
            if dead is not None:
                graph.erase_node(dead)
        layer.fused_relu = relu is not None
        fused[f"{prefix}{conv.target}"] = "add+relu" if relu is not None else "add"
    if not fused:
        return None
    for node in graph.nodes:  # string annotations (``from __future__ import annotations``)
        if isinstance(node.type, str):  # would make the GraphModule unpicklable
            node.type = None
    graph.lint()
    return fused, graph


def _hooked(module: nn.Module) -> bool:
    """Whether ``module`` has hooks of its own (a rewritten module would not call them)."""
    return any(
        getattr(module, attr, None)
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        )
    )


def _keep_state(module: nn.Module, rewritten: nn.Module) -> None:
    """Give ``rewritten`` the children, parameters and buffers of ``module`` it lacks.

    ``fx.GraphModule`` copies only what its graph calls or reads; the rest (a folded
    BatchNorm's ``nn.Identity``, a tensor ``forward`` does not use) stays under its name,
    so the module tree and the ``state_dict`` keys are those of ``module``.
    """
    for name, child in module.named_children():
        if name not in rewritten._modules:
            rewritten.add_module(name, child)
    for name, p in module.named_parameters(recurse=False):
        if name not in rewritten._parameters:
            rewritten.register_parameter(name, p)
    for name, b in module.named_buffers(recurse=False):
        if name not in rewritten._buffers:
            persistent = name not in module._non_persistent_buffers_set
            rewritten.register_buffer(name, b, persistent=persistent)


def fuse_epilogues(model: nn.Module) -> dict[str, str]:
    """Fuse ReLUs and residual additions into the sparse convolutions before them, in place.

    In the ``forward`` of every submodule of ``model`` (not ``model`` itself), a
    :class:`~graphwire.export.SparseConv2d` or ``SparseConv1d`` called once whose
    output is read only by a ReLU (``nn.ReLU``, ``torch.relu``, ``F.relu``,
    ``.relu()``, in place or not; ``nn.Identity`` in between, as left by folded
    BatchNorms, is skipped) takes the ReLU over (``fused_relu``), and one whose output
    is read only by an addition ``conv(x) + r`` takes ``r`` as its ``residual`` and the
    ReLU after the sum where there is one. The float32 CPU kernel applies both as it
    stores its outputs, with the separate operations' order of additions, so the
    outputs are unchanged; elsewhere torch applies them.

    A submodule with something fused is replaced by a ``torch.fx.GraphModule`` of
    its rewritten ``forward`` (same submodule names, so the ``state_dict`` keys do not
    change; it is named after the original's class). Submodules that do not trace with
    ``torch.fx``, that are reachable under several names, that have hooks of their own,
    or where nothing matches are left as they are; so is ``model``'s own ``forward``, so
    ``model`` keeps its class.

    Args:
        model: The frozen network, changed in place.

    Returns:
        ``{convolution name: "relu" | "add" | "add+relu"}``, what each fused.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from graphwire.export._fuse import fuse_epilogues
        >>> from graphwire.export import SparseConv2d
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = SparseConv2d(nn.Conv2d(4, 4, 3, padding=1))
        ...         self.relu = nn.ReLU()
        ...
        ...     def forward(self, x):
        ...         return self.relu(self.conv(x) + x)
        >>> net = nn.Sequential(Block()).eval()
        >>> x = torch.randn(2, 4, 8, 8)
        >>> before = net(x)
        >>> fuse_epilogues(net)
        {'0.conv': 'add+relu'}
        >>> torch.equal(net(x), before)
        True
    """
    named = list(model.named_modules(remove_duplicate=False))  # before any replacement
    count = Counter(id(m) for _, m in named)
    once = {i for i, c in count.items() if c == 1}
    report: dict[str, str] = {}
    for name, module in named:
        if not name or id(module) not in once or _hooked(module):
            continue
        if not any(isinstance(c, SparseConv2d) for c in module.children()):
            continue
        result = _fuse_in(module, f"{name}.", once)
        if result is None:
            continue
        fused, graph = result
        rewritten = fx.GraphModule(module, graph, class_name=type(module).__name__)
        _keep_state(module, rewritten)
        rewritten.train(module.training)
        replace_modules(model, lambda n, m, at=name: n == at, lambda n, m, new=rewritten: new)
        report.update(fused)
    return dict(sorted(report.items()))
