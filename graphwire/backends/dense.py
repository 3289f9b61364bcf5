"""The dense backend: a wired graph's forward pass as a few dense matrix products.

The reference backend gathers one message per edge; this backend instead scatters the
``[E]`` effective edge weights into dense blocks once per forward pass (the layouts of
:mod:`graphwire.backends.layout`) and mixes node features with matrix products:

- ``"dag"``: one block per topological stage, rows for the stage's nodes and columns for
  the window of earlier nodes its candidate edges come from. For a layered graph the
  blocks are exactly the candidate rectangles, never the whole ``N x N`` square.
- ``"discrete"``: one ``[updated x updated]`` block applied ``T`` times, plus the constant
  contribution of held inputs computed once.
- ``"continuous"``: the same blocks built once per forward pass (not once per function
  evaluation) and closed over by the dynamics.

The backend owns only index buffers; what it computes with comes from the
:class:`~graphwire.backends.spec.WiredSpec` of each call. The blocks are built with a
differentiable scatter whose backward pass gathers ``<Z_u, dL/dI_v>`` for every candidate
edge, selected or not, so the rule's straight-through gradient is exact. The stage walk
and the time loop are :mod:`graphwire.backends.run`'s, shared with the frozen graph.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from graphwire.backends.layout import DagLayout, RecurrentLayout, dag_layout, recurrent_layout
from graphwire.backends.run import contiguous_range, initial_state, read_out, run_dag, run_recurrent
from graphwire.backends.spec import WiredSpec
from graphwire.graph.channel_graph import ChannelGraph

__all__ = ["DenseBackend", "dense_fill", "mix", "AUTO_MAX_FILL"]

#: ``backend="auto"`` runs the dense blocks while they hold at most this many entries
#: per candidate edge, and message passing beyond (a candidate set so sparse that the
#: dense products would mostly multiply zeros). Measured by the crossover table of
#: ``python -m benchmarks speed`` (2-core CPU, discrete time, training step): dense won
#: at 32.5 entries per candidate (2.1-2.3x), message passing from 128.6 on (1.1-1.4x).
AUTO_MAX_FILL = 64.0


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
        >>> from graphwire.backends.dense import mix
        >>> mix(torch.ones(2, 3, 4, 4), torch.ones(5, 3)).shape
        torch.Size([2, 5, 4, 4])
    """
    if z.dim() == 2:
        return z @ a.t()
    return (z.movedim(1, -1) @ a.t()).movedim(-1, 1)


def _channels_last(z: Tensor) -> Tensor:
    """Image features in channels-last memory, which makes :func:`mix` a plain matmul."""
    return z.contiguous(memory_format=torch.channels_last) if z.dim() == 4 else z


def dense_fill(graph: ChannelGraph, mode: str) -> float:
    """Dense block entries per candidate edge of ``graph`` lowered in ``mode``.

    1.0 for a layered graph whose steps are complete bipartite; large for candidate sets
    much sparser than their blocks. ``backend="auto"`` compares it with
    :data:`AUTO_MAX_FILL`.

    Example:
        >>> from graphwire.graph import layered_dag
        >>> from graphwire.backends.dense import dense_fill
        >>> dense_fill(layered_dag([4, 8, 2]), "dag")
        1.0
    """
    size = dag_layout(graph).size if mode == "dag" else recurrent_layout(graph).size
    return size / max(graph.num_edges, 1)


class DenseBackend(nn.Module):
    """The dense backend of :class:`~graphwire.WiredGraph` for one graph and mode.

    ``forward(z0, spec)`` takes the input nodes' features ``z0`` (``[B, n_in, *F]``,
    after the input operation) and the :class:`~graphwire.backends.spec.WiredSpec` of
    the call, and returns the outputs ``[B, n_out, *F]``.

    Args:
        graph: The channel graph.
        mode: ``"dag"``, ``"discrete"`` or ``"continuous"``.

    Attributes:
        layout: The :class:`~graphwire.backends.layout.DagLayout` or
            :class:`~graphwire.backends.layout.RecurrentLayout` the blocks follow.
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
            self.block_shapes = [(s.rows, s.cols) for s in self.layout.stages]
        else:
            self.layout = lay = recurrent_layout(graph)
            self.register_buffer("updated", lay.updated.clone(), persistent=False)
            upd_from, upd_to, held_from = lay.input_maps(graph.inputs)
            self.register_buffer("in_upd_from", upd_from, persistent=False)
            self.register_buffer("in_upd_to", upd_to, persistent=False)
            self.register_buffer("in_held_from", held_from, persistent=False)
            pos = lay.position
            self.block_shapes = [(lay.nu, lay.nu), (lay.nu, lay.nh)]
        # the layout's own slot tensor (no copy on the CPU)
        self.register_buffer("slot", self.layout.slot, persistent=False)
        self.register_buffer("out_pos", pos[graph.outputs].clone(), persistent=False)
        self.out_range = contiguous_range(pos[graph.outputs])

    def blocks(self, weight: Tensor) -> list[Tensor]:
        """The dense blocks holding the ``[E]`` edge weights ``weight`` (differentiable)."""
        flat = weight.new_zeros(self.layout.size + 1).scatter_add(0, self.slot, weight)
        # one split, not a slice per block: its backward is one concatenation
        parts = flat.split([rows * cols for rows, cols in self.block_shapes] + [1])
        return [part.view(shape) for part, shape in zip(parts, self.block_shapes)]

    def forward(self, z0: Tensor, spec: WiredSpec) -> Tensor:  # noqa: D102
        blocks = self.blocks(spec.weight)  # once per call
        z0 = _channels_last(z0)  # [B, n_in, *F]
        if self.mode == "dag":
            mixes = [partial(mix, a=a) for a in blocks]
            stages = self.layout.stages
            return run_dag(
                z0, stages, mixes, spec.node_op, self.order, self.out_pos, self.out_range
            )
        a_u, a_h = blocks
        z_u, z_h = initial_state(
            z0, self.layout.nu, self.in_upd_from, self.in_upd_to, self.in_held_from
        )
        held = mix(z_h, a_h) if self.layout.nh else 0.0  # [B, n_u, *F], constant in time
        z_u = run_recurrent(
            _channels_last(z_u),
            z_h,
            partial(mix, a=a_u),
            held,
            spec.node_op,
            self.updated,
            steps=spec.steps,
            solver=spec.solver if self.mode == "continuous" else None,
            adjoint_params=(a_u, *((held,) if isinstance(held, Tensor) else ()))
            + tuple(spec.node_op.parameters()),
            counter=self,
        )
        return read_out([z_u, z_h], [0, self.layout.nu], self.out_pos, self.out_range)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"mode={self.mode!r}, dense entries={self.layout.size}"
