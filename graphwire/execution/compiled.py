"""Train-mode compiled executors: a wired graph lowered to a few dense matrix products.

The reference executors gather one message per edge; these modules instead scatter the
``[E]`` effective edge weights into dense blocks once per forward pass and mix node
features with matrix products:

- ``"dag"``: one block per topological step, with rows for the step's nodes and columns
  for the window of earlier nodes its candidate edges come from. For a layered graph the
  blocks are exactly the candidate rectangles, never the whole ``N x N`` square.
- ``"discrete"``: one ``[updated x updated]`` block applied ``T`` times, plus the constant
  contribution of held input nodes computed once.
- ``"continuous"``: the same blocks built once per forward pass (not once per function
  evaluation) and closed over by the dynamics :func:`torchdiffeq.odeint` integrates.

The modules hold the *same* ``weight`` parameter, ``edge_mask`` buffer and node
operations as the :class:`~graphwire.WiredGraph` they were built from, so
:class:`~graphwire.DNWOptimizer` trains and re-selects them unchanged, and the gradient of
every candidate edge is the rule's (straight-through for DNW): the dense blocks are built
with a differentiable scatter, whose backward pass gathers ``<Z_u, dL/dI_v>`` for every
candidate, selected or not. Use :func:`graphwire.compile` to build them.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from graphwire._utils import describe
from graphwire.errors import GraphError
from graphwire.execution.reference import ODESolver
from graphwire.execution.wired import WiredGraph

__all__ = [
    "CompiledWired",
    "CompiledDag",
    "CompiledDiscrete",
    "CompiledContinuous",
    "COMPILED",
    "compile_train",
    "mix",
]


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
        >>> from graphwire.execution.compiled import mix
        >>> mix(torch.ones(2, 3, 4, 4), torch.ones(5, 3)).shape
        torch.Size([2, 5, 4, 4])
    """
    if z.dim() == 2:
        return z @ a.t()
    return (z.movedim(1, -1) @ a.t()).movedim(-1, 1)


def _layout(z: Tensor) -> Tensor:
    """Image features in channels-last memory, which makes :func:`mix` a plain matmul."""
    return z.contiguous(memory_format=torch.channels_last) if z.dim() == 4 else z


def _positions(order: Tensor, num_nodes: int) -> Tensor:
    """``pos[node]`` = index of ``node`` in ``order`` (``-1`` when absent)."""
    pos = torch.full((num_nodes,), -1, dtype=torch.long)
    pos[order] = torch.arange(order.numel())
    return pos


