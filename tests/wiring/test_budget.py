"""Budget distributions (uniform, ERK, global) and the constant fan-in split of a budget."""

import pytest
import torch
from torch import nn

from graphwire import SelectionError, WiredGraph
from graphwire.graph import layered_dag
from graphwire.layers import WiredLinear, sparsify
from graphwire.wiring import DNW, RigL, SharedBudget
from graphwire.wiring.topk import apportion, distribute_budget


def erk_raw(shape):
    return sum(shape) / torch.tensor(shape).prod().item()


def test_erk_densities_follow_the_kernel_formula_and_sum_to_the_budget():
    shapes = [(16, 3, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3), (10, 64)]
    sizes = [int(torch.tensor(s).prod()) for s in shapes]
    total = sum(sizes) // 10
    counts = distribute_budget(total, shapes, "erk")
    assert sum(counts) == total
    density = [c / s for c, s in zip(counts, sizes)]
    sparse = [i for i, d in enumerate(density) if d < 1]
    ratio = [density[i] / erk_raw(shapes[i]) for i in sparse]
    assert max(ratio) == pytest.approx(min(ratio), rel=0.02)  # density proportional to raw
    assert density[0] > density[2]  # the small first layer is denser


def test_erk_keeps_overflowing_layers_dense_and_redistributes():
    shapes = [(4, 2), (200, 200)]
    counts = distribute_budget(4000, shapes, "erk")
    assert counts[0] == 8  # raw density above 1: dense
    assert counts[1] == 4000 - 8  # the rest goes to the other layer
    assert distribute_budget(4000, shapes, "uniform") == apportion(4000, [8, 40000])


def test_distribution_errors_name_the_argument():
    with pytest.raises(
        SelectionError,
        match="distribution='er' is not known; expected one of 'erk', 'global', 'uniform'",
    ):
        distribute_budget(10, [(4, 4)], "er")
    with pytest.raises(SelectionError, match="one top-k"):
        distribute_budget(10, [(4, 4)], "global")
    with pytest.raises(SelectionError, match=r"total must be in \[0, 16\]"):
        distribute_budget(17, [(4, 4)], "erk")


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 32, 3), nn.Flatten(), nn.Linear(32, 10)
    )


def kept(net):
    return [int(m.edge_mask.sum()) for m in net.modules() if hasattr(m, "edge_mask")]


def test_sparsify_distributions():
    net = small_cnn()
    sizes = [m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = round(0.2 * sum(sizes))
    uniform, erk = sparsify(net, density=0.2), sparsify(net, density=0.2, distribution="erk")
    assert kept(uniform) == kept(sparsify(net, density=0.2, distribution="uniform"))
    assert sum(kept(erk)) == total
    assert erk[0].edge_mask.float().mean() > uniform[0].edge_mask.float().mean()
    erk_layers = [m for m in erk.modules() if hasattr(m, "edge_mask")]
    assert all(m.shared_budget is not erk_layers[0].shared_budget for m in erk_layers[1:])
    glob = sparsify(net, density=0.2, distribution="global")
    assert glob[0].shared_budget is glob[4].shared_budget and sum(kept(glob)) == total
    assert sum(kept(sparsify(net, k=500, distribution="erk"))) == 500


def test_sparsify_distribution_errors():
    with pytest.raises(SelectionError, match="distribution='er' is not known"):
        sparsify(small_cnn(), density=0.2, distribution="er")
    with pytest.raises(SelectionError, match="scope='global' is one top-k"):
        sparsify(small_cnn(), density=0.2, scope="global", distribution="erk")


def test_grouped_graph_erk_gives_small_groups_higher_density():
    graph = layered_dag([4, 8, 16, 2])
    net = WiredGraph(graph, scope="group", distribution="erk", density=0.3, seed=0)
    uniform = WiredGraph(graph, scope="group", density=0.3, seed=0)
    assert sum(net.budget) == sum(uniform.budget) == round(0.3 * graph.num_edges)
    sizes = torch.bincount(graph.edge_group, minlength=4).tolist()
    dens = [c / s for c, s in zip(net.budget, sizes) if s]
    assert dens[-1] > dens[1]  # the output block (2 targets) is denser than block 2
    with pytest.raises(SelectionError, match="does not go with scope='global'"):
        WiredGraph(graph, distribution="erk", density=0.3)
    with pytest.raises(SelectionError, match="not a mapping"):
        WiredGraph(graph, scope="group", distribution="erk", k={"block1": 3})


def test_constant_fan_in_splits_each_scope_by_target():
    net = WiredGraph(
        layered_dag([4, 6, 6, 3]), node_op="relu", rule=DNW(fan_in="constant"), k=50, seed=0
    )
    budget = net.shared_budget
    assert len(budget.members) == 15 and budget.quota == [3] * 15  # 50 // 15 per node
    assert budget.k == sum(net.budget) == 45 == int(net.edge_mask.sum())


def test_constant_fan_in_across_layers_of_a_shared_budget():
    a = WiredLinear(6, 4, density=1.0, seed=0)
    b = WiredLinear(4, 2, density=1.0, seed=1)
    shared = SharedBudget([a, b], rule=RigL(fan_in="constant"), k=12)
    assert len(shared.members) == 6  # 4 output channels of a, 2 of b
    assert a.edge_mask.sum(1).tolist() == [2] * 4 and b.edge_mask.sum(1).tolist() == [2] * 2
