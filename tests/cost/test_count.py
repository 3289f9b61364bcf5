import math

import pytest
import torch
from torch import nn

import graphwire
import graphwire.cost
import graphwire.export
from graphwire import GraphError, WiredGraph, count
from graphwire.graph import bipartite, complete_digraph, layered_dag
from graphwire.layers import WiredConv2d
from models import create_model


def set_mask(net, keep):
    """Select exactly the edges (u, v) in ``keep``."""
    pairs = [tuple(e) for e in net.edge_index.t().tolist()]
    with torch.no_grad():
        net.edge_mask.copy_(torch.tensor([p in keep for p in pairs]))


def test_hand_counted_dag():
    # blocks [0, 1] -> [2, 3, 4] -> [5]; keep 0->2, 1->2, 2->5, 0->5 on 8 x 8 maps
    net = WiredGraph(layered_dag([2, 3, 1]), node_op="conv", k=4, seed=0)
    set_mask(net, {(0, 2), (1, 2), (2, 5), (0, 5)})
    cost = count(net, (1, 2, 8, 8))
    kinds = cost.by_kind()
    assert kinds["edges"] == (4, 4 * 64)
    # nodes 3 and 4 have no outgoing edge: only 2 and the output 5 run their 3x3 kernel
    assert kinds["nodes"] == (2 * 9, 2 * 9 * 64)
    assert kinds["norm"] == (2 * 2, 0)
    assert (cost.params, cost.macs, cost.norm_params) == (22, 256 + 1152, 4)


def test_hand_counted_discrete_and_continuous_passes():
    graph = complete_digraph(3, inputs=1, outputs=1)  # 0 input, 2 output
    net = WiredGraph(graph, node_op="relu", mode="discrete", steps=3, k=3, seed=0)
    set_mask(net, {(0, 1), (1, 2), (2, 1)})
    kinds = count(net, (1, 1)).by_kind()
    assert kinds["edges"] == (3, 3 * 3)  # three steps over three edges of size 1
    # input 0 has incoming candidates, so it is updated too: nodes 0, 1 (out-edges), 2 (output)
    assert kinds["nodes"] == (3, 0)
    solver = {"method": "rk4", "options": {"step_size": 0.25}}
    ode = WiredGraph(graph, node_op="tanh", mode="continuous", solver=solver, k=3, seed=0)
    set_mask(ode, {(0, 1), (1, 2), (2, 1)})
    assert count(ode, (1, 1)).by_kind()["edges"] == (3, 3 * 16)  # 4 rk4 steps x 4 evaluations


def test_adaptive_solver_macs_follow_the_measured_evaluations():
    net = create_model("tiny_continuous", **SMALL_TINY, seed=0)
    executor = net.graph_net.executor
    cost = count(net, (1, 1, 8, 8))
    nfe = executor.nfe
    assert nfe >= 6  # dopri5 takes at least one step of six evaluations
    edges = int(net.graph_net.edge_mask.sum())
    assert cost.by_kind()["edges"] == (edges, edges * 64 * nfe)


def test_dense_neighbours_count_only_live_channels():
    wired = WiredGraph(bipartite(4, 2), node_op="identity", k=3, seed=0)
    set_mask(wired, {(0, 4), (1, 4), (2, 4)})  # input 3 unused; output 5 unfed
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        wired,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 5),
    )
    by_module = count(net, (1, 3, 6, 6)).by_module()
    assert by_module["0"] == (3 * 27 + 3, 3 * 27 * 36)  # three of four filters
    assert by_module["6"] == (5 + 5, 5)  # one of two input columns, all biases
    assert by_module["3"] == (3, 3 * 36)
    # a functional op in between ends the chain: the layer is counted in full
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 36, 2))
    assert count(plain, (1, 3, 6, 6)).by_module()["0"] == (4 * 27 + 4, 4 * 27 * 36)


def test_wired_layer_counts_selected_weights():
    layer = WiredConv2d(2, 3, 3, padding=1, k=5, seed=0)
    kinds = count(layer, (1, 2, 6, 6)).by_kind()
    assert kinds["edges"] == (5, 5 * 36)
    assert kinds["dense"] == (3, 0)  # the biases


def test_unknown_module_with_parameters_is_refused():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w

    with pytest.raises(GraphError, match=r"costs=\{Odd: fn\}"):
        count(Odd(), (1, 3))
    with pytest.raises(GraphError, match="batch first"):
        count(nn.Linear(3, 3), (3,))


SMALL_TINY = dict(in_channels=1, image_size=8, num_nodes=24, k=60, stem_channels=4, readout=4)


