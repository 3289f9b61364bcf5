"""The paper's tiny CIFAR-10 classifiers: static, discrete-time and continuous-time graphs.

Besides the image models (``tiny_*``) the module has the same three networks for 1-D
signals such as MNIST-1D: ``tiny1d_*`` (the paper's structure in 1-D: a 1-D stem, nodes
running instance norm -> ReLU -> depthwise 3-tap conv, an average-pooled read-out) and
``vector_*`` (every sample of the signal an input node, scalar ReLU nodes).

A stem turns the image into ``stem_channels`` feature maps (32 at 8 x 8 for a 32 x 32
input), which are the input nodes of an ``num_nodes``-node channel graph; every node
runs instance norm -> ReLU -> depthwise 3x3 on the weighted sum of its inputs, one
global top-k keeps ``k`` edges, and the last ``readout`` nodes are average-pooled into a
linear classifier. Graph and node parameters: ``k + 9 * num_nodes`` (39,200 at the
paper's sizes).
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from graphwire import ChannelGraph, ConfigError, ODESolver, WiredGraph
from graphwire.graph import complete_digraph, layered_dag
from graphwire.wiring import WiringRule
from models._common import budget_kwargs, seeded
from models.registry import register_model

__all__ = [
    "TinyClassifier",
    "tiny_stem",
    "stem_strides",
    "static_graph",
    "tiny_static",
    "tiny_discrete",
    "tiny_continuous",
    "tiny_stem1d",
    "tiny1d_static",
    "tiny1d_discrete",
    "tiny1d_continuous",
    "VectorClassifier",
    "vector_static",
    "vector_discrete",
    "vector_continuous",
]


def stem_strides(image_size: int, feature_size: int = 8) -> tuple[int, int]:
    """Strides of the stem's two 3x3 convolutions: halve until ``feature_size`` (at most twice).

    Example:
        >>> from models.tiny import stem_strides
        >>> stem_strides(32), stem_strides(16), stem_strides(8)
        ((2, 2), (2, 1), (1, 1))
    """
    halvings = min(2, max(0, round(math.log2(max(image_size, 1) / feature_size))))
    return (2 if halvings >= 1 else 1, 2 if halvings >= 2 else 1)


def tiny_stem(
    in_channels: int, out_channels: int, strides: tuple[int, int] = (2, 2)
) -> nn.Sequential:
    """Conv 3x3 (in -> out/2) -> BN -> ReLU -> depthwise 3x3 -> conv 1x1 (-> out) -> BN."""
    hidden = max(out_channels // 2, 1)
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, strides[0], 1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, strides[1], 1, groups=hidden, bias=False),
        nn.Conv2d(hidden, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def static_graph(num_nodes: int, inputs: int, readout: int, blocks: int = 4) -> ChannelGraph:
    """The static tiny graph: ``inputs`` nodes, then ``blocks`` equal blocks.

    Each block is wired to every later block; the last ``readout`` nodes are the outputs.

    Example:
        >>> from models.tiny import static_graph
        >>> g = static_graph(800, 32, 100)
        >>> g.num_edges, g.outputs.numel()  # 32*768 + 192*576 + 192*384 + 192*192
        (245760, 100)
    """
    rest = num_nodes - inputs
    if rest < blocks or readout > rest:
        raise ConfigError(
            f"num_nodes={num_nodes} leaves {rest} nodes after the {inputs} input nodes; need at "
            f"least blocks={blocks} and readout={readout}. Raise num_nodes."
        )
    sizes = [inputs] + [rest // blocks + (1 if i < rest % blocks else 0) for i in range(blocks)]
    layered = layered_dag(sizes)
    return ChannelGraph(
        layered.edge_index,
        num_nodes,
        inputs=range(inputs),
        outputs=range(num_nodes - readout, num_nodes),
        groups={
            name: (layered.group_id == i).nonzero().flatten()
            for i, name in enumerate(layered.group_names)
        },
    )


class TinyClassifier(nn.Module):
    """Stem -> wired channel graph -> average pool over the read-out nodes -> linear.

    Images by default; given ``length`` instead of ``image_size`` it is the same network
    for 1-D signals, every 2-D part made 1-D (the stem's convolutions, the node operation
    ``"conv1d"``: instance norm -> ReLU -> depthwise 3-tap conv, and the pool).

    Args:
        graph: The channel graph; its inputs take the stem's channels, its outputs are
            read out.
        mode: ``"dag"``, ``"discrete"`` or ``"continuous"``.
        rule: Wiring rule name or instance.
        budget: ``{"k": ...}`` or ``{"density": ...}`` (empty for rules without one).
        num_classes: Classes.
        in_channels: Image (or signal) channels.
        image_size: Image side; the stem halves it down to 8 (at most twice).
        length: Signal length, for 1-D signals instead of images; the stem halves it
            down to 10 (at most twice).
        steps: Time steps in ``mode="discrete"``.
        solver: ODE solver in ``mode="continuous"``.
        seed: Seed of every initial weight and of a random graph.
    """

    def __init__(
        self,
        graph: ChannelGraph,
        *,
        mode: str,
        rule: str | WiringRule,
        budget: dict[str, Any],
        num_classes: int,
        in_channels: int,
        image_size: int | None = None,
        length: int | None = None,
        steps: int = 5,
        solver: ODESolver | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if (image_size is None) == (length is None):
            raise ConfigError(
                f"give exactly one of image_size (images) or length (1-D signals); got "
                f"image_size={image_size!r}, length={length!r}."
            )
        signals = length is not None
        node_op = "conv1d" if signals else "conv"
        pool = nn.AdaptiveAvgPool1d(1) if signals else nn.AdaptiveAvgPool2d(1)
        n_in = graph.inputs.numel()
        with seeded(seed):
            if signals:
                self.stem = tiny_stem1d(in_channels, n_in, stem_strides(length, 10))
            else:
                self.stem = tiny_stem(in_channels, n_in, stem_strides(image_size))
            # In the static graph the input nodes run their own node operation on the stem's
            # maps (every node has its own kernel); in the dynamic graphs they are updated
            # by the same dynamics as every other node.
            self.graph_net = WiredGraph(
                graph,
                node_op=node_op,
                input_op=node_op if mode == "dag" else "identity",
                rule=rule,
                scope="global",
                mode=mode,
                steps=steps,
                solver=solver,
                seed=seed,
                **budget,
            )
            self.head = nn.Sequential(
                pool, nn.Flatten(), nn.Linear(graph.outputs.numel(), num_classes)
            )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_channels, H, W]`` images (or ``[B, in_channels, L]``) -> logits."""
        z = self.stem(x)  # [B, n_inputs, h, w]
        z = self.graph_net(z)  # [B, readout, h, w]
        return self.head(z)  # [B, num_classes]


