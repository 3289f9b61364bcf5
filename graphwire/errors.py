"""graphwire's exceptions: one small hierarchy rooted at :class:`GraphwireError`.

Every exception is a :class:`ValueError`, so code that already guards against bad
arguments keeps working; catch :class:`GraphwireError` to handle graphwire's own.

.. code-block:: text

    GraphwireError (ValueError)
    ├── GraphError            a graph problem
    │   ├── EdgeIndexError
    │   ├── CycleError
    │   └── ReachabilityError
    ├── SelectionError
    ├── CheckpointError
    ├── DataError
    └── ConfigError           a bad configuration value or option name
"""

from __future__ import annotations

__all__ = [
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


class GraphwireError(ValueError):
    """Base class of every graphwire exception (a :class:`ValueError`).

    Example:
        >>> from graphwire import ConfigError, GraphwireError
        >>> from graphwire import OptimizerConfig
        >>> try:
        ...     OptimizerConfig(lr=0)
        ... except GraphwireError as err:
        ...     print(type(err).__name__, err)
        ConfigError OptimizerConfig.lr must be positive; got 0.
    """


class GraphError(GraphwireError):
    """A channel graph is malformed or unfit for the requested use.

    The base of :class:`EdgeIndexError`, :class:`CycleError` and
    :class:`ReachabilityError`.
    """


class EdgeIndexError(GraphError):
    """``edge_index``, ``num_nodes`` or the node sets are malformed.

    Raised for a wrong shape or dtype, out-of-range or duplicate indices, self-loops
    where the mode forbids them, non-finite edge weights, and a ``num_nodes`` too large
    to hold in memory.
    """


class CycleError(GraphError):
    """A cycle was found where a directed acyclic graph is required.

    Attributes:
        cycle: One cycle as a list of node indices, first node repeated at the end.
    """

    def __init__(self, message: str, cycle: list[int]):
        super().__init__(message)
        self.cycle = cycle


class ReachabilityError(GraphError):
    """An output node cannot be reached from any input node."""


class SelectionError(GraphwireError):
    """An edge budget (``k`` or ``density``), scope or wiring rule is invalid."""


class CheckpointError(GraphwireError):
    """A checkpoint is missing, truncated, or does not match the model."""


class DataError(GraphwireError):
    """A data set is missing, incomplete, or needs a package that is not installed."""


class ConfigError(GraphwireError):
    """A configuration value or option name is invalid.

    Raised for a bad learning rate, momentum or schedule, an unknown option or model
    name, a model-name clash in a registry, or an argument of the wrong kind.
    """
