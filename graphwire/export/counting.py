"""Honest cost counting: the parameters and multiply-adds of the structure a network uses.

A DNW network holds every *candidate* edge as a parameter, so ``sum(p.numel())`` says
little about it. :func:`count` runs the network once on a random input of the given
shape (batch size 1, evaluation mode, no gradients) and counts only what is live. The
convention generalises the paper's accounting of its MobileNetV1-like graphs:

- **edges** (``kind="edges"``): a selected edge of a :class:`~graphwire.WiredGraph` costs
  one parameter, and one multiply-add per element of the features it carries (``H x W``
  for image nodes, 1 for vector nodes) each time it is used: once in ``mode="dag"``,
  ``steps`` times in ``mode="discrete"``, and once per function evaluation in
  ``mode="continuous"`` (the count of evaluations is measured on the random input, so it
  depends on it for adaptive solvers). A selected weight of a wired layer
  (:class:`~graphwire.execution.WiredConv2d`, ...) costs one parameter and one
  multiply-add per output position.
- **nodes** (``kind="nodes"``): a node's operation counts only while the node is *used*:
  it has an outgoing selected edge, or it is an output node that is fed (an input node,
  or one with an incoming selected edge). A depthwise ``k x k`` node costs ``k^2``
  parameters and ``k^2`` multiply-adds per output position; a node bias one parameter.
- **dense** (``kind="dense"``): ordinary ``Conv`` and ``Linear`` layers cost their weights
  (and biases) and one multiply-add per weight and output position. A dense layer that
  feeds a wired graph (only channel-wise modules such as norms, activations, pooling and
  ``Flatten`` in between, and as many output channels as the graph has inputs) counts
  only the channels of input nodes that are used: the paper's "first conv counts only
  input nodes still alive". A dense layer fed by a wired graph likewise counts only the
  channels of output nodes that are fed: "the classifier only inputs still connected".
  Only ``nn.Module`` links are followed; a functional op in between ends the chain and
  the layer is counted in full.
- **norm** (``kind="norm"``): affine parameters of batch, instance, layer and group norms.
  They cost no multiply-adds and are reported in :attr:`Cost.norm_params` but *not* in
  :attr:`Cost.params`, as in the paper's figures (batch norm folds into the adjacent
  convolution at inference).

Activations, pooling and additions cost nothing. Every figure is per example. Other
module types are added with :func:`register_cost` (and node operations with
:func:`register_node_cost`); a module with parameters that no rule covers raises.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from graphwire._utils import describe
from graphwire.errors import GraphError
from graphwire.execution.layers import WiredLayer
from graphwire.execution.node_ops import (
    Activation,
    DepthwiseConv,
    DepthwiseConv1d,
    GroupedNodeOp,
    Identity,
)
from graphwire.execution.wired import WiredGraph

__all__ = [
    "count",
    "Cost",
    "CostItem",
    "COST_KINDS",
    "register_cost",
    "register_node_cost",
]

#: The kinds of cost :func:`count` reports.
COST_KINDS = ("edges", "nodes", "dense", "norm")

#: ``fn(module, inputs, output) -> {kind: (params, macs)}`` for one call of a module.
CostFn = Callable[[nn.Module, tuple, Tensor], dict[str, tuple[int, int]]]
#: ``fn(op, nodes, feature_shape) -> {kind: (params, macs)}`` for ``nodes`` of a node op.
NodeCostFn = Callable[[nn.Module, Tensor, tuple[int, ...]], dict[str, tuple[int, int]]]

_COSTS: dict[type, CostFn] = {}
_NODE_COSTS: dict[type, NodeCostFn] = {}


@dataclass(frozen=True)
class CostItem:
    """The cost of one module in one kind.

    Attributes:
        module: The module's name in the network (``""`` for the root).
        kind: One of :data:`COST_KINDS`.
        params: Live parameters.
        macs: Multiply-adds per example, summed over every call of the module.
    """

    module: str
    kind: str
    params: int
    macs: int


@dataclass
class Cost:
    """What :func:`count` found: one :class:`CostItem` per module and kind.

    Attributes:
        items: The costs, in the order the modules first ran.
        input_shape: The input shape counted (batch size 1).
    """

    items: list[CostItem]
    input_shape: tuple[int, ...]
    _kinds: dict[str, tuple[int, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        kinds = {k: [0, 0] for k in COST_KINDS}
        for item in self.items:
            kinds[item.kind][0] += item.params
            kinds[item.kind][1] += item.macs
        self._kinds = {k: (p, m) for k, (p, m) in kinds.items()}

    @property
    def params(self) -> int:
        """Live parameters: edges, node operations and dense layers (norms excluded)."""
        return sum(p for kind, (p, _) in self._kinds.items() if kind != "norm")

    @property
    def macs(self) -> int:
        """Multiply-adds per example."""
        return sum(m for _, m in self._kinds.values())

    @property
    def norm_params(self) -> int:
        """Affine parameters of the norms (not in :attr:`params`)."""
        return self._kinds["norm"][0]

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """``{kind: (params, macs)}`` over the whole network."""
        return dict(self._kinds)

    def by_module(self) -> dict[str, tuple[int, int]]:
        """``{module name: (params without norms, macs)}``."""
        out: dict[str, list[int]] = {}
        for item in self.items:
            entry = out.setdefault(item.module, [0, 0])
            entry[0] += item.params if item.kind != "norm" else 0
            entry[1] += item.macs
        return {name: (p, m) for name, (p, m) in out.items()}

    def table(self) -> str:
        """A plain-text table of the costs by kind."""
        lines = [f"{'kind':<8}{'params':>14}{'MACs':>16}"]
        for kind, (p, m) in self._kinds.items():
            lines.append(f"{kind:<8}{p:>14,}{m:>16,}")
        lines.append(f"{'total':<8}{self.params:>14,}{self.macs:>16,}  (params without norms)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Cost(params={self.params:,}, macs={self.macs:,}, norm_params={self.norm_params:,}, "
            f"input_shape={self.input_shape})"
        )


# ---------------------------------------------------------------------- registries
def register_cost(module_type: type[nn.Module]) -> Callable[[CostFn], CostFn]:
    """Register how :func:`count` costs one call of a module type (and its subclasses).

    The function gets ``(module, inputs, output)`` for a call on a batch of one and
    returns ``{kind: (params, macs)}``; parameters of several calls are counted once,
    multiply-adds are summed. The module's children are not visited.

    Example:
        >>> import torch
        >>> from graphwire.export.counting import count, register_cost
        >>> class Scale(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.s = torch.nn.Parameter(torch.ones(4))
        ...     def forward(self, x):
        ...         return x * self.s
        >>> @register_cost(Scale)
        ... def _(module, inputs, output):
        ...     return {"dense": (4, output.numel())}
        >>> count(Scale(), (1, 4)).macs
        4
    """

    def deco(fn: CostFn) -> CostFn:
        _COSTS[module_type] = fn
        return fn

    return deco


def register_node_cost(op_type: type[nn.Module]) -> Callable[[NodeCostFn], NodeCostFn]:
    """Register how :func:`count` costs a node operation type for a set of used nodes.

    The function gets ``(op, nodes, feature_shape)``: the op, the int64 indices of the
    used nodes it runs on, and the spatial shape of their inputs (``()`` for vectors); it
    returns ``{kind: (params, macs)}`` for one application to those nodes.
    """

    def deco(fn: NodeCostFn) -> NodeCostFn:
        _NODE_COSTS[op_type] = fn
        return fn

    return deco


def _lookup(registry: dict[type, Callable], cls: type) -> Callable | None:
    for base in cls.__mro__:
        if base in registry:
            return registry[base]
    return None


# ---------------------------------------------------------------------- node operations
def _node_cost(op: nn.Module, nodes: Tensor, shape: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    if nodes.numel() == 0:
        return {}
    fn = _lookup(_NODE_COSTS, type(op))
    if fn is None:
        raise GraphError(
            f"count does not know the node operation {type(op).__name__}; register its cost with "
            "graphwire.export.counting.register_node_cost, or subclass DepthwiseConv, "
            "Activation or Identity."
        )
    return fn(op, nodes, shape)


@register_node_cost(Identity)
def _identity_cost(op, nodes, shape):
    return {}


@register_node_cost(Activation)
def _activation_cost(op, nodes, shape):
    return {"nodes": (nodes.numel() if op.bias is not None else 0, 0)}


@register_node_cost(DepthwiseConv)
def _depthwise_cost(op, nodes, shape):
    n, kk = nodes.numel(), op.kernel_size**2
    out = op(torch.zeros(1, 1, *shape, device=op.conv_weight.device), nodes[:1]).shape[2:]
    cost = {"nodes": (n * kk, n * kk * math.prod(out))}
    if op.norm_weight is not None:
        cost["norm"] = (2 * n, 0)
    return cost


@register_node_cost(DepthwiseConv1d)
def _depthwise1d_cost(op, nodes, shape):
    n, taps = nodes.numel(), op.kernel_size
    out = op(torch.zeros(1, 1, *shape, device=op.conv_weight.device), nodes[:1]).shape[2:]
    cost = {"nodes": (n * taps, n * taps * math.prod(out))}
    if op.norm_weight is not None:
        cost["norm"] = (2 * n, 0)
    return cost


@register_node_cost(GroupedNodeOp)
def _grouped_cost(op, nodes, shape):
    gid = op.group_id[nodes.to(op.group_id.device)].cpu()
    total: dict[str, tuple[int, int]] = {}
    for g in torch.unique(gid).tolist():
        _merge(total, _node_cost(op.ops[g], nodes[gid == g], shape))
    return total


def _merge(into: dict[str, tuple[int, int]], more: dict[str, tuple[int, int]], times: int = 1):
    for kind, (p, m) in more.items():
        p0, m0 = into.get(kind, (0, 0))
        into[kind] = (p0 + p, m0 + m * times)


# ---------------------------------------------------------------------- wired graphs
def _liveness(module: WiredGraph) -> tuple[Tensor, Tensor]:
    """``(used, fed)`` boolean ``[N]`` on the CPU, by the convention of this module."""
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


def _feature_shape(module: WiredGraph, x: Tensor) -> tuple[int, ...]:
    return tuple(module.input_op(x[:1], module.executor.inputs).shape[2:])


def _wired_graph_cost(module: WiredGraph, inputs: tuple, output: Tensor, nfe: int = 1):
    shape = _feature_shape(module, inputs[0])
    used, _ = _liveness(module)
    graph = module.graph
    is_input = torch.zeros(graph.num_nodes, dtype=torch.bool)
    is_input[graph.inputs] = True
    stepped = ~is_input
    if module.mode != "dag":
        stepped |= is_input & (graph.in_degree > 0)
    passes = {"dag": 1, "discrete": getattr(module.executor, "steps", 1)}.get(module.mode, nfe)
    per_pass: dict[str, tuple[int, int]] = {}
    edges = int(module.edge_mask.sum())
    _merge(per_pass, {"edges": (edges, edges * math.prod(shape))})
    _merge(per_pass, _node_cost(module.node_op, (stepped & used).nonzero().flatten(), shape))
    total: dict[str, tuple[int, int]] = {}
    _merge(total, per_pass, times=passes)
    live_inputs = graph.inputs[used[graph.inputs]]
    input_shape = tuple(inputs[0].shape[2:])
    _merge(total, _node_cost(module.input_op, live_inputs, input_shape))
    return total


def _fake_wired_forward(self: WiredGraph, x: Tensor) -> Tensor:
    """Zeros of the output shape: the count of a DAG or discrete graph needs no real pass."""
    shape = _feature_shape(self, x)
    outputs = self.graph.outputs
    probe = torch.zeros(1, 1, *shape, device=x.device, dtype=x.dtype)
    if bool(torch.isin(outputs[:1], self.graph.inputs)):
        out_shape = shape
    else:
        out_shape = tuple(self.node_op(probe, outputs[:1].to(x.device)).shape[2:])
    return x.new_zeros(x.shape[0], outputs.numel(), *out_shape)


_COSTS[WiredGraph] = _wired_graph_cost


# ---------------------------------------------------------------------- layers
def _positions(module: nn.Module, output: Tensor) -> int:
    """Output positions of a Linear/Conv call: elements of the output per output channel."""
    return output.numel() // (output.shape[0] * module.weight.shape[0])


@register_cost(WiredLayer)
def _wired_layer_cost(module, inputs, output):
    kept = int(module.edge_mask.sum())
    bias = module.bias.numel() if module.bias is not None else 0
    return {"edges": (kept, kept * _positions(module, output)), "dense": (bias, 0)}


def _dense_cost(module, inputs, output, live_out=None, live_in=None):
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


_DENSE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
for _t in _DENSE:
    _COSTS[_t] = _dense_cost

_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
)


def _norm_cost(module, inputs, output):
    return {"norm": (sum(p.numel() for p in module.parameters(recurse=False)), 0)}


for _t in _NORMS:
    _COSTS[_t] = _norm_cost

#: Parameter-free modules that keep channel ``c`` of their input as channel ``c``.
_CHANNELWISE = (
    nn.modules.batchnorm._NormBase,
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
    nn.modules.dropout._DropoutNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
    nn.Flatten,
)


# ---------------------------------------------------------------------- the pass
@dataclass
class _Call:
    name: str
    module: nn.Module
    src: _Call | None
    inputs: tuple = ()
    output: Tensor | None = None
    nfe: int = 1


def _units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules costed as a whole (registered types) and parameter-free leaves."""
    found: list[tuple[str, nn.Module]] = []

    def visit(name: str, module: nn.Module) -> None:
        if _lookup(_COSTS, type(module)) is not None:
            found.append((name, module))
            return
        own = [n for n, p in module.named_parameters(recurse=False) if p is not None]
        if own:
            raise GraphError(
                f"count does not know how to cost module {name or '<root>'!r} of type "
                f"{type(module).__name__} (parameters {own}); register it with "
                "graphwire.export.counting.register_cost."
            )
        children = list(module.named_children())
        if not children:
            found.append((name, module))
        for child_name, child in children:
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    return found


def _first_tensor(args: tuple) -> Tensor | None:
    return next((a for a in args if isinstance(a, Tensor)), None)


def _channels(t: Tensor | None) -> int | None:
    return int(t.shape[1]) if isinstance(t, Tensor) and t.dim() >= 2 else None


def _keeps_channels(call: _Call) -> bool:
    return isinstance(call.module, _CHANNELWISE) and _channels(call.output) == _channels(
        _first_tensor(call.inputs)
    )


def count(model: nn.Module, input_shape: Sequence[int], *, seed: int = 0) -> Cost:
    """Count the live parameters and multiply-adds of ``model`` (see the module docs).

    Args:
        model: Any network made of graphwire modules and ``torch.nn`` layers.
        input_shape: Shape of one input batch, batch first (e.g. ``(1, 3, 224, 224)``);
            the count uses a batch of one and reports per-example figures.
        seed: Seed of the random input (it matters only for adaptive ODE solvers).

    Returns:
        A :class:`Cost`; ``cost.params`` and ``cost.macs`` are the headline figures.

    Raises:
        GraphError: if a module with parameters has no cost rule.

    Example:
        >>> import torch
        >>> from graphwire import WiredGraph
        >>> from graphwire.export.counting import count
        >>> from graphwire.graph import layered_dag
        >>> net = WiredGraph(layered_dag([2, 3, 1]), node_op="conv", k=4, seed=0)
        >>> cost = count(net, (1, 2, 8, 8))
        >>> cost.by_kind()["edges"]  # 4 edges, each over an 8 x 8 map
        (4, 256)
    """
    if not isinstance(model, nn.Module):
        raise GraphError(f"model must be an nn.Module; got {describe(model)}.")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2:
        raise GraphError(
            f"input_shape must be batch first with at least one more dimension, e.g. "
            f"(1, 3, 32, 32); got {tuple(input_shape)!r}."
        )
    shape = (1, *shape[1:])
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=dtype).to(device)

    calls: list[_Call] = []
    producer: dict[int, _Call] = {}
    kept: list[Tensor] = []  # keeps tensors alive so their ids stay unique

    def pre_hook(name):
        def hook(module, args):
            if isinstance(module, WiredGraph) and hasattr(module.executor, "nfe"):
                module.executor.nfe = 0
            t = _first_tensor(args)
            calls.append(_Call(name, module, producer.get(id(t)) if t is not None else None))

        return hook

    def post_hook(name):
        def hook(module, args, output):
            call = next(c for c in reversed(calls) if c.module is module and c.output is None)
            call.inputs, call.output = args, output
            call.nfe = int(getattr(getattr(module, "executor", None), "nfe", 1) or 1)
            kept.extend([*args, output])
            if isinstance(output, Tensor):
                producer[id(output)] = call

        return hook

    units = _units(model)
    handles = []
    patched = []
    for name, module in units:
        handles.append(module.register_forward_pre_hook(pre_hook(name)))
        handles.append(module.register_forward_hook(post_hook(name)))
        if isinstance(module, WiredGraph) and module.mode != "continuous":
            module.forward = types.MethodType(_fake_wired_forward, module)
            patched.append(module)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for module in patched:
            del module.forward
        for m, training in modes.items():
            m.training = training
    return Cost(_costs(calls), shape)


