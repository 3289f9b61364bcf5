"""Export: compiled dense modules for training and inference.

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

__all__: list[str] = [
    "compile",
    "CompiledGraph",
    "DenseMix",
    "SparseMix",
    "KERNELS",
    "SPARSE_MAX_DENSITY",
]
