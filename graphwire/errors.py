"""graphwire's exceptions: one small hierarchy rooted at :class:`GraphError`.

Every exception is a :class:`ValueError`, so code that already guards against bad
arguments keeps working; catch :class:`GraphError` to handle graphwire's own.
"""

from __future__ import annotations

__all__ = [
    "GraphError",
    "EdgeIndexError",
    "CycleError",
    "ReachabilityError",
    "SelectionError",
    "CheckpointError",
    "DataError",
]


class GraphwireError(ValueError):
    """Base class of every graphwire exception (a :class:`ValueError`)."""


class GraphError(GraphwireError):
    """A graph problem."""


class ConfigError(GraphwireError):
    """A configuration value is invalid."""


class EdgeIndexError(GraphError):
    """``edge_index``, ``num_nodes`` or the node sets are malformed.

    Raised for a wrong shape or dtype, out-of-range or duplicate indices, self-loops
    where the mode forbids them, and non-finite edge weights.
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


class SelectionError(GraphError):
    """An edge budget (``k`` or ``density``), scope or wiring rule is invalid."""


class CheckpointError(GraphError):
    """A checkpoint is missing, truncated, or does not match the model."""


class DataError(GraphError):
    """A data set is missing, incomplete, or needs a package that is not installed."""
