"""Wiring rules: the top-k edge selection, the rules built on it, and the DNW optimizer.

The second stage of graphwire's flow: graph -> **wiring rule** -> execution -> training
-> export. A wired module (:class:`WiredModule`: :class:`~graphwire.WiredGraph` and the
wired layers) belongs to one :class:`SharedBudget`, whose rule decides which of its
candidate edges are selected; :class:`~graphwire.DNWOptimizer` re-selects after every
optimizer step. Rules by family: DNW and the paper's baselines (:class:`DNW`,
:class:`DNWNoUpdate`, :class:`RandomGraph`, :class:`Complete`, :class:`FixedMask`,
:class:`TargetedDropout`), dynamic sparse training (:class:`RigL`, :class:`SET`) and
pruning (:class:`GMP`, :class:`L1Anneal`); a rule may be given by its registry name
wherever one is accepted (``rule="rigl"``; :func:`make_rule`).
"""

from graphwire.wiring._rules import make_rule
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
from graphwire.wiring.budget import SharedBudget
from graphwire.wiring.module import WiredModule

__all__ = [
    "WiringRule",
    "DNW",
    "DNWNoUpdate",
    "RandomGraph",
    "Complete",
    "FixedMask",
    "TargetedDropout",
    "RigL",
    "SET",
    "GMP",
    "L1Anneal",
    "make_rule",
    "SharedBudget",
    "WiredModule",
]
