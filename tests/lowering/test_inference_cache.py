"""The inference cache: a wired graph in evaluation mode reuses the frozen module of its state.

Every test compares against the reference backend run on a copy of the same state, so a
stale frozen module (one the cache failed to rebuild) shows as a wrong output.
"""

import copy

import pytest
import torch

import graphwire
from graphwire import DNWOptimizer, WiredGraph
from graphwire.graph import complete_digraph, layered_dag
from graphwire.wiring import Frozen, SharedBudget

CASES = {
    "dag-vector": dict(graph=layered_dag([4, 12, 12, 3]), node_op="relu", mode="dag", x=(5, 4)),
    "dag-image": dict(graph=layered_dag([3, 8, 8, 2]), node_op="conv", mode="dag", x=(2, 3, 5, 5)),
    "discrete-vector": dict(
        graph=complete_digraph(10, inputs=3, outputs=2), node_op="tanh", mode="discrete", x=(4, 3)
    ),
    "discrete-image": dict(
        graph=complete_digraph(8, inputs=2, outputs=2),
        node_op="conv",
        mode="discrete",
        x=(2, 2, 4, 4),
    ),
    "continuous-vector": dict(
        graph=complete_digraph(10, inputs=3, outputs=2),
        node_op="tanh",
        mode="continuous",
        solver=dict(method="rk4", options={"step_size": 0.25}),
        x=(4, 3),
    ),
    "continuous-adaptive-image": dict(
        graph=complete_digraph(8, inputs=2, outputs=2),
        node_op="conv",
        mode="continuous",
        solver=dict(method="dopri5", rtol=1e-6, atol=1e-6),
        dtype=torch.float64,  # float32 rounding would change the adaptive steps taken
        x=(2, 2, 4, 4),
    ),
}


def build(case, density=0.3, seed=0):
    spec = CASES[case]
    return (
        WiredGraph(
            spec["graph"],
            node_op=spec["node_op"],
            mode=spec["mode"],
            solver=spec.get("solver"),
            density=density,
            seed=seed,
        )
        .to(spec.get("dtype", torch.float32))
        .eval()
    )


def inputs(case, seed):
    spec = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*spec["x"], generator=gen, dtype=spec.get("dtype", torch.float32))


def reference_output(net, x):
    ref = copy.deepcopy(net)
    ref.backend = "reference"
    with torch.no_grad():
        return ref(x)


def check(net, x, builds):
    with torch.no_grad():
        y = net(x)
    torch.testing.assert_close(y, reference_output(net, x), rtol=1e-5, atol=1e-5)
    assert net.inference_cache.builds == builds


@pytest.mark.parametrize("density", [0.1, 0.3])  # selected weights gathered, or all compared
@pytest.mark.parametrize("case", list(CASES))
def test_reused_while_unchanged_and_rebuilt_on_every_change(case, density):
    net = build(case, density)
    x = inputs(case, 1)
    check(net, x, 1)
    check(net, x + 1, 1)  # new data, same state: the frozen module is reused
    with torch.inference_mode():
        net(x)
    assert net.inference_cache.builds == 1

    with torch.no_grad():  # an in-place edit of one selected weight
        i = int(net.edge_mask.nonzero()[0])
        net.weight[i] += 0.5
    check(net, x, 2)

    with torch.no_grad():  # a different selection, same weights
        net.edge_mask.copy_(net.edge_mask.roll(1))
    check(net, x, 3)

    params = list(net.node_op.parameters())
    if params:  # node operations' own weights are part of the state
        with torch.no_grad():
            params[0].add_(0.25)
        check(net, x, 4)


@pytest.mark.parametrize("case", ["dag-image", "discrete-vector"])
def test_training_steps_state_dicts_and_dtype_moves_rebuild(case):
    net = build(case)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(*CASES[case]["x"], generator=gen)
    check(net, x, 1)
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.05))
    net.train()
    for _ in range(3):
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
    net.eval()
    check(net, x, 2)

    other = build(case, seed=7)
    net.load_state_dict(other.state_dict())
    check(net, x, 3)

    net.double()
    check(net, x.double(), 4)
    net.float()
    check(net, x, 5)


def test_not_used_with_gradients_in_training_mode_in_continuous_time_or_by_the_reference():
    net = build("dag-vector")
    x = torch.randn(5, 4)
    net(x)  # gradients on
    with torch.no_grad():
        net.train()(x)  # training mode: node ops would use batch statistics
    ode = WiredGraph(complete_digraph(6, inputs=2, outputs=2), mode="continuous", density=0.5)
    ode(torch.randn(3, 2))  # continuous time, with gradients
    ref = build("dag-vector")
    ref.backend = "reference"
    with torch.no_grad():
        ref(x)
    assert (net.inference_cache.builds, ode.inference_cache.builds) == (0, 0)
    assert ref.inference_cache.builds == 0


@pytest.mark.parametrize("case", ["continuous-vector", "continuous-adaptive-image"])
def test_continuous_time_counts_its_evaluations_and_rebuilds_on_a_new_solver(case):
    net = build(case)
    x = inputs(case, 3)
    net.nfe = 0
    with torch.no_grad():
        net(x)
    frozen_nfe = net.nfe
    net.backend = "reference"  # the same solve by message passing: the same evaluations
    net.nfe = 0
    with torch.no_grad():
        net(x)
    assert frozen_nfe == net.nfe > 0
    net.backend = "dense"
    check(net, x, 1)
    net.solver.t1 = 0.5  # an in-place change of the solver's options
    check(net, x, 2)
    net.solver = graphwire.ODESolver(method="euler", t1=0.5, options={"step_size": 0.5})
    check(net, x, 3)
    net.nfe = 0
    with torch.no_grad():
        net(x)
    assert net.nfe == 1  # one Euler step: the frozen module ran the new solver


