"""Builders for the graphs DNW starts from: layered DAGs, complete digraphs, random graphs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import networkx as nx
import torch

from graphwire._utils import choose
from graphwire.errors import EdgeIndexError
from graphwire.graph.channel_graph import ChannelGraph, NodeSet

__all__ = ["layered_dag", "complete_digraph", "bipartite", "random_graph"]


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise EdgeIndexError(f"{name} must be a positive int; got {value!r}.")
    return value


def _pick(name: str, nodes: int | NodeSet, n: int, *, last: bool) -> NodeSet:
    """An int means the first (or last) that many nodes; anything else passes through."""
    if isinstance(nodes, int) and not isinstance(nodes, bool):
        if not 0 < nodes <= n:
            raise EdgeIndexError(f"{name}={nodes} must be in [1, {n}] when given as a count.")
        return range(n - nodes, n) if last else range(nodes)
    return nodes


def layered_dag(block_sizes: Sequence[int]) -> ChannelGraph:
    """The paper's layered complete DAG: edges from every block to every later block.

    Block 0 holds the input nodes and the last block the output nodes. Each block is a
    node group named ``"block{i}"``, so ``scope="group"`` selects per block.

    Args:
        block_sizes: Number of nodes in each block, at least two blocks.

    Returns:
        A graph with ``sum over i < j of b_i * b_j`` candidate edges.

    Example:
        >>> from graphwire.graph import layered_dag
        >>> layered_dag([2, 3, 1]).num_edges  # 2*3 + 2*1 + 3*1
        11
    """
    sizes = [_positive(f"block_sizes[{i}]", b) for i, b in enumerate(block_sizes)]
    if len(sizes) < 2:
        raise EdgeIndexError(f"block_sizes needs at least two blocks; got {list(block_sizes)}.")
    starts = torch.tensor([0, *sizes]).cumsum(0).tolist()
    parts = []
    for j in range(1, len(sizes)):
        src = torch.arange(0, starts[j])  # every node of every earlier block
        dst = torch.arange(starts[j], starts[j + 1])
        parts.append(torch.cartesian_prod(src, dst).t())
    n = starts[-1]
    groups = {f"block{i}": range(starts[i], starts[i + 1]) for i in range(len(sizes))}
    return ChannelGraph(
        torch.cat(parts, dim=1),
        n,
        inputs=range(sizes[0]),
        outputs=range(starts[-2], n),
        groups=groups,
    )


def complete_digraph(
    num_nodes: int,
    *,
    inputs: int | NodeSet,
    outputs: int | NodeSet,
    self_loops: bool = False,
) -> ChannelGraph:
    """The complete directed graph, for discrete- and continuous-time networks.

    Args:
        num_nodes: Number of nodes ``N``.
        inputs: Input nodes, or a count ``n`` meaning the first ``n`` nodes.
        outputs: Output nodes, or a count ``n`` meaning the last ``n`` nodes.
        self_loops: Whether to include the ``N`` edges ``v -> v``.

    Returns:
        A graph with ``N * (N - 1)`` candidate edges (``N * N`` with self-loops).

    Example:
        >>> from graphwire.graph import complete_digraph
        >>> complete_digraph(4, inputs=1, outputs=1).num_edges
        12
    """
    n = _positive("num_nodes", num_nodes)
    src, dst = torch.cartesian_prod(torch.arange(n), torch.arange(n)).t()
    keep = torch.ones_like(src, dtype=torch.bool) if self_loops else src != dst
    return ChannelGraph(
        torch.stack([src[keep], dst[keep]]),
        n,
        inputs=_pick("inputs", inputs, n, last=False),
        outputs=_pick("outputs", outputs, n, last=True),
    )


def bipartite(num_inputs: int, num_outputs: int) -> ChannelGraph:
    """A complete bipartite graph from ``num_inputs`` to ``num_outputs`` nodes: a dense layer.

    Nodes ``0 .. num_inputs-1`` are inputs and the rest outputs. Edges are ordered as
    the entries of a ``[num_outputs, num_inputs]`` weight matrix in row-major order, so
    ``weight.flatten()`` of an ``nn.Linear`` lines up with the edges.

    Example:
        >>> from graphwire.graph import bipartite
        >>> g = bipartite(3, 2)
        >>> g.num_edges, g.edge_index[:, :4].tolist()
        (6, [[0, 1, 2, 0], [3, 3, 3, 4]])
    """
    n_in, n_out = _positive("num_inputs", num_inputs), _positive("num_outputs", num_outputs)
    dst, src = torch.cartesian_prod(torch.arange(n_out), torch.arange(n_in)).t()
    return ChannelGraph(
        torch.stack([src, dst + n_in]),
        n_in + n_out,
        inputs=range(n_in),
        outputs=range(n_in, n_in + n_out),
    )


def _from_undirected(
    und: nx.Graph, *, dag: bool, inputs: int | NodeSet | None, outputs: int | NodeSet | None
) -> ChannelGraph:
    """Orient an undirected networkx graph: ``u -> v`` for ``u < v`` (a DAG), or both ways."""
    n = und.number_of_nodes()
    pairs = torch.tensor(sorted((min(u, v), max(u, v)) for u, v in und.edges()), dtype=torch.long)
    if pairs.numel() == 0:
        raise EdgeIndexError("the random graph has no edges; raise its density or node count.")
    edge_index = pairs.t()
    if not dag:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    if inputs is None:
        inputs = (torch.bincount(edge_index[1], minlength=n) == 0).nonzero().flatten()
        if inputs.numel() == 0:
            inputs = torch.tensor([0])
    if outputs is None:
        outputs = (torch.bincount(edge_index[0], minlength=n) == 0).nonzero().flatten()
        if outputs.numel() == 0:
            outputs = torch.tensor([n - 1])
    return ChannelGraph(
        edge_index,
        n,
        inputs=_pick("inputs", inputs, n, last=False),
        outputs=_pick("outputs", outputs, n, last=True),
    )


def _erdos_renyi(n: int, seed: int, *, p: float) -> nx.Graph:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise EdgeIndexError(f"p must be a probability in [0, 1]; got {p!r}.")
    return nx.gnp_random_graph(n, p, seed=seed)


def _gnm(n: int, seed: int, *, m: int) -> nx.Graph:
    if isinstance(m, bool) or not isinstance(m, int) or not 0 < m <= n * (n - 1) // 2:
        raise EdgeIndexError(f"m must be an int in [1, {n * (n - 1) // 2}]; got {m!r}.")
    return nx.gnm_random_graph(n, m, seed=seed)


def _watts_strogatz(n: int, seed: int, *, k: int, p: float) -> nx.Graph:
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k < n:
        raise EdgeIndexError(f"k must be an int in [1, num_nodes={n}); got {k!r}.")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise EdgeIndexError(f"p must be a probability in [0, 1]; got {p!r}.")
    return nx.watts_strogatz_graph(n, k, p, seed=seed)


def _barabasi_albert(n: int, seed: int, *, m: int) -> nx.Graph:
    if isinstance(m, bool) or not isinstance(m, int) or not 0 < m < n:
        raise EdgeIndexError(f"m must be an int in [1, num_nodes={n}); got {m!r}.")
    return nx.barabasi_albert_graph(n, m, seed=seed)


#: The random graph models of :func:`random_graph`, by name, with their parameters.
_RANDOM: dict[str, tuple[Callable[..., nx.Graph], tuple[str, ...]]] = {
    "erdos_renyi": (_erdos_renyi, ("p",)),
    "gnm": (_gnm, ("m",)),
    "watts_strogatz": (_watts_strogatz, ("k", "p")),
    "barabasi_albert": (_barabasi_albert, ("m",)),
}


def random_graph(
    kind: str,
    num_nodes: int,
    *,
    seed: int,
    dag: bool = True,
    inputs: int | NodeSet | None = None,
    outputs: int | NodeSet | None = None,
    **params: Any,
) -> ChannelGraph:
    """A random channel graph drawn by one of networkx's generators.

    The models and their parameters:

    - ``"erdos_renyi"``, ``p``: G(n, p), each pair of nodes joined with probability ``p``;
    - ``"gnm"``, ``m``: G(n, M), ``m`` node pairs drawn uniformly;
    - ``"watts_strogatz"``, ``k`` and ``p``: a small world, a ring lattice of degree ``k``
      (each node joined to its ``k`` nearest neighbours) rewired with probability ``p``;
    - ``"barabasi_albert"``, ``m``: preferential attachment, each new node joined to ``m``
      earlier ones.

    With ``dag=True`` every edge ``{u, v}`` is oriented from the lower to the higher
    index, which makes the graph acyclic (the RandWire construction); otherwise both
    directions are kept. By default the inputs are the nodes without incoming edges and
    the outputs those without outgoing edges; pass a count or node set to choose them.
    The same ``seed`` always gives the same graph.

    Args:
        kind: The model: ``"erdos_renyi"``, ``"gnm"``, ``"watts_strogatz"`` or
            ``"barabasi_albert"``.
        num_nodes: Number of nodes.
        seed: Random seed.
        dag: Orient edges from lower to higher index (acyclic) or keep both directions.
        inputs: Input nodes or a count of first nodes; default: nodes without in-edges.
        outputs: Output nodes or a count of last nodes; default: nodes without out-edges.
        **params: The model's parameters (above), by name.

    Raises:
        EdgeIndexError: for an unknown ``kind`` (the valid ones are listed), a missing or
            unknown parameter, or a parameter out of range.

    Example:
        >>> from graphwire.graph import random_graph
        >>> random_graph("watts_strogatz", 12, k=4, p=0.25, seed=0).num_edges  # n * k / 2
        24
        >>> random_graph("barabasi_albert", 10, m=2, seed=0).num_edges  # (n - m) * m
        16
        >>> random_graph("gnm", 10, m=15, seed=1, dag=False).num_edges  # both directions
        30
    """
    make, names = choose("kind", kind, _RANDOM, EdgeIndexError)
    if set(params) != set(names):
        raise EdgeIndexError(
            f"random_graph({kind!r}, ...) takes the parameters {list(names)}; got "
            f"{sorted(params)}. For example random_graph({kind!r}, {num_nodes}, "
            + ", ".join(f"{n}=..." for n in names)
            + ", seed=0)."
        )
    und = make(_positive("num_nodes", num_nodes), seed, **params)
    return _from_undirected(und, dag=dag, inputs=inputs, outputs=outputs)
