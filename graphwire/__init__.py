"""graphwire: Discovering Neural Wirings for PyTorch.

The flow of the package mirrors the flow of the method:

1. :mod:`graphwire.graph` - channel graphs in ``edge_index`` form (``ChannelGraph``).
2. :mod:`graphwire.wiring` - the top-k, wiring rules and the ``DNWOptimizer``.
3. :mod:`graphwire.execution` - node operations and ``WiredGraph``, run by the training
   backends of :mod:`graphwire.backends`; :mod:`graphwire.layers` holds the wired layers
   and ``sparsify``.
4. :mod:`graphwire.training` - the training loop, checkpoints and data.
5. :mod:`graphwire.export` - the inference room: ``freeze`` (alias ``compile``).
6. :mod:`graphwire.cost` - live parameters and multiply-adds (``count``).
"""

from graphwire.backends.dynamics import ODESolver
from graphwire.cost._count import count
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
from graphwire.execution.wired import WiredGraph

# ``compile`` is freeze's name before 0.2: a documented alias, not a name of its own
from graphwire.export.freeze import compile as compile
from graphwire.export.freeze import freeze
from graphwire.graph.channel_graph import ChannelGraph
from graphwire.training.config import OptimizerConfig, ScheduleConfig, TrainConfig
from graphwire.training.loop import Trainer
from graphwire.wiring.optimizer import DNWOptimizer

__version__ = "0.2.0.dev0"

__all__ = [
    "ChannelGraph",
    "WiredGraph",
    "DNWOptimizer",
    "ODESolver",
    "freeze",
    "count",
    "Trainer",
    "TrainConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "GraphwireError",
    "GraphError",
    "EdgeIndexError",
    "CycleError",
    "ReachabilityError",
    "SelectionError",
    "CheckpointError",
    "DataError",
    "ConfigError",
]
