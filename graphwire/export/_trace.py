"""``torch.fx`` tracing shared by the inference passes (compaction and BatchNorm folding)."""

from __future__ import annotations

from torch import fx, nn

__all__ = ["BATCHNORM", "WEIGHTED", "Tracer", "try_trace", "untraceable"]

#: The layers whose channels the passes change.
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: The BatchNorms the passes read or fold.
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class Tracer(fx.Tracer):
    """fx tracer that keeps layers, norms and graphwire's modules (and ``opaque``) whole."""

    def __init__(self, opaque: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.opaque = opaque

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # noqa: D102
        return (
            id(m) in self.opaque
            or isinstance(m, WEIGHTED + BATCHNORM)
            or type(m).__module__.startswith("graphwire")
            or super().is_leaf_module(m, qualname)
        )


def try_trace(module: nn.Module, opaque: frozenset[int]) -> fx.Graph | None:
    """The graph of ``module`` traced with :class:`Tracer`, or ``None`` where it does not trace."""
    try:
        return Tracer(opaque).trace(module)
    except Exception:  # noqa: BLE001  (any failure means: do not touch)
        return None


def untraceable(module: nn.Module, opaque: frozenset[int], depth: int = 0) -> set[int] | None:
    """Ids of the submodules to keep whole so that ``module`` traces (``None``: it cannot)."""
    if try_trace(module, opaque) is not None:
        return set()
    if depth > 8:
        return None
    tracer = Tracer(opaque)
    bad: set[int] = set()
    for name, child in module.named_children():
        if tracer.is_leaf_module(child, name):
            continue
        inner = untraceable(child, opaque, depth + 1)
        bad |= {id(child)} if inner is None else inner
    if not bad or try_trace(module, opaque | bad) is None:
        return None
    return bad
