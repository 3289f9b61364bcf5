"""The dense backend: a wired graph's forward pass as a few dense matrix products.

The reference executors gather one message per edge; this backend instead scatters the
``[E]`` effective edge weights into dense blocks once per forward pass (the layouts of
:mod:`graphwire.lowering._layout`) and mixes node features with matrix products:

- ``"dag"``: one block per topological step, rows for the step's nodes and columns for
  the window of earlier nodes its candidate edges come from. For a layered graph the
  blocks are exactly the candidate rectangles, never the whole ``N x N`` square.
- ``"discrete"``: one ``[updated x updated]`` block applied ``T`` times, plus the constant
  contribution of held inputs computed once.
- ``"continuous"``: the same blocks built once per forward pass (not once per function
  evaluation) and closed over by the dynamics :func:`integrate` integrates.

The backend owns only index buffers; the weights, the mask and the node operations are
its owner's (:class:`~graphwire.WiredGraph`), read at every call. The blocks are built
with a differentiable scatter whose backward pass gathers ``<Z_u, dL/dI_v>`` for every
candidate edge, selected or not, so the rule's straight-through gradient is exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from graphwire.graph.channel_graph import ChannelGraph
from graphwire.lowering._dynamics import held_dynamics, integrate
from graphwire.lowering._layout import DagLayout, RecurrentLayout, dag_layout, recurrent_layout

if TYPE_CHECKING:  # pragma: no cover
    from graphwire.execution.wired import WiredGraph

__all__ = ["DenseExecutor", "mix", "dense_fill", "AUTO_MAX_FILL"]

#: ``backend="auto"`` runs the dense blocks while they hold at most this many entries
#: per candidate edge, and message passing beyond (a candidate set so sparse that the
#: dense products would mostly multiply zeros). Measured by ``python -m benchmarks
#: speed`` on a 2-core CPU: gathering one message per edge costs about as much as
#: 20-60 multiply-adds of a dense product.
AUTO_MAX_FILL = 16.0


def mix(z: Tensor, a: Tensor) -> Tensor:
    """Mix node features with a dense block: ``out[:, v] = sum over u of a[v, u] * z[:, u]``.

    Image features are multiplied with the channel axis last (a view when ``z`` is
    channels-last), which is one large matrix product instead of a 1x1 convolution.

    Args:
        z: Node features ``[B, n, *F]``.
        a: Block ``[m, n]``.

    Returns:
        ``[B, m, *F]``.

    Example:
        >>> import torch
        >>> from graphwire.lowering import mix
        >>> mix(torch.ones(2, 3, 4, 4), torch.ones(5, 3)).shape
        torch.Size([2, 5, 4, 4])
    """
    if z.dim() == 2:
        return z @ a.t()
    return (z.movedim(1, -1) @ a.t()).movedim(-1, 1)


def _layout(z: Tensor) -> Tensor:
    """Image features in channels-last memory, which makes :func:`mix` a plain matmul."""
    return z.contiguous(memory_format=torch.channels_last) if z.dim() == 4 else z


def _window(pieces: list[Tensor], offsets: list[int], lo: int, hi: int) -> Tensor:
    """Positions ``[lo, hi)`` of the concatenation of ``pieces`` (``offsets`` are their starts)."""
    parts = []
    for piece, start in zip(pieces, offsets):
        end = start + piece.shape[1]
        if end > lo and start < hi:
            parts.append(piece[:, max(lo - start, 0) : min(hi, end) - start])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def read_out(pieces: list[Tensor], offsets: list[int], out_pos: Tensor, out_range) -> Tensor:
    """The features at layout positions ``out_pos`` (a slice when they are contiguous)."""
    if out_range is not None:
        return _window(pieces, offsets, *out_range)
    return torch.cat(pieces, dim=1).index_select(1, out_pos)


def contiguous_range(positions: Tensor) -> tuple[int, int] | None:
    """``(lo, hi)`` when ``positions`` is ``lo, lo + 1, ..., hi - 1``, else ``None``."""
    if positions.numel() == 0:
        return None
    lo, n = int(positions[0]), positions.numel()
    return (lo, lo + n) if positions.tolist() == list(range(lo, lo + n)) else None


def dense_fill(graph: ChannelGraph, mode: str) -> float:
    """Dense block entries per candidate edge of ``graph`` lowered in ``mode``.

    1.0 for a layered graph whose steps are complete bipartite; large for candidate sets
    much sparser than their blocks. ``backend="auto"`` compares it with
    :data:`AUTO_MAX_FILL`.

    Example:
        >>> from graphwire.graph import layered_dag
        >>> from graphwire.lowering import dense_fill
        >>> dense_fill(layered_dag([4, 8, 2]), "dag")
        1.0
    """
    size = dag_layout(graph).size if mode == "dag" else recurrent_layout(graph).size
    return size / max(graph.num_edges, 1)


class DenseExecutor(nn.Module):
    """The dense backend of :class:`~graphwire.WiredGraph` for one graph and mode.

    ``forward(z0, module)`` takes the input nodes' features ``z0`` (``[B, n_in, *F]``,
    after the input operation) and the owning module (for ``effective_weight()``,
    ``node_op``, ``steps`` and ``solver``) and returns the outputs ``[B, n_out, *F]``.

    Args:
        graph: The channel graph.
        mode: ``"dag"``, ``"discrete"`` or ``"continuous"``.

    Attributes:
        layout: The :class:`~graphwire.lowering.DagLayout` or
            :class:`~graphwire.lowering.RecurrentLayout` the blocks follow.
        nfe: Function evaluations of continuous-time passes so far.
    """

    def __init__(self, graph: ChannelGraph, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.nfe = 0
        self.layout: DagLayout | RecurrentLayout
        if mode == "dag":
            self.layout = dag_layout(graph)
            self.register_buffer("order", self.layout.order.clone(), persistent=False)
            pos = self.layout.position
        else:
            self.layout = lay = recurrent_layout(graph)
            self.register_buffer("updated", lay.updated.clone(), persistent=False)
            upd_from, upd_to, held_from = lay.input_maps(graph.inputs)
            self.register_buffer("in_upd_from", upd_from, persistent=False)
            self.register_buffer("in_upd_to", upd_to, persistent=False)
            self.register_buffer("in_held_from", held_from, persistent=False)
            pos = lay.position
        self.register_buffer("slot", self.layout.slot.clone(), persistent=False)
        self.register_buffer("out_pos", pos[graph.outputs].clone(), persistent=False)
        self.out_range = contiguous_range(pos[graph.outputs])

    def blocks(self, module: WiredGraph) -> Tensor:
        """All dense blocks, flattened into one ``[size + 1]`` tensor (last entry unused)."""
        w = module.effective_weight()  # [E]
        return w.new_zeros(self.layout.size + 1).scatter_add(0, self.slot, w)

    def forward(self, z0: Tensor, module: WiredGraph) -> Tensor:  # noqa: D102
        flat = self.blocks(module)
        z0 = _layout(z0)
        if self.mode == "dag":
            return self._run_dag(z0, flat, module.node_op)
        z_u, z_h, c = self._initial(z0, flat)
        lay = self.layout
        a_u = flat[: lay.nu * lay.nu].view(lay.nu, lay.nu)
        if self.mode == "discrete":
            for _ in range(module.steps):
                z_u = module.node_op(mix(z_u, a_u) + c, self.updated)  # [B, n_u, *F]
        else:
            z_u = self._integrate(z_u, z_h, a_u, c, module)
        return read_out([z_u, z_h], [0, lay.nu], self.out_pos, self.out_range)

    # ------------------------------------------------------------------ modes
    def _run_dag(self, z0: Tensor, flat: Tensor, node_op: nn.Module) -> Tensor:
        steps = self.layout.steps
        pieces, offsets = [z0], [0]  # node features in layout order, one piece per step
        # one split, not a slice per block: its backward is one concatenation
        blocks = flat.split([s.rows * s.cols for s in steps] + [1])
        for step, block in zip(steps, blocks):
            if step.cols:
                src = _window(pieces, offsets, step.lo, step.start)  # [B, cols, *F]
                inp = mix(src, block.view(step.rows, step.cols))  # [B, rows, *F]
            else:
                inp = z0.new_zeros(z0.shape[0], step.rows, *z0.shape[2:])
            pieces.append(node_op(inp, self.order[step.start : step.start + step.rows]))
            offsets.append(step.start)
        return read_out(pieces, offsets, self.out_pos, self.out_range)

    def _initial(self, z0: Tensor, flat: Tensor) -> tuple[Tensor, Tensor, Tensor | float]:
        """``(z_u, z_h, c)``: updated and held states and held nodes' constant input."""
        lay = self.layout
        b, f = z0.shape[0], z0.shape[2:]
        z_u = z0.new_zeros(b, lay.nu, *f).index_copy(
            1, self.in_upd_to, z0.index_select(1, self.in_upd_from)
        )  # [B, n_u, *F]
        z_h = z0.index_select(1, self.in_held_from)  # [B, n_h, *F]
        c: Tensor | float = 0.0
        if lay.nh:
            a_h = flat[lay.nu * lay.nu : lay.size].view(lay.nu, lay.nh)
            c = mix(z_h, a_h)  # [B, n_u, *F]
        return _layout(z_u), z_h, c

    def _integrate(self, z_u, z_h, a_u, c, module: WiredGraph) -> Tensor:
        node_op, updated, nu = module.node_op, self.updated, self.layout.nu
        # held inputs stay in the state (derivative zero) so that an adaptive solver's
        # error control and first step see the same state as the reference executor's
        dynamics = held_dynamics(lambda z: node_op(mix(z, a_u) + c, updated), nu, self)
        params = (a_u,) + ((c,) if isinstance(c, Tensor) else ())
        params += tuple(node_op.parameters())
        z = torch.cat([z_u, z_h], dim=1) if z_h.shape[1] else z_u  # [B, n_u + n_h, *F]
        return integrate(dynamics, z, module.solver, adjoint_params=params)[:, :nu]

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"mode={self.mode!r}, dense entries={self.layout.size}"
