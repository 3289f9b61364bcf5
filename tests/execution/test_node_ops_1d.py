"""The 1-D node operation against a hand-written reference."""

import pytest
import torch

import graphwire
from graphwire import GraphError, WiredGraph
from graphwire.execution.node_ops import NODE_OPS, DepthwiseConv1d, make_node_op
from graphwire.graph import layered_dag


def reference(op, x, nodes):
    """Instance norm -> ReLU -> 3-tap depthwise conv, written out with loops."""
    out = torch.zeros(x.shape[0], x.shape[1], x.shape[2])
    for b in range(x.shape[0]):
        for i, v in enumerate(nodes):
            s = x[b, i]
            s = (s - s.mean()) / torch.sqrt(s.var(unbiased=False) + 1e-5)
            s = torch.relu(s * op.norm_weight[v] + op.norm_bias[v])
            padded = torch.cat([s.new_zeros(1), s, s.new_zeros(1)])
            w = op.conv_weight[v, 0]
            for t in range(x.shape[2]):
                out[b, i, t] = (w * padded[t : t + 3]).sum()
    return out


def test_conv1d_matches_the_reference_on_a_subset_of_nodes():
    torch.manual_seed(0)
    op = DepthwiseConv1d(5)
    with torch.no_grad():
        op.norm_weight.uniform_(0.5, 1.5)
        op.norm_bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 7)
    nodes = torch.tensor([4, 0, 2])
    with torch.no_grad():
        torch.testing.assert_close(op(x, nodes), reference(op, x, nodes.tolist()))
        torch.testing.assert_close(op(torch.randn(2, 5, 7)).shape, torch.Size([2, 5, 7]))


def test_conv1d_is_registered_and_refuses_images():
    assert NODE_OPS["conv1d"] is DepthwiseConv1d
    op = make_node_op("conv1d", 4)
    assert isinstance(op, DepthwiseConv1d) and op.conv_weight.shape == (4, 1, 3)
    with pytest.raises(GraphError, match="conv1d"):
        op(torch.randn(1, 4, 3, 3))


def test_conv1d_graph_counts_and_compiles():
    net = WiredGraph(layered_dag([3, 6, 2]), node_op="conv1d", density=0.5, seed=0).eval()
    x = torch.randn(4, 3, 10)
    cost = graphwire.count(net, (1, 3, 10))
    used = 8  # all 8 non-input nodes are fed or read out at density 0.5 of 30 edges
    assert cost.macs >= int(net.edge_mask.sum()) * 10 and cost.params <= 15 + used * 5
    with torch.no_grad():
        torch.testing.assert_close(graphwire.freeze(net)(x), net(x))
