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
from graphwire.lowering import _kernel
from graphwire.lowering._dynamics import held_dynamics, integrate
from graphwire.lowering._layout import DagLayout, RecurrentLayout, dag_layout, recurrent_layout

if TYPE_CHECKING:  # pragma: no cover
    from graphwire.execution.wired import WiredGraph

__all__ = ["DenseExecutor", "mix", "dense_fill", "AUTO_MAX_FILL", "SPARSE_MAX_DENSITY"]

#: The cost model's switch point, shared by the dense backend's inference and the frozen
#: module: on CPU with the compiled kernel available, a block whose fraction of nonzero
#: entries is at most this runs by the tiled sparse kernel. Measured by ``python -m
#: benchmarks speed``: the kernel beats a dense product up to about 30% density on a
#: 2-core AVX2 CPU; on GPUs dense products win at these sizes.
SPARSE_MAX_DENSITY = 0.25

#: ``backend="auto"`` runs the dense blocks while they hold at most this many entries
#: per candidate edge, and message passing beyond (a candidate set so sparse that the
#: dense products would mostly multiply zeros). Measured by the crossover table of
#: ``python -m benchmarks speed`` (2-core CPU, discrete time, training step): dense won
#: at 32.5 entries per candidate (2.1-2.3x), message passing from 128.6 on (1.1-1.4x).
AUTO_MAX_FILL = 64.0

#: Vector features of at most this many rows run a block kept in ELL form (every row
#: the same length: a constant fan-in) by ``graphwire::ell_mix``, row-major and without
#: transposes, instead of the CSR kernel, which tiles 64 rows at a time. From
#: ``python -m benchmarks fan-in`` (2-core CPU): ELL beat CSR 1.3-7x at 1 and 4 rows.
ELL_MAX_ROWS = 8

#: A block is kept in ELL form too where padding its rows to the longest adds at most
#: this fraction of entries; a constant fan-in adds none.
ELL_MAX_PADDING = 0.25


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


def frozen_mix(z: Tensor, a: Tensor) -> Tensor:
    """:func:`mix` for contiguous ``[B, n, *F]`` features: one batched product, no copy.

    The form of inference, where features stay in the default memory layout.
    """
    if z.dim() == 2:
        return z @ a.t()
    out = torch.matmul(a, z.flatten(2))  # [B, m, P]
    return out.view(z.shape[0], -1, *z.shape[2:])


