"""``graphwire.compile``: lower wired graphs to dense (and sparse) tensor operations.

Two targets:

- ``mode="train"``: :mod:`graphwire.execution.compiled` modules that share the source's
  edge weights, mask and node operations, so :class:`~graphwire.DNWOptimizer` trains and
  re-selects them unchanged; gradients are the rule's straight-through gradients.
- ``mode="eval"``: :class:`~graphwire.export.CompiledGraph`, a frozen inference module.
  The selection is fixed, dead nodes are removed (those that stay zero whatever the
  input, and those with no path to an output), the remaining channels are compacted,
  and each block of the remaining graph is run either as a dense matrix product or by a
  tiled sparse kernel, chosen by a cost model. It is a plain ``nn.Module``: its
  structure lives in buffers and plain attributes, it saves and loads with
  ``state_dict``, runs under ``torch.inference_mode`` and exports with
  :func:`torch.export.export`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from graphwire._utils import choose, describe
from graphwire.errors import GraphError, ReachabilityError
from graphwire.execution.compiled import CompiledWired, compile_train
from graphwire.execution.wired import WiredGraph
from graphwire.export import _kernel

__all__ = ["compile", "CompiledGraph", "DenseMix", "SparseMix", "KERNELS", "SPARSE_MAX_DENSITY"]

#: Block kernels of eval mode: a cost-model choice, or one forced for every block.
KERNELS = ("auto", "dense", "sparse")

#: The cost model's switch point: on CPU with the compiled kernel available, a block
#: whose fraction of nonzero entries is at most this runs sparse. Measured by
#: ``python -m benchmarks speed``: the tiled kernel beats a dense product up to about
#: 30% density on a 2-core AVX2 CPU; on GPUs dense products win at these sizes.
SPARSE_MAX_DENSITY = 0.25


# ---------------------------------------------------------------------------- blocks
class DenseMix(nn.Module):
    """``out[:, v] = sum over u of weight[v, u] * z[:, u]`` as one dense matrix product.

    Args:
        weight: Dense ``[m, n]`` block.
    """

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.clone())

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``[B, n, *F]`` -> ``[B, m, *F]``."""
        if z.dim() == 2:
            return z @ self.weight.t()
        out = torch.matmul(self.weight, z.flatten(2))  # [B, m, P]
        return out.view(z.shape[0], -1, *z.shape[2:])

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}"


class SparseMix(nn.Module):
    """The same product with a CSR block, by the tiled kernel ``graphwire::csr_mix``.

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

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``[B, n, *F]`` -> ``[B, m, *F]``."""
        if z.dim() == 2:  # vectors: the batch is the contiguous axis the kernel tiles
            x = z.t().unsqueeze(0)  # [1, n, B]
            return _kernel.csr_mix(x, self.rowptr, self.col, self.val, self.rows)[0].t()
        out = _kernel.csr_mix(z.flatten(2), self.rowptr, self.col, self.val, self.rows)
        return out.view(z.shape[0], self.rows, *z.shape[2:])  # [B, m, *F]

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"{self.cols} -> {self.rows}, nnz={self.val.numel()}"


def _make_block(weight: Tensor, kernel: str, device: torch.device) -> nn.Module:
    """A block module for ``weight`` (``[m, n]``) to run on ``device``, dense or sparse."""
    if kernel == "auto":
        density = int((weight != 0).sum()) / max(weight.numel(), 1)
        sparse = (
            device.type == "cpu"
            and density <= SPARSE_MAX_DENSITY
            and weight.dtype in (torch.float32, torch.float64)
            and _kernel.available()
        )
        kernel = "sparse" if sparse else "dense"
    return SparseMix(weight) if kernel == "sparse" else DenseMix(weight)


def _dense_block(w: Tensor, rows: Tensor, cols: Tensor, shape: tuple[int, int]) -> Tensor:
    block = w.new_zeros(shape)
    block[rows, cols] = w
    return block


# ---------------------------------------------------------------------------- analysis
def _zero_preserving(node_op: nn.Module, num_nodes: int, like: Tensor) -> Tensor:
    """Boolean ``[N]``: nodes whose operation maps an all-zero input to all zeros.

    Probed on vector, short 1-D and small image inputs (whichever the operation accepts), which
    decides it for pointwise and zero-padded convolutional operations.
    """
    verdict = None
    for shape in ((1, num_nodes), (1, num_nodes, 3), (1, num_nodes, 3, 3)):
        try:
            with torch.no_grad():
                out = node_op(like.new_zeros(shape), None)
        except (GraphError, RuntimeError, ValueError, TypeError):
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


