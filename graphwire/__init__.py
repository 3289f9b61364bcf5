"""graphwire: Discovering Neural Wirings for PyTorch.

The flow of the package mirrors the flow of the method:

1. :mod:`graphwire.graph` - channel graphs in ``edge_index`` form (``ChannelGraph``).
2. :mod:`graphwire.wiring` - the top-k, wiring rules and the ``DNWOptimizer``.
3. :mod:`graphwire.execution` - node operations, the reference executors, ``WiredGraph``.
4. :mod:`graphwire.training` - the training loop, checkpoints and data.
5. :mod:`graphwire.export` - compiled inference modules and cost counting.
"""

from graphwire.errors import (
    CheckpointError,
    ConfigError,
    CycleError,
    DataError,
    EdgeIndexError,
    GraphError,
    GraphwireError,
    ReachabilityError,
    SelectionError,
)
from graphwire.execution import ODESolver, WiredGraph
from graphwire.export import compile, count
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
    "GraphwireError",
    "GraphError",
    "EdgeIndexError",
    "CycleError",
    "ReachabilityError",
    "SelectionError",
    "CheckpointError",
    "DataError",
    "ConfigError",
    "Trainer",
    "TrainConfig",
    "OptimizerConfig",
    "ScheduleConfig",
]
