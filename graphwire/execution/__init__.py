"""Execution: :class:`~graphwire.WiredGraph` and the node operations ``f_v``.

The third stage of graphwire's flow: graph -> wiring rule -> **execution** -> training
-> export. A :class:`~graphwire.WiredGraph` runs through one of the training backends of
:mod:`graphwire.backends`. A node operation is a module applied to any subset of the
nodes; the built-ins are given by name (``node_op="relu"``, ``"tanh"``, ``"identity"``,
``"conv"``, ``"conv1d"``), your own by a factory of a :class:`NodeOp` subclass, such as
``lambda n: DepthwiseConv(n, stride=2)``.
"""

from graphwire.execution.node_ops import DepthwiseConv, NodeOp

__all__ = ["NodeOp", "DepthwiseConv"]
