"""Wiring rules: the top-k edge selection, the rules built on it, and the DNW optimizer.

The second stage of graphwire's flow: graph -> **wiring rule** -> execution -> training
-> export.
"""

from graphwire.wiring.budget import SharedBudget
from graphwire.wiring.module import WiredModule
from graphwire.wiring.optimizer import DNWOptimizer, Rewirable
from graphwire.wiring.rules import (
    DNW,
    RULES,
    Complete,
    DNWNoUpdate,
    Frozen,
    RandomGraph,
    TargetedDropout,
    WiringRule,
    make_rule,
    straight_through,
)
from graphwire.wiring.topk import resolve_budget, select_topk

__all__ = [
    "select_topk",
    "resolve_budget",
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
    "DNWOptimizer",
    "Rewirable",
    "WiredModule",
    "SharedBudget",
]
