"""Pruning rules: training starts dense and the kept count shrinks to the budget.

:class:`GMP` (gradual magnitude pruning, a cubic schedule) and :class:`L1Anneal` (the
DNW paper's "L1 + anneal" baseline, a linear schedule with an L1 penalty). Pruned edges
never return.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import torch

from graphwire.errors import SelectionError
from graphwire.wiring._rules.base import Scheduled, check_fan_in, check_int, per_scope, restrict
from graphwire.wiring.topk import select_topk

if TYPE_CHECKING:  # pragma: no cover
    from graphwire.wiring.budget import SharedBudget

__all__ = ["Pruning", "GMP", "L1Anneal"]


class Pruning(Scheduled):
    """Dense start, kept counts shrinking to the budget: the base of GMP and L1 + anneal."""

    starts_dense = True

    def initial_mask(self, module, budget, members, generator):  # noqa: D102
        return torch.ones_like(module.weight, dtype=torch.bool)

    @abc.abstractmethod
    def progress(self, step: int) -> float:
        """Fraction of the way from dense to the budget after ``step``."""

    @abc.abstractmethod
    def is_update_step(self, step: int) -> bool:
        """Whether the mask is pruned after ``step``."""

    def kept(self, budget: SharedBudget, step: int) -> list[int]:
        """Edges each scope keeps after ``step``."""
        shrink = (1.0 - self.progress(step)) ** self.power
        return [
            q + round((size - q) * shrink) for q, size in zip(budget.quota, budget.member_sizes)
        ]

    def new_mask(self, budget, step, optimizer):  # noqa: D102
        if not self.is_update_step(step):
            return None
        mask = budget.flat_mask()
        scores = restrict(budget.flat_weight().abs(), mask)  # pruned edges never return
        counts = [
            min(c, a) for c, a in zip(self.kept(budget, step), per_scope(mask, budget.members))
        ]
        new = select_topk(scores, counts, budget.members)
        return new & mask


class GMP(Pruning):
    """Gradual magnitude pruning (Zhu and Gupta, "To prune, or not to prune", 2017).

    Training starts dense (every candidate selected). From step ``t_start``, every
    ``delta_t`` steps until ``t_end``, each scope keeps its largest-``|w|`` selected
    edges, as many as the cubic schedule allows: the sparsity
    ``s_t = s_f + (s_i - s_f) (1 - (t - t_start) / (t_end - t_start))^3`` with ``s_i = 0``
    and ``s_f`` the budget's, so a scope of ``n`` candidates and budget ``q`` keeps
    ``q + round((n - q) (1 - p)^3)`` edges at progress ``p``. Pruned edges are zero and
    never return; the budget is reached at ``t_end``.

    Args:
        t_end: Step at which the budget is reached (required; the paper prunes over
            roughly the first half of training).
        t_start: First pruning step (the paper: 0 when training from scratch).
        delta_t: Steps between pruning steps (the paper: 100 to 1000).
        fan_in: ``"any"`` or ``"constant"`` (at the end every node keeps the same count).

    Example:
        >>> from graphwire.wiring import GMP
        >>> GMP(t_end=1000).progress(500)
        0.5
    """

    name = "gmp"
    power = 3

    def __init__(self, t_end: int, t_start: int = 0, delta_t: int = 100, fan_in: str = "any"):
        self.t_end = check_int("GMP t_end", t_end, 1)
        self.t_start = check_int("GMP t_start", t_start, 0)
        if self.t_start >= self.t_end:
            raise SelectionError(
                f"GMP t_start must be below t_end; got t_start={t_start}, t_end={t_end}."
            )
        self.delta_t = check_int("GMP delta_t", delta_t, 1)
        self.fan_in = check_fan_in(fan_in)

    def progress(self, step: int) -> float:  # noqa: D102
        return min(max((step - self.t_start) / (self.t_end - self.t_start), 0.0), 1.0)

    def is_update_step(self, step: int) -> bool:  # noqa: D102
        if step < self.t_start or step > self.t_end:
            return False
        return (step - self.t_start) % self.delta_t == 0 or step == self.t_end

    def __repr__(self) -> str:
        fan = "" if self.fan_in == "any" else f", fan_in={self.fan_in!r}"
        return f"GMP(t_end={self.t_end}, t_start={self.t_start}, delta_t={self.delta_t}{fan})"


class L1Anneal(Pruning):
    """L1 regularisation with an annealed threshold: the DNW paper's "L1 + anneal" baseline.

    Wortsman, Farhadi and Rastegari (NeurIPS 2019) compare DNW with this rule (84.3% to
    DNW's 89.7% on CIFAR-10, MobileNetV1-like x0.225). Training starts dense. Before
    every base step the rule adds the L1 subgradient ``l1 * sign(w)`` to the gradient of
    every selected edge weight (the penalty ``l1 * sum |w|``; the user adds nothing to the
    loss). After every ``delta_t`` steps the edges whose ``|w|`` lies below the threshold
    are removed for good; the threshold rises over training so that the kept count falls
    linearly from every candidate to the budget, reached at ``anneal_end`` (default 60%
    of ``total_steps``, so that the pruned network trains on, as GMP's schedule does).
    The paper gives neither the coefficient nor the annealing schedule; these are
    graphwire's choices: on the ``rules`` suite, reaching the budget at the last step
    ended at 27-56% on the tiny classifiers and 27% on the ResNet; at 60% of training,
    62-66% and 98%.

    Args:
        total_steps: Optimizer steps in the whole run (required).
        l1: Coefficient of the L1 penalty.
        anneal_end: Step at which the budget is reached (default
            ``max(1, int(0.6 * total_steps))``).
        delta_t: Steps between threshold updates.
        fan_in: ``"any"`` or ``"constant"``.

    Example:
        >>> from graphwire.wiring import L1Anneal
        >>> L1Anneal(total_steps=100).progress(30)
        0.5
    """

    name = "l1_anneal"
    power = 1

    def __init__(
        self,
        total_steps: int,
        l1: float = 1e-4,
        anneal_end: int | None = None,
        delta_t: int = 1,
        fan_in: str = "any",
    ):
        self.total_steps = check_int("L1Anneal total_steps", total_steps, 1)
        if isinstance(l1, bool) or not isinstance(l1, (int, float)) or l1 < 0:
            raise SelectionError(f"L1Anneal l1 must be a number >= 0; got {l1!r}.")
        self.l1 = float(l1)
        end = max(1, int(0.6 * total_steps)) if anneal_end is None else anneal_end
        self.anneal_end = check_int("L1Anneal anneal_end", end, 1)
        self.delta_t = check_int("L1Anneal delta_t", delta_t, 1)
        self.fan_in = check_fan_in(fan_in)

    def progress(self, step: int) -> float:  # noqa: D102
        return min(step / self.anneal_end, 1.0)

    def is_update_step(self, step: int) -> bool:  # noqa: D102
        return step <= self.anneal_end and (step % self.delta_t == 0 or step == self.anneal_end)

    def before_step(self, budget, step, optimizer):  # noqa: D102
        budget.mask_grads(l1=self.l1)

    def __repr__(self) -> str:
        fan = "" if self.fan_in == "any" else f", fan_in={self.fan_in!r}"
        return (
            f"L1Anneal(total_steps={self.total_steps}, l1={self.l1}, "
            f"anneal_end={self.anneal_end}, delta_t={self.delta_t}{fan})"
        )
