"""Export: frozen inference modules (``graphwire.compile``) and channel compaction.

The last stage of graphwire's flow: graph -> wiring rule -> execution -> training ->
**export**. Cost counting (``graphwire.count``) lives in :mod:`graphwire.cost`.
:func:`compact_channels` shrinks the plain layers of a frozen sparse model by removing
provably dead channels (:class:`CompactionReport` says which); :func:`fold_batchnorms`
folds inference BatchNorms into the convolutions before them; :func:`fuse_epilogues`
fuses ReLUs and residual additions into the sparse convolutions before them.
"""

from graphwire.export._compact import CompactionReport, LayerChannels, compact_channels
from graphwire.export._fold import fold_batchnorms
from graphwire.export._fuse import fuse_epilogues
from graphwire.export.compiler import compile, freeze_layer

__all__: list[str] = [
    "compile",
    "freeze_layer",
    "compact_channels",
    "CompactionReport",
    "LayerChannels",
    "fold_batchnorms",
    "fuse_epilogues",
]
