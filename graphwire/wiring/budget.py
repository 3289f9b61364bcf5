"""Edge budgets shared by wired modules: one rule and one top-k per scope.

Every wired module (:class:`~graphwire.WiredGraph`, :class:`~graphwire.layers.WiredLinear`,
...) belongs to exactly one :class:`SharedBudget`. A module built on its own gets a
budget of its own; :func:`~graphwire.layers.sparsify` with ``budget="global"`` puts all
layers in one, so the ``k`` largest ``|w|`` are kept *across* layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from graphwire._native import zero_unselected
from graphwire.errors import ConfigError
from graphwire.wiring._rules import make_rule
from graphwire.wiring._rules.base import WiringRule, replace_mask

if TYPE_CHECKING:  # pragma: no cover
    from torch.optim import Optimizer

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

    :class:`~graphwire.DNWOptimizer` re-selects each budget once per step: it calls
    :meth:`before_step` before the base optimizer's step and :meth:`reselect` after it,
    which run the rule's hooks (:meth:`~graphwire.wiring.WiringRule.before_step`,
    :meth:`~graphwire.wiring.WiringRule.update`).

    With a rule whose ``fan_in`` is ``"constant"`` each scope is split by target: every
    node of a graph (the target of the edge), every output channel of a layer, keeps
    ``f = count // targets`` incoming edges (or all of its candidates, if it has fewer),
    so the kept total may fall a little below the budget. The rule then selects, drops
    and grows within each target, and the fan-in holds after every step.

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
        members: The index tensors the rule selects in (``scopes``, or one per target
            with a constant fan-in); ``None`` for one scope over everything.
        quota: Weights kept per entry of ``members``.
        scratch: Per-step storage of the rule's hooks (e.g. RigL's growth scores).
        steps: Optimizer steps taken (set by :meth:`reselect` with a step, and by
            :meth:`DNWOptimizer.load_state_dict <graphwire.DNWOptimizer.load_state_dict>`):
            the wired layers ask the rule whether step ``steps + 1`` needs the dense weight
            gradient (:meth:`~graphwire.wiring.WiringRule.dense_weight_grad`).

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
        self.members, self.quota = self.scopes, self.counts
        if getattr(self.rule, "fan_in", "any") == "constant":
            self._split_by_target()
        self.k = sum(self.counts)
        self.scratch: dict[str, Any] = {}
        self.steps = 0
        self._pending: tuple[int, Optimizer | None] | None = None
        for module in self.modules:
            module.shared_budget, module.rule = self, self.rule
            self.rule.setup(module)
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        self._assign(self.rule.initial_mask(self.view(), self.quota, self.members, generator))
        if self.rule.zeroes_unselected:
            with torch.no_grad():
                for m in self.modules:
                    m.weight.masked_fill_(~m.edge_mask, 0.0)

    def _split_by_target(self) -> None:
        """Constant fan-in: one member scope per target, ``count // targets`` edges each."""
        targets, offset = [], 0
        for m in self.modules:
            groups = m.fan_in_groups().reshape(-1).cpu()
            targets.append(groups + offset)
            offset += int(groups.max()) + 1 if groups.numel() else 0
        target = torch.cat(targets)
        scopes = self.scopes if self.scopes is not None else [torch.arange(target.numel())]
        members, quota, counts = [], [], []
        for idx, count in zip(scopes, self.counts):
            idx = idx.cpu()
            order = torch.argsort(target[idx], stable=True)
            sizes = torch.unique_consecutive(target[idx][order], return_counts=True)[1]
            parts = idx[order].split(sizes.tolist())
            per_target = count // max(len(parts), 1)
            kept = [min(per_target, p.numel()) for p in parts]
            members.extend(parts)
            quota.extend(kept)
            counts.append(sum(kept))
        self.members, self.quota, self.counts = members, quota, counts

    # ------------------------------------------------------------ what rules see
    @property
    def numel(self) -> int:
        """Candidate weights of all modules together."""
        return sum(m.weight.numel() for m in self.modules)

    @property
    def device(self) -> torch.device:
        """Device of the modules' weights."""
        return self.modules[0].weight.device

    @property
    def member_sizes(self) -> list[int]:
        """Candidates in each entry of ``members``."""
        if self.members is None:
            return [self.numel]
        return [int(idx.numel()) for idx in self.members]

    def flat_mask(self) -> Tensor:
        """The modules' masks as one boolean ``[E]`` vector (a copy)."""
        return torch.cat([m.edge_mask.reshape(-1) for m in self.modules])

    def flat_weight(self) -> Tensor:
        """The modules' weights as one detached ``[E]`` vector (a copy)."""
        return torch.cat([m.weight.detach().reshape(-1) for m in self.modules])

    def flat_grad(self) -> Tensor:
        """The modules' weight gradients as one ``[E]`` vector (zeros where there is none)."""
        return torch.cat(
            [
                (m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight))
                .detach()
                .reshape(-1)
                for m in self.modules
            ]
        )

    @torch.no_grad()
    def mask_grads(self, l1: float = 0.0) -> None:
        """Zero the gradients of unselected weights; first add ``l1 * sign(w)`` when given."""
        for m in self.modules:
            grad = m.weight.grad
            if grad is None:
                continue
            if l1:
                grad.add_(torch.sign(m.weight), alpha=l1)
            zero_unselected(grad, m.edge_mask)

    @torch.no_grad()
    def reset_edges(self, where: Tensor, optimizer: Optimizer | None = None) -> None:
        """Set the weights at the flat boolean ``where`` to zero, and their optimizer state.

        Every tensor of ``optimizer.state[weight]`` of the weight's shape (momentum,
        Adam's moments) is zeroed at those entries.
        """
        sizes = [m.weight.numel() for m in self.modules]
        for m, part in zip(self.modules, where.reshape(-1).split(sizes)):
            part = part.view(m.weight.shape).to(m.weight.device)
            m.weight.masked_fill_(part, 0.0)
            state = optimizer.state.get(m.weight, {}) if optimizer is not None else {}
            for value in state.values():
                if isinstance(value, Tensor) and value.shape == m.weight.shape:
                    value.masked_fill_(part, 0)

    @property
    def layers(self) -> list[WiredModule]:
        """The modules (the name of the wired layers' budgets)."""
        return self.modules

    def view(self):
        """What the rule ranks: the module itself (one flat module) or a flat view."""
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

    def before_step(self, step: int, optimizer: Optimizer | None = None) -> None:
        """Run the rule's hook before the base optimizer's step ``step`` (counted from 1).

        The next :meth:`reselect` without a ``step`` then updates for this step.
        """
        self.rule.before_step(self, step, optimizer)
        self._pending = (step, optimizer)

    @torch.no_grad()
    def reselect(
        self, step: int | None = None, optimizer: Optimizer | None = None
    ) -> dict[nn.Module, tuple[int, int]]:
        """Re-select the edges of every module; return ``{module: (added, removed)}``.

        Args:
            step: The optimizer step just taken (from 1); the rule's
                :meth:`~graphwire.wiring.WiringRule.update` decides what changes.
                ``None`` (a re-selection outside training, e.g. after loading weights)
                re-selects by the rule's top-k when it ``reselects``, and otherwise keeps
                the mask. After :meth:`before_step` it defaults to that step.
            optimizer: The base optimizer, whose state a rule may reset for swapped edges.
        """
        pending, self._pending = self._pending, None
        if step is None and pending is not None:
            step, optimizer = pending
        if step is not None:
            self.steps = step
            new = self.rule.update(self, step, optimizer)
            if new is None:
                return {m: (0, 0) for m in self.modules}
            return self._assign(new)
        if not self.rule.reselects:
            return {m: (0, 0) for m in self.modules}
        return self._assign(self.rule.select(self.view(), self.quota, self.members))

    def dense_weight_grad(self) -> bool:
        """Whether the next backward pass (of step ``steps + 1``) needs every weight's gradient."""
        return self.rule.dense_weight_grad(self.steps + 1)

    def __repr__(self) -> str:
        total = sum(m.weight.numel() for m in self.modules)
        return (
            f"SharedBudget(modules={len(self.modules)}, kept={self.k} of {total}, "
            f"rule={self.rule!r})"
        )
