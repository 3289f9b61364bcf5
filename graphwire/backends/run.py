"""The one execution of a lowered graph, shared by the dense backend and the frozen graph.

A lowered graph is a layout (:mod:`graphwire.backends.layout`) and one *block* per
stage or per recurrent part: any callable ``z -> A z`` from ``[B, cols, *F]`` to ``[B,
rows, *F]``. The dense backend passes dense blocks rebuilt from the edge weights at every
call; the frozen graph of :func:`graphwire.freeze` passes its fixed dense or sparse block
modules. The stage walk, the recurrent state, the time loop and the integration are
written here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from graphwire.backends.dynamics import ODESolver, held_dynamics, integrate
from graphwire.backends.layout import DagStage

__all__ = [
    "Block",
    "contiguous_range",
    "initial_state",
    "read_out",
    "run_dag",
    "run_recurrent",
    "window",
]

#: A block: ``z`` ``[B, cols, *F]`` -> ``A z`` ``[B, rows, *F]``.
Block = Callable[[Tensor], Tensor]
#: A node operation: ``(x [B, n, *F], nodes [n]) -> [B, n, *F']``.
NodeOp = Callable[[Tensor, Tensor], Tensor]


def window(pieces: Sequence[Tensor], offsets: Sequence[int], lo: int, hi: int) -> Tensor:
    """Positions ``[lo, hi)`` of the concatenation of ``pieces`` (``offsets`` are their starts)."""
    parts = []
    for piece, start in zip(pieces, offsets):
        end = start + piece.shape[1]
        if end > lo and start < hi:
            parts.append(piece[:, max(lo - start, 0) : min(hi, end) - start])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def read_out(
    pieces: Sequence[Tensor],
    offsets: Sequence[int],
    out_pos: Tensor,
    out_range: tuple[int, int] | None,
) -> Tensor:
    """The features at layout positions ``out_pos`` (a slice where they are contiguous)."""
    if out_range is not None:
        return window(pieces, offsets, *out_range)
    return torch.cat(list(pieces), dim=1).index_select(1, out_pos)


def contiguous_range(positions: Tensor) -> tuple[int, int] | None:
    """``(lo, hi)`` when ``positions`` is ``lo, lo + 1, ..., hi - 1``, else ``None``.

    Example:
        >>> import torch
        >>> from graphwire.backends.run import contiguous_range
        >>> contiguous_range(torch.tensor([3, 4, 5])), contiguous_range(torch.tensor([3, 5]))
        ((3, 6), None)
    """
    if positions.numel() == 0:
        return None
    lo, n = int(positions[0]), positions.numel()
    return (lo, lo + n) if positions.tolist() == list(range(lo, lo + n)) else None


def run_dag(
    z0: Tensor,
    stages: Sequence[DagStage],
    blocks: Sequence[Block],
    node_op: NodeOp,
    order: Tensor,
    out_pos: Tensor,
    out_range: tuple[int, int] | None,
) -> Tensor:
    """A DAG stage by stage: each stage mixes its window of earlier nodes, then ``f_v``.

    Args:
        z0: The input nodes' features ``[B, n_in, *F]`` (layout positions ``[0, n_in)``).
        stages: The layout's stages.
        blocks: One block per stage.
        node_op: The node operation.
        order: int64 node id at each layout position.
        out_pos: Layout positions of the outputs.
        out_range: ``out_pos`` as a range, where it is one.

    Returns:
        The outputs' features ``[B, n_out, *F']``.
    """
    pieces, offsets = [z0], [0]  # node features in layout order, one piece per stage
    for stage, block in zip(stages, blocks):
        if stage.cols:
            inp = block(window(pieces, offsets, stage.lo, stage.start))  # [B, rows, *F]
        else:
            inp = z0.new_zeros(z0.shape[0], stage.rows, *z0.shape[2:])
        pieces.append(node_op(inp, order[stage.start : stage.start + stage.rows]))
        offsets.append(stage.start)
    return read_out(pieces, offsets, out_pos, out_range)


def initial_state(
    z0: Tensor, nu: int, upd_from: Tensor, upd_to: Tensor, held_from: Tensor
) -> tuple[Tensor, Tensor]:
    """``(z_u, z_h)``: the recurrent modes' initial updated state and held inputs.

    ``z_u`` holds the input nodes' features ``z0`` (``[B, n_in, *F]``) where inputs are
    updated and zeros elsewhere; ``z_h`` the held inputs. The maps are
    :meth:`~graphwire.backends.layout.RecurrentLayout.input_maps`.
    """
    z_u = z0.new_zeros(z0.shape[0], nu, *z0.shape[2:])
    z_u = z_u.index_copy(1, upd_to, z0.index_select(1, upd_from))  # [B, n_u, *F]
    return z_u, z0.index_select(1, held_from)  # [B, n_h, *F]


def run_recurrent(
    z_u: Tensor,
    z_h: Tensor,
    block: Block,
    held: Tensor | float,
    node_op: NodeOp,
    updated: Tensor,
    *,
    steps: int | None = None,
    solver: ODESolver | None = None,
    options: dict[str, Any] | None = None,
    adjoint_params: Sequence[Tensor] = (),
    counter: Any = None,
) -> Tensor:
    """The updated nodes after ``steps`` of ``Z <- f(A Z + c)``, or at ``t1`` of ``dZ/dt``.

    Args:
        z_u: Initial updated state ``[B, n_u, *F]``.
        z_h: Held inputs ``[B, n_h, *F]`` (kept in an ODE's state, derivative zero, so an
            adaptive solver's error control sees the full state).
        block: ``A_u``, the updated nodes' block.
        held: ``c = A_h z_h``, the held inputs' constant contribution (or ``0.0``).
        node_op: The node operation.
        updated: int64 node ids of the updated nodes.
        steps: Discrete time: the number of steps. Give ``steps`` or ``solver``.
        solver: Continuous time: the solver.
        options: Replaces ``solver.options`` (a norm of the caller's).
        adjoint_params: Tensors the dynamics depend on, for the adjoint method.
        counter: An object whose ``nfe`` counts function evaluations.

    Returns:
        ``[B, n_u, *F]``.
    """

    def step(z: Tensor) -> Tensor:
        return node_op(block(z) + held, updated)  # [B, n_u, *F]

    if solver is None:
        for _ in range(steps or 0):
            z_u = step(z_u)
        return z_u
    nu = z_u.shape[1]
    z = torch.cat([z_u, z_h], dim=1) if z_h.shape[1] else z_u  # [B, n_u + n_h, *F]
    dynamics = held_dynamics(step, nu, counter)
    return integrate(dynamics, z, solver, adjoint_params=adjoint_params, options=options)[:, :nu]
