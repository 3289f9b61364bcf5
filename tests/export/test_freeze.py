"""``graphwire.compile`` on sparsified networks: frozen, compacted, dense or sparse layers."""

import copy
import io

import pytest
import torch
from torch import nn

import graphwire
from graphwire import ConfigError, WiredGraph
from graphwire._native.ops import _MAX_DENSITY
from graphwire.export import SparseConv2d, SparseLinear, kernel_info
from graphwire.export._layers import SparseConv1d
from graphwire.graph import layered_dag
from graphwire.layers import WiredConv3d, WiredLinear, sparsify
from graphwire.layers._wired_layers import WiredLayer
from graphwire.wiring import WiredModule

KERNELS = ("dense", "sparse", "auto")
SPARSE_TYPES = (SparseLinear, SparseConv1d, SparseConv2d)
#: Compiled and masked models agree to this (float32; the sums are only reordered).
ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Residual(nn.Module):
    """A residual block of plain modules: conv-bn-relu-conv-bn plus the input."""

    def __init__(self, channels, groups=1, dilation=1):
        super().__init__()
        pad = dilation
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=pad, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def random_image_net(gen):
    """A random CNN: strides, padding, groups, dilation, a residual block, a classifier."""
    pick = lambda options: options[int(torch.randint(len(options), (1,), generator=gen))]  # noqa: E731
    width = pick([8, 12, 16])
    groups = pick([1, 2, 4])
    layers = [
        nn.Conv2d(3, width, pick([3, 5]), stride=pick([1, 2]), padding=pick([0, 1, 2])),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=pick([1, 2]), groups=groups, dilation=pick([1, 2])),
        nn.ReLU(),
        Residual(width, groups=pick([1, 2]), dilation=pick([1, 2])),
        nn.Conv2d(width, 2 * width, 1, stride=pick([1, 2]), bias=pick([True, False])),
        nn.ReLU(),
        nn.Conv2d(
            2 * width, 2 * width, 3, stride=2, padding=1, padding_mode=pick(["zeros", "reflect"])
        ),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 10, bias=pick([True, False])),
    ]
    net = nn.Sequential(*layers)
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net


def random_mlp_1d(gen):
    """1-D convolutions and linear layers with and without bias."""
    return nn.Sequential(
        nn.Conv1d(2, 8, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Conv1d(8, 8, 3, dilation=2, groups=2, bias=False),
        nn.Flatten(),
        nn.LazyLinear(16, bias=False),
        nn.GELU(),
        nn.Linear(16, 4),
    )


def masked(net, density, seed, shape):
    """``net`` sparsified, its weights scaled so that activations keep their size."""
    net(torch.randn(*shape))  # initialise lazy layers
    model = sparsify(net, density=density, seed=seed).eval()
    with torch.no_grad():  # a uniform scale keeps the top-|w| selection
        for m in model.modules():
            if isinstance(m, WiredLayer):
                m.weight.mul_(2.0 / density**0.5)
    return model


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("seed", range(4))
def test_random_image_nets_compile_to_the_masked_model(seed, kernel):
    gen = torch.Generator().manual_seed(seed)
    density = [0.05, 0.1, 0.3, 0.6][seed]
    model = masked(random_image_net(gen), density, seed, (1, 3, 20, 20))
    x = torch.randn(3, 3, 20, 20, generator=gen)
    expected = model(x)
    assert float(expected.std(0).max()) > 1e-3  # the output depends on the input
    fast = graphwire.freeze(model, kernel=kernel)
    with torch.inference_mode():
        got = fast(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)
    assert not any(isinstance(m, WiredModule) for m in fast.modules())
    kinds = {type(m) for m in fast.modules()}
    if kernel == "dense":
        assert not kinds & set(SPARSE_TYPES)
    if kernel == "sparse":  # every layer has a sparse path
        assert not kinds & {nn.Conv2d, nn.Linear}
    assert set(fast.layer_kernels) == {
        name for name, m in model.named_modules() if isinstance(m, WiredLayer)
    }
    assert isinstance(fast.layer_kernels[next(iter(fast.layer_kernels))], str)


@pytest.mark.parametrize("kernel", KERNELS)
def test_1d_nets_and_linear_layers(kernel):
    gen = torch.Generator().manual_seed(11)
    model = masked(random_mlp_1d(gen), 0.15, 3, (1, 2, 30))
    x = torch.randn(5, 2, 30, generator=gen)
    assert float(model(x).std(0).max()) > 1e-3  # the output depends on the input
    fast = graphwire.freeze(model, kernel=kernel)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), rtol=0, atol=ATOL)
    if kernel == "sparse":
        assert isinstance(fast[0], SparseConv1d) and isinstance(fast[6], SparseLinear)


