"""Wiring rules: the top-k edge selection, the rules built on it, and the DNW optimizer.

The second stage of graphwire's flow: graph -> **wiring rule** -> execution -> training
-> export.
"""

from graphwire.wiring.budget import SharedBudget
from graphwire.wiring.module import WiredModule
from graphwire.wiring.optimizer import DNWOptimizer, Rewirable
from graphwire.wiring.rules import (
    DNW,
    FAN_IN,
    GMP,
    RULES,
    SET,
    Complete,
    DNWNoUpdate,
    Frozen,
    L1Anneal,
    RandomGraph,
    RigL,
    TargetedDropout,
    WiringRule,
    make_rule,
    straight_through,
)
from graphwire.wiring.topk import DISTRIBUTIONS, distribute_budget, resolve_budget, select_topk

__all__ = [
    "select_topk",
    "resolve_budget",
    "distribute_budget",
    "DISTRIBUTIONS",
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
    "DNWOptimizer",
    "Rewirable",
    "WiredModule",
    "SharedBudget",
]
