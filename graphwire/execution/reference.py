"""The reference executors: message passing over ``edge_index``, the correctness oracle.

Every node computes ``I_v = sum over edges (u, v) of w_uv * Z_u`` by gathering the
sources, scaling by the edge weights and scatter-adding into the targets, then
``Z_v = f_v(I_v)``. Three modes share that step:

- ``"dag"``: nodes run once, by topological generations.
- ``"discrete"``: ``T`` weight-tied steps ``Z <- f(A Z)``; cycles allowed.
- ``"continuous"``: ``dZ/dt = f(A Z)`` integrated by :func:`torchdiffeq.odeint`.

Input nodes hold the data (after the optional input operation). In the dynamic modes
they are the initial state, non-input nodes start at zero, and a node is *updated* when
it is a non-input or has incoming candidate edges; the others hold their value.

These executors favour clarity over speed; :mod:`graphwire.execution.compiled` is the
fast path and is tested against them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from graphwire._utils import choose
from graphwire.errors import GraphError
from graphwire.graph.channel_graph import ChannelGraph

__all__ = [
    "ODESolver",
    "ReferenceExecutor",
    "DagExecutor",
    "DiscreteExecutor",
    "ContinuousExecutor",
    "EXECUTORS",
    "propagate",
]


def propagate(z: Tensor, weight: Tensor, src: Tensor, dst: Tensor, num_targets: int) -> Tensor:
    """One message-passing step: ``I[:, v] = sum over edges e into v of w_e * z[:, src_e]``.

    Args:
        z: Node features ``[B, N, *F]``.
        weight: Edge weights ``[E']`` of the edges given.
        src: Source node of each edge ``[E']``.
        dst: Target slot of each edge ``[E']``, in ``[0, num_targets)``.
        num_targets: Number of target slots.

    Returns:
        ``[B, num_targets, *F]``.
    """
    msg = z.index_select(1, src) * weight.view(1, -1, *([1] * (z.dim() - 2)))  # [B, E', *F]
    return scatter(msg, dst, dim=1, dim_size=num_targets, reduce="sum")


@dataclass
class ODESolver:
    """Options of the continuous-time mode, passed to :func:`torchdiffeq.odeint`.

    Args:
        method: A torchdiffeq method name (``"dopri5"``, ``"rk4"``, ``"euler"``, ...).
        rtol: Relative tolerance of adaptive methods.
        atol: Absolute tolerance of adaptive methods.
        t1: End time; the network integrates over ``[0, t1]``.
        adjoint: Backpropagate with the adjoint method (:func:`torchdiffeq.odeint_adjoint`)
            in constant memory instead of through the solver's steps.
        options: Extra solver options (e.g. ``{"step_size": 0.1}`` for fixed-step methods);
            ``None`` means none. The solver keeps its own copy.

    Example:
        >>> from graphwire.execution import ODESolver
        >>> ODESolver(method="rk4", options={"step_size": 0.25}).method
        'rk4'
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    t1: float = 1.0
    adjoint: bool = False
    options: dict[str, Any] | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.options = dict(self.options or {})
        from torchdiffeq._impl.odeint import SOLVERS

        choose("method", self.method, SOLVERS, GraphError)
        if not self.t1 > 0:
            raise GraphError(f"ODESolver t1 must be positive; got {self.t1!r}.")

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`torchdiffeq.odeint`."""
        kw = asdict(self)
        del kw["t1"], kw["adjoint"]
        return kw


class ReferenceExecutor(nn.Module):
    """Base of the reference executors: holds the graph's index tensors as buffers.

    ``forward(z0, module)`` takes the input nodes' features ``z0`` (``[B, n_in, *F]``,
    after the input operation) and a wired module providing ``effective_weight()`` and
    ``node_op``, and returns the output nodes' features ``[B, n_out, *F]``.
    """

    def __init__(self, graph: ChannelGraph):
        super().__init__()
        self.num_nodes = graph.num_nodes
        self.register_buffer("src", graph.edge_index[0].clone(), persistent=False)
        self.register_buffer("dst", graph.edge_index[1].clone(), persistent=False)
        self.register_buffer("inputs", graph.inputs.clone(), persistent=False)
        self.register_buffer("outputs", graph.outputs.clone(), persistent=False)
        updated = torch.ones(graph.num_nodes, dtype=torch.bool)
        updated[graph.inputs] = graph.in_degree[graph.inputs] > 0
        self.register_buffer("updated", updated.nonzero().flatten(), persistent=False)

    def initial_state(self, z0: Tensor) -> Tensor:
        """``[B, N, *F]`` state: ``z0`` at the input nodes, zeros elsewhere."""
        z = z0.new_zeros(z0.shape[0], self.num_nodes, *z0.shape[2:])
        return z.index_copy(1, self.inputs, z0)

    def update(self, z: Tensor, weight: Tensor, node_op: nn.Module) -> Tensor:
        """``f(A z)`` at the updated nodes, ``[B, n_updated, *F]``."""
        i = propagate(z, weight, self.src, self.dst, self.num_nodes)
        return node_op(i.index_select(1, self.updated), self.updated)


class DagExecutor(ReferenceExecutor):
    """Runs a DAG once, one topological generation at a time."""

    def __init__(self, graph: ChannelGraph):
        super().__init__(graph)
        gens = list(graph.generations)
        is_input = torch.zeros(graph.num_nodes, dtype=torch.bool)
        is_input[graph.inputs] = True
        first = gens[0][~is_input[gens[0]]]  # sources that are not inputs
        steps = [torch.cat([first, gens[1]]).sort().values] if len(gens) > 1 else [first]
        steps += gens[2:]
        self.num_steps = 0
        step_of = torch.full((graph.num_nodes,), -1, dtype=torch.long)
        for i, nodes in enumerate(steps):
            step_of[nodes] = i
        edge_step = step_of[graph.edge_index[1]]
        for i, nodes in enumerate(steps):
            if nodes.numel() == 0:
                continue
            edges = (edge_step == i).nonzero().flatten()
            local = torch.full((graph.num_nodes,), -1, dtype=torch.long)
            local[nodes] = torch.arange(nodes.numel())
            slot = self.num_steps
            self.register_buffer(f"nodes_{slot}", nodes, persistent=False)
            self.register_buffer(f"edges_{slot}", edges, persistent=False)
            self.register_buffer(f"dst_{slot}", local[graph.edge_index[1, edges]], persistent=False)
            self.num_steps += 1

    def forward(self, z0: Tensor, module: nn.Module) -> Tensor:  # noqa: D102
        weight = module.effective_weight()  # [E]
        z = self.initial_state(z0)  # [B, N, *F]
        for i in range(self.num_steps):
            nodes, edges = getattr(self, f"nodes_{i}"), getattr(self, f"edges_{i}")
            inp = propagate(
                z, weight[edges], self.src[edges], getattr(self, f"dst_{i}"), len(nodes)
            )
            z = z.index_copy(1, nodes, module.node_op(inp, nodes))
        return z.index_select(1, self.outputs)


class DiscreteExecutor(ReferenceExecutor):
    """Runs ``steps`` weight-tied updates ``Z <- f(A Z)`` over a graph that may have cycles.

    Args:
        graph: The channel graph.
        steps: Number of time steps ``T``.
    """

    def __init__(self, graph: ChannelGraph, steps: int = 5):
        super().__init__(graph)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise GraphError(f"steps must be a positive int for mode='discrete'; got {steps!r}.")
        self.steps = steps

    def forward(self, z0: Tensor, module: nn.Module) -> Tensor:  # noqa: D102
        weight = module.effective_weight()  # [E]
        z = self.initial_state(z0)  # [B, N, *F]
        for _ in range(self.steps):
            z = z.index_copy(1, self.updated, self.update(z, weight, module.node_op))
        return z.index_select(1, self.outputs)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"steps={self.steps}"


class _Dynamics(nn.Module):
    """``dZ/dt`` of a wired module: ``f(A Z)`` at the updated nodes, zero elsewhere."""

    def __init__(self, executor: ContinuousExecutor, module: nn.Module):
        super().__init__()
        self.executor = executor
        self.module = module

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        self.executor.nfe += 1
        weight = self.module.effective_weight()  # no selection here: only a masked multiply
        dz = self.executor.update(z, weight, self.module.node_op)
        return torch.zeros_like(z).index_copy(1, self.executor.updated, dz)


class ContinuousExecutor(ReferenceExecutor):
    """Integrates ``dZ/dt = f(A Z)`` over ``[0, t1]`` with :func:`torchdiffeq.odeint`.

    Args:
        graph: The channel graph.
        solver: Solver options.

    Attributes:
        nfe: Number of function evaluations so far (reset it to measure a pass).
    """

    def __init__(self, graph: ChannelGraph, solver: ODESolver | None = None):
        super().__init__(graph)
        self.solver = solver or ODESolver()
        self.nfe = 0

    def forward(self, z0: Tensor, module: nn.Module) -> Tensor:  # noqa: D102
        from torchdiffeq import odeint, odeint_adjoint

        z = self.initial_state(z0)  # [B, N, *F]
        t = torch.tensor([0.0, self.solver.t1], dtype=z.dtype, device=z.device)
        func = _Dynamics(self, module)
        if self.solver.adjoint:
            params = tuple(p for p in module.parameters() if p.requires_grad)
            zt = odeint_adjoint(func, z, t, adjoint_params=params, **self.solver.as_kwargs())
        else:
            zt = odeint(func, z, t, **self.solver.as_kwargs())
        return zt[-1].index_select(1, self.outputs)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return repr(self.solver)


#: Reference executors by mode name.
EXECUTORS: dict[str, type[ReferenceExecutor]] = {
    "dag": DagExecutor,
    "discrete": DiscreteExecutor,
    "continuous": ContinuousExecutor,
}
