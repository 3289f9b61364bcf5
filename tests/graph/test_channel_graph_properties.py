"""ChannelGraph's tensor algorithms against networkx as the oracle, on random graphs."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphwire import ChannelGraph, ReachabilityError

SETTINGS = settings(max_examples=60, derandomize=True, deadline=None)


@st.composite
def digraphs(draw, acyclic: bool, self_loops: bool = False):
    """``(num_nodes, sorted edge list)``; acyclic graphs point along a random node order."""
    n = draw(st.integers(2, 12))
    node = st.integers(0, n - 1)
    pairs = draw(st.sets(st.tuples(node, node), min_size=1, max_size=3 * n))
    if acyclic:
        order = draw(st.permutations(range(n)))
        rank = {v: i for i, v in enumerate(order)}
        pairs = {(u, v) if rank[u] < rank[v] else (v, u) for u, v in pairs if u != v}
    elif not self_loops:
        pairs = {(u, v) for u, v in pairs if u != v}
    if not pairs:
        pairs = {(0, 1)}
    return n, sorted(pairs)


def _nx(n, edges):
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges)
    return g


def _edge_index(edges):
    return torch.tensor(edges, dtype=torch.long).t().contiguous()


def _nodes(mask: torch.Tensor) -> set[int]:
    return set(mask.nonzero().flatten().tolist())


@SETTINGS
@given(graph=digraphs(acyclic=False, self_loops=True), data=st.data())
def test_reachability_matches_networkx(graph, data):
    n, edges = graph
    inputs = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n), label="inputs")
    outputs = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n), label="outputs")
    g_nx = _nx(n, edges)
    forward = set(inputs).union(*(nx.descendants(g_nx, v) for v in inputs))
    if not set(outputs) <= forward:
        with pytest.raises(ReachabilityError):
            ChannelGraph(_edge_index(edges), n, inputs=sorted(inputs), outputs=sorted(outputs))
        return
    g = ChannelGraph(_edge_index(edges), n, inputs=sorted(inputs), outputs=sorted(outputs))
    assert _nodes(g.reachable_from_inputs()) == forward
    backward = set(outputs).union(*(nx.ancestors(g_nx, v) for v in outputs))
    assert _nodes(g.reaches_outputs()) == backward
    keep = data.draw(st.lists(st.booleans(), min_size=len(edges), max_size=len(edges)))
    sub = _nx(n, [e for e, k in zip(edges, keep) if k])
    mask = torch.tensor(keep)
    assert _nodes(g.reachable_from_inputs(mask)) == set(inputs).union(
        *(nx.descendants(sub, v) for v in inputs)
    )
    assert _nodes(g.reaches_outputs(mask)) == set(outputs).union(
        *(nx.ancestors(sub, v) for v in outputs)
    )


@SETTINGS
@given(graph=st.one_of(digraphs(acyclic=True), digraphs(acyclic=False, self_loops=True)))
def test_cycle_search_matches_networkx(graph):
    n, edges = graph
    g = ChannelGraph(_edge_index(edges), n, inputs=list(range(n)), outputs=[0])
    cycle = g._find_cycle()
    g_nx = _nx(n, edges)
    if nx.is_directed_acyclic_graph(g_nx):
        assert cycle is None
        return
    assert cycle is not None and len(cycle) >= 2 and cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1  # a simple cycle
    assert all(g_nx.has_edge(u, v) for u, v in zip(cycle, cycle[1:]))
    assert cycle[0] == min(cycle)  # starts at its smallest node: deterministic


@SETTINGS
@given(graph=digraphs(acyclic=True), data=st.data())
def test_generations_match_networkx(graph, data):
    n, edges = graph
    g_nx = _nx(n, edges)
    sources = sorted(v for v in range(n) if g_nx.in_degree(v) == 0)
    outputs = data.draw(st.sets(st.integers(0, n - 1), min_size=1), label="outputs")
    g = ChannelGraph(_edge_index(edges), n, inputs=sources, outputs=sorted(outputs))
    expected = [sorted(gen) for gen in nx.topological_generations(g_nx)]
    assert [gen.tolist() for gen in g.generations] == expected
