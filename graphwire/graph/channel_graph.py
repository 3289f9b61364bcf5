"""The channel graph: the one graph contract every graphwire network is built on."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Union

import torch
from torch import Tensor

from graphwire._utils import choose, describe
from graphwire.errors import ConfigError, CycleError, EdgeIndexError, ReachabilityError

__all__ = ["ChannelGraph", "MODES"]

#: Execution modes a graph can be validated for, and whether each allows cycles.
MODES: dict[str, bool] = {"dag": False, "discrete": True, "continuous": True}

#: Bytes a graph's checks hold per node at once: int64 in-degrees and group ids, and the
#: boolean masks of the reachability and topological passes.
BYTES_PER_NODE = 32

#: The most nodes a graph can have: edge ``(u, v)`` is keyed ``u * N + v`` in int64.
MAX_NODES = math.isqrt(2**63 - 1)

NodeSet = Union[Tensor, Sequence[int], range]
Groups = Union[Mapping[str, NodeSet], Sequence[NodeSet], Tensor, None]


def _memory_bytes() -> int | None:
    """Physical memory of this machine in bytes, or ``None`` where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_num_nodes(num_nodes: int) -> None:
    """Refuse a ``num_nodes`` whose per-node tensors cannot exist, before allocating any."""
    need = BYTES_PER_NODE * num_nodes
    have = _memory_bytes()
    if num_nodes > MAX_NODES or (have is not None and need > have):
        limit = f"this machine has {have / 2**30:.1f} GiB" if have else "memory is limited"
        raise EdgeIndexError(
            f"num_nodes={num_nodes} is too large: a graph holds about {BYTES_PER_NODE} bytes per "
            f"node, {need / 2**30:.1f} GiB here, and {limit} (at most {MAX_NODES} nodes fit the "
            "int64 edge keys). Check num_nodes for a typo; it should be the number of nodes, "
            "e.g. int(edge_index.max()) + 1."
        )


def _as_nodes(name: str, nodes: NodeSet, num_nodes: int) -> Tensor:
    """Normalise a node set to a sorted, duplicate-free int64 tensor, checking its range."""
    try:
        t = torch.as_tensor(list(nodes) if isinstance(nodes, range) else nodes)
    except (TypeError, ValueError) as exc:
        raise EdgeIndexError(
            f"{name} must be a sequence or 1-D tensor of node indices; got {describe(nodes)}."
        ) from exc
    t = t.reshape(-1)
    if t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        raise EdgeIndexError(f"{name} must hold integer node indices; got dtype {t.dtype}.")
    t = t.to(torch.long)
    if t.numel() == 0:
        raise EdgeIndexError(f"{name} must name at least one node; got an empty set.")
    bad = t[(t < 0) | (t >= num_nodes)]
    if bad.numel():
        raise EdgeIndexError(
            f"{name} must hold indices in [0, num_nodes={num_nodes}); got {bad[:5].tolist()}."
        )
    unique = torch.unique(t)
    if unique.numel() != t.numel():
        raise EdgeIndexError(f"{name} lists a node more than once; pass each node once.")
    return unique


def _as_groups(groups: Groups, num_nodes: int) -> tuple[tuple[str, ...], Tensor] | None:
    """Normalise node groups to ``(names, group_id)`` with ``group_id`` an int64 ``[N]``."""
    if groups is None:
        return None
    if isinstance(groups, Tensor):
        ids = groups.reshape(-1).to(torch.long)
        if ids.numel() != num_nodes or (ids < 0).any():
            raise EdgeIndexError(
                f"groups as a tensor must hold a non-negative group id per node, shape "
                f"[{num_nodes}]; got {describe(groups)}."
            )
        n_groups = int(ids.max()) + 1
        return tuple(f"group{i}" for i in range(n_groups)), ids.clone()
    items = groups.items() if isinstance(groups, Mapping) else enumerate(groups)
    names: list[str] = []
    ids = torch.full((num_nodes,), -1, dtype=torch.long)
    for gid, (name, nodes) in enumerate(items):
        name = name if isinstance(name, str) else f"group{name}"
        members = _as_nodes(f"groups[{name!r}]", nodes, num_nodes)
        clash = members[ids[members] >= 0]
        if clash.numel():
            raise EdgeIndexError(
                f"groups must be disjoint; node {int(clash[0])} is in group "
                f"{names[int(ids[clash[0]])]!r} and in {name!r}."
            )
        ids[members] = gid
        names.append(name)
    missing = (ids < 0).nonzero().flatten()
    if missing.numel():
        raise EdgeIndexError(
            f"groups must cover every node; nodes {missing[:5].tolist()} are in no group. "
            "Add them to a group of their own."
        )
    return tuple(names), ids


