"""Execution: node operations, ``WiredGraph`` and its reference backend.

The third stage of graphwire's flow: graph -> wiring rule -> **execution** -> training
-> export.
"""

from graphwire.execution.node_ops import (
    NODE_OPS,
    Activation,
    DepthwiseConv,
    GroupedNodeOp,
    Identity,
    NodeOp,
    make_node_op,
)
from graphwire.execution.reference import ReferenceExecutor, propagate
from graphwire.execution.wired import BACKENDS, SCOPES, WiredGraph

__all__ = [
    "WiredGraph",
    "BACKENDS",
    "SCOPES",
    "NodeOp",
    "Identity",
    "Activation",
    "DepthwiseConv",
    "GroupedNodeOp",
    "NODE_OPS",
    "make_node_op",
    "ReferenceExecutor",
    "propagate",
]
