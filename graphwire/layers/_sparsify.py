"""``sparsify``: the ``Conv``, ``Linear`` and attention layers of any network, wired.

:func:`sparsify` turns the layers of an existing network into wired layers
(:mod:`graphwire.layers`), with one budget per layer (a uniform rate, the paper's
ResNet-50 runs), a split of one total by the ERK distribution, or one global top-k over
all of them (:class:`~graphwire.wiring.SharedBudget`).
"""

from __future__ import annotations

import copy
import warnings

from torch import nn

from graphwire._utils import choose, describe, replace_modules
from graphwire.errors import ConfigError, SelectionError
from graphwire.layers._attention import WiredMultiheadAttention
from graphwire.layers._wired_layers import WIRED_OF, WiredLayer, wired_class, wired_copy
from graphwire.wiring import WiringRule, make_rule
from graphwire.wiring.budget import SharedBudget
from graphwire.wiring.topk import DISTRIBUTIONS, distribute_budget, resolve_budget

__all__ = ["SCOPES", "sparsify"]

#: Scopes of :func:`sparsify`'s top-k: one budget per layer, or one over all layers.
SCOPES = ("layer", "global")


def _convertible(name: str, module: nn.Module) -> bool:
    """Whether :func:`sparsify` turns ``module`` into a wired layer (warning if it cannot).

    ``Linear`` / ``Conv`` layers and their subclasses (such as torch's
    ``NonDynamicallyQuantizableLinear``) are converted, unless already wired, lazy and
    not yet initialised, or a subclass with its own ``forward`` (which a wired layer
    would silently replace: such a layer is left dense, with a warning).
    """
    if wired_class(module) is None or isinstance(module, WiredLayer):
        return False
    if isinstance(module.weight, nn.parameter.UninitializedParameter):
        return False
    dense = next(c for c in type(module).__mro__ if c in WIRED_OF)
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
            (:data:`~graphwire.wiring.topk.DISTRIBUTIONS`): ``"uniform"`` (the same density in
            every layer, what ``scope="layer"`` does), ``"erk"`` (Erdos-Renyi-Kernel, as in
            RigL: small layers denser; see :func:`~graphwire.wiring.topk.distribute_budget`)
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
    choose("scope", scope, dict.fromkeys(SCOPES), SelectionError)
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
    rule = make_rule(rule)
    wired: list[WiredLayer] = []  # in module order: the layers of the budgets

    def wire(name: str, dense: nn.Module) -> nn.Module:
        if isinstance(dense, nn.MultiheadAttention):
            attention = WiredMultiheadAttention.from_dense(dense, rule)
            wired.extend(attention.projections())
            return attention
        wired.append(wired_copy(dense, rule))
        return wired[-1]

    chosen = {id(m) for _, m in targets}
    model, _ = replace_modules(model, lambda name, m: id(m) in chosen, wire)
    for m in model.modules():
        if isinstance(m, nn.TransformerEncoder) and any(
            isinstance(a, WiredMultiheadAttention) for a in m.modules()
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
