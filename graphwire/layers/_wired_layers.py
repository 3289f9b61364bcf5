"""Wired layers: ``Linear`` and ``Conv`` layers whose channel graph is learned, and ``sparsify``.

A dense layer from ``C_in`` to ``C_out`` channels is a complete bipartite channel graph:
the edge ``i -> o`` carries the kernel ``weight[o, i]`` (one number for a ``Linear``, a
``k x k`` kernel for a ``Conv2d``; with ``groups`` only the channels of a group are
joined). A wired layer keeps its usual ``weight`` and adds a boolean ``edge_mask`` of the
same shape; selection is *per weight* (unstructured, as in the paper's sparse
ResNet-50), by the same wiring rules and the same top-k as :class:`~graphwire.WiredGraph`,
so :class:`~graphwire.DNWOptimizer` trains them unchanged.

:func:`sparsify` turns the ``Conv`` and ``Linear`` layers of any existing network into
wired layers, with one budget per layer (a uniform rate, the paper's ResNet-50 runs) or
one global top-k over all of them (:class:`~graphwire.wiring.SharedBudget`).
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphwire._utils import choose, describe
from graphwire.errors import ConfigError, GraphError, SelectionError
from graphwire.graph.channel_graph import ChannelGraph
from graphwire.wiring.budget import SharedBudget
from graphwire.wiring.module import WiredModule
from graphwire.wiring.rules import WiringRule, make_rule
from graphwire.wiring.topk import DISTRIBUTIONS, distribute_budget, resolve_budget

__all__ = [
    "WiredLayer",
    "WiredLinear",
    "WiredConv1d",
    "WiredConv2d",
    "WiredConv3d",
    "sparsify",
    "SPARSIFY_SCOPES",
]

#: Scopes of :func:`sparsify`'s top-k: one budget per layer, or one over all layers.
SPARSIFY_SCOPES = ("layer", "global")


class WiredLayer(WiredModule):
    """Base of the wired layers: a dense layer's ``weight`` plus a same-shape ``edge_mask``.

    It is a :class:`~graphwire.wiring.WiredModule`. Subclasses are also subclasses of
    the dense layer they replace (``WiredConv2d`` is an ``nn.Conv2d``), so code that
    inspects ``in_channels``, ``stride`` and so on keeps working.

    Attributes:
        rule: The wiring rule (shared by every layer of ``shared_budget``).
        shared_budget: The :class:`~graphwire.wiring.SharedBudget` this layer's selection
            belongs to.
    """

    weight: Tensor
    edge_mask: Tensor

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


def _forward_conv(layer: nn.Module, x: Tensor) -> Tensor:
    return layer._conv_forward(x, layer.effective_weight(), layer.bias)


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

    Example:
        >>> import torch
        >>> from graphwire.layers import WiredLinear
        >>> layer = WiredLinear(8, 4, density=0.25, seed=0)
        >>> layer(torch.randn(2, 8)).shape, int(layer.edge_mask.sum())
        (torch.Size([2, 4]), 8)
    """

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
        return F.linear(x, self.effective_weight(), self.bias)


class _WiredConv(WiredLayer):
    """Shared constructor of the wired convolutions."""

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
        return _forward_conv(self, x)


