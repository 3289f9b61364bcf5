"""DNW and the paper's comparison rules: the rules that select by a top-k or keep a mask.

:class:`DNW` (the method), :class:`DNWNoUpdate` ("no update rule"), :class:`RandomGraph`
(a fixed random graph), :class:`Complete`, :class:`FixedMask` (fine-tuning a mask taken
from a trained model, or a lottery ticket) and :class:`TargetedDropout`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from graphwire.errors import SelectionError
from graphwire.wiring._rules.base import WiringRule, check_fan_in, random_mask

__all__ = ["DNW", "DNWNoUpdate", "RandomGraph", "Complete", "FixedMask", "TargetedDropout"]


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
        self.fan_in = check_fan_in(fan_in)


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
        return random_mask(module.weight.numel(), budget, members, generator, module.weight.device)


class Complete(WiringRule):
    """The complete graph: every candidate edge is used; no budget."""

    name = "complete"
    uses_budget = False

    def initial_mask(self, module, budget, members, generator):  # noqa: D102
        return torch.ones_like(module.weight, dtype=torch.bool)


class FixedMask(WiringRule):
    """A fixed, given mask: fine-tuning a mask taken from a trained model, or a lottery ticket.

    Args:
        mask: Boolean ``[E]`` mask, aligned with the module's ``edge_index``.

    Example:
        >>> import torch
        >>> from graphwire.wiring import FixedMask
        >>> FixedMask(torch.tensor([True, False]))
        FixedMask(kept=1 of 2)
    """

    name = "fixed_mask"
    uses_budget = False

    def __init__(self, mask: Tensor):
        if not isinstance(mask, Tensor) or mask.dim() != 1:
            raise SelectionError(f"FixedMask needs a 1-D boolean mask of shape [E]; got {mask!r}.")
        self.mask = mask.detach().to(torch.bool).clone()

    def initial_mask(self, module, budget, members, generator):  # noqa: D102
        e = module.weight.numel()
        if self.mask.numel() != e:
            raise SelectionError(
                f"FixedMask mask has {self.mask.numel()} entries but the graph has {e} candidate "
                "edges; take the mask from a module built on the same graph."
            )
        return self.mask.to(module.weight.device)

    def __repr__(self) -> str:
        return f"FixedMask(kept={int(self.mask.sum())} of {self.mask.numel()})"


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
