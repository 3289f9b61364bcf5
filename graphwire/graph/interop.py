"""Conversions between :class:`ChannelGraph`, networkx and torch-geometric."""

from __future__ import annotations

from typing import Any

import networkx as nx
import torch
from torch import Tensor

from graphwire._utils import describe
from graphwire.errors import EdgeIndexError
from graphwire.graph.channel_graph import ChannelGraph, NodeSet

__all__ = ["to_networkx", "from_networkx", "to_pyg", "from_pyg"]


def to_networkx(graph: ChannelGraph, *, edge_weight: Tensor | None = None) -> nx.DiGraph:
    """Convert a channel graph to a :class:`networkx.DiGraph`.

    Nodes are ``0 .. N-1`` with the attributes ``input`` and ``output`` (booleans) and
    ``group`` (the group name, when the graph has groups); edges carry ``weight`` when
    the graph (or the ``edge_weight`` argument) has weights.

    Args:
        graph: The graph to convert.
        edge_weight: Optional ``[E]`` weights that override ``graph.edge_weight``.

    Example:
        >>> from graphwire.graph import bipartite, to_networkx
        >>> to_networkx(bipartite(2, 2)).number_of_edges()
        4
    """
    weight = graph.edge_weight if edge_weight is None else edge_weight
    out = nx.DiGraph()
    is_in = torch.zeros(graph.num_nodes, dtype=torch.bool)
    is_in[graph.inputs] = True
    is_out = torch.zeros(graph.num_nodes, dtype=torch.bool)
    is_out[graph.outputs] = True
    for v in range(graph.num_nodes):
        attrs: dict[str, Any] = {"input": bool(is_in[v]), "output": bool(is_out[v])}
        if graph.group_id is not None:
            attrs["group"] = graph.group_names[int(graph.group_id[v])]
        out.add_node(v, **attrs)
    pairs = graph.edge_index.t().tolist()
    if weight is None:
        out.add_edges_from(pairs)
    else:
        w = weight.detach().cpu().tolist()
        out.add_edges_from((u, v, {"weight": wi}) for (u, v), wi in zip(pairs, w))
    return out


def from_networkx(
    graph: nx.DiGraph,
    *,
    inputs: NodeSet | None = None,
    outputs: NodeSet | None = None,
    weight: str | None = "weight",
    return_mapping: bool = False,
) -> ChannelGraph | tuple[ChannelGraph, dict[Any, int]]:
    """Build a channel graph from a :class:`networkx.DiGraph`.

    Nodes are numbered in the graph's node order. When the labels are not already
    ``0 .. N-1`` the original labels are kept in ``node_labels`` and, with
    ``return_mapping=True``, the label-to-index mapping is returned too.

    Args:
        graph: A directed graph (an undirected one is rejected: orient it first).
        inputs: Input nodes as *labels*; default: nodes with the attribute ``input`` set
            to true, else nodes without incoming edges.
        outputs: Output nodes as *labels*; default: nodes with the attribute ``output``,
            else nodes without outgoing edges.
        weight: Edge attribute read into ``edge_weight`` when every edge has it; ``None``
            ignores weights.
        return_mapping: Also return the ``{label: index}`` mapping.

    Example:
        >>> import networkx as nx
        >>> from graphwire.graph import from_networkx
        >>> g, mapping = from_networkx(nx.DiGraph([("a", "b"), ("b", "c")]), return_mapping=True)
        >>> g.edge_index.tolist(), mapping
        ([[0, 1], [1, 2]], {'a': 0, 'b': 1, 'c': 2})
    """
    if not isinstance(graph, nx.DiGraph):
        raise EdgeIndexError(
            f"graph must be a networkx.DiGraph; got {describe(graph)}. Orient an undirected "
            "graph first, e.g. nx.DiGraph((min(u, v), max(u, v)) for u, v in g.edges)."
        )
    labels = list(graph.nodes)
    mapping = {label: i for i, label in enumerate(labels)}
    pairs = [(mapping[u], mapping[v]) for u, v in graph.edges]
    edge_index = torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)
    edge_weight = None
    if weight is not None and pairs and all(weight in d for _, _, d in graph.edges(data=True)):
        edge_weight = torch.tensor(
            [float(d[weight]) for _, _, d in graph.edges(data=True)], dtype=torch.float64
        )

    def nodes_for(given, attr: str, degree) -> list[int]:
        if given is not None:
            missing = [x for x in given if x not in mapping]
            if missing:
                raise EdgeIndexError(f"{attr}s name nodes that are not in the graph: {missing}.")
            return [mapping[x] for x in given]
        flagged = [mapping[v] for v, d in graph.nodes(data=True) if d.get(attr)]
        return flagged or [mapping[v] for v, deg in degree if deg == 0]

    out = ChannelGraph(
        edge_index,
        len(labels),
        inputs=nodes_for(inputs, "input", graph.in_degree),
        outputs=nodes_for(outputs, "output", graph.out_degree),
        edge_weight=edge_weight,
    )
    if labels != list(range(len(labels))):
        out.node_labels = tuple(labels)
    return (out, mapping) if return_mapping else out