def _contiguous_range(positions: Tensor) -> tuple[int, int] | None:
    lo, n = int(positions[0]), positions.numel()
    return (lo, lo + n) if positions.tolist() == list(range(lo, lo + n)) else None


def _window(pieces: list[Tensor], offsets: list[int], lo: int, hi: int) -> Tensor:
    parts = []
    for piece, start in zip(pieces, offsets):
        end = start + piece.shape[1]
        if end > lo and start < hi:
            parts.append(piece[:, max(lo - start, 0) : min(hi, end) - start])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class _ScaledRMS:
    """RMS norm over a state whose dropped entries were identically zero.

    Keeps an adaptive ODE solver's error control exactly as over the full state: the
    dropped entries contribute zero to the sum but count in the mean.
    """

    def __init__(self, full_over_kept: float) -> None:
        self.full_over_kept = full_over_kept

    def __call__(self, x: Tensor) -> Tensor:
        return (x.abs().pow(2).sum() / (x.numel() * self.full_over_kept)).sqrt()


# ---------------------------------------------------------------------------- module
class CompiledGraph(nn.Module):
    """A frozen wired graph for inference: dead nodes removed, channels compacted.

    Built by ``graphwire.compile(wired, mode="eval")``. Input channels that no longer
    matter are skipped, node operations are applied to live nodes only, and each block
    is a :class:`~graphwire.export.DenseMix` or :class:`~graphwire.export.SparseMix`.

    Args:
        wired: The trained module; its current selection is frozen.
        kernel: ``"auto"`` (cost model), ``"dense"`` or ``"sparse"`` for every block.

    Raises:
        GraphError: if the selection is empty, or no output is reachable from an input
            under it (:class:`~graphwire.ReachabilityError`). Outputs cut off from the
            inputs while others are not are kept: their values are constants, computed.
    """

    def __init__(self, wired: WiredGraph, kernel: str = "auto") -> None:
        super().__init__()
        choose("kernel", kernel, dict.fromkeys(KERNELS), GraphError)
        graph, mode = wired.graph, wired.mode
        mask = wired.edge_mask.detach().cpu().bool()
        _check_compilable(wired, mask)
        self.mode, self.num_inputs = mode, graph.inputs.numel()
        device = wired.weight.device
        weight = wired.effective_weight().detach().cpu()  # blocks are built on the CPU
        adaptive = mode == "continuous" and _is_adaptive(wired.executor.solver)
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
        if mode == "dag":
            self._build_dag(wired, live, sel, weight, (kernel, device))
        else:
            self._build_recurrent(wired, live, sel, weight, (kernel, device))
            if mode == "discrete":
                self.steps = wired.executor.steps
            else:
                solver = wired.executor.solver
                self.t1, self.adjoint = solver.t1, solver.adjoint
                self.solver_kwargs = solver.as_kwargs()
                if adaptive and "norm" not in solver.options:
                    full_over_kept = graph.num_nodes / (self.nu + self.nh)
                    self.solver_kwargs["options"] = {
                        **solver.options,
                        "norm": _ScaledRMS(full_over_kept),
                    }
        self.requires_grad_(False)
        self.to(device)

    # ------------------------------------------------------------------ build
    def _build_dag(self, wired, live, sel, weight, block_args) -> None:
        graph, ex = wired.graph, wired.executor
        steps = [getattr(ex, f"nodes_{i}").cpu() for i in range(ex.num_steps)]
        steps = [s[live[s]] for s in steps if bool(live[s].any())]
        order = torch.cat([self.in_nodes.cpu(), *steps])
        pos = torch.full((graph.num_nodes,), -1, dtype=torch.long)
        pos[order] = torch.arange(order.numel())
        src, dst = (pos[i] for i in graph.edge_index)
        self.windows: list[tuple[int, int]] = []
        self.blocks = nn.ModuleList()
        start = self.in_nodes.numel()
        for i, nodes in enumerate(steps):
            rows = nodes.numel()
            into = sel & (dst >= start) & (dst < start + rows) & (src < start)
            lo = int(src[into].min()) if bool(into.any()) else start
            shape = (rows, start - lo)
            block = _dense_block(weight[into], dst[into] - start, src[into] - lo, shape)
            self.blocks.append(_make_block(block, *block_args))
            self.windows.append((lo, start))
            self.register_buffer(f"nodes_{i}", nodes)
            start += rows
        self._set_outputs(pos[graph.outputs])

    def _build_recurrent(self, wired, live, sel, weight, block_args) -> None:
        graph = wired.graph
        updated = wired.executor.updated.cpu()
        updated = updated[live[updated]]
        held = graph.inputs[(graph.in_degree[graph.inputs] == 0) & live[graph.inputs]]
        held = held.sort().values
        nu, nh = updated.numel(), held.numel()
        pos = torch.full((graph.num_nodes,), -1, dtype=torch.long)
        pos[torch.cat([updated, held])] = torch.arange(nu + nh)
        src, dst = (pos[i] for i in graph.edge_index)
        from_u, from_h = sel & (src < nu), sel & (src >= nu)
        a_u = _dense_block(weight[from_u], dst[from_u], src[from_u], (nu, nu))
        a_h = _dense_block(weight[from_h], dst[from_h], src[from_h] - nu, (nu, nh))
        self.block_u, self.block_h = _make_block(a_u, *block_args), _make_block(a_h, *block_args)
        self.nu, self.nh = nu, nh
        self.register_buffer("updated", updated)
        in_pos = pos[self.in_nodes.cpu()]
        self.register_buffer("in_upd_from", (in_pos < nu).nonzero().flatten())
        self.register_buffer("in_upd_to", in_pos[in_pos < nu])
        self.register_buffer("in_held_from", (in_pos >= nu).nonzero().flatten())
        self._set_outputs(pos[graph.outputs])

    def _set_outputs(self, out_pos: Tensor) -> None:
        self.register_buffer("out_pos", out_pos)
        self.out_range = _contiguous_range(out_pos)

    # ------------------------------------------------------------------ run
    def forward(self, x: Tensor) -> Tensor:
        """Run the frozen network.

        Args:
            x: The input nodes' features, ``[B, n_inputs]`` or ``[B, n_inputs, H, W]``.

        Returns:
            The output nodes' features, ``[B, n_outputs, ...]``, outputs in index order.
        """
        if x.dim() < 2 or x.shape[1] != self.num_inputs:
            raise GraphError(
                f"x must have shape [B, n_inputs={self.num_inputs}] or "
                f"[B, {self.num_inputs}, H, W]; got {describe(x)}."
            )
        if not self.all_inputs:
            x = x.index_select(1, self.in_idx)  # inputs that still matter
        z0 = self.input_op(x, self.in_nodes).contiguous()  # [B, n_in', *F]
        if self.mode == "dag":
            return self._run_dag(z0)
        z_u, z_h, c = self._initial(z0)
        if self.mode == "discrete":
            for _ in range(self.steps):
                z_u = self._step(z_u, c)
            return self._read_out([z_u, z_h], [0, self.nu])
        return self._run_continuous(z_u, z_h, c)

    def _run_dag(self, z0: Tensor) -> Tensor:
        pieces, offsets = [z0], [0]
        for i, (block, (lo, start)) in enumerate(zip(self.blocks, self.windows)):
            if lo < start:
                inp = block(_window(pieces, offsets, lo, start))  # [B, rows, *F]
            else:
                inp = z0.new_zeros(z0.shape[0], _block_rows(block), *z0.shape[2:])
            pieces.append(self.node_op(inp, getattr(self, f"nodes_{i}")).contiguous())
            offsets.append(start)
        return self._read_out(pieces, offsets)

    def _initial(self, z0: Tensor) -> tuple[Tensor, Tensor, Tensor | float]:
        z_u = z0.new_zeros(z0.shape[0], self.nu, *z0.shape[2:])
        z_u = z_u.index_copy(1, self.in_upd_to, z0.index_select(1, self.in_upd_from))
        z_h = z0.index_select(1, self.in_held_from)  # [B, n_h, *F]
        c = self.block_h(z_h) if self.nh else 0.0  # held inputs' constant contribution
        return z_u, z_h, c

    def _step(self, z_u: Tensor, c: Tensor | float) -> Tensor:
        return self.node_op(self.block_u(z_u) + c, self.updated).contiguous()

    def _run_continuous(self, z_u: Tensor, z_h: Tensor, c: Tensor | float) -> Tensor:
        from torchdiffeq import odeint

        nu = self.nu

        def dynamics(t: Tensor, z: Tensor) -> Tensor:
            dz = self._step(z[:, :nu], c)
            return torch.cat([dz, torch.zeros_like(z[:, nu:])], dim=1) if self.nh else dz

        z = torch.cat([z_u, z_h], dim=1) if self.nh else z_u
        t = torch.tensor([0.0, self.t1], dtype=z.dtype, device=z.device)
        z1 = odeint(dynamics, z, t, **self.solver_kwargs)[-1]
        return self._read_out([z1[:, :nu], z1[:, nu:]], [0, nu])

    def _read_out(self, pieces: list[Tensor], offsets: list[int]) -> Tensor:
        if self.out_range is not None:
            return _window(pieces, offsets, *self.out_range)
        return torch.cat(pieces, dim=1).index_select(1, self.out_pos)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"mode={self.mode!r}, nodes kept={self.kept_nodes} (dropped {self.dropped_nodes}), "
            f"edges kept={self.kept_edges}"
        )