def _window(pieces: list[Tensor], offsets: list[int], lo: int, hi: int) -> Tensor:
    """Positions ``[lo, hi)`` of the concatenation of ``pieces`` (``offsets`` are their starts)."""
    parts = []
    for piece, start in zip(pieces, offsets):
        end = start + piece.shape[1]
        if end <= lo or start >= hi:
            continue
        parts.append(piece[:, max(lo - start, 0) : min(hi, end) - start])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class CompiledWired(nn.Module, abc.ABC):
    """Base of the compiled training modules: shares the source's parameters and buffers.

    The module is a :class:`~graphwire.wiring.Rewirable`: ``weight`` and ``edge_mask`` are
    the source's own tensors, and ``reselect()`` runs the source's rule through the one
    top-k. Its ``state_dict`` has the same keys as the source's, so checkpoints move
    between the two. Move the source to its device and dtype *before* compiling: moving
    the compiled module afterwards keeps the shared parameters shared, but gives it its
    own copy of the mask buffer.

    Args:
        wired: The module to compile.
    """

    def __init__(self, wired: WiredGraph) -> None:
        super().__init__()
        if not isinstance(wired, WiredGraph):
            raise GraphError(f"compile_train needs a graphwire.WiredGraph; got {describe(wired)}.")
        _check_selection(wired)
        self.graph, self.mode, self.scope = wired.graph, wired.mode, wired.scope
        self.rule, self.budget, self._members = wired.rule, wired.budget, wired._members
        self.weight = wired.weight  # the same Parameter object
        self.register_buffer("edge_mask", wired.edge_mask)  # the same tensor
        self.register_buffer("edge_index", wired.edge_index)
        self.node_op, self.input_op = wired.node_op, wired.input_op
        self.register_buffer("inputs", wired.graph.inputs.clone(), persistent=False)
        self._cache: tuple[tuple, Tensor] | None = None

    mask = WiredGraph.mask
    effective_weight = WiredGraph.effective_weight
    reselect = WiredGraph.reselect
    learned_graph = WiredGraph.learned_graph
    unfed_nodes = WiredGraph.unfed_nodes
    _load_from_state_dict = WiredGraph._load_from_state_dict

    # ------------------------------------------------------------------ dense blocks
    def _register_slots(self, slot: Tensor, size: int) -> None:
        """Edge ``e`` lands at ``blocks[slot[e]]``; slot ``size`` collects unused edges."""
        self.register_buffer("slot", slot, persistent=False)
        self.flat_size = size

    def blocks(self) -> Tensor:
        """All dense blocks, flattened into one ``[size + 1]`` tensor (last entry unused).

        Built from the effective weights by one scatter; while gradients are recorded
        it is rebuilt every call (the weights change every step), otherwise it is cached
        until the weights or the selection change.
        """
        tracking = torch.is_grad_enabled() and self.weight.requires_grad
        if not tracking and not torch.is_inference_mode_enabled():
            w, m = self.weight, self.edge_mask
            key = (w._version, m._version, w.data_ptr(), m.data_ptr(), w.dtype, w.device)
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        w = self.effective_weight()  # [E]
        flat = w.new_zeros(self.flat_size + 1).scatter_add(0, self.slot, w)
        if not tracking and not torch.is_inference_mode_enabled():
            self._cache = (key, flat)
        return flat

    def _block(self, flat: Tensor, base: int, rows: int, cols: int) -> Tensor:
        return flat[base : base + rows * cols].view(rows, cols)

    def _apply(self, fn, recurse=True):
        self._cache = None
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------ execution
    def forward(self, x: Tensor) -> Tensor:
        """Run the network.

        Args:
            x: The input nodes' features, ``[B, n_inputs]`` or ``[B, n_inputs, H, W]``.

        Returns:
            The output nodes' features, ``[B, n_outputs, ...]``, outputs in index order.
        """
        n_in = self.inputs.numel()
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[1] != n_in:
            raise GraphError(
                f"x must have shape [B, n_inputs={n_in}] or [B, {n_in}, H, W]; got {describe(x)}."
            )
        z0 = _layout(self.input_op(x, self.inputs))  # [B, n_in, *F]
        return self.run(z0, self.blocks())

    @abc.abstractmethod
    def run(self, z0: Tensor, flat: Tensor) -> Tensor:
        """Map the input nodes' features ``z0`` to the outputs' with the blocks ``flat``."""

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"{self.graph!r}, rule={self.rule!r}, mode={self.mode!r}, "
            f"kept={sum(self.budget)} of {self.graph.num_edges}, dense entries={self.flat_size}"
        )


def _check_selection(wired: WiredGraph) -> None:
    if not bool(wired.edge_mask.any()):
        raise GraphError(
            f"cannot compile {type(wired).__name__}: its selection is empty (0 of "
            f"{wired.graph.num_edges} edges selected), so no output depends on the input. "
            "Give the rule a positive budget (k or density) or a non-empty Frozen mask."
        )


