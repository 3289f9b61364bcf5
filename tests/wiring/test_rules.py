import pytest
import torch

from graphwire import SelectionError, WiredGraph
from graphwire.graph import layered_dag
from graphwire.wiring import FixedMask
from graphwire.wiring._rules import make_rule


def build(rule, **kw):
    return WiredGraph(layered_dag([3, 5, 4, 2]), node_op="tanh", rule=rule, seed=1, **kw)


def grads(net):
    net.zero_grad()
    net(torch.randn(16, 3)).pow(2).sum().backward()
    return net.weight.grad


def test_unknown_rule_lists_valid_names():
    with pytest.raises(
        SelectionError,
        match="'complete', 'dnw', 'dnw_no_update', 'fixed_mask', 'gmp', 'l1_anneal', 'random', "
        "'rigl', 'set', 'targeted_dropout'",
    ):
        make_rule("lottery")


def test_frozen_by_name_explains():
    with pytest.raises(SelectionError, match=r"FixedMask\(mask\)"):
        build("fixed_mask", density=0.3)


def test_dnw_gives_gradient_to_unselected_edges():
    net = build("dnw", density=0.3)
    g = grads(net)
    assert (g[~net.mask()] != 0).sum() > 0


@pytest.mark.parametrize("rule", ["dnw_no_update", "random"])
def test_masked_rules_give_no_gradient_to_unselected(rule):
    net = build(rule, density=0.3)
    g = grads(net)
    assert bool((g[~net.mask()] == 0).all())
    assert (g[net.mask()] != 0).sum() > 0


def test_random_rule_is_fixed_and_seeded():
    a, b, c = build("random", density=0.3), build("random", density=0.3), None
    assert torch.equal(a.mask(), b.mask())
    c = WiredGraph(layered_dag([3, 5, 4, 2]), node_op="tanh", rule="random", seed=2, density=0.3)
    assert not torch.equal(a.mask(), c.mask())
    # a random graph is not the top-k of the weights
    assert not torch.equal(a.mask(), a.rule.__class__.__mro__[1]().select(a, a.budget, None))
    with torch.no_grad():
        a.weight.mul_(-3.0)
    assert a.reselect() == (0, 0)
    assert torch.equal(a.mask(), b.mask())


def test_complete_and_frozen():
    full = build("complete")
    assert bool(full.mask().all())
    with pytest.raises(SelectionError, match="takes no k or density"):
        build("complete", density=0.5)
    frozen = build(FixedMask(build("dnw", density=0.2).mask()))
    assert int(frozen.mask().sum()) == round(0.2 * frozen.weight.numel())
    with pytest.raises(SelectionError, match="has 3 entries but the graph has"):
        build(FixedMask(torch.tensor([True, False, True])))