_CONV_DOC = """A ``{dense}`` whose kernel weights are selected by a wiring rule.

    Edge ``i -> o`` of its channel graph carries the kernel ``weight[o, i]``; selection is
    per weight. Takes ``{dense}``'s arguments plus ``rule``, ``k``, ``density`` and ``seed``
    (see :class:`WiredLinear`).

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

_WIRED_OF: dict[type[nn.Module], type[WiredLayer]] = {
    nn.Linear: WiredLinear,
    nn.Conv1d: WiredConv1d,
    nn.Conv2d: WiredConv2d,
    nn.Conv3d: WiredConv3d,
}


def _wired_class(module: nn.Module) -> type[WiredLayer] | None:
    """The wired layer for ``module``: its class or nearest base among ``_WIRED_OF``."""
    return next((_WIRED_OF[c] for c in type(module).__mro__ if c in _WIRED_OF), None)


def _convertible(name: str, module: nn.Module) -> bool:
    """Whether :func:`sparsify` turns ``module`` into a wired layer (warning if it cannot).

    ``Linear`` / ``Conv`` layers and their subclasses (such as torch's
    ``NonDynamicallyQuantizableLinear``) are converted, unless already wired, lazy and
    not yet initialised, or a subclass with its own ``forward`` (which a wired layer
    would silently replace: such a layer is left dense, with a warning).
    """
    if _wired_class(module) is None or isinstance(module, WiredLayer):
        return False
    if isinstance(module.weight, nn.parameter.UninitializedParameter):
        return False
    dense = next(c for c in type(module).__mro__ if c in _WIRED_OF)
    if type(module).forward is not dense.forward:
        warnings.warn(
            f"sparsify left layer {name!r} ({type(module).__name__}) dense: it subclasses "
            f"nn.{dense.__name__} with its own forward, which a wired layer would "
            "replace. Sparsify its parent layers yourself, or wire it by hand.",
            UserWarning,
            stacklevel=3,
        )
        return False
    return True


def _targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """What :func:`sparsify` converts: layers, and ``nn.MultiheadAttention`` as a whole.

    The layers inside a ``MultiheadAttention`` (its ``out_proj``) are never converted on
    their own: the attention reads their weights directly. One that cannot be wired
    (``add_bias_kv``, ``add_zero_attn``) is left dense with a warning naming its
    parameters.
    """
    found, inside = [], []
    for name, m in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside):
            continue
        if isinstance(m, nn.MultiheadAttention):
            inside.append(name)
            if m.bias_k is not None or m.add_zero_attn:
                params = [n for n, p in m.named_parameters() if p is not None]
                warnings.warn(
                    f"sparsify left nn.MultiheadAttention {name!r} dense (parameters "
                    f"{params}): add_bias_kv and add_zero_attn are not supported by "
                    "WiredMultiheadAttention.",
                    UserWarning,
                    stacklevel=3,
                )
                continue
            found.append((name, m))
        elif _convertible(name, m):
            found.append((name, m))
    return found


def _wired_copy(dense: nn.Module, rule: WiringRule) -> WiredLayer:
    """A wired layer with ``dense``'s configuration and weights, not yet in a budget."""
    out = copy.copy(dense)  # a new object sharing the tensors; its registries are copied below
    for key, value in list(out.__dict__.items()):
        if key.startswith("_") and isinstance(value, (dict, set)):
            out.__dict__[key] = copy.copy(value)
    out.__class__ = _wired_class(dense)  # type: ignore[assignment]
    out._init_wiring(rule, None, None, None, attach=False)
    return out


