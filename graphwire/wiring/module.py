"""``WiredModule``: the one base of every module whose edges a wiring rule selects."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from graphwire.errors import ConfigError, SelectionError

if TYPE_CHECKING:  # pragma: no cover
    from graphwire.graph.channel_graph import ChannelGraph
    from graphwire.wiring._rules.base import WiringRule
    from graphwire.wiring.budget import SharedBudget

__all__ = ["WiredModule"]


class WiredModule(nn.Module, abc.ABC):
    """Base of :class:`~graphwire.WiredGraph` and the wired layers.

    It owns the edge weights ``weight`` (a parameter), the boolean ``edge_mask`` buffer of
    the same shape, the effective weight the forward pass uses, re-selection through the
    module's :class:`~graphwire.wiring.SharedBudget`, and select-on-load: a state dict
    with weights but no mask (a dense layer's, or another tool's) is loaded and then
    selected by the rule. This is everything :class:`~graphwire.DNWOptimizer` uses.

    Attributes:
        weight: The edge weights.
        edge_mask: The selected edges, a boolean tensor of ``weight``'s shape.
        rule: The wiring rule (shared by every module of ``shared_budget``).
        shared_budget: The budget this module's selection belongs to.
    """

    weight: Tensor
    edge_mask: Tensor
    shared_budget: SharedBudget | None

    @property
    def rule(self) -> WiringRule:
        """The wiring rule: the one of the module's budget, once it has one."""
        budget = self.__dict__.get("shared_budget")
        return budget.rule if budget is not None else self.__dict__["_rule"]

    @rule.setter
    def rule(self, value: WiringRule) -> None:
        budget = self.__dict__.get("shared_budget")
        if budget is not None and value is not budget.rule:
            raise ConfigError(
                f"the rule of a wired module is its budget's ({budget.rule!r}); to change it, "
                "give the modules a new budget: SharedBudget(module.shared_budget.modules, "
                "rule=...)."
            )
        self.__dict__["_rule"] = value

    def mask(self) -> Tensor:
        """The selected edges: a boolean tensor of ``weight``'s shape."""
        return self.edge_mask

    def effective_weight(self) -> Tensor:
        """The weights the forward pass uses (zero where unselected, for most rules)."""
        return self.rule.effective_weight(self, self.weight, self.edge_mask)

    @torch.no_grad()
    def reselect(self) -> tuple[int, int]:
        """Re-select by the rule; return ``(edges swapped in, edges swapped out)``.

        With a budget shared by several modules this re-selects all of them (one top-k)
        and returns this module's swaps. Rules that do not re-select (random, complete,
        frozen) keep their mask and return ``(0, 0)``.
        """
        if self.shared_budget is None:
            raise SelectionError(
                "this wired module has no budget yet; build it with k= or density=, or attach "
                "it with SharedBudget([module, ...], density=...)."
            )
        return self.shared_budget.reselect()[self]

    def fan_in_groups(self) -> Tensor:
        """The target of every weight, an int64 tensor of ``weight``'s shape.

        Weights with the same target feed the same node (a graph) or output channel (a
        layer); a constant fan-in keeps the same count in each. This default treats the
        first dimension of ``weight`` as the output channel.
        """
        out = self.weight.shape[0]
        per = self.weight[0].numel() if out else 0
        return torch.arange(out).repeat_interleave(per).view(self.weight.shape)

    @abc.abstractmethod
    def learned_graph(self) -> ChannelGraph:
        """The selected edges as a :class:`~graphwire.ChannelGraph` with edge weights."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A checkpoint carries the mask, and loading it restores the selection exactly.
        # Weights without a mask are loaded and then selected by the rule.
        had_mask = prefix + "edge_mask" in state_dict
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if had_mask or prefix + "weight" not in state_dict:
            return
        missing_keys = args[2] if len(args) > 2 else kwargs["missing_keys"]
        if prefix + "edge_mask" in missing_keys:
            missing_keys.remove(prefix + "edge_mask")
        if self.shared_budget is not None and self.rule.reselects:
            self.shared_budget.reselect()
