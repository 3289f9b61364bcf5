"""``WiredGraph``: construction, the backend choice, and a ``forward`` without state.

The forward pass runs the chosen backend in training and in evaluation alike; it keeps
nothing between calls. Every test here would fail against a module that cached an
inference path (a stale result after an edit, a changed module after a call, a different
path with and without gradients).
"""

import copy
import threading

import pytest
import torch

from graphwire import ConfigError, SelectionError, WiredGraph
from graphwire.graph import complete_digraph, layered_dag

CASES = {
    "dag": dict(graph=layered_dag([4, 12, 12, 3]), node_op="relu", x=(5, 4)),
    "dag-image": dict(graph=layered_dag([3, 8, 8, 2]), node_op="conv", x=(2, 3, 5, 5)),
    "discrete": dict(
        graph=complete_digraph(10, inputs=3, outputs=2), node_op="tanh", mode="discrete", x=(4, 3)
    ),
    "continuous": dict(
        graph=complete_digraph(10, inputs=3, outputs=2),
        node_op="tanh",
        mode="continuous",
        solver=dict(method="rk4", options={"step_size": 0.25}),
        x=(4, 3),
    ),
}


def build(case: str, **kw) -> tuple[WiredGraph, torch.Tensor]:
    spec = dict(CASES[case])
    shape = spec.pop("x")
    net = WiredGraph(**spec, density=0.3, seed=0, **kw).double()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return net, x


def snapshot(net: WiredGraph) -> tuple:
    """Everything a forward pass could change: attributes, tensors and their values."""
    tensors = {k: v.detach().clone() for k, v in net.state_dict(keep_vars=True).items()}
    # tensors are compared above; nfe is the documented counter of function evaluations
    skip = ("_parameters", "_buffers", "_modules", "nfe")
    modules = {
        name: {k: repr(v) for k, v in vars(m).items() if k not in skip}
        for name, m in net.named_modules()
    }
    return tensors, modules


def same_snapshot(a: tuple, b: tuple) -> bool:
    ta, ma = a
    tb, mb = b
    return ma == mb and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.parametrize("case", list(CASES))
def test_forward_changes_nothing_in_the_module(case):
    net, x = build(case)
    net.eval()
    before = snapshot(net)
    with torch.inference_mode():
        net(x)
    with torch.no_grad():
        net(x)
    net(x).sum().backward()
    net.zero_grad(set_to_none=True)
    assert same_snapshot(before, snapshot(net))


@pytest.mark.parametrize("case", list(CASES))
def test_evaluation_without_gradients_runs_the_training_computation(case):
    """The same backend with and without gradients: the same numbers, to float64 rounding.

    (Convolution kernels may pick another algorithm without autograd, so image features
    are equal to rounding, not bit for bit.)
    """
    net, x = build(case)
    net.eval()
    with_grad = net(x).detach()
    with torch.no_grad():
        no_grad = net(x)
    with torch.inference_mode():
        inference = net(x)
    torch.testing.assert_close(no_grad, with_grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(inference, with_grad, rtol=1e-13, atol=1e-13)


def reference(net: WiredGraph, x: torch.Tensor) -> torch.Tensor:
    """``net``'s output for ``x`` by message passing on a copy of its current state."""
    ref = copy.deepcopy(net)
    ref.backend = "reference"
    with torch.no_grad():
        return ref(x)


@pytest.mark.parametrize("case", list(CASES))
def test_an_edit_between_calls_is_seen_by_the_next_call(case):
    """Edits of weights, mask and node ops in place show at once (no stale results)."""
    net, x = build(case)
    net.eval()
    net(x).sum().backward()  # the edges the output depends on most, selected or not
    influence = net.weight.grad.abs()
    net.zero_grad(set_to_none=True)
    on = torch.where(net.edge_mask, influence, -1.0).argmax()
    off = torch.where(net.edge_mask, -1.0, influence).argmax()
    outputs = []
    with torch.no_grad():
        outputs.append(net(x))
        net.weight[on] += 0.5  # a selected weight
        outputs.append(net(x))
        torch.testing.assert_close(outputs[-1], reference(net, x), rtol=1e-10, atol=1e-10)
        net.edge_mask[off] = True  # one more edge, with a weight of its own
        net.weight[off] = 0.7
        outputs.append(net(x))
        torch.testing.assert_close(outputs[-1], reference(net, x), rtol=1e-10, atol=1e-10)
        for p in net.node_op.parameters():
            p.add_(0.1)
        outputs.append(net(x))
        torch.testing.assert_close(outputs[-1], reference(net, x), rtol=1e-10, atol=1e-10)
    assert not torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[1], outputs[2])
    if any(True for _ in net.node_op.parameters()):
        assert not torch.equal(outputs[2], outputs[3])


def test_concurrent_calls_from_threads_give_the_sequential_results():
    net, _ = build("dag")
    net.eval()
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(8, 4, generator=gen, dtype=torch.float64) for _ in range(8)]
    with torch.no_grad():
        expected = [net(x) for x in xs]
    results: dict[int, torch.Tensor] = {}

    def work(i):
        with torch.no_grad():
            for _ in range(20):
                results[i] = net(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, y in enumerate(expected):
        assert torch.equal(results[i], y)


@pytest.mark.parametrize("case", list(CASES))
def test_both_backends_compute_the_same_network(case):
    net, x = build(case)
    target = torch.randn_like(net(x))
    outs, grads = [], []
    for backend in ("dense", "reference"):
        net.backend = backend
        net.zero_grad(set_to_none=True)
        y = net(x)
        (y - target).pow(2).sum().backward()
        outs.append(y.detach())
        grads.append(net.weight.grad.clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-9)
    assert bool((grads[0][~net.edge_mask] != 0).any())  # straight-through: unselected learn


def test_backend_is_checked_and_auto_resolves():
    net, _ = build("dag")
    assert net.backend == "dense"  # auto on a layered graph: one entry per candidate
    with pytest.raises(ConfigError, match="backend='sparse' is not known; expected one of"):
        net.backend = "sparse"


def test_constructor_errors_name_the_argument():
    g = layered_dag([2, 3, 1])
    with pytest.raises(ConfigError, match="graph must be a graphwire.ChannelGraph"):
        WiredGraph(g.edge_index, density=0.5)
    with pytest.raises(ConfigError, match="mode='loop' is not known"):
        WiredGraph(g, mode="loop", density=0.5)
    with pytest.raises(ConfigError, match="steps must be a positive int"):
        WiredGraph(complete_digraph(6, inputs=2, outputs=2), mode="discrete", steps=0, k=4)
    with pytest.raises(SelectionError, match="scope='group' needs node groups"):
        WiredGraph(complete_digraph(6, inputs=2, outputs=2), mode="discrete", scope="group", k=4)
    with pytest.raises(SelectionError, match="distribution='erk' does not go with scope='global'"):
        WiredGraph(g, distribution="erk", density=0.5)
