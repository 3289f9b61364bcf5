"""Helpers shared by the model families."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from graphwire import SelectionError
from graphwire.wiring import WiringRule, make_rule

__all__ = ["seeded", "budget_kwargs"]


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Build under a private CPU generator seeded with ``seed`` (``None``: torch's global one).

    The layers torch initialises from its global generator (convolutions, linear layers)
    then depend on ``seed`` only, and the caller's random state is left as it was.
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def budget_kwargs(
    rule: str | WiringRule,
    k: int | None,
    density: float | None,
    *,
    default_k: int | None = None,
    default_density: float | None = None,
) -> dict[str, Any]:
    """``k``/``density`` to pass on for ``rule``: none for rules without a budget.

    The defaults are used when neither ``k`` nor ``density`` is given.
    """
    if k is not None and density is not None:
        raise SelectionError(f"give k or density, not both; got k={k!r}, density={density!r}.")
    if not make_rule(rule).uses_budget:
        return {}
    if k is None and density is None:
        k, density = default_k, default_density
    return {"k": k} if k is not None else {"density": density}
