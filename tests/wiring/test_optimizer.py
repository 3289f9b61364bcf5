import copy

import pytest
import torch

from graphwire import CheckpointError, ConfigError, DNWOptimizer, WiredGraph
from graphwire.graph import bipartite, layered_dag


def two_input_regression(rule):
    """y = 0.3 x0 + x1 with one edge kept; x0's edge starts selected, x1's is the useful one."""
    net = WiredGraph(bipartite(2, 1), node_op="identity", rule=rule, k=1, seed=0)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([0.5, 0.1]))
    net.reselect()
    assert net.mask().tolist() == [True, False]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=gen)
    y = (0.3 * x[:, 0] + x[:, 1]).unsqueeze(1)
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.1))
    history = []
    for _ in range(20):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(opt.last_swaps[""])
    return net, history


def test_useful_edge_swaps_in():
    net, history = two_input_regression("dnw")
    assert net.mask().tolist() == [False, True]
    first = next(i for i, s in enumerate(history) if s != (0, 0))
    assert first < 8 and history[first] == (1, 1)


def test_without_update_rule_the_useful_edge_never_arrives():
    net, history = two_input_regression("dnw_no_update")
    assert net.mask().tolist() == [True, False]
    assert net.weight[1].item() == pytest.approx(0.1)
    assert all(s == (0, 0) for s in history)


def make(seed=0):
    net = torch.nn.Sequential(
        WiredGraph(layered_dag([4, 8, 8, 4]), node_op="relu", density=0.2, seed=seed),
        torch.nn.Linear(4, 2),
    )
    base = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    return net, DNWOptimizer(net, base)


def train(net, opt, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 4, generator=gen)
        loss = (net(x) - x[:, :2]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_state_dict_round_trip_resumes_identically():
    net, opt = make()
    train(net, opt, 5, seed=1)
    model_state = {k: v.clone() for k, v in net.state_dict().items()}
    opt_state = copy.deepcopy(opt.state_dict())  # torch returns live references
    train(net, opt, 5, seed=2)
    assert opt.swaps_total > 0

    net2, opt2 = make(seed=99)  # different initial weights and mask
    net2.load_state_dict(model_state)
    opt2.load_state_dict(opt_state)
    train(net2, opt2, 5, seed=2)
    assert torch.equal(net2[0].mask(), net[0].mask())
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)
    assert opt2.swaps_total == opt.swaps_total


def test_load_without_mask_selects_from_weights():
    net, opt = make()
    train(net, opt, 3, seed=1)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("edge_mask")}
    net2, _ = make(seed=5)
    net2.load_state_dict(state)
    assert torch.equal(net2[0].mask(), net[0].mask())


def test_errors():
    net, opt = make()
    with pytest.raises(ConfigError, match="does not update the edge weights of wired module '0'"):
        DNWOptimizer(net, torch.optim.SGD(net[1].parameters(), lr=0.1))
    with pytest.raises(ConfigError, match="holds no wired module"):
        DNWOptimizer(
            torch.nn.Linear(2, 2), torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
        )
    with pytest.raises(ConfigError, match="must be a torch.optim.Optimizer"):
        DNWOptimizer(net, "sgd")
    state = opt.state_dict()
    state["masks"]["0"] = torch.ones(3, dtype=torch.bool)
    with pytest.raises(CheckpointError, match=r"shape \[3\] in state_dict"):
        opt.load_state_dict(state)
    with pytest.raises(CheckpointError, match="lacks"):
        opt.load_state_dict({})


def test_works_with_lr_scheduler():
    net, opt = make()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
    train(net, opt, 3, seed=0)
    sched.step()
    sched.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_trained_module_loads_state_dict_and_selects_when_mask_missing():
    net, opt = make()
    train(net, opt, 3, seed=1)
    trained = net[0]
    fresh = make(seed=7)[0][0]
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.edge_mask, net[0].edge_mask)
    no_mask = {k: v for k, v in trained.state_dict().items() if k != "edge_mask"}
    other = make(seed=8)[0][0]
    other.load_state_dict(no_mask)
    assert torch.equal(other.edge_mask, net[0].edge_mask)


def _wrapped(lr=0.1):
    net = WiredGraph(layered_dag([2, 4, 2]), node_op="relu", density=0.5, seed=0)
    return net, DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9))


def test_wrapper_has_every_attribute_torch_gives_an_optimizer():
    net, opt = _wrapped()
    plain = torch.optim.SGD(net.parameters(), lr=0.1)
    assert set(vars(plain)) - {"param_groups", "state"} <= set(vars(opt))
    assert opt.param_groups is opt.base_optimizer.param_groups
    assert opt.state is opt.base_optimizer.state
    assert len(opt.param_groups) == 1  # torch's __init__ added nothing to the base


def test_torch_hook_apis_work_on_the_wrapper():
    net, opt = _wrapped()
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o is opt)))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o.step_count)))
    opt.register_state_dict_pre_hook(lambda o: calls.append("sd_pre"))
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "tag": 7})
    opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append(("load_pre", sd["tag"])))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("load_post"))
    net(torch.randn(4, 2)).pow(2).mean().backward()
    opt.step()
    state = opt.state_dict()
    assert state["tag"] == 7 and set(state) >= {"base", "masks", "steps", "swaps_total"}
    opt.load_state_dict(state)
    assert calls == [("pre", True), ("post", 1), "sd_pre", ("load_pre", 7), "load_post"]


def test_scheduler_and_lr_through_the_wrapper_reach_the_base():
    net, opt = _wrapped(lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    net(torch.randn(4, 2)).pow(2).mean().backward()
    opt.step()
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    opt.param_groups[0]["lr"] = 0.01
    assert opt.base_optimizer.param_groups[0]["lr"] == 0.01