def _costs(calls: list[_Call]) -> list[CostItem]:
    """Turn the recorded calls into cost items, pruning channels next to wired graphs."""
    live_out: dict[int, Tensor] = {}
    live_in: dict[int, Tensor] = {}
    consumers: dict[int, list[_Call]] = {}
    for call in calls:
        if call.src is not None:
            consumers.setdefault(id(call.src), []).append(call)
    for call in calls:
        if not isinstance(call.module, WiredGraph):
            continue
        used, fed = _liveness(call.module)
        graph = call.module.graph
        back = call.src
        while back is not None and _keeps_channels(back):
            back = back.src
        if back is not None and type(back.module) in _DENSE:
            if back.module.weight.shape[0] == graph.inputs.numel():
                live_out[id(back.module)] = used[graph.inputs]
        ahead = consumers.get(id(call), [])
        while len(ahead) == 1 and _keeps_channels(ahead[0]):
            ahead = consumers.get(id(ahead[0]), [])
        if len(ahead) == 1 and type(ahead[0].module) in _DENSE:
            dense = ahead[0].module
            if dense.weight.shape[1] * getattr(dense, "groups", 1) == graph.outputs.numel():
                live_in[id(dense)] = fed[graph.outputs]

    totals: dict[tuple[str, str], list[int]] = {}
    for call in calls:
        module = call.module
        fn = _lookup(_COSTS, type(module))
        if fn is None or call.output is None:
            continue
        if fn is _dense_cost:
            cost = fn(
                module,
                call.inputs,
                call.output,
                live_out=live_out.get(id(module)),
                live_in=live_in.get(id(module)),
            )
        elif fn is _wired_graph_cost:
            cost = fn(module, call.inputs, call.output, nfe=call.nfe)
        else:
            cost = fn(module, call.inputs, call.output)
        for kind, (p, m) in cost.items():
            if kind not in COST_KINDS:
                raise GraphError(f"cost kind {kind!r} is not one of {COST_KINDS}.")
            entry = totals.setdefault((call.name, kind), [0, 0])
            entry[0] = max(entry[0], int(p))
            entry[1] += int(m)
    return [CostItem(name, kind, p, m) for (name, kind), (p, m) in totals.items()]
