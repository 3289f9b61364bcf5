"""The counting pass: one forward call with hooks, then the rules of :mod:`._rules`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from graphwire._utils import describe
from graphwire.cost._result import COST_KINDS, Cost, CostItem
from graphwire.cost._rules import CHANNELWISE, DENSE, CostFn, NodeCostFn, Rules, liveness
from graphwire.errors import GraphError
from graphwire.execution.wired import WiredGraph

__all__ = ["count"]


@dataclass
class _Call:
    name: str
    module: nn.Module
    src: _Call | None
    inputs: tuple = ()
    output: Tensor | None = None
    nfe: int = 1


def _units(model: nn.Module, rules: Rules) -> list[tuple[str, nn.Module]]:
    """Modules costed as a whole (those a rule covers) and parameter-free leaves."""
    found: list[tuple[str, nn.Module]] = []

    def visit(name: str, module: nn.Module) -> None:
        if rules.module_rule(type(module)) is not None:
            found.append((name, module))
            return
        own = [n for n, p in module.named_parameters(recurse=False) if p is not None]
        if own:
            kind = type(module).__name__
            raise GraphError(
                f"count does not know how to cost module {name or '<root>'!r} of type {kind} "
                f"(parameters {own}); pass a rule for it, graphwire.count(model, input_shape, "
                f"costs={{{kind}: fn}}) with fn(module, inputs, output) -> "
                "{kind: (params, macs)}, or give the class a method "
                "graphwire_cost(self, inputs, output) returning the same."
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
    return isinstance(call.module, CHANNELWISE) and _channels(call.output) == _channels(
        _first_tensor(call.inputs)
    )


def count(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    seed: int = 0,
    costs: Mapping[type[nn.Module], CostFn] | None = None,
    node_costs: Mapping[type[nn.Module], NodeCostFn] | None = None,
) -> Cost:
    """Count the live parameters and multiply-adds of ``model`` (see :mod:`graphwire.cost`).

    The network runs once, unchanged (its own ``forward``), on a random input under
    forward hooks, in evaluation mode and without gradients; training modes are restored.

    Args:
        model: Any network made of graphwire modules and ``torch.nn`` layers.
        input_shape: Shape of one input batch, batch first (e.g. ``(1, 3, 224, 224)``);
            the count uses a batch of one and reports per-example figures.
        seed: Seed of the random input (it matters only for adaptive ODE solvers).
        costs: Extra module rules for this call, ``{module type: fn}`` with
            ``fn(module, inputs, output) -> {kind: (params, macs)}`` for one call of the
            module on a batch of one. A rule covers the type's subclasses; the module's
            children are not visited; parameters of several calls count once, multiply-adds
            add up. A module type may instead define ``graphwire_cost(self, inputs,
            output)`` returning the same. For each class of a module's MRO, most specific
            first, ``costs`` comes before that method and both before the built-in rules.
        node_costs: Extra node-operation rules for this call, ``{op type: fn}`` with
            ``fn(op, nodes, feature_shape) -> {kind: (params, macs)}``: the op, the int64
            indices of the used nodes it runs on and the spatial shape of their inputs
            (``()`` for vectors), for one application to those nodes.

    Returns:
        A :class:`Cost`; ``cost.params`` and ``cost.macs`` are the headline figures.

    Raises:
        GraphError: if a module with parameters (or a node operation) has no cost rule,
            or the arguments are malformed.

    Example:
        >>> import torch
        >>> from graphwire import WiredGraph
        >>> from graphwire import count
        >>> from graphwire.graph import layered_dag
        >>> net = WiredGraph(layered_dag([2, 3, 1]), node_op="conv", k=4, seed=0)
        >>> cost = count(net, (1, 2, 8, 8))
        >>> cost.by_kind()["edges"]  # 4 edges, each over an 8 x 8 map
        (4, 256)

        A module type no built-in rule knows is costed by a rule passed for the call:

        >>> class Scale(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.s = torch.nn.Parameter(torch.ones(4))
        ...     def forward(self, x):
        ...         return x * self.s
        >>> def scale_cost(module, inputs, output):
        ...     return {"dense": (module.s.numel(), output.numel())}
        >>> count(Scale(), (1, 4), costs={Scale: scale_cost}).macs
        4
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
    rules = Rules(costs, node_costs)
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
            if isinstance(module, WiredGraph):
                module.nfe = 0  # measure this call's function evaluations
            t = _first_tensor(args)
            calls.append(_Call(name, module, producer.get(id(t)) if t is not None else None))

        return hook

    def post_hook(name):
        def hook(module, args, output):
            call = next(c for c in reversed(calls) if c.module is module and c.output is None)
            call.inputs, call.output = args, output
            if isinstance(module, WiredGraph):
                call.nfe = int(module.nfe) or 1
            kept.extend([*args, output])
            if isinstance(output, Tensor):
                producer[id(output)] = call

        return hook

    handles = []
    for name, module in _units(model, rules):
        handles.append(module.register_forward_pre_hook(pre_hook(name)))
        handles.append(module.register_forward_hook(post_hook(name)))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return Cost(_costs(calls, rules), shape)


def _costs(calls: list[_Call], rules: Rules) -> list[CostItem]:
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
        used, fed = liveness(call.module)
        graph = call.module.graph
        back = call.src
        while back is not None and _keeps_channels(back):
            back = back.src
        if back is not None and type(back.module) in DENSE:
            if back.module.weight.shape[0] == graph.inputs.numel():
                live_out[id(back.module)] = used[graph.inputs]
        ahead = consumers.get(id(call), [])
        while len(ahead) == 1 and _keeps_channels(ahead[0]):
            ahead = consumers.get(id(ahead[0]), [])
        if len(ahead) == 1 and type(ahead[0].module) in DENSE:
            dense = ahead[0].module
            if dense.weight.shape[1] * getattr(dense, "groups", 1) == graph.outputs.numel():
                live_in[id(dense)] = fed[graph.outputs]

    totals: dict[tuple[str, str], list[int]] = {}
    for call in calls:
        module = call.module
        if call.output is None or rules.module_rule(type(module)) is None:
            continue
        cost = rules.module_cost(
            module, call, live_out=live_out.get(id(module)), live_in=live_in.get(id(module))
        )
        for kind, (p, m) in cost.items():
            if kind not in COST_KINDS:
                raise GraphError(f"cost kind {kind!r} is not one of {COST_KINDS}.")
            entry = totals.setdefault((call.name, kind), [0, 0])
            entry[0] = max(entry[0], int(p))
            entry[1] += int(m)
    return [CostItem(name, kind, p, m) for (name, kind), (p, m) in totals.items()]