def test_auto_follows_the_cost_model():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    model = sparsify(model, density=_MAX_DENSITY["linear"] / 2, seed=0)
    with torch.no_grad():  # the second layer: every weight selected, so dense wins
        model[2].edge_mask.fill_(True)
    fast = graphwire.freeze(model)
    assert fast.layer_kernels["2"] == "dense" and isinstance(fast[2], nn.Linear)
    want = "sparse" if kernel_info()["available"] else "dense"
    assert fast.layer_kernels["0"] == want


def test_source_is_untouched_and_the_copy_is_frozen():
    model = masked(random_image_net(torch.Generator().manual_seed(0)), 0.2, 0, (1, 3, 16, 16))
    before = copy.deepcopy(model.state_dict())
    fast = graphwire.freeze(model, kernel="sparse")
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert not fast.training
    assert all(not p.requires_grad for p in fast.parameters())


def test_report_attributes_are_plain_and_not_in_the_state_dict():
    model = masked(random_mlp_1d(torch.Generator().manual_seed(1)), 0.2, 0, (1, 2, 30))
    fast = graphwire.freeze(model, kernel="auto")
    assert hasattr(fast.compaction_report, "layers")
    assert not isinstance(fast.compaction_report, torch.Tensor)
    keys = fast.state_dict().keys()
    assert not any("compaction" in k or "layer_kernels" in k for k in keys)
    # each tensor is registered once: no buffer or parameter is shared between modules
    ids = [id(t) for m in fast.modules() for t in (*m._parameters.values(), *m._buffers.values())]
    ids = [i for i in ids if i != id(None)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("kernel", KERNELS)
def test_state_dict_round_trip(kernel):
    gen = torch.Generator().manual_seed(2)
    model = masked(random_image_net(gen), 0.15, 2, (1, 3, 16, 16))
    x = torch.randn(2, 3, 16, 16, generator=gen)
    first = graphwire.freeze(model, kernel=kernel)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    with torch.no_grad():  # same selection, other values: a different compiled model
        for m in model.modules():
            if isinstance(m, WiredLayer):
                m.weight.mul_(1.5)
    second = graphwire.freeze(model, kernel=kernel)
    with torch.inference_mode():
        assert not torch.allclose(second(x), first(x))
        buffer.seek(0)
        second.load_state_dict(torch.load(buffer))
        torch.testing.assert_close(second(x), first(x), rtol=0, atol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_torch_export(kernel):
    gen = torch.Generator().manual_seed(3)
    model = masked(random_image_net(gen), 0.1, 3, (1, 3, 16, 16))
    x = torch.randn(2, 3, 16, 16, generator=gen)
    fast = graphwire.freeze(model, kernel=kernel)
    program = torch.export.export(fast, (x,))
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(x), model(x), rtol=0, atol=ATOL)


def test_mixed_wired_graphs_and_layers_and_shared_modules():
    shared = nn.Linear(6, 6)
    model = nn.Sequential(
        nn.Linear(4, 8),
        WiredGraph(layered_dag([8, 12, 6]), density=0.5, seed=0),
        shared,
        nn.ReLU(),
        shared,
    )
    model = sparsify(model, density=0.3, seed=1).eval()
    model[4] = model[2]  # one wired layer under two names
    x = torch.randn(5, 4)
    for kernel in KERNELS:
        fast = graphwire.freeze(model, kernel=kernel)
        assert fast[2] is fast[4]
        assert type(fast[1]).__name__ == "FrozenGraph"
        with torch.inference_mode():
            torch.testing.assert_close(fast(x), model(x), rtol=0, atol=ATOL)


def test_a_wired_layer_itself_and_conv3d():
    layer = WiredLinear(8, 8, density=0.1, seed=0)
    fast = graphwire.freeze(layer, kernel="sparse")
    assert isinstance(fast, SparseLinear)
    x = torch.randn(3, 8)
    torch.testing.assert_close(fast(x), layer(x), rtol=0, atol=ATOL)
    conv3d = WiredConv3d(2, 4, 3, padding=1, density=0.2, seed=0)
    fast = graphwire.freeze(nn.Sequential(conv3d), kernel="sparse")
    assert type(fast[0]) is nn.Conv3d and fast.layer_kernels == {"0": "dense"}
    v = torch.randn(1, 2, 5, 5, 5)
    torch.testing.assert_close(fast(v), conv3d(v), rtol=0, atol=ATOL)


class OtherWired(WiredModule):
    """A wired module of a kind compile does not know."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.register_buffer("edge_mask", torch.ones(3, dtype=torch.bool))

    def learned_graph(self):
        raise NotImplementedError

    def forward(self, x):
        return x * self.weight


def test_unsupported_layers_name_the_layer_and_what_is_supported():
    model = nn.Sequential(WiredLinear(3, 3, density=0.5), nn.Sequential(OtherWired()))
    with pytest.raises(
        ConfigError, match=r"'1\.0' \(OtherWired\).*Supported are graphwire\.WiredGraph"
    ):
        graphwire.freeze(model)
    with pytest.raises(ConfigError, match="no graphwire.WiredGraph and no wired layer"):
        graphwire.freeze(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ConfigError, match="kernel='csr' is not known"):
        graphwire.freeze(model, kernel="csr")


@pytest.mark.parametrize("kernel", ["sparse", "dense"])
def test_count_reports_the_compiled_models_work(kernel):
    model = masked(random_image_net(torch.Generator().manual_seed(5)), 0.1, 5, (1, 3, 16, 16))
    shape = (1, 3, 16, 16)
    fast = graphwire.freeze(model, kernel=kernel)
    before, after = graphwire.count(model, shape), graphwire.count(fast, shape)
    if kernel == "sparse":  # nonzero weights only: the masked model's live cost, less
        # the weights of channels compaction removed (computed, but read by nobody)
        assert after.params <= before.params and after.macs <= before.macs
        if fast.compaction_report.removed == 0:
            assert (after.params, after.macs) == (before.params, before.macs)
    else:  # dense layers compute every (compacted) entry
        dense = graphwire.count(graphwire.freeze(model, kernel="dense"), shape)
        assert after.macs == dense.macs > before.macs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kernel", KERNELS)
def test_cuda_compile_matches_masked(kernel):
    model = masked(random_image_net(torch.Generator().manual_seed(6)), 0.1, 6, (1, 3, 16, 16))
    model = model.cuda()
    x = torch.randn(2, 3, 16, 16, device="cuda")
    fast = graphwire.freeze(model, kernel=kernel)
    if kernel == "auto":  # dense cuDNN / cuBLAS layers on a GPU
        assert set(fast.layer_kernels.values()) == {"dense"}
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("rows", [1, 3, 40])  # the ELL kernel, then the CSR one
def test_constant_fan_in_layers_compile_to_ell(rows):
    from graphwire.wiring import DNW

    model = nn.Sequential(nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 8))
    constant = sparsify(model, density=0.125, rule=DNW(fan_in="constant"), seed=0).eval()
    any_fan_in = sparsify(model, density=0.125, seed=0).eval()
    fast = graphwire.freeze(constant, kernel="sparse")
    assert fast[0].ell and fast[2].ell  # rows of one length: kept in ELL form
    # compaction drops the first layer's outputs no one reads; each row kept has 6 inputs
    assert fast[0].ell_idx.shape[1] == 6 and bool((fast[0].ell_val != 0).sum(1).eq(6).all())
    assert not graphwire.freeze(any_fan_in, kernel="sparse")[0].ell  # rows of many lengths
    x = torch.randn(rows, 48, generator=torch.Generator().manual_seed(rows))
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), constant(x), rtol=0, atol=ATOL)
