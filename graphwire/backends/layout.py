"""The one layout builder: where every node sits in the dense blocks of a lowered graph.

Training (the dense backend), inference (the frozen graph of :func:`graphwire.freeze`)
and the reference backend's DAG stages all place nodes with these two functions, so the
three paths cannot disagree:

- :func:`dag_layout`: inputs first, then the DAG's topological stages; each stage reads a
  contiguous *window* of earlier positions, so its block is ``[rows, cols]``.
- :func:`recurrent_layout`: the dynamic modes' split into *updated* nodes (every
  non-input, and inputs with incoming candidate edges) and *held* inputs, which keep
  their value; blocks ``A_u`` ``[n_u, n_u]`` and ``A_h`` ``[n_u, n_h]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from graphwire.graph.channel_graph import ChannelGraph

__all__ = [
    "DagStage",
    "DagLayout",
    "RecurrentLayout",
    "dag_stages",
    "dag_layout",
    "recurrent_layout",
]


def dag_stages(graph: ChannelGraph) -> list[Tensor]:
    """The DAG's node stages (int64 node ids each, ascending), inputs excluded.

    Stage 0 holds the non-input sources and the first generation after the sources; the
    later stages are the later topological generations. Within a stage no node reads
    another: a source that is not an input is zero when the stage runs. Empty stages are
    dropped.
    """
    gens = list(graph.generations)
    is_input = torch.zeros(graph.num_nodes, dtype=torch.bool)
    is_input[graph.inputs] = True
    first = gens[0][~is_input[gens[0]]]  # sources that are not inputs
    steps = [torch.cat([first, gens[1]]).sort().values] if len(gens) > 1 else [first]
    steps += gens[2:]
    return [s for s in steps if s.numel()]


def _positions(order: Tensor, num_nodes: int) -> Tensor:
    """``pos[node]`` = index of ``node`` in ``order`` (``-1`` when absent)."""
    pos = torch.full((num_nodes,), -1, dtype=torch.long)
    pos[order] = torch.arange(order.numel())
    return pos


@dataclass(frozen=True)
class DagStage:
    """One topological stage of a lowered DAG.

    Attributes:
        start: Layout position of the stage's first node; its nodes are
            ``order[start : start + rows]``.
        rows: Nodes in the stage.
        lo: First position of the window of earlier nodes its edges come from; the
            window is ``[lo, start)``, so the stage's block is ``[rows, start - lo]``.
        base: Offset of the stage's block in the flat block storage.
    """

    start: int
    rows: int
    lo: int
    base: int

    @property
    def cols(self) -> int:
        """Columns of the stage's block (the window's width)."""
        return self.start - self.lo


@dataclass(frozen=True)
class DagLayout:
    """Where the nodes of a DAG sit: inputs first, then stage by stage.

    Attributes:
        order: int64 ``[n]`` node ids in layout position order (CPU).
        position: int64 ``[N]`` layout position of each node, ``-1`` for nodes left out.
        num_inputs: Input nodes at the front of ``order``.
        stages: The stages, in execution order.
        size: Entries of all blocks together (the flat storage's length).
        slot: int64 ``[E]``: where each edge lands in the flat storage; ``size`` for
            edges no block holds (left-out nodes, or a source in the same step).
    """

    order: Tensor
    position: Tensor
    num_inputs: int
    stages: tuple[DagStage, ...]
    size: int
    slot: Tensor

    def nodes(self, stage: DagStage) -> Tensor:
        """Node ids of ``stage`` (a view of ``order``)."""
        return self.order[stage.start : stage.start + stage.rows]


def dag_layout(graph: ChannelGraph, live: Tensor | None = None, edges: Tensor | None = None):
    """Lay out a DAG for dense blocks.

    Args:
        graph: The channel graph (validated as a DAG).
        live: Optional boolean ``[N]``: nodes to keep (the others are left out).
        edges: Optional boolean ``[E]``: edges the blocks must hold (default: every
            candidate between kept nodes). Windows span only these edges' sources.

    Returns:
        A :class:`DagLayout`.

    Example:
        >>> from graphwire.graph import layered_dag
        >>> from graphwire.backends.layout import dag_layout
        >>> layout = dag_layout(layered_dag([2, 3, 1]))
        >>> [(s.start, s.rows, s.cols) for s in layout.stages], layout.size
        ([(2, 3, 2), (5, 1, 5)], 11)
    """
    n = graph.num_nodes
    keep = torch.ones(n, dtype=torch.bool) if live is None else live.cpu().bool()
    inputs = graph.inputs[keep[graph.inputs]]
    steps_nodes = [s[keep[s]] for s in dag_stages(graph)]
    steps_nodes = [s for s in steps_nodes if s.numel()]
    order = torch.cat([inputs, *steps_nodes])
    pos = _positions(order, n)
    src, dst = (pos[i] for i in graph.edge_index)
    held = (src >= 0) & (dst >= 0)
    if edges is not None:
        held &= edges.cpu().bool()
    slot = torch.empty(graph.num_edges, dtype=torch.long)
    free = torch.ones(graph.num_edges, dtype=torch.bool)
    steps: list[DagStage] = []
    start, base = inputs.numel(), 0
    for nodes in steps_nodes:
        rows = nodes.numel()
        # edges into this step from earlier positions (a same-step source still reads 0)
        into = held & (dst >= start) & (dst < start + rows) & (src < start)
        lo = int(src[into].min()) if bool(into.any()) else start
        cols = start - lo
        slot[into] = base + (dst[into] - start) * cols + (src[into] - lo)
        free &= ~into
        steps.append(DagStage(start=start, rows=rows, lo=lo, base=base))
        start, base = start + rows, base + rows * cols
    slot[free] = base
    return DagLayout(order, pos, inputs.numel(), tuple(steps), base, slot)


@dataclass(frozen=True)
class RecurrentLayout:
    """The dynamic modes' layout: updated nodes first, then held inputs.

    Attributes:
        updated: int64 ``[n_u]`` updated node ids, ascending (CPU).
        held: int64 ``[n_h]`` held input ids, ascending.
        position: int64 ``[N]``: position in ``cat([updated, held])``, ``-1`` if left out.
        slot: int64 ``[E]``: flat position of each edge; ``A_u`` occupies
            ``[0, n_u^2)``, ``A_h`` ``[n_u^2, n_u^2 + n_u n_h)``; ``size`` for edges
            between left-out nodes.
        size: ``n_u^2 + n_u n_h``.
    """

    updated: Tensor
    held: Tensor
    position: Tensor
    slot: Tensor
    size: int

    @property
    def nu(self) -> int:
        """Updated nodes."""
        return self.updated.numel()

    @property
    def nh(self) -> int:
        """Held inputs."""
        return self.held.numel()

    def input_maps(self, inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(upd_from, upd_to, held_from)`` for the input features ``z0`` of ``inputs``.

        ``z0[:, upd_from]`` lands at updated positions ``upd_to``; ``z0[:, held_from]``
        are the held inputs in position order.
        """
        in_pos = self.position[inputs.cpu()]
        nu = self.nu
        upd = (in_pos >= 0) & (in_pos < nu)
        return upd.nonzero().flatten(), in_pos[upd], (in_pos >= nu).nonzero().flatten()


def recurrent_layout(graph: ChannelGraph, live: Tensor | None = None) -> RecurrentLayout:
    """Split the nodes of a (possibly cyclic) graph into updated and held ones.

    Args:
        graph: The channel graph.
        live: Optional boolean ``[N]``: nodes to keep.

    Example:
        >>> from graphwire.graph import layered_dag
        >>> from graphwire.backends.layout import recurrent_layout
        >>> layout = recurrent_layout(layered_dag([2, 3, 1]))
        >>> layout.updated.tolist(), layout.held.tolist(), layout.size
        ([2, 3, 4, 5], [0, 1], 24)
    """
    n = graph.num_nodes
    keep = torch.ones(n, dtype=torch.bool) if live is None else live.cpu().bool()
    is_updated = torch.ones(n, dtype=torch.bool)
    is_updated[graph.inputs] = graph.in_degree[graph.inputs] > 0
    updated = (is_updated & keep).nonzero().flatten()
    held = ((~is_updated) & keep).nonzero().flatten()
    nu, nh = updated.numel(), held.numel()
    pos = _positions(torch.cat([updated, held]), n)
    src, dst = (pos[i] for i in graph.edge_index)
    size = nu * nu + nu * nh
    slot = torch.where(src >= nu, nu * nu + dst * nh + (src - nu), dst * nu + src)
    slot = torch.where((src >= 0) & (dst >= 0), slot, torch.full_like(slot, size))
    return RecurrentLayout(updated, held, pos, slot, size)
