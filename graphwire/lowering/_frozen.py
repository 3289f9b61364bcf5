"""The frozen inference module: a trained wired graph with dead nodes removed.

The selection is fixed, dead nodes are removed (those that stay zero whatever the
input, and those with no path to an output), the remaining channels are compacted, and
each block of the remaining graph is run either as a dense matrix product or by a tiled
sparse kernel, chosen by a cost model. It is a plain ``nn.Module``: its structure lives
in buffers and plain attributes, it saves and loads with ``state_dict``, runs under
``torch.inference_mode`` and exports with :func:`torch.export.export`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from graphwire.errors import ConfigError, GraphError, ReachabilityError
from graphwire.lowering import _kernel
from graphwire.lowering._checks import check_features
from graphwire.lowering._dense import (
    SPARSE_MAX_DENSITY,
    _window,
    contiguous_range,
    csr_mix,
    frozen_mix,
    read_out,
    register_ell,
    sparse_wins,
)
from graphwire.lowering._dynamics import ScaledRMS, held_dynamics, integrate
from graphwire.lowering._layout import dag_layout, recurrent_layout

if TYPE_CHECKING:  # pragma: no cover
    from graphwire.execution.wired import WiredGraph

__all__ = ["CompiledGraph", "DenseMix", "SparseMix", "SPARSE_MAX_DENSITY"]


# ---------------------------------------------------------------------------- blocks
class DenseMix(nn.Module):
    """``out[:, v] = sum over u of weight[v, u] * z[:, u]`` as one dense matrix product.

    Args:
        weight: Dense ``[m, n]`` block.
    """

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.rows = weight.shape[0]
        self.register_buffer("weight", weight.clone())

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``[B, n, *F]`` -> ``[B, m, *F]``."""
        return frozen_mix(z, self.weight)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}"