@register_model()
def tiny_static(
    *,
    rule: str | WiringRule = "dnw",
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    num_nodes: int = 800,
    k: int | None = None,
    density: float | None = None,
    stem_channels: int = 32,
    readout: int = 100,
    blocks: int = 4,
    seed: int | None = None,
) -> TinyClassifier:
    """The static tiny classifier: blocks 32, 192, 192, 192, 192; k = 32,000 (13%).

    Example:
        >>> import torch
        >>> from models import create_model
        >>> net = create_model("tiny_static", in_channels=1, image_size=8, num_nodes=40,
        ...                    k=200, stem_channels=8, readout=8, seed=0)
        >>> net(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    graph = static_graph(num_nodes, stem_channels, readout, blocks)
    return TinyClassifier(
        graph,
        mode="dag",
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_k=_default_k(num_nodes)),
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        seed=seed,
    )


def _default_k(num_nodes: int) -> int:
    """The paper's 32,000 edges for 800 nodes: 5% of the ``N^2`` entries."""
    return max(1, round(0.05 * num_nodes * num_nodes))


@register_model()
def tiny_discrete(
    *,
    rule: str | WiringRule = "dnw",
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    num_nodes: int = 800,
    k: int | None = None,
    density: float | None = None,
    stem_channels: int = 32,
    readout: int = 100,
    steps: int = 5,
    seed: int | None = None,
) -> TinyClassifier:
    """The discrete-time tiny classifier: ``steps`` weight-tied steps over the complete digraph."""
    graph = complete_digraph(num_nodes, inputs=stem_channels, outputs=readout)
    return TinyClassifier(
        graph,
        mode="discrete",
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_k=_default_k(num_nodes)),
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        steps=steps,
        seed=seed,
    )


@register_model()
def tiny_continuous(
    *,
    rule: str | WiringRule = "dnw",
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    num_nodes: int = 800,
    k: int | None = None,
    density: float | None = None,
    stem_channels: int = 32,
    readout: int = 100,
    method: str = "dopri5",
    rtol: float = 1e-3,
    atol: float = 1e-3,
    t1: float = 1.0,
    adjoint: bool = False,
    solver_options: dict[str, Any] | None = None,
    seed: int | None = None,
) -> TinyClassifier:
    """The continuous-time tiny classifier: ``dZ/dt = f(A Z)`` over ``[0, t1]`` (dopri5)."""
    graph = complete_digraph(num_nodes, inputs=stem_channels, outputs=readout)
    solver = ODESolver(method, rtol, atol, t1, adjoint, solver_options)
    return TinyClassifier(
        graph,
        mode="continuous",
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_k=_default_k(num_nodes)),
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        solver=solver,
        seed=seed,
    )


