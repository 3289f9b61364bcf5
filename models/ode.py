"""A continuous-time graph classifier for vectors (tabular data, flattened digits).

The input vector's features are the input nodes of a complete digraph; the network
integrates ``dZ/dt = tanh(A Z + b)`` over ``[0, t1]`` (graphwire's continuous mode, with
the adjoint as an option) and a linear layer reads the last ``readout`` nodes.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from graphwire import ODESolver, WiredGraph
from graphwire.graph import complete_digraph
from graphwire.wiring import WiringRule
from models._common import budget_kwargs, seeded
from models.registry import register_model

__all__ = ["GraphODEClassifier", "graph_ode_vector"]


class GraphODEClassifier(nn.Module):
    """Vectors -> continuous-time wired graph -> linear read-out.

    Args:
        wired: The wired graph (continuous mode, vector features).
        num_classes: Classes.
        seed: Seed of the read-out layer.
    """

    def __init__(self, wired: WiredGraph, num_classes: int, seed: int | None = None) -> None:
        super().__init__()
        self.graph_net = wired
        with seeded(seed):
            self.head = nn.Linear(wired.graph.outputs.numel(), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_features]`` -> ``[B, num_classes]`` logits."""
        return self.head(self.graph_net(x))  # graph: [B, in] -> [B, readout]


@register_model()
def graph_ode_vector(
    *,
    rule: str | WiringRule = "dnw",
    in_features: int = 64,
    num_nodes: int = 128,
    readout: int = 32,
    num_classes: int = 10,
    k: int | None = None,
    density: float | None = None,
    method: str = "dopri5",
    rtol: float = 1e-3,
    atol: float = 1e-3,
    t1: float = 1.0,
    adjoint: bool = False,
    solver_options: dict[str, Any] | None = None,
    seed: int | None = None,
) -> GraphODEClassifier:
    """A graph ODE classifier (default: 64 features, e.g. flattened 8 x 8 digits; 10% of edges)."""
    graph = complete_digraph(num_nodes, inputs=in_features, outputs=readout)
    solver = ODESolver(method, rtol, atol, t1, adjoint, solver_options)
    wired = WiredGraph(
        graph,
        node_op="tanh",
        rule=rule,
        scope="global",
        mode="continuous",
        solver=solver,
        seed=seed,
        **budget_kwargs(rule, k, density, default_density=0.1),
    )
    return GraphODEClassifier(wired, num_classes, seed=seed)
