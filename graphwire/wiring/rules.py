"""Wiring rules: how the edges a network uses are chosen, and which edges learn.

A rule answers three questions for a wired module: which edges to start with, whether
to re-select after every optimizer step, and how the gradient reaches the edge weights
(straight-through to every candidate, or only to the selected ones). Rules are looked up
by name in :data:`RULES`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
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
    "WiringRule",
    "DNW",
    "DNWNoUpdate",
    "RandomGraph",
    "Complete",
    "Frozen",
    "TargetedDropout",
    "RigL",
    "SET",
    "L1Anneal",
    "GMP",
    "FAN_IN",
    "RULES",
    "make_rule",
    "straight_through",
    "replace_mask",
]


def straight_through(weight: Tensor, mask: Tensor) -> Tensor:
    """``weight * mask`` in the forward pass, the identity in the backward pass.

    Every edge, selected or not, receives the gradient ``dL/dw_uv = <Z_u, dL/dI_v>``;
    no gradient flows *through* an unselected edge, since its effective weight is 0.

    Example:
        >>> import torch
        >>> from graphwire.wiring import straight_through
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
        >>> from graphwire.wiring.rules import replace_mask
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


def _check_fan_in(fan_in: str) -> str:
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
        fan_in: ``"any"`` or ``"constant"`` (see :data:`FAN_IN`).
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
        :func:`~graphwire.wiring.resolve_budget`; one that does not keeps every candidate,
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


class DNW(WiringRule):
    """Discovering Neural Wirings: top-k by ``|w|``, re-selected every step, straight-through.

    Args:
        fan_in: ``"any"`` (the paper) or ``"constant"``: every node (every output channel
            of a layer) keeps the same number of incoming edges.

    Example:
        >>> from graphwire.wiring import DNW
        >>> DNW(), DNW(fan_in="constant")
        (DNW(), DNW(fan_in='constant'))
    """

    name = "dnw"
    reselects = True
    straight_through = True

    def __init__(self, fan_in: str = "any"):
        self.fan_in = _check_fan_in(fan_in)


class DNWNoUpdate(WiringRule):
    """Top-k by ``|w|`` re-selected every step, but only selected edges get gradients.

    The paper's "no update rule" ablation: an unselected edge never changes, so it can
    only return if a selected edge shrinks below it.
    """

    name = "dnw_no_update"
    reselects = True


class RandomGraph(WiringRule):
    """A fixed random graph: ``k`` candidates drawn uniformly (G(n, M)) per scope."""

    name = "random"

    def initial_mask(self, module, budget, members, generator):  # noqa: D102
        e = module.weight.numel()
        scopes = members if members is not None else [torch.arange(e)]
        mask = torch.zeros(e, dtype=torch.bool)
        for idx, kk in zip(scopes, budget):
            pick = torch.randperm(idx.numel(), generator=generator)[: int(kk)]
            mask[idx.cpu()[pick]] = True
        return mask.to(module.weight.device)


class Complete(WiringRule):
    """The complete graph: every candidate edge is used; no budget."""

    name = "complete"
    uses_budget = False

    def initial_mask(self, module, budget, members, generator):  # noqa: D102
        return torch.ones_like(module.weight, dtype=torch.bool)


class Frozen(WiringRule):
    """A fixed, given mask: fine-tuning a mask taken from a trained model, or a lottery ticket.

    Args:
        mask: Boolean ``[E]`` mask, aligned with the module's ``edge_index``.

    Example:
        >>> import torch
        >>> from graphwire.wiring import Frozen
        >>> Frozen(torch.tensor([True, False]))
        Frozen(kept=1 of 2)
    """

    name = "frozen"
    uses_budget = False

    def __init__(self, mask: Tensor):
        if not isinstance(mask, Tensor) or mask.dim() != 1:
            raise SelectionError(f"Frozen needs a 1-D boolean mask of shape [E]; got {mask!r}.")
        self.mask = mask.detach().to(torch.bool).clone()

    def initial_mask(self, module, budget, members, generator):  # noqa: D102
        e = module.weight.numel()
        if self.mask.numel() != e:
            raise SelectionError(
                f"Frozen mask has {self.mask.numel()} entries but the graph has {e} candidate "
                "edges; take the mask from a module built on the same graph."
            )
        return self.mask.to(module.weight.device)

    def __repr__(self) -> str:
        return f"Frozen(kept={int(self.mask.sum())} of {self.mask.numel()})"


