"""Execution: node operations, ``WiredGraph`` and its reference backend.

The third stage of graphwire's flow: graph -> wiring rule -> **execution** -> training
-> export.
"""

from graphwire.execution.node_ops import (
    NODE_OPS,
    Activation,
    DepthwiseConv,
    DepthwiseConv1d,
    GroupedNodeOp,
    Identity,
    NodeOp,
)
from graphwire.execution.reference import ReferenceExecutor
from graphwire.execution.wired import WiredGraph

__all__ = [
    "WiredGraph",
    "NodeOp",
    "Identity",
    "Activation",
    "DepthwiseConv",
    "DepthwiseConv1d",
    "GroupedNodeOp",
    "NODE_OPS",
    "ReferenceExecutor",
]
