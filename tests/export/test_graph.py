"""Eval-mode compilation: frozen, pruned, compacted modules against the reference executors."""

import copy
import io

import pytest
import torch
from torch import nn

import graphwire
from graphwire import (
    ChannelGraph,
    ConfigError,
    GraphError,
    ODESolver,
    ReachabilityError,
    WiredGraph,
)
from graphwire._native import ops as _kernel
from graphwire.export import FrozenGraph
from graphwire.export._blocks import Mix
from graphwire.graph import complete_digraph, layered_dag
from graphwire.wiring import FixedMask

OPS = ["relu", "tanh", "identity", "grouped", "conv"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: extra threads only add synchronisation on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_graph(gen, mode):
    """A small random graph with shuffled node labels; DAG or cyclic (with self-loops)."""
    while True:
        n = int(torch.randint(4, 14, (1,), generator=gen))
        n_in = int(torch.randint(1, 4, (1,), generator=gen))
        n_out = int(torch.randint(1, 3, (1,), generator=gen))
        label = torch.randperm(n, generator=gen)
        p = float(torch.rand(1, generator=gen)) * 0.5 + 0.2
        u, v = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        keep = ((u < v) & (v >= n_in)) if mode == "dag" else (u >= 0)
        keep &= torch.rand(n, n, generator=gen) < p
        if not bool(keep.any()):
            continue
        groups = {"a": label[: n // 2].tolist(), "b": label[n // 2 :].tolist()}
        try:
            return ChannelGraph(
                torch.stack([label[u[keep]], label[v[keep]]]),
                n,
                inputs=label[:n_in],
                outputs=label[n - n_out :],
                groups=groups,
            )
        except ReachabilityError:
            continue


def random_trained_net(seed, mode, dtype=torch.float64, solver=None):
    """A random net whose selection reaches at least one output (what eval mode requires)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        graph = random_graph(gen, mode)
        op = OPS[int(torch.randint(len(OPS), (1,), generator=gen))]
        images = op == "conv" or bool(torch.rand(1, generator=gen) < 0.3)
        op = {"a": "relu", "b": "tanh"} if op == "grouped" else op
        kw = {"steps": 3} if mode == "discrete" else {}
        if mode == "continuous":
            kw["solver"] = solver or ODESolver(method="rk4", options={"step_size": 0.25})
        k = max(1, round(float(torch.rand(1, generator=gen)) * 0.7 * graph.num_edges))
        net = WiredGraph(graph, node_op=op, mode=mode, k=k, seed=seed, **kw).to(dtype)
        if bool(graph.reachable_from_inputs(net.mask())[graph.outputs].any()):
            break
    with torch.no_grad():  # biases of both signs: some unreachable nodes are constant, not 0
        for p in net.node_op.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.5)
    shape = (3, graph.inputs.numel()) + ((5, 5) if images else ())
    return net, torch.randn(shape, generator=gen, dtype=dtype)


@pytest.mark.parametrize("mode", ["dag", "discrete", "continuous"])
@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_random_graphs_match_reference_float64(mode, kernel):
    """Outputs within 1e-10 after dead-node removal; removal did happen in the sweep."""
    dropped = kept_constant = 0
    for seed in range(100):
        net, x = random_trained_net(seed, mode)
        fast = graphwire.freeze(net, kernel=kernel)
        with torch.no_grad():
            expected = net(x)
        with torch.inference_mode():
            torch.testing.assert_close(fast(x), expected, rtol=1e-10, atol=1e-10)
        dropped += fast.dropped_nodes
        unreached = ~net.graph.reachable_from_inputs(net.mask())
        kept_constant += int(unreached.sum()) > fast.dropped_nodes
    assert dropped > 50 and kept_constant > 0


@pytest.mark.parametrize("mode", ["dag", "discrete", "continuous"])
def test_random_graphs_match_reference_float32(mode):
    for seed in range(200, 260):
        net, x = random_trained_net(seed, mode, dtype=torch.float32)
        fast = graphwire.freeze(net)
        with torch.inference_mode():
            torch.testing.assert_close(fast(x), net(x), rtol=1e-5, atol=1e-5)


def test_adaptive_solver_keeps_error_control_of_the_full_state():
    """dopri5 after removing zero nodes takes the same steps: outputs match to 1e-10."""
    solver = ODESolver(rtol=1e-4, atol=1e-4)
    dropped = 0
    for seed in range(40):
        net, x = random_trained_net(seed, "continuous", solver=solver)
        fast = graphwire.freeze(net)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), net(x), rtol=1e-10, atol=1e-10)
        dropped += fast.dropped_nodes
    assert dropped > 0


def test_dead_nodes_are_removed_and_constant_nodes_kept():
    # 0 input; 1 = relu(w 0); 2 has no inputs but bias 1: relu(1) = 1, a constant feeding 3;
    # 4 has no inputs and bias -1 (always 0); 5 only feeds nothing. outputs: 3
    edges = torch.tensor([[0, 1, 2, 4, 1], [1, 3, 3, 3, 5]])
    g = ChannelGraph(edges, 6, inputs=[0], outputs=[3])
    net = WiredGraph(g, node_op="relu", rule="complete").double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor([2.0, 1.0, 3.0, 5.0, 1.0], dtype=torch.float64))
        net.node_op.bias.copy_(torch.tensor([0, 0, 1.0, 0, -1.0, 0], dtype=torch.float64))
    fast = graphwire.freeze(net)
    assert (fast.kept_nodes, fast.kept_edges) == (4, 3)  # 0, 1, 2, 3; nodes 4 and 5 gone
    x = torch.tensor([[-1.0], [2.0]], dtype=torch.float64)
    # node 3 = relu(1 * relu(2 x) + 3 * relu(0 + 1))
    torch.testing.assert_close(fast(x), torch.relu(torch.relu(2 * x) + 3.0).unsqueeze(1)[:, 0])
    torch.testing.assert_close(fast(x), net(x))


def test_unused_inputs_are_skipped():
    g = layered_dag([3, 2, 1])
    mask = torch.zeros(g.num_edges, dtype=torch.bool)
    src, dst = g.edge_index
    mask[(src == 1) & (dst == 3)] = True
    mask[(src == 3) & (dst == 5)] = True
    net = WiredGraph(g, node_op="tanh", rule=FixedMask(mask)).double()
    fast = graphwire.freeze(net)
    assert fast.in_nodes.tolist() == [1] and not fast.all_inputs
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(fast(x), net(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["dag", "discrete"])
def test_state_dict_and_torch_save_round_trips(mode):
    g = layered_dag([3, 6, 6, 2]) if mode == "dag" else complete_digraph(8, inputs=3, outputs=2)
    net = WiredGraph(g, node_op="conv", mode=mode, density=0.4, seed=0)
    fast = graphwire.freeze(net, kernel="sparse")
    x = torch.randn(2, 3, 6, 6)
    expected = fast(x)
    buf = io.BytesIO()
    torch.save(fast.state_dict(), buf)
    other = graphwire.freeze(net, kernel="sparse")
    with torch.no_grad():
        for t in [*other.parameters(), *other.buffers()]:
            if t.is_floating_point():
                t.add_(1.0)
    assert not torch.allclose(other(x), expected)
    buf.seek(0)
    other.load_state_dict(torch.load(buf))
    torch.testing.assert_close(other(x), expected, rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(fast, buf)
    buf.seek(0)
    torch.testing.assert_close(torch.load(buf, weights_only=False)(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["dag", "discrete"])
@pytest.mark.parametrize("kernel", ["dense", "sparse"])
@pytest.mark.parametrize("images", [False, True])
def test_torch_export(mode, kernel, images):
    g = layered_dag([3, 6, 6, 2]) if mode == "dag" else complete_digraph(8, inputs=3, outputs=2)
    net = WiredGraph(g, node_op="conv" if images else "relu", mode=mode, density=0.4, seed=0)
    fast = graphwire.freeze(net, kernel=kernel)
    x = torch.randn((4, 3, 6, 6) if images else (4, 3))
    program = torch.export.export(fast, (x,))
    torch.testing.assert_close(program.module()(x), net(x), rtol=1e-5, atol=1e-5)


def test_kernel_matches_dense_products_on_odd_shapes():
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for g_, n, m, p in [(1, 1, 1, 1), (2, 7, 5, 63), (3, 16, 9, 64), (2, 33, 40, 130)]:
            a = torch.randn(m, n, generator=gen, dtype=dtype)
            a[torch.rand(m, n, generator=gen) < 0.6] = 0
            x = torch.randn(g_, n, p, generator=gen, dtype=dtype)
            block = Mix(a, sparse=True)
            y = _kernel.csr_mix(x, block.rowptr, block.col, block.val, m)
            tol = 1e-5 if dtype == torch.float32 else 1e-12
            torch.testing.assert_close(y, torch.matmul(a, x), rtol=tol, atol=tol)


def test_fallback_without_kernel(monkeypatch):
    """No compiler: auto picks dense blocks, and sparse blocks still compute correctly."""
    monkeypatch.setattr(_kernel, "load", lambda: None)
    assert not _kernel.available()
    net = WiredGraph(layered_dag([4, 8, 3]), node_op="tanh", density=0.1, seed=0).double()
    auto = graphwire.freeze(net)
    assert all(not b.sparse for b in auto.blocks)
    forced = graphwire.freeze(net, kernel="sparse")
    assert all(b.sparse for b in forced.blocks)
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(forced(x), net(x), rtol=0, atol=1e-12)


def test_cost_model_picks_sparse_for_sparse_blocks_on_cpu(monkeypatch):
    # the choice is the cost model's: pretend the kernel built, whether or not it did here
    monkeypatch.setattr(_kernel, "available", lambda: True)
    net = WiredGraph(layered_dag([64, 64]), node_op="relu", density=0.2, seed=0)
    assert graphwire.freeze(net).blocks[0].sparse
    net = WiredGraph(layered_dag([64, 64]), node_op="relu", density=0.9, seed=0)
    assert not graphwire.freeze(net).blocks[0].sparse


def test_model_holding_wired_graphs_is_deep_copied_and_frozen():
    wired = WiredGraph(layered_dag([4, 6, 3]), node_op="relu", density=0.6, seed=0)
    model = nn.Sequential(nn.Linear(5, 4), wired, nn.Flatten())
    frozen = graphwire.freeze(model)
    assert isinstance(frozen[1], FrozenGraph) and frozen[0] is not model[0]
    assert not any(p.requires_grad for p in frozen.parameters())
    assert isinstance(model[1], WiredGraph) and model[0].weight.requires_grad
    x = torch.randn(7, 5)
    with torch.inference_mode():
        torch.testing.assert_close(frozen(x), model(x), rtol=1e-5, atol=1e-5)
    before = copy.deepcopy(frozen.state_dict())
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())


def test_eval_errors_name_the_problem():
    g = layered_dag([2, 3, 2])
    empty = FixedMask(torch.zeros(g.num_edges, dtype=torch.bool))
    with pytest.raises(GraphError, match="selection is empty"):
        graphwire.freeze(WiredGraph(g, rule=empty))
    mask = torch.zeros(g.num_edges, dtype=torch.bool)
    mask[0] = True  # 0 -> 2 only: outputs 5 and 6 are cut off
    with pytest.raises(ReachabilityError, match=r"none of the 2 output nodes \(e.g. \[5, 6\]\)"):
        graphwire.freeze(WiredGraph(g, rule=FixedMask(mask)))
    with pytest.raises(ConfigError, match="kernel='csr' is not known"):
        graphwire.freeze(WiredGraph(g, density=1.0), kernel="csr")
    fast = graphwire.freeze(WiredGraph(g, density=1.0))
    with pytest.raises(GraphError, match=r"x must have shape \[B, n_inputs=2\]"):
        fast(torch.randn(3, 4))
    with pytest.raises(ConfigError, match="frozen already"):
        graphwire.freeze(fast)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["dag", "discrete", "continuous"])
@pytest.mark.parametrize("kernel", ["auto", "sparse"])
def test_cuda_eval_matches_reference(mode, kernel):
    for seed in range(20):
        net, x = random_trained_net(seed, mode, dtype=torch.float32)
        net, x = net.cuda(), x.cuda()
        fast = graphwire.freeze(net, kernel=kernel)
        with torch.inference_mode():
            torch.testing.assert_close(fast(x), net(x), rtol=1e-5, atol=1e-5)
