"""The cost rules: the built-in ones (immutable) and the lookup of one call of ``count``.

A *module rule* ``fn(module, inputs, output) -> {kind: (params, macs)}`` costs one call
of a module on a batch of one; a *node rule* ``fn(op, nodes, feature_shape) -> {...}``
costs one application of a node operation to the used nodes ``nodes`` (int64 indices)
whose inputs have the spatial shape ``feature_shape`` (``()`` for vectors).

The built-in rules live in read-only mappings; a caller adds or replaces rules for one
call only (:class:`Rules`), so nothing a caller passes outlives the call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import Tensor, nn

from graphwire._utils import describe
from graphwire.errors import GraphError
from graphwire.execution.node_ops import (
    Activation,
    DepthwiseConv,
    DepthwiseConv1d,
    GroupedNodeOp,
    Identity,
)
from graphwire.execution.wired import WiredGraph
from graphwire.export import SparseConv2d, SparseLinear
from graphwire.wiring.module import WiredModule

__all__: list[str] = []

#: ``fn(module, inputs, output) -> {kind: (params, macs)}`` for one call of a module.
CostFn = Callable[[nn.Module, tuple, Tensor], Mapping[str, tuple[int, int]]]
#: ``fn(op, nodes, feature_shape) -> {kind: (params, macs)}`` for ``nodes`` of a node op.
NodeCostFn = Callable[[nn.Module, Tensor, tuple[int, ...]], Mapping[str, tuple[int, int]]]
NodeCoster = Callable[[nn.Module, Tensor, tuple[int, ...]], dict[str, tuple[int, int]]]

#: The method a module type may define to cost itself: ``graphwire_cost(self, inputs, output)``.
PROTOCOL = "graphwire_cost"


def merge(into: dict[str, tuple[int, int]], more: Mapping[str, tuple[int, int]], times: int = 1):
    """Add ``more`` to ``into``, its multiply-adds ``times`` times."""
    for kind, (p, m) in more.items():
        p0, m0 = into.get(kind, (0, 0))
        into[kind] = (p0 + p, m0 + m * times)


# ---------------------------------------------------------------------- node operations
def _identity_cost(op, nodes, shape):
    return {}


def _activation_cost(op, nodes, shape):
    return {"nodes": (nodes.numel() if op.bias is not None else 0, 0)}


def _depthwise_cost(op, nodes, shape):
    n, kk = nodes.numel(), op.kernel_size**2
    out = op(torch.zeros(1, 1, *shape, device=op.conv_weight.device), nodes[:1]).shape[2:]
    cost = {"nodes": (n * kk, n * kk * math.prod(out))}
    if op.norm_weight is not None:
        cost["norm"] = (2 * n, 0)
    return cost


def _depthwise1d_cost(op, nodes, shape):
    n, taps = nodes.numel(), op.kernel_size
    out = op(torch.zeros(1, 1, *shape, device=op.conv_weight.device), nodes[:1]).shape[2:]
    cost = {"nodes": (n * taps, n * taps * math.prod(out))}
    if op.norm_weight is not None:
        cost["norm"] = (2 * n, 0)
    return cost


def _grouped_cost(op, nodes, shape, *, node_cost: NodeCoster | None = None):
    node_cost = node_cost or Rules().node_cost
    gid = op.group_id[nodes.to(op.group_id.device)].cpu()
    total: dict[str, tuple[int, int]] = {}
    for g in torch.unique(gid).tolist():
        merge(total, node_cost(op.ops[g], nodes[gid == g], shape))
    return total


#: The built-in node rules, by node-operation type (read-only).
BUILTIN_NODE_COSTS: Mapping[type, NodeCostFn] = MappingProxyType(
    {
        Identity: _identity_cost,
        Activation: _activation_cost,
        DepthwiseConv: _depthwise_cost,
        DepthwiseConv1d: _depthwise1d_cost,
        GroupedNodeOp: _grouped_cost,
    }
)


# ---------------------------------------------------------------------- wired graphs
def liveness(module: WiredGraph) -> tuple[Tensor, Tensor]:
    """``(used, fed)`` boolean ``[N]`` on the CPU, by the convention of :mod:`graphwire.cost`."""
    n = module.graph.num_nodes
    src, dst = module.edge_index.cpu()[:, module.edge_mask.cpu()]
    used = torch.zeros(n, dtype=torch.bool)
    used[src] = True
    fed = torch.zeros(n, dtype=torch.bool)
    fed[dst] = True
    fed[module.graph.inputs] = True
    outputs = module.graph.outputs
    used[outputs] |= fed[outputs]
    return used, fed


def _wired_graph_cost(module, inputs, output, *, nfe: int = 1, node_cost: NodeCoster | None = None):
    node_cost = node_cost or Rules().node_cost
    x = inputs[0]
    shape = tuple(module.input_op(x[:1], module.graph.inputs.to(x.device)).shape[2:])
    used, _ = liveness(module)
    graph = module.graph
    is_input = torch.zeros(graph.num_nodes, dtype=torch.bool)
    is_input[graph.inputs] = True
    stepped = ~is_input
    if module.mode != "dag":
        stepped |= is_input & (graph.in_degree > 0)
    passes = {"dag": 1, "discrete": module.steps}.get(module.mode, nfe)
    per_pass: dict[str, tuple[int, int]] = {}
    edges = int(module.edge_mask.sum())
    merge(per_pass, {"edges": (edges, edges * math.prod(shape))})
    merge(per_pass, node_cost(module.node_op, (stepped & used).nonzero().flatten(), shape))
    total: dict[str, tuple[int, int]] = {}
    merge(total, per_pass, times=passes)
    live_inputs = graph.inputs[used[graph.inputs]]
    merge(total, node_cost(module.input_op, live_inputs, tuple(x.shape[2:])))
    return total


# ---------------------------------------------------------------------- layers
def _positions(module: nn.Module, output: Tensor) -> int:
    """Output positions of a Linear/Conv call: elements of the output per output channel."""
    return output.numel() // (output.shape[0] * module.weight.shape[0])


def _wired_layer_cost(module, inputs, output):
    kept = int(module.edge_mask.sum())
    bias = module.bias.numel() if module.bias is not None else 0
    return {"edges": (kept, kept * _positions(module, output)), "dense": (bias, 0)}


def _sparse_layer_cost(module, inputs, output):
    """A frozen sparse layer: its nonzero weights, each once per output position."""
    nnz = module.val.numel()
    rows = module.out_features if isinstance(module, SparseLinear) else module.out_channels
    positions = output.numel() // (output.shape[0] * rows)
    bias = module.bias.numel() if module.bias is not None else 0
    return {"edges": (nnz, nnz * positions), "dense": (bias, 0)}


def _dense_cost(module, inputs, output, *, live_out=None, live_in=None):
    w = module.weight
    out_ch, in_per_group = w.shape[0], w.shape[1]
    groups = getattr(module, "groups", 1)
    live_out = torch.ones(out_ch, dtype=torch.bool) if live_out is None else live_out
    live_in = torch.ones(in_per_group * groups, dtype=torch.bool) if live_in is None else live_in
    group_of = torch.arange(out_ch) // (out_ch // groups)
    in_index = group_of[:, None] * in_per_group + torch.arange(in_per_group)[None, :]
    live = live_out[:, None] & live_in[in_index]
    weights = int(live.sum()) * math.prod(w.shape[2:])
    bias = int(live_out.sum()) if module.bias is not None else 0
    return {"dense": (weights + bias, weights * _positions(module, output))}


def _norm_cost(module, inputs, output):
    return {"norm": (sum(p.numel() for p in module.parameters(recurse=False)), 0)}


#: Layers whose channels are pruned next to a wired graph (exact types).
DENSE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

_BATCH_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LazyInstanceNorm1d,
    nn.LazyInstanceNorm2d,
    nn.LazyInstanceNorm3d,
)
_NORMS = (*_BATCH_NORMS, nn.GroupNorm, nn.LayerNorm)

#: The built-in module rules, by module type (read-only).
BUILTIN_COSTS: Mapping[type, CostFn] = MappingProxyType(
    {
        WiredGraph: _wired_graph_cost,
        WiredModule: _wired_layer_cost,  # the wired layers (a WiredGraph has its own)
        **dict.fromkeys((SparseLinear, SparseConv2d), _sparse_layer_cost),  # and SparseConv1d
        **dict.fromkeys(DENSE, _dense_cost),
        **dict.fromkeys(_NORMS, _norm_cost),
    }
)

#: Parameter-free modules that keep channel ``c`` of their input as channel ``c``.
CHANNELWISE = (
    *_BATCH_NORMS,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.Flatten,
)


def _protocol_cost(module, inputs, output):
    return getattr(module, PROTOCOL)(inputs, output)


# ---------------------------------------------------------------------- one call's rules
def _table(name: str, table: Mapping[type, Callable] | None, what: str) -> dict[type, Callable]:
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise GraphError(f"{name} must be a mapping {{type: fn}}; got {describe(table)}.")
    for key, fn in table.items():
        if not (isinstance(key, type) and issubclass(key, nn.Module)):
            raise GraphError(f"{name} keys must be {what} types; got {describe(key)}.")
        if not callable(fn):
            raise GraphError(f"{name}[{key.__name__}] must be callable; got {describe(fn)}.")
    return dict(table)


class Rules:
    """The rules of one call of ``count``: the caller's over the built-in ones.

    For a module (or node op) the classes of its MRO are tried from the most specific;
    at each class a rule the caller passed comes first, then (for modules) a
    ``graphwire_cost`` method the class defines, then a built-in rule.

    Args:
        costs: Module rules by module type, for this call only.
        node_costs: Node rules by node-operation type, for this call only.
    """

    def __init__(
        self,
        costs: Mapping[type, CostFn] | None = None,
        node_costs: Mapping[type, NodeCostFn] | None = None,
    ) -> None:
        self.costs = _table("costs", costs, "module")
        self.node_costs = _table("node_costs", node_costs, "node-operation")

    def module_rule(self, cls: type) -> CostFn | None:
        """The rule costing modules of type ``cls``, or ``None``."""
        for base in cls.__mro__:
            if base in self.costs:
                return self.costs[base]
            if PROTOCOL in vars(base):
                return _protocol_cost
            if base in BUILTIN_COSTS:
                return BUILTIN_COSTS[base]
        return None

    def module_cost(self, module: nn.Module, call, live_out=None, live_in=None):
        """``{kind: (params, macs)}`` of one recorded call of ``module``."""
        fn = self.module_rule(type(module))
        if fn is _dense_cost:
            return fn(module, call.inputs, call.output, live_out=live_out, live_in=live_in)
        if fn is _wired_graph_cost:
            return fn(module, call.inputs, call.output, nfe=call.nfe, node_cost=self.node_cost)
        return _checked(fn(module, call.inputs, call.output), type(module), "costs")

    def node_cost(self, op: nn.Module, nodes: Tensor, shape: tuple[int, ...]):
        """``{kind: (params, macs)}`` of one application of ``op`` to ``nodes``."""
        if nodes.numel() == 0:
            return {}
        fn = next(
            (
                table[base]
                for base in type(op).__mro__
                for table in (self.node_costs, BUILTIN_NODE_COSTS)
                if base in table
            ),
            None,
        )
        if fn is None:
            name = type(op).__name__
            raise GraphError(
                f"count does not know the node operation {name}; pass a rule for it, "
                f"graphwire.count(model, input_shape, node_costs={{{name}: fn}}) with "
                "fn(op, nodes, feature_shape) -> {kind: (params, macs)}, or subclass "
                "DepthwiseConv, DepthwiseConv1d, Activation or Identity."
            )
        if fn is _grouped_cost:
            return fn(op, nodes, shape, node_cost=self.node_cost)
        return _checked(fn(op, nodes, shape), type(op), "node_costs")


def _checked(cost, cls: type, name: str) -> Mapping[str, tuple[int, int]]:
    if not isinstance(cost, Mapping):
        raise GraphError(
            f"the cost rule of {cls.__name__} ({name}) must return {{kind: (params, macs)}}; "
            f"got {describe(cost)}."
        )
    return cost
