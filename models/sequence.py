"""A recurrent network on sequences whose hidden state is a wired channel graph.

The paper only claims a recurrent network (its "recurrent" models are the discrete-time
graphs); this is graphwire's. Each time step, every hidden node ``v`` computes
``h_v(t) = tanh(b_v + sum over input edges w x_u(t) + sum over recurrent edges w h_u(t-1))``;
the recurrent edges form a directed graph on the hidden nodes in which cycles and
self-loops are allowed. After the last step the output edges read the hidden state into
the class scores. Input, recurrent and output edges share one global top-k, so DNW
decides how the budget is split between them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from graphwire import ChannelGraph, ConfigError
from graphwire.layers import WiredLinear
from graphwire.wiring import SharedBudget, WiringRule
from models._common import budget_kwargs, seeded
from models.registry import register_model

__all__ = ["GraphRNN", "SignalGraphRNN", "graph_rnn", "graph_rnn_1d"]


class GraphRNN(nn.Module):
    """Sequence classifier with learned input, recurrent and output wiring.

    Args:
        in_features: Features per time step.
        num_nodes: Hidden nodes.
        num_classes: Classes.
        rule: Wiring rule name or instance.
        budget: ``{"k": ...}`` or ``{"density": ...}`` over all the candidate edges.
        seed: Seed of the weights and of a random graph.

    Example:
        >>> import torch
        >>> from models.sequence import GraphRNN
        >>> net = GraphRNN(8, 16, 10, budget={"density": 0.2}, seed=0)
        >>> net(torch.randn(3, 5, 8)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        in_features: int,
        num_nodes: int,
        num_classes: int,
        *,
        rule: str | WiringRule = "dnw",
        budget: dict | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        with seeded(seed):
            self.input_edges = WiredLinear(in_features, num_nodes, rule="complete")
            self.recurrent_edges = WiredLinear(num_nodes, num_nodes, bias=False, rule="complete")
            self.output_edges = WiredLinear(num_nodes, num_classes, rule="complete")
        layers = [self.input_edges, self.recurrent_edges, self.output_edges]
        shared = SharedBudget(layers, rule="complete")
        # One scale for every candidate edge (the paper's initialisation), so the first
        # top-k spreads over input, recurrent and output edges alike: uniform with the
        # variance of a layer whose nodes each keep their share of the budget.
        kept = shared.k if not budget else None
        total = shared.k
        if budget:
            kept = budget.get("k") or round(budget["density"] * total)
        fan_in = max(kept * (in_features + num_nodes) / total / 1.0, 1.0) if total else 1.0
        scale = (1.0 / fan_in) ** 0.5
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in layers:
                draw = torch.rand(layer.weight.shape, generator=generator)
                layer.weight.copy_((2 * draw - 1) * scale)
        SharedBudget(layers, rule=rule, seed=seed, **(budget or {}))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, T, in_features]`` sequences -> ``[B, num_classes]`` logits."""
        if x.dim() != 3:
            raise ConfigError(f"x must be [B, T, features]; got shape {list(x.shape)}.")
        drive = self.input_edges(x)  # [B, T, N]
        h = drive.new_zeros(x.shape[0], drive.shape[-1])  # [B, N]
        for t in range(x.shape[1]):
            h = torch.tanh(drive[:, t] + self.recurrent_edges(h))  # [B, N]
        return self.output_edges(h)  # [B, num_classes]

    def hidden_graph(self) -> ChannelGraph:
        """The learned wiring as one channel graph (inputs, hidden nodes, outputs; cycles).

        Nodes ``0 .. F-1`` are the inputs, then the ``N`` hidden nodes, then the classes.
        """
        f, n = self.input_edges.in_features, self.recurrent_edges.in_features
        c = self.output_edges.out_features
        parts = []
        for layer, src0, dst0 in (
            (self.input_edges, 0, f),
            (self.recurrent_edges, f, f),
            (self.output_edges, f, f + n),
        ):
            dst, src = layer.edge_mask.nonzero().t()
            parts.append(torch.stack([src + src0, dst + dst0]))
        return ChannelGraph(
            torch.cat(parts, dim=1).cpu(),
            f + n + c,
            inputs=range(f),
            outputs=range(f + n, f + n + c),
        )


@register_model()
def graph_rnn(
    *,
    rule: str | WiringRule = "dnw",
    in_features: int = 8,
    num_nodes: int = 64,
    num_classes: int = 10,
    k: int | None = None,
    density: float | None = None,
    seed: int | None = None,
) -> GraphRNN:
    """A graph RNN (default: 8 features per step, e.g. the rows of 8 x 8 digits; 25% of edges)."""
    return GraphRNN(
        in_features,
        num_nodes,
        num_classes,
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_density=0.25),
        seed=seed,
    )


class SignalGraphRNN(GraphRNN):
    """A :class:`GraphRNN` that reads 1-D signals as sequences, ``in_features`` samples a step.

    A signal ``[B, C, L]`` (e.g. MNIST-1D's ``[B, 1, 40]``) becomes ``L / chunk`` time
    steps of ``C * chunk`` features, in order along the signal.

    Args:
        chunk: Signal samples per time step (``L`` must be a multiple of it).
        in_channels: Signal channels ``C``.
        num_nodes: Hidden nodes.
        num_classes: Classes.
        rule: Wiring rule name or instance.
        budget: ``{"k": ...}`` or ``{"density": ...}`` over all the candidate edges.
        seed: Seed of the weights and of a random graph.

    Example:
        >>> import torch
        >>> from models.sequence import SignalGraphRNN
        >>> net = SignalGraphRNN(4, 1, 16, 10, budget={"density": 0.2}, seed=0)
        >>> net(torch.randn(3, 1, 40)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        chunk: int,
        in_channels: int,
        num_nodes: int,
        num_classes: int,
        *,
        rule: str | WiringRule = "dnw",
        budget: dict | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            in_channels * chunk, num_nodes, num_classes, rule=rule, budget=budget, seed=seed
        )
        self.chunk = chunk

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, L]`` signals -> ``[B, num_classes]`` logits."""
        if x.dim() != 3 or x.shape[-1] % self.chunk:
            raise ConfigError(
                f"x must be [B, C, L] signals with L a multiple of chunk={self.chunk}; got "
                f"shape {list(x.shape)}."
            )
        b, c, length = x.shape
        steps = x.reshape(b, c, length // self.chunk, self.chunk)  # [B, C, T, chunk]
        return super().forward(steps.permute(0, 2, 1, 3).reshape(b, length // self.chunk, -1))


@register_model()
def graph_rnn_1d(
    *,
    rule: str | WiringRule = "dnw",
    in_features: int = 4,
    in_channels: int = 1,
    num_nodes: int = 64,
    num_classes: int = 10,
    k: int | None = None,
    density: float | None = None,
    seed: int | None = None,
) -> SignalGraphRNN:
    """A graph RNN on 1-D signals, ``in_features`` samples a step (default: MNIST-1D, 10 steps)."""
    return SignalGraphRNN(
        in_features,
        in_channels,
        num_nodes,
        num_classes,
        rule=rule,
        budget=budget_kwargs(rule, k, density, default_density=0.25),
        seed=seed,
    )