def sparsify(
    module: nn.Module,
    *,
    density: float | None = None,
    k: int | None = None,
    scope: str = "layer",
    keep_first_dense: bool = False,
    rule: str | WiringRule = "dnw",
    inplace: bool = False,
    seed: int | None = None,
    distribution: str | None = None,
) -> nn.Module:
    """Turn the ``Linear``, ``Conv1d/2d/3d`` and attention layers of a network into wired layers.

    Each layer becomes a wired bipartite channel graph whose edges carry its kernels,
    keeping its weights and bias; the selection is per weight. Subclasses of these
    layers that keep their ``forward`` (such as torch's
    ``NonDynamicallyQuantizableLinear``) are converted too; a subclass with its own
    ``forward`` is left dense with a warning. An ``nn.MultiheadAttention`` becomes a
    :class:`~graphwire.layers.WiredMultiheadAttention` whose four projections (query,
    key, value, output) are wired layers, each a layer of the budget; one with
    ``add_bias_kv`` or ``add_zero_attn`` is left dense with a warning naming its
    parameters. A ``torch.nn.TransformerEncoder`` holding a converted attention gets
    ``use_nested_tensor = False`` (torch's nested-tensor fast path reads the fused
    attention weights; the ordinary path computes the same). Other layers (norms,
    activations, pooling) are untouched. At ``density=1`` the network computes exactly
    what it computed before.

    Args:
        module: Any network.
        density: Fraction of weights to keep: in every layer (``scope="layer"``) or over
            all the layers together (``scope="global"``).
        k: Weights to keep in total, instead of ``density`` (split over layers in
            proportion to their sizes with ``scope="layer"``).
        scope: ``"layer"``: one top-k per layer, a uniform rate (the paper's ResNet-50);
            ``"global"``: one top-k over all converted layers
            (:class:`~graphwire.wiring.SharedBudget`).
            A global top-k by ``|w|`` favours layers whose weights start larger.
        keep_first_dense: Leave the first ``Linear``/``Conv`` layer (in module order)
            dense.
        rule: Wiring rule name or instance, applied to every converted layer.
        inplace: Convert ``module`` itself instead of a deep copy.
        seed: Seed of a random rule's draw.
        distribution: How the budget is spread over the layers
            (:data:`~graphwire.wiring.DISTRIBUTIONS`): ``"uniform"`` (the same density in
            every layer, what ``scope="layer"`` does), ``"erk"`` (Erdos-Renyi-Kernel, as in
            RigL: small layers denser; see :func:`~graphwire.wiring.distribute_budget`)
            or ``"global"`` (one top-k over all layers, what ``scope="global"`` does).
            ``None`` follows ``scope``; with ``"uniform"`` or ``"erk"`` every layer has a
            budget of its own.

    Returns:
        The network with wired layers (``module`` itself when ``inplace``).

    Raises:
        ConfigError: if ``module`` is not a module or has no layer to convert.
        SelectionError: for an unknown ``scope`` or ``distribution``, or a
            ``distribution`` other than ``"global"`` with ``scope="global"``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from graphwire.layers import sparsify
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
        >>> _ = net(torch.randn(1, 3, 6, 6))
        >>> sparse = sparsify(net, density=0.2, keep_first_dense=True)
        >>> type(sparse[0]).__name__, type(sparse[3]).__name__, int(sparse[3].edge_mask.sum())
        ('Conv2d', 'WiredLinear', 102)
    """
    choose("scope", scope, dict.fromkeys(SPARSIFY_SCOPES), SelectionError)
    if distribution is None:
        distribution = "global" if scope == "global" else "uniform"
    choose("distribution", distribution, dict.fromkeys(DISTRIBUTIONS), SelectionError)
    if scope == "global" and distribution != "global":
        raise SelectionError(
            f"scope='global' is one top-k over all layers, but distribution={distribution!r} "
            "splits the budget per layer; give one of them (distribution alone is enough)."
        )
    if not isinstance(module, nn.Module):
        raise ConfigError(f"module must be an nn.Module; got {describe(module)}.")
    model = module if inplace else copy.deepcopy(module)
    targets = _targets(model)
    if keep_first_dense:
        targets = targets[1:]
    if not targets:
        raise ConfigError(
            f"module has no Linear, Conv1d/2d/3d or MultiheadAttention layer to sparsify"
            f"{' after keeping the first one dense' if keep_first_dense else ''}; got "
            f"{type(module).__name__}. Pass a network that has such layers."
        )
    from graphwire.layers import _attention  # it builds on this module's layers

    rule = make_rule(rule)
    wired = []
    for name, dense in targets:
        if isinstance(dense, nn.MultiheadAttention):
            attention = _attention.WiredMultiheadAttention.from_dense(dense, rule)
            new: nn.Module = attention
            wired.extend(attention.projections())
        else:
            new = _wired_copy(dense, rule)
            wired.append(new)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    for m in model.modules():
        if isinstance(m, nn.TransformerEncoder) and any(
            isinstance(a, _attention.WiredMultiheadAttention) for a in m.modules()
        ):
            # torch's nested-tensor fast path reads the fused attention weights and would
            # feed nested tensors to the wired attention; the ordinary path is the same math
            m.use_nested_tensor = False
    if distribution == "global":
        SharedBudget(wired, rule=rule, k=k, density=density, seed=seed)
        return model
    sizes = [layer.weight.numel() for layer in wired]
    if distribution == "erk" and rule.uses_budget:
        total = sum(resolve_budget([sum(sizes)], k=k, density=density))
        shares = distribute_budget(total, [layer.weight.shape for layer in wired], "erk")
        counts: list[int | None] = [max(c, 1) for c in shares]
        density = None
    elif k is not None and rule.uses_budget:
        counts = list(resolve_budget(sizes, k=k, density=None))
    else:
        counts = [k] * len(wired)
    for i, (layer, kk) in enumerate(zip(wired, counts)):
        layer_seed = None if seed is None else seed + i
        SharedBudget([layer], rule=rule, k=kk, density=density, seed=layer_seed)
    return model
