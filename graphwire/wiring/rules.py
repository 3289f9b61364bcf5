"""Wiring rules: how the edges a network uses are chosen, and which edges learn.

A rule answers three questions for a wired module: which edges to start with, whether
to re-select after every optimizer step, and how the gradient reaches the edge weights
(straight-through to every candidate, or only to the selected ones). Rules are looked up
by name in :data:`RULES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor, nn

from graphwire._utils import choose
from graphwire.errors import SelectionError
from graphwire.wiring.topk import resolve_budget, select_topk

__all__ = [
    "WiringRule",
    "DNW",
    "DNWNoUpdate",
    "RandomGraph",
    "Complete",
    "Frozen",
    "TargetedDropout",
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
    new = new.to(mask.device)
    added = int(torch.count_nonzero(new > mask))  # in new, not in old
    removed = int(torch.count_nonzero(mask > new))
    mask.copy_(new)
    return added, removed


class WiringRule:
    """Base class of wiring rules; subclass it to add one (e.g. learned scores).

    Attributes:
        name: Registry name.
        reselects: Re-select the edges after each optimizer step.
        straight_through: Give every candidate edge a gradient (the DNW update), or only
            the selected ones.
        uses_budget: Whether the rule needs ``k`` or ``density``.
    """

    name = "base"
    reselects = False
    straight_through = False
    uses_budget = True

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DNW(WiringRule):
    """Discovering Neural Wirings: top-k by ``|w|``, re-selected every step, straight-through."""

    name = "dnw"
    reselects = True
    straight_through = True


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


#: Wiring rules by name (read-only: pass an instance of your own WiringRule subclass).
RULES: Mapping[str, type[WiringRule]] = MappingProxyType(
    {r.name: r for r in (DNW, DNWNoUpdate, RandomGraph, Complete, Frozen, TargetedDropout)}
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
    return cls()