def test_a_state_that_cannot_be_frozen_runs_the_dense_backend():
    g = layered_dag([2, 3, 1])
    net = WiredGraph(g, node_op="relu", rule=Frozen(torch.zeros(g.num_edges, dtype=torch.bool)))
    net.eval()
    with torch.no_grad():
        y = net(torch.randn(4, 2))
    assert torch.equal(y, torch.zeros(4, 1))
    assert net.inference_cache.builds == 1  # tried once, remembered


def test_matches_compile_and_is_not_part_of_the_state_dict():
    net = build("dag-image", density=0.1)
    x = torch.randn(*CASES["dag-image"]["x"])
    with torch.inference_mode():
        y = net(x)
        expected = graphwire.compile(net)(x)
    torch.testing.assert_close(y, expected)
    assert not any("inference_cache" in key for key in net.state_dict())
    assert not any("inference_cache" in name for name, _ in net.named_modules())


def test_unselected_weights_are_not_state_for_the_base_rule():
    net = build("dag-vector", density=0.1)  # few selected: only they are compared
    x = torch.randn(*CASES["dag-vector"]["x"])
    check(net, x, 1)
    with torch.no_grad():  # an unselected edge's weight: the forward pass does not read it
        i = int((~net.edge_mask).nonzero()[0])
        net.weight[i] = 123.0
    check(net, x, 1)
    with torch.no_grad():  # the last selected edge (the check reads every selected weight)
        net.weight[int(net.edge_mask.nonzero()[-1])] *= -1
    check(net, x, 2)
    with torch.no_grad():
        net.weight[i] = 0.0  # unselected again, and so the new budget's top-k is the same
    check(net, x, 2)
    # a new budget, same selection, with a rule of its own effective weight: every weight
    # now counts, and the selected effective weights change (divided by the largest |w|)
    mask = net.edge_mask.clone()
    SharedBudget([net], rule=_NormalizedDNW(), k=int(net.edge_mask.sum()))
    assert torch.equal(net.edge_mask, mask)
    check(net, x, 3)
    with torch.no_grad():
        net.weight[int((~net.edge_mask).nonzero()[0])] = 1000.0
    check(net, x, 4)


class _NormalizedDNW(graphwire.wiring.DNW):
    """A rule whose selected effective weights depend on every weight (tests only)."""

    def effective_weight(self, module, weight, mask):
        return weight * mask / weight.abs().max()


def test_a_rule_with_its_own_effective_weight_has_every_weight_compared():
    spec = CASES["dag-vector"]
    net = WiredGraph(
        spec["graph"], node_op="relu", density=0.1, seed=0, rule=_NormalizedDNW()
    ).eval()
    x = torch.randn(*spec["x"])
    check(net, x, 1)
    with torch.no_grad():  # an unselected weight that changes every selected effective weight
        net.weight[int((~net.edge_mask).nonzero()[0])] = 50.0
    check(net, x, 2)


def test_a_constant_fan_in_graph_freezes_to_ell_blocks_and_matches_the_reference():
    from graphwire.lowering import SparseMix
    from graphwire.wiring import DNW

    net = WiredGraph(
        layered_dag([6, 16, 16, 3]), node_op="relu", rule=DNW(fan_in="constant"), k=70, seed=0
    ).eval()
    x = torch.randn(2, 6)  # few rows: the ELL kernel
    frozen = graphwire.compile(net, kernel="sparse")
    blocks = [m for m in frozen.modules() if isinstance(m, SparseMix)]
    assert blocks and all(b.ell for b in blocks)
    with torch.inference_mode():
        torch.testing.assert_close(frozen(x), reference_output(net, x), rtol=1e-5, atol=1e-5)


def test_a_large_mask_is_kept_packed_and_one_changed_edge_rebuilds():
    from graphwire._native import PackedMask

    net = WiredGraph(complete_digraph(40, inputs=4, outputs=3), mode="discrete", density=0.1)
    net.eval()
    x = torch.randn(3, 4)
    check(net, x, 1)
    if PackedMask.usable(net.edge_mask):  # 1,560 candidates: packed bits, not a byte copy
        assert any(isinstance(t, PackedMask) for t in net.inference_cache._key)
    with torch.no_grad():  # one edge swapped for another: same count, new selection
        on, off = net.edge_mask.nonzero()[-1], (~net.edge_mask).nonzero()[-1]
        net.edge_mask[on] = False
        net.edge_mask[off] = True
    check(net, x, 2)
    check(net, x, 2)


def test_a_solver_option_holding_a_tensor_is_compared_by_value():
    net = WiredGraph(
        complete_digraph(8, inputs=2, outputs=2),
        mode="continuous",
        solver=dict(method="dopri5", options={"jump_t": torch.tensor([0.3, 0.6])}),
        density=0.4,
    ).eval()
    x = torch.randn(3, 2)
    check(net, x, 1)
    net.solver.options["jump_t"] = torch.tensor([0.3, 0.6])  # a new tensor, same values
    check(net, x, 1)
    net.solver.options["jump_t"] = torch.tensor([0.2, 0.6])
    check(net, x, 2)
