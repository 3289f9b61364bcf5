import copy
import doctest
import functools

import networkx as nx
import pytest
import torch
from torch import nn

import graphwire
import models
from graphwire import ConfigError, DNWOptimizer, GraphError, WiredGraph
from graphwire.graph import to_networkx
from graphwire.layers._wired_layers import WiredLayer
from graphwire.wiring import TargetedDropout
from models import create_model, list_models, model_defaults
from models.baselines import fine_tune_from, lottery_ticket

TINY_IMAGE = dict(in_channels=1, image_size=8, num_nodes=24, k=60, stem_channels=4, readout=4)
MOBILE = dict(node_scale=1 / 16, width=0.5, image_size=32, num_classes=10)
# Small settings per family (matched by name prefix) and the input they take.
SMALL = {
    "tiny_": (TINY_IMAGE, (4, 1, 8, 8)),
    # a fixed-step solver keeps the test fast; dopri5 (the default) is covered in tests/cost
    "tiny_continuous": (
        {**TINY_IMAGE, "method": "rk4", "solver_options": {"step_size": 0.5}},
        (4, 1, 8, 8),
    ),
    # 1/16 of the nodes; width 0.5 so that such small stage graphs stay connected
    "dnw_mobilenet": (MOBILE, (2, 3, 32, 32)),
    "random_mobilenet": (MOBILE, (2, 3, 32, 32)),
    "mobilenet_v1": (dict(width=0.125, image_size=32, num_classes=10), (2, 3, 32, 32)),
    "resnet50": (dict(num_classes=10), (2, 3, 32, 32)),
    "resnet_cifar": (dict(depth=8, width=4), (2, 3, 16, 16)),
    "graph_rnn": (dict(num_nodes=16), (3, 5, 8)),
    "graph_rnn_1d": (dict(num_nodes=16), (3, 1, 40)),
    # 1-D signals (MNIST-1D's [B, 1, 40]): the paper's structure in 1-D, and vector nodes
    "tiny1d_": (dict(num_nodes=24, stem_channels=4, readout=4, k=60), (4, 1, 40)),
    "vector_": (dict(length=12, num_nodes=28, readout=4, k=120), (4, 1, 12)),
    "graph_ode_vector": (dict(in_features=16, num_nodes=32, readout=8), (3, 16)),
}


def small(name, **extra):
    prefix = max((p for p in SMALL if name.startswith(p)), key=len, default=None)
    assert prefix is not None, f"no small settings for model {name!r}; add them to SMALL"
    overrides, shape = SMALL[prefix]
    return create_model(name, **{**overrides, "seed": 0, **extra}), shape


def wired_modules(model):
    return [m for m in model.modules() if isinstance(m, (WiredGraph, WiredLayer))]


def kept(model):
    return [int(m.edge_mask.sum()) for m in wired_modules(model)]


def step(model, shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    out = model(x)
    target = torch.randint(0, out.shape[1], (shape[0],), generator=gen)
    loss = nn.functional.cross_entropy(out, target)
    loss.backward()
    return x, out, loss


def test_registry_names_the_papers_networks():
    names = list_models()
    for name in (
        "tiny_static",
        "tiny_discrete",
        "tiny_continuous",
        "dnw_mobilenet_x015",
        "dnw_mobilenet_x0225",
        "dnw_mobilenet_x03",
        "dnw_mobilenet_x049",
        "dnw_mobilenet_small_x015",
        "dnw_mobilenet_small_x0225",
        "random_mobilenet_x0225",
        "random_mobilenet_x049",
        "mobilenet_v1_x025",
        "resnet50",
        "resnet_cifar",
        "graph_rnn",
        "graph_ode_vector",
        "tiny1d_static",
        "tiny1d_discrete",
        "tiny1d_continuous",
        "vector_static",
        "vector_discrete",
        "vector_continuous",
        "graph_rnn_1d",
    ):
        assert name in names
    assert model_defaults("dnw_mobilenet_x015")["width"] == 0.15
    assert model_defaults("random_mobilenet_x049")["rule"] == "random"


def test_wrong_name_or_setting_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="'tiny_static'") as info:
        create_model("tiny_statc")
    assert "'graph_rnn'" in str(info.value)
    with pytest.raises(ConfigError, match="num_nodes"):
        create_model("tiny_static", nodes=10)


