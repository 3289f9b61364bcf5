"""The frozen graph: a trained wired graph for inference, dead nodes removed.

The selection is fixed, dead nodes are removed (those that stay zero whatever the
input, and those with no path to an output), the remaining channels are compacted, and
each block of the remaining graph runs either as a dense matrix product or by the sparse
kernels, chosen by the cost model. It runs the same stage walk and time loop as the
dense backend (:mod:`graphwire.backends.run`). It is a plain ``nn.Module``: its structure
lives in buffers and plain attributes, it saves and loads with ``state_dict``, runs
under ``torch.inference_mode`` and exports with :func:`torch.export.export`.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from graphwire._native.ops import sparse_pays
from graphwire.backends.dynamics import ScaledRMS
from graphwire.backends.layout import dag_layout, recurrent_layout
from graphwire.backends.run import contiguous_range, initial_state, read_out, run_dag, run_recurrent
from graphwire.backends.spec import WiredSpec, check_features
from graphwire.errors import GraphError, ReachabilityError
from graphwire.export._blocks import Mix

__all__ = ["FrozenGraph"]


def _block(weight: Tensor, kernel: str, device: torch.device) -> Mix:
    """The block module of ``weight`` (``[m, n]``) for ``device``, dense or sparse."""
    if kernel == "auto":
        nnz = int((weight != 0).sum())
        return Mix(weight, sparse=sparse_pays("block", nnz, weight.numel(), device, weight.dtype))
    return Mix(weight, sparse=kernel == "sparse")


def _scatter(w: Tensor, rows: Tensor, cols: Tensor, shape: tuple[int, int]) -> Tensor:
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


def _live_nodes(spec: WiredSpec, mask: Tensor, *, prune_unobserved: bool) -> Tensor:
    """Boolean ``[N]``: nodes the frozen graph must compute.

    A non-input node is *zero* when its operation preserves zeros and every selected
    edge into it comes from a zero node (the largest such set, by fixpoint): its value is
    0 whatever the input. Zero nodes are dropped, and so are nodes with no path to an
    output when ``prune_unobserved``.
    """
    graph = spec.graph
    n = graph.num_nodes
    src, dst = graph.edge_index[:, mask]
    is_input = torch.zeros(n, dtype=torch.bool)
    is_input[graph.inputs] = True
    zero = _zero_preserving(spec.node_op, n, spec.weight) & ~is_input
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


def _check_freezable(spec: WiredSpec, mask: Tensor) -> None:
    graph = spec.graph
    if not bool(mask.any()):
        raise GraphError(
            f"cannot freeze: the selection is empty (0 of {graph.num_edges} edges selected), "
            "so no output depends on the input. Train with a positive budget (k or density) "
            "or pass a non-empty FixedMask."
        )
    reached = graph.reachable_from_inputs(mask)
    if not bool(reached[graph.outputs].any()):
        raise ReachabilityError(
            f"cannot freeze for inference: none of the {graph.outputs.numel()} output nodes "
            f"(e.g. {graph.outputs[:5].tolist()}) is reachable from the inputs under the "
            "current selection, so the network ignores its data. Train longer or raise k."
        )


# ---------------------------------------------------------------------------- module
class FrozenGraph(nn.Module):
    """A wired graph frozen for inference: dead nodes removed, channels compacted.

    What :func:`graphwire.freeze` makes of a :class:`~graphwire.WiredGraph`. Input
    channels that no longer matter are skipped, node operations run on live nodes only,
    and each block is dense or sparse by the cost model (or as ``kernel`` forces). It
    computes what the wired graph computed when it was frozen, in evaluation mode.

    Args:
        spec: The wired graph's description (``net.spec()``); its selection is frozen.
        kernel: ``"auto"`` (cost model), ``"dense"`` or ``"sparse"`` for every block.

    Attributes:
        kept_nodes: Nodes computed.
        dropped_nodes: Nodes removed (dead).
        kept_edges: Selected edges between kept nodes.
        nfe: Function evaluations of continuous-time calls so far.

    Raises:
        GraphError: if the selection is empty, or no output is reachable from an input
            under it (:class:`~graphwire.ReachabilityError`). Outputs cut off from the
            inputs while others are not are kept: their values are constants, computed.
    """

    def __init__(self, spec: WiredSpec, kernel: str = "auto") -> None:
        super().__init__()
        graph, mode = spec.graph, spec.mode
        mask = spec.mask.detach().cpu().bool()
        _check_freezable(spec, mask)
        self.mode, self.num_inputs = mode, graph.inputs.numel()
        self.nfe = 0
        device = spec.weight.device
        weight = spec.weight.detach().cpu()  # blocks are built on the CPU
        adaptive = mode == "continuous" and spec.solver.adaptive
        live = _live_nodes(spec, mask, prune_unobserved=not adaptive)
        self.input_op = copy.deepcopy(spec.input_op).eval()
        self.node_op = copy.deepcopy(spec.node_op).eval()
        in_keep = live[graph.inputs]
        self.register_buffer("in_idx", in_keep.nonzero().flatten())
        self.register_buffer("in_nodes", graph.inputs[in_keep])
        self.all_inputs = bool(in_keep.all())
        sel = mask & live[graph.edge_index[0]] & live[graph.edge_index[1]]
        self.kept_nodes, self.kept_edges = int(live.sum()), int(sel.sum())
        self.dropped_nodes = graph.num_nodes - self.kept_nodes
        if mode == "dag":
            self._build_dag(spec, live, sel, weight, kernel, device)
        else:
            self._build_recurrent(spec, live, sel, weight, kernel, device)
        self.requires_grad_(False)
        self.to(device)

    # ------------------------------------------------------------------ build
    def _build_dag(self, spec, live, sel, weight, kernel, device) -> None:
        graph = spec.graph
        layout = dag_layout(graph, live=live, edges=sel)
        self.stages = layout.stages
        self.blocks = nn.ModuleList()
        into = layout.slot < layout.size
        for stage in layout.stages:
            lo, hi = stage.base, stage.base + stage.rows * stage.cols
            e = into & (layout.slot >= lo) & (layout.slot < hi)
            local = layout.slot[e] - lo
            cols = max(stage.cols, 1)
            block = _scatter(weight[e], local // cols, local % cols, (stage.rows, stage.cols))
            self.blocks.append(_block(block, kernel, device))
        self.register_buffer("order", layout.order.clone())
        self._set_outputs(layout.position[graph.outputs])

    def _build_recurrent(self, spec, live, sel, weight, kernel, device) -> None:
        graph = spec.graph
        layout = recurrent_layout(graph, live=live)
        nu, nh = layout.nu, layout.nh
        src = layout.position[graph.edge_index[0]]
        dst = layout.position[graph.edge_index[1]]
        from_u, from_h = sel & (src < nu), sel & (src >= nu)
        a_u = _scatter(weight[from_u], dst[from_u], src[from_u], (nu, nu))
        a_h = _scatter(weight[from_h], dst[from_h], src[from_h] - nu, (nu, nh))
        self.block_u, self.block_h = _block(a_u, kernel, device), _block(a_h, kernel, device)
        self.nu, self.nh = nu, nh
        self.register_buffer("updated", layout.updated.clone())
        upd_from, upd_to, held_from = layout.input_maps(self.in_nodes)
        self.register_buffer("in_upd_from", upd_from)
        self.register_buffer("in_upd_to", upd_to)
        self.register_buffer("in_held_from", held_from)
        self._set_outputs(layout.position[graph.outputs])
        self.steps = spec.steps
        self.solver = copy.deepcopy(spec.solver) if spec.mode == "continuous" else None
        self.solver_options = None
        if self.solver is not None and self.solver.adaptive and "norm" not in self.solver.options:
            # dropped nodes are zeros of the full state: the error norm counts them
            full_over_kept = graph.num_nodes / (nu + nh)
            self.solver_options = {**self.solver.options, "norm": ScaledRMS(full_over_kept)}

    def _set_outputs(self, out_pos: Tensor) -> None:
        self.register_buffer("out_pos", out_pos.clone())
        self.out_range = contiguous_range(out_pos)

    # ------------------------------------------------------------------ run
    def _node(self, x: Tensor, nodes: Tensor) -> Tensor:
        """The node operation, its output in the default memory layout (the kernels')."""
        return self.node_op(x, nodes).contiguous()

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
            return run_dag(
                z0, self.stages, self.blocks, self._node, self.order, self.out_pos, self.out_range
            )
        z_u, z_h = initial_state(z0, self.nu, self.in_upd_from, self.in_upd_to, self.in_held_from)
        held = self.block_h(z_h) if self.nh else 0.0  # [B, n_u, *F], constant in time
        z_u = run_recurrent(
            z_u,
            z_h,
            self.block_u,
            held,
            self._node,
            self.updated,
            steps=self.steps,
            solver=self.solver,
            options=self.solver_options,
            counter=self,
        )
        return read_out([z_u, z_h], [0, self.nu], self.out_pos, self.out_range)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"mode={self.mode!r}, nodes kept={self.kept_nodes} (dropped {self.dropped_nodes}), "
            f"edges kept={self.kept_edges}"
        )
