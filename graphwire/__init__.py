"""graphwire: Discovering Neural Wirings for PyTorch.

The flow of the package mirrors the flow of the method:

1. :mod:`graphwire.graph` - channel graphs in ``edge_index`` form (``ChannelGraph``).
2. :mod:`graphwire.wiring` - the top-k, wiring rules and the ``DNWOptimizer``.
3. :mod:`graphwire.execution` - node operations, the reference executors, ``WiredGraph``.
4. :mod:`graphwire.training` - the training loop, checkpoints and data.
5. :mod:`graphwire.export` - compiled inference modules.
6. :mod:`graphwire.cost` - live parameters and multiply-adds (``count``).
"""

from graphwire.cost import count
from graphwire.errors import (
    CheckpointError,
    CycleError,
    DataError,
    EdgeIndexError,
    GraphError,
    ReachabilityError,
    SelectionError,
)
from graphwire.execution import ODESolver, WiredGraph
from graphwire.export import compile
from graphwire.graph import ChannelGraph
from graphwire.training import OptimizerConfig, ScheduleConfig, TrainConfig, Trainer
from graphwire.wiring import DNWOptimizer

__version__ = "0.1.0"

__all__ = [
    "ChannelGraph",
    "WiredGraph",
    "DNWOptimizer",
    "ODESolver",
    "compile",
    "count",
    "GraphError",
    "EdgeIndexError",
    "CycleError",
    "ReachabilityError",
    "SelectionError",
    "CheckpointError",
    "DataError",
    "Trainer",
    "TrainConfig",
    "OptimizerConfig",
    "ScheduleConfig",
]
