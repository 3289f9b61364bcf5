"""Folding inference BatchNorms into the convolutions they read."""

import pytest
import torch
from torch import nn

import graphwire
from graphwire.export._fold import fold_batchnorms
from graphwire.layers import sparsify


def with_statistics(net, seed):
    """``net`` in eval mode with non-trivial running statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            if m.affine:
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.num_features, generator=gen))
                    m.bias.copy_(torch.randn(m.num_features, generator=gen))
    return net.eval()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(
    "conv,bn,shape",
    [
        (nn.Conv1d(3, 5, 3), nn.BatchNorm1d, (2, 3, 9)),
        (nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.BatchNorm2d, (2, 3, 9, 9)),
        (nn.Conv3d(3, 5, 3), nn.BatchNorm3d, (2, 3, 5, 5, 5)),
    ],
    ids=["1d", "2d", "3d"],
)
def test_folded_convolutions_compute_the_same(conv, bn, shape, affine, bias):
    layer = type(conv)(3, 5, 3, bias=bias)
    net = with_statistics(nn.Sequential(layer, bn(5, affine=affine), nn.ReLU()), 0)
    x = torch.randn(*shape)
    expected = net(x)
    assert fold_batchnorms(net) == ["1"]
    assert isinstance(net[1], nn.Identity) and net[0].bias is not None
    torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)


def test_zero_weights_stay_zero():
    net = with_statistics(nn.Sequential(nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6)), 1)
    with torch.no_grad():
        net[0].weight[net[0].weight.abs() < 0.1] = 0.0
    zeros = net[0].weight == 0
    fold_batchnorms(net)
    assert torch.equal(net[0].weight == 0, zeros)


class TwoReaders(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y  # the convolution's output is read twice


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(self.conv(x)))  # one convolution called twice


IMAGE, VECTOR = (4, 3, 5, 5), (4, 3)


@pytest.mark.parametrize(
    "make,shape",
    [
        (TwoReaders, IMAGE),
        (Twice, IMAGE),
        (
            lambda: nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3, track_running_stats=False)),
            IMAGE,
        ),
        (lambda: nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)), VECTOR),
        (lambda: nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.BatchNorm2d(3)), IMAGE),
    ],
    ids=["two-readers", "conv-called-twice", "batch-statistics", "after-linear", "not-adjacent"],
)
def test_left_alone_where_folding_would_change_the_result(make, shape):
    net = with_statistics(make(), 2)
    x = torch.randn(*shape)
    expected = net(x)
    assert fold_batchnorms(net) == []
    torch.testing.assert_close(net(x), expected)


def test_training_mode_batchnorms_are_not_folded():
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))  # training mode
    assert fold_batchnorms(net) == []


def test_compile_folds_the_batchnorms_of_a_sparsified_network():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
    )
    model = with_statistics(sparsify(net, density=0.2, seed=0), 3)
    x = torch.randn(2, 3, 10, 10)
    expected = model(x)
    fast = graphwire.freeze(model, kernel="sparse")
    assert fast.folded_batchnorms == ["1", "4"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), expected, rtol=1e-4, atol=1e-4)
