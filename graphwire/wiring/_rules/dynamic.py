"""Dynamic sparse training: rules that keep a fixed edge count and swap edges on a schedule.

:class:`RigL` grows the edges of largest gradient magnitude, :class:`SET` random ones;
both drop the smallest weights every ``delta_t`` steps (:func:`drop_and_grow`) and keep
inactive weights exactly zero between updates.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from graphwire.wiring._rules.base import (
    Scheduled,
    check_fan_in,
    check_fraction,
    check_int,
    per_scope,
    random_mask,
    restrict,
)
from graphwire.wiring.topk import select_topk

if TYPE_CHECKING:  # pragma: no cover
    from graphwire.wiring.budget import SharedBudget

__all__ = ["RigL", "SET", "drop_and_grow"]


def drop_and_grow(budget: SharedBudget, fraction: float, grow_scores: Tensor) -> Tensor:
    """The new flat mask after one drop-and-grow update.

    Each scope drops ``fraction`` of its selected edges with the smallest ``|w|`` and grows
    as many of its other edges with the largest ``grow_scores``.
    """
    mask = budget.flat_mask()
    members = budget.members
    active = per_scope(mask, members)
    drop = [int(fraction * a) for a in active]
    magnitude = budget.flat_weight().abs()
    keep = select_topk(restrict(magnitude, mask), [a - d for a, d in zip(active, drop)], members)
    # every scope has at least ``drop`` edges outside ``keep``: the grown ones are among them
    grow = select_topk(restrict(grow_scores.to(magnitude.dtype), ~keep), drop, members)
    return keep | grow


class RigL(Scheduled):
    """RigL, "Rigging the Lottery" (Evci, Gale, Menick, Castro and Elsen, ICML 2020).

    Sparse from the start: each scope begins with a uniformly random set of its budget's
    edges (the paper's random initial mask; the per-layer ERK distribution is the
    budget's, see :func:`~graphwire.wiring.topk.distribute_budget`). Every ``delta_t`` steps
    until ``t_end``, each scope drops the fraction ``alpha_t`` of its selected edges with
    the smallest ``|w|`` and grows as many of its other edges with the largest gradient
    magnitude ``|dL/dw|`` (the straight-through gradient every candidate receives at that
    step); grown edges start at zero, with their optimizer state cleared. The fraction
    decays by a cosine, ``alpha_t = alpha / 2 * (1 + cos(pi * t / t_end))``. Between
    updates only the selected edges learn (their gradients are masked before the base
    step), and the mask update follows the base step of the update iteration. The edge
    count of every scope never changes, so with ``fan_in="constant"`` every node keeps
    its fan-in (SRigL, Lasby et al., ICLR 2024).

    Args:
        alpha: Initial drop fraction (the paper: 0.3).
        delta_t: Steps between mask updates (the paper: 100).
        t_end: Last step with an update (the paper: 75% of training). ``None`` updates
            for ever with a constant ``alpha``.
        fan_in: ``"any"`` or ``"constant"``.

    Example:
        >>> import torch
        >>> from graphwire import DNWOptimizer, WiredGraph
        >>> from graphwire.graph import bipartite
        >>> from graphwire.wiring import RigL
        >>> net = WiredGraph(bipartite(8, 4), node_op="identity", density=0.25, seed=0,
        ...                  rule=RigL(delta_t=2, t_end=10))
        >>> opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.1))
        >>> for _ in range(4):
        ...     net(torch.randn(16, 8)).pow(2).mean().backward(); opt.step(); opt.zero_grad()
        >>> int(net.edge_mask.sum()), bool((net.weight[~net.edge_mask] == 0).all())
        (8, True)
    """

    name = "rigl"
    straight_through = True  # the growth criterion needs the dense gradient

    def __init__(
        self,
        alpha: float = 0.3,
        delta_t: int = 100,
        t_end: int | None = None,
        fan_in: str = "any",
    ):
        self.alpha = check_fraction("RigL alpha", alpha)
        self.delta_t = check_int("RigL delta_t", delta_t, 1)
        self.t_end = check_int("RigL t_end", t_end, 1, allow_none=True)
        self.fan_in = check_fan_in(fan_in)

    def initial_mask(self, module, budget, members, generator):  # noqa: D102
        return random_mask(module.weight.numel(), budget, members, generator, module.weight.device)

    def drop_fraction(self, step: int) -> float:
        """``alpha_t`` at ``step``: cosine-decayed to 0 at ``t_end`` (constant without one).

        Example:
            >>> from graphwire.wiring import RigL
            >>> RigL(alpha=0.3, t_end=100).drop_fraction(50)
            0.15
        """
        if self.t_end is None:
            return self.alpha
        return round(self.alpha / 2 * (1 + math.cos(math.pi * step / self.t_end)), 12)

    def is_update_step(self, step: int) -> bool:
        """Whether the mask is updated after ``step`` (every ``delta_t``, until ``t_end``)."""
        return step % self.delta_t == 0 and (self.t_end is None or step <= self.t_end)

    def dense_weight_grad(self, step: int) -> bool:
        """Only an update step grows by the gradient of every weight.

        Example:
            >>> from graphwire.wiring import RigL
            >>> [RigL(delta_t=100).dense_weight_grad(s) for s in (99, 100, 101)]
            [False, True, False]
        """
        return self.is_update_step(step)

    def before_step(self, budget, step, optimizer):  # noqa: D102
        if self.is_update_step(step):
            budget.scratch["grow_scores"] = budget.flat_grad().abs()
        budget.mask_grads()

    def new_mask(self, budget, step, optimizer):  # noqa: D102
        scores = budget.scratch.pop("grow_scores", None)
        if scores is None:
            return None
        return drop_and_grow(budget, self.drop_fraction(step), scores)

    def __repr__(self) -> str:
        fan = "" if self.fan_in == "any" else f", fan_in={self.fan_in!r}"
        return f"RigL(alpha={self.alpha}, delta_t={self.delta_t}, t_end={self.t_end}{fan})"


class SET(Scheduled):
    """Sparse Evolutionary Training (Mocanu, Mocanu, Stone, Nguyen, Gibescu and Liotta, 2018).

    Sparse from a random start (an Erdos-Renyi graph per scope). Every ``delta_t`` steps
    (the paper: after each epoch) until ``t_end``, each scope removes the fraction ``zeta``
    of its selected edges closest to zero (smallest ``|w|``) and adds as many of its
    other edges drawn uniformly at random; new edges start at zero. As in :class:`RigL`
    only the selected edges learn and edge counts per scope are preserved.

    Args:
        zeta: Fraction of edges replaced at each update (the paper: 0.3).
        delta_t: Steps between updates (set it to the steps of one epoch for the paper).
        t_end: Last step with an update; ``None``: for ever.
        seed: Seed of the random growth; ``None`` draws from torch's global generator.
        fan_in: ``"any"`` or ``"constant"``.

    Example:
        >>> from graphwire.wiring import SET
        >>> SET(seed=0)
        SET(zeta=0.3, delta_t=100, t_end=None, seed=0)
    """

    name = "set"

    def __init__(
        self,
        zeta: float = 0.3,
        delta_t: int = 100,
        t_end: int | None = None,
        seed: int | None = None,
        fan_in: str = "any",
    ):
        self.zeta = check_fraction("SET zeta", zeta)
        self.delta_t = check_int("SET delta_t", delta_t, 1)
        self.t_end = check_int("SET t_end", t_end, 1, allow_none=True)
        self.seed = seed
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.fan_in = check_fan_in(fan_in)

    def initial_mask(self, module, budget, members, generator):  # noqa: D102
        return random_mask(module.weight.numel(), budget, members, generator, module.weight.device)

    def new_mask(self, budget, step, optimizer):  # noqa: D102
        if step % self.delta_t or (self.t_end is not None and step > self.t_end):
            return None
        draw = torch.rand(budget.numel, generator=self.generator)
        return drop_and_grow(budget, self.zeta, draw.to(budget.device))

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {} if self.generator is None else {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: D102
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        fan = "" if self.fan_in == "any" else f", fan_in={self.fan_in!r}"
        return (
            f"SET(zeta={self.zeta}, delta_t={self.delta_t}, t_end={self.t_end}, "
            f"seed={self.seed}{fan})"
        )