def csr_mix(
    z: Tensor,
    rowptr: Tensor,
    col: Tensor,
    val: Tensor,
    rows: int,
    ell: tuple[Tensor, Tensor] | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    """:func:`mix` with a CSR block, by the native kernels.

    Vector features run by ``graphwire::csr_linear`` (row-major, the bias added in the
    kernel), or by ``graphwire::ell_mix`` where ``ell`` is given and there are at most
    :data:`ELL_MAX_ROWS` rows; other features by ``graphwire::csr_mix``.

    Args:
        z: Node features ``[B, n, *F]``.
        rowptr: int64 ``[rows + 1]`` row pointers.
        col: int64 ``[nnz]`` columns.
        val: ``[nnz]`` values.
        rows: Rows of the block.
        ell: The same block in ELL form (:func:`ell_layout`), or ``None``.
        bias: ``[rows]`` added to every output row (a layer's bias), or ``None``.

    Returns:
        ``[B, rows, *F]``.
    """
    if z.dim() == 2:  # vectors
        if ell is None or z.shape[0] > ELL_MAX_ROWS:  # row-major blocks, bias in the kernel
            return _kernel.csr_linear(z, rowptr, col, val, bias, rows)
        out = _kernel.ell_mix(z, *ell)  # few rows: row-major ELL
    else:
        out = _kernel.csr_mix(z.flatten(2), rowptr, col, val, rows)
        out = out.view(z.shape[0], rows, *z.shape[2:])  # [B, rows, *F]
    if bias is not None:
        out = out + bias.view(rows, *(1,) * (z.dim() - 2))
    return out


def ell_layout(rowptr: Tensor, col: Tensor, val: Tensor) -> tuple[Tensor, Tensor] | None:
    """A CSR block in ELL form: int32 ``[rows, L]`` columns and ``[rows, L]`` values.

    ``L`` is the longest row; shorter rows are padded with zero values at column 0.
    ``None`` where that padding would add more than :data:`ELL_MAX_PADDING` of the
    entries (rows of very different lengths) or the columns do not fit in int32.
    A constant fan-in gives rows of one length and no padding.
    """
    rows = rowptr.numel() - 1
    counts = rowptr.diff()
    width = int(counts.max()) if rows else 0
    if rows * width > (1 + ELL_MAX_PADDING) * max(col.numel(), 1) or (
        col.numel() and int(col.max()) >= 2**31
    ):
        return None
    row = torch.repeat_interleave(torch.arange(rows, device=rowptr.device), counts)
    slot = torch.arange(col.numel(), device=col.device) - rowptr[row]  # place in its row
    idx = torch.zeros(rows, width, dtype=torch.int32, device=col.device)
    values = val.new_zeros(rows, width)
    idx[row, slot] = col.to(torch.int32)
    values[row, slot] = val
    return idx, values


def register_ell(module: nn.Module, rowptr: Tensor, col: Tensor, val: Tensor) -> None:
    """Keep a CSR block's ELL form (:func:`ell_layout`) on ``module``, where it has one.

    Sets ``module.ell`` (whether it has one) and the buffers ``ell_idx`` and ``ell_val``
    (empty where it has none: ``torch.export`` mis-names the buffers that follow two
    ``None`` ones).
    """
    ell = ell_layout(rowptr, col, val)
    module.ell = ell is not None
    empty = torch.zeros(0, 0, dtype=torch.int32, device=col.device), val.new_zeros(0, 0)
    module.register_buffer("ell_idx", ell[0] if ell is not None else empty[0])
    module.register_buffer("ell_val", ell[1] if ell is not None else empty[1])


def sparse_wins(nnz: int, entries: int, device: torch.device, dtype: torch.dtype) -> bool:
    """The cost model: run a block of ``entries`` with ``nnz`` nonzeros sparse?"""
    return (
        device.type == "cpu"
        and dtype in (torch.float32, torch.float64)
        and nnz <= SPARSE_MAX_DENSITY * max(entries, 1)
        and _kernel.available()
    )


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
        # the layout's own slot tensor (no copy on the CPU)
        self.register_buffer("slot", self.layout.slot, persistent=False)
        self.register_buffer("out_pos", pos[graph.outputs].clone(), persistent=False)
        self.out_range = contiguous_range(pos[graph.outputs])
        if mode == "dag":
            self.block_shapes = [(s.base, s.rows, s.cols) for s in self.layout.stages]
        else:
            nu, nh = self.layout.nu, self.layout.nh
            self.block_shapes = [(0, nu, nu), (nu * nu, nu, nh)]

    def blocks(self, module: WiredGraph) -> Tensor:
        """All dense blocks, flattened into one ``[size + 1]`` tensor (last entry unused)."""
        return self._scatter(module.effective_weight())

    def _scatter(self, w: Tensor) -> Tensor:
        return w.new_zeros(self.layout.size + 1).scatter_add(0, self.slot, w)

    def forward(self, z0: Tensor, module: WiredGraph) -> Tensor:  # noqa: D102
        mixes = self._dense_mixes(module.effective_weight())  # once per call
        z0 = _layout(z0)
        if self.mode == "dag":
            return self._run_dag(z0, mixes, module.node_op)
        z_u, z_h, c = self._initial(z0, mixes[1])
        z_u = _layout(z_u)
        lay = self.layout
        if self.mode == "discrete":
            for _ in range(module.steps):
                z_u = module.node_op(mixes[0](z_u) + c, self.updated)  # [B, n_u, *F]
        else:
            z_u = self._integrate(z_u, z_h, mixes[0], c, module)
        return read_out([z_u, z_h], [0, lay.nu], self.out_pos, self.out_range)

    # ------------------------------------------------------------------ blocks
    def _dense_mixes(self, w: Tensor) -> list:
        """One ``z -> A z`` per block from the ``[E]`` weights ``w``, all dense (differentiable)."""
        flat = self._scatter(w)
        # one split, not a slice per block: its backward is one concatenation
        parts = flat.split([rows * cols for _, rows, cols in self.block_shapes] + [1])
        return [
            _DenseBlock(part.view(rows, cols))
            for part, (_, rows, cols) in zip(parts, self.block_shapes)
        ]

    # ------------------------------------------------------------------ modes
    def _run_dag(self, z0: Tensor, mixes: list, node_op: nn.Module) -> Tensor:
        pieces, offsets = [z0], [0]  # node features in layout order, one piece per stage
        for stage, block in zip(self.layout.stages, mixes):
            if stage.cols:
                src = _window(pieces, offsets, stage.lo, stage.start)  # [B, cols, *F]
                inp = block(src)  # [B, rows, *F]
            else:
                inp = z0.new_zeros(z0.shape[0], stage.rows, *z0.shape[2:])
            nodes = self.order[stage.start : stage.start + stage.rows]
            pieces.append(node_op(inp, nodes))
            offsets.append(stage.start)
        return read_out(pieces, offsets, self.out_pos, self.out_range)

    def _initial(self, z0: Tensor, held_block) -> tuple[Tensor, Tensor, Tensor | float]:
        """``(z_u, z_h, c)``: updated and held states and held nodes' constant input."""
        lay = self.layout
        b, f = z0.shape[0], z0.shape[2:]
        z_u = z0.new_zeros(b, lay.nu, *f).index_copy(
            1, self.in_upd_to, z0.index_select(1, self.in_upd_from)
        )  # [B, n_u, *F]
        z_h = z0.index_select(1, self.in_held_from)  # [B, n_h, *F]
        c: Tensor | float = held_block(z_h) if lay.nh else 0.0  # [B, n_u, *F]
        return z_u, z_h, c

    def _integrate(self, z_u, z_h, block, c, module: WiredGraph) -> Tensor:
        node_op, updated, nu = module.node_op, self.updated, self.layout.nu
        # held inputs stay in the state (derivative zero) so that an adaptive solver's
        # error control and first step see the same state as the reference executor's
        dynamics = held_dynamics(lambda z: node_op(block(z) + c, updated), nu, self)
        params = block.tensors() + ((c,) if isinstance(c, Tensor) else ())
        params += tuple(node_op.parameters())
        z = torch.cat([z_u, z_h], dim=1) if z_h.shape[1] else z_u  # [B, n_u + n_h, *F]
        return integrate(dynamics, z, module.solver, adjoint_params=params)[:, :nu]

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"mode={self.mode!r}, dense entries={self.layout.size}"


class _DenseBlock:
    """``z -> A z`` for a dense block ``A`` (``[rows, cols]``).

    Training mixes channels-last features (:func:`mix`); inference keeps the default
    layout and uses one batched product (:func:`frozen_mix`).
    """

    def __init__(self, a: Tensor, frozen: bool = False) -> None:
        self.a, self.fn = a, frozen_mix if frozen else mix

    def __call__(self, z: Tensor) -> Tensor:
        return self.fn(z, self.a)

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.a,)
