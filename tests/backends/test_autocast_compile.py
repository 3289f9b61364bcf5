"""The dense backend under torch.autocast (bfloat16 on CPU) and torch.compile (inductor).

Autocast: outputs and every [E] gradient against the float32 reference backend, with
normwise tolerances suited to bfloat16 (8 bits of mantissa). torch.compile: outputs and
gradients equal to eager execution, and a re-selection after compiling reaches the
compiled module.
"""

import copy
import shutil

import pytest
import torch

import graphwire
from graphwire import DNWOptimizer, ODESolver, WiredGraph
from graphwire.graph import complete_digraph, layered_dag

#: Relative (normwise) error allowed for bfloat16 autocast against float32: each rounding
#: is 2^-9 relative; image nodes go through instance norms over few positions, whose
#: gradients amplify it (message passing under autocast shows the same error there).
BF16_RTOL = {False: 0.02, True: 0.1}


def _net(mode, images, solver="rk4", seed=0):
    if mode == "dag":
        graph = layered_dag([4, 8, 8, 3])
    else:
        graph = complete_digraph(12, inputs=4, outputs=3)
    kw = {}
    if mode == "discrete":
        kw["steps"] = 3
    if mode == "continuous":
        kw["solver"] = (
            ODESolver(method="rk4", options={"step_size": 0.25})
            if solver == "rk4"
            else ODESolver(method="dopri5", rtol=1e-3, atol=1e-3)
        )
    op = "conv" if images else "tanh"
    net = WiredGraph(graph, node_op=op, mode=mode, density=0.4, seed=seed, **kw)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # node parameters away from their initial values
        for p in net.node_op.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    shape = (6, 4) + ((8, 8) if images else ())
    return net, torch.randn(shape, generator=gen)


def _run(net, x, target, backend, autocast=False):
    net.backend = backend
    net.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = net(x)
        loss = (y.float() - target).pow(2).sum()
    loss.backward()
    return y.detach(), [p.grad.detach().clone() for p in net.parameters() if p.grad is not None]


def _rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


CASES = [
    ("dag", False, "rk4"),
    ("dag", True, "rk4"),
    ("discrete", False, "rk4"),
    ("discrete", True, "rk4"),
    ("continuous", False, "rk4"),
    ("continuous", True, "rk4"),
    ("continuous", False, "dopri5"),
]


@pytest.mark.parametrize(("mode", "images", "solver"), CASES)
def test_bf16_autocast_matches_float32_reference_outputs_and_all_gradients(mode, images, solver):
    net, x = _net(mode, images, solver)
    assert net.backend == "dense"
    with torch.no_grad():
        target = torch.randn_like(net(x))
    y_ref, g_ref = _run(net, x, target, "reference")
    y_bf, g_bf = _run(net, x, target, "dense", autocast=True)
    assert y_bf.shape == y_ref.shape
    assert not torch.equal(y_bf.float(), y_ref)  # bfloat16 did run: results are rounded
    assert _rel(y_bf, y_ref) < BF16_RTOL[images]
    assert len(g_bf) == len(g_ref)
    weight_grad = g_bf[0]
    assert weight_grad.shape == net.weight.shape and weight_grad.dtype == torch.float32
    assert bool((weight_grad[~net.mask()] != 0).any())  # straight-through to unselected edges
    for a, b in zip(g_bf, g_ref):
        assert _rel(a, b) < BF16_RTOL[images]


def test_bf16_autocast_training_step_moves_weights_like_float32():
    """One DNWOptimizer step under autocast changes the weights as the float32 step does."""
    net, x = _net("discrete", True)
    nets = [net, copy.deepcopy(net)]
    target = torch.randn(6, 3, 8, 8)
    before = nets[0].weight.detach().clone()
    for net, autocast in zip(nets, (False, True)):
        opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.05))
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = (net(x).float() - target).pow(2).mean()
        loss.backward()
        opt.step()
    step32, step16 = (n.weight.detach() - before for n in nets)
    assert step32.abs().max() > 0
    assert _rel(step16, step32) < BF16_RTOL[True]


@pytest.mark.parametrize("mode", ["dag", "discrete", "continuous"])
def test_bf16_autocast_inference_default_and_frozen_match_float32(mode):
    """Without gradients (sparse blocks on a CPU) and in the frozen module, under autocast."""
    net, x = _net(mode, True)
    with torch.inference_mode():
        expected = net(x)
        for module in (net, graphwire.freeze(net), graphwire.freeze(net, kernel="dense")):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got = module(x)
            assert not torch.equal(got.float(), expected)
            assert _rel(got, expected) < BF16_RTOL[True]


def _has_compiler() -> bool:
    return any(shutil.which(c) for c in ("g++", "c++", "clang++", "cc"))


@pytest.mark.skipif(not _has_compiler(), reason="inductor on CPU needs a C++ compiler")
@pytest.mark.parametrize(("mode", "images"), [("dag", False), ("discrete", False)])
def test_torch_compile_inductor_matches_eager_and_follows_reselection(mode, images):
    torch.compiler.reset()
    net, x = _net(mode, images)
    with torch.no_grad():
        target = torch.randn_like(net(x))
    compiled = torch.compile(net, backend="inductor")

    def run(module):
        net.zero_grad(set_to_none=True)
        y = module(x)
        (y - target).pow(2).sum().backward()
        return y.detach(), [p.grad.detach().clone() for p in net.parameters()]

    y_eager, g_eager = run(net)
    y_comp, g_comp = run(compiled)
    torch.testing.assert_close(y_comp, y_eager, rtol=1e-4, atol=1e-5)
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # a new selection (other weights, another top-k) reaches the compiled module
    old_mask = net.mask().clone()
    with torch.no_grad():
        net.weight.copy_(torch.randn(net.weight.shape, generator=torch.Generator().manual_seed(1)))
    net.reselect()
    assert not torch.equal(net.mask(), old_mask)
    y_eager, g_eager = run(net)
    y_comp, g_comp = run(compiled)
    torch.testing.assert_close(y_comp, y_eager, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_comp[0], g_eager[0], rtol=1e-4, atol=1e-5)
    net.backend = "reference"  # and both agree with message passing
    y_ref, _ = run(net)
    torch.testing.assert_close(y_comp, y_ref, rtol=1e-4, atol=1e-5)
