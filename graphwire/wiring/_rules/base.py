"""The base of wiring rules: :class:`WiringRule`, the straight-through product, mask swaps.

A rule answers three questions for a wired module: which edges to start with, whether
to re-select after every optimizer step, and how the gradient reaches the edge weights
(straight-through to every candidate, or only to the selected ones). The rules
themselves are split by family: :mod:`~graphwire.wiring._rules.dnw` (DNW and the
paper's baselines), :mod:`~graphwire.wiring._rules.dynamic` (dynamic sparse training:
RigL, SET) and :mod:`~graphwire.wiring._rules.pruning` (GMP, L1 + anneal).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from graphwire._native import replace_counting
from graphwire._utils import choose
from graphwire.errors import SelectionError
from graphwire.wiring.topk import resolve_budget, select_topk

if TYPE_CHECKING:  # pragma: no cover
    from torch.optim import Optimizer

    from graphwire.wiring.budget import SharedBudget

__all__ = [
    "FAN_IN",
    "Scheduled",
    "WiringRule",
    "check_fan_in",
    "check_fraction",
    "check_int",
    "per_scope",
    "random_mask",
    "replace_mask",
    "restrict",
    "straight_through",
]


def straight_through(weight: Tensor, mask: Tensor) -> Tensor:
    """``weight * mask`` in the forward pass, the identity in the backward pass.

    Every edge, selected or not, receives the gradient ``dL/dw_uv = <Z_u, dL/dI_v>``;
    no gradient flows *through* an unselected edge, since its effective weight is 0.

    Example:
        >>> import torch
        >>> from graphwire.wiring._rules.base import straight_through
        >>> w = torch.tensor([2.0, 3.0], requires_grad=True)
        >>> y = straight_through(w, torch.tensor([True, False]))
        >>> y.detach().tolist()
        [2.0, 0.0]
        >>> y.sum().backward(); w.grad.tolist()
        [1.0, 1.0]
    """
    return weight - (weight * ~mask).detach()


@torch.no_grad()
def replace_mask(mask: Tensor, new: Tensor) -> tuple[int, int]:
    """Copy ``new`` into the ``mask`` buffer in place; return ``(swapped in, swapped out)``.

    Example:
        >>> import torch
        >>> from graphwire.wiring._rules.base import replace_mask
        >>> mask = torch.tensor([True, False, True])
        >>> replace_mask(mask, torch.tensor([False, True, True])), mask.tolist()
        ((1, 1), [False, True, True])
    """
    if new.shape != mask.shape:
        raise SelectionError(
            f"new mask has shape {tuple(new.shape)}; expected {tuple(mask.shape)}."
        )
    return replace_counting(mask, new.to(device=mask.device, dtype=mask.dtype))


#: Fan-in constraints of a rule: ``"any"`` (edges go wherever the selection puts them) or
#: ``"constant"`` (every node, or every output channel of a layer, keeps the same number of
#: incoming edges; see :class:`~graphwire.wiring.SharedBudget`).
FAN_IN = ("any", "constant")


def check_fan_in(fan_in: str) -> str:
    choose("fan_in", fan_in, dict.fromkeys(FAN_IN), SelectionError)
    return fan_in


class WiringRule:
    """Base class of wiring rules; subclass it to add one (e.g. learned scores).

    :class:`~graphwire.DNWOptimizer` calls two hooks of the rule of every budget at each
    optimizer step ``step`` (counted from 1): :meth:`before_step` before the base
    optimizer updates the weights, and :meth:`update` after it. The default hooks do
    nothing before the step and re-select by :meth:`select` after it (when
    ``reselects``); the scheduled rules (:class:`RigL`, :class:`SET`, :class:`L1Anneal`,
    :class:`GMP`) override them.

    Attributes:
        name: Registry name.
        reselects: Re-select the edges by :meth:`select` after each optimizer step.
        straight_through: Give every candidate edge a gradient (the DNW update), or only
            the selected ones.
        uses_budget: Whether the rule needs ``k`` or ``density``.
        fan_in: ``"any"`` or ``"constant"`` (see :data:`~graphwire.wiring._rules.base.FAN_IN`).
        zeroes_unselected: Set the weights of unselected edges to zero when the budget is
            built (sparse training, where an inactive weight is exactly zero).
        starts_dense: Whether every candidate starts selected (pruning rules), so an
            initial weight scale should count every candidate, not the budget.
    """

    name = "base"
    reselects = False
    straight_through = False
    uses_budget = True
    fan_in = "any"
    zeroes_unselected = False
    starts_dense = False

    def budget(
        self,
        sizes: Sequence[int],
        *,
        k: int | Mapping[str, int] | None,
        density: float | None,
        names: Sequence[str] | None = None,
    ) -> list[int]:
        """Edges to keep per scope, one count per entry of ``sizes``.

        A rule that uses a budget resolves ``k`` or ``density`` with
        :func:`~graphwire.wiring.topk.resolve_budget`; one that does not keeps every candidate,
        and then ``k`` and ``density`` must not be given.

        Raises:
            SelectionError: for a bad budget, or a budget given to a rule without one.
        """
        if self.uses_budget:
            return resolve_budget(sizes, k=k, density=density, names=names)
        if k is not None or density is not None:
            raise SelectionError(
                f"rule={self.name!r} takes no k or density; got k={k!r}, density={density!r}."
            )
        return list(sizes)

    def setup(self, module: nn.Module) -> None:
        """Hook run once when ``module`` is built, e.g. to register extra parameters."""

    def scores(self, module: nn.Module) -> Tensor:
        """The ``[E]`` scores edges are ranked by; ``|w|`` by default."""
        return module.weight.detach().abs()

    def select(self, module: nn.Module, budget: Sequence[int], members) -> Tensor:
        """The boolean ``[E]`` mask of selected edges for the current scores."""
        if type(self).scores is WiringRule.scores:  # |w|: ranked without a |w| temporary
            return select_topk(module.weight.detach(), budget, members, magnitude=True)
        return select_topk(self.scores(module), budget, members)

    def initial_mask(
        self, module: nn.Module, budget: Sequence[int], members, generator: torch.Generator | None
    ) -> Tensor:
        """The mask a freshly built module starts with."""
        return self.select(module, budget, members)

    def effective_weight(self, module: nn.Module, weight: Tensor, mask: Tensor) -> Tensor:
        """The ``[E]`` weights the forward pass uses."""
        return straight_through(weight, mask) if self.straight_through else weight * mask

    def dense_weight_grad(self, step: int) -> bool:
        """Whether the backward pass of step ``step`` (from 1) needs every weight's gradient.

        ``False`` lets a wired layer compute the weight gradient at its selected weights
        only (sparse training: the gradient of an unselected weight is zero, or is
        zeroed before the base step). By default a straight-through rule needs every
        gradient (DNW grows edges by it); :class:`RigL` needs it only on its update steps.

        Example:
            >>> from graphwire.wiring import DNW, SET
            >>> DNW().dense_weight_grad(1), SET().dense_weight_grad(1)
            (True, False)
        """
        return self.straight_through

    def before_step(self, budget: SharedBudget, step: int, optimizer: Optimizer | None) -> None:
        """Hook run before the base optimizer's step ``step`` (from 1); does nothing here.

        The gradients are in the modules' ``weight.grad``; a rule may read them (RigL's
        growth) or change them (mask them, add a penalty).
        """

    def update(self, budget: SharedBudget, step: int, optimizer: Optimizer | None) -> Tensor | None:
        """The budget's new flat ``[E]`` mask after step ``step``, or ``None`` to keep it.

        By default the rule's :meth:`select` when it ``reselects``.
        """
        if not self.reselects:
            return None
        return self.select(budget.view(), budget.quota, budget.members)

    def state_dict(self) -> dict[str, Any]:
        """The rule's own state (e.g. a generator's), saved by :class:`~graphwire.DNWOptimizer`."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""

    def __repr__(self) -> str:
        extra = "" if self.fan_in == "any" else f"fan_in={self.fan_in!r}"
        return f"{type(self).__name__}({extra})"


