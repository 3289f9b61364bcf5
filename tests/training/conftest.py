import pytest
import torch
from torch import nn

from graphwire import WiredGraph
from graphwire.graph import layered_dag
from graphwire.training.data import load_digits


class SmallWired(nn.Module):
    """Digits classifier: linear stem -> wired layered DAG -> the 10 output nodes as logits."""

    def __init__(self, seed: int = 0, rule: str = "dnw", density: float = 0.2, hidden: int = 24):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem = nn.Linear(64, 16)
        with torch.no_grad():
            self.stem.weight.copy_(torch.randn(16, 64, generator=gen) / 8)
            self.stem.bias.zero_()
        self.graph = WiredGraph(
            layered_dag([16, hidden, hidden, 10]),
            node_op="relu",
            rule=rule,
            density=density,
            seed=seed,
        )

    def forward(self, x):
        return self.graph(self.stem(x.flatten(1)))  # [B, 10]


@pytest.fixture(scope="session")
def digits_small():
    return load_digits(limit=256)


@pytest.fixture
def small_wired():
    return SmallWired
