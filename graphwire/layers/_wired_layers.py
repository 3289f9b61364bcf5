"""Wired layers: ``Linear`` and ``Conv`` layers whose channel graph is learned.

A dense layer from ``C_in`` to ``C_out`` channels is a complete bipartite channel graph:
the edge ``i -> o`` carries the kernel ``weight[o, i]`` (one number for a ``Linear``, a
``k x k`` kernel for a ``Conv2d``; with ``groups`` only the channels of a group are
joined). A wired layer keeps its usual ``weight`` and adds a boolean ``edge_mask`` of the
same shape; selection is *per weight* (unstructured, as in the paper's sparse
ResNet-50), by the same wiring rules and the same top-k as :class:`~graphwire.WiredGraph`,
so :class:`~graphwire.DNWOptimizer` trains them unchanged.

:func:`~graphwire.layers.sparsify` turns the ``Conv`` and ``Linear`` layers of any
existing network into wired layers.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphwire.errors import GraphError
from graphwire.graph.channel_graph import ChannelGraph
from graphwire.layers._sparse_train import check_kernel, sparse_conv, sparse_linear, uses_sparse
from graphwire.wiring import WiringRule, make_rule
from graphwire.wiring.budget import SharedBudget
from graphwire.wiring.module import WiredModule

__all__ = [
    "WIRED_OF",
    "WiredLayer",
    "WiredLinear",
    "WiredConv1d",
    "WiredConv2d",
    "WiredConv3d",
    "wired_class",
    "wired_copy",
]


class WiredLayer(WiredModule):
    """Base of the wired layers: a dense layer's ``weight`` plus a same-shape ``edge_mask``.

    It is a :class:`~graphwire.wiring.WiredModule`. Subclasses are also subclasses of
    the dense layer they replace (``WiredConv2d`` is an ``nn.Conv2d``), so code that
    inspects ``in_channels``, ``stride`` and so on keeps working.

    Sparse training: where the rule needs no dense weight gradient at a step (RigL
    between updates, SET, a fixed mask, pruning) a ``Linear``, ``Conv1d`` or ``Conv2d``
    runs its forward product, input gradient and weight gradient (at the selected weights
    only) by sparse kernels; DNW keeps its dense weight gradient and runs the other two
    sparse. The gradients equal the masked dense layer's (up to the order of additions).

    Attributes:
        rule: The wiring rule (shared by every layer of ``shared_budget``).
        shared_budget: The :class:`~graphwire.wiring.SharedBudget` this layer's selection
            belongs to.
        kernel: ``"auto"`` (default: sparse products where the cost model says they pay:
            float32 on a CPU with the compiled kernels, up to a switch density),
            ``"dense"`` (the masked dense layer) or ``"sparse"`` (sparse products wherever
            the layer supports them, e.g. to test them).
    """

    weight: Tensor
    edge_mask: Tensor

    @property
    def kernel(self) -> str:
        """How the layer computes: ``"auto"``, ``"dense"`` or ``"sparse"`` (see above)."""
        return self.__dict__.get("_kernel", "auto")

    @kernel.setter
    def kernel(self, value: str) -> None:
        self.__dict__["_kernel"] = check_kernel(value)

    def runs_sparse(self, x: Tensor) -> bool:
        """Whether a call on ``x`` runs by sparse products (the per-layer choice).

        ``False`` for a layer without a sparse path (``WiredConv3d``, a rule with its own
        effective weight, autocast, ``torch.compile``), with ``kernel="dense"``, or where
        the cost model says the dense products are faster.

        Example:
            >>> import torch
            >>> from graphwire.layers import WiredLinear
            >>> layer = WiredLinear(8, 4, density=0.25, rule="set")
            >>> layer.kernel = "sparse"
            >>> layer.runs_sparse(torch.randn(2, 8))
            True
        """
        return uses_sparse(self, self._sparse_kind, x)

    _sparse_kind = "none"  # the cost model's kind of a subclass with a sparse path

    def _init_wiring(
        self,
        rule: str | WiringRule,
        k: int | None,
        density: float | None,
        seed: int | None,
        attach: bool = True,
    ) -> None:
        shape = self.weight.shape
        self.register_buffer(
            "edge_mask", torch.ones(shape, dtype=torch.bool, device=self.weight.device)
        )
        self.shared_budget: SharedBudget | None = None
        self.rule = make_rule(rule)
        if attach:
            SharedBudget([self], rule=self.rule, k=k, density=density, seed=seed)

    def _reset_weights(self, seed: int | None) -> None:
        """The dense layer's default initialisation, drawn from ``seed`` when given."""
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
            if self.bias is not None:
                bound = 1 / math.sqrt(self.weight[0].numel()) if self.weight[0].numel() else 0
                nn.init.uniform_(self.bias, -bound, bound, generator=generator)

    def _channel_shape(self) -> tuple[int, int, int]:
        """``(inputs, outputs, groups)`` of the channel graph."""
        return self.weight.shape[1], self.weight.shape[0], 1

    def channel_graph(self) -> ChannelGraph:
        """The candidate channel graph: inputs ``0 .. C_in-1``, outputs after them.

        Edges are ordered as the first two dimensions of ``weight`` (row-major), so they
        line up with :meth:`channel_mask`.
        """
        n_in_group, n_out, groups = self._channel_shape()
        per_group = n_out // groups
        out = torch.arange(n_out).repeat_interleave(n_in_group)
        src = (out // per_group) * n_in_group + torch.arange(n_in_group).repeat(n_out)
        n_in = n_in_group * groups
        return ChannelGraph(
            torch.stack([src, out + n_in]),
            n_in + n_out,
            inputs=range(n_in),
            outputs=range(n_in, n_in + n_out),
        )

    def channel_mask(self) -> Tensor:
        """Boolean ``[E]``: channel edges with at least one selected kernel weight."""
        return (
            self.edge_mask.reshape(self.weight.shape[0], self.weight.shape[1], -1).any(-1).flatten()
        )

    def learned_graph(self) -> ChannelGraph:
        """The channel edges in use, with ``edge_weight`` the L1 norm of each kept kernel.

        Its outputs are the output channels that still receive an edge.

        Raises:
            GraphError: if no weight is selected.
        """
        mask = self.channel_mask().cpu()
        if not mask.any():
            raise GraphError("no weight of this layer is selected; its learned graph is empty.")
        full = self.channel_graph()
        edge_index = full.edge_index[:, mask]
        kept = (self.weight.detach() * self.edge_mask).abs()
        norms = kept.reshape(self.weight.shape[0], self.weight.shape[1], -1).sum(-1).flatten()
        return ChannelGraph(
            edge_index,
            full.num_nodes,
            inputs=full.inputs,
            outputs=torch.unique(edge_index[1]),
            edge_weight=norms.cpu()[mask].clone(),
        )

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        base = super().extra_repr()
        kept = int(self.edge_mask.sum())
        return f"{base}, rule={self.rule!r}, kept={kept} of {self.weight.numel()}"


class WiredLinear(WiredLayer, nn.Linear):
    """An ``nn.Linear`` whose weights are selected by a wiring rule (a wired bipartite graph).

    Args:
        in_features: Input channels.
        out_features: Output channels.
        bias: Learn a bias per output (never masked).
        rule: Wiring rule name or instance (``"dnw"``, ``"random"``, ``"complete"``, ...).
        k: Weights to keep.
        density: Fraction of weights to keep, instead of ``k``.
        seed: Seed of the initial weights and a random rule's draw.
        device: Device of the parameters.
        dtype: Dtype of the parameters.

    Attributes:
        kernel: ``"auto"`` (default), ``"dense"`` or ``"sparse"``: how a training step
            computes. Where the rule needs no dense weight gradient at a step (RigL
            between updates, SET, a fixed mask, pruning), the forward product, the input
            gradient and the weight gradient (at the selected weights only) run by
            sparse kernels; DNW keeps its dense weight gradient. ``"auto"`` leaves it to
            the cost model (float32 on a CPU with the compiled kernels, at most 15% of
            the weights, or 25% for a large layer, and enough work per call);
            ``runs_sparse(x)`` tells what a call on ``x`` does. The gradients are the
            masked dense layer's either way.

    Example:
        >>> import torch
        >>> from graphwire.layers import WiredLinear
        >>> layer = WiredLinear(8, 4, density=0.25, seed=0)
        >>> layer(torch.randn(2, 8)).shape, int(layer.edge_mask.sum())
        (torch.Size([2, 4]), 8)
    """

    _sparse_kind = "train_linear"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rule: str | WiringRule = "dnw",
        k: int | None = None,
        density: float | None = None,
        seed: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._reset_weights(seed)
        self._init_wiring(rule, k, density, seed)

    def forward(self, x: Tensor) -> Tensor:
        """``x @ (w * mask).T + b`` for ``x`` of shape ``[..., in_features]``."""
        if self.runs_sparse(x):
            dense_grad = self.shared_budget.dense_weight_grad()
            return sparse_linear(x, self.weight, self.bias, self.edge_mask, dense_grad)
        return F.linear(x, self.effective_weight(), self.bias)


class _WiredConv(WiredLayer):
    """Shared constructor of the wired convolutions."""

    _sparse_kind = "train_conv"

    def _build(self, dense_cls, args, bias, padding_mode, device, dtype, rule, k, density, seed):
        dense_cls.__init__(
            self, *args, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype
        )
        self._reset_weights(seed)
        self._init_wiring(rule, k, density, seed)

    def _channel_shape(self) -> tuple[int, int, int]:
        return self.weight.shape[1], self.weight.shape[0], self.groups

    def forward(self, x: Tensor) -> Tensor:
        """The convolution with the masked kernel, ``[B, C_in, *S] -> [B, C_out, *S']``."""
        if self.runs_sparse(x):
            dense_grad = self.shared_budget.dense_weight_grad()
            return sparse_conv(self, x, self.edge_mask, dense_grad)
        return self._conv_forward(x, self.effective_weight(), self.bias)


_CONV_DOC = """A ``{dense}`` whose kernel weights are selected by a wiring rule.

    Edge ``i -> o`` of its channel graph carries the kernel ``weight[o, i]``; selection is
    per weight. Takes ``{dense}``'s arguments plus ``rule``, ``k``, ``density`` and ``seed``
    (see :class:`WiredLinear`). Its ``kernel`` attribute and ``runs_sparse(x)`` method are
    :class:`WiredLinear`'s: the 1-D and 2-D convolutions train by sparse products (every
    stride, dilation, group count and padding mode, padding at most the dilated kernel's
    reach); the 3-D one by dense products.

    Example:
        >>> import torch
        >>> from graphwire.layers import {name}
        >>> layer = {name}(4, 8, 3, padding=1, density=0.1, seed=0)
        >>> int(layer.edge_mask.sum()) == round(0.1 * layer.weight.numel())
        True
    """


def _make_conv(name: str, dense_cls: type[nn.Module]) -> type[_WiredConv]:
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        rule: str | WiringRule = "dnw",
        k: int | None = None,
        density: float | None = None,
        seed: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        args = (in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        self._build(dense_cls, args, bias, padding_mode, device, dtype, rule, k, density, seed)

    doc = _CONV_DOC.format(dense=f"nn.{dense_cls.__name__}", name=name)
    return type(
        name,
        (_WiredConv, dense_cls),
        {"__init__": __init__, "__doc__": doc, "__module__": "graphwire.layers"},
    )


WiredConv1d = _make_conv("WiredConv1d", nn.Conv1d)
WiredConv2d = _make_conv("WiredConv2d", nn.Conv2d)
WiredConv3d = _make_conv("WiredConv3d", nn.Conv3d)

WIRED_OF: dict[type[nn.Module], type[WiredLayer]] = {
    nn.Linear: WiredLinear,
    nn.Conv1d: WiredConv1d,
    nn.Conv2d: WiredConv2d,
    nn.Conv3d: WiredConv3d,
}


def wired_class(module: nn.Module) -> type[WiredLayer] | None:
    """The wired layer for ``module``: its class or nearest base among ``WIRED_OF``."""
    return next((WIRED_OF[c] for c in type(module).__mro__ if c in WIRED_OF), None)


def wired_copy(dense: nn.Module, rule: WiringRule) -> WiredLayer:
    """A wired layer with ``dense``'s configuration and weights, not yet in a budget."""
    out = copy.copy(dense)  # a new object sharing the tensors; its registries are copied below
    for key, value in list(out.__dict__.items()):
        if key.startswith("_") and isinstance(value, (dict, set)):
            out.__dict__[key] = copy.copy(value)
    out.__class__ = wired_class(dense)  # type: ignore[assignment]
    out._init_wiring(rule, None, None, None, attach=False)
    return out
