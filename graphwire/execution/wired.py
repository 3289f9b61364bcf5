"""``WiredGraph``: a channel graph with learnable edge weights, a wiring rule and node ops."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from graphwire._utils import choose, describe
from graphwire.errors import GraphError, SelectionError
from graphwire.execution.node_ops import NodeOpSpec, make_node_op
from graphwire.execution.reference import EXECUTORS, ODESolver
from graphwire.graph.channel_graph import MODES, ChannelGraph
from graphwire.wiring.rules import WiringRule, make_rule, replace_mask

__all__ = ["WiredGraph", "SCOPES"]

#: Scopes of the top-k: one budget over the whole graph, or one per node group.
SCOPES = ("global", "group")


class WiredGraph(nn.Module):
    """A network whose wiring is learned: ``Z_v = f_v(sum over selected (u, v) of w_uv Z_u)``.

    The module holds one edge-weight parameter ``weight`` of shape ``[E]`` and a boolean
    buffer ``edge_mask`` of shape ``[E]``, both aligned with the columns of the graph's
    ``edge_index`` exactly as given. The forward pass uses the selected edges only; with
    ``rule="dnw"`` every candidate edge still receives the straight-through gradient
    ``<Z_u, dL/dI_v>``, and :class:`~graphwire.DNWOptimizer` re-selects after each step.

    Args:
        graph: The candidate edges, inputs, outputs and groups.
        node_op: The node operation ``f_v`` of non-input nodes: ``"identity"``,
            ``"relu"``, ``"tanh"``, ``"conv"`` (instance norm -> ReLU -> depthwise 3x3), a
            factory ``num_nodes -> module`` taking ``(x, nodes)``, or a mapping from group
            name to either.
        rule: A wiring rule name (``"dnw"``, ``"dnw_no_update"``, ``"random"``,
            ``"complete"``) or a :class:`~graphwire.wiring.WiringRule` instance such as
            ``Frozen(mask)``.
        k: Edges to keep: a total, or a mapping from group name to count.
        density: Fraction of candidate edges to keep, instead of ``k``.
        scope: ``"global"`` (one top-k over the whole graph, the paper's tiny models) or
            ``"group"`` (one per node group, by the group of the edge's target).
        mode: ``"dag"``, ``"discrete"`` or ``"continuous"``.
        steps: Number of time steps in ``mode="discrete"``.
        solver: :class:`~graphwire.execution.ODESolver` (or a dict of its fields) for
            ``mode="continuous"``.
        input_op: Operation applied to the data at the input nodes (default
            ``"identity"``: input nodes hold the data); same forms as ``node_op``.
        init_scale: Edge weights start uniform in ``[-init_scale, init_scale]``, one scale
            for every candidate, so the first selection spreads over the whole graph.
            Default: ``1 / sqrt(k / n)``, with ``n`` the nodes that have incoming edges,
            which keeps the variance of ``I_v`` near that of ``Z_u``.
        seed: Seed for the edge weights and a random rule's graph; ``None`` uses torch's
            global generator.

    Example:
        >>> import torch
        >>> from graphwire import WiredGraph
        >>> from graphwire.graph import layered_dag
        >>> net = WiredGraph(layered_dag([4, 8, 8, 2]), node_op="relu", density=0.3, seed=0)
        >>> net(torch.randn(5, 4)).shape
        torch.Size([5, 2])
        >>> int(net.mask().sum()), net.weight.shape
        (50, torch.Size([168]))
    """

    def __init__(
        self,
        graph: ChannelGraph,
        *,
        node_op: NodeOpSpec = "relu",
        rule: str | WiringRule = "dnw",
        k: int | Mapping[str, int] | None = None,
        density: float | None = None,
        scope: str = "global",
        mode: str = "dag",
        steps: int = 5,
        solver: ODESolver | Mapping[str, Any] | None = None,
        input_op: NodeOpSpec = "identity",
        init_scale: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(graph, ChannelGraph):
            raise GraphError(f"graph must be a graphwire.ChannelGraph; got {describe(graph)}.")
        choose("mode", mode, MODES, GraphError)
        choose("scope", scope, dict.fromkeys(SCOPES), SelectionError)
        graph.validate(mode=mode)
        self.graph, self.mode, self.scope = graph, mode, scope
        self.rule = make_rule(rule)
        generator = None if seed is None else torch.Generator().manual_seed(seed)

        # Scopes of the top-k: the edge indices of each scope, computed once.
        if scope == "group":
            if graph.edge_group is None:
                raise SelectionError(
                    "scope='group' needs node groups; build the graph with groups=... or use "
                    "scope='global'."
                )
            order = torch.argsort(graph.edge_group, stable=True)
            sizes = torch.bincount(graph.edge_group, minlength=len(graph.group_names)).tolist()
            self._members: list[Tensor] | None = list(order.split(sizes))
            names = list(graph.group_names)
        else:
            self._members, sizes, names = None, [graph.num_edges], ["graph"]
        self.budget = self.rule.budget(sizes, k=k, density=density, names=names)

        self.node_op = make_node_op(node_op, graph.num_nodes, graph.group_names, graph.group_id)
        self.input_op = make_node_op(input_op, graph.num_nodes, graph.group_names, graph.group_id)
        if mode == "discrete":
            self.executor = EXECUTORS[mode](graph, steps=steps)
        elif mode == "continuous":
            solver = ODESolver(**solver) if isinstance(solver, Mapping) else solver
            self.executor = EXECUTORS[mode](graph, solver=solver)
        else:
            self.executor = EXECUTORS[mode](graph)
        self.register_buffer("edge_index", graph.edge_index.clone())

        kept, targets = sum(self.budget), int((graph.in_degree > 0).sum())
        self.init_scale = float(init_scale) if init_scale else (targets / max(kept, 1)) ** 0.5
        weight = torch.rand(graph.num_edges, generator=generator, dtype=torch.get_default_dtype())
        self.weight = nn.Parameter((2 * weight - 1) * self.init_scale)
        self.register_buffer("edge_mask", torch.zeros(graph.num_edges, dtype=torch.bool))
        self.rule.setup(self)
        with torch.no_grad():
            self.edge_mask.copy_(
                self.rule.initial_mask(self, self.budget, self._members, generator)
            )

    # ------------------------------------------------------------------ wiring
    def mask(self) -> Tensor:
        """The selected edges: a boolean ``[E]`` aligned with ``edge_index``."""
        return self.edge_mask

    def effective_weight(self) -> Tensor:
        """The ``[E]`` weights the forward pass uses (zero for unselected edges)."""
        return self.rule.effective_weight(self, self.weight, self.edge_mask)

    @torch.no_grad()
    def reselect(self) -> tuple[int, int]:
        """Re-select the edges by the rule; return ``(edges swapped in, edges swapped out)``.

        Rules that do not re-select (random, complete, frozen) keep their mask and return
        ``(0, 0)``.
        """
        if not self.rule.reselects:
            return 0, 0
        return replace_mask(self.edge_mask, self.rule.select(self, self.budget, self._members))

    @torch.no_grad()
    def unfed_nodes(self) -> Tensor:
        """Non-input nodes that no selected edge feeds: int64 node ids, ascending.

        Such a node sums nothing, so whatever the data it outputs one constant (for
        ``node_op="conv"`` the ReLU of its norm's shift through its kernel). Its outgoing
        edges carry no signal, and behind a normalising node op their straight-through
        gradients nearly vanish (the norm removes the mean, the only thing a constant
        source could add), so an unfed node seldom gets edges back. A count that rises
        during training means a global top-k is concentrating the budget on fewer nodes;
        :class:`~graphwire.training.Trainer` logs it per epoch as ``unfed``.

        Example:
            >>> import torch
            >>> from graphwire import WiredGraph
            >>> from graphwire.graph import layered_dag
            >>> from graphwire.wiring import Frozen
            >>> g = layered_dag([1, 2, 1])  # edges 0->1, 0->2, 0->3, 1->3, 2->3
            >>> keep = torch.tensor([True, False, True, True, True])  # drop 0->2
            >>> WiredGraph(g, rule=Frozen(keep)).unfed_nodes()
            tensor([2])
        """
        dst = self.graph.edge_index[1][self.edge_mask.cpu()]
        fed = torch.zeros(self.graph.num_nodes, dtype=torch.bool)
        fed[dst] = True
        fed[self.graph.inputs] = True
        return (~fed).nonzero().flatten()

    def learned_graph(self) -> ChannelGraph:
        """The selected edges as a :class:`ChannelGraph` whose ``edge_weight`` holds ``w``."""
        mask = self.edge_mask.cpu()
        graph = self.graph.subgraph(mask)
        graph.edge_weight = self.weight.detach().cpu()[mask].clone()
        return graph

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A checkpoint carries the mask, and loading it restores the selection exactly.
        # A state dict with weights but no mask (e.g. from another tool) selects on load.
        had_mask = prefix + "edge_mask" in state_dict
        # nn.Module by name: compiled modules borrow this method, so no zero-argument super()
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args, **kwargs)
        if not had_mask and self.rule.reselects and prefix + "weight" in state_dict:
            missing_keys = args[2] if len(args) > 2 else kwargs["missing_keys"]
            with torch.no_grad():
                self.edge_mask.copy_(self.rule.select(self, self.budget, self._members))
            if prefix + "edge_mask" in missing_keys:
                missing_keys.remove(prefix + "edge_mask")

    # ------------------------------------------------------------------ execution
    def forward(self, x: Tensor) -> Tensor:
        """Run the network.

        Args:
            x: The input nodes' features, ``[B, n_inputs]`` or ``[B, n_inputs, H, W]``.

        Returns:
            The output nodes' features, ``[B, n_outputs, ...]``, outputs in index order.
        """
        n_in = self.graph.inputs.numel()
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[1] != n_in:
            raise GraphError(
                f"x must have shape [B, n_inputs={n_in}] or [B, {n_in}, H, W]; got {describe(x)}."
            )
        z0 = self.input_op(x, self.executor.inputs)  # [B, n_in, *F]
        return self.executor(z0, self)  # [B, n_out, *F]

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"{self.graph!r}, rule={self.rule!r}, mode={self.mode!r}, scope={self.scope!r}, "
            f"kept={sum(self.budget)} of {self.graph.num_edges}"
        )

    @property
    def nfe(self) -> int:
        """Function evaluations counted by the executor (0 where it counts none).

        The continuous-time executor counts each evaluation of ``dZ/dt``; set it to 0
        before a call to measure that call (as :func:`graphwire.count` does). Setting it
        on an executor that counts nothing does nothing.
        """
        return int(getattr(getattr(self, "executor", None), "nfe", 0))

    @nfe.setter
    def nfe(self, value: int) -> None:
        executor = getattr(self, "executor", None)
        if hasattr(executor, "nfe"):
            executor.nfe = int(value)
