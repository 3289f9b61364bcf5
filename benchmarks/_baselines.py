"""The speed suite's baselines: what a user would write instead of graphwire.

All of them take their weights, selection and node operations from one
:class:`~graphwire.WiredGraph`, so every method of the suite runs the same network:

1. :class:`PaperDense`: the paper's way for graph models. One dense ``[N, N]`` weight
   over all nodes, a boolean mask, the straight-through matrix
   ``w - (w * ~mask).detach()``, one matmul (vector nodes) or 1x1 convolution (image
   nodes) over the node channels per step, one ``torch.topk`` per optimizer step. A DAG
   runs one product per topological stage, of the stage's rows against the nodes
   computed so far; discrete time one ``[N, N]`` product per time step; continuous time
   the same inside the ODE function (``torchdiffeq.odeint``).
2. :func:`pruned_layer`: a plain ``nn.Conv2d`` / ``nn.Linear`` on a single layer's own
   channels, masked by ``torch.nn.utils.prune`` (what a pruning user runs).
3. :class:`TorchCSR` (with :func:`torch_csr_model`): the compacted model of
   ``graphwire.freeze(kernel="dense")`` with every block a ``torch.sparse`` CSR matrix
   multiplied by ``torch.sparse.mm``.

The fourth baseline, message passing, is graphwire's own reference backend.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
import torch.nn.utils.prune as prune
from torch import Tensor, nn

import graphwire
from graphwire import WiredGraph

__all__ = ["PaperDense", "pruned_layer", "TorchCSR", "torch_csr_model"]


def topological_stages(graph: graphwire.ChannelGraph) -> list[Tensor]:
    """The DAG's non-input nodes by topological stage, as the paper's baseline runs them.

    Stage 0 holds the first generation after the sources with the sources that are not
    inputs (they read nothing, so they are zero when it runs); then one stage per later
    generation.
    """
    gens = list(graph.generations)
    first = gens[0][~torch.isin(gens[0], graph.inputs)]
    stages = [torch.cat([first, gens[1]]).sort().values if len(gens) > 1 else first]
    return [s for s in stages + gens[2:] if s.numel()]


def updated_nodes(graph: graphwire.ChannelGraph) -> Tensor:
    """The nodes a recurrent step updates: every non-input, and inputs with in-edges."""
    held = graph.inputs[graph.in_degree[graph.inputs] == 0]
    return torch.arange(graph.num_nodes)[~torch.isin(torch.arange(graph.num_nodes), held)]


class PaperDense(nn.Module):
    """Baseline 1: a dense ``[N, N]`` masked weight, straight-through, one top-k per step.

    Nodes are stored in topological-stage order (a DAG) or as given (the dynamic modes);
    the weight's candidate entries take ``net``'s edge weights, the mask ``net``'s
    selection, and the node operations are a copy of ``net``'s (own parameters, same
    values).

    Args:
        net: The wired graph to mirror.
    """

    def __init__(self, net: WiredGraph) -> None:
        super().__init__()
        g, n = net.graph, net.graph.num_nodes
        self.mode, self.steps, self.solver = net.mode, net.steps, net.solver
        if net.mode == "dag":
            stages = topological_stages(g)
            order = torch.cat([g.inputs, *stages])
            if order.numel() != n:
                raise ValueError("every node must be an input or in a topological stage")
            self.bounds = [g.inputs.numel()]
            for s in stages:
                self.bounds.append(self.bounds[-1] + s.numel())
        else:
            order = torch.arange(n)
            updated = updated_nodes(g)
            self.all_updated = updated.numel() == n
            self.register_buffer("updated", updated.clone())
            self.register_buffer("held", torch.isin(torch.arange(n), updated, invert=True))
        pos = torch.empty(n, dtype=torch.long)
        pos[order] = torch.arange(n)
        self.register_buffer("order", order.clone())  # stored position -> node id
        src, dst = pos[g.edge_index[0]], pos[g.edge_index[1]]
        self.register_buffer("flat", dst * n + src)  # candidate entries of the square
        dense = torch.zeros(n * n, dtype=net.weight.dtype)
        dense[self.flat] = net.weight.detach().cpu()
        self.weight = nn.Parameter(dense.view(n, n))
        mask = torch.zeros(n * n, dtype=torch.bool)
        mask[self.flat] = net.edge_mask.cpu()
        self.register_buffer("mask", mask.view(n, n))
        self.node_op = copy.deepcopy(net.node_op)
        self.input_op = copy.deepcopy(net.input_op)
        self.register_buffer("inputs", g.inputs.clone())
        self.register_buffer("out_pos", pos[g.outputs].clone())
        self.k = sum(net.budget)
        self.nfe = 0

    @torch.no_grad()
    def reselect(self) -> None:
        """One ``torch.topk`` over the candidate entries of ``|W|``."""
        keep = self.weight.view(-1)[self.flat].abs().topk(self.k, sorted=False).indices
        self.mask.zero_()
        self.mask.view(-1)[self.flat[keep]] = True

    def matrix(self) -> Tensor:
        """Straight-through ``W * M``: masked forward, gradient to every entry."""
        return self.weight - (self.weight * ~self.mask).detach()

    @staticmethod
    def conv(z: Tensor, a: Tensor) -> Tensor:
        """``a`` (``[m, n]``) over the node channels of ``z``: a 1x1 conv or a matmul."""
        if z.dim() == 4:
            return F.conv2d(z, a[:, :, None, None])
        return F.conv1d(z, a[:, :, None]) if z.dim() == 3 else z @ a.t()

    def forward(self, x: Tensor) -> Tensor:
        """Run the graph on the input nodes' features ``x``."""
        a = self.matrix()
        z = self.input_op(x, self.inputs)  # [B, n_in, *F]
        if self.mode == "dag":
            for lo, hi in zip(self.bounds, self.bounds[1:]):
                inp = self.conv(z, a[lo:hi, :lo])  # the stage against all nodes so far
                z = torch.cat([z, self.node_op(inp, self.order[lo:hi])], dim=1)
            return z.index_select(1, self.out_pos)
        n = self.weight.shape[0]
        z = z.new_zeros(z.shape[0], n, *z.shape[2:]).index_copy(1, self.inputs, z)
        a_u = a if self.all_updated else a[self.updated]
        if self.mode == "discrete":
            for _ in range(self.steps):
                z = self._update(z, a_u)
        else:
            from torchdiffeq import odeint

            def dynamics(t: Tensor, z: Tensor) -> Tensor:
                self.nfe += 1
                if self.all_updated:
                    return self.node_op(self.conv(z, a_u), self.updated)
                dz = self.node_op(self.conv(z, a_u), self.updated)
                return torch.zeros_like(z).index_copy(1, self.updated, dz)

            t = torch.tensor([0.0, self.solver.t1], dtype=z.dtype, device=z.device)
            z = odeint(dynamics, z, t, **self.solver.as_kwargs())[-1]
        return z.index_select(1, self.out_pos)

    def _update(self, z: Tensor, a_u: Tensor) -> Tensor:
        out = self.node_op(self.conv(z, a_u), self.updated)
        return out if self.all_updated else z.index_copy(1, self.updated, out)


