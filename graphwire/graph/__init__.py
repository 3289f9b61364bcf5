"""Channel graphs: the ``edge_index`` contract, builders and interop.

This is the first stage of graphwire's flow: graph -> wiring rule -> execution ->
training -> export.
"""

from graphwire.graph.builders import (
    barabasi_albert,
    bipartite,
    complete_digraph,
    erdos_renyi,
    gnm,
    layered_dag,
    watts_strogatz,
)
from graphwire.graph.channel_graph import MODES, ChannelGraph
from graphwire.graph.interop import from_networkx, from_pyg, to_networkx, to_pyg

__all__ = [
    "ChannelGraph",
    "MODES",
    "layered_dag",
    "complete_digraph",
    "bipartite",
    "erdos_renyi",
    "gnm",
    "watts_strogatz",
    "barabasi_albert",
    "to_networkx",
    "from_networkx",
    "to_pyg",
    "from_pyg",
]
