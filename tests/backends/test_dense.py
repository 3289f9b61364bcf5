"""The dense backend against the reference backend: outputs and every [E] gradient."""

import copy

import pytest
import torch
from torch import nn

import graphwire
from graphwire import ChannelGraph, ConfigError, DNWOptimizer, GraphError, ODESolver, WiredGraph
from graphwire.backends.dense import DenseBackend as DenseExecutor
from graphwire.errors import ReachabilityError
from graphwire.graph import complete_digraph, layered_dag
from graphwire.wiring import FixedMask

OPS = ["relu", "tanh", "identity", "grouped"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: extra threads only add synchronisation on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_graph(seed, mode):
    """A small random graph with shuffled node labels; DAG or cyclic (with self-loops)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        n = int(torch.randint(4, 12, (1,), generator=gen))
        n_in = int(torch.randint(1, 4, (1,), generator=gen))
        n_out = int(torch.randint(1, 3, (1,), generator=gen))
        label = torch.randperm(n, generator=gen)  # position -> node label
        p = float(torch.rand(1, generator=gen)) * 0.6 + 0.3
        u, v = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        if mode == "dag":
            keep = (u < v) & (v >= n_in)  # no edges into inputs
        else:
            keep = u >= 0
        keep &= torch.rand(n, n, generator=gen) < p
        edges = torch.stack([label[u[keep]], label[v[keep]]])
        if edges.shape[1] == 0:
            continue
        groups = {"a": label[: n // 2].tolist(), "b": label[n // 2 :].tolist()}
        try:
            return ChannelGraph(
                edges, n, inputs=label[:n_in], outputs=label[n - n_out :], groups=groups
            )
        except ReachabilityError:
            continue


def random_net(seed, mode, dtype=torch.float64, images=False):
    gen = torch.Generator().manual_seed(seed)
    graph = random_graph(seed, mode)
    pick = int(torch.randint(len(OPS), (1,), generator=gen))
    op = "conv" if images and pick == 3 else OPS[pick]
    if op == "grouped":
        op = {"a": "relu", "b": "tanh"}
    kw = {}
    if mode == "discrete":
        kw["steps"] = int(torch.randint(1, 5, (1,), generator=gen))
    if mode == "continuous":
        kw["solver"] = ODESolver(method="rk4", options={"step_size": 0.25})
    rule = ["dnw", "dnw_no_update"][seed % 2]
    k = max(1, round(float(torch.rand(1, generator=gen)) * 0.8 * graph.num_edges))
    net = WiredGraph(graph, node_op=op, rule=rule, mode=mode, k=k, seed=seed, **kw)
    net = net.to(dtype)
    with torch.no_grad():
        for p in net.node_op.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.5)
    shape = (3, graph.inputs.numel()) + ((4, 4) if images else ())
    x = torch.randn(shape, generator=gen, dtype=dtype)
    return net, x


def grads(net, x, target, backend=None):
    if backend is not None:
        net.backend = backend
    for p in net.parameters():
        p.grad = None
    y = net(x)
    (y - target).pow(2).sum().backward()
    return y.detach(), [torch.zeros_like(p) if p.grad is None else p.grad for p in net.parameters()]


@pytest.mark.parametrize("mode", ["dag", "discrete", "continuous"])
@pytest.mark.parametrize("chunk", range(3))
def test_random_graphs_match_reference_outputs_and_all_gradients(mode, chunk):
    """Float64: outputs within 1e-10 and the gradient of every [E] weight within 1e-10."""
    hallucinated = 0
    for seed in range(chunk * 50, chunk * 50 + 50):
        net, x = random_net(seed, mode, images=seed % 3 == 0)
        assert net.backend == "dense"  # the default for every graph of this sweep
        target = torch.randn_like(net(x))
        y_ref, g_ref = grads(net, x, target, "reference")
        y_fast, g_fast = grads(net, x, target, "dense")
        torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-10)
        for a, b in zip(g_fast, g_ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        if net.rule.straight_through:
            hallucinated += int((g_ref[0][~net.mask()] != 0).sum())
    assert hallucinated > 0  # unselected edges did receive straight-through gradients


@pytest.mark.parametrize("mode", ["dag", "discrete", "continuous"])
def test_random_graphs_float32_within_1e5(mode):
    for seed in range(1000, 1060):
        net, x = random_net(seed, mode, dtype=torch.float32, images=seed % 2 == 0)
        target = torch.randn_like(net(x))
        y_ref, g_ref = grads(net, x, target, "reference")
        y_fast, g_fast = grads(net, x, target, "dense")
        torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-5)
        for a, b in zip(g_fast, g_ref):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_state_dict_keys_are_those_of_graphwire_0_1():
    """Checkpoints saved before the backends existed load unchanged: same keys, no more."""
    net = WiredGraph(layered_dag([3, 6, 2]), node_op="relu", density=0.5, seed=0)
    assert set(net.state_dict()) == {"weight", "edge_mask", "edge_index", "node_op.bias"}
    other = WiredGraph(layered_dag([3, 6, 2]), node_op="relu", density=0.5, seed=5)
    other.load_state_dict(net.state_dict())
    x = torch.randn(4, 3)
    torch.testing.assert_close(other(x), net(x))
    assert torch.equal(other.edge_mask, net.edge_mask)


@pytest.mark.parametrize("mode", ["dag", "discrete", "continuous"])
def test_dnw_optimizer_trains_dense_exactly_like_reference(mode):
    """Same data, same SGD with momentum: identical weights, masks and swaps step by step."""
    g = layered_dag([4, 8, 8, 3]) if mode == "dag" else complete_digraph(10, inputs=4, outputs=3)
    kw = {"solver": ODESolver(method="rk4", options={"step_size": 0.5})}
    kw = kw if mode == "continuous" else {}
    ref = WiredGraph(g, node_op="tanh", mode=mode, density=0.2, seed=1, **kw).double()
    ref.backend = "reference"
    twin = fast = copy.deepcopy(ref)
    fast.backend = "dense"
    opts = [
        DNWOptimizer(m, torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4))
        for m in (ref, fast)
    ]
    gen = torch.Generator().manual_seed(0)
    for _ in range(12):
        x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
        target = torch.randn(16, 3, generator=gen, dtype=torch.float64)
        for m, opt in zip((ref, fast), opts):
            opt.zero_grad()
            (m(x) - target).pow(2).mean().backward()
            opt.step()
        torch.testing.assert_close(twin.weight, ref.weight, rtol=1e-10, atol=1e-12)
        assert torch.equal(twin.edge_mask, ref.edge_mask)
    assert opts[0].swaps_total == opts[1].swaps_total > 0


def test_no_grad_forward_follows_weight_and_selection_changes():
    net = WiredGraph(layered_dag([3, 5, 2]), node_op="tanh", density=0.5, seed=0).double()
    ref = copy.deepcopy(net)
    ref.backend = "reference"
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        first = net(x)
        for m in (net, ref):
            m.weight.mul_(-2.0)
        torch.testing.assert_close(net(x), ref(x), rtol=0, atol=1e-12)
        assert not torch.allclose(net(x), first)
        for m in (net, ref):
            m.edge_mask.copy_(~m.edge_mask)
        torch.testing.assert_close(net(x), ref(x), rtol=0, atol=1e-12)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), ref(x), rtol=0, atol=1e-12)


def test_layered_blocks_cover_only_candidate_rectangles():
    g = layered_dag([32, 192, 192, 192, 192])
    net = WiredGraph(g, node_op="relu", k=32000, seed=0)
    assert isinstance(net.executor, DenseExecutor)
    assert net.dense.layout.size == g.num_edges  # exactly the candidates, not 800 x 800
    assert g.num_edges < 800 * 800 // 2


def test_dynamic_modes_hold_inputs_and_count_evaluations():
    g = layered_dag([2, 3, 2])  # inputs have no incoming edges: they are held
    net = WiredGraph(g, node_op="identity", mode="discrete", steps=3, density=1.0).double()
    assert net.dense.layout.nh == 2
    x = torch.randn(4, 2, dtype=torch.float64)
    y = net(x)
    net.backend = "reference"
    torch.testing.assert_close(y, net(x), rtol=0, atol=1e-12)
    cont = WiredGraph(complete_digraph(5, inputs=2, outputs=2), mode="continuous", density=0.5)
    assert cont.nfe == 0
    cont(torch.randn(3, 2))
    dense_nfe = cont.nfe
    cont.backend = "reference"
    cont(torch.randn(3, 2))
    assert dense_nfe > 0 and cont.nfe > dense_nfe


@pytest.mark.parametrize("adjoint", [False, True])
def test_continuous_adaptive_solver_gradients_match(adjoint):
    g = complete_digraph(6, inputs=2, outputs=2, self_loops=True)
    solver = ODESolver(rtol=1e-9, atol=1e-9, adjoint=adjoint)
    net = WiredGraph(g, node_op="tanh", mode="continuous", solver=solver, density=0.5, seed=3)
    net = net.double()
    x = torch.randn(3, 2, dtype=torch.float64)
    target = torch.randn(3, 2, dtype=torch.float64)
    y_ref, g_ref = grads(net, x, target, "reference")
    y_fast, g_fast = grads(net, x, target, "dense")
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-8, atol=1e-9)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_auto_backend_falls_back_to_message_passing_on_very_sparse_candidates():
    from graphwire.backends.dense import AUTO_MAX_FILL, dense_fill
    from graphwire.graph import random_graph

    sparse = random_graph("erdos_renyi", 400, p=0.005, inputs=10, outputs=5, seed=0, dag=False)
    assert dense_fill(sparse, "discrete") > AUTO_MAX_FILL
    net = WiredGraph(sparse, mode="discrete", density=0.5, seed=0)
    assert net.backend == "reference"
    net.backend = "dense"  # an explicit choice is kept
    assert net.backend == "dense"
    layered = WiredGraph(layered_dag([4, 8, 2]), density=0.5)
    assert layered.backend == "dense"


def test_errors_name_the_problem():
    g = layered_dag([2, 3, 2])
    net = WiredGraph(g, density=0.5)
    with pytest.raises(ConfigError, match="backend='fast' is not known; expected one of 'auto'"):
        WiredGraph(g, density=0.5, backend="fast")
    with pytest.raises(ConfigError, match="backend='sparse' is not known"):
        net.backend = "sparse"
    with pytest.raises(GraphError, match=r"x must have shape \[B, n_inputs=2\]"):
        net(torch.randn(3, 5))
    with pytest.raises(GraphError, match="x must hold floating-point features.*torch.int64"):
        net(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(GraphError, match="x has dtype torch.float64 but the module's weights"):
        net(torch.ones(3, 2, dtype=torch.float64))
    with pytest.raises(GraphError, match="x is on meta but the module is on cpu"):
        net(torch.ones(3, 2, device="meta"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(torch.ones(3, 2, dtype=torch.bfloat16)).shape == (3, 2)


def test_compile_errors_name_the_problem():
    g = layered_dag([2, 3, 2])
    with pytest.raises(GraphError, match="selection is empty"):
        graphwire.freeze(WiredGraph(g, rule=FixedMask(torch.zeros(g.num_edges, dtype=torch.bool))))
    net = WiredGraph(g, density=0.5)
    with pytest.raises(ConfigError, match="frozen already"):
        graphwire.freeze(graphwire.freeze(net))
    with pytest.raises(ConfigError, match="holds no graphwire.WiredGraph"):
        graphwire.freeze(nn.Linear(2, 2))
    with pytest.raises(
        ConfigError, match="must be a graphwire.WiredGraph, a wired layer or an nn.Module"
    ):
        graphwire.freeze("net")
    with pytest.raises(GraphError, match=r"x must have shape \[B, n_inputs=2\]"):
        graphwire.freeze(net)(torch.randn(3, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["dag", "discrete", "continuous"])
def test_cuda_matches_reference(mode):
    for seed in range(20):
        net, x = random_net(seed, mode, dtype=torch.float32, images=seed % 2 == 0)
        net, x = net.cuda(), x.cuda()
        target = torch.randn_like(net(x))
        y_ref, g_ref = grads(net, x, target, "reference")
        y_fast, g_fast = grads(net, x, target, "dense")
        torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(g_fast[0], g_ref[0], rtol=1e-4, atol=1e-4)