def _block_rows(block: nn.Module) -> int:
    """Output rows of a dense or sparse block."""
    return block.rows if isinstance(block, SparseMix) else block.weight.shape[0]


def _is_adaptive(solver: Any) -> bool:
    from torchdiffeq._impl.odeint import SOLVERS
    from torchdiffeq._impl.solvers import AdaptiveStepsizeODESolver

    return issubclass(SOLVERS[solver.method], AdaptiveStepsizeODESolver)


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


# ---------------------------------------------------------------------------- compile
_MODES = ("train", "eval")


def _swap(module: nn.Module, lower, memo: dict[int, nn.Module]) -> nn.Module:
    """``module`` with every ``WiredGraph`` inside replaced by ``lower(wired)``.

    Modules on the way to a ``WiredGraph`` are shallow copies holding the same
    parameters and buffers; the others are reused as they are.
    """
    if id(module) in memo:
        return memo[id(module)]
    if isinstance(module, WiredGraph):
        out = lower(module)
    elif not any(isinstance(m, WiredGraph) for m in module.modules()):
        out = module  # nothing to lower inside: keep it as it is
    else:
        out = copy.copy(module)
        out._parameters = dict(module._parameters)
        out._buffers = dict(module._buffers)
        out._modules = {
            name: None if child is None else _swap(child, lower, memo)
            for name, child in module._modules.items()
        }
    memo[id(module)] = out
    return out


