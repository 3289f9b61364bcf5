"""ResNet-50 (v1.5) and a small CIFAR ResNet, sparse-trained with per-weight selection.

Both are plain ResNets turned into wired networks by
:func:`graphwire.layers.sparsify`: every convolution and the classifier become wired
layers at a uniform per-layer rate (the paper's ResNet-50 runs), batch norms stay dense.
"""

from __future__ import annotations

from torch import Tensor, nn

from graphwire import ConfigError
from graphwire.layers import sparsify
from graphwire.wiring import WiringRule
from models._common import budget_kwargs, seeded
from models.registry import register_model

__all__ = ["Bottleneck", "BasicBlock", "ResNet", "resnet50", "resnet_cifar"]


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (carrying the stride, v1.5) -> 1x1 x4, with a projection when shapes change."""

    expansion = 4

    def __init__(self, inp: int, width: int, stride: int = 1):
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(inp, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            if stride != 1 or inp != out
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.shortcut(x))


class BasicBlock(nn.Module):
    """3x3 -> 3x3, with a 1x1 projection when shapes change (CIFAR ResNets)."""

    expansion = 1

    def __init__(self, inp: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(inp, width, 1, stride, bias=False), nn.BatchNorm2d(width))
            if stride != 1 or inp != width
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet: stem, stages of residual blocks, global average pool, linear classifier.

    Args:
        block: :class:`Bottleneck` or :class:`BasicBlock`.
        layers: Blocks per stage.
        widths: Width of each stage.
        num_classes: Classes.
        in_channels: Image channels.
        small_input: CIFAR-size stem (3x3 stride 1, no max pool) instead of ImageNet's
            (7x7 stride 2 and a max pool).
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: list[int],
        widths: list[int],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        stem_width = widths[0]
        if small_input:
            stem = [nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False)]
        else:
            stem = [nn.Conv2d(in_channels, stem_width, 7, 2, 3, bias=False)]
        stem += [nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True)]
        if not small_input:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        inp = stem_width
        for i, (n, width) in enumerate(zip(layers, widths)):
            for j in range(n):
                blocks.append(block(inp, width, 2 if i > 0 and j == 0 else 1))
                inp = width * block.expansion
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inp, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` images -> ``[B, num_classes]`` logits."""
        return self.head(self.blocks(self.stem(x)))


def _wire(model, sparse, rule, density, k, scope, keep_first_dense, seed):
    if not sparse:
        return model
    budget = budget_kwargs(rule, k, None if k is not None else density)
    return sparsify(
        model,
        rule=rule,
        scope=scope,
        keep_first_dense=keep_first_dense,
        inplace=True,
        seed=seed,
        **budget,
    )


@register_model()
def resnet50(
    *,
    rule: str | WiringRule = "dnw",
    density: float = 0.1,
    k: int | None = None,
    scope: str = "layer",
    keep_first_dense: bool = False,
    sparse: bool = True,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    seed: int | None = None,
) -> ResNet:
    """ResNet-50 v1.5 with every conv and the classifier wired at ``density`` per layer.

    ``sparse=False`` gives the dense network (4.1G multiply-adds, 25.5M weights).
    """
    with seeded(seed):
        model = ResNet(
            Bottleneck,
            [3, 4, 6, 3],
            [64, 128, 256, 512],
            num_classes=num_classes,
            in_channels=in_channels,
            small_input=small_input,
        )
    return _wire(model, sparse, rule, density, k, scope, keep_first_dense, seed)


@register_model()
def resnet_cifar(
    *,
    depth: int = 20,
    width: int = 16,
    rule: str | WiringRule = "dnw",
    density: float = 0.1,
    k: int | None = None,
    scope: str = "layer",
    keep_first_dense: bool = False,
    sparse: bool = True,
    num_classes: int = 10,
    in_channels: int = 3,
    seed: int | None = None,
) -> ResNet:
    """A CIFAR ResNet (depth ``6n + 2``, widths ``width``, 2x, 4x), wired per layer."""
    if (depth - 2) % 6:
        raise ConfigError(f"depth must be 6n + 2 (8, 14, 20, 32, ...); got {depth}.")
    n = (depth - 2) // 6
    with seeded(seed):
        model = ResNet(
            BasicBlock,
            [n, n, n],
            [width, 2 * width, 4 * width],
            num_classes=num_classes,
            in_channels=in_channels,
            small_input=True,
        )
    return _wire(model, sparse, rule, density, k, scope, keep_first_dense, seed)
