"""The DNW optimizer: any ``torch.optim`` optimizer, followed by an edge re-selection."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from graphwire._utils import describe
from graphwire.errors import CheckpointError, ConfigError
from graphwire.wiring._rules.base import WiringRule
from graphwire.wiring.budget import SharedBudget

__all__ = ["DNWOptimizer", "Rewirable"]


@runtime_checkable
class Rewirable(Protocol):
    """Everything :class:`DNWOptimizer` uses of a module.

    ``weight`` (updated by the base optimizer), ``edge_mask`` (saved and restored by
    :meth:`DNWOptimizer.state_dict`), ``shared_budget`` (a
    :class:`~graphwire.wiring.SharedBudget`, or any object whose ``reselect()`` runs one
    top-k over its modules and returns ``{module: (added, removed)}``; ``None`` for a
    module that re-selects on its own) and ``reselect()``. Each shared budget is
    re-selected once per step, however many modules share it. Every
    :class:`~graphwire.wiring.WiredModule` (:class:`~graphwire.WiredGraph`, the wired
    layers) implements it.
    """

    weight: Tensor
    edge_mask: Tensor
    shared_budget: Any

    def reselect(self) -> tuple[int, int]:
        """Re-select the edges; return ``(edges added, edges removed)``."""
        ...


def _find_wired(model_or_modules: Any) -> dict[str, Rewirable]:
    if isinstance(model_or_modules, Rewirable) and isinstance(model_or_modules, nn.Module):
        return {"": model_or_modules}
    if isinstance(model_or_modules, nn.Module):
        found: dict[str, Rewirable] = {}
        for name, module in model_or_modules.named_modules():
            if isinstance(module, Rewirable) and not any(
                name.startswith(f"{p}.") for p in found if p
            ):
                found[name] = module
        return found
    if isinstance(model_or_modules, Iterable):
        items = list(model_or_modules)
        if all(isinstance(m, Rewirable) for m in items):
            return {str(i): m for i, m in enumerate(items)}
    raise ConfigError(
        f"model_or_params must be an nn.Module containing wired graphs, or an iterable of "
        f"wired modules; got {describe(model_or_modules)}. Pass the model itself, e.g. "
        "DNWOptimizer(model, torch.optim.SGD(model.parameters(), lr=0.1))."
    )


def _budgets(wired: dict[str, Rewirable]) -> list[SharedBudget]:
    """The distinct :class:`SharedBudget` objects of the modules, in module order."""
    seen: dict[int, SharedBudget] = {}
    for module in wired.values():
        shared = getattr(module, "shared_budget", None)
        if isinstance(shared, SharedBudget):
            seen.setdefault(id(shared), shared)
    return list(seen.values())


def _rules(wired: dict[str, Rewirable]) -> list[WiringRule]:
    """The distinct rules of the budgets, in module order (one rule may serve several)."""
    seen: dict[int, WiringRule] = {}
    for budget in _budgets(wired):
        seen.setdefault(id(budget.rule), budget.rule)
    return list(seen.values())


def _reselect_all(wired: dict[str, Rewirable]) -> dict[str, tuple[int, int]]:
    """Re-select every module; a shared budget selects once for all of its modules."""
    swaps: dict[str, tuple[int, int]] = {}
    shared_done: dict[int, dict] = {}
    for name, module in wired.items():
        shared = getattr(module, "shared_budget", None)
        if shared is None:
            swaps[name] = module.reselect()
            continue
        if id(shared) not in shared_done:
            shared_done[id(shared)] = shared.reselect()
        swaps[name] = shared_done[id(shared)][module]
    return swaps


class DNWOptimizer(Optimizer):
    """Wrap a ``torch.optim`` optimizer so each step is followed by an edge re-selection.

    After the base optimizer updates every parameter (edge weights included, selected or
    not), each wired module re-selects its edges by its rule; the edges swapped in and out
    are counted. The wrapper shares the base optimizer's ``param_groups`` and ``state``,
    so learning-rate schedulers work on it directly.

    Args:
        model_or_params: A module holding wired modules (found recursively), or an
            iterable of wired modules.
        base_optimizer: The optimizer that updates the parameters; it must include the
            edge weights. The paper uses SGD with momentum 0.9 and weight decay.

    Attributes:
        last_swaps: ``{module name: (edges in, edges out)}`` of the last step.
        swaps_total: Edges swapped in over all steps so far.
        step_count: Optimizer steps taken so far (saved in :meth:`state_dict`).

    Example:
        >>> import torch
        >>> from graphwire import DNWOptimizer, WiredGraph
        >>> from graphwire.graph import layered_dag
        >>> net = WiredGraph(layered_dag([2, 4, 2]), node_op="relu", density=0.5, seed=0)
        >>> opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.1))
        >>> net(torch.randn(8, 2)).pow(2).mean().backward()
        >>> opt.step(); opt.zero_grad()
        >>> sorted(opt.last_swaps)
        ['']
    """

    def __init__(self, model_or_params: nn.Module | Iterable[nn.Module], base_optimizer: Optimizer):
        if not isinstance(base_optimizer, Optimizer):
            raise ConfigError(
                f"base_optimizer must be a torch.optim.Optimizer; got {describe(base_optimizer)}."
            )
        self.wired = _find_wired(model_or_params)
        if not self.wired:
            raise ConfigError(
                "model_or_params holds no wired module (WiredGraph or a wired layer); there is "
                "nothing for DNWOptimizer to re-select. Use the base optimizer alone."
            )
        managed = {id(p) for group in base_optimizer.param_groups for p in group["params"]}
        for name, module in self.wired.items():
            if id(module.weight) not in managed:
                raise ConfigError(
                    f"base_optimizer does not update the edge weights of wired module "
                    f"{name or '<root>'!r}; build it from model.parameters()."
                )
        # torch's own __init__ sets every attribute an Optimizer has (hooks, flags, the
        # patched step that runs the step hooks); until base_optimizer is set, the groups
        # and state it builds land in a scratch copy, dropped once they are shared.
        Optimizer.__init__(self, base_optimizer.param_groups, base_optimizer.defaults)
        self.__dict__.pop("_own_param_groups", None)
        self.__dict__.pop("_own_state", None)
        self.base_optimizer = base_optimizer
        self.last_swaps: dict[str, tuple[int, int]] = {}
        self.swaps_total = 0
        self.step_count = 0

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The base optimizer's parameter groups (shared, so schedulers see them)."""
        base = self.__dict__.get("base_optimizer")
        return self.__dict__["_own_param_groups"] if base is None else base.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        base = self.__dict__.get("base_optimizer")
        if base is None:
            self.__dict__["_own_param_groups"] = value
        else:
            base.param_groups = value

    @property
    def state(self):
        """The base optimizer's per-parameter state (shared)."""
        base = self.__dict__.get("base_optimizer")
        return self.__dict__["_own_state"] if base is None else base.state

    @state.setter
    def state(self, value) -> None:
        base = self.__dict__.get("base_optimizer")
        if base is None:
            self.__dict__["_own_state"] = value
        else:
            base.state = value

    @property
    def swaps_last_step(self) -> int:
        """Edges swapped in (equal to edges swapped out) over all modules in the last step."""
        return sum(added for added, _ in self.last_swaps.values())

    def step(self, closure: Callable[[], float] | None = None):
        """Run the base optimizer's step, then re-select every wired module's edges.

        Before the base step each budget's rule sees the gradients
        (:meth:`~graphwire.wiring.WiringRule.before_step`, e.g. RigL keeps the growth
        scores and masks the gradients of inactive edges); after it, the rule updates the
        mask (:meth:`~graphwire.wiring.WiringRule.update`). Rules count steps from 1.
        With a closure, the hooks see the gradients of the previous backward pass.

        Returns:
            Whatever the base optimizer's ``step`` returns (the loss with a closure).
        """
        step = self.step_count + 1
        budgets = _budgets(self.wired)
        with torch.no_grad():
            for budget in budgets:
                budget.before_step(step, self.base_optimizer)
        loss = self.base_optimizer.step(closure)
        with torch.no_grad():
            self.last_swaps = _reselect_all(self.wired)
        self.step_count += 1
        self.swaps_total += self.swaps_last_step
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter of the base optimizer."""
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group to the base optimizer."""
        if "base_optimizer" not in self.__dict__:  # within Optimizer.__init__: the scratch copy
            super().add_param_group(param_group)
            return
        self.base_optimizer.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state, the masks, the swap counters and the rules' state.

        A rule's schedule follows ``steps``; its own state (e.g. SET's generator) is
        saved under ``"rules"``, so a resumed run continues exactly.

        Hooks registered with ``register_state_dict_pre_hook`` and
        ``register_state_dict_post_hook`` run as on any optimizer.
        """
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        state = {
            "base": self.base_optimizer.state_dict(),
            "masks": {name: m.edge_mask.detach().cpu().clone() for name, m in self.wired.items()},
            "steps": self.step_count,  # the key of 0.1 checkpoints
            "swaps_total": self.swaps_total,
            "rules": [rule.state_dict() for rule in _rules(self.wired)],
        }
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state)
            if result is not None:
                state = result
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the base optimizer and the masks written by :meth:`state_dict`.

        Hooks registered with ``register_load_state_dict_pre_hook`` and
        ``register_load_state_dict_post_hook`` run as on any optimizer.

        Raises:
            CheckpointError: if the modules or mask shapes do not match this model.
        """
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        missing = {"base", "masks"} - set(state_dict)
        if missing:
            raise CheckpointError(
                f"state_dict is not a DNWOptimizer state: it lacks {sorted(missing)}."
            )
        masks = state_dict["masks"]
        if set(masks) != set(self.wired):
            raise CheckpointError(
                f"state_dict holds masks for wired modules {sorted(masks)} but this model has "
                f"{sorted(self.wired)}; load a checkpoint of the same model."
            )
        for name, module in self.wired.items():
            if masks[name].shape != module.edge_mask.shape:
                raise CheckpointError(
                    f"mask of wired module {name!r} has shape {list(masks[name].shape)} in "
                    f"state_dict but {list(module.edge_mask.shape)} in the model."
                )
        self.base_optimizer.load_state_dict(state_dict["base"])
        with torch.no_grad():
            for name, module in self.wired.items():
                module.edge_mask.copy_(masks[name])
        self.step_count = int(state_dict.get("steps", 0))
        for budget in _budgets(self.wired):  # the layers ask the rule about the next step
            budget.steps = self.step_count
        self.swaps_total = int(state_dict.get("swaps_total", 0))
        rules = _rules(self.wired)
        saved = state_dict.get("rules", [{}] * len(rules))
        if len(saved) != len(rules):
            raise CheckpointError(
                f"state_dict holds the state of {len(saved)} wiring rules but this model has "
                f"{len(rules)}; load a checkpoint of the same model and rules."
            )
        for rule, rule_state in zip(rules, saved):
            rule.load_state_dict(rule_state)
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def __repr__(self) -> str:
        return f"DNWOptimizer(wired={list(self.wired)}, base={type(self.base_optimizer).__name__})"