def test_tiny_classifier_graph_and_node_parameters():
    # The paper: k + 9 * num_nodes = 32,000 + 7,200 = 39,200 graph and node parameters.
    net = create_model("tiny_discrete", seed=0)
    kinds = count(net, (1, 3, 32, 32)).by_kind()
    assert kinds["edges"][0] + kinds["nodes"][0] == 39_200
    # 5 weight-tied steps over the 32,000 edges and 800 kernels on 8 x 8 maps
    assert kinds["edges"][1] == 5 * 32_000 * 64
    assert kinds["nodes"][1] == 5 * 800 * 9 * 64
    # With stem and classifier, "about 41k": 432 + 144 + 512 + 1,010 dense weights.
    assert count(net, (1, 3, 32, 32)).params == 39_200 + 2_098
    # The static layout's last block has 192 nodes but only the last 100 are read out:
    # the other 92 never reach the output, and their 9 weights each are not live.
    static = create_model("tiny_static", seed=0)
    kinds = count(static, (1, 3, 32, 32)).by_kind()
    assert kinds["edges"][0] + kinds["nodes"][0] == 39_200 - 92 * 9


def test_mobilenet_v1_x025_at_224():
    # Howard et al. (2017), Table 6: 41M multiply-adds and 0.47M parameters (0.5M in the
    # paper's Table 1). Our count is exact arithmetic on the same layers, BN excluded.
    cost = count(create_model("mobilenet_v1_x025", seed=0), (1, 3, 224, 224))
    assert cost.macs == pytest.approx(41.0e6, rel=0.01)
    assert cost.params == pytest.approx(0.47e6, rel=0.02)


def test_random_graph_x0225_at_224():
    # The paper's check value: the untrained random graph x0.225 counts 55.7M multiply-adds
    # and 1.23M parameters. A stage-1 input node of the random graph keeps an edge with
    # probability ~0.96 (98 of 2,048 candidates), and each one that does not removes
    # ~0.45M multiply-adds (its stem filter and 3x3 kernel at 112 x 112): about one such
    # node is expected, so a draw moves the figure by ~1%. Hence rel=0.015.
    cost = count(create_model("random_mobilenet_x0225", seed=0), (1, 3, 224, 224))
    assert cost.macs == pytest.approx(55.7e6, rel=0.015)
    assert cost.params == pytest.approx(1.23e6, rel=0.01)
    assert cost.by_kind()["edges"][0] == 98 + 1176 + 4845 + 72680 + 79350


# ---------------------------------------------------------------------- rules per call
class Scale(nn.Module):
    def __init__(self, n=4):
        super().__init__()
        self.s = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * self.s


def scale_cost(module, inputs, output):
    return {"dense": (module.s.numel(), output.numel())}


def test_costs_apply_to_one_call_only():
    net = nn.Sequential(nn.Linear(3, 4), Scale())
    cost = count(net, (1, 3), costs={Scale: scale_cost})
    assert cost.by_module()["1"] == (4, 4)
    # the rule does not outlive its call (a global registry would keep it)
    with pytest.raises(GraphError, match=r"costs=\{Scale: fn\}"):
        count(net, (1, 3))
    with pytest.raises(GraphError, match="Scale"):
        count(Scale(), (1, 4))


def test_costs_cover_subclasses_and_override_built_ins():
    class Wider(Scale):
        pass

    assert count(Wider(6), (1, 6), costs={Scale: scale_cost}).by_kind()["dense"] == (6, 6)

    # a rule for a built-in type replaces the built-in for this call, subclasses included
    class MyLinear(nn.Linear):
        pass

    net = nn.Sequential(nn.Linear(3, 4), MyLinear(4, 2))
    cheap = {nn.Linear: lambda module, inputs, output: {"dense": (1, 0)}}
    assert count(net, (1, 3), costs=cheap).by_kind()["dense"] == (2, 0)
    assert count(net, (1, 3)).by_kind()["dense"] == (16 + 10, 12 + 8)


def test_most_specific_rule_wins_and_the_caller_wins_on_the_same_type():
    class MyLinear(nn.Linear):
        pass

    mine = {MyLinear: lambda module, inputs, output: {"dense": (7, 7)}}
    assert count(MyLinear(3, 2), (1, 3), costs=mine).by_kind()["dense"] == (7, 7)
    generic = {nn.Module: lambda module, inputs, output: {"dense": (1, 1)}}
    # nn.Linear is more specific than nn.Module: the built-in Linear rule still applies
    assert count(nn.Linear(3, 2), (1, 3), costs=generic).by_kind()["dense"] == (8, 6)


def test_graphwire_cost_protocol():
    class SelfCosted(Scale):
        def graphwire_cost(self, inputs, output):
            return {"dense": (self.s.numel(), 2 * output.numel())}

    assert count(SelfCosted(), (1, 4)).by_kind()["dense"] == (4, 8)
    # a rule passed for the call comes first
    assert count(SelfCosted(), (1, 4), costs={SelfCosted: scale_cost}).macs == 4


