import copy

import pytest
import torch
from torch import nn

from graphwire import ConfigError, DNWOptimizer, SelectionError
from graphwire.layers import WiredConv1d, WiredConv2d, WiredLinear, sparsify
from graphwire.layers._wired_layers import WiredLayer
from graphwire.wiring import FixedMask, SharedBudget, TargetedDropout


def small_net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4),
        nn.ReLU(),
        nn.Conv2d(8, 12, 1, padding_mode="reflect"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 5),
    )


def wired_layers(model):
    return [m for m in model.modules() if isinstance(m, WiredLayer)]


def test_density_one_keeps_behaviour_and_leaves_original_alone():
    net = small_net().eval()
    before = copy.deepcopy(net.state_dict())
    x = torch.randn(4, 3, 10, 10)
    expected = net(x)
    for scope in ("layer", "global"):
        sparse = sparsify(net, density=1.0, scope=scope).eval()
        assert len(wired_layers(sparse)) == 4
        torch.testing.assert_close(sparse(x), expected, rtol=0, atol=0)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])
    assert not wired_layers(net)


@pytest.mark.parametrize("density", [0.05, 0.3, 0.77])
def test_layer_scope_keeps_exact_fraction_per_layer(density):
    sparse = sparsify(small_net(), density=density, scope="layer")
    for layer in wired_layers(sparse):
        assert layer.edge_mask.shape == layer.weight.shape
        assert int(layer.edge_mask.sum()) == round(density * layer.weight.numel())
        # the kept weights are the largest in magnitude of their own layer
        kept = layer.weight[layer.edge_mask].abs().min()
        dropped = layer.weight[~layer.edge_mask].abs()
        assert dropped.numel() == 0 or kept >= dropped.max()


def test_global_scope_is_one_topk_across_layers():
    sparse = sparsify(small_net(), density=0.2, scope="global")
    layers = wired_layers(sparse)
    total = sum(m.weight.numel() for m in layers)
    assert sum(int(m.edge_mask.sum()) for m in layers) == round(0.2 * total)
    kept = torch.cat([m.weight[m.edge_mask].abs() for m in layers])
    dropped = torch.cat([m.weight[~m.edge_mask].abs() for m in layers])
    assert kept.min() >= dropped.max()
    # per-layer counts differ from the uniform rate: the selection really is global
    rates = [m.edge_mask.float().mean().item() for m in layers]
    assert max(rates) - min(rates) > 0.05
    assert len({id(m.shared_budget) for m in layers}) == 1


def test_k_with_layer_scope_is_split_in_proportion():
    sparse = sparsify(small_net(), k=100, scope="layer")
    counts = [int(m.edge_mask.sum()) for m in wired_layers(sparse)]
    sizes = [m.weight.numel() for m in wired_layers(sparse)]
    assert sum(counts) == 100
    for c, s in zip(counts, sizes):
        assert abs(c - 100 * s / sum(sizes)) < 1


def test_keep_first_dense():
    sparse = sparsify(small_net(), density=0.1, keep_first_dense=True)
    assert type(sparse[0]) is nn.Conv2d
    assert [type(m).__name__ for m in wired_layers(sparse)] == [
        "WiredConv2d",
        "WiredConv2d",
        "WiredLinear",
    ]


def train_steps(model, steps, lr=0.1):
    opt = DNWOptimizer(model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 3, 10, 10, generator=gen)
        loss = (model(x) - 1).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return opt


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_training_swaps_weights_and_keeps_the_budget(scope):
    sparse = sparsify(small_net(), density=0.25, scope=scope)
    layers = wired_layers(sparse)
    counts = [int(m.edge_mask.sum()) for m in layers]
    start = [m.edge_mask.clone() for m in layers]
    opt = train_steps(sparse, 5)
    assert opt.swaps_total > 0
    assert set(opt.last_swaps) == {
        n for n, m in sparse.named_modules() if isinstance(m, WiredLayer)
    }
    changed = sum(int((m.edge_mask ^ s).sum()) for m, s in zip(layers, start))
    assert changed > 0
    if scope == "layer":
        assert [int(m.edge_mask.sum()) for m in layers] == counts
    else:
        assert sum(int(m.edge_mask.sum()) for m in layers) == sum(counts)
    for m in layers:  # after a step the masks are exactly the rule's top-k
        assert m.shared_budget.reselect()[m] == (0, 0)


def test_shared_budget_selects_once_per_step():
    sparse = sparsify(small_net(), density=0.25, scope="global")
    shared = wired_layers(sparse)[0].shared_budget
    calls = []
    original = shared.reselect

    def counting():
        calls.append(1)
        return original()

    shared.reselect = counting
    train_steps(sparse, 3)
    assert len(calls) == 3


