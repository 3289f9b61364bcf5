"""Channel graphs: the ``edge_index`` contract, builders and interop.

This is the first stage of graphwire's flow: graph -> wiring rule -> execution ->
training -> export.
"""

from graphwire.graph.builders import bipartite, complete_digraph, layered_dag, random_graph
from graphwire.graph.interop import from_networkx, from_pyg, to_networkx, to_pyg

__all__ = [
    "layered_dag",
    "complete_digraph",
    "bipartite",
    "random_graph",
    "to_networkx",
    "from_networkx",
    "to_pyg",
    "from_pyg",
]