def to_pyg(graph: ChannelGraph, *, edge_weight: Tensor | None = None):
    """Convert to :class:`torch_geometric.data.Data`.

    The result has ``edge_index``, ``num_nodes``, boolean ``input_mask`` and
    ``output_mask`` of shape ``[N]``, ``group_id`` (when the graph has groups, with the
    names in ``group_names``) and ``edge_weight`` (when weights exist).

    Example:
        >>> from graphwire.graph import bipartite, to_pyg
        >>> to_pyg(bipartite(2, 3))
        Data(edge_index=[2, 6], num_nodes=5, input_mask=[5], output_mask=[5])
    """
    from torch_geometric.data import Data

    n = graph.num_nodes
    input_mask = torch.zeros(n, dtype=torch.bool)
    input_mask[graph.inputs] = True
    output_mask = torch.zeros(n, dtype=torch.bool)
    output_mask[graph.outputs] = True
    data = Data(
        edge_index=graph.edge_index.clone(),
        num_nodes=n,
        input_mask=input_mask,
        output_mask=output_mask,
    )
    if graph.group_id is not None:
        data.group_id = graph.group_id.clone()
        data.group_names = list(graph.group_names)
    weight = graph.edge_weight if edge_weight is None else edge_weight
    if weight is not None:
        data.edge_weight = weight.detach().clone()
    return data


def from_pyg(
    data, *, inputs: NodeSet | None = None, outputs: NodeSet | None = None
) -> ChannelGraph:
    """Build a channel graph from :class:`torch_geometric.data.Data`.

    Reads ``edge_index``, ``num_nodes``, and when present ``input_mask``,
    ``output_mask``, ``group_id`` (with ``group_names``) and ``edge_weight`` (or a
    one-column ``edge_attr``), as written by :func:`to_pyg`.

    Args:
        data: The PyG data object.
        inputs: Input nodes; required when ``data`` has no ``input_mask``.
        outputs: Output nodes; required when ``data`` has no ``output_mask``.

    Example:
        >>> from graphwire.graph import bipartite, from_pyg, to_pyg
        >>> from_pyg(to_pyg(bipartite(2, 3))).num_edges
        6
    """

    def nodes_for(given, attr: str):
        if given is not None:
            return given
        mask = getattr(data, f"{attr}_mask", None)
        if mask is None:
            raise EdgeIndexError(
                f"data has no {attr}_mask; pass {attr}s=... to choose the {attr} nodes."
            )
        return mask.nonzero().flatten()

    weight = getattr(data, "edge_weight", None)
    attr = getattr(data, "edge_attr", None)
    if weight is None and attr is not None and attr.numel() == data.edge_index.shape[1]:
        weight = attr.reshape(-1)
    group_id = getattr(data, "group_id", None)
    groups = None
    if group_id is not None:
        names = getattr(data, "group_names", None) or [
            f"group{i}" for i in range(int(group_id.max()) + 1)
        ]
        groups = {name: (group_id == i).nonzero().flatten() for i, name in enumerate(names)}
    return ChannelGraph(
        data.edge_index,
        int(data.num_nodes),
        inputs=nodes_for(inputs, "input"),
        outputs=nodes_for(outputs, "output"),
        groups=groups,
        edge_weight=weight,
    )