# ---------------------------------------------------------------------- 1-D signals
def tiny_stem1d(
    in_channels: int, out_channels: int, strides: tuple[int, int] = (2, 2)
) -> nn.Sequential:
    """1-D stem: conv 3 (in -> out/2) -> BN -> ReLU -> depthwise conv 3 -> conv 1 (-> out) -> BN.

    Example:
        >>> import torch
        >>> from models.tiny import tiny_stem1d
        >>> tiny_stem1d(1, 16)(torch.randn(2, 1, 40)).shape
        torch.Size([2, 16, 10])
    """
    hidden = max(out_channels // 2, 1)
    return nn.Sequential(
        nn.Conv1d(in_channels, hidden, 3, strides[0], 1, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv1d(hidden, hidden, 3, strides[1], 1, groups=hidden, bias=False),
        nn.Conv1d(hidden, out_channels, 1, bias=False),
        nn.BatchNorm1d(out_channels),
    )


@register_model()
def tiny1d_static(
    *,
    rule: str | WiringRule = "dnw",
    num_classes: int = 10,
    in_channels: int = 1,
    length: int = 40,
    num_nodes: int = 200,
    k: int | None = None,
    density: float | None = None,
    stem_channels: int = 32,
    readout: int = 32,
    blocks: int = 4,
    seed: int | None = None,
) -> TinyClassifier:
    """The static tiny classifier for 1-D signals (default: 200 nodes, 5% of the candidates).

    Example:
        >>> import torch
        >>> from models import create_model
        >>> net = create_model("tiny1d_static", num_nodes=40, stem_channels=8, readout=8,
        ...                    density=0.1, seed=0)
        >>> net(torch.randn(2, 1, 40)).shape
        torch.Size([2, 10])
    """
    graph = static_graph(num_nodes, stem_channels, readout, blocks)
    return TinyClassifier(
        graph,
        mode="dag",
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_density=0.05),
        num_classes=num_classes,
        in_channels=in_channels,
        length=length,
        seed=seed,
    )


@register_model()
def tiny1d_discrete(
    *,
    rule: str | WiringRule = "dnw",
    num_classes: int = 10,
    in_channels: int = 1,
    length: int = 40,
    num_nodes: int = 200,
    k: int | None = None,
    density: float | None = None,
    stem_channels: int = 32,
    readout: int = 32,
    steps: int = 3,
    seed: int | None = None,
) -> TinyClassifier:
    """The discrete-time tiny classifier for 1-D signals: weight-tied steps, complete digraph."""
    graph = complete_digraph(num_nodes, inputs=stem_channels, outputs=readout)
    return TinyClassifier(
        graph,
        mode="discrete",
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_density=0.05),
        num_classes=num_classes,
        in_channels=in_channels,
        length=length,
        steps=steps,
        seed=seed,
    )


@register_model()
def tiny1d_continuous(
    *,
    rule: str | WiringRule = "dnw",
    num_classes: int = 10,
    in_channels: int = 1,
    length: int = 40,
    num_nodes: int = 200,
    k: int | None = None,
    density: float | None = None,
    stem_channels: int = 32,
    readout: int = 32,
    method: str = "rk4",
    rtol: float = 1e-3,
    atol: float = 1e-3,
    t1: float = 1.0,
    adjoint: bool = False,
    solver_options: dict[str, Any] | None = None,
    seed: int | None = None,
) -> TinyClassifier:
    """The continuous-time tiny classifier for 1-D signals (default: one fixed RK4 step)."""
    graph = complete_digraph(num_nodes, inputs=stem_channels, outputs=readout)
    if solver_options is None and method == "rk4":
        solver_options = {"step_size": t1}
    solver = ODESolver(method, rtol, atol, t1, adjoint, solver_options)
    return TinyClassifier(
        graph,
        mode="continuous",
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_density=0.05),
        num_classes=num_classes,
        in_channels=in_channels,
        length=length,
        solver=solver,
        seed=seed,
    )