def check_int(name: str, value: Any, low: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SelectionError(f"{name} must be an int >= {low}; got {value!r}.")
    return value


def check_fraction(name: str, value: Any) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or not 0.0 <= value <= 1.0:
        raise SelectionError(f"{name} must be a number in [0, 1]; got {value!r}.")
    return float(value)


def random_mask(e: int, budget: Sequence[int], members, generator, device) -> Tensor:
    """``budget[s]`` candidates drawn uniformly in each scope (G(n, M))."""
    scopes = members if members is not None else [torch.arange(e)]
    mask = torch.zeros(e, dtype=torch.bool)
    for idx, kk in zip(scopes, budget):
        pick = torch.randperm(idx.numel(), generator=generator)[: int(kk)]
        mask[idx.cpu()[pick]] = True
    return mask.to(device)


def per_scope(values: Tensor, members) -> list[int]:
    """``values`` (boolean ``[E]``) counted in each scope."""
    if members is None:
        return [int(values.sum())]
    return [int(values[idx].sum()) for idx in members]


def restrict(scores: Tensor, allowed: Tensor) -> Tensor:
    """``scores`` where ``allowed``, ``-inf`` elsewhere (never selected before an allowed one)."""
    return torch.where(allowed, scores, torch.full_like(scores, float("-inf")))


class Scheduled(WiringRule, abc.ABC):
    """Shared machinery of the rules with a schedule: update steps and exact zeros.

    Inactive weights are exactly zero: the budget zeroes them when it is built, their
    gradient is masked before every base step (so neither the update nor momentum moves
    them), and an edge that leaves or joins at an update has its weight and its base
    optimizer state (momentum, Adam moments) reset to zero.
    """

    zeroes_unselected = True

    def before_step(self, budget, step, optimizer):  # noqa: D102
        budget.mask_grads()

    def update(self, budget, step, optimizer):  # noqa: D102
        new = self.new_mask(budget, step, optimizer)
        if new is not None:
            changed = new != budget.flat_mask()
            budget.reset_edges(changed, optimizer)
        return new

    @abc.abstractmethod
    def new_mask(self, budget, step, optimizer) -> Tensor | None:
        """The new mask after ``step``, or ``None`` when ``step`` is no update step."""