def test_node_costs_for_a_custom_node_op():
    class Doubler(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.full((6,), 2.0))

        def forward(self, x, nodes):
            return x * self.gain[nodes].view(1, -1, *([1] * (x.dim() - 2)))

    def build():
        net = WiredGraph(layered_dag([2, 3, 1]), node_op=lambda n: Doubler(), k=4, seed=0)
        set_mask(net, {(0, 2), (1, 2), (2, 5), (0, 5)})
        return net

    def doubler_cost(op, nodes, shape):
        return {"nodes": (nodes.numel(), nodes.numel() * math.prod(shape))}

    with pytest.raises(GraphError, match=r"node_costs=\{Doubler: fn\}"):
        count(build(), (1, 2, 4, 4))
    kinds = count(build(), (1, 2, 4, 4), node_costs={Doubler: doubler_cost}).by_kind()
    assert kinds["nodes"] == (2, 2 * 16)  # nodes 2 and 5 are used
    with pytest.raises(GraphError, match="Doubler"):
        count(build(), (1, 2, 4, 4))


def test_built_in_rules_are_read_only():
    from graphwire.cost import _rules

    with pytest.raises(TypeError):
        _rules.BUILTIN_COSTS[Scale] = scale_cost
    with pytest.raises(TypeError):
        _rules.BUILTIN_NODE_COSTS[Scale] = scale_cost
    assert not hasattr(graphwire.cost, "register_cost")


def test_malformed_rules_are_refused():
    with pytest.raises(GraphError, match="costs must be a mapping"):
        count(Scale(), (1, 4), costs=[scale_cost])
    with pytest.raises(GraphError, match="module types"):
        count(Scale(), (1, 4), costs={"Scale": scale_cost})
    with pytest.raises(GraphError, match="must return"):
        count(Scale(), (1, 4), costs={Scale: lambda module, inputs, output: 4})
    with pytest.raises(GraphError, match="not one of"):
        count(Scale(), (1, 4), costs={Scale: lambda module, inputs, output: {"x": (1, 1)}})


# ---------------------------------------------------------------------- the real forward
@pytest.mark.parametrize("mode", ["dag", "discrete", "continuous"])
def test_count_runs_the_modules_own_forward(mode):
    ran = []

    class Traced(WiredGraph):
        def forward(self, x):
            ran.append("forward" not in vars(self))  # not replaced on the instance
            return super().forward(x)

    graph = layered_dag([2, 3, 1]) if mode == "dag" else complete_digraph(3, inputs=1, outputs=1)
    solver = {"method": "rk4", "options": {"step_size": 0.5}}
    extra = {"solver": solver} if mode == "continuous" else {}
    net = Traced(graph, node_op="relu", mode=mode, k=3, seed=0, **extra)
    seen = []
    handle = net.register_forward_hook(lambda m, args, out: seen.append("forward" in vars(m)))
    shape = (1, 2) if mode == "dag" else (1, 1)
    count(net, shape)
    handle.remove()
    assert ran == [True] and seen == [False]
    assert "forward" not in vars(net)


def test_continuous_nfe_is_read_through_the_module():
    solver = {"method": "rk4", "options": {"step_size": 0.25}}
    graph = complete_digraph(3, inputs=1, outputs=1)
    ode = WiredGraph(graph, node_op="tanh", mode="continuous", solver=solver, k=3, seed=0)
    set_mask(ode, {(0, 1), (1, 2), (2, 1)})
    ode(torch.randn(2, 1))  # an earlier call leaves 16 evaluations on the counter
    assert ode.nfe == 16
    assert count(ode, (1, 1)).by_kind()["edges"] == (3, 3 * 16)  # reset, then one call
    assert ode.nfe == 16
    ode.nfe = 0
    assert ode.nfe == 0 and ode.executor.nfe == 0
    dag = WiredGraph(layered_dag([1, 1]), k=1, seed=0)
    dag.nfe = 3  # the DAG executor counts nothing
    assert dag.nfe == 0


def test_counting_twice_gives_the_same_figures():
    net = create_model("tiny_continuous", **SMALL_TINY, seed=0)
    first, second = count(net, (1, 1, 8, 8)), count(net, (1, 1, 8, 8))
    assert first.items == second.items and first.items
    net = nn.Sequential(nn.Linear(3, 4), Scale())
    a = count(net, (1, 3), costs={Scale: scale_cost})
    b = count(net, (1, 3), costs={Scale: scale_cost})
    assert a.items == b.items


def test_training_mode_is_restored():
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(), nn.BatchNorm1d(4)).train()
    net[2].eval()
    count(net, (1, 3))
    assert [m.training for m in net] == [True, True, False] and net.training