@pytest.mark.parametrize("name", list_models())
def test_model_builds_trains_a_step_and_compiles(name):
    model, shape = small(name)
    model.train()
    x, out, loss = step(model, shape)
    assert out.shape[0] == shape[0] and torch.isfinite(loss)
    before = kept(model)
    wired = wired_modules(model)
    if wired:
        opt = DNWOptimizer(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        if any(m.rule.straight_through for m in wired):
            # the straight-through gradient reaches edges that are not selected
            assert any((m.weight.grad[~m.edge_mask] != 0).any() for m in wired)
        opt.step()
        opt.zero_grad()
        assert sum(kept(model)) == sum(before)  # budgets may be shared between modules
    else:
        torch.optim.SGD(model.parameters(), lr=0.1).step()
    if any(isinstance(m, WiredGraph) for m in model.modules()):
        with torch.no_grad():
            default = model(x)
            graphs = [m for m in model.modules() if isinstance(m, WiredGraph)]
            for m in graphs:
                m.backend = "reference"
            torch.testing.assert_close(default, model(x), rtol=1e-4, atol=1e-4)
            for m in graphs:
                m.backend = "auto"
            model.eval()
            frozen = graphwire.freeze(model)
            torch.testing.assert_close(frozen(x), model(x), rtol=1e-4, atol=1e-4)
    cost = graphwire.count(model, shape)
    allocated = sum(p.numel() for p in model.parameters())
    assert 0 < cost.params <= allocated and cost.macs > 0


RULES = ["random", "complete", "dnw_no_update", "targeted_dropout"]
FAMILIES = [
    "tiny_static",
    "tiny_discrete",
    "dnw_mobilenet_small_x0225",
    "resnet_cifar",
    "graph_rnn",
    "tiny1d_discrete",
    "vector_static",
]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", FAMILIES)
def test_comparison_rules_for_every_family(name, rule):
    if rule == "targeted_dropout":
        rule = TargetedDropout(rho=0.95, seed=0)
    budgeted = name.startswith(("tiny", "vector"))
    extra = {"k": None} if budgeted and rule == "complete" else {}
    model, shape = small(name, rule=rule, **extra)
    wired = wired_modules(model)
    masks = [m.edge_mask.clone() for m in wired]
    if rule == "complete":
        assert all(bool(m.all()) for m in masks)
    step(model, shape)
    DNWOptimizer(model, torch.optim.SGD(model.parameters(), lr=0.1)).step()
    if rule in ("random", "complete"):
        assert all(torch.equal(m.edge_mask, b) for m, b in zip(wired, masks))
    else:
        assert sum(int(m.edge_mask.sum()) for m in wired) == sum(int(b.sum()) for b in masks)


@pytest.mark.parametrize("name", ["tiny_discrete", "resnet_cifar"])
def test_fine_tune_and_lottery_ticket(name):
    dense, shape = small(name, rule="complete", **({"k": None} if "tiny" in name else {}))
    initial = copy.deepcopy(dense.state_dict())
    step(dense, shape)
    torch.optim.SGD(dense.parameters(), lr=0.5).step()
    extra = {"k": 40} if "tiny" in name else {"density": 0.3}
    build = functools.partial(
        create_model, name, **{**SMALL[name[:5] if "tiny" in name else name][0], **extra}
    )
    tuned = fine_tune_from(dense, build)
    ticket = lottery_ticket(dense, initial, build)
    trained = {k: v for k, v in dense.state_dict().items()}
    for (key, value), m in zip(tuned.state_dict().items(), ticket.state_dict().values()):
        if key.endswith("edge_mask"):
            assert torch.equal(value, m)  # the same mask
            weight = trained[key[: -len("edge_mask")] + "weight"]
            kept_min = weight.abs()[value].min()
            assert (weight.abs()[~value] <= kept_min).all()  # the trained top-k
        elif value.is_floating_point():
            torch.testing.assert_close(value, trained[key])
            torch.testing.assert_close(m, initial[key])
    masks = [m.edge_mask.clone() for m in wired_modules(tuned)]
    weights = [m.weight.detach().clone() for m in wired_modules(tuned)]
    step(tuned, shape)
    DNWOptimizer(tuned, torch.optim.SGD(tuned.parameters(), lr=0.1)).step()
    for m, mask, w in zip(wired_modules(tuned), masks, weights):
        assert torch.equal(m.edge_mask, mask)
        assert torch.equal(m.weight.detach()[~mask], w[~mask])  # frozen: no update outside


def test_tiny_overrides_adapt_the_stem():
    model, _ = small("tiny_static")
    z = model.stem(torch.randn(2, 1, 8, 8))
    assert z.shape == (2, 4, 8, 8)
    paper = create_model("tiny_static", num_nodes=40, k=100, stem_channels=32, readout=4)
    assert paper.stem(torch.randn(1, 3, 32, 32)).shape == (1, 32, 8, 8)


def test_graph_rnn_wiring_has_cycles_and_one_budget():
    model = create_model("graph_rnn", num_nodes=12, density=0.3, seed=0)
    budgets = {id(m.shared_budget) for m in wired_modules(model)}
    assert len(budgets) == 1
    total = sum(m.weight.numel() for m in wired_modules(model))
    assert sum(kept(model)) == round(0.3 * total)
    assert all(k > 0 for k in kept(model))  # one init scale: the top-k reaches every part
    graph = model.hidden_graph()
    assert not nx.is_directed_acyclic_graph(to_networkx(graph))
    with pytest.raises(GraphError):  # a self-loop or a cycle
        graph.validate(mode="dag")
    graph.validate(mode="discrete")


def test_model_doctests():
    for module in (
        models.registry,
        models.tiny,
        models.mobilenet,
        models.sequence,
        models.baselines,
    ):
        result = doctest.testmod(
            module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        )
        assert result.failed == 0, module.__name__


def test_one_d_models_take_signals_and_keep_the_papers_fraction():
    net = create_model("tiny1d_static", seed=0)
    assert net.stem(torch.randn(2, 1, 40)).shape == (2, 32, 10)  # 40 -> 10 samples
    assert type(net.graph_net.node_op).__name__ == "DepthwiseConv1d"
    vec = create_model("vector_discrete", seed=0)
    assert vec.graph_net.graph.inputs.numel() == 40  # one input node per signal sample
    assert int(vec.graph_net.edge_mask.sum()) == round(0.05 * vec.graph_net.graph.num_edges)
    rnn = create_model("graph_rnn_1d", seed=0)
    assert rnn.input_edges.in_features == 4  # 4 samples a step: 10 steps over 40 samples
    with pytest.raises(ConfigError, match="multiple of chunk"):
        rnn(torch.randn(2, 1, 42))
