"""Sparse training of the wired layers against the masked dense layer they replace.

Every test runs the same layer (or a deep copy of a model) twice, with ``kernel="dense"``
(the masked dense step) and ``kernel="sparse"`` (sparse forward, input gradient and
weight gradient), and compares the outputs, every gradient, and whole training runs.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graphwire import ConfigError, DNWOptimizer
from graphwire._native.ops import available
from graphwire.layers import WiredConv1d, WiredConv2d, WiredLinear, sparsify
from graphwire.layers._sparse_train import uses_sparse
from graphwire.layers._wired_layers import WiredLayer
from graphwire.wiring import GMP, SET, FixedMask, RigL, TargetedDropout

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}
DTYPES = [torch.float32, torch.float64]

CONVS = {  # name: (class, args, kwargs, input shape)
    "conv2d": (WiredConv2d, (6, 8, 3), dict(padding=1), (3, 6, 11, 9)),
    "stride2": (WiredConv2d, (6, 8, 3), dict(stride=2, padding=1, bias=False), (3, 6, 11, 9)),
    "stride3-dilated": (
        WiredConv2d,
        (6, 8, 3),
        dict(stride=3, padding=2, dilation=2),
        (2, 6, 13, 12),
    ),
    "groups": (WiredConv2d, (6, 9, 3), dict(padding=2, dilation=2, groups=3), (3, 6, 10, 10)),
    "valid": (WiredConv2d, (6, 8, (3, 2)), dict(stride=(2, 1)), (3, 6, 9, 8)),
    "same-even": (WiredConv2d, (6, 8, 4), dict(padding="same"), (3, 6, 9, 9)),
    "reflect": (WiredConv2d, (6, 8, 3), dict(padding=1, padding_mode="reflect"), (3, 6, 8, 8)),
    "pointwise": (WiredConv2d, (6, 8, 1), {}, (3, 6, 7, 7)),
    "conv1d": (WiredConv1d, (6, 8, 5), dict(stride=2, padding=2), (3, 6, 21)),
    "conv1d-circular": (
        WiredConv1d,
        (6, 8, 3),
        dict(padding=1, padding_mode="circular"),
        (3, 6, 16),
    ),
    "unbatched": (WiredConv2d, (6, 8, 3), dict(padding=1), (6, 8, 8)),
}


def _run(layer, x, kernel, seed=1):
    """Output, input gradient, weight gradient and bias gradient with ``kernel``."""
    layer.kernel = kernel
    layer.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = layer(x)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    (y * weights).sum().backward()
    bias = None if layer.bias is None else layer.bias.grad
    return y.detach(), x.grad, layer.weight.grad, bias


def _check_layer(layer, x, dense_weight_grad):
    layer.kernel = "sparse"
    kind = "train_conv" if layer.weight.dim() > 2 else "train_linear"
    assert uses_sparse(layer, kind, x)  # the sparse path runs: the test is not vacuous
    dense = _run(layer, x, "dense")
    sparse = _run(layer, x, "sparse")
    tol = TOL[x.dtype]
    mask = layer.edge_mask
    for name, a, b in zip(["output", "input grad", "weight grad", "bias grad"], dense, sparse):
        if a is None:
            assert b is None, name
            continue
        if name == "weight grad" and not dense_weight_grad:
            # the masked dense layer's gradient of an unselected weight is zero too (SET:
            # weight * mask), and the sparse one computes none
            assert bool((b[~mask] == 0).all()), "the sampled gradient wrote an unselected weight"
        torch.testing.assert_close(b, a, **tol, msg=name)
    assert dense[2].abs().sum() > 0 and dense[1].abs().sum() > 0  # not vacuous
    if dense_weight_grad:  # DNW: every weight gets a gradient, selected or not
        assert bool((sparse[2][~mask] != 0).any())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", ["set", "dnw"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 20), (70, 20), (2, 5, 20)])  # few rows, blocks, 3-D
def test_linear_sparse_step_equals_masked_dense(dtype, rule, bias, shape):
    layer = WiredLinear(20, 12, bias=bias, density=0.3, seed=0, rule=rule, dtype=dtype)
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    _check_layer(layer, x, dense_weight_grad=rule == "dnw")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", ["set", "dnw"])
@pytest.mark.parametrize("case", sorted(CONVS))
def test_conv_sparse_step_equals_masked_dense(dtype, rule, case):
    cls, args, kwargs, shape = CONVS[case]
    layer = cls(*args, **kwargs, density=0.3, seed=0, rule=rule, dtype=dtype)
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    _check_layer(layer, x, dense_weight_grad=rule == "dnw")


def test_a_non_contiguous_input_and_a_grown_zero_weight():
    layer = WiredConv2d(4, 6, 3, padding=1, density=0.3, seed=0, rule="set")
    with torch.no_grad():  # a selected weight that is exactly zero (RigL grows at zero)
        first = layer.edge_mask.reshape(-1).nonzero()[0]
        layer.weight.view(-1)[first] = 0.0
    x = torch.randn(3, 9, 9, 4).permute(0, 3, 1, 2)
    dense, sparse = _run(layer, x, "dense"), _run(layer, x, "sparse")
    for a, b in zip(dense, sparse):
        torch.testing.assert_close(b, a, **TOL[torch.float32])
    assert sparse[2].view(-1)[first] != 0  # the zero weight still gets its gradient


# ------------------------------------------------------------------ whole training runs
def _model(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    return net.to(dtype)


RULES = {
    "rigl": lambda: RigL(alpha=0.3, delta_t=25, t_end=150),
    "set": lambda: SET(zeta=0.3, delta_t=25, seed=0),
    "gmp": lambda: GMP(t_end=100, t_start=10, delta_t=20),
    "dnw": lambda: "dnw",
    "random": lambda: "random",
}


def _train(model, steps, data, start=0, opt=None):
    if opt is None:
        base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
        opt = DNWOptimizer(model, base)
    xs, ys = data
    for step in range(start, steps):
        i = step % len(xs)
        opt.zero_grad()
        F.cross_entropy(model(xs[i]), ys[i]).backward()
        opt.step()
    return opt


def _data(dtype, batches=6):
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(16, 3, 8, 8, generator=g, dtype=dtype) for _ in range(batches)]
    ys = [torch.randint(0, 10, (16,), generator=g) for _ in range(batches)]
    return xs, ys


def _set_kernel(model, kernel):
    for m in model.modules():
        if isinstance(m, WiredLayer):
            m.kernel = kernel


@pytest.mark.parametrize("rule", sorted(RULES))
def test_hundreds_of_steps_follow_the_masked_dense_run(rule):
    """float64: the same masks at every update and the same weights after 200 steps."""
    runs = {}
    for kernel in ("dense", "sparse"):
        model = sparsify(_model(torch.float64), rule=RULES[rule](), density=0.2, seed=0)
        _set_kernel(model, kernel)
        opt = _train(model, 200, _data(torch.float64))
        runs[kernel] = (model, opt)
    (dense, dense_opt), (sparse, sparse_opt) = runs["dense"], runs["sparse"]
    assert sparse_opt.swaps_total == dense_opt.swaps_total
    if rule in ("rigl", "set", "dnw"):
        assert dense_opt.swaps_total > 0  # the masks changed: updates happened
    for (name, a), b in zip(dense.state_dict().items(), sparse.state_dict().values()):
        if a.dtype == torch.bool:
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10, msg=name)


def test_float32_run_with_rigl_updates_stays_close():
    runs = {}
    for kernel in ("dense", "sparse"):
        model = sparsify(
            _model(torch.float32), rule=RigL(delta_t=10, t_end=40), density=0.2, seed=0
        )
        _set_kernel(model, kernel)
        _train(model, 30, _data(torch.float32))
        runs[kernel] = model
    for (name, a), b in zip(
        runs["dense"].state_dict().items(), runs["sparse"].state_dict().values()
    ):
        if a.dtype == torch.bool:
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=name)


def test_resume_across_an_update_is_bit_exact():
    """Stop at step 15, resume in a fresh model, run past RigL's update at step 20."""
    data = _data(torch.float32)

    def build():
        model = sparsify(
            _model(torch.float32), rule=RigL(delta_t=20, t_end=100), density=0.2, seed=0
        )
        _set_kernel(model, "sparse")
        return model

    whole = build()
    _train(whole, 32, data)

    first = build()
    opt = _train(first, 15, data)
    saved = copy.deepcopy((first.state_dict(), opt.state_dict()))
    resumed = build()
    base = torch.optim.SGD(resumed.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    resumed_opt = DNWOptimizer(resumed, base)
    resumed.load_state_dict(saved[0])
    resumed_opt.load_state_dict(saved[1])
    layer = next(m for m in resumed.modules() if isinstance(m, WiredLayer))
    assert layer.shared_budget.steps == 15  # the next backward knows which step it is
    _train(resumed, 32, data, start=15, opt=resumed_opt)
    assert resumed_opt.swaps_total > saved[1]["swaps_total"]  # the update at 20 swapped
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_rigl_asks_for_the_dense_gradient_on_update_steps_only():
    layer = WiredLinear(30, 20, density=0.2, seed=0, rule=RigL(delta_t=3, t_end=100))
    opt = DNWOptimizer(layer, torch.optim.SGD(layer.parameters(), lr=0.1))
    layer.kernel = "sparse"
    x = torch.randn(8, 30)
    for step in range(1, 8):
        opt.zero_grad()
        layer(x).pow(2).sum().backward()
        unselected = layer.weight.grad[~layer.edge_mask]
        assert bool((unselected != 0).any()) == (step % 3 == 0), step
        opt.step()


# ------------------------------------------------------------------- the per-layer choice
def test_auto_picks_sparse_where_the_cost_model_says_it_pays():
    """Where it pays: sparse with the compiled kernels, the dense path without them."""
    kernels = available()  # GRAPHWIRE_KERNELS=off in one of make test's runs
    x = torch.randn(128, 400)
    sparse = WiredLinear(400, 300, density=0.1, seed=0, rule="set")
    assert uses_sparse(sparse, "train_linear", x) == sparse.runs_sparse(x) == kernels
    assert not sparse.runs_sparse(x[:4])  # too little work: the layout costs more
    conv = WiredConv2d(16, 16, 3, padding=1, density=0.1, seed=0, rule="set")
    assert conv.runs_sparse(torch.randn(32, 16, 32, 32)) == kernels
    assert not conv.runs_sparse(torch.randn(1, 16, 8, 8))
    dense = WiredLinear(400, 300, density=0.9, seed=0, rule="set")
    assert not uses_sparse(dense, "train_linear", x)
    assert not uses_sparse(sparse.double(), "train_linear", x.double())  # no float64 kernels


def test_a_large_linear_layer_runs_sparse_at_20_percent_unless_it_needs_the_dense_gradient():
    kernels = available()
    x = torch.randn(128, 784)
    assert WiredLinear(784, 300, density=0.2, seed=0, rule="set").runs_sparse(x) == kernels
    assert not WiredLinear(784, 300, density=0.2, seed=0, rule="set").runs_sparse(x[:32])
    assert not WiredLinear(784, 300, density=0.2, seed=0, rule="dnw").runs_sparse(x)
    assert WiredLinear(784, 300, density=0.1, seed=0, rule="dnw").runs_sparse(x) == kernels
    assert not WiredConv2d(16, 16, 3, padding=1, density=0.2, rule="set").runs_sparse(
        torch.randn(128, 16, 32, 32)
    )


def test_layers_the_sparse_path_cannot_run_stay_dense():
    x = torch.randn(2, 4, 8, 8)
    layer = WiredConv2d(4, 6, 3, padding=1, density=0.2, seed=0, rule="set")
    layer.kernel = "sparse"
    assert uses_sparse(layer, "train_conv", x)
    layer.kernel = "dense"
    assert not uses_sparse(layer, "train_conv", x)
    odd = WiredConv2d(4, 6, 1, padding=1, density=0.2, seed=0, rule="set")  # pads past reach
    odd.kernel = "sparse"
    assert not uses_sparse(odd, "train_conv", x)
    dropout = WiredConv2d(4, 6, 3, density=0.2, seed=0, rule=TargetedDropout(seed=0))
    dropout.kernel = "sparse"  # a rule with its own effective weight
    assert not uses_sparse(dropout, "train_conv", x)
    fixed = WiredLinear(8, 4, density=0.5, seed=0, rule="set")
    fixed.kernel = "sparse"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not uses_sparse(fixed, "train_linear", torch.randn(2, 8))


def test_a_fixed_mask_trains_sparse_and_keeps_its_mask():
    mask = torch.rand(6, 10, generator=torch.Generator().manual_seed(0)) < 0.3
    layer = WiredLinear(10, 6, rule=FixedMask(mask.flatten()), seed=0)
    layer.kernel = "sparse"
    opt = DNWOptimizer(layer, torch.optim.SGD(layer.parameters(), lr=0.1))
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(5, 10)).sum().backward()
        assert bool((layer.weight.grad[~mask] == 0).all())
        opt.step()
    assert torch.equal(layer.edge_mask, mask)


def test_kernel_must_be_a_known_choice():
    layer = WiredLinear(4, 2, density=0.5)
    with pytest.raises(ConfigError, match="kernel.*'auto'.*'dense'.*'sparse'"):
        layer.kernel = "fast"
    assert layer.kernel == "auto"
