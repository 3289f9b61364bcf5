"""Fusing ReLUs and residual additions into the sparse convolutions before them."""

import copy
import io
import operator

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import graphwire
from graphwire._native import ops as _kernel
from graphwire.export import SparseConv2d
from graphwire.export._fuse import fuse_epilogues
from graphwire.export._layers import SparseConv1d
from graphwire.layers import sparsify


def sparse(cin, cout, k=3, seed=0, **kw):
    """A ``SparseConv2d`` of a random 30%-dense convolution with a random bias."""
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, **kw)
    with torch.no_grad():
        conv.weight.mul_(torch.rand(conv.weight.shape, generator=gen) < 0.3)
        conv.bias.copy_(torch.randn(cout, generator=gen))
    return SparseConv2d(conv)


class Basic(nn.Module):
    """The CIFAR ResNet's block: a shared ReLU module, Identity for folded BatchNorms."""

    def __init__(self, project=False):
        super().__init__()
        self.conv1, self.bn1 = sparse(4, 4, seed=1), nn.Identity()
        self.conv2, self.bn2 = sparse(4, 4, seed=2), nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential(sparse(4, 4, 1, seed=3)) if project else nn.Identity()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class InPlaceAdd(nn.Module):
    """torchvision's style: ``out += identity``, then the ReLU module."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.relu = sparse(4, 4, seed=4), sparse(4, 4, seed=5), nn.ReLU()

    def forward(self, x):
        out = self.relu(self.conv1(x))
        out = self.conv2(out)
        out += x
        return self.relu(out)


class Functional(nn.Module):
    """Functional and method ReLUs, the residual on the left, an addition without ReLU."""

    def __init__(self):
        super().__init__()
        self.a, self.b = sparse(4, 4, seed=6), sparse(4, 4, seed=7)
        self.c, self.d = sparse(4, 4, seed=8), sparse(4, 4, seed=9)

    def forward(self, x):
        y = F.relu(self.a(x))
        y = torch.relu(x + self.b(y))
        y = self.c(y).relu()
        return self.d(y) + x


def check_unchanged(model, x, expect):
    """Fuse ``model``; its outputs must not change and ``expect`` must be what fused."""
    with torch.inference_mode():
        before = model(x)
        report = fuse_epilogues(model)
        after = model(x)
    assert report == expect
    assert torch.equal(after, before)
    return report


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "torch-fallback"])
def test_blocks_fuse_and_compute_the_same(native, monkeypatch):
    if not native:
        monkeypatch.setattr(_kernel, "load", lambda: None)  # as if no C compiler
    model = nn.Sequential(Basic(), Basic(project=True), InPlaceAdd(), Functional()).eval()
    x = torch.randn(2, 4, 9, 9)
    check_unchanged(
        model,
        x,
        {
            "0.conv1": "relu",
            "0.conv2": "add+relu",
            "1.conv1": "relu",
            "1.conv2": "add+relu",
            "2.conv1": "relu",
            "2.conv2": "add+relu",
            "3.a": "relu",
            "3.b": "add+relu",
            "3.c": "relu",
            "3.d": "add",
        },
    )
    assert all(isinstance(model[i], fx.GraphModule) for i in range(4))
    assert type(model[0]).__name__ == "Basic"  # the class name is kept
    assert model[0].conv1.fused_relu and not model[3].d.fused_relu
    graph = model[0].graph  # the separate ReLUs and additions are gone
    calls = [(n.op, n.target) for n in graph.nodes]
    assert ("call_module", "relu") not in calls
    assert ("call_function", operator.add) not in calls


def test_float64_runs_the_epilogue_by_torch():
    model = nn.Sequential(Basic(project=True)).double().eval()
    check_unchanged(
        model,
        torch.randn(2, 4, 6, 6, dtype=torch.float64),
        {
            "0.conv1": "relu",
            "0.conv2": "add+relu",
        },
    )


class Untouchable(nn.Module):
    """Patterns that must not fuse, each for its own reason."""

    def __init__(self):
        super().__init__()
        self.two_readers, self.twice = sparse(4, 4, seed=10), sparse(4, 4, seed=11)
        self.into_other, self.relu6 = sparse(4, 4, seed=12), sparse(4, 4, seed=13)
        self.dense = nn.Conv2d(4, 4, 3, padding=1)
        self.alpha = sparse(4, 4, seed=14)

    def forward(self, x):
        y = self.two_readers(x)
        y = torch.relu(y) + y  # the output has two readers
        y = torch.relu(self.twice(self.twice(y)))  # called twice
        z = y.clone()
        z.add_(self.into_other(y))  # writes into the other operand
        z = F.relu6(self.relu6(z))  # not a ReLU
        z = torch.relu(self.dense(z))  # a dense convolution
        return torch.add(self.alpha(z), x, alpha=2.0)  # not a plain addition


def test_patterns_that_must_not_fuse_are_left_alone():
    model = nn.Sequential(Untouchable()).eval()
    check_unchanged(model, torch.randn(2, 4, 7, 7), {})
    assert type(model[0]) is Untouchable  # nothing fused: the module is kept
    assert not any(getattr(m, "fused_relu", False) for m in model.modules())


class Shared(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return torch.relu(self.conv(x))


class Branchy(nn.Module):
    """Data-dependent control flow: does not trace with torch.fx."""

    def __init__(self):
        super().__init__()
        self.conv = sparse(4, 4, seed=15)

    def forward(self, x):
        y = self.conv(x)
        return torch.relu(y) if bool(y.sum() > 0) else y


def test_shared_untraceable_hooked_and_root_modules_are_left_alone():
    conv = sparse(4, 4, seed=16)
    shared = nn.Sequential(Shared(conv), Shared(conv), Branchy()).eval()  # one conv, two names
    check_unchanged(shared, torch.randn(1, 4, 5, 5), {})
    calls = []
    hooked = nn.Sequential(Shared(sparse(4, 4, seed=18))).eval()
    hooked[0].register_forward_hook(lambda *args: calls.append(1))
    check_unchanged(hooked, torch.randn(1, 4, 5, 5), {})  # a rewrite would drop the hook
    assert type(hooked[0]) is Shared and len(calls) == 2
    root = Shared(sparse(4, 4, seed=17)).eval()  # the model's own forward: kept
    check_unchanged(root, torch.randn(1, 4, 5, 5), {})
    assert type(root) is Shared and not root.conv.fused_relu


def test_conv1d_fuses_and_state_is_kept():
    class Block1d(nn.Module):
        def __init__(self):
            super().__init__()
            conv = nn.Conv1d(4, 4, 3, padding=1)
            with torch.no_grad():
                conv.weight[:, :2] = 0
            self.conv, self.extra = SparseConv1d(conv), nn.Linear(2, 2)  # extra: unused
            self.register_buffer("unused", torch.ones(3))

        def forward(self, x):
            return F.relu(self.conv(x) + x)

    model = nn.Sequential(Block1d()).eval()
    keys = sorted(model.state_dict())
    check_unchanged(model, torch.randn(2, 4, 11), {"0.conv": "add+relu"})
    assert sorted(model.state_dict()) == keys  # unused children and buffers stay


def saved(model):
    """``model`` pickled whole by ``torch.save``, as a buffer to load from."""
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return buffer


def small_resnet():
    from models.resnet import resnet_cifar

    torch.manual_seed(0)
    return resnet_cifar(depth=8, width=4, sparse=False).eval()


def test_compiled_sparsified_resnet_fuses_and_matches_the_masked_model(tmp_path):
    masked = sparsify(small_resnet(), density=0.3, seed=0).eval()
    fused = graphwire.freeze(masked, kernel="sparse")
    plain = graphwire.freeze(masked, kernel="sparse", fuse=False)
    assert plain.fused_epilogues == {}
    assert not any(isinstance(m, fx.GraphModule) for m in plain.modules())
    kinds = set(fused.fused_epilogues.values())
    assert kinds == {"relu", "add+relu"}, fused.fused_epilogues
    assert type(fused) is type(masked)  # the root keeps its class
    x = torch.randn(3, 3, 8, 8)
    with torch.inference_mode():
        out = fused(x)
        assert torch.equal(out, plain(x))
        torch.testing.assert_close(out, masked(x), rtol=0, atol=1e-5)
    # state_dict: the same keys as without fusion, and it loads into a fused copy
    assert sorted(fused.state_dict()) == sorted(plain.state_dict())
    buffer = io.BytesIO()
    torch.save(fused.state_dict(), buffer)
    other = graphwire.freeze(sparsify(small_resnet(), density=0.3, seed=1).eval(), kernel="sparse")
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer))
    with torch.inference_mode():
        torch.testing.assert_close(other(x), out, rtol=0, atol=1e-6)
    # the whole model pickles and deep-copies after a call (prepared kernel calls and
    # the string annotations of models/resnet.py are not carried over)
    for copied in (copy.deepcopy(fused), torch.load(saved(fused), weights_only=False)):
        assert copied.fused_epilogues == fused.fused_epilogues
        with torch.inference_mode():
            assert torch.equal(copied(x), out)
    program = torch.export.export(fused, (x,))
    torch.testing.assert_close(program.module()(x), out, rtol=0, atol=1e-6)
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any("graphwire.sparse_conv2d" in op for op in ops), ops


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fused_sparse_convolutions_match_the_masked_model():
    masked = sparsify(small_resnet(), density=0.3, seed=0).eval().cuda()
    fused = graphwire.freeze(masked, kernel="sparse")  # torch's epilogue on the GPU
    assert "add+relu" in fused.fused_epilogues.values()
    x = torch.randn(3, 3, 8, 8, device="cuda")
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), masked(x), rtol=0, atol=1e-5)