def pruned_layer(net: WiredGraph, image: bool) -> nn.Module:
    """Baseline 2: the single layer of a two-block ``layered_dag`` as a pruned torch layer.

    ``nn.Conv2d(n_in, n_out, 1)`` (``image``) or ``nn.Linear(n_in, n_out)`` without bias,
    its weight set from ``net``'s effective weights and masked by
    ``torch.nn.utils.prune.custom_from_mask`` with ``net``'s selection. Inputs are the
    first block, outputs the second, in index order.
    """
    g = net.graph
    n_in, n_out = g.inputs.numel(), g.outputs.numel()
    if g.num_nodes != n_in + n_out:
        raise ValueError("pruned_layer needs a single layer: inputs then outputs")
    src, dst = g.edge_index.cpu()
    w = torch.zeros(n_out, n_in, dtype=net.weight.dtype)
    m = torch.zeros(n_out, n_in, dtype=torch.bool)
    w[dst - n_in, src] = net.weight.detach().cpu()
    m[dst - n_in, src] = net.edge_mask.cpu()
    if image:
        layer = nn.Conv2d(n_in, n_out, 1, bias=False)
        w, m = w[:, :, None, None], m[:, :, None, None]
    else:
        layer = nn.Linear(n_in, n_out, bias=False)
    layer = layer.to(w.dtype)
    with torch.no_grad():
        layer.weight.copy_(w)
    prune.custom_from_mask(layer, "weight", m.to(w.dtype))
    return layer.to(net.weight.device)


class TorchCSR(nn.Module):
    """``out[:, v] = sum over u of w[v, u] z[:, u]`` by ``torch.sparse.mm`` with a CSR weight.

    Node features ``[B, n, *F]`` are moved to ``[n, B * P]`` for the product and back,
    which ``torch.sparse.mm`` needs (its sparse operand is the left one).
    """

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.rows = weight.shape[0]
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.register_buffer("weight", weight.to_sparse_csr())

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``[B, n, *F]`` -> ``[B, m, *F]``."""
        b, n, f = z.shape[0], z.shape[1], z.shape[2:]
        cols = z.transpose(0, 1).reshape(n, -1).to(self.weight.dtype)  # [n, B * P]
        with torch.autocast(z.device.type, enabled=False):  # no low-precision CSR kernels
            out = torch.sparse.mm(self.weight, cols)  # [m, B * P]
        return out.view(self.rows, b, *f).transpose(0, 1)


def torch_csr_model(net: WiredGraph) -> nn.Module:
    """Baseline 3b: ``graphwire.freeze(net, kernel="dense")`` with every block CSR.

    The compacted structure (dead nodes removed) is graphwire's; only the block
    products change, to ``torch.sparse.mm``, so the row isolates the kernel. (The frozen
    graph's dense blocks are its children with a ``weight`` buffer.)
    """
    frozen = graphwire.freeze(net, kernel="dense")
    for parent in list(frozen.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(getattr(child, "weight", None), Tensor):
                setattr(parent, name, TorchCSR(child.weight))
    return frozen
