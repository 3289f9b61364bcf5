"""MobileNetV1-like DNW graphs (Table 1 of the paper) and plain MobileNetV1.

The DNW network keeps MobileNetV1's stem and head and replaces its 13 separable blocks
by five *stage graphs*. A stage ``(in -> out, stride, blocks)`` has ``in`` input nodes,
which apply BN -> ReLU -> depthwise 3x3 with the stage's stride, then ``blocks`` groups
of ``out`` nodes; edges run from the input nodes to every group and from each group to
every later group. Inner groups apply BN -> ReLU -> depthwise 3x3; the last group is the
stage's output and the next stage's input. Nodes keep MobileNetV1's x1 width; a model
``x d`` keeps, in each stage, as many edges as MobileNetV1 ``x d`` has pointwise weights
there, about ``d^2 (in * out + (blocks - 1) * out^2)`` (see :func:`stage_budget`),
selected by one top-k per stage.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphwire import WiredGraph
from graphwire.execution import DepthwiseConv
from graphwire.graph import layered_dag
from graphwire.layers import WiredLinear
from graphwire.wiring import WiringRule, make_rule
from models._common import seeded
from models.registry import register_model

__all__ = [
    "STAGES",
    "WIDTHS",
    "BatchNormDepthwise",
    "stage_budget",
    "MobileNetGraph",
    "MobileNetV1",
    "dnw_mobilenet",
    "mobilenet_v1",
]

#: The stages of MobileNetV1: (in channels, out channels, stride, blocks).
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (32, 64, 1, 1),
    (64, 128, 2, 2),
    (128, 256, 2, 2),
    (256, 512, 2, 6),
    (512, 1024, 2, 2),
)

#: The widths ``d`` of the paper's MobileNetV1-like graphs, by name suffix.
WIDTHS = {"x015": 0.15, "x0225": 0.225, "x03": 0.3, "x049": 0.49}


class BatchNormDepthwise(DepthwiseConv):
    """Batch norm -> ReLU -> depthwise 3x3 for any subset of nodes, one of each per node.

    The norm keeps running statistics per node, updated only for the nodes a call runs
    on, so it behaves as ``nn.BatchNorm2d`` over the nodes while the executor runs nodes
    in groups.

    Args:
        num_nodes: Number of nodes.
        stride: Stride of the depthwise conv.
        momentum: Running-statistics momentum, as in ``nn.BatchNorm2d``.
        eps: Added to the variance.

    Example:
        >>> import torch
        >>> from models.mobilenet import BatchNormDepthwise
        >>> BatchNormDepthwise(6, stride=2)(torch.randn(2, 3, 8, 8), torch.tensor([0, 2, 4])).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(self, num_nodes: int, stride: int = 1, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__(num_nodes, stride=stride, norm=True)
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(num_nodes))
        self.register_buffer("running_var", torch.ones(num_nodes))

    def forward(self, x: Tensor, nodes: Tensor | None = None) -> Tensor:  # noqa: D102
        idx = torch.arange(x.shape[1], device=x.device) if nodes is None else nodes
        if self.training:
            mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)  # [n]
            with torch.no_grad():
                n = x.numel() // x.shape[1]
                m = self.momentum
                self.running_mean[idx] = (1 - m) * self.running_mean[idx] + m * mean
                unbiased = var * n / max(n - 1, 1)
                self.running_var[idx] = (1 - m) * self.running_var[idx] + m * unbiased
        else:
            mean, var = self.running_mean[idx], self.running_var[idx]
        scale = self.norm_weight[idx] * torch.rsqrt(var + self.eps)  # [n]
        shift = self.norm_bias[idx] - mean * scale
        x = torch.relu(x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1))
        return F.conv2d(
            x,
            self.conv_weight[idx],
            stride=self.stride,
            padding=self.kernel_size // 2,
            groups=x.shape[1],
        )


def stage_budget(inp: int, oup: int, blocks: int, width: float) -> int:
    """Edges of a stage graph ``x width``: MobileNetV1 ``x width``'s pointwise weights there.

    MobileNetV1 ``x d`` has ``int(c * d)`` channels where MobileNetV1 has ``c``, so the
    stage's pointwise convolutions hold ``i * o + (blocks - 1) * o^2`` weights with
    ``i = int(in * d)`` and ``o = int(out * d)``, about ``d^2 (in * out + (blocks - 1)
    out^2)``. Counting the exact figure reproduces the paper's 55.7M multiply-adds for
    the random graph ``x0.225``; the rounded formula gives 0.8% more.

    Example:
        >>> from models.mobilenet import stage_budget
        >>> stage_budget(256, 512, 6, 0.25)  # 64 * 128 + 5 * 128 * 128
        90112
    """
    i, o = max(1, int(inp * width)), max(1, int(oup * width))
    return i * o + (blocks - 1) * o * o


def _stage(inp: int, oup: int, stride: int, blocks: int, *, rule, k, seed) -> WiredGraph:
    graph = layered_dag([inp] + [oup] * blocks)
    inner = functools.lru_cache(maxsize=None)(BatchNormDepthwise)  # one op for every inner group
    node_op = {name: "identity" for name in graph.group_names}
    for name in graph.group_names[1:-1]:
        node_op[name] = inner
    return WiredGraph(
        graph,
        node_op=node_op,
        input_op=lambda n: BatchNormDepthwise(n, stride=stride),
        rule=rule,
        scope="global",
        mode="dag",
        seed=seed,
        **({"k": k} if make_rule(rule).uses_budget else {}),
    )


