"""WiredModule: one owner per tensor, one mask through moves, select-on-load, one rule."""

import pytest
import torch
from torch import nn

from graphwire import ConfigError, WiredGraph
from graphwire.graph import complete_digraph, layered_dag
from graphwire.layers import WiredLinear, sparsify
from graphwire.wiring import FixedMask, SharedBudget, WiredModule

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def registered_once(model: nn.Module) -> None:
    """No parameter or buffer object is registered under two names (or two modules)."""
    for named in (model.named_parameters, model.named_buffers):
        tensors = [t for _, t in named(remove_duplicate=False)]
        assert len({id(t) for t in tensors}) == len(tensors)


def models():
    yield WiredGraph(layered_dag([3, 6, 2]), node_op="relu", density=0.5, seed=0)
    yield WiredGraph(complete_digraph(8, inputs=2, outputs=2), mode="discrete", density=0.3)
    yield sparsify(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), density=0.5)


@pytest.mark.parametrize("model", list(models()), ids=["dag", "discrete", "sparsified"])
def test_no_tensor_is_registered_in_two_modules(model):
    registered_once(model)
    registered_once(nn.Sequential(model, nn.Identity()))


@pytest.mark.parametrize("device", DEVICES)
def test_moves_keep_one_mask_that_the_forward_pass_uses(device):
    torch.manual_seed(0)
    net = WiredGraph(layered_dag([3, 6, 2]), node_op="tanh", density=0.4, seed=0)
    for dtype in (torch.float32, torch.float64, torch.float32):
        net = net.to(device=device, dtype=dtype)
        registered_once(net)
        x = torch.randn(5, 3, device=device, dtype=dtype)
        before = net(x).detach()
        # make the unselected edges the largest: a re-selection must change the mask...
        with torch.no_grad():
            net.weight[~net.edge_mask] = net.weight.abs().max() + 1.0
        added, _ = net.reselect()
        assert added > 0
        # ...and the forward pass of both backends must use the new one
        after = net(x)
        net.backend = "reference"
        torch.testing.assert_close(after, net(x), rtol=1e-5, atol=1e-5)
        net.backend = "auto"
        assert not torch.allclose(after, before)
        assert net.dense.slot.device.type == device


def test_weights_without_a_mask_select_on_load():
    net = WiredGraph(layered_dag([3, 6, 2]), density=0.3, seed=0)
    other = WiredGraph(layered_dag([3, 6, 2]), density=0.3, seed=1)
    state = {k: v for k, v in net.state_dict().items() if k != "edge_mask"}
    result = other.load_state_dict(state, strict=False)
    assert "edge_mask" not in result.missing_keys
    assert torch.equal(other.edge_mask, net.edge_mask)  # the same top-k of the same weights


def test_the_rule_is_the_budgets():
    layer = WiredLinear(4, 3, density=0.5, seed=0)
    assert isinstance(layer, WiredModule) and layer.rule is layer.shared_budget.rule
    with pytest.raises(ConfigError, match="give the modules a new budget"):
        layer.rule = FixedMask(layer.edge_mask.flatten())
    SharedBudget([layer], rule=FixedMask(layer.edge_mask.flatten().clone()))
    assert layer.rule.name == "fixed_mask" and layer.reselect() == (0, 0)