class TargetedDropout(WiringRule):
    """Targeted dropout (Gomez et al., 2019), the paper's comparison with ``rho = 0.95``.

    The kept edges are the top-k by ``|w|``, re-selected after every step as in DNW. The
    *targeted* edges are the others (a fraction ``1 - density`` of the candidates): during
    training each of them takes part in the forward pass with probability ``1 - rho``,
    so the network learns to work without them and the top-k it keeps at evaluation is
    the network it was trained to be. A new drop pattern is drawn at every forward call
    of the wired module (once per pass, so an ODE solver sees one fixed pattern); in
    evaluation mode only the top-k is used. Gradients reach the edges in use (kept plus
    surviving targeted ones), as in ordinary dropout; the surviving weights are not
    rescaled.

    Args:
        rho: Probability of dropping a targeted edge, in ``[0, 1]``.
        seed: Seed of the drop patterns; ``None`` uses torch's global generator.

    Example:
        >>> import torch
        >>> from graphwire import WiredGraph
        >>> from graphwire.graph import bipartite
        >>> from graphwire.wiring import TargetedDropout
        >>> net = WiredGraph(bipartite(8, 8), node_op="identity", k=8,
        ...                  rule=TargetedDropout(rho=0.5, seed=0))
        >>> _ = net(torch.randn(2, 8))  # training mode: about half the targeted edges join
        >>> int(net.edge_mask.sum()), bool(net.effective_weight().ne(0).sum() > 8)
        (8, True)
        >>> _ = net.eval(); int(net.effective_weight().ne(0).sum())
        8
    """

    name = "targeted_dropout"
    reselects = True

    def __init__(self, rho: float = 0.95, seed: int | None = None):
        if isinstance(rho, bool) or not 0.0 <= float(rho) <= 1.0:
            raise SelectionError(f"TargetedDropout rho must be in [0, 1]; got {rho!r}.")
        self.rho = float(rho)
        self.seed = seed
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def setup(self, module: nn.Module) -> None:
        """Draw a fresh drop pattern before every forward call of ``module``."""
        if getattr(module, "_targeted_dropout_hook", None) is None:
            module._targeted_keep = None
            module._targeted_dropout_hook = module.register_forward_pre_hook(self._resample)

    def _resample(self, module: nn.Module, args) -> None:
        if not module.training:
            module._targeted_keep = None
            return
        draw = torch.rand(module.weight.shape, generator=self.generator)
        module._targeted_keep = (draw >= self.rho).to(module.weight.device)

    def effective_weight(self, module: nn.Module, weight: Tensor, mask: Tensor) -> Tensor:  # noqa: D102
        keep = getattr(module, "_targeted_keep", None)
        if module.training and keep is not None:
            return weight * (mask | keep)
        return weight * mask

    def __repr__(self) -> str:
        return f"TargetedDropout(rho={self.rho})"