class CompiledDag(CompiledWired):
    """A DAG as one dense block per topological step (see :func:`graphwire.compile`).

    Nodes are laid out inputs first, then step by step (the steps of
    :class:`~graphwire.execution.DagExecutor`). A step's block has a row per node of the
    step and a column per position in the window of earlier nodes its candidate edges
    come from; its input is one matrix product with the concatenated window.
    """

    def __init__(self, wired: WiredGraph) -> None:
        super().__init__(wired)
        graph, executor = wired.graph, wired.executor
        steps = [getattr(executor, f"nodes_{i}").cpu() for i in range(executor.num_steps)]
        order = torch.cat([graph.inputs, *steps])
        pos = _positions(order, graph.num_nodes)
        src, dst = (pos[i] for i in graph.edge_index)
        slot = torch.empty(graph.num_edges, dtype=torch.long)
        slot_free = torch.ones(graph.num_edges, dtype=torch.bool)
        self.steps: list[tuple[int, int, int, int, int]] = []  # (lo, start, rows, cols, base)
        start, base = graph.inputs.numel(), 0
        for i, nodes in enumerate(steps):
            rows = nodes.numel()
            # edges into this step from earlier positions (a same-step source still reads 0)
            into = (dst >= start) & (dst < start + rows) & (src < start)
            lo = int(src[into].min()) if bool(into.any()) else start
            cols = start - lo
            slot[into] = base + (dst[into] - start) * cols + (src[into] - lo)
            slot_free &= ~into
            self.register_buffer(f"nodes_{i}", nodes, persistent=False)
            self.steps.append((lo, start, rows, cols, base))
            start, base = start + rows, base + rows * cols
        slot[slot_free] = base  # edges no step reads (their source is still 0 when read)
        self._register_slots(slot, base)
        self.register_buffer("out_pos", pos[graph.outputs], persistent=False)

    def run(self, z0: Tensor, flat: Tensor) -> Tensor:  # noqa: D102
        pieces, offsets = [z0], [0]  # node features in layout order, one piece per step
        # one split, not a slice per block: its backward is one concatenation
        blocks = flat.split([rows * cols for _, _, rows, cols, _ in self.steps] + [1])
        for i, (lo, start, rows, cols, _) in enumerate(self.steps):
            if cols:
                src = _window(pieces, offsets, lo, start)  # [B, cols, *F]
                inp = mix(src, blocks[i].view(rows, cols))  # [B, rows, *F]
            else:
                inp = z0.new_zeros(z0.shape[0], rows, *z0.shape[2:])
            pieces.append(self.node_op(inp, getattr(self, f"nodes_{i}")))
            offsets.append(start)
        return _read_out(pieces, offsets, self.out_pos)


def _read_out(pieces: list[Tensor], offsets: list[int], out_pos: Tensor) -> Tensor:
    """The features at layout positions ``out_pos`` (a slice when they are contiguous)."""
    lo, n = int(out_pos[0]), out_pos.numel()
    if bool((out_pos == torch.arange(lo, lo + n, device=out_pos.device)).all()):
        return _window(pieces, offsets, lo, lo + n)
    return torch.cat(pieces, dim=1).index_select(1, out_pos)


class _RecurrentLayout:
    """Layout of the dynamic modes: updated nodes first, then held inputs.

    Blocks: ``A_u`` (``[n_u, n_u]``, updated from updated) at offset 0, then ``A_h``
    (``[n_u, n_h]``, updated from held) at offset ``n_u * n_u``.
    """

    def setup_layout(self, wired: WiredGraph) -> None:
        graph = wired.graph
        updated = wired.executor.updated.cpu()
        held = graph.inputs[graph.in_degree[graph.inputs] == 0].sort().values
        nu, nh = updated.numel(), held.numel()
        pos = _positions(torch.cat([updated, held]), graph.num_nodes)
        src, dst = (pos[i] for i in graph.edge_index)  # dst < nu always
        from_held = src >= nu
        slot = torch.where(from_held, nu * nu + dst * nh + (src - nu), dst * nu + src)
        self._register_slots(slot, nu * nu + nu * nh)
        self.nu, self.nh = nu, nh
        self.register_buffer("updated", updated, persistent=False)
        in_pos = pos[graph.inputs]
        self.register_buffer("in_upd_from", (in_pos < nu).nonzero().flatten(), persistent=False)
        self.register_buffer("in_upd_to", in_pos[in_pos < nu], persistent=False)
        self.register_buffer("in_held_from", (in_pos >= nu).nonzero().flatten(), persistent=False)
        self.register_buffer("out_pos", pos[graph.outputs], persistent=False)

    def initial(self, z0: Tensor, flat: Tensor) -> tuple[Tensor, Tensor, Tensor | float]:
        """``(z_u, z_h, c)``: updated and held states and held nodes' constant input."""
        b, f = z0.shape[0], z0.shape[2:]
        z_u = z0.new_zeros(b, self.nu, *f).index_copy(
            1, self.in_upd_to, z0.index_select(1, self.in_upd_from)
        )  # [B, n_u, *F]
        z_h = z0.index_select(1, self.in_held_from)  # [B, n_h, *F] (held in position order)
        c = mix(z_h, self._block(flat, self.nu * self.nu, self.nu, self.nh)) if self.nh else 0.0
        return _layout(z_u), z_h, c

    def read_out(self, z_u: Tensor, z_h: Tensor) -> Tensor:
        """Output features from the updated and held states."""
        return _read_out([z_u, z_h], [0, self.nu], self.out_pos)


