"""The paper's comparisons that start from another trained model: fine-tune and lottery.

Both take a network trained with ``rule="complete"`` (every candidate edge, the dense
counterpart) and a builder of the same architecture with a budget, e.g.
``functools.partial(create_model, "tiny_static", rule="dnw", seed=0)``, and return a
network whose mask is the top-k of the trained weights under that budget, frozen:

- :func:`fine_tune_from`: keeps the trained weights (the paper fine-tunes it with learning
  rates 0.1, 0.01 and 0.001).
- :func:`lottery_ticket`: rewinds every weight to its value before training (one-shot
  lottery ticket, Frankle and Carbin, 2019).

The other comparisons are wiring rules passed as ``rule=``: ``"random"`` (a fixed random
graph with the same ``k``), ``"complete"``, ``"dnw_no_update"``, and
``graphwire.wiring.TargetedDropout(rho=0.95)``; every model in the registry takes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from graphwire import CheckpointError, ConfigError
from graphwire.wiring import FixedMask, SharedBudget, WiredModule

__all__ = ["fine_tune_from", "lottery_ticket", "freeze_masks"]


def _weights(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A state dict without its masks: loading it selects by the target's own rule."""
    return {k: v for k, v in state.items() if not k.endswith("edge_mask")}


def _load_weights(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Load every tensor but the masks, strictly otherwise."""
    result = model.load_state_dict(_weights(state), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("edge_mask")]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"the state does not fit the model built by build: missing {missing[:5]}, unexpected "
            f"{list(result.unexpected_keys)[:5]}. Build the same architecture and sizes."
        )


def freeze_masks(model: nn.Module) -> nn.Module:
    """Fix every wired module's current mask (the ``FixedMask`` rule); return ``model``.

    Gradients then reach the kept edges only, and the optimizer no longer re-selects.
    """
    budgets: dict[int, SharedBudget] = {}
    for module in model.modules():
        if isinstance(module, WiredModule) and module.shared_budget is not None:
            budgets[id(module.shared_budget)] = module.shared_budget
    for budget in budgets.values():
        mask = torch.cat([m.edge_mask.detach().reshape(-1).cpu() for m in budget.modules])
        SharedBudget(budget.modules, rule=FixedMask(mask))
    return model


def _topk_of(trained: nn.Module, build: Callable[[], nn.Module]) -> nn.Module:
    model = build()
    wired = [m for m in model.modules() if isinstance(m, WiredModule)]
    if not wired or not all(m.rule.reselects for m in wired):
        raise ConfigError(
            "build must return a model whose wired modules select by magnitude (rule='dnw'), "
            "so that the trained weights' top-k becomes the mask; got rules "
            f"{sorted({m.rule.name for m in wired})}."
        )
    _load_weights(model, trained.state_dict())
    with torch.no_grad():  # one more pass so global budgets see every loaded layer
        for module in wired:
            module.reselect()
    return model


def fine_tune_from(trained: nn.Module, build: Callable[[], nn.Module]) -> nn.Module:
    """The top-k of a trained complete graph, frozen, with the trained weights.

    Args:
        trained: A model trained with ``rule="complete"``.
        build: Builds the same architecture with a magnitude rule and the budget to keep.

    Example:
        >>> import functools
        >>> from models import create_model
        >>> from models.baselines import fine_tune_from
        >>> small = dict(in_channels=1, image_size=8, num_nodes=24, stem_channels=4, readout=4)
        >>> dense = create_model("tiny_static", rule="complete", seed=0, **small)
        >>> net = fine_tune_from(dense, functools.partial(
        ...     create_model, "tiny_static", k=50, seed=1, **small))
        >>> net.graph_net.rule, int(net.graph_net.edge_mask.sum())
        (FixedMask(kept=50 of 230), 50)
    """
    return freeze_masks(_topk_of(trained, build))


def lottery_ticket(
    trained: nn.Module, initial_state: Mapping[str, Tensor], build: Callable[[], nn.Module]
) -> nn.Module:
    """One-shot lottery ticket: the trained top-k mask, weights rewound to ``initial_state``.

    Args:
        trained: A model trained with ``rule="complete"``.
        initial_state: ``trained``'s state dict before training (``copy.deepcopy`` it).
        build: Builds the same architecture with a magnitude rule and the budget to keep.
    """
    model = freeze_masks(_topk_of(trained, build))
    _load_weights(model, initial_state)
    return model
