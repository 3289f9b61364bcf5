"""graphwire: Discovering Neural Wirings for PyTorch.

The flow of the package mirrors the flow of the method:

1. :mod:`graphwire.graph` - channel graphs in ``edge_index`` form (``ChannelGraph``).
2. :mod:`graphwire.wiring` - the top-k, wiring rules and the ``DNWOptimizer``.
3. :mod:`graphwire.execution` - node operations, ``WiredGraph`` and its backends
   (:mod:`graphwire.lowering` holds the dense lowering and the frozen module,
   :mod:`graphwire.layers` the wired layers and ``sparsify``).
4. :mod:`graphwire.training` - the training loop, checkpoints and data.
5. :mod:`graphwire.export` - frozen inference modules (``compile``).
6. :mod:`graphwire.cost` - live parameters and multiply-adds (``count``).
"""

from graphwire.cost import count
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
from graphwire.execution import WiredGraph
from graphwire.export import compile
from graphwire.graph import ChannelGraph
from graphwire.lowering import ODESolver
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
    "ConfigError",
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
