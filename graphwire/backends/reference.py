"""The reference backend: message passing over ``edge_index``, the correctness oracle.

Every node computes ``I_v = sum over edges (u, v) of w_uv * Z_u`` by gathering the
sources, scaling by the edge weights and scatter-adding into the targets, then
``Z_v = f_v(I_v)``. Three modes share that step:

- ``"dag"``: nodes run once, by the topological stages of
  :func:`~graphwire.backends.layout.dag_stages`.
- ``"discrete"``: ``T`` weight-tied steps ``Z <- f(A Z)``; cycles allowed.
- ``"continuous"``: ``dZ/dt = f(A Z)`` integrated by
  :func:`~graphwire.backends.dynamics.integrate`.

Input nodes hold the data (after the optional input operation). In the dynamic modes
they are the initial state, non-input nodes start at zero, and a node is *updated* when
it is a non-input or has incoming candidate edges; the others hold their value.

This backend favours clarity over speed: ``WiredGraph(..., backend="reference")``
selects it, and the dense backend (:class:`~graphwire.backends.dense.DenseBackend`, the
default) is tested against it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from graphwire.backends.dynamics import integrate
from graphwire.backends.layout import dag_stages, recurrent_layout
from graphwire.backends.spec import WiredSpec
from graphwire.graph.channel_graph import ChannelGraph

__all__ = ["ReferenceBackend", "propagate"]


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

    Example:
        >>> import torch
        >>> from graphwire.backends.reference import propagate
        >>> z = torch.tensor([[1.0, 2.0]])
        >>> propagate(z, torch.tensor([3.0, 4.0]), torch.tensor([0, 1]), torch.tensor([0, 0]), 1)
        tensor([[11.]])
    """
    msg = z.index_select(1, src) * weight.view(1, -1, *([1] * (z.dim() - 2)))  # [B, E', *F]
    return scatter(msg, dst, dim=1, dim_size=num_targets, reduce="sum")


class ReferenceBackend(nn.Module):
    """The message-passing backend of :class:`~graphwire.WiredGraph` for one graph and mode.

    ``forward(z0, spec)`` takes the input nodes' features ``z0`` (``[B, n_in, *F]``,
    after the input operation) and the :class:`~graphwire.backends.spec.WiredSpec` of
    the call, and returns the outputs ``[B, n_out, *F]``.

    Args:
        graph: The channel graph.
        mode: ``"dag"``, ``"discrete"`` or ``"continuous"``.

    Attributes:
        nfe: Function evaluations of continuous-time passes so far.
    """

    def __init__(self, graph: ChannelGraph, mode: str) -> None:
        super().__init__()
        self.mode, self.num_nodes, self.nfe = mode, graph.num_nodes, 0
        self.register_buffer("src", graph.edge_index[0].clone(), persistent=False)
        self.register_buffer("dst", graph.edge_index[1].clone(), persistent=False)
        self.register_buffer("inputs", graph.inputs.clone(), persistent=False)
        self.register_buffer("outputs", graph.outputs.clone(), persistent=False)
        updated = recurrent_layout(graph).updated
        self.register_buffer("updated", updated, persistent=False)
        if mode == "dag":
            # edges grouped by the step of their target, with the target's index in it
            steps = dag_stages(graph)
            step_of = torch.full((graph.num_nodes,), -1, dtype=torch.long)
            local = torch.full((graph.num_nodes,), -1, dtype=torch.long)
            for i, nodes in enumerate(steps):
                step_of[nodes] = i
                local[nodes] = torch.arange(nodes.numel())
            edge_step = step_of[graph.edge_index[1]]
            perm = torch.argsort(edge_step, stable=True)
            perm = perm[edge_step[perm] >= 0]
            counts = torch.bincount(edge_step[perm], minlength=len(steps)).tolist()
            self.step_sizes = [(s.numel(), c) for s, c in zip(steps, counts)]
            self.register_buffer("step_nodes", torch.cat(steps), persistent=False)
            self.register_buffer("step_edges", perm, persistent=False)
            self.register_buffer("step_dst", local[graph.edge_index[1, perm]], persistent=False)

    def initial_state(self, z0: Tensor) -> Tensor:
        """``[B, N, *F]`` state: ``z0`` at the input nodes, zeros elsewhere."""
        z = z0.new_zeros(z0.shape[0], self.num_nodes, *z0.shape[2:])
        return z.index_copy(1, self.inputs, z0)

    def update(self, z: Tensor, weight: Tensor, node_op: nn.Module) -> Tensor:
        """``f(A z)`` at the updated nodes, ``[B, n_updated, *F]``."""
        i = propagate(z, weight, self.src, self.dst, self.num_nodes)
        return node_op(i.index_select(1, self.updated), self.updated)

    def forward(self, z0: Tensor, spec: WiredSpec) -> Tensor:  # noqa: D102
        weight = spec.weight  # [E]
        z = self.initial_state(z0)  # [B, N, *F]
        if self.mode == "dag":
            z = self._run_dag(z, weight, spec.node_op)
        elif self.mode == "discrete":
            for _ in range(spec.steps):
                z = z.index_copy(1, self.updated, self.update(z, weight, spec.node_op))
        else:
            z = self._integrate(z, spec)
        return z.index_select(1, self.outputs)

    def _run_dag(self, z: Tensor, weight: Tensor, node_op: nn.Module) -> Tensor:
        node_at, edge_at = 0, 0
        for rows, n_edges in self.step_sizes:
            nodes = self.step_nodes[node_at : node_at + rows]
            edges = self.step_edges[edge_at : edge_at + n_edges]
            dst = self.step_dst[edge_at : edge_at + n_edges]
            inp = propagate(z, weight[edges], self.src[edges], dst, rows)
            z = z.index_copy(1, nodes, node_op(inp, nodes))
            node_at, edge_at = node_at + rows, edge_at + n_edges
        return z

    def _integrate(self, z: Tensor, spec: WiredSpec) -> Tensor:
        def dynamics(t: Tensor, z: Tensor) -> Tensor:
            self.nfe += 1
            # held nodes' derivative is zero
            dz = self.update(z, spec.weight, spec.node_op)
            return torch.zeros_like(z).index_copy(1, self.updated, dz)

        params = (spec.weight, *spec.node_op.parameters())
        return integrate(dynamics, z, spec.solver, adjoint_params=params)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"mode={self.mode!r}"
