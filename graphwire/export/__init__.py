"""Export: the inference room. :func:`~graphwire.freeze` and what it builds.

The last stage of graphwire's flow: graph -> wiring rule -> execution -> training ->
**export**. Train with the module, deploy the frozen one: :func:`~graphwire.freeze`
(alias ``graphwire.compile``) turns a trained :class:`~graphwire.WiredGraph` into a
:class:`FrozenGraph` and the wired layers of any network into plain or sparse layers
(:class:`SparseLinear`, :class:`SparseConv2d`). :func:`compact_channels` removes provably
dead channels from any network of plain layers (:class:`CompactionReport` says which).
The native CPU kernels behind the sparse modules are described by :func:`kernel_info`.
Cost counting (``graphwire.count``) lives in :mod:`graphwire.cost`.
"""

from graphwire.export._compact import CompactionReport, compact_channels
from graphwire.export._graph import FrozenGraph
from graphwire.export._info import kernel_info
from graphwire.export._layers import SparseConv2d, SparseLinear

__all__: list[str] = [
    "FrozenGraph",
    "SparseLinear",
    "SparseConv2d",
    "compact_channels",
    "CompactionReport",
    "kernel_info",
]