class SparseMix(nn.Module):
    """The same product with a CSR block, by the tiled kernel ``graphwire::csr_mix``.

    Where the block's rows are of (nearly) one length, as under a constant fan-in, it
    is also kept in ELL form (:func:`~graphwire.lowering.ell_layout`), and vector
    features of at most :data:`~graphwire.lowering.ELL_MAX_ROWS` rows run by
    ``graphwire::ell_mix`` instead.

    Args:
        weight: Dense ``[m, n]`` block; its nonzeros are kept in CSR form.
    """

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.rows, self.cols = weight.shape
        rows, cols = (weight != 0).nonzero().t()  # row-major order
        counts = torch.bincount(rows, minlength=self.rows)
        self.register_buffer("rowptr", torch.cat([counts.new_zeros(1), counts.cumsum(0)]))
        self.register_buffer("col", cols.contiguous())
        self.register_buffer("val", weight[rows, cols].contiguous())
        register_ell(self, self.rowptr, self.col, self.val)  # rows of one length (constant fan-in)

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``[B, n, *F]`` -> ``[B, m, *F]``."""
        ell = (self.ell_idx, self.ell_val) if self.ell else None
        return csr_mix(z, self.rowptr, self.col, self.val, self.rows, ell)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        ell = ", ell" if self.ell else ""
        return f"{self.cols} -> {self.rows}, nnz={self.val.numel()}{ell}"


def sparse_kernel_available() -> bool:
    """Whether the compiled sparse CPU kernel built on this machine (else a torch fallback).

    Example:
        >>> from graphwire.lowering import sparse_kernel_available
        >>> isinstance(sparse_kernel_available(), bool)
        True
    """
    return _kernel.available()


def _make_block(weight: Tensor, kernel: str, device: torch.device) -> nn.Module:
    """A block module for ``weight`` (``[m, n]``) to run on ``device``, dense or sparse."""
    if kernel == "auto":
        sparse = sparse_wins(int((weight != 0).sum()), weight.numel(), device, weight.dtype)
        kernel = "sparse" if sparse else "dense"
    return SparseMix(weight) if kernel == "sparse" else DenseMix(weight)


def _dense_block(w: Tensor, rows: Tensor, cols: Tensor, shape: tuple[int, int]) -> Tensor:
    block = w.new_zeros(shape)
    block[rows, cols] = w
    return block


# ---------------------------------------------------------------------------- analysis
def _zero_preserving(node_op: nn.Module, num_nodes: int, like: Tensor) -> Tensor:
    """Boolean ``[N]``: nodes whose operation maps an all-zero input to all zeros.

    Probed on vector, 1-D and small image inputs (whichever the operation accepts),
    which decides it for pointwise and zero-padded convolutional operations.
    """
    verdict = None
    for shape in ((1, num_nodes), (1, num_nodes, 3), (1, num_nodes, 3, 3)):
        try:
            with torch.no_grad():
                out = node_op(like.new_zeros(shape), None)
        except (GraphError, RuntimeError, ValueError, TypeError, IndexError):
            continue
        zero = (out.reshape(1, num_nodes, -1) == 0).all(-1)[0].cpu()
        verdict = zero if verdict is None else verdict & zero
    return torch.zeros(num_nodes, dtype=torch.bool) if verdict is None else verdict


def _live_nodes(wired: WiredGraph, mask: Tensor, *, prune_unobserved: bool) -> Tensor:
    """Boolean ``[N]``: nodes the compiled module must compute.

    A non-input node is *zero* when its operation preserves zeros and every selected
    edge into it comes from a zero node (the largest such set, by fixpoint): its value is
    0 whatever the input. Zero nodes are dropped, and so are nodes with no path to an
    output when ``prune_unobserved``.
    """
    graph = wired.graph
    n = graph.num_nodes
    src, dst = graph.edge_index[:, mask]
    is_input = torch.zeros(n, dtype=torch.bool)
    is_input[graph.inputs] = True
    zero = _zero_preserving(wired.node_op, n, wired.weight) & ~is_input
    while True:
        fed = torch.zeros(n, dtype=torch.bool)
        fed[dst[~zero[src]]] = True
        if not bool((zero & fed).any()):
            break
        zero &= ~fed
    is_output = torch.zeros(n, dtype=torch.bool)
    is_output[graph.outputs] = True
    live = ~zero | is_output
    if prune_unobserved:
        live &= graph.reaches_outputs(mask)
    return live


# ---------------------------------------------------------------------------- module
class CompiledGraph(nn.Module):
    """A frozen wired graph for inference: dead nodes removed, channels compacted.

    Built by ``graphwire.compile(wired, mode="eval")``. Input channels that no longer
    matter are skipped, node operations are applied to live nodes only, and each block
    is a :class:`~graphwire.lowering.DenseMix` or :class:`~graphwire.lowering.SparseMix`.

    Args:
        wired: The trained module; its current selection is frozen.
        kernel: ``"auto"`` (cost model), ``"dense"`` or ``"sparse"`` for every block.

    Raises:
        GraphError: if the selection is empty, or no output is reachable from an input
            under it (:class:`~graphwire.ReachabilityError`). Outputs cut off from the
            inputs while others are not are kept: their values are constants, computed.
    """

    #: The block kernels: a cost-model choice, or one forced for every block.
    kernels = ("auto", "dense", "sparse")

    def __init__(self, wired: WiredGraph, kernel: str = "auto") -> None:
        super().__init__()
        if kernel not in self.kernels:
            valid = ", ".join(repr(k) for k in self.kernels)
            raise ConfigError(f"kernel={kernel!r} is not known; expected one of {valid}.")
        graph, mode = wired.graph, wired.mode
        mask = wired.edge_mask.detach().cpu().bool()
        _check_compilable(wired, mask)
        self.mode, self.num_inputs = mode, graph.inputs.numel()
        self.nfe = 0  # continuous time's function evaluations so far
        device = wired.weight.device
        weight = wired.effective_weight().detach().cpu()  # blocks are built on the CPU
        adaptive = mode == "continuous" and wired.solver.adaptive
        live = _live_nodes(wired, mask, prune_unobserved=not adaptive)
        self.input_op = copy.deepcopy(wired.input_op).eval()
        self.node_op = copy.deepcopy(wired.node_op).eval()
        in_keep = live[graph.inputs]
        self.register_buffer("in_idx", in_keep.nonzero().flatten())
        self.register_buffer("in_nodes", graph.inputs[in_keep])
        self.all_inputs = bool(in_keep.all())
        sel = mask & live[graph.edge_index[0]] & live[graph.edge_index[1]]
        self.kept_nodes, self.kept_edges = int(live.sum()), int(sel.sum())
        self.dropped_nodes = graph.num_nodes - self.kept_nodes
        block_args = (kernel, device)
        if mode == "dag":
            self._build_dag(graph, live, sel, weight, block_args)
        else:
            self._build_recurrent(graph, live, sel, weight, block_args)
            if mode == "discrete":
                self.steps = wired.steps
            else:
                self.solver = copy.deepcopy(wired.solver)
                self.solver_options = None
                if adaptive and "norm" not in self.solver.options:
                    full_over_kept = graph.num_nodes / (self.nu + self.nh)
                    self.solver_options = {
                        **self.solver.options,
                        "norm": ScaledRMS(full_over_kept),
                    }
        self.requires_grad_(False)
        self.to(device)

    # ------------------------------------------------------------------ build
    def _build_dag(self, graph, live, sel, weight, block_args) -> None:
        layout = dag_layout(graph, live=live, edges=sel)
        self.stages = layout.stages
        self.blocks = nn.ModuleList()
        into = layout.slot < layout.size
        for step in layout.stages:
            lo, hi = step.base, step.base + step.rows * step.cols
            e = into & (layout.slot >= lo) & (layout.slot < hi)
            local = layout.slot[e] - lo
            block = _dense_block(
                weight[e],
                local // max(step.cols, 1),
                local % max(step.cols, 1),
                (step.rows, step.cols),
            )
            self.blocks.append(_make_block(block, *block_args))
        self.register_buffer("order", layout.order.clone())
        self._set_outputs(layout.position[graph.outputs])

    def _build_recurrent(self, graph, live, sel, weight, block_args) -> None:
        layout = recurrent_layout(graph, live=live)
        nu, nh = layout.nu, layout.nh
        src = layout.position[graph.edge_index[0]]
        dst = layout.position[graph.edge_index[1]]
        from_u, from_h = sel & (src < nu), sel & (src >= nu)
        a_u = _dense_block(weight[from_u], dst[from_u], src[from_u], (nu, nu))
        a_h = _dense_block(weight[from_h], dst[from_h], src[from_h] - nu, (nu, nh))
        self.block_u, self.block_h = _make_block(a_u, *block_args), _make_block(a_h, *block_args)
        self.nu, self.nh = nu, nh
        self.register_buffer("updated", layout.updated.clone())
        upd_from, upd_to, held_from = layout.input_maps(self.in_nodes)
        self.register_buffer("in_upd_from", upd_from)
        self.register_buffer("in_upd_to", upd_to)
        self.register_buffer("in_held_from", held_from)
        self._set_outputs(layout.position[graph.outputs])

    def _set_outputs(self, out_pos: Tensor) -> None:
        self.register_buffer("out_pos", out_pos.clone())
        self.out_range = contiguous_range(out_pos)

    # ------------------------------------------------------------------ run
    def forward(self, x: Tensor) -> Tensor:
        """Run the frozen network.

        Args:
            x: The input nodes' features, ``[B, n_inputs, *F]``.

        Returns:
            The output nodes' features, ``[B, n_outputs, *F]``, outputs in index order.
        """
        like = next(b for b in self.buffers() if b.is_floating_point())
        check_features(x, self.num_inputs, like, floating=like.dtype)
        if not self.all_inputs:
            x = x.index_select(1, self.in_idx)  # inputs that still matter
        z0 = self.input_op(x, self.in_nodes).contiguous()  # [B, n_in', *F]
        if self.mode == "dag":
            return self._run_dag(z0)
        z_u, z_h, c = self._initial(z0)
        if self.mode == "discrete":
            for _ in range(self.steps):
                z_u = self._step(z_u, c)
        else:
            z = torch.cat([z_u, z_h], dim=1) if self.nh else z_u
            dynamics = held_dynamics(lambda zu: self._step(zu, c), self.nu, self)
            z_u = integrate(dynamics, z, self.solver, options=self.solver_options)[:, : self.nu]
        return read_out([z_u, z_h], [0, self.nu], self.out_pos, self.out_range)

    def _run_dag(self, z0: Tensor) -> Tensor:
        pieces, offsets = [z0], [0]
        for block, step in zip(self.blocks, self.stages):
            if step.cols:
                inp = block(_window(pieces, offsets, step.lo, step.start))  # [B, rows, *F]
            else:
                inp = z0.new_zeros(z0.shape[0], step.rows, *z0.shape[2:])
            nodes = self.order[step.start : step.start + step.rows]
            pieces.append(self.node_op(inp, nodes).contiguous())
            offsets.append(step.start)
        return read_out(pieces, offsets, self.out_pos, self.out_range)

    def _initial(self, z0: Tensor) -> tuple[Tensor, Tensor, Tensor | float]:
        z_u = z0.new_zeros(z0.shape[0], self.nu, *z0.shape[2:])
        z_u = z_u.index_copy(1, self.in_upd_to, z0.index_select(1, self.in_upd_from))
        z_h = z0.index_select(1, self.in_held_from)  # [B, n_h, *F]
        c = self.block_h(z_h) if self.nh else 0.0  # held inputs' constant contribution
        return z_u, z_h, c

    def _step(self, z_u: Tensor, c: Tensor | float) -> Tensor:
        return self.node_op(self.block_u(z_u) + c, self.updated).contiguous()

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"mode={self.mode!r}, nodes kept={self.kept_nodes} (dropped {self.dropped_nodes}), "
            f"edges kept={self.kept_edges}"
        )


def _check_compilable(wired: WiredGraph, mask: Tensor) -> None:
    graph = wired.graph
    if not bool(mask.any()):
        raise GraphError(
            f"cannot compile: the selection is empty (0 of {graph.num_edges} edges selected), "
            "so no output depends on the input. Train with a positive budget (k or density) "
            "or pass a non-empty Frozen mask."
        )
    reached = graph.reachable_from_inputs(mask)
    if not bool(reached[graph.outputs].any()):
        raise ReachabilityError(
            f"cannot compile for inference: none of the {graph.outputs.numel()} output nodes "
            f"(e.g. {graph.outputs[:5].tolist()}) is reachable from the inputs under the "
            "current selection, so the network ignores its data. Train longer or raise k."
        )
