"""Execution: node operations, the reference message-passing executors, ``WiredGraph``.

The third stage of graphwire's flow: graph -> wiring rule -> **execution** -> training
-> export.
"""

from graphwire.execution.layers import (
    SPARSIFY_SCOPES,
    SharedBudget,
    WiredConv1d,
    WiredConv2d,
    WiredConv3d,
    WiredLayer,
    WiredLinear,
    sparsify,
)
from graphwire.execution.node_ops import (
    NODE_OPS,
    Activation,
    DepthwiseConv,
    DepthwiseConv1d,
    GroupedNodeOp,
    Identity,
    NodeOp,
    make_node_op,
)
from graphwire.execution.reference import (
    EXECUTORS,
    ContinuousExecutor,
    DagExecutor,
    DiscreteExecutor,
    ODESolver,
    ReferenceExecutor,
    propagate,
)
from graphwire.execution.wired import SCOPES, WiredGraph

__all__ = [
    "WiredGraph",
    "SCOPES",
    "NodeOp",
    "Identity",
    "Activation",
    "DepthwiseConv",
    "DepthwiseConv1d",
    "GroupedNodeOp",
    "NODE_OPS",
    "make_node_op",
    "ODESolver",
    "ReferenceExecutor",
    "DagExecutor",
    "DiscreteExecutor",
    "ContinuousExecutor",
    "EXECUTORS",
    "propagate",
    "WiredLayer",
    "WiredLinear",
    "WiredConv1d",
    "WiredConv2d",
    "WiredConv3d",
    "SharedBudget",
    "sparsify",
    "SPARSIFY_SCOPES",
]
