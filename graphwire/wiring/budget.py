"""Edge budgets shared by wired modules: one rule and one top-k per scope.

Every wired module (:class:`~graphwire.WiredGraph`, :class:`~graphwire.layers.WiredLinear`,
...) belongs to exactly one :class:`SharedBudget`. A module built on its own gets a
budget of its own; :func:`~graphwire.layers.sparsify` with ``budget="global"`` puts all
layers in one, so the ``k`` largest ``|w|`` are kept *across* layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from graphwire.errors import ConfigError
from graphwire.wiring.rules import WiringRule, make_rule, replace_mask

if TYPE_CHECKING:  # pragma: no cover
    from graphwire.wiring.module import WiredModule

__all__ = ["SharedBudget"]


class _FlatView:
    """What a wiring rule sees of a budget's modules: their weights as one flat ``[E]`` vector.

    Rules rank edges by ``rule.scores(module)`` (``|module.weight|`` by default); this
    view lets one rule and one top-k act on several modules of different shapes.
    """

    def __init__(self, modules: Sequence[nn.Module]):
        self.weight = torch.cat([m.weight.detach().reshape(-1) for m in modules])
        self.training = any(m.training for m in modules)


class SharedBudget:
    """One edge budget, one wiring rule and one top-k per scope over one or more wired modules.

    :class:`~graphwire.DNWOptimizer` re-selects each budget once per step.

    Args:
        modules: The wired modules sharing the budget (their weights are concatenated
            in this order).
        rule: A wiring rule name or instance; every module of the budget uses it.
        k: Weights to keep in total, or a mapping from scope name to count.
        density: Fraction of the modules' weights to keep, instead of ``k``.
        seed: Seed of a random rule's draw; ``None`` uses torch's global generator.
        scopes: Optional int64 index tensors into the concatenated weights, one per
            scope, each with a top-k of its own (e.g. one per node group of a graph);
            default one scope over everything.
        scope_names: Names of the scopes, for a mapping ``k`` and for messages.
        generator: A generator for a random rule's draw, instead of ``seed``.

    Attributes:
        modules: The modules, in the order their weights are concatenated.
        counts: Weights kept per scope.
        k: Weights kept in total.

    Example:
        >>> from graphwire.layers import WiredLinear
        >>> from graphwire.wiring import SharedBudget
        >>> a, b = WiredLinear(4, 4, density=1.0), WiredLinear(4, 2, density=1.0)
        >>> shared = SharedBudget([a, b], density=0.25)
        >>> shared.k, int(a.edge_mask.sum() + b.edge_mask.sum())
        (6, 6)
    """

    def __init__(
        self,
        modules: Iterable[WiredModule],
        *,
        rule: str | WiringRule = "dnw",
        k: int | Mapping[str, int] | None = None,
        density: float | None = None,
        seed: int | None = None,
        scopes: Sequence[Tensor] | None = None,
        scope_names: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        from graphwire.wiring.module import WiredModule

        self.modules = list(modules)
        if not self.modules or not all(isinstance(m, WiredModule) for m in self.modules):
            raise ConfigError(
                f"modules must be a non-empty list of wired modules (WiredGraph, WiredLinear, "
                f"WiredConv2d, ...); got {[type(m).__name__ for m in self.modules]}."
            )
        self.rule = make_rule(rule)
        total = sum(m.weight.numel() for m in self.modules)
        self.scopes = None if scopes is None else list(scopes)
        sizes = [total] if self.scopes is None else [int(s.numel()) for s in self.scopes]
        self.counts: list[int] = self.rule.budget(sizes, k=k, density=density, names=scope_names)
        self.k = sum(self.counts)
        for module in self.modules:
            module.shared_budget, module.rule = self, self.rule
            self.rule.setup(module)
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        self._assign(self.rule.initial_mask(self._view(), self.counts, self.scopes, generator))

    @property
    def layers(self) -> list[WiredModule]:
        """The modules (the name of the wired layers' budgets)."""
        return self.modules

    def _view(self):
        # one module with a flat weight is its own view (a rule's setup may have given it
        # extra state, e.g. learned scores); anything else is seen flattened
        if len(self.modules) == 1 and self.modules[0].weight.dim() == 1:
            return self.modules[0]
        return _FlatView(self.modules)

    @torch.no_grad()
    def _assign(self, flat: Tensor) -> dict[nn.Module, tuple[int, int]]:
        sizes = [m.weight.numel() for m in self.modules]
        parts = flat.reshape(-1).split(sizes)
        return {
            m: replace_mask(m.edge_mask, part.view(m.edge_mask.shape))
            for m, part in zip(self.modules, parts)
        }

    @torch.no_grad()
    def reselect(self) -> dict[nn.Module, tuple[int, int]]:
        """Re-select the edges of every module; return ``{module: (added, removed)}``."""
        if not self.rule.reselects:
            return {m: (0, 0) for m in self.modules}
        return self._assign(self.rule.select(self._view(), self.counts, self.scopes))

    def __repr__(self) -> str:
        total = sum(m.weight.numel() for m in self.modules)
        return (
            f"SharedBudget(modules={len(self.modules)}, kept={self.k} of {total}, "
            f"rule={self.rule!r})"
        )
