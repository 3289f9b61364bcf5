import networkx as nx
import torch

from graphwire import ChannelGraph
from graphwire.graph import from_networkx, from_pyg, layered_dag, to_networkx, to_pyg


def edge_set(g, weight=None):
    w = weight if weight is not None else g.edge_weight
    pairs = g.edge_index.t().tolist()
    if w is None:
        return {tuple(p) for p in pairs}
    return {(u, v, round(float(x), 12)) for (u, v), x in zip(pairs, w)}


def weighted_graph():
    g = layered_dag([2, 3, 2])
    perm = torch.randperm(g.num_edges)  # order must not matter
    w = torch.randn(g.num_edges, dtype=torch.float64)
    return ChannelGraph(
        g.edge_index[:, perm],
        g.num_nodes,
        inputs=g.inputs,
        outputs=g.outputs,
        groups=g.group_id,
        edge_weight=w,
    )


def test_networkx_round_trip_preserves_edges_weights_roles():
    g = weighted_graph()
    nxg = to_networkx(g)
    assert nxg.nodes[0]["input"] and nxg.nodes[6]["output"] and not nxg.nodes[3]["output"]
    back = from_networkx(nxg)
    assert edge_set(back) == edge_set(g)
    assert back.inputs.tolist() == g.inputs.tolist()
    assert back.outputs.tolist() == g.outputs.tolist()
    assert back.node_labels is None


def test_from_networkx_relabels():
    nxg = nx.DiGraph()
    nxg.add_edge("x", "h", weight=0.5)
    nxg.add_edge("h", "y", weight=-2.0)
    g, mapping = from_networkx(nxg, return_mapping=True)
    assert mapping == {"x": 0, "h": 1, "y": 2}
    assert g.node_labels == ("x", "h", "y")
    assert edge_set(g) == {(0, 1, 0.5), (1, 2, -2.0)}
    assert g.inputs.tolist() == [0] and g.outputs.tolist() == [2]


def test_pyg_round_trip():
    g = weighted_graph()
    data = to_pyg(g)
    assert data.edge_index.shape == (2, g.num_edges)
    back = from_pyg(data)
    assert edge_set(back) == edge_set(g)
    assert torch.equal(back.group_id, g.group_id)
    assert back.group_names == g.group_names
    assert torch.equal(back.inputs, g.inputs) and torch.equal(back.outputs, g.outputs)
