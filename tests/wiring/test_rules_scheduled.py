"""The scheduled sparse-training rules: RigL, SET, L1 + anneal and GMP."""

import copy
import math

import pytest
import torch

from graphwire import DNWOptimizer, SelectionError, WiredGraph
from graphwire.graph import bipartite, layered_dag
from graphwire.layers import WiredLinear, sparsify
from graphwire.wiring import DNW, GMP, SET, L1Anneal, RigL
from graphwire.wiring._rules import make_rule


def step(net, opt, x, target):
    opt.zero_grad()
    (net(x) - target).pow(2).mean().backward()
    opt.step()


def batch(i, n_in=6, n_out=3):
    gen = torch.Generator().manual_seed(1000 + i)
    x = torch.randn(32, n_in, generator=gen)
    return x, x[:, :n_out] * 0.5 + x[:, -n_out:].tanh()


def regression_graph(rule, k):
    """bipartite(4, 1), identity node op, edges 0 and 1 selected with |w| = 1.0 and 0.1."""
    net = WiredGraph(bipartite(4, 1), node_op="identity", rule=rule, k=k, seed=0)
    with torch.no_grad():
        net.edge_mask.copy_(torch.tensor([True, True, False, False]))
        net.weight.copy_(torch.tensor([1.0, 0.1, 0.0, 0.0]))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=gen)
    y = (x[:, 0] + 0.4 * x[:, 2] + 2.0 * x[:, 3]).unsqueeze(1)  # edge 3 helps most
    return net, x, y


# ------------------------------------------------------------------ RigL
def test_rigl_drops_the_smallest_and_grows_the_largest_gradient():
    net, x, y = regression_graph(RigL(alpha=0.5, delta_t=1), k=2)
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9))
    # the straight-through gradient of every candidate, before the step
    (net(x) - y).pow(2).mean().backward()
    dense_grad = net.weight.grad.clone()
    inactive = torch.tensor([2, 3])
    expected = int(inactive[dense_grad[inactive].abs().argmax()])
    assert expected == 3  # not the lower index: the tie-break does not decide
    opt.step()
    assert net.edge_mask.tolist() == [True, False, False, True]  # 1 (|w| 0.1) out, 3 in
    assert net.weight[3].item() == 0.0 and net.weight[1].item() == 0.0  # new edge starts at 0
    momentum = opt.state[net.weight]["momentum_buffer"]
    assert momentum[3].item() == 0.0 and momentum[1].item() == 0.0  # its state cleared
    assert momentum[0].item() != 0.0
    assert opt.last_swaps[""] == (1, 1)


def test_rigl_inactive_weights_stay_zero_between_updates():
    net = WiredGraph(layered_dag([6, 8, 3]), node_op="tanh", rule=RigL(delta_t=3), density=0.3)
    opt = DNWOptimizer(
        net, torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-3)
    )
    swapped = 0
    for i in range(9):
        before = net.weight.detach().clone()
        step(net, opt, *batch(i))
        assert (net.weight[~net.edge_mask] == 0).all()
        if (i + 1) % 3:  # not an update step: only selected edges move
            assert torch.equal(net.weight[~net.edge_mask], before[~net.edge_mask])
            assert opt.last_swaps[""] == (0, 0)
        swapped += opt.last_swaps[""][0]
    assert swapped > 0


def test_rigl_drop_fraction_decays_by_cosine_and_stops_at_t_end():
    rule = RigL(alpha=0.4, delta_t=10, t_end=100)
    for t in (0, 10, 50, 90, 100):
        assert rule.drop_fraction(t) == pytest.approx(0.2 * (1 + math.cos(math.pi * t / 100)))
    assert rule.is_update_step(100) and not rule.is_update_step(110)
    assert not rule.is_update_step(15)


# ------------------------------------------------------------------ SET
def set_grown(seed):
    net = WiredGraph(
        bipartite(8, 1), node_op="identity", rule=SET(zeta=0.5, delta_t=1, seed=seed), k=2, seed=0
    )
    with torch.no_grad():
        net.edge_mask.copy_(torch.arange(8) < 2)
        net.weight.copy_(torch.tensor([1.0, 0.1, 0, 0, 0, 0, 0, 0]))
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=1e-3))
    masks = []
    for i in range(3):
        step(net, opt, *batch(i, n_in=8, n_out=1))
        masks.append(net.edge_mask.clone())
    return torch.stack(masks)


def test_set_grows_randomly_and_reproducibly_under_a_seed():
    first = set_grown(0)
    assert torch.equal(first, set_grown(0))  # same seed, same growth
    assert first[0, 0]  # the large weight survives the drop
    assert int(first[0].sum()) == 2
    runs = [set_grown(s) for s in range(8)]
    grown = {tuple(r[0].nonzero().flatten().tolist()) for r in runs}
    assert len(grown) > 2  # the grown edge depends on the seed, not on the gradient