class VectorClassifier(nn.Module):
    """Vector nodes: every sample of the signal an input node, scalar nodes, a linear read-out.

    The signal ``[B, C, L]`` is flattened into ``C * L`` input nodes; every other node
    computes ``relu(b_v + sum of w_uv z_u)`` (``node_op="relu"``), and the last
    ``readout`` nodes feed a linear classifier. No stem: the wiring reaches the data
    itself.

    Args:
        graph: The channel graph, with ``C * L`` input nodes.
        mode: ``"dag"``, ``"discrete"`` or ``"continuous"``.
        rule: Wiring rule name or instance.
        budget: ``{"k": ...}`` or ``{"density": ...}`` (empty for rules without one).
        num_classes: Classes.
        steps: Time steps in ``mode="discrete"``.
        solver: ODE solver in ``mode="continuous"``.
        seed: Seed of every initial weight and of a random graph.
    """

    def __init__(
        self,
        graph: ChannelGraph,
        *,
        mode: str,
        rule: str | WiringRule,
        budget: dict[str, Any],
        num_classes: int,
        steps: int = 3,
        solver: ODESolver | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        with seeded(seed):
            self.graph_net = WiredGraph(
                graph,
                node_op="relu",
                rule=rule,
                scope="global",
                mode=mode,
                steps=steps,
                solver=solver,
                seed=seed,
                **budget,
            )
            self.head = nn.Linear(graph.outputs.numel(), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, L]`` signals (or ``[B, C * L]`` vectors) -> ``[B, num_classes]`` logits."""
        return self.head(self.graph_net(x.flatten(1)))


def _vector_inputs(in_channels: int, length: int, num_nodes: int, readout: int) -> int:
    inputs = in_channels * length
    if num_nodes - inputs < readout:
        raise ConfigError(
            f"num_nodes={num_nodes} leaves {num_nodes - inputs} nodes after the {inputs} input "
            f"nodes (one per signal sample); need at least readout={readout}. Raise num_nodes."
        )
    return inputs


@register_model()
def vector_static(
    *,
    rule: str | WiringRule = "dnw",
    num_classes: int = 10,
    in_channels: int = 1,
    length: int = 40,
    num_nodes: int = 200,
    k: int | None = None,
    density: float | None = None,
    readout: int = 40,
    blocks: int = 4,
    seed: int | None = None,
) -> VectorClassifier:
    """Static vector-node classifier: the signal's samples, then ``blocks`` blocks (layered DAG).

    Example:
        >>> import torch
        >>> from models import create_model
        >>> net = create_model("vector_static", seed=0)
        >>> net(torch.randn(2, 1, 40)).shape, int(net.graph_net.edge_mask.sum())
        (torch.Size([2, 10]), 800)
    """
    inputs = _vector_inputs(in_channels, length, num_nodes, readout)
    graph = static_graph(num_nodes, inputs, readout, blocks)
    return VectorClassifier(
        graph,
        mode="dag",
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_density=0.05),
        num_classes=num_classes,
        seed=seed,
    )


@register_model()
def vector_discrete(
    *,
    rule: str | WiringRule = "dnw",
    num_classes: int = 10,
    in_channels: int = 1,
    length: int = 40,
    num_nodes: int = 200,
    k: int | None = None,
    density: float | None = None,
    readout: int = 40,
    steps: int = 3,
    seed: int | None = None,
) -> VectorClassifier:
    """Discrete-time vector-node classifier: weight-tied steps over the complete digraph."""
    inputs = _vector_inputs(in_channels, length, num_nodes, readout)
    graph = complete_digraph(num_nodes, inputs=inputs, outputs=readout)
    return VectorClassifier(
        graph,
        mode="discrete",
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_density=0.05),
        num_classes=num_classes,
        steps=steps,
        seed=seed,
    )


@register_model()
def vector_continuous(
    *,
    rule: str | WiringRule = "dnw",
    num_classes: int = 10,
    in_channels: int = 1,
    length: int = 40,
    num_nodes: int = 200,
    k: int | None = None,
    density: float | None = None,
    readout: int = 40,
    method: str = "rk4",
    rtol: float = 1e-3,
    atol: float = 1e-3,
    t1: float = 1.0,
    adjoint: bool = False,
    solver_options: dict[str, Any] | None = None,
    seed: int | None = None,
) -> VectorClassifier:
    """Continuous-time vector-node classifier over the complete digraph (default: one RK4 step)."""
    inputs = _vector_inputs(in_channels, length, num_nodes, readout)
    graph = complete_digraph(num_nodes, inputs=inputs, outputs=readout)
    if solver_options is None and method == "rk4":
        solver_options = {"step_size": t1}
    solver = ODESolver(method, rtol, atol, t1, adjoint, solver_options)
    return VectorClassifier(
        graph,
        mode="continuous",
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_density=0.05),
        num_classes=num_classes,
        solver=solver,
        seed=seed,
    )
