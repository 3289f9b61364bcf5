import math

import pytest
import torch

import graphwire
from graphwire import ChannelGraph, CycleError, EdgeIndexError, GraphError, ReachabilityError


def ei(*pairs):
    return torch.tensor(pairs, dtype=torch.long).t()


def test_exception_hierarchy_is_rooted_at_graphwire_error():
    for cls in (EdgeIndexError, CycleError, ReachabilityError):
        assert issubclass(cls, GraphError)
    for cls in (
        GraphError,
        graphwire.SelectionError,
        graphwire.CheckpointError,
        graphwire.DataError,
        graphwire.ConfigError,
    ):
        assert cls.__bases__ == (graphwire.GraphwireError,)
    # not graph problems: a bad learning rate is no GraphError
    for cls in (graphwire.SelectionError, graphwire.CheckpointError, graphwire.DataError):
        assert not issubclass(cls, GraphError)
    assert not issubclass(graphwire.ConfigError, GraphError)
    assert graphwire.GraphwireError.__bases__ == (ValueError,)
    import graphwire.errors as errors

    assert set(errors.__all__) <= set(graphwire.__all__)


def test_good_graph_passes_every_mode():
    g = ChannelGraph(ei((0, 2), (1, 2), (2, 3)), 4, inputs=[0, 1], outputs=[3])
    for mode in (None, "dag", "discrete", "continuous"):
        g.validate(mode=mode)
    assert [t.tolist() for t in g.generations] == [[0, 1], [2], [3]]


@pytest.mark.parametrize(
    "edge_index, num_nodes, match",
    [
        (torch.tensor([0, 1, 2]), 3, r"shape \[2, E\].*got shape \[3\]"),
        (torch.tensor([[0, 1], [1, 2], [2, 0]]), 3, r"shape \[2, E\].*got shape \[3, 2\]"),
        (torch.tensor([[0], [1]], dtype=torch.int32), 3, r"dtype torch.int64; got torch.int32"),
        (torch.tensor([[0, -1], [1, 2]]), 3, r"\[0, num_nodes=3\); column 1 is \[-1, 2\]"),
        (torch.tensor([[0, 1], [1, 3]]), 3, r"\[0, num_nodes=3\); column 1 is \[1, 3\]"),
        (
            torch.tensor([[0, 1, 0], [1, 2, 1]]),
            3,
            r"duplicate edges: 0 -> 1 appears at columns \[0, 2\]",
        ),
        (torch.zeros(2, 0, dtype=torch.long), 3, r"no edges"),
    ],
)
def test_edge_index_errors(edge_index, num_nodes, match):
    with pytest.raises(EdgeIndexError, match=match):
        ChannelGraph(edge_index, num_nodes, inputs=[0], outputs=[num_nodes - 1])


def test_edge_index_must_be_a_tensor():
    with pytest.raises(EdgeIndexError, match="must be a torch.Tensor"):
        ChannelGraph([[0], [1]], 2, inputs=[0], outputs=[1])


def test_num_nodes_must_be_positive():
    with pytest.raises(EdgeIndexError, match="num_nodes must be a positive int; got int 0"):
        ChannelGraph(ei((0, 1)), 0, inputs=[0], outputs=[1])


def test_self_loop_rejected_in_dag_mode_only():
    g = ChannelGraph(ei((0, 1), (1, 1)), 2, inputs=[0], outputs=[1])
    g.validate("discrete")
    with pytest.raises(EdgeIndexError, match=r"self-loop 1 -> 1 at column 1; mode='dag'"):
        g.validate("dag")


def test_cycle_is_named():
    g = ChannelGraph(ei((0, 1), (1, 2), (2, 3), (3, 1), (3, 4)), 5, inputs=[0], outputs=[4])
    g.validate("continuous")
    with pytest.raises(CycleError, match=r"cycle 1 -> 2 -> 3 -> 1") as info:
        g.validate("dag")
    assert info.value.cycle == [1, 2, 3, 1]


def test_input_with_incoming_edge_in_dag_mode():
    g = ChannelGraph(ei((0, 2), (0, 1), (1, 2)), 3, inputs=[0, 1], outputs=[2])
    g.validate("discrete")
    with pytest.raises(EdgeIndexError, match=r"input node 1 has an incoming edge 0 -> 1"):
        g.validate("dag")


def test_unreachable_output():
    with pytest.raises(ReachabilityError, match=r"output nodes \[3\] cannot be reached"):
        ChannelGraph(ei((0, 1), (2, 3)), 4, inputs=[0], outputs=[1, 3])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_edge_weight(bad):
    with pytest.raises(EdgeIndexError, match=r"edge 1 \(1 -> 2\) has weight"):
        ChannelGraph(
            ei((0, 1), (1, 2)), 3, inputs=[0], outputs=[2], edge_weight=torch.tensor([1.0, bad])
        )