def test_set_generator_state_is_in_the_optimizer_state():
    rule = SET(seed=3)
    net = WiredGraph(bipartite(6, 3), node_op="identity", rule=rule, density=0.5, seed=0)
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.1))
    state = opt.state_dict()
    rule.generator.manual_seed(99)
    opt.load_state_dict(state)
    assert torch.equal(rule.generator.get_state(), torch.Generator().manual_seed(3).get_state())


# ------------------------------------------------------------------ L1 + anneal and GMP
def test_l1_anneal_adds_the_penalty_and_ends_at_the_budget():
    total = 20
    net = WiredGraph(
        layered_dag([6, 8, 3]),
        node_op="tanh",
        density=0.25,
        seed=0,
        rule=L1Anneal(total_steps=total, l1=0.01),
    )
    assert bool(net.edge_mask.all())  # dense start
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.1))
    x, y = batch(0)
    (net(x) - y).pow(2).mean().backward()
    grad, w = net.weight.grad.clone(), net.weight.detach().clone()
    opt.step()
    moved = net.edge_mask  # edges still in after the first threshold
    expected = w - 0.1 * (grad + 0.01 * torch.sign(w))  # the rule added l1 * sign(w)
    assert torch.allclose(net.weight[moved], expected[moved])
    counts = [int(net.edge_mask.sum())]
    for i in range(1, total):
        step(net, opt, *batch(i))
        counts.append(int(net.edge_mask.sum()))
    # the default: the budget reached at 60% of training (step 12), then kept
    assert counts[11] == counts[-1] == sum(net.budget) < counts[10]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    assert (net.weight[~net.edge_mask] == 0).all()


def test_gmp_follows_the_cubic_schedule():
    t_start, t_end, delta_t = 2, 14, 4
    net = WiredGraph(
        layered_dag([6, 8, 3]),
        node_op="tanh",
        density=0.2,
        seed=0,
        rule=GMP(t_end=t_end, t_start=t_start, delta_t=delta_t),
    )
    n, final = net.graph.num_edges, sum(net.budget)
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    s_f = 1 - final / n
    kept = n
    for t in range(1, 20):
        step(net, opt, *batch(t))
        if t_start <= t <= t_end and ((t - t_start) % delta_t == 0 or t == t_end):
            p = (t - t_start) / (t_end - t_start)
            s_t = s_f + (0 - s_f) * (1 - p) ** 3  # Zhu and Gupta, eq. 1, with s_i = 0
            kept = round(n * (1 - s_t))
        assert int(net.edge_mask.sum()) == kept, t
    assert kept == final


def test_gmp_pruned_edges_never_return():
    net = WiredGraph(
        layered_dag([6, 8, 3]), node_op="tanh", density=0.2, seed=0, rule=GMP(t_end=8, delta_t=2)
    )
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9))
    seen = net.edge_mask.clone()
    for i in range(12):
        step(net, opt, *batch(i))
        assert not (net.edge_mask & ~seen).any()
        seen = net.edge_mask.clone()
        assert (net.weight[~net.edge_mask] == 0).all()


# ------------------------------------------------------------------ constant fan-in
@pytest.mark.parametrize(
    "rule", [DNW(fan_in="constant"), RigL(alpha=0.5, delta_t=1, fan_in="constant")], ids=repr
)
def test_constant_fan_in_holds_after_every_step(rule):
    net = WiredGraph(layered_dag([4, 6, 6, 3]), node_op="tanh", rule=rule, k=45, seed=0)
    targets = torch.unique(net.graph.edge_index[1])
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9))
    swaps = 0
    for i in range(8):
        step(net, opt, *batch(i, n_in=4, n_out=3))
        fan_in = torch.bincount(net.graph.edge_index[1][net.edge_mask], minlength=15)[targets]
        assert (fan_in == 3).all(), fan_in
        swaps += opt.swaps_last_step
    assert swaps > 0


@pytest.mark.parametrize("rule", ["dnw", "rigl"])
def test_constant_fan_in_per_output_channel_of_a_layer(rule):
    layer = WiredLinear(
        10,
        4,
        density=0.3,
        seed=0,
        rule=DNW(fan_in="constant")
        if rule == "dnw"
        else RigL(delta_t=1, alpha=0.5, fan_in="constant"),
    )
    opt = DNWOptimizer([layer], torch.optim.SGD(layer.parameters(), lr=0.5))
    swaps = 0
    for i in range(6):
        x, _ = batch(i, n_in=10)
        opt.zero_grad()
        (layer(x) - x[:, :4]).pow(2).mean().backward()
        opt.step()
        assert layer.edge_mask.sum(1).tolist() == [3, 3, 3, 3]
        swaps += opt.swaps_last_step
    assert swaps > 0


