"""Lowering: a wired graph as dense (and sparse) tensor operations, for training and inference.

One room for everything that turns a channel graph into fast tensor code:

- the layouts (:func:`dag_layout`, :func:`recurrent_layout`): where every node sits in
  the dense blocks, shared by every path below;
- :class:`DenseExecutor`: the default backend of :class:`~graphwire.WiredGraph`, which
  trains and infers through dense blocks rebuilt from the edge weights at every call;
- :class:`CompiledGraph`: the frozen inference module of ``graphwire.compile``
  (dead nodes removed, channels compacted, dense or sparse blocks by a cost model);
- the frozen sparse layers (:class:`SparseLinear`, :class:`SparseConv1d`,
  :class:`SparseConv2d`) that ``graphwire.compile`` swaps in for sparsified layers, by
  the cost model :func:`layer_sparse_wins` (:func:`lower_layer`);
- the continuous-time helper (:class:`~graphwire.ODESolver`, :func:`integrate`) and the
  one input check (:func:`check_features`).
"""

from graphwire.lowering._checks import check_features
from graphwire.lowering._dense import (
    AUTO_MAX_FILL,
    ELL_MAX_PADDING,
    ELL_MAX_ROWS,
    DenseExecutor,
    dense_fill,
    ell_layout,
    mix,
)
from graphwire.lowering._dynamics import ODESolver, integrate
from graphwire.lowering._frozen import (
    SPARSE_MAX_DENSITY,
    CompiledGraph,
    DenseMix,
    SparseMix,
    sparse_kernel_available,
)
from graphwire.lowering._layers import (
    SPARSE_LAYER_MAX_DENSITY,
    SparseConv1d,
    SparseConv2d,
    SparseLinear,
    layer_sparse_wins,
    lower_layer,
)
from graphwire.lowering._layout import (
    DagLayout,
    DagStage,
    RecurrentLayout,
    dag_layout,
    dag_stages,
    recurrent_layout,
)

__all__ = [
    "DagStage",
    "DagLayout",
    "RecurrentLayout",
    "dag_stages",
    "dag_layout",
    "recurrent_layout",
    "DenseExecutor",
    "mix",
    "dense_fill",
    "AUTO_MAX_FILL",
    "ell_layout",
    "ELL_MAX_ROWS",
    "ELL_MAX_PADDING",
    "CompiledGraph",
    "DenseMix",
    "SparseMix",
    "SPARSE_MAX_DENSITY",
    "sparse_kernel_available",
    "SparseLinear",
    "SparseConv1d",
    "SparseConv2d",
    "SPARSE_LAYER_MAX_DENSITY",
    "layer_sparse_wins",
    "lower_layer",
    "ODESolver",
    "integrate",
    "check_features",
]