# ---------------------------------------------------------------- scheduled sparse rules
def _check_int(name: str, value: Any, low: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SelectionError(f"{name} must be an int >= {low}; got {value!r}.")
    return value


def _check_fraction(name: str, value: Any) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or not 0.0 <= value <= 1.0:
        raise SelectionError(f"{name} must be a number in [0, 1]; got {value!r}.")
    return float(value)


def _random_mask(e: int, budget: Sequence[int], members, generator, device) -> Tensor:
    """``budget[s]`` candidates drawn uniformly in each scope (G(n, M))."""
    scopes = members if members is not None else [torch.arange(e)]
    mask = torch.zeros(e, dtype=torch.bool)
    for idx, kk in zip(scopes, budget):
        pick = torch.randperm(idx.numel(), generator=generator)[: int(kk)]
        mask[idx.cpu()[pick]] = True
    return mask.to(device)


def _per_scope(values: Tensor, members) -> list[int]:
    """``values`` (boolean ``[E]``) counted in each scope."""
    if members is None:
        return [int(values.sum())]
    return [int(values[idx].sum()) for idx in members]


def _restrict(scores: Tensor, allowed: Tensor) -> Tensor:
    """``scores`` where ``allowed``, ``-inf`` elsewhere (never selected before an allowed one)."""
    return torch.where(allowed, scores, torch.full_like(scores, float("-inf")))


def _drop_and_grow(budget: SharedBudget, fraction: float, grow_scores: Tensor) -> Tensor:
    """The new flat mask after one drop-and-grow update.

    Each scope drops ``fraction`` of its selected edges with the smallest ``|w|`` and grows
    as many of its other edges with the largest ``grow_scores``.
    """
    mask = budget.flat_mask()
    members = budget.members
    active = _per_scope(mask, members)
    drop = [int(fraction * a) for a in active]
    magnitude = budget.flat_weight().abs()
    keep = select_topk(_restrict(magnitude, mask), [a - d for a, d in zip(active, drop)], members)
    # every scope has at least ``drop`` edges outside ``keep``: the grown ones are among them
    grow = select_topk(_restrict(grow_scores.to(magnitude.dtype), ~keep), drop, members)
    return keep | grow


class _Scheduled(WiringRule, abc.ABC):
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


class RigL(_Scheduled):
    """RigL, "Rigging the Lottery" (Evci, Gale, Menick, Castro and Elsen, ICML 2020).

    Sparse from the start: each scope begins with a uniformly random set of its budget's
    edges (the paper's random initial mask; the per-layer ERK distribution is the
    budget's, see :func:`~graphwire.wiring.distribute_budget`). Every ``delta_t`` steps
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
        self.alpha = _check_fraction("RigL alpha", alpha)
        self.delta_t = _check_int("RigL delta_t", delta_t, 1)
        self.t_end = _check_int("RigL t_end", t_end, 1, allow_none=True)
        self.fan_in = _check_fan_in(fan_in)

    def initial_mask(self, module, budget, members, generator):  # noqa: D102
        return _random_mask(module.weight.numel(), budget, members, generator, module.weight.device)

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

    def before_step(self, budget, step, optimizer):  # noqa: D102
        if self.is_update_step(step):
            budget.scratch["grow_scores"] = budget.flat_grad().abs()
        budget.mask_grads()

    def new_mask(self, budget, step, optimizer):  # noqa: D102
        scores = budget.scratch.pop("grow_scores", None)
        if scores is None:
            return None
        return _drop_and_grow(budget, self.drop_fraction(step), scores)

    def __repr__(self) -> str:
        fan = "" if self.fan_in == "any" else f", fan_in={self.fan_in!r}"
        return f"RigL(alpha={self.alpha}, delta_t={self.delta_t}, t_end={self.t_end}{fan})"


class SET(_Scheduled):
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
        self.zeta = _check_fraction("SET zeta", zeta)
        self.delta_t = _check_int("SET delta_t", delta_t, 1)
        self.t_end = _check_int("SET t_end", t_end, 1, allow_none=True)
        self.seed = seed
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.fan_in = _check_fan_in(fan_in)

    def initial_mask(self, module, budget, members, generator):  # noqa: D102
        return _random_mask(module.weight.numel(), budget, members, generator, module.weight.device)

    def new_mask(self, budget, step, optimizer):  # noqa: D102
        if step % self.delta_t or (self.t_end is not None and step > self.t_end):
            return None
        draw = torch.rand(budget.numel, generator=self.generator)
        return _drop_and_grow(budget, self.zeta, draw.to(budget.device))

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


class _Pruning(_Scheduled):
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
        scores = _restrict(budget.flat_weight().abs(), mask)  # pruned edges never return
        counts = [
            min(c, a) for c, a in zip(self.kept(budget, step), _per_scope(mask, budget.members))
        ]
        new = select_topk(scores, counts, budget.members)
        return new & mask


class GMP(_Pruning):
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
        self.t_end = _check_int("GMP t_end", t_end, 1)
        self.t_start = _check_int("GMP t_start", t_start, 0)
        if self.t_start >= self.t_end:
            raise SelectionError(
                f"GMP t_start must be below t_end; got t_start={t_start}, t_end={t_end}."
            )
        self.delta_t = _check_int("GMP delta_t", delta_t, 1)
        self.fan_in = _check_fan_in(fan_in)

    def progress(self, step: int) -> float:  # noqa: D102
        return min(max((step - self.t_start) / (self.t_end - self.t_start), 0.0), 1.0)

    def is_update_step(self, step: int) -> bool:  # noqa: D102
        if step < self.t_start or step > self.t_end:
            return False
        return (step - self.t_start) % self.delta_t == 0 or step == self.t_end

    def __repr__(self) -> str:
        fan = "" if self.fan_in == "any" else f", fan_in={self.fan_in!r}"
        return f"GMP(t_end={self.t_end}, t_start={self.t_start}, delta_t={self.delta_t}{fan})"


class L1Anneal(_Pruning):
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
        self.total_steps = _check_int("L1Anneal total_steps", total_steps, 1)
        if isinstance(l1, bool) or not isinstance(l1, (int, float)) or l1 < 0:
            raise SelectionError(f"L1Anneal l1 must be a number >= 0; got {l1!r}.")
        self.l1 = float(l1)
        end = max(1, int(0.6 * total_steps)) if anneal_end is None else anneal_end
        self.anneal_end = _check_int("L1Anneal anneal_end", end, 1)
        self.delta_t = _check_int("L1Anneal delta_t", delta_t, 1)
        self.fan_in = _check_fan_in(fan_in)

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


#: Wiring rules by name (read-only: pass an instance of your own WiringRule subclass).
RULES: Mapping[str, type[WiringRule]] = MappingProxyType(
    {
        r.name: r
        for r in (
            DNW,
            DNWNoUpdate,
            RandomGraph,
            Complete,
            Frozen,
            TargetedDropout,
            RigL,
            SET,
            L1Anneal,
            GMP,
        )
    }
)


def make_rule(rule: str | WiringRule) -> WiringRule:
    """Return ``rule`` itself, or a new rule of that registry name.

    Raises:
        SelectionError: for an unknown name (the message lists the valid ones), or
            ``"frozen"`` given by name (it needs a mask: pass ``Frozen(mask)``).

    Example:
        >>> from graphwire.wiring import make_rule
        >>> make_rule("dnw")
        DNW()
    """
    if isinstance(rule, WiringRule):
        return rule
    cls = choose("rule", rule, RULES, SelectionError)
    if cls is Frozen:
        raise SelectionError(
            "rule='frozen' needs the mask to keep: pass rule=graphwire.wiring.Frozen(mask), "
            "e.g. Frozen(trained.mask())."
        )
    if cls is GMP:
        raise SelectionError(
            "rule='gmp' needs the step at which pruning ends: pass "
            "rule=graphwire.wiring.GMP(t_end=...), e.g. GMP(t_end=total_steps // 2)."
        )
    if cls is L1Anneal:
        raise SelectionError(
            "rule='l1_anneal' needs the length of training: pass "
            "rule=graphwire.wiring.L1Anneal(total_steps=...)."
        )
    return cls()
