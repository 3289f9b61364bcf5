"""``WiredGraph``: a channel graph with learnable edge weights, a wiring rule and node ops."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from graphwire._utils import choose, describe
from graphwire.backends.dense import AUTO_MAX_FILL, DenseBackend
from graphwire.backends.dynamics import ODESolver
from graphwire.backends.reference import ReferenceBackend
from graphwire.backends.spec import WiredSpec, check_features
from graphwire.errors import ConfigError, SelectionError
from graphwire.execution.node_ops import NodeOpSpec, make_node_op
from graphwire.graph.channel_graph import MODES, ChannelGraph
from graphwire.wiring import WiringRule, make_rule
from graphwire.wiring.budget import SharedBudget
from graphwire.wiring.module import WiredModule
from graphwire.wiring.topk import DISTRIBUTIONS, distribute_budget, resolve_budget

__all__ = ["WiredGraph", "SCOPES", "BACKENDS"]

#: Scopes of the top-k: one budget over the whole graph, or one per node group.
SCOPES = ("global", "group")

#: Execution backends: ``"auto"`` picks ``"dense"`` unless the candidate set is far
#: sparser than its dense blocks (more than 64 block entries per candidate edge).
BACKENDS = ("auto", "dense", "reference")


class WiredGraph(WiredModule):
    """A network whose wiring is learned: ``Z_v = f_v(sum over selected (u, v) of w_uv Z_u)``.

    The module holds one edge-weight parameter ``weight`` of shape ``[E]`` and a boolean
    buffer ``edge_mask`` of shape ``[E]``, both aligned with the columns of the graph's
    ``edge_index`` exactly as given. The forward pass uses the selected edges only; with
    ``rule="dnw"`` every candidate edge still receives the straight-through gradient
    ``<Z_u, dL/dI_v>``, and :class:`~graphwire.DNWOptimizer` re-selects after each step.

    Two backends run the same network. ``"dense"`` (the default through ``"auto"``)
    scatters the effective weights into a few dense blocks at every call and mixes node
    features with matrix products (:mod:`graphwire.backends.dense`). ``"reference"`` is
    message passing over ``edge_index``, the clear and slow oracle the dense backend is
    tested against (:mod:`graphwire.backends.reference`). Outputs and every gradient
    agree to rounding; switch with ``net.backend = "reference"``. Each call hands the
    backend a plain description of the network (:meth:`spec`).

    ``forward`` keeps no state of its own: it runs the chosen backend in training and in
    evaluation alike, on every device, with or without gradients. Train with this
    module; deploy the frozen one, :func:`graphwire.freeze` (dead nodes removed, channels
    compacted, sparse kernels).

    Args:
        graph: The candidate edges, inputs, outputs and groups.
        node_op: The node operation ``f_v`` of non-input nodes: ``"identity"``,
            ``"relu"``, ``"tanh"``, ``"conv"`` (instance norm -> ReLU -> depthwise 3x3), a
            factory ``num_nodes -> module`` taking ``(x, nodes)``, or a mapping from group
            name to either.
        rule: A wiring rule name (``"dnw"``, ``"dnw_no_update"``, ``"random"``,
            ``"complete"``) or a :class:`~graphwire.wiring.WiringRule` instance such as
            ``FixedMask(mask)``.
        k: Edges to keep: a total, or a mapping from group name to count.
        density: Fraction of candidate edges to keep, instead of ``k``.
        scope: ``"global"`` (one top-k over the whole graph, the paper's tiny models) or
            ``"group"`` (one per node group, by the group of the edge's target).
        distribution: With ``scope="group"``, how a total ``k`` or ``density`` is spread
            over the groups: ``"uniform"`` (the same density in each) or ``"erk"``
            (Erdos-Renyi, as in RigL: a group with ``s`` sources and ``t`` targets gets a
            density proportional to ``(s + t) / (s * t)``; see
            :func:`~graphwire.wiring.topk.distribute_budget`). With ``scope="global"`` it is
            ``"uniform"`` (the default) or ``"global"``: one top-k either way.
        mode: ``"dag"``, ``"discrete"`` or ``"continuous"``.
        steps: Number of time steps in ``mode="discrete"``.
        solver: :class:`~graphwire.ODESolver` (or a dict of its fields) for
            ``mode="continuous"``.
        input_op: Operation applied to the data at the input nodes (default
            ``"identity"``: input nodes hold the data); same forms as ``node_op``.
        init_scale: Edge weights start uniform in ``[-init_scale, init_scale]``, one scale
            for every candidate, so the first selection spreads over the whole graph.
            Default: ``1 / sqrt(k / n)``, with ``n`` the nodes that have incoming edges,
            which keeps the variance of ``I_v`` near that of ``Z_u`` (``k`` is every
            candidate for a rule that starts dense, such as ``GMP``).
        seed: Seed for the edge weights and a random rule's graph; ``None`` uses torch's
            global generator.
        backend: ``"auto"`` (default), ``"dense"`` or ``"reference"``; see above.

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
        distribution: str = "uniform",
        mode: str = "dag",
        steps: int = 5,
        solver: ODESolver | Mapping[str, Any] | None = None,
        input_op: NodeOpSpec = "identity",
        init_scale: float | None = None,
        seed: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(graph, ChannelGraph):
            raise ConfigError(f"graph must be a graphwire.ChannelGraph; got {describe(graph)}.")
        choose("mode", mode, MODES, ConfigError)
        choose("scope", scope, dict.fromkeys(SCOPES), SelectionError)
        choose("distribution", distribution, dict.fromkeys(DISTRIBUTIONS), SelectionError)
        fits = {"global": ("uniform", "global"), "group": ("uniform", "erk")}[scope]
        if distribution not in fits:
            raise SelectionError(
                f"distribution={distribution!r} does not go with scope={scope!r}: a global "
                "scope is one top-k (distribution 'uniform' or 'global'); a per-group scope "
                "splits the budget by 'uniform' or 'erk'."
            )
        choose("backend", backend, dict.fromkeys(BACKENDS), ConfigError)
        graph.validate(mode=mode)
        self.graph, self.mode, self.scope = graph, mode, scope
        if mode == "discrete" and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0
        ):
            raise ConfigError(f"steps must be a positive int for mode='discrete'; got {steps!r}.")
        self.steps = steps
        self.solver = ODESolver(**solver) if isinstance(solver, Mapping) else solver or ODESolver()
        if not isinstance(self.solver, ODESolver):
            raise ConfigError(
                f"solver must be a graphwire.ODESolver or a dict of its fields; got "
                f"{describe(solver)}."
            )
        generator = None if seed is None else torch.Generator().manual_seed(seed)

        self.node_op = make_node_op(node_op, graph.num_nodes, graph.group_names, graph.group_id)
        self.input_op = make_node_op(input_op, graph.num_nodes, graph.group_names, graph.group_id)
        self.register_buffer("inputs", graph.inputs.clone(), persistent=False)
        self.register_buffer("edge_index", graph.edge_index.clone())
        self.dense = DenseBackend(graph, mode)
        self.reference: ReferenceBackend | None = None  # built when first selected
        self.backend = backend

        # Scopes of the top-k: the edge indices of each scope, computed once.
        if scope == "group":
            if graph.edge_group is None:
                raise SelectionError(
                    "scope='group' needs node groups; build the graph with groups=... or use "
                    "scope='global'."
                )
            order = torch.argsort(graph.edge_group, stable=True)
            sizes = torch.bincount(graph.edge_group, minlength=len(graph.group_names)).tolist()
            scopes: list[Tensor] | None = list(order.split(sizes))
            names = list(graph.group_names)
        else:
            scopes, names = None, ["graph"]
        # the initial scale needs the budget before the weights exist
        rule = make_rule(rule)
        if distribution == "erk" and rule.uses_budget:
            if isinstance(k, Mapping):
                raise SelectionError(
                    "distribution='erk' splits a total budget; give k as an int or density, "
                    f"not a mapping per group (got k={dict(k)!r})."
                )
            src, dst = graph.edge_index
            shapes = [(int(dst[i].unique().numel()), int(src[i].unique().numel())) for i in scopes]
            sizes = [s.numel() for s in scopes]
            total = sum(resolve_budget([graph.num_edges], k=k, density=density))
            k = dict(zip(names, distribute_budget(total, shapes, "erk", sizes)))
            density = None
        sizes = [graph.num_edges] if scopes is None else [s.numel() for s in scopes]
        kept_per_scope = rule.budget(sizes, k=k, density=density, names=names)
        kept = graph.num_edges if rule.starts_dense else sum(kept_per_scope)
        targets = int((graph.in_degree > 0).sum())
        self.init_scale = float(init_scale) if init_scale else (targets / max(kept, 1)) ** 0.5
        weight = torch.rand(graph.num_edges, generator=generator, dtype=torch.get_default_dtype())
        self.weight = nn.Parameter((2 * weight - 1) * self.init_scale)
        self.register_buffer("edge_mask", torch.zeros(graph.num_edges, dtype=torch.bool))
        self.shared_budget: SharedBudget | None = None
        SharedBudget(
            [self],
            rule=rule,
            k=k,
            density=density,
            scopes=scopes,
            scope_names=names,
            generator=generator,
        )

    # ------------------------------------------------------------------ wiring
    @property
    def budget(self) -> list[int]:
        """Edges kept per scope of the top-k (one entry for ``scope="global"``)."""
        return self.shared_budget.counts

    @property
    def backend(self) -> str:
        """The backend the forward pass runs: ``"dense"`` or ``"reference"``.

        Set it to ``"auto"``, ``"dense"`` or ``"reference"``; ``"auto"`` resolves to
        ``"dense"`` unless the dense blocks would hold more than 64 entries per candidate
        edge (a candidate set so sparse that dense products would mostly multiply zeros).
        """
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        choose("backend", value, dict.fromkeys(BACKENDS), ConfigError)
        if value == "auto":
            fill = self.dense.layout.size / max(self.graph.num_edges, 1)
            value = "dense" if fill <= AUTO_MAX_FILL else "reference"
        if value == "reference" and self.reference is None:
            device = self.edge_index.device
            self.reference = ReferenceBackend(self.graph, self.mode).to(device)
        self._backend = value

    @property
    def executor(self) -> nn.Module:
        """The executor of the current backend."""
        return self.dense if self._backend == "dense" else self.reference

    @property
    def nfe(self) -> int:
        """Function evaluations of ``dZ/dt`` so far, both backends together.

        Always 0 outside continuous time. Set it to 0 before a call to measure that call,
        as :func:`graphwire.count` does; setting it outside continuous time does nothing.
        """
        if self.mode != "continuous":
            return 0
        return self.dense.nfe + (self.reference.nfe if self.reference is not None else 0)

    @nfe.setter
    def nfe(self, value: int) -> None:
        if self.mode != "continuous":
            return
        self.dense.nfe = int(value)
        if self.reference is not None:
            self.reference.nfe = 0

    @torch.no_grad()
    def unfed_nodes(self) -> Tensor:
        """Non-input nodes that no selected edge feeds: int64 node ids, ascending.

        Such a node sums nothing, so whatever the data it outputs one constant (for
        ``node_op="conv"`` the ReLU of its norm's shift through its kernel). Its outgoing
        edges carry no signal, and behind a normalising node op their straight-through
        gradients nearly vanish (the norm removes the mean, the only thing a constant
        source could add), so an unfed node seldom gets edges back. A count that rises
        during training means a global top-k is concentrating the budget on fewer nodes;
        :class:`~graphwire.Trainer` logs it per epoch as ``unfed``.

        Example:
            >>> import torch
            >>> from graphwire import WiredGraph
            >>> from graphwire.graph import layered_dag
            >>> from graphwire.wiring import FixedMask
            >>> g = layered_dag([1, 2, 1])  # edges 0->1, 0->2, 0->3, 1->3, 2->3
            >>> keep = torch.tensor([True, False, True, True, True])  # drop 0->2
            >>> WiredGraph(g, rule=FixedMask(keep)).unfed_nodes()
            tensor([2])
        """
        dst = self.graph.edge_index[1][self.edge_mask.cpu()]
        fed = torch.zeros(self.graph.num_nodes, dtype=torch.bool)
        fed[dst] = True
        fed[self.graph.inputs] = True
        return (~fed).nonzero().flatten()

    def fan_in_groups(self) -> Tensor:
        """The target node of every candidate edge, ``edge_index[1]`` (for a constant fan-in)."""
        return self.graph.edge_index[1]

    def learned_graph(self) -> ChannelGraph:
        """The selected edges as a :class:`ChannelGraph` whose ``edge_weight`` holds ``w``."""
        mask = self.edge_mask.cpu()
        graph = self.graph.subgraph(mask)
        graph.edge_weight = self.weight.detach().cpu()[mask].clone()
        return graph

    # ------------------------------------------------------------------ execution
    def spec(self) -> WiredSpec:
        """The network as its backends and :func:`graphwire.freeze` see it, at this moment.

        A plain description: the graph, the mode, the effective edge weights (what the
        forward pass uses; differentiable), the mask, the node and input operations, the
        steps and the solver.

        Example:
            >>> from graphwire import WiredGraph
            >>> from graphwire.graph import layered_dag
            >>> spec = WiredGraph(layered_dag([2, 4, 1]), density=0.5, seed=0).spec()
            >>> spec.mode, spec.weight.shape, int(spec.mask.sum())
            ('dag', torch.Size([14]), 7)
        """
        return WiredSpec(
            graph=self.graph,
            mode=self.mode,
            weight=self.effective_weight(),
            mask=self.edge_mask,
            node_op=self.node_op,
            input_op=self.input_op,
            steps=self.steps,
            solver=self.solver,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Run the network.

        Args:
            x: The input nodes' features, ``[B, n_inputs]`` or ``[B, n_inputs, H, W]``.

        Returns:
            The output nodes' features, ``[B, n_outputs, ...]``, outputs in index order.
        """
        check_features(x, self.inputs.numel(), self.weight, floating=self.weight.dtype)
        z0 = self.input_op(x, self.inputs)  # [B, n_in, *F]
        return self.executor(z0, self.spec())  # [B, n_out, *F]

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"{self.graph!r}, rule={self.rule!r}, mode={self.mode!r}, scope={self.scope!r}, "
            f"kept={sum(self.budget)} of {self.graph.num_edges}, backend={self.backend!r}"
        )
