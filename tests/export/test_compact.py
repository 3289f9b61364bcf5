"""compact_channels: dead channels removed exactly where provable, outputs unchanged.

Outputs are compared in float32 with ``atol=1e-5`` on activations of order one (the
constants folded into biases change only the order of the additions).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from graphwire.export import CompactionReport, compact_channels
from graphwire.export._compact import LayerChannels
from graphwire.layers._wired_layers import WiredLayer
from models.resnet import resnet50, resnet_cifar

ATOL = 1e-5


def freeze(model: nn.Module) -> nn.Module:
    """Each wired layer replaced by the plain layer carrying its effective weight (in place)."""
    for name, m in list(model.named_modules()):
        if not isinstance(m, WiredLayer):
            continue
        w = m.effective_weight().detach()
        if isinstance(m, nn.Linear):
            new = nn.Linear(m.in_features, m.out_features, m.bias is not None)
        else:
            dense = next(c for c in (nn.Conv1d, nn.Conv2d) if isinstance(m, c))
            new = dense(
                m.in_channels,
                m.out_channels,
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                m.groups,
                m.bias is not None,
                m.padding_mode,
            )
        assert type(new) in (nn.Linear, nn.Conv1d, nn.Conv2d)
        with torch.no_grad():
            new.weight.copy_(w.reshape(new.weight.shape))
            if m.bias is not None:
                new.bias.copy_(m.bias)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return model


def randomize_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Batch norms with non-trivial statistics and affine terms (so constants are not 0)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 2 - 1)


def check_same(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    a.eval()
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape
    assert torch.allclose(ya, yb, atol=ATOL), float((ya - yb).abs().max())


def layer(report: CompactionReport, name: str) -> LayerChannels:
    return next(r for r in report.layers if r.name == name)


# ---------------------------------------------------------------------------- chains
def test_linear_chain_dead_rows_removed_and_constants_folded():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():
        net[0].weight[[1, 4, 7]] = 0.0
        net[0].bias[[1, 4, 7]] = torch.tensor([0.7, -0.3, 0.2])  # ReLU: 0.7, 0, 0.2
        net[2].weight[[0, 5]] = 0.0
    small, report = compact_channels(net)
    assert [(r.in_after, r.out_after) for r in report.layers] == [(6, 7), (7, 6), (6, 3)]
    assert report.removed == 5 and report.channels_before == 21
    assert report.folded == 4  # the zero constant (ReLU(-0.3)) needs no fold
    assert isinstance(small[0], nn.Linear) and small[0].out_features == 7
    check_same(net, small, torch.randn(16, 6))
    assert net[0].out_features == 10  # the model itself is untouched


class ScalarOps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 5)
        self.b = nn.Linear(5, 2)

    def forward(self, x):
        return self.b(0.5 + 2.0 * torch.relu(self.a(x)))  # scalars on the left


def test_scalar_shifts_and_scales_carry_the_constant():
    net = ScalarOps()
    with torch.no_grad():
        net.a.weight[3] = 0.0
        net.a.bias[3] = -1.0  # relu: 0, then 0.5 + 2 * 0 = 0.5: folded into b's bias
    small, report = compact_channels(net)
    assert small.a.out_features == 4 and small.b.in_features == 4 and report.folded == 1
    check_same(net, small, torch.randn(6, 4))


def test_linear_reader_without_bias_gets_one_for_a_folded_constant():
    net = nn.Sequential(nn.Linear(4, 5), nn.Sigmoid(), nn.Linear(5, 2, bias=False))
    with torch.no_grad():
        net[0].weight[2] = 0.0
    small, report = compact_channels(net)
    assert small[2].in_features == 4 and small[2].bias is not None  # sigmoid(b) != 0
    check_same(net, small, torch.randn(8, 4))


@pytest.mark.parametrize("seed", range(6))
def test_random_conv_chains_remove_exactly_the_dead_channels(seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    widths = torch.randint(4, 12, (4,), generator=gen).tolist()
    mods, expected = [], 0
    convs = []
    for i, (cin, cout) in enumerate(zip([3, *widths[:-1]], widths)):
        kernel = 1 if i else 3  # readers are 1x1: every constant folds exactly
        conv = nn.Conv2d(cin, cout, kernel, stride=1 + (i == 1), bias=bool(seed % 2))
        convs.append(conv)
        mods += [conv, nn.BatchNorm2d(cout), nn.ReLU() if i % 2 else nn.SiLU()]
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 5)]
    net = nn.Sequential(*mods)
    randomize_norms(net, gen)
    with torch.no_grad():
        for conv in convs:
            dead = torch.rand(conv.out_channels, generator=gen) < 0.3
            dead[0] = False  # never every channel
            conv.weight[dead] = 0.0
            expected += int(dead.sum())
    net.eval()
    small, report = compact_channels(net)
    assert report.removed == expected
    for conv, row in zip(convs, report.layers):
        alive = int((conv.weight.reshape(conv.out_channels, -1) != 0).any(1).sum())
        assert row.out_after == alive
    check_same(net, small, torch.randn(4, 3, 11, 11))


@pytest.mark.parametrize(
    "padding, padding_mode, removed",
    [(1, "zeros", False), (0, "zeros", True), (1, "reflect", True), (1, "replicate", True)],
)
def test_a_constant_read_through_zero_padding_keeps_its_channel(padding, padding_mode, removed):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3, padding=padding, padding_mode=padding_mode),
    ).eval()
    with torch.no_grad():
        net[0].weight[2] = 0.0
        net[0].bias[2] = 0.5  # BN with default statistics, then ReLU: a constant > 0
    small, report = compact_channels(net)
    assert small[0].out_channels == (5 if removed else 6)
    assert report.kept_constant == (0 if removed else 1)
    assert report.folded == (1 if removed else 0)
    check_same(net, small, torch.randn(2, 3, 10, 10))


def test_a_zero_constant_is_removed_even_before_a_padded_conv():
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1)
    )
    with torch.no_grad():
        net[0].weight[[1, 3]] = 0.0
    small, report = compact_channels(net)
    assert small[0].out_channels == 4 and small[2].in_channels == 4
    assert report.kept_constant == 0 and report.folded == 0
    check_same(net, small, torch.randn(2, 3, 7, 7))


def test_average_pool_with_padding_keeps_a_nonzero_constant():
    def build(pad):
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 5, 1),
            nn.AvgPool2d(3, 1, padding=pad, count_include_pad=True),
            nn.Conv2d(5, 2, 1),
        )
        with torch.no_grad():
            net[0].weight[1] = 0.0
            net[0].bias[1] = 1.0
        return net

    kept = compact_channels(build(1))
    assert kept[1].kept_constant == 1 and kept[0][0].out_channels == 5
    check_same(build(1), kept[0], torch.randn(2, 3, 6, 6))
    removed = compact_channels(build(0))
    assert removed[0][0].out_channels == 4
    check_same(build(0), removed[0], torch.randn(2, 3, 6, 6))


def test_an_input_channel_no_reader_uses_is_removed_from_its_producer():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 2, 1),
    )
    randomize_norms(net, torch.Generator().manual_seed(1))
    with torch.no_grad():
        net[3].weight[:, [0, 6]] = 0.0  # channels 0 and 6 are alive but read by nobody
    net.eval()
    small, report = compact_channels(net)
    assert small[0].out_channels == 6 and small[1].num_features == 6
    assert small[3].in_channels == 6 and report.removed == 2
    check_same(net, small, torch.randn(2, 3, 9, 9))


def test_removal_cascades_to_the_next_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    with torch.no_grad():
        net[0].weight[3] = 0.0
        net[0].bias[3] = 0.4
        # output 1 of the second layer reads only the constant channel 3: once that is
        # folded, output 1 is a constant itself
        net[2].weight[1] = 0.0
        net[2].weight[1, 3] = 2.0
    small, report = compact_channels(net)
    assert (small[0].out_features, small[2].out_features) == (5, 5)
    assert report.removed == 2 and report.folded == 2
    check_same(net, small, torch.randn(8, 5))


def test_stride_and_dilation_convs_and_flatten_into_linear():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, dilation=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 6, 1, stride=2),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 4),
    )
    randomize_norms(net, torch.Generator().manual_seed(2))
    with torch.no_grad():
        net[0].weight[[0, 5]] = 0.0
        net[3].weight[[2]] = 0.0
        net[3].bias[2] = 0.3
    net.eval()
    small, report = compact_channels(net)
    assert small[0].out_channels == 6 and small[3].out_channels == 5
    assert small[7].in_features == 5 * 25  # one channel: its 5 x 5 block of features
    assert report.removed == 3
    check_same(net, small, torch.randn(2, 3, 21, 21))


def test_grouped_convolutions_are_left_as_they_are():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=4), nn.ReLU(), nn.Conv2d(8, 4, 1)
    )
    with torch.no_grad():
        net[0].weight[1] = 0.0  # read by the grouped conv
        net[2].weight[3] = 0.0  # produced by it
    small, report = compact_channels(net)
    assert [(r.in_after, r.out_after) for r in report.layers] == [(3, 8), (8, 8), (8, 4)]
    assert any("grouped" in n for n in report.notes)
    check_same(net, small, torch.randn(2, 3, 7, 7))


# ---------------------------------------------------------------------------- residuals
class Block(nn.Module):
    """conv-BN-ReLU-conv-BN, plus an identity or 1x1-conv shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def residual_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        Block(6, 6),
        Block(6, 8, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    randomize_norms(net, torch.Generator().manual_seed(3))
    return net.eval()


def test_residual_channel_dead_on_every_side_is_removed():
    net = residual_net()
    with torch.no_grad():
        net[0].weight[4] = 0.0  # the stem ...
        net[3].conv2.weight[4] = 0.0  # ... and the block's branch: both sides of the add
    small, report = compact_channels(net)
    # the constant reaches block 2's 3x3 conv (zero padding) unless ReLU made it 0
    kept = report.kept_constant
    assert small[0].out_channels == 6 - (1 - kept)
    assert small[3].conv2.out_channels == small[0].out_channels
    assert small[4].shortcut[0].in_channels == small[0].out_channels
    check_same(net, small, torch.randn(2, 3, 8, 8))


def test_residual_channel_dead_on_every_side_and_read_by_1x1_only_is_removed():
    net = residual_net()
    with torch.no_grad():
        net[0].weight[4] = 0.0
        net[3].conv2.weight[4] = 0.0
        net[3].conv1.weight[:, 4] = 0.0  # the 3x3 readers do not use it: only the 1x1
        net[4].conv1.weight[:, 4] = 0.0  # projection reads it, where the constant folds
    small, report = compact_channels(net)
    assert small[0].out_channels == 5 and small[3].bn2.num_features == 5
    assert small[3].conv1.in_channels == 5 and small[4].shortcut[0].in_channels == 5
    assert report.removed == 2
    check_same(net, small, torch.randn(2, 3, 8, 8))


def test_residual_channel_dead_on_one_side_only_is_kept():
    net = residual_net()
    with torch.no_grad():
        net[3].conv2.weight[2] = 0.0  # the branch is dead, the identity side is not
        net[4].conv2.weight[1] = 0.0  # the branch is dead, the projection is not
    small, report = compact_channels(net)
    assert report.removed == 0
    assert [(r.in_after, r.out_after) for r in report.layers] == [
        (r.in_before, r.out_before) for r in report.layers
    ]
    check_same(net, small, torch.randn(2, 3, 8, 8))


def test_downsample_block_both_sides_dead_is_removed():
    net = residual_net()
    with torch.no_grad():
        net[4].conv2.weight[5] = 0.0
        net[4].shortcut[0].weight[5] = 0.0
    small, report = compact_channels(net)
    assert small[4].conv2.out_channels == 7 and small[4].shortcut[0].out_channels == 7
    assert small[4].shortcut[1].num_features == 7 and small[7].in_features == 7
    assert report.removed == 2
    check_same(net, small, torch.randn(2, 3, 8, 8))


@pytest.mark.parametrize("seed", range(8))
def test_random_residual_networks_keep_their_outputs(seed):
    """Dead rows and unused columns everywhere, biases or not: outputs never change."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    widths = [int(w) for w in torch.randint(3, 8, (3,), generator=gen)]
    blocks, cin = [], 4
    for i, w in enumerate(widths):
        blocks.append(Block(cin, w, stride=1 + (i == 1)))
        cin = w
    net = nn.Sequential(
        nn.Conv2d(3, 4, 1, bias=bool(seed % 2)),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        *blocks,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(cin, 3),
    )
    randomize_norms(net, gen)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                rows = torch.rand(m.weight.shape[0], generator=gen) < 0.4
                cols = torch.rand(m.weight.shape[1], generator=gen) < 0.2
                m.weight[rows] = 0.0
                m.weight[:, cols] = 0.0
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
    net.eval()
    small, report = compact_channels(net)
    assert report.traced and not report.notes
    assert report.removed > 0  # the case exercises removal, not only the identity
    assert all(r.in_after <= r.in_before and r.out_after <= r.out_before for r in report.layers)
    check_same(net, small, torch.randn(2, 3, 9, 9))


def test_a_module_registered_under_two_names_and_called_twice_is_left_as_it_is():
    shared = nn.Linear(4, 4)
    net = nn.Sequential(shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        shared.weight[1] = 0.0
    small, report = compact_channels(net)
    assert report.removed == 0 and small[0] is small[2]
    check_same(net, small, torch.randn(3, 4))


# ---------------------------------------------------------------------------- the zoo
def _plant(model, names, channel):
    with torch.no_grad():
        for n in names:
            model.get_submodule(n).weight[channel] = 0.0


def test_cifar_resnet_basic_blocks_compact():
    gen = torch.Generator().manual_seed(0)
    model = freeze(resnet_cifar(depth=8, width=8, density=0.5, seed=0, keep_first_dense=True))
    randomize_norms(model, gen)
    model.eval()
    # stage 2's residual chain (projection shortcut + conv2, no later identity block at
    # depth 8) is read by stage 3's 3x3 conv1 and its 1x1 shortcut
    _plant(model, ["blocks.1.conv2", "blocks.1.shortcut.0"], 3)
    with torch.no_grad():
        model.get_submodule("blocks.2.conv1").weight[:, 3] = 0.0
    small, report = compact_channels(model)
    assert layer(report, "blocks.1.conv2").out_after == 15
    assert layer(report, "blocks.1.shortcut.0").out_after == 15
    assert layer(report, "blocks.2.shortcut.0").in_after == 15
    assert layer(report, "blocks.2.conv1").in_after == 15
    assert report.removed == 2 + sum(  # plus any DNW already left dead or unused at 50%
        r.out_before - r.out_after
        for r in report.layers
        if r.name not in ("blocks.1.conv2", "blocks.1.shortcut.0")
    )
    check_same(model, small, torch.randn(2, 3, 16, 16))


def test_resnet50_bottlenecks_trace_and_compact():
    # the dense network (sparsifying ResNet-50 costs seconds; the CIFAR test covers that)
    model = resnet50(sparse=False, seed=0, num_classes=10)
    randomize_norms(model, torch.Generator().manual_seed(0))
    model.eval()
    _plant(model, ["blocks.0.conv2"], [2, 9])  # read by the 1x1 conv3: folded exactly
    with torch.no_grad():  # BN then ReLU turn the zeros into positive constants
        bn2 = model.get_submodule("blocks.0.bn2")
        bn2.running_mean[[2, 9]] = 0.0
        bn2.bias[[2, 9]] = torch.tensor([0.5, 1.5])
    before = copy.deepcopy(model)
    small, report = compact_channels(model)
    assert report.traced and layer(report, "blocks.0.conv2").out_after == 62
    assert layer(report, "blocks.0.conv3").in_after == 62
    assert small.get_submodule("blocks.0.bn2").num_features == 62
    assert report.folded >= 2
    check_same(before, small, torch.randn(1, 3, 64, 64))


# ---------------------------------------------------------------------------- left alone
class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if h.sum() > 0:  # data-dependent control flow: does not trace
            h = h * 2
        return self.b(h)


def test_an_untraceable_model_comes_back_unchanged_with_a_note():
    net = Branchy()
    with torch.no_grad():
        net.a.weight[1] = 0.0
    small, report = compact_channels(net)
    assert not report.traced and report.removed == 0
    assert small is not net and small.a.out_features == 6
    assert any("does not trace" in n for n in report.notes)
    assert "did not trace" in str(report)
    check_same(net, small, torch.randn(3, 4))


def test_an_untraceable_submodule_is_kept_whole_and_the_rest_compacts():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 4), Branchy())
    with torch.no_grad():
        net[0].weight[2] = 0.0  # removable: read by net[2]
        net[3].a.weight[1] = 0.0  # inside the untraceable block: kept
    small, report = compact_channels(net)
    assert report.traced and small[0].out_features == 5 and small[3].a.out_features == 6
    assert any(n.startswith("3 (Branchy) does not trace") for n in report.notes)
    check_same(net, small, torch.randn(3, 4))


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)
        self.c = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.c(torch.cat([self.a(x), self.b(x)], 1))


def test_concatenation_is_not_understood_and_left_as_it_is():
    net = Concat()
    with torch.no_grad():
        net.a.weight[0] = 0.0
    small, report = compact_channels(net)
    assert report.removed == 0 and small.a.out_channels == 4
    assert any("cat" in n for n in report.notes)
    check_same(net, small, torch.randn(1, 3, 4, 4))


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(torch.relu(self.a(x)))))


def test_a_layer_called_twice_is_left_as_it_is():
    net = Shared()
    with torch.no_grad():
        net.a.weight[1] = 0.0
    small, report = compact_channels(net)
    assert report.removed == 0
    assert any("more than once" in n for n in report.notes)
    check_same(net, small, torch.randn(3, 4))


def test_model_outputs_and_inputs_keep_their_channels():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 5, 1))
    with torch.no_grad():
        net[2].weight[1] = 0.0  # a dead output channel of the model: its shape stays
        net[0].weight[:, 0] = 0.0  # the model's input channel 0 is unused: it stays
    small, report = compact_channels(net)
    assert report.removed == 0 and small[2].out_channels == 5 and small[0].in_channels == 3


def test_transformer_encoder_is_left_as_it_is():
    layer_ = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    net = nn.Sequential(
        nn.Linear(8, 16), nn.TransformerEncoder(layer_, 1, enable_nested_tensor=False)
    )
    with torch.no_grad():
        net[0].weight[3] = 0.0
    small, report = compact_channels(net)
    assert report.removed == 0 and small[0].out_features == 16
    assert any("TransformerEncoder" in n for n in report.notes)
    check_same(net, small, torch.randn(2, 5, 8))


def test_report_table_lists_every_layer_and_the_total():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight[0] = 0.0
    text = str(compact_channels(net)[1])
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "type", "in", "out"]
    assert lines[2].split() == ["0", "Linear", "4", "3", "->", "2"]
    assert lines[3].split() == ["2", "Linear", "3", "->", "2", "2"]
    assert "total: 1 of 5 output channels removed" in text
