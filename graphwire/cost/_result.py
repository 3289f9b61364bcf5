"""What :func:`~graphwire.count` returns: :class:`Cost`, a list of :class:`CostItem`."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["COST_KINDS", "Cost", "CostItem"]

#: The kinds of cost :func:`~graphwire.count` reports (see :mod:`graphwire.cost`).
COST_KINDS = ("edges", "nodes", "dense", "norm")


@dataclass(frozen=True)
class CostItem:
    """The cost of one module in one kind.

    Attributes:
        module: The module's name in the network (``""`` for the root).
        kind: One of :data:`~graphwire.cost.COST_KINDS`.
        params: Live parameters.
        macs: Multiply-adds per example, summed over every call of the module.
    """

    module: str
    kind: str
    params: int
    macs: int


@dataclass
class Cost:
    """What :func:`~graphwire.count` found: one :class:`CostItem` per module and kind.

    Attributes:
        items: The costs, in the order the modules first ran.
        input_shape: The input shape counted (batch size 1).
    """

    items: list[CostItem]
    input_shape: tuple[int, ...]
    _kinds: dict[str, tuple[int, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        kinds = {k: [0, 0] for k in COST_KINDS}
        for item in self.items:
            kinds[item.kind][0] += item.params
            kinds[item.kind][1] += item.macs
        self._kinds = {k: (p, m) for k, (p, m) in kinds.items()}

    @property
    def params(self) -> int:
        """Live parameters: edges, node operations and dense layers (norms excluded)."""
        return sum(p for kind, (p, _) in self._kinds.items() if kind != "norm")

    @property
    def macs(self) -> int:
        """Multiply-adds per example."""
        return sum(m for _, m in self._kinds.values())

    @property
    def norm_params(self) -> int:
        """Affine parameters of the norms (not in :attr:`params`)."""
        return self._kinds["norm"][0]

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """``{kind: (params, macs)}`` over the whole network."""
        return dict(self._kinds)

    def by_module(self) -> dict[str, tuple[int, int]]:
        """``{module name: (params without norms, macs)}``."""
        out: dict[str, list[int]] = {}
        for item in self.items:
            entry = out.setdefault(item.module, [0, 0])
            entry[0] += item.params if item.kind != "norm" else 0
            entry[1] += item.macs
        return {name: (p, m) for name, (p, m) in out.items()}

    def table(self) -> str:
        """A plain-text table of the costs by kind."""
        lines = [f"{'kind':<8}{'params':>14}{'MACs':>16}"]
        for kind, (p, m) in self._kinds.items():
            lines.append(f"{kind:<8}{p:>14,}{m:>16,}")
        lines.append(f"{'total':<8}{self.params:>14,}{self.macs:>16,}  (params without norms)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Cost(params={self.params:,}, macs={self.macs:,}, norm_params={self.norm_params:,}, "
            f"input_shape={self.input_shape})"
        )
