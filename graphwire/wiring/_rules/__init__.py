"""Wiring rules by name: the registry :data:`RULES` and :func:`make_rule`.

The rules live by family in :mod:`~graphwire.wiring._rules.dnw`,
:mod:`~graphwire.wiring._rules.dynamic` and :mod:`~graphwire.wiring._rules.pruning`,
on the base of :mod:`~graphwire.wiring._rules.base`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from graphwire._utils import choose
from graphwire.errors import SelectionError
from graphwire.wiring._rules.base import WiringRule
from graphwire.wiring._rules.dnw import (
    DNW,
    Complete,
    DNWNoUpdate,
    FixedMask,
    RandomGraph,
    TargetedDropout,
)
from graphwire.wiring._rules.dynamic import SET, RigL
from graphwire.wiring._rules.pruning import GMP, L1Anneal

__all__ = ["RULES", "make_rule"]


#: Wiring rules by name (read-only: pass an instance of your own WiringRule subclass).
RULES: Mapping[str, type[WiringRule]] = MappingProxyType(
    {
        r.name: r
        for r in (
            DNW,
            DNWNoUpdate,
            RandomGraph,
            Complete,
            FixedMask,
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
            ``"fixed_mask"`` given by name (it needs a mask: pass ``FixedMask(mask)``).

    Example:
        >>> from graphwire.wiring._rules import make_rule
        >>> make_rule("dnw")
        DNW()
    """
    if isinstance(rule, WiringRule):
        return rule
    cls = choose("rule", rule, RULES, SelectionError)
    if cls is FixedMask:
        raise SelectionError(
            "rule='fixed_mask' needs the mask to keep: pass rule=graphwire.wiring.FixedMask(mask), "
            "e.g. FixedMask(trained.mask())."
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