class CompiledDiscrete(_RecurrentLayout, CompiledWired):
    """Discrete time as one dense step ``Z_u <- f(A_u Z_u + A_h Z_h)`` applied ``T`` times."""

    def __init__(self, wired: WiredGraph) -> None:
        super().__init__(wired)
        self.setup_layout(wired)
        self.steps = wired.executor.steps

    def run(self, z0: Tensor, flat: Tensor) -> Tensor:  # noqa: D102
        z_u, z_h, c = self.initial(z0, flat)
        a_u = self._block(flat, 0, self.nu, self.nu)
        for _ in range(self.steps):
            z_u = self.node_op(mix(z_u, a_u) + c, self.updated)  # [B, n_u, *F]
        return self.read_out(z_u, z_h)


class _Dynamics(nn.Module):
    """``dZ/dt``: ``f(A_u Z_u + c)`` for updated nodes, zero for held inputs."""

    def __init__(self, owner: CompiledContinuous, a_u: Tensor, c: Tensor | float):
        super().__init__()
        self.node_op = owner.node_op
        self.owner = [owner]  # not a submodule
        self.a_u, self.c = a_u, c

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        owner = self.owner[0]
        owner.nfe += 1
        z_u = z[:, : owner.nu]
        dz = self.node_op(mix(z_u, self.a_u) + self.c, owner.updated)  # [B, n_u, *F]
        if owner.nh:
            dz = torch.cat([dz, torch.zeros_like(z[:, owner.nu :])], dim=1)
        return dz


class CompiledContinuous(_RecurrentLayout, CompiledWired):
    """Continuous time: ``dZ/dt = f(A Z)`` with the blocks built once per forward pass.

    Attributes:
        nfe: Number of function evaluations so far.
    """

    def __init__(self, wired: WiredGraph) -> None:
        super().__init__(wired)
        self.setup_layout(wired)
        self.solver: ODESolver = wired.executor.solver
        self.nfe = 0

    def run(self, z0: Tensor, flat: Tensor) -> Tensor:  # noqa: D102
        from torchdiffeq import odeint, odeint_adjoint

        z_u, z_h, c = self.initial(z0, flat)
        a_u = self._block(flat, 0, self.nu, self.nu)
        z = torch.cat([z_u, z_h], dim=1) if self.nh else z_u  # [B, n_u + n_h, *F]
        t = torch.tensor([0.0, self.solver.t1], dtype=z.dtype, device=z.device)
        func = _Dynamics(self, a_u, c)
        if self.solver.adjoint:
            params = (a_u,) + ((c,) if isinstance(c, Tensor) else ())
            params += tuple(p for p in self.node_op.parameters() if p.requires_grad)
            zt = odeint_adjoint(func, z, t, adjoint_params=params, **self.solver.as_kwargs())
        else:
            zt = odeint(func, z, t, **self.solver.as_kwargs())
        z1 = zt[-1]
        return self.read_out(z1[:, : self.nu], z1[:, self.nu :])


#: Compiled training modules by graph mode.
COMPILED: dict[str, type[CompiledWired]] = {
    "dag": CompiledDag,
    "discrete": CompiledDiscrete,
    "continuous": CompiledContinuous,
}


def compile_train(wired: WiredGraph) -> CompiledWired:
    """Lower one :class:`~graphwire.WiredGraph` to its compiled training module.

    Prefer :func:`graphwire.compile`, which also handles models holding wired graphs.

    Raises:
        GraphError: if ``wired`` is not a ``WiredGraph`` or its selection is empty.

    Example:
        >>> import torch
        >>> from graphwire import WiredGraph
        >>> from graphwire.execution.compiled import compile_train
        >>> from graphwire.graph import layered_dag
        >>> net = WiredGraph(layered_dag([4, 8, 2]), density=0.5, seed=0)
        >>> fast = compile_train(net)
        >>> fast.weight is net.weight
        True
        >>> x = torch.randn(3, 4)
        >>> torch.allclose(fast(x), net(x), atol=1e-6)
        True
    """
    if not isinstance(wired, WiredGraph):
        raise GraphError(f"compile_train needs a graphwire.WiredGraph; got {describe(wired)}.")
    return COMPILED[wired.mode](wired)