class ChannelGraph:
    """A directed graph over channels in torch-geometric ``edge_index`` form.

    Node ``v`` of a network built on this graph computes
    ``Z_v = f_v(sum over edges (u, v) of w_uv * Z_u)``; input nodes hold the data and
    output nodes are read out. The graph holds the *candidate* edges; a wiring rule picks
    which of them a network uses.

    Args:
        edge_index: ``[2, E]`` int64 tensor; row 0 holds sources, row 1 targets.
        num_nodes: Number of nodes ``N``; nodes are ``0 .. N-1``.
        inputs: Input nodes (a sequence or 1-D tensor of indices).
        outputs: Output nodes, read out in the order of their indices.
        groups: Optional node groups (stages or levels): a mapping from name to nodes, a
            sequence of node sets, or an ``[N]`` tensor of group ids. Groups are disjoint
            and cover every node; they scope the top-k (``scope="group"``).
        edge_weight: Optional ``[E]`` float weights, carried by the interop functions.

    Raises:
        GraphError: if :meth:`validate` finds a problem (it runs on construction).

    Example:
        >>> import torch
        >>> from graphwire import ChannelGraph
        >>> g = ChannelGraph(torch.tensor([[0, 1, 0], [2, 2, 3]]), 4, inputs=[0, 1], outputs=[2, 3])
        >>> g
        ChannelGraph(num_nodes=4, num_edges=3, inputs=2, outputs=2)
        >>> g.validate(mode="dag")
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_nodes: int,
        *,
        inputs: NodeSet,
        outputs: NodeSet,
        groups: Groups = None,
        edge_weight: Tensor | None = None,
    ) -> None:
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes <= 0:
            raise EdgeIndexError(
                f"num_nodes must be a positive int; got {describe(num_nodes)}. An empty graph "
                "has nothing to wire."
            )
        _check_num_nodes(num_nodes)
        if not isinstance(edge_index, Tensor):
            raise EdgeIndexError(
                f"edge_index must be a torch.Tensor of shape [2, E] and dtype int64; got "
                f"{describe(edge_index)}. Build it with torch.tensor([sources, targets])."
            )
        self.edge_index = edge_index
        self.num_nodes = num_nodes
        self.inputs = _as_nodes("inputs", inputs, num_nodes)
        self.outputs = _as_nodes("outputs", outputs, num_nodes)
        grouped = _as_groups(groups, num_nodes)
        self.group_names, self.group_id = grouped if grouped else ((), None)
        self.edge_weight = edge_weight
        #: Original node labels when built from a networkx graph with other labels.
        self.node_labels: tuple | None = None
        self.validate()

    # ------------------------------------------------------------------ contract
    def validate(self, mode: str | None = None) -> None:
        """Check the graph, raising a :class:`~graphwire.GraphError` that names the problem.

        Args:
            mode: ``None`` checks what every graph must satisfy; ``"dag"`` also requires no
                self-loops, no cycle and no edge into an input node; ``"discrete"`` and
                ``"continuous"`` allow cycles and self-loops.

        Every call checks the tensors as they are now (linear in the edges, plus the
        cycle search for ``"dag"``), so a tensor modified in place is never trusted.

        Raises:
            EdgeIndexError: bad shape, dtype, range, duplicates, self-loops, weights.
            CycleError: a cycle in ``mode="dag"`` (the message names one).
            ReachabilityError: an output node that no input node reaches.
            ConfigError: an unknown ``mode``.
        """
        if mode is not None:
            choose("mode", mode, MODES, ConfigError)
        self._check(mode)

    def _check(self, mode: str | None) -> None:
        """The checks behind :meth:`validate`."""
        ei = self.edge_index
        if ei.dim() != 2 or ei.shape[0] != 2:
            raise EdgeIndexError(
                f"edge_index must have shape [2, E] (row 0 sources, row 1 targets); got shape "
                f"{list(ei.shape)}. If you hold a list of (u, v) pairs, pass "
                "torch.tensor(pairs).t()."
            )
        if ei.dtype != torch.long:
            raise EdgeIndexError(
                f"edge_index must have dtype torch.int64; got {ei.dtype}. Convert it with "
                "edge_index.long()."
            )
        if ei.shape[1] == 0:
            raise EdgeIndexError("edge_index has no edges (E = 0); an empty graph cannot be wired.")
        n = self.num_nodes
        bad = ((ei < 0) | (ei >= n)).any(dim=0).nonzero().flatten()
        if bad.numel():
            col = int(bad[0])
            raise EdgeIndexError(
                f"edge_index must hold node indices in [0, num_nodes={n}); column {col} is "
                f"{ei[:, col].tolist()} ({bad.numel()} bad columns)."
            )
        key = ei[0] * n + ei[1]
        ordered, order = key.sort()
        repeats = (ordered[1:] == ordered[:-1]).nonzero().flatten()
        if repeats.numel():
            dup = int(ordered[repeats[0]])
            cols = sorted(order[ordered == dup][:2].tolist())
            raise EdgeIndexError(
                f"edge_index has duplicate edges: {dup // n} -> {dup % n} appears at columns "
                f"{cols}. Merge them, e.g. with torch_geometric.utils.coalesce."
            )
        if self.edge_weight is not None:
            w = self.edge_weight
            if not isinstance(w, Tensor) or w.shape != (ei.shape[1],):
                raise EdgeIndexError(
                    f"edge_weight must be a tensor of shape [E={ei.shape[1]}]; got {describe(w)}."
                )
            bad = (~torch.isfinite(w)).nonzero().flatten()
            if bad.numel():
                col = int(bad[0])
                raise EdgeIndexError(
                    f"edge_weight must be finite; edge {col} ({int(ei[0, col])} -> "
                    f"{int(ei[1, col])}) has weight {float(w[col])} ({bad.numel()} non-finite)."
                )
        if mode == "dag":
            loops = (ei[0] == ei[1]).nonzero().flatten()
            if loops.numel():
                col = int(loops[0])
                raise EdgeIndexError(
                    f"edge_index has a self-loop {int(ei[0, col])} -> {int(ei[1, col])} at column "
                    f"{col}; mode='dag' forbids self-loops. Remove them with "
                    "torch_geometric.utils.remove_self_loops, or use mode='discrete'."
                )
            is_input = torch.zeros(n, dtype=torch.bool)
            is_input[self.inputs] = True
            into_inputs = is_input[ei[1]].nonzero().flatten()
            if into_inputs.numel():
                col = int(into_inputs[0])
                raise EdgeIndexError(
                    f"input node {int(ei[1, col])} has an incoming edge {int(ei[0, col])} -> "
                    f"{int(ei[1, col])} (column {col}); in mode='dag' input nodes hold the data "
                    "and take no edges. Drop the edge or make the node a non-input."
                )
            cycle = self._find_cycle()
            if cycle is not None:
                raise CycleError(
                    f"mode='dag' requires an acyclic graph; edge_index has the cycle "
                    f"{' -> '.join(map(str, cycle))}. Use mode='discrete' or 'continuous' for "
                    "recurrent graphs.",
                    cycle,
                )
        reached = self.reachable_from_inputs()
        unreached = self.outputs[~reached[self.outputs]]
        if unreached.numel():
            raise ReachabilityError(
                f"output nodes {unreached[:5].tolist()} cannot be reached from any input node "
                f"({unreached.numel()} of {self.outputs.numel()} outputs). Add edges toward them "
                "or remove them from outputs."
            )

    # ------------------------------------------------------------------ structure
    @property
    def num_edges(self) -> int:
        """Number of candidate edges ``E``."""
        return int(self.edge_index.shape[1])

    @cached_property
    def in_degree(self) -> Tensor:
        """Number of candidate edges into each node, int64 ``[N]``."""
        return torch.bincount(self.edge_index[1], minlength=self.num_nodes)

    @cached_property
    def out_degree(self) -> Tensor:
        """Number of candidate edges out of each node, int64 ``[N]``."""
        return torch.bincount(self.edge_index[0], minlength=self.num_nodes)

    def reachable_from_inputs(self, edge_mask: Tensor | None = None) -> Tensor:
        """Boolean ``[N]``: which nodes a path from an input node reaches (inputs included).

        Args:
            edge_mask: Optional boolean ``[E]``; only these edges are followed.
        """
        return _propagate(self.edge_index, self.num_nodes, self.inputs, edge_mask)

    def reaches_outputs(self, edge_mask: Tensor | None = None) -> Tensor:
        """Boolean ``[N]``: which nodes have a path to an output node (outputs included).

        Args:
            edge_mask: Optional boolean ``[E]``; only these edges are followed.
        """
        return _propagate(self.edge_index.flip(0), self.num_nodes, self.outputs, edge_mask)

    def _peel(self) -> tuple[list[Tensor], Tensor]:
        """Kahn's algorithm on tensors: the generations, and the nodes left on cycles."""
        src, dst = self.edge_index
        indeg = self.in_degree.clone()
        remaining = torch.ones(self.num_nodes, dtype=torch.bool)
        gens = []
        while True:
            current = remaining & (indeg == 0)
            if not current.any():
                return gens, remaining
            gens.append(current.nonzero().flatten())
            remaining &= ~current
            indeg -= torch.bincount(dst[current[src]], minlength=self.num_nodes)

    def _find_cycle(self) -> list[int] | None:
        """Return one directed cycle (first node repeated at the end), or ``None``."""
        _, remaining = self._peel()
        if not remaining.any():
            return None
        # Every node left has a predecessor that is also left: walk backwards until a
        # node repeats; the walk between the repeats, reversed, is a cycle.
        src, dst = self.edge_index
        inner = remaining[src] & remaining[dst]
        src, dst = src[inner], dst[inner]
        walk = [int(remaining.nonzero()[0])]
        seen = {walk[0]: 0}
        while True:
            v = int(src[(dst == walk[-1]).nonzero()[0]])
            if v in seen:
                cycle = walk[seen[v] :][::-1]
                first = cycle.index(min(cycle))  # start at the smallest node: deterministic
                cycle = cycle[first:] + cycle[:first]
                return cycle + [cycle[0]]
            seen[v] = len(walk)
            walk.append(v)

    @cached_property
    def generations(self) -> tuple[Tensor, ...]:
        """Topological generations of a DAG, each an int64 tensor of nodes.

        Generation 0 holds the nodes without incoming edges; every edge goes from an
        earlier generation to a later one. Requires an acyclic graph.
        """
        self.validate(mode="dag")
        return tuple(self._peel()[0])

    @property
    def edge_group(self) -> Tensor | None:
        """Group id of each edge (the group of its target node), int64 ``[E]``, or ``None``."""
        return None if self.group_id is None else self.group_id[self.edge_index[1]]

    def subgraph(self, edge_mask: Tensor) -> ChannelGraph:
        """The graph with only the edges in the boolean ``[E]`` ``edge_mask``, same nodes."""
        keep = edge_mask.to(torch.bool)
        weight = None if self.edge_weight is None else self.edge_weight[keep]
        out = ChannelGraph.__new__(ChannelGraph)
        out.edge_index = self.edge_index[:, keep]
        out.num_nodes = self.num_nodes
        out.inputs, out.outputs = self.inputs, self.outputs
        out.group_names, out.group_id = self.group_names, self.group_id
        out.edge_weight, out.node_labels = weight, self.node_labels
        out.validate()
        return out

    def __repr__(self) -> str:
        groups = f", groups={len(self.group_names)}" if self.group_names else ""
        return (
            f"ChannelGraph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
            f"inputs={self.inputs.numel()}, outputs={self.outputs.numel()}{groups})"
        )


def _propagate(edge_index: Tensor, n: int, start: Tensor, edge_mask: Tensor | None) -> Tensor:
    """Nodes reached from ``start`` along ``edge_index`` (optionally masked); boolean ``[N]``."""
    src, dst = edge_index if edge_mask is None else edge_index[:, edge_mask.to(torch.bool)]
    seen = torch.zeros(n, dtype=torch.bool)
    seen[start] = True
    frontier = seen.clone()
    while frontier.any():
        hit = torch.zeros(n, dtype=torch.bool)
        hit[dst[frontier[src]]] = True
        frontier = hit & ~seen
        seen |= hit
    return seen
