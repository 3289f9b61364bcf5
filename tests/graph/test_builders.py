import pytest
import torch

from graphwire import EdgeIndexError
from graphwire.graph import bipartite, complete_digraph, layered_dag, random_graph


def test_layered_dag_counts_and_groups():
    sizes = [32, 192, 192, 192, 192]
    g = layered_dag(sizes)
    expected = sum(sizes[i] * sizes[j] for i in range(5) for j in range(i + 1, 5))
    assert g.num_edges == expected
    assert g.num_nodes == 800
    assert g.inputs.tolist() == list(range(32))
    assert g.outputs.tolist() == list(range(608, 800))
    assert g.group_names == tuple(f"block{i}" for i in range(5))
    # every edge goes from an earlier block to a later one
    gid = g.group_id
    assert bool((gid[g.edge_index[0]] < gid[g.edge_index[1]]).all())
    g.validate("dag")


@pytest.mark.parametrize("self_loops, count", [(False, 90), (True, 100)])
def test_complete_digraph(self_loops, count):
    g = complete_digraph(10, inputs=2, outputs=3, self_loops=self_loops)
    assert g.num_edges == count
    assert g.inputs.tolist() == [0, 1] and g.outputs.tolist() == [7, 8, 9]


def test_bipartite_matches_linear_layout():
    g = bipartite(3, 4)
    assert g.num_edges == 12
    lin = torch.nn.Linear(3, 4)
    # column e of edge_index is entry (out, in) of the weight in row-major order
    out, inp = g.edge_index[1] - 3, g.edge_index[0]
    assert torch.equal(lin.weight[out, inp], lin.weight.flatten())


@pytest.mark.parametrize(
    "build",
    [
        lambda s: random_graph("erdos_renyi", 30, p=0.2, seed=s),
        lambda s: random_graph("gnm", 30, m=60, seed=s),
        lambda s: random_graph("watts_strogatz", 30, k=4, p=0.3, seed=s),
        lambda s: random_graph("barabasi_albert", 30, m=2, seed=s),
    ],
)
def test_random_builders_reproducible_and_acyclic(build):
    a, b, c = build(1), build(1), build(2)
    assert torch.equal(a.edge_index, b.edge_index)
    assert not torch.equal(a.edge_index, c.edge_index) or a.num_edges != c.num_edges
    a.validate("dag")
    assert bool((a.edge_index[0] < a.edge_index[1]).all())


def test_random_builder_counts():
    assert random_graph("gnm", 20, m=50, seed=0).num_edges == 50
    assert random_graph("gnm", 20, m=50, seed=0, dag=False).num_edges == 100
    assert random_graph("watts_strogatz", 20, k=4, p=0.1, seed=0).num_edges == 40
    assert random_graph("barabasi_albert", 20, m=3, seed=0).num_edges == 51


def test_builder_errors():
    with pytest.raises(EdgeIndexError, match="at least two blocks"):
        layered_dag([4])
    with pytest.raises(EdgeIndexError, match=r"block_sizes\[1\] must be a positive int"):
        layered_dag([4, 0])
    with pytest.raises(EdgeIndexError, match="p must be a probability"):
        random_graph("erdos_renyi", 5, p=1.5, seed=0)
    with pytest.raises(EdgeIndexError, match="kind='ws' is not known; expected one of"):
        random_graph("ws", 5, p=0.5, seed=0)
    with pytest.raises(EdgeIndexError, match=r"takes the parameters \['k', 'p'\]; got \['p'\]"):
        random_graph("watts_strogatz", 10, p=0.5, seed=0)
    with pytest.raises(EdgeIndexError, match=r"m must be an int in \[1, num_nodes=10\)"):
        random_graph("barabasi_albert", 10, m=10, seed=0)
    with pytest.raises(EdgeIndexError, match=r"inputs=11 must be in \[1, 10\]"):
        complete_digraph(10, inputs=11, outputs=1)