class MobileNetGraph(nn.Module):
    """The MobileNetV1-like DNW network: stem conv, five stage graphs, BN-ReLU-pool-linear.

    Args:
        width: ``d``: each stage keeps MobileNetV1 ``x d``'s pointwise weights as edges.
        rule: Wiring rule name or instance (the same for every stage).
        small: Make the 1024 -> classes classifier a wired layer keeping a fraction
            ``width`` of its weights (the paper's "DNW-Small").
        num_classes: Classes.
        in_channels: Image channels.
        image_size: Image side; at 64 or less the stem keeps the resolution (CIFAR).
        node_scale: Scale of every stage's node count (1: MobileNetV1's x1 width).
        seed: Seed of every initial weight and random graph.
    """

    def __init__(
        self,
        width: float,
        *,
        rule: str | WiringRule = "dnw",
        small: bool = False,
        num_classes: int = 1000,
        in_channels: int = 3,
        image_size: int = 224,
        node_scale: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        stages = [
            (max(1, round(i * node_scale)), max(1, round(o * node_scale)), s, b)
            for i, o, s, b in STAGES
        ]
        with seeded(seed):
            stride = 2 if image_size > 64 else 1
            self.stem = nn.Conv2d(in_channels, stages[0][0], 3, stride, 1, bias=False)
            self.stages = nn.Sequential(
                *(
                    _stage(
                        i,
                        o,
                        s,
                        b,
                        rule=rule,
                        k=stage_budget(i, o, b, width),
                        seed=None if seed is None else seed + 1 + n,
                    )
                    for n, (i, o, s, b) in enumerate(stages)
                )
            )
            last = stages[-1][1]
            if small:
                budget = {"density": width} if make_rule(rule).uses_budget else {}
                classifier = WiredLinear(last, num_classes, rule=rule, seed=seed, **budget)
            else:
                classifier = nn.Linear(last, num_classes)
            self.head = nn.Sequential(
                nn.BatchNorm2d(last),
                nn.ReLU(inplace=True),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                classifier,
            )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` images -> ``[B, num_classes]`` logits."""
        z = self.stem(x)  # [B, 32, H/2, W/2]
        z = self.stages(z)  # [B, 1024, H/32, W/32]
        return self.head(z)


class MobileNetV1(nn.Module):
    """Plain MobileNetV1 (Howard et al., 2017) at width ``d``: the hand-engineered baseline.

    Args:
        width: Width multiplier ``d`` (channels ``int(c * d)``).
        num_classes: Classes.
        in_channels: Image channels.
        image_size: Image side; at 64 or less the stem keeps the resolution (CIFAR).
        seed: Seed of the initial weights.
    """

    def __init__(
        self,
        width: float = 0.25,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        image_size: int = 224,
        seed: int | None = None,
    ) -> None:
        super().__init__()

        def c(ch: int) -> int:
            return max(1, int(ch * width))

        def conv_bn(inp: int, oup: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
            conv = nn.Conv2d(inp, oup, k, stride, k // 2, groups=groups, bias=False)
            return [conv, nn.BatchNorm2d(oup), nn.ReLU(inplace=True)]

        with seeded(seed):
            layers = conv_bn(in_channels, c(32), 3, 2 if image_size > 64 else 1)
            for inp, oup, stride, blocks in STAGES:
                for b in range(blocks):
                    i = inp if b == 0 else oup
                    layers += conv_bn(c(i), c(i), 3, stride if b == 0 else 1, groups=c(i))
                    layers += conv_bn(c(i), c(oup), 1, 1)
            self.features = nn.Sequential(*layers)
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c(1024), num_classes)
            )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` images -> ``[B, num_classes]`` logits."""
        return self.head(self.features(x))


def dnw_mobilenet(
    *,
    width: float = 0.225,
    rule: str | WiringRule = "dnw",
    small: bool = False,
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int = 224,
    node_scale: float = 1.0,
    seed: int | None = None,
) -> MobileNetGraph:
    """A MobileNetV1-like DNW graph ``x width`` (see :class:`MobileNetGraph`)."""
    return MobileNetGraph(
        width,
        rule=rule,
        small=small,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        node_scale=node_scale,
        seed=seed,
    )


@register_model("mobilenet_v1_x025")
def mobilenet_v1(
    *,
    width: float = 0.25,
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int = 224,
    seed: int | None = None,
) -> MobileNetV1:
    """Plain MobileNetV1 x0.25 (``width`` overridable): 41M multiply-adds, 0.47M parameters."""
    return MobileNetV1(
        width, num_classes=num_classes, in_channels=in_channels, image_size=image_size, seed=seed
    )


def _register_variants() -> None:
    for suffix, width in WIDTHS.items():
        for prefix, kwargs in (
            ("dnw_mobilenet", {}),
            ("dnw_mobilenet_small", {"small": True}),
            ("random_mobilenet", {"rule": "random"}),
        ):
            variant = functools.partial(dnw_mobilenet, width=width, **kwargs)
            variant.__doc__ = f"{prefix} {suffix}: width {width}, settings {kwargs or 'DNW'}."
            register_model(f"{prefix}_{suffix}")(variant)


_register_variants()