# ------------------------------------------------------------------ every rule, every module
def make_rules(total_steps):
    return {
        "dnw": lambda: "dnw",
        "rigl": lambda: RigL(delta_t=2, t_end=total_steps),
        "set": lambda: SET(delta_t=2, seed=0),
        "l1_anneal": lambda: L1Anneal(total_steps=total_steps),
        "gmp": lambda: GMP(t_end=total_steps - 2, delta_t=2),
    }


@pytest.mark.parametrize("name", list(make_rules(1)))
@pytest.mark.parametrize("mode", ["dag", "discrete", "continuous", "layers"])
def test_every_rule_trains_every_wired_module(name, mode):
    steps = 6
    rule = make_rules(steps)[name]()
    if mode == "layers":
        net = sparsify(
            torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)),
            density=0.3,
            rule=rule,
            distribution="erk",
        )
        wired = [net[0], net[2]]
    else:
        graph = bipartite(6, 3) if mode == "dag" else layered_dag([6, 8, 3])
        net = WiredGraph(graph, node_op="tanh", rule=rule, density=0.3, seed=0, mode=mode)
        wired = [net]
    budget = sum(m.shared_budget.k for m in wired)
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    for i in range(steps):
        step(net, opt, *batch(i))
    assert sum(int(m.edge_mask.sum()) for m in wired) == budget
    zeroes = make_rule(rule).zeroes_unselected
    for m in wired:
        assert torch.isfinite(m.weight).all()
        if zeroes:
            assert (m.weight[~m.edge_mask] == 0).all()


# ------------------------------------------------------------------ exact resume
RESUMABLE = {
    "rigl": lambda: RigL(alpha=0.5, delta_t=2, t_end=10),
    "set": lambda: SET(delta_t=2, seed=4),
    "l1_anneal": lambda: L1Anneal(total_steps=12, l1=1e-3),
    "gmp": lambda: GMP(t_end=10, t_start=1, delta_t=3),
    "rigl_fan_in": lambda: RigL(alpha=0.5, delta_t=2, fan_in="constant"),
}


def resumable(name, seed):
    net = torch.nn.Sequential(
        WiredGraph(
            layered_dag([6, 8, 8, 3]),
            node_op="relu",
            rule=RESUMABLE[name](),
            density=0.3,
            seed=seed,
        ),
        torch.nn.Linear(3, 3),
    )
    base = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-4)
    return net, DNWOptimizer(net, base)


@pytest.mark.parametrize("name", list(RESUMABLE))
def test_resume_mid_schedule_is_exact(name):
    net, opt = resumable(name, seed=0)
    for i in range(5):
        step(net, opt, *batch(i))
    model_state = copy.deepcopy(net.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())
    for i in range(5, 12):
        step(net, opt, *batch(i))
    assert opt.swaps_total > 0 or name in ("l1_anneal", "gmp")

    net2, opt2 = resumable(name, seed=7)  # other weights, other mask, fresh rule
    net2.load_state_dict(model_state)
    opt2.load_state_dict(opt_state)
    for i in range(5, 12):
        step(net2, opt2, *batch(i))
    assert torch.equal(net2[0].edge_mask, net[0].edge_mask)
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)
    assert opt2.swaps_total == opt.swaps_total


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: RigL(alpha=1.5), "RigL alpha must be a number in"),
        (lambda: RigL(delta_t=0), "RigL delta_t must be an int >= 1"),
        (lambda: RigL(t_end=2.5), "RigL t_end"),
        (lambda: SET(zeta=-0.1), "SET zeta"),
        (lambda: SET(delta_t="10"), "SET delta_t"),
        (lambda: GMP(t_end=0), "GMP t_end"),
        (lambda: GMP(t_end=5, t_start=5), "GMP t_start must be below t_end"),
        (lambda: GMP(t_end=5, delta_t=0), "GMP delta_t"),
        (lambda: L1Anneal(total_steps=0), "L1Anneal total_steps"),
        (lambda: L1Anneal(total_steps=10, l1=-1), "L1Anneal l1"),
        (
            lambda: RigL(fan_in="half"),
            "fan_in='half' is not known; expected one of 'any', 'constant'",
        ),
        (lambda: DNW(fan_in=None), "fan_in=None"),
        (lambda: make_rule("gmp"), r"GMP\(t_end=...\)"),
        (lambda: make_rule("l1_anneal"), r"L1Anneal\(total_steps=...\)"),
    ],
)
def test_bad_arguments_name_themselves(build, match):
    with pytest.raises(SelectionError, match=match):
        build()


def test_rules_by_name_build_with_paper_defaults():
    rigl, set_rule = make_rule("rigl"), make_rule("set")
    assert (rigl.alpha, rigl.delta_t, set_rule.zeta) == (0.3, 100, 0.3)
