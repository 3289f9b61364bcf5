"""Structural channel compaction across layers (stub; the ``compaction`` branch replaces it).

The agreed interface: :func:`compact_channels` takes a model whose wired layers have
already been frozen into plain ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` modules
carrying their effective weights, and returns a smaller plain model plus a per-layer
report. This stub removes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

__all__ = ["CompactionReport", "compact_channels"]


@dataclass
class CompactionReport:
    """Channels removed per layer (stub: always empty)."""

    layers: list = field(default_factory=list)


def compact_channels(model: nn.Module) -> tuple[nn.Module, CompactionReport]:
    """``(model, report)``: the stub returns ``model`` unchanged and an empty report."""
    return model, CompactionReport(layers=[])
