"""Export: compiled dense modules for training and inference, and cost counting.

The last stage of graphwire's flow: graph -> wiring rule -> execution -> training ->
**export**.
"""

from graphwire.export.compiler import (
    KERNELS,
    SPARSE_MAX_DENSITY,
    CompiledGraph,
    DenseMix,
    SparseMix,
    compile,
)
from graphwire.export.counting import (
    COST_KINDS,
    Cost,
    CostItem,
    count,
    register_cost,
    register_node_cost,
)

__all__: list[str] = [
    "compile",
    "CompiledGraph",
    "DenseMix",
    "SparseMix",
    "KERNELS",
    "SPARSE_MAX_DENSITY",
    "count",
    "Cost",
    "CostItem",
    "COST_KINDS",
    "register_cost",
    "register_node_cost",
]