def compile(module: nn.Module, *, mode: str = "train", kernel: str = "auto") -> nn.Module:
    """Lower a :class:`~graphwire.WiredGraph`, or any model holding them, to fast tensor ops.

    Args:
        module: A ``WiredGraph`` or an ``nn.Module`` containing some.
        mode: ``"train"``: modules that share the source's parameters (train them with
            :class:`~graphwire.DNWOptimizer` as before; the gradients are the rule's).
            ``"eval"``: a frozen inference copy with dead nodes removed and compacted
            channels (:class:`~graphwire.export.CompiledGraph`); the source is left untouched.
        kernel: Eval mode only: ``"auto"`` picks a dense product or the sparse kernel per
            block by a cost model; ``"dense"`` or ``"sparse"`` forces one.

    Returns:
        The compiled module: a compiled ``WiredGraph`` replacement, or a copy of the model
        with every ``WiredGraph`` replaced (sharing the other parameters in train mode; a
        deep copy in eval mode, switched to ``eval()``).

    Raises:
        GraphError: for an unknown ``mode`` or ``kernel``, a module holding no
            ``WiredGraph`` (or one already compiled), an empty selection, or (eval mode)
            no output reachable under the selection (:class:`~graphwire.ReachabilityError`).

    Example:
        >>> import torch
        >>> import graphwire
        >>> from graphwire.graph import layered_dag
        >>> net = graphwire.WiredGraph(layered_dag([8, 32, 32, 4]), density=0.3, seed=0)
        >>> fast = graphwire.compile(net)  # trains net's own weights
        >>> opt = graphwire.DNWOptimizer(fast, torch.optim.SGD(fast.parameters(), lr=0.1))
        >>> fast(torch.randn(16, 8)).pow(2).mean().backward(); opt.step()
        >>> infer = graphwire.compile(net, mode="eval")
        >>> x = torch.randn(4, 8)
        >>> with torch.inference_mode():
        ...     torch.allclose(infer(x), net(x), atol=1e-5)
        True
    """
    choose("mode", mode, dict.fromkeys(_MODES), GraphError)
    choose("kernel", kernel, dict.fromkeys(KERNELS), GraphError)
    if not isinstance(module, nn.Module):
        raise GraphError(
            f"module must be a graphwire.WiredGraph or an nn.Module containing some; got "
            f"{describe(module)}."
        )
    if isinstance(module, (CompiledWired, CompiledGraph)):
        raise GraphError(
            f"module is already compiled ({type(module).__name__}); compile the source "
            "WiredGraph instead."
        )
    if not any(isinstance(m, WiredGraph) for m in module.modules()):
        raise GraphError(
            f"module {type(module).__name__} holds no graphwire.WiredGraph, so there is nothing "
            "to compile; use torch.compile for ordinary modules."
        )
    if mode == "train":
        return _swap(module, compile_train, {})
    with torch.no_grad():
        lowered = _swap(module, lambda w: CompiledGraph(w, kernel=kernel), {})
    if not isinstance(module, WiredGraph):
        lowered = copy.deepcopy(lowered).requires_grad_(False)
    return lowered.eval()
