"""Wired layers: ``Linear`` and ``Conv`` layers whose weights a rule selects; ``sparsify``.

A dense layer from ``C_in`` to ``C_out`` channels is a complete bipartite channel graph;
a wired layer keeps its usual ``weight`` and adds a same-shape ``edge_mask`` selected by
the same rules and top-k as :class:`~graphwire.WiredGraph`. :func:`sparsify` turns the
layers of any existing network into wired ones
(attention layers into :class:`WiredMultiheadAttention`).
"""

from graphwire.layers._attention import WiredMultiheadAttention
from graphwire.layers._sparsify import sparsify
from graphwire.layers._wired_layers import (
    WiredConv1d,
    WiredConv2d,
    WiredConv3d,
    WiredLinear,
)

__all__ = [
    "WiredLinear",
    "WiredConv1d",
    "WiredConv2d",
    "WiredConv3d",
    "WiredMultiheadAttention",
    "sparsify",
]
