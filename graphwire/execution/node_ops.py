"""Node operations ``f_v``: what a node does to the sum of its incoming messages.

A node operation is an ``nn.Module`` holding the parameters of *all* ``N`` nodes and
applied to any subset of them: ``op(x, nodes)`` with ``x`` of shape ``[B, n, *F]`` and
``nodes`` the ``n`` node indices (``None`` for all nodes in order). Built-ins are looked
up by name in ``NODE_OPS``; a user passes a factory ``num_nodes -> NodeOp`` instead.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphwire._utils import choose, describe
from graphwire.errors import ConfigError, GraphError

__all__ = [
    "NodeOp",
    "Identity",
    "Activation",
    "DepthwiseConv",
    "DepthwiseConv1d",
    "GroupedNodeOp",
    "NODE_OPS",
    "make_node_op",
    "NodeOpSpec",
]


class NodeOp(nn.Module, abc.ABC):
    """Base class of node operations.

    Subclasses implement ``forward(x, nodes)``: ``x`` is ``[B, n, *F]`` (the summed
    inputs ``I_v`` of ``n`` nodes) and ``nodes`` the int64 ``[n]`` indices of those nodes,
    or ``None`` for all nodes in order. They return ``[B, n, *F']``.
    """

    @abc.abstractmethod
    def forward(self, x: Tensor, nodes: Tensor | None = None) -> Tensor:
        """Apply ``f_v`` to ``x`` (``[B, n, *F]``) for the given ``nodes``."""


def _take(param: Tensor, nodes: Tensor | None) -> Tensor:
    return param if nodes is None else param[nodes]


class Identity(NodeOp):
    """``f_v(I) = I``: a linear node, no parameters."""

    def __init__(self, num_nodes: int):
        super().__init__()

    def forward(self, x: Tensor, nodes: Tensor | None = None) -> Tensor:  # noqa: D102
        return x


class Activation(NodeOp):
    """``f_v(I) = act(I + b_v)`` with one learned bias per node, for vector features.

    Args:
        num_nodes: Number of nodes ``N``.
        activation: ``"relu"`` or ``"tanh"``.
        bias: Learn a bias per node.

    Example:
        >>> import torch
        >>> from graphwire.execution.node_ops import Activation
        >>> Activation(3, "relu")(torch.tensor([[-1.0, 0.5, 2.0]])).tolist()
        [[0.0, 0.5, 2.0]]
    """

    _FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": torch.relu, "tanh": torch.tanh}

    def __init__(self, num_nodes: int, activation: str = "relu", bias: bool = True):
        super().__init__()
        self.fn = choose("activation", activation, self._FUNCTIONS, ConfigError)
        self.activation = activation
        self.bias = nn.Parameter(torch.zeros(num_nodes)) if bias else None

    def forward(self, x: Tensor, nodes: Tensor | None = None) -> Tensor:  # noqa: D102
        if self.bias is not None:  # x: [B, n, *F]; bias broadcast over features
            b = _take(self.bias, nodes)
            x = x + b.view(1, -1, *([1] * (x.dim() - 2)))
        return self.fn(x)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"{self.activation}, bias={self.bias is not None}"


class DepthwiseConv(NodeOp):
    """The paper's image node: instance norm (affine) -> ReLU -> depthwise 3x3 conv.

    Each node has its own norm scale and shift and one 3x3 kernel (9 weights).

    Args:
        num_nodes: Number of nodes ``N``.
        stride: Stride of the 3x3 conv.
        norm: Apply the affine instance norm first.
        kernel_size: Side of the depthwise kernel.

    Example:
        >>> import torch
        >>> from graphwire.execution import DepthwiseConv
        >>> DepthwiseConv(4, stride=2)(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 4, 4, 4])
    """

    def __init__(self, num_nodes: int, stride: int = 1, norm: bool = True, kernel_size: int = 3):
        super().__init__()
        self.stride, self.kernel_size = stride, kernel_size
        self.norm_weight = nn.Parameter(torch.ones(num_nodes)) if norm else None
        self.norm_bias = nn.Parameter(torch.zeros(num_nodes)) if norm else None
        self.conv_weight = nn.Parameter(torch.empty(num_nodes, 1, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.conv_weight, nonlinearity="relu")

    def forward(self, x: Tensor, nodes: Tensor | None = None) -> Tensor:  # noqa: D102
        if x.dim() != 4:
            raise GraphError(
                f"node_op='conv' needs image features [B, n, H, W]; got {describe(x)}. Use "
                "'relu' or 'tanh' for vector features."
            )
        if self.norm_weight is not None:
            w, b = _take(self.norm_weight, nodes), _take(self.norm_bias, nodes)
            x = F.instance_norm(x, weight=w, bias=b)
        x = torch.relu(x)
        kernel = _take(self.conv_weight, nodes)  # [n, 1, k, k]
        return F.conv2d(
            x, kernel, stride=self.stride, padding=self.kernel_size // 2, groups=x.shape[1]
        )

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"stride={self.stride}, norm={self.norm_weight is not None}"


class DepthwiseConv1d(NodeOp):
    """The paper's node for 1-D signals: instance norm (affine) -> ReLU -> depthwise 1-D conv.

    The 1-D counterpart of :class:`DepthwiseConv` (``node_op="conv1d"``): each node has its
    own norm scale and shift and one kernel of ``kernel_size`` taps (3 weights), applied
    with ``kernel_size // 2`` zero padding so that stride 1 keeps the length.

    Args:
        num_nodes: Number of nodes ``N``.
        stride: Stride of the conv.
        norm: Apply the affine instance norm first.
        kernel_size: Taps of the depthwise kernel (odd).

    Example:
        >>> import torch
        >>> from graphwire.execution.node_ops import DepthwiseConv1d
        >>> DepthwiseConv1d(4)(torch.randn(2, 4, 10)).shape
        torch.Size([2, 4, 10])
        >>> DepthwiseConv1d(4, stride=2)(torch.randn(2, 4, 10)).shape
        torch.Size([2, 4, 5])
    """

    def __init__(self, num_nodes: int, stride: int = 1, norm: bool = True, kernel_size: int = 3):
        super().__init__()
        self.stride, self.kernel_size = stride, kernel_size
        self.norm_weight = nn.Parameter(torch.ones(num_nodes)) if norm else None
        self.norm_bias = nn.Parameter(torch.zeros(num_nodes)) if norm else None
        self.conv_weight = nn.Parameter(torch.empty(num_nodes, 1, kernel_size))
        nn.init.kaiming_normal_(self.conv_weight, nonlinearity="relu")

    def forward(self, x: Tensor, nodes: Tensor | None = None) -> Tensor:  # noqa: D102
        if x.dim() != 3:
            raise GraphError(
                f"node_op='conv1d' needs 1-D features [B, n, L]; got {describe(x)}. Use 'conv' "
                "for images [B, n, H, W] and 'relu' or 'tanh' for vector features."
            )
        if self.norm_weight is not None:
            w, b = _take(self.norm_weight, nodes), _take(self.norm_bias, nodes)
            x = F.instance_norm(x, weight=w, bias=b)
        x = torch.relu(x)
        kernel = _take(self.conv_weight, nodes)  # [n, 1, k]
        return F.conv1d(
            x, kernel, stride=self.stride, padding=self.kernel_size // 2, groups=x.shape[1]
        )

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"stride={self.stride}, norm={self.norm_weight is not None}"


class GroupedNodeOp(NodeOp):
    """Different node operations for different node groups.

    Args:
        ops: One operation per group, each built for all ``N`` nodes.
        group_id: int64 ``[N]`` group of each node, indexing ``ops``.
    """

    def __init__(self, ops: list[NodeOp], group_id: Tensor):
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.register_buffer("group_id", group_id.clone(), persistent=False)

    def forward(self, x: Tensor, nodes: Tensor | None = None) -> Tensor:  # noqa: D102
        if nodes is None:
            nodes = torch.arange(x.shape[1], device=x.device)
        gid = self.group_id[nodes]  # [n]
        if torch.compiler.is_compiling():
            # Tracing (torch.export, torch.compile) needs shapes that do not depend on the
            # data: run every group's op on all n nodes and keep each node's own result.
            out = self.ops[0](x, nodes)
            for g in range(1, len(self.ops)):
                keep = (gid == g).view(1, -1, *([1] * (out.dim() - 2)))
                out = torch.where(keep, self.ops[g](x, nodes), out)
            return out
        present = torch.unique(gid).tolist()
        if len(present) == 1:
            return self.ops[present[0]](x, nodes)
        parts = [(gid == g).nonzero().flatten() for g in present]
        outs = [self.ops[g](x[:, pos], nodes[pos]) for g, pos in zip(present, parts)]
        order = torch.cat(parts).argsort()
        return torch.cat(outs, dim=1)[:, order]


#: Built-in node operations by name (read-only: pass a factory for your own).
NODE_OPS: Mapping[str, Callable[[int], NodeOp]] = MappingProxyType(
    {
        "identity": Identity,
        "relu": lambda n: Activation(n, "relu"),
        "tanh": lambda n: Activation(n, "tanh"),
        "conv": DepthwiseConv,
        "conv1d": DepthwiseConv1d,
    }
)

#: What ``node_op`` and ``input_op`` accept: a name from ``NODE_OPS``, a factory
#: ``num_nodes -> module``, or a mapping from node-group name to either.
NodeOpSpec = Union[str, Callable[[int], nn.Module], Mapping[str, str | Callable[[int], nn.Module]]]


def make_node_op(
    spec: NodeOpSpec,
    num_nodes: int,
    group_names: tuple[str, ...] = (),
    group_id: Tensor | None = None,
) -> nn.Module:
    """Build the node operation for ``num_nodes`` nodes from a name, factory or mapping.

    Args:
        spec: A name from ``NODE_OPS``, a factory ``num_nodes -> module``, or a mapping
            from group name to either (every group of the graph must be named).
        num_nodes: Number of nodes ``N``.
        group_names: The graph's group names, for a mapping ``spec``.
        group_id: The graph's ``[N]`` group ids, for a mapping ``spec``.

    Raises:
        ConfigError: for an unknown name (listing the valid ones) or a mapping that does
            not match the graph's groups.

    Example:
        >>> from graphwire.execution.node_ops import make_node_op
        >>> make_node_op("tanh", 5)
        Activation(tanh, bias=True)
    """
    if isinstance(spec, Mapping):
        if group_id is None or set(spec) != set(group_names):
            raise ConfigError(
                f"node_op as a mapping needs one entry per node group {list(group_names)}; got "
                f"keys {sorted(spec)}."
            )
        ops = [make_node_op(spec[name], num_nodes) for name in group_names]
        return GroupedNodeOp(ops, group_id)
    if isinstance(spec, str):
        return choose("node_op", spec, NODE_OPS, ConfigError)(num_nodes)
    if callable(spec):
        op = spec(num_nodes)
        if not isinstance(op, nn.Module):
            raise ConfigError(
                f"node_op factory must return an nn.Module taking (x, nodes); got {describe(op)}."
            )
        return op
    raise ConfigError(
        f"node_op must be a name ({', '.join(sorted(NODE_OPS))}), a factory num_nodes -> module, "
        f"or a mapping from group name to either; got {describe(spec)}."
    )