def test_edge_weight_shape():
    with pytest.raises(EdgeIndexError, match=r"shape \[E=2\]"):
        ChannelGraph(ei((0, 1), (1, 2)), 3, inputs=[0], outputs=[2], edge_weight=torch.ones(3))


@pytest.mark.parametrize(
    "inputs, match",
    [
        ([], "at least one node"),
        ([5], r"\[0, num_nodes=3\); got \[5\]"),
        ([0, 0], "more than once"),
        ([0.5], "integer"),
    ],
)
def test_bad_inputs(inputs, match):
    with pytest.raises(EdgeIndexError, match=match):
        ChannelGraph(ei((0, 1), (1, 2)), 3, inputs=inputs, outputs=[2])


def test_groups_must_be_disjoint_and_cover():
    edges = ei((0, 1), (1, 2))
    with pytest.raises(EdgeIndexError, match="disjoint; node 1"):
        ChannelGraph(edges, 3, inputs=[0], outputs=[2], groups={"a": [0, 1], "b": [1, 2]})
    with pytest.raises(EdgeIndexError, match=r"cover every node; nodes \[2\]"):
        ChannelGraph(edges, 3, inputs=[0], outputs=[2], groups=[[0], [1]])
    g = ChannelGraph(edges, 3, inputs=[0], outputs=[2], groups={"a": [0], "b": [1, 2]})
    assert g.edge_group.tolist() == [1, 1]


def test_unknown_mode_lists_valid():
    g = ChannelGraph(ei((0, 1)), 2, inputs=[0], outputs=[1])
    with pytest.raises(
        graphwire.ConfigError, match="mode='ode' is not known; expected one of 'continuous', 'dag'"
    ):
        g.validate("ode")


def test_reachability_helpers():
    g = ChannelGraph(ei((0, 1), (1, 2), (3, 2)), 4, inputs=[0], outputs=[2])
    assert g.reachable_from_inputs().tolist() == [True, True, True, False]
    assert g.reaches_outputs().tolist() == [True, True, True, True]
    assert g.reaches_outputs(torch.tensor([False, True, True])).tolist() == [
        False,
        True,
        True,
        True,
    ]


def test_cycle_found_behind_a_long_tail_and_is_a_real_cycle():
    # a chain 0 -> 1 -> ... -> 40 feeding a 3-cycle, plus nodes downstream of the cycle
    chain = [(i, i + 1) for i in range(40)]
    edges = chain + [(40, 41), (41, 42), (42, 40), (42, 43), (43, 44)]
    g = ChannelGraph(ei(*edges), 45, inputs=[0], outputs=[44])
    with pytest.raises(CycleError) as info:
        g.validate("dag")
    cycle = info.value.cycle
    assert cycle == [40, 41, 42, 40]
    pairs = set(edges)
    assert all((u, v) in pairs for u, v in zip(cycle, cycle[1:]))


def test_generations_partition_nodes_and_respect_edges():
    from graphwire.graph import random_graph

    g = random_graph("erdos_renyi", 60, p=0.1, seed=4)
    gens = g.generations
    level = torch.empty(g.num_nodes, dtype=torch.long)
    for i, nodes in enumerate(gens):
        level[nodes] = i
    assert sorted(torch.cat(gens).tolist()) == list(range(60))
    assert bool((level[g.edge_index[0]] < level[g.edge_index[1]]).all())


_HUGE_NUM_NODES = """
import resource, sys, torch
from graphwire import ChannelGraph, EdgeIndexError
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))  # a leak fails, not the machine
for n in (10**10, 10**20):
    try:
        ChannelGraph(torch.tensor([[0, 1], [1, 2]]), n, inputs=[0], outputs=[2])
    except EdgeIndexError as err:
        print(err)
    else:
        sys.exit(f"num_nodes={n} was accepted")
"""


def test_impossible_num_nodes_is_refused_before_allocating():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", _HUGE_NUM_NODES],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = proc.stdout.splitlines()[0]
    assert "num_nodes=10000000000 is too large" in first
    assert "32 bytes per node, 298.0 GiB" in first and "typo" in first


def test_large_but_possible_num_nodes_is_accepted():
    g = ChannelGraph(ei((0, 1), (1, 2)), 10**6, inputs=[0], outputs=[2])
    assert g.reachable_from_inputs().tolist()[:4] == [True, True, True, False]
    assert int(g.in_degree.sum()) == 2 and g.in_degree.numel() == 10**6