def test_straight_through_gradient_reaches_unselected_weights():
    layer = WiredLinear(6, 3, density=0.2, seed=0)
    layer(torch.randn(4, 6)).sum().backward()
    assert (layer.weight.grad[~layer.edge_mask] != 0).all()
    no_update = WiredLinear(6, 3, density=0.2, seed=0, rule="dnw_no_update")
    no_update(torch.randn(4, 6)).sum().backward()
    assert (no_update.weight.grad[~no_update.edge_mask] == 0).all()
    assert (no_update.weight.grad[no_update.edge_mask] != 0).any()


def test_unselected_weights_do_not_affect_the_output():
    layer = WiredConv2d(4, 6, 3, padding=1, density=0.3, seed=0)
    x = torch.randn(2, 4, 5, 5)
    y = layer(x)
    with torch.no_grad():
        layer.weight[~layer.edge_mask] = 100.0
    torch.testing.assert_close(layer(x), y)
    reference = nn.functional.conv2d(x, layer.weight * layer.edge_mask, layer.bias, padding=1)
    torch.testing.assert_close(y, reference)


def test_dense_state_dict_loads_and_selects_top_k():
    dense = nn.Conv1d(3, 4, 5)
    layer = WiredConv1d(3, 4, 5, density=0.5, seed=3)
    layer.load_state_dict(dense.state_dict())
    assert torch.equal(layer.weight, dense.weight)
    threshold = dense.weight.abs().flatten().sort(descending=True).values[29]
    assert int(layer.edge_mask.sum()) == 30
    assert (dense.weight.abs()[layer.edge_mask] >= threshold).all()


def test_checkpoint_restores_mask_exactly():
    a = WiredLinear(5, 5, rule="random", density=0.4, seed=1)
    b = WiredLinear(5, 5, rule="random", density=0.4, seed=2)
    assert not torch.equal(a.edge_mask, b.edge_mask)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.edge_mask, b.edge_mask)


def test_grouped_conv_channel_graph_lines_up_with_weights():
    layer = WiredConv2d(6, 4, 3, groups=2, density=0.3, seed=0)
    graph = layer.channel_graph()
    assert graph.num_edges == 4 * 3
    src, dst = graph.edge_index
    # output o of group g reads the inputs of group g only
    assert ((dst - 6) // 2 == src // 3).all()
    with torch.no_grad():
        layer.edge_mask.zero_()
        layer.edge_mask[3, 1, 2, 0] = True  # output 3 (group 1) <- input 3 + 1 = 4
    learned = layer.learned_graph()
    assert learned.edge_index.t().tolist() == [[4, 6 + 3]]
    assert learned.edge_weight.item() == pytest.approx(layer.weight[3, 1, 2, 0].abs().item())


def test_random_rule_global_budget_is_exact_and_seeded():
    a = sparsify(small_net(), density=0.3, scope="global", rule="random", seed=4)
    b = sparsify(small_net(), density=0.3, scope="global", rule="random", seed=4)
    masks_a = [m.edge_mask for m in wired_layers(a)]
    masks_b = [m.edge_mask for m in wired_layers(b)]
    assert all(torch.equal(x, y) for x, y in zip(masks_a, masks_b))
    total = sum(m.numel() for m in masks_a)
    assert sum(int(m.sum()) for m in masks_a) == round(0.3 * total)
    opt = train_steps(a, 2)
    assert opt.swaps_total == 0
    assert all(torch.equal(m.edge_mask, x) for m, x in zip(wired_layers(a), masks_b))


def test_frozen_and_targeted_dropout_on_layers():
    mask = torch.zeros(12, dtype=torch.bool)
    mask[[0, 5, 7]] = True
    frozen = WiredLinear(4, 3, rule=FixedMask(mask))
    assert frozen.edge_mask.flatten().tolist() == mask.tolist()
    dropout = WiredLinear(64, 64, density=0.1, rule=TargetedDropout(rho=0.9, seed=0))
    x = torch.randn(2, 64)
    dropout.train()
    dropout(x)
    used = dropout.effective_weight().ne(0)
    assert (used & dropout.edge_mask).sum() == dropout.edge_mask.sum()
    extra = int((used & ~dropout.edge_mask).sum())
    targeted = int((~dropout.edge_mask).sum())
    assert 0.05 * targeted < extra < 0.15 * targeted
    dropout.eval()
    dropout(x)
    assert torch.equal(dropout.effective_weight().ne(0), dropout.edge_mask)


def test_errors_name_the_fix():
    with pytest.raises(SelectionError, match="'layer', 'global'|'global', 'layer'"):
        sparsify(small_net(), density=0.1, scope="per_node")
    with pytest.raises(ConfigError, match="no Linear, Conv1d/2d/3d or MultiheadAttention"):
        sparsify(nn.Sequential(nn.ReLU()), density=0.1)
    with pytest.raises(SelectionError, match="exactly one of k"):
        WiredLinear(3, 3)
    with pytest.raises(SelectionError, match="takes no k or density"):
        SharedBudget([WiredLinear(3, 3, rule="complete")], rule="complete", density=0.5)
    with pytest.raises(ConfigError, match="wired modules .* got \\['Linear'\\]"):
        SharedBudget([nn.Linear(3, 3)], density=0.5)
