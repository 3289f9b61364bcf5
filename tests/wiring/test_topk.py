import pytest
import torch

from graphwire import SelectionError, WiredGraph
from graphwire.graph import layered_dag
from graphwire.wiring.topk import apportion, resolve_budget, select_topk


def test_select_topk_exact_with_ties():
    scores = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0, 0.5])
    mask = select_topk(scores, [3])
    assert mask.tolist() == [False, True, True, True, False, False]
    assert int(select_topk(torch.ones(100), [37]).sum()) == 37


def test_select_topk_per_scope_matches_sorting():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 5, (500,), generator=gen).float()  # many ties
    scope = torch.randint(0, 4, (500,), generator=gen)
    members = [(scope == s).nonzero().flatten() for s in range(4)]
    ks = [5, 0, 17, int(members[3].numel())]
    mask = select_topk(scores, ks, members)
    for idx, k in zip(members, ks):
        assert int(mask[idx].sum()) == k
        # reference: a stable sort by (-score, index)
        order = sorted(idx.tolist(), key=lambda i: (-float(scores[i]), i))
        assert set(order[:k]) == set(idx[mask[idx]].tolist())


def test_select_topk_rejects_nan():
    with pytest.raises(SelectionError, match="NaN"):
        select_topk(torch.tensor([1.0, float("nan")]), [1])


def test_apportion_and_budget():
    assert apportion(7, [10, 10, 10]) == [3, 2, 2]
    assert sum(apportion(1000, [3, 7, 11, 13])) == 1000
    assert resolve_budget([10, 30], k=8, density=None) == [2, 6]
    assert resolve_budget([10, 30], k={"a": 1, "b": 30}, density=None, names=["a", "b"]) == [1, 30]
    with pytest.raises(SelectionError, match="exactly one of k"):
        resolve_budget([10], k=None, density=None)
    with pytest.raises(SelectionError, match="exactly one of k"):
        resolve_budget([10], k=3, density=0.5)
    with pytest.raises(SelectionError, match=r"density must be in \(0, 1\]; got 1.5"):
        resolve_budget([10], k=None, density=1.5)
    with pytest.raises(SelectionError, match=r"k must be an int in \[1, 10\]"):
        resolve_budget([10], k=11, density=None)
    with pytest.raises(SelectionError, match=r"k\['a'\]=11 must be in \[0, 10\]"):
        resolve_budget([10], k={"a": 11}, density=None, names=["a"])


@pytest.mark.parametrize("scope", ["global", "group"])
def test_wired_mask_has_k_per_scope_even_with_ties(scope):
    g = layered_dag([4, 6, 6, 3])
    net = WiredGraph(g, node_op="relu", density=0.25, scope=scope, seed=0)
    with torch.no_grad():
        net.weight.fill_(0.7)  # every candidate ties
    net.reselect()
    mask = net.mask()
    assert int(mask.sum()) == sum(net.budget) == round(0.25 * g.num_edges)
    if scope == "group":
        per_group = torch.bincount(g.edge_group[mask], minlength=4).tolist()
        sizes = torch.bincount(g.edge_group, minlength=4).tolist()
        assert per_group == [0] + [round(0.25 * s) for s in sizes[1:]]
    # selected edges are candidates: they all point forward through the blocks
    src, dst = g.edge_index[:, mask]
    assert bool((g.group_id[src] < g.group_id[dst]).all())


def test_group_scope_needs_groups():
    from graphwire.graph import complete_digraph

    with pytest.raises(SelectionError, match="scope='group' needs node groups"):
        WiredGraph(
            complete_digraph(4, inputs=1, outputs=1), mode="discrete", density=0.5, scope="group"
        )
    with pytest.raises(
        SelectionError, match="scope='layer' is not known; expected one of 'global', 'group'"
    ):
        WiredGraph(layered_dag([2, 2]), density=0.5, scope="layer")


@pytest.mark.parametrize("kind", ["random", "ascending", "descending", "few_values", "all_equal"])
def test_large_inputs_take_the_sampled_path_and_stay_exact(kind):
    """Above 2**20 scores the threshold comes from a sample-bracketed band: same result."""
    n = (1 << 20) + 12345
    gen = torch.Generator().manual_seed(0)
    scores = {
        "random": torch.rand(n, generator=gen),
        "ascending": torch.arange(n, dtype=torch.float32),
        "descending": torch.arange(n, dtype=torch.float32).flip(0),
        "few_values": torch.randint(0, 4, (n,), generator=gen).float(),
        "all_equal": torch.ones(n),
    }[kind]
    ordered = torch.sort(scores, descending=True).values
    for k in (777, n - 5):
        mask = select_topk(scores, [k])
        threshold = ordered[k - 1]
        expected = scores > threshold
        ties = (scores == threshold).nonzero().flatten()[: k - int(expected.sum())]
        expected[ties] = True
        assert torch.equal(mask, expected) and int(mask.sum()) == k
