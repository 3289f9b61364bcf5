"""Structural channel compaction across the plain layers of a frozen model.

A frozen sparse model (each wired layer replaced by a plain ``nn.Linear`` / ``nn.Conv*``
holding its effective weight, unselected weights exact zeros) often has whole channels
that do nothing: an output channel whose weights are all zero emits a constant (its
bias, or zero), and an input channel that no weight of any reader uses is computed for
nothing. :func:`compact_channels` removes such channels together with the matching
channels of every module between the producer and its readers, so the layers that are
left are genuinely smaller dense layers.

How it decides, on the ``torch.fx`` trace of the model:

* Tensors joined by element-wise and per-channel modules (BatchNorm with running
  statistics, ReLU and the other activations, Dropout, Identity, max / adaptive pooling,
  Flatten into a ``Linear``) and by residual additions share one *channel space*; its
  producers are the ``Linear`` / ``Conv`` layers whose outputs enter it, its readers
  the layers that read it.
* A channel is removed only where that is provably exact: either every producer's weights
  for it are zero (the channel is a constant, carried through the per-channel modules:
  ``BN(b) = gamma * (b - mean) / sqrt(var + eps) + beta``, then the activation), and every
  reader can take the constant in its bias exactly (``Linear``, or a convolution without
  zero padding; with zero padding a constant input contributes differently at the
  borders, so the channel stays); or no reader uses the channel at all.
* A space that reaches the model's inputs or outputs, or anything not understood
  (concatenation, reshapes, attention, custom code, a module called twice, a grouped
  convolution), is left as it is. A model that does not trace is returned unchanged;
  a submodule that does not trace is kept whole (and named in the report).

The result is a deep copy in ``eval()`` mode: batch norms are read through their running
statistics, so it is meant for inference.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from graphwire._utils import replace_modules
from graphwire.export._trace import BATCHNORM, WEIGHTED, Tracer, untraceable

__all__ = ["CompactionReport", "LayerChannels", "compact_channels"]

_LINEAR = (nn.Linear,)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
)
_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
#: Pooling that maps a spatially constant channel to the same constant.
_CONSTANT_POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ELEMENTWISE_FUNCTIONS = frozenset(
    {
        torch.relu,
        F.relu,
        torch.sigmoid,
        F.sigmoid,
        torch.tanh,
        F.tanh,
        F.gelu,
        F.silu,
        F.relu6,
        F.leaky_relu,
        F.elu,
        F.hardswish,
        F.hardsigmoid,
        F.hardtanh,
        F.mish,
        F.softplus,
    }
)
_ELEMENTWISE_METHODS = frozenset({"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"})
_ADD = frozenset({operator.add, operator.iadd, torch.add})
_MUL = frozenset({operator.mul, operator.imul, torch.mul})


# ---------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class LayerChannels:
    """Channels of one ``Linear`` / ``Conv`` layer before and after compaction.

    Attributes:
        name: Qualified name of the layer in the model.
        kind: Its class name (``"Conv2d"``, ``"Linear"``, ...).
        in_before: Input channels (features of a ``Linear``) before.
        in_after: Input channels after.
        out_before: Output channels before.
        out_after: Output channels after.

    Example:
        >>> from graphwire.export._compact import LayerChannels
        >>> row = LayerChannels("blocks.0.conv1", "Conv2d", 64, 64, 64, 60)
        >>> row.changed, row.out_before - row.out_after
        (True, 4)
    """

    name: str
    kind: str
    in_before: int
    in_after: int
    out_before: int
    out_after: int

    @property
    def changed(self) -> bool:
        """Whether compaction removed any of this layer's channels."""
        return (self.in_before, self.out_before) != (self.in_after, self.out_after)


@dataclass
class CompactionReport:
    """What :func:`compact_channels` removed: per layer, and in total.

    Attributes:
        layers: One :class:`~graphwire.export._compact.LayerChannels` per ``Linear`` / ``Conv``
            layer of the model, in module order.
        traced: Whether the model traced with ``torch.fx`` (``False``: it was returned
            unchanged).
        folded: Constant channels removed whose value was folded into a reader's bias.
        kept_constant: Constant channels kept because a reader could not absorb the
            constant exactly (a zero-padded convolution, or a pooling that changes it at
            the borders).
        notes: What was left as it is, and why.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from graphwire.export import compact_channels
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> with torch.no_grad():
        ...     net[0].weight[1] = 0.0  # output 1 of the first layer is a constant:
        ...     net[0].bias[1] = 0.5  # ReLU(0.5), folded into the next layer's bias
        >>> small, report = compact_channels(net)
        >>> report.removed, report.folded, [(r.in_after, r.out_after) for r in report.layers]
        (1, 1, [(4, 2), (2, 2)])
    """

    layers: list[LayerChannels] = field(default_factory=list)
    traced: bool = True
    folded: int = 0
    kept_constant: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def channels_before(self) -> int:
        """Output channels of all layers, summed, before compaction."""
        return sum(r.out_before for r in self.layers)

    @property
    def channels_after(self) -> int:
        """Output channels of all layers, summed, after compaction."""
        return sum(r.out_after for r in self.layers)

    @property
    def removed(self) -> int:
        """Output channels removed in total (each also left its readers' inputs)."""
        return self.channels_before - self.channels_after

    def __str__(self) -> str:
        """A table of the layers, the total and the notes."""
        rows = [("layer", "type", "in", "out")]
        for r in self.layers:
            rows.append(
                (
                    r.name,
                    r.kind,
                    _arrow(r.in_before, r.in_after),
                    _arrow(r.out_before, r.out_after),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(
            f"total: {self.removed} of {self.channels_before} output channels removed; "
            f"{self.folded} constants folded into a bias, {self.kept_constant} kept"
        )
        if not self.traced:
            lines.append("the model did not trace: left unchanged")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _arrow(before: int, after: int) -> str:
    return str(before) if before == after else f"{before} -> {after}"


# ---------------------------------------------------------------------------- analysis
class _Space:
    """A channel space: tensors indexed by the same channels (union-find root data)."""

    def __init__(self, layout: str | None) -> None:
        self.layout = layout  # "conv" (channels at dim 1) or "linear" (last dim)
        self.frozen: list[str] = []  # reasons nothing may be removed here
        self.producers: list[str] = []
        self.readers: list[tuple[str, fx.Node]] = []  # (layer, the node it reads)
        self.norms: list[str] = []
        self.size: int | None = None


class _Analysis:
    """Channel spaces of one fx graph of ``model``."""

    def __init__(self, model: nn.Module, graph: fx.Graph) -> None:
        self.model = model
        self.graph = graph
        self.modules = dict(model.named_modules())
        self.parent: dict[int, int] = {}
        self.spaces: dict[int, _Space] = {}
        self.space_of: dict[fx.Node, int] = {}
        self.flat: set[fx.Node] = set()  # 2-D, channel-major flattened tensors of a conv space
        self.const_rule: dict[fx.Node, tuple] = {}
        self.source: dict[fx.Node, fx.Node] = {}  # the tensor a joined node is computed from
        self.notes: list[str] = []
        self._build()

    # union-find -------------------------------------------------------------
    def _new(self, layout: str | None, frozen: str | None = None) -> int:
        i = len(self.parent)
        self.parent[i] = i
        self.spaces[i] = _Space(layout)
        if frozen:
            self.spaces[i].frozen.append(frozen)
        return i

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def space(self, node: fx.Node) -> _Space:
        return self.spaces[self.find(self.space_of[node])]

    def _union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        sa, sb = self.spaces[a], self.spaces[b]
        self.parent[b] = a
        if sa.layout != sb.layout:
            sa.frozen.append("an addition joins tensors of different layouts")
        sa.frozen += sb.frozen
        sa.producers += sb.producers
        sa.readers += sb.readers
        sa.norms += sb.norms
        if sa.size is None:
            sa.size = sb.size
        elif sb.size is not None and sb.size != sa.size:
            sa.frozen.append("an addition joins different channel counts")
        del self.spaces[b]
        return a

    def _freeze(self, node: Any, why: str) -> None:
        if isinstance(node, fx.Node) and node in self.space_of:
            self.space(node).frozen.append(why)

    def _freeze_args(self, node: fx.Node, why: str) -> None:
        fx.node.map_arg((node.args, node.kwargs), lambda a: self._freeze(a, why))

    def _join(self, node: fx.Node, source: fx.Node, rule: tuple) -> None:
        """``node`` is in ``source``'s space, its constant given by ``rule``."""
        self.space_of[node] = self.space_of[source]
        if source in self.flat:
            self.flat.add(node)
        self.const_rule[node] = rule
        self.source[node] = source

    # building ---------------------------------------------------------------
    def _build(self) -> None:
        calls: dict[int, int] = {}  # by module object: one module may have two names
        for node in self.graph.nodes:
            if node.op == "call_module":
                key = id(self.modules[node.target])
                calls[key] = calls.get(key, 0) + 1
        pinned = {
            name
            for node in self.graph.nodes
            if node.op == "get_attr"
            for name in self.modules
            if name and str(node.target).startswith(name + ".")
        }
        self.shared = {
            node.target
            for node in self.graph.nodes
            if node.op == "call_module"
            and calls[id(self.modules[node.target])] > 1
            and _has_state(self.modules[node.target])
        }
        self.pinned = pinned
        for node in self.graph.nodes:
            self._visit(node)

    def _unknown(self, node: fx.Node, what: str) -> None:
        self._freeze_args(node, f"read by {what}")
        self.space_of[node] = self._new(None, f"produced by {what}")

    def _visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self.space_of[node] = self._new(None, "a model input")
        elif node.op == "get_attr":
            self.space_of[node] = self._new(None, f"the attribute {node.target}")
        elif node.op == "output":
            self._freeze_args(node, "a model output")
        elif node.op == "call_module":
            self._visit_module(node, self.modules[node.target])
        elif node.op == "call_function":
            self._visit_function(node)
        elif node.op == "call_method":
            self._visit_method(node)
        else:  # pragma: no cover - fx has no other ops
            self._unknown(node, f"{node.op} {node.target}")

    def _single_input(self, node: fx.Node) -> fx.Node | None:
        if len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node):
            return node.args[0]
        return None

    def _visit_module(self, node: fx.Node, m: nn.Module) -> None:
        name, kind = node.target, type(m)
        x = self._single_input(node)
        what = f"{name} ({kind.__name__})"
        if x is None:
            return self._unknown(node, what)
        if kind in WEIGHTED:
            return self._visit_layer(node, name, m, x)
        if kind in BATCHNORM:
            usable = m.track_running_stats and m.running_mean is not None
            if name in self.shared or name in self.pinned or not usable:
                return self._unknown(node, what)
            if self.space(x).layout != "conv" or x in self.flat:
                return self._unknown(node, f"{what} outside a convolution's channels")
            self._join(node, x, ("bn", m))
            sp = self.space(node)
            sp.norms.append(name)
            if sp.size is not None and sp.size != m.num_features:
                sp.frozen.append(f"{what} has another channel count")
            return None
        if kind in _ELEMENTWISE_MODULES:
            return self._join(node, x, ("apply", m))
        if kind in _IDENTITY_MODULES:
            return self._join(node, x, ("same",))
        if kind in _CONSTANT_POOLS + _AVG_POOLS:
            if self.space(x).layout != "conv" or x in self.flat:
                return self._unknown(node, what)
            if getattr(m, "return_indices", False):
                return self._unknown(node, what)
            exact = kind in _CONSTANT_POOLS or (
                not m.ceil_mode
                and m.divisor_override is None
                and (not m.count_include_pad or not any(_tuple(m.padding)))
            )
            return self._join(node, x, ("same",) if exact else ("zero-only",))
        if kind is nn.Flatten:
            return self._visit_flatten(node, x, m.start_dim, m.end_dim, what)
        return self._unknown(node, what)

    def _visit_layer(self, node: fx.Node, name: str, m: nn.Module, x: fx.Node) -> None:
        what = f"{name} ({type(m).__name__})"
        layout = "linear" if isinstance(m, nn.Linear) else "conv"
        out = self._new(layout)
        self.space_of[node] = out
        problem = None
        if name in self.shared:
            problem = f"{what} is called more than once"
        elif name in self.pinned:
            problem = f"the forward reads {name}'s parameters directly"
        elif layout == "conv" and m.groups != 1:
            problem = f"{what} is a grouped convolution"
        if problem:
            self._freeze(x, problem)
            self.spaces[out].frozen.append(problem)
            return
        self.spaces[out].producers.append(name)
        self.spaces[out].size = m.weight.shape[0]
        space = self.space(x)
        if space.size is None:  # no layer makes these channels (a model input): nothing to do
            return
        flat = x in self.flat
        fits = (layout == "linear" and (space.layout == "linear" or flat)) or (
            layout == "conv" and space.layout == "conv" and not flat
        )
        if not fits:
            self._freeze(x, f"read by {what} across another layout")
            return
        width = m.weight.shape[1]
        if (flat and width % space.size) or (not flat and width != space.size):
            self._freeze(x, f"read by {what} with another channel count")
            return
        space.readers.append((name, x))

    def _visit_flatten(self, node: fx.Node, x: fx.Node, start: int, end: int, what: str) -> None:
        space = self.space(x)
        if x in self.flat and start == 1 and end == -1:
            return self._join(node, x, ("same",))
        if space.layout == "conv" and start == 1 and end == -1:
            self._join(node, x, ("same",))
            self.flat.add(node)
            return None
        return self._unknown(node, what)

    def _visit_function(self, node: fx.Node) -> None:
        fn = node.target
        what = getattr(fn, "__name__", str(fn))
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        if fn in _ADD and not node.kwargs and len(node.args) == 2:
            return self._visit_add(node, what)
        if fn in _MUL and not node.kwargs and len(node.args) == 2 and len(tensors) == 1:
            scalar = next(a for a in node.args if not isinstance(a, fx.Node))
            if isinstance(scalar, (int, float)):
                return self._join(node, tensors[0], ("scale", float(scalar)))
        if fn in _ELEMENTWISE_FUNCTIONS and node.args and isinstance(node.args[0], fx.Node):
            rest = (node.args[1:], node.kwargs)
            nested: list[fx.Node] = []
            fx.node.map_arg(rest, nested.append)
            if not nested:
                return self._join(node, node.args[0], ("call", fn, node.args[1:], node.kwargs))
        if fn is torch.flatten and node.args and isinstance(node.args[0], fx.Node):
            args = list(node.args[1:]) + [None, None]
            start = node.kwargs.get("start_dim", args[0] if args[0] is not None else 0)
            end = node.kwargs.get("end_dim", args[1] if args[1] is not None else -1)
            return self._visit_flatten(node, node.args[0], start, end, what)
        return self._unknown(node, what)

    def _visit_method(self, node: fx.Node) -> None:
        name = node.target
        if name in ("add", "add_") and not node.kwargs and len(node.args) == 2:
            return self._visit_add(node, name)
        x = self._single_input(node)
        if name in _ELEMENTWISE_METHODS and x is not None:
            base = name.rstrip("_")
            return self._join(node, x, ("call", getattr(torch, base), (), {}))
        if name == "flatten" and node.args and isinstance(node.args[0], fx.Node):
            args = list(node.args[1:]) + [None, None]
            start = node.kwargs.get("start_dim", args[0] if args[0] is not None else 0)
            end = node.kwargs.get("end_dim", args[1] if args[1] is not None else -1)
            return self._visit_flatten(node, node.args[0], start, end, f".{name}()")
        return self._unknown(node, f".{name}()")

    def _visit_add(self, node: fx.Node, what: str) -> None:
        a, b = node.args
        if isinstance(a, fx.Node) and isinstance(b, fx.Node):
            if a in self.flat or b in self.flat:
                return self._unknown(node, f"{what} of flattened tensors")
            self.space_of[node] = self._union(self.space_of[a], self.space_of[b])
            self.const_rule[node] = ("sum", a, b)
            return None
        tensor = a if isinstance(a, fx.Node) else b
        scalar = b if tensor is a else a
        if isinstance(tensor, fx.Node) and isinstance(scalar, (int, float)):
            return self._join(node, tensor, ("shift", float(scalar)))
        return self._unknown(node, what)

    # constants --------------------------------------------------------------
    def constants(self) -> dict[fx.Node, Tensor]:
        """Per node: its value per channel were every producer's weights for it zero.

        NaN where it would not be a constant (an average pool over zero padding).
        """
        value: dict[fx.Node, Tensor] = {}
        for node in self.graph.nodes:
            if node.op == "call_module" and type(self.modules[node.target]) in WEIGHTED:
                m = self.modules[node.target]
                n = m.weight.shape[0]
                b = m.bias
                value[node] = (
                    torch.zeros(n, dtype=torch.float64)
                    if b is None
                    else b.detach().to("cpu", torch.float64)
                )
                continue
            rule = self.const_rule.get(node)
            if rule is None:
                continue
            src = self.source.get(node)
            if rule[0] == "sum":
                a, b = rule[1], rule[2]
                if a in value and b in value and value[a].shape == value[b].shape:
                    value[node] = value[a] + value[b]
                continue
            if src not in value:
                continue
            v = value[src]
            kind = rule[0]
            if kind == "same":
                value[node] = v
            elif kind == "zero-only":
                value[node] = torch.where(v == 0, v, torch.full_like(v, math.nan))
            elif kind == "shift":
                value[node] = v + rule[1]
            elif kind == "scale":
                value[node] = v * rule[1]
            elif kind == "bn":
                m = rule[1]
                mean = m.running_mean.detach().to("cpu", torch.float64)
                var = m.running_var.detach().to("cpu", torch.float64)
                out = (v - mean) / torch.sqrt(var + m.eps)
                if m.affine:
                    out = out * m.weight.detach().to("cpu", torch.float64)
                    out = out + m.bias.detach().to("cpu", torch.float64)
                value[node] = out
            elif kind == "apply":
                with torch.no_grad():
                    value[node] = rule[1](v.clone().view(1, -1)).view(-1)
            elif kind == "call":
                with torch.no_grad():
                    value[node] = rule[1](v.clone().view(1, -1), *rule[2], **rule[3]).view(-1)
        return value


def _has_state(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def _tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _zero_padded(conv: nn.Module) -> bool:
    """Whether the convolution pads with zeros (a constant input is not constant there)."""
    if conv.padding_mode != "zeros":
        return False
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return False
        dil = _tuple(conv.dilation)
        return any(d * (k - 1) > 0 for k, d in zip(_tuple(conv.kernel_size), dil * 3))
    return any(p > 0 for p in _tuple(conv.padding))


# ---------------------------------------------------------------------------- decisions
@dataclass
class _Edit:
    """Pending changes to one module: channels kept and a bias shift (original indexing)."""

    keep_out: Tensor | None = None
    keep_in: Tensor | None = None
    in_factor: int = 1
    bias_shift: Tensor | None = None


def _plan(an: _Analysis) -> tuple[dict[str, _Edit], int, int, list[str]]:
    """Which channels to remove per space, the folds they need, and the notes."""
    value = an.constants()
    edits: dict[str, _Edit] = {}
    folded = kept_constant = 0
    notes: list[str] = []
    for sp in an.spaces.values():
        if sp.frozen or not sp.producers or sp.size is None:
            continue
        size = sp.size
        dead = torch.ones(size, dtype=torch.bool)
        for name in sp.producers:
            w = an.modules[name].weight.detach()
            dead &= (w.reshape(size, -1) == 0).all(1).cpu()
        unused = torch.ones(size, dtype=torch.bool)
        factors, ignores = {}, {}
        for name, _ in sp.readers:
            w = an.modules[name].weight.detach()
            factor = w.shape[1] // size
            factors[name] = factor
            per_channel = w.transpose(0, 1).reshape(size, factor, -1)
            ignores[name] = (per_channel == 0).all(2).all(1).cpu()  # no weight reads it
            unused &= ignores[name]
        remove = unused.clone()
        shifts: dict[str, Tensor] = {}
        for c in torch.nonzero(dead & ~unused).flatten().tolist():
            ok, needs = True, []
            for name, x in sp.readers:
                if ignores[name][c]:
                    continue
                k = value.get(x)
                k = math.nan if k is None or k.numel() != size else float(k[c])
                if k == 0.0:
                    continue
                m = an.modules[name]
                if math.isnan(k) or (isinstance(m, _CONV) and _zero_padded(m)):
                    ok = False
                    break
                needs.append((name, k))
            if not ok:
                kept_constant += 1
                continue
            remove[c] = True
            folded += bool(needs)
            for name, k in needs:
                m = an.modules[name]
                f = factors[name]
                w = m.weight.detach().to(torch.float64)
                cols = w[:, c * f : (c + 1) * f]
                shift = k * cols.reshape(w.shape[0], -1).sum(1)
                shifts[name] = shifts.get(name, 0) + shift.cpu()
        if remove.all():  # keep one channel: a layer of width zero helps nobody
            remove[0] = False
        if not remove.any():
            continue
        keep = torch.nonzero(~remove).flatten()
        for name in sp.producers:
            edits.setdefault(name, _Edit()).keep_out = keep
        for name in sp.norms:
            edits.setdefault(name, _Edit()).keep_out = keep
        for name, _ in sp.readers:
            e = edits.setdefault(name, _Edit())
            e.keep_in, e.in_factor = keep, factors[name]
            if name in shifts:
                e.bias_shift = shifts[name] if e.bias_shift is None else e.bias_shift + shifts[name]
    return edits, folded, kept_constant, notes


# ---------------------------------------------------------------------------- rebuilding
def _rebuild(m: nn.Module, e: _Edit) -> nn.Module:
    w = m.weight.detach()
    if isinstance(m, BATCHNORM):
        keep = e.keep_out.to(w.device)
        new = type(m)(
            keep.numel(),
            eps=m.eps,
            momentum=m.momentum,
            affine=m.affine,
            track_running_stats=m.track_running_stats,
            device=w.device,
            dtype=w.dtype,
        )
        with torch.no_grad():
            if m.affine:
                new.weight.copy_(m.weight[keep])
                new.bias.copy_(m.bias[keep])
            new.running_mean.copy_(m.running_mean[keep])
            new.running_var.copy_(m.running_var[keep])
            new.num_batches_tracked.copy_(m.num_batches_tracked)
        new.train(m.training)
        return new
    bias = None if m.bias is None else m.bias.detach().clone()
    if e.bias_shift is not None:
        shift = e.bias_shift.to(w.device, w.dtype)
        bias = shift if bias is None else bias + shift
    if e.keep_out is not None:
        keep = e.keep_out.to(w.device)
        w = w[keep]
        bias = None if bias is None else bias[keep]
    if e.keep_in is not None:
        f = e.in_factor
        cols = (e.keep_in[:, None] * f + torch.arange(f)).flatten().to(w.device)
        w = w[:, cols]
    if isinstance(m, nn.Linear):
        new = nn.Linear(w.shape[1], w.shape[0], bias is not None, device=w.device, dtype=w.dtype)
    else:
        new = type(m)(
            w.shape[1],
            w.shape[0],
            m.kernel_size,
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            groups=m.groups,
            bias=bias is not None,
            padding_mode=m.padding_mode,
            device=w.device,
            dtype=w.dtype,
        )
    with torch.no_grad():
        new.weight.copy_(w)
        if bias is not None:
            new.bias.copy_(bias)
    new.train(m.training)
    return new


def _layer_shapes(model: nn.Module) -> dict[str, tuple[str, int, int]]:
    return {
        name: (type(m).__name__, m.weight.shape[1] * getattr(m, "groups", 1), m.weight.shape[0])
        for name, m in model.named_modules()
        if type(m) in WEIGHTED
    }


def _opaque_notes(model: nn.Module, opaque: Iterable[int]) -> list[str]:
    ids = set(opaque)
    return [
        f"{name} ({type(m).__name__}) does not trace with torch.fx: kept whole, its channels "
        "untouched"
        for name, m in model.named_modules()
        if id(m) in ids
    ]


# ---------------------------------------------------------------------------- entry point
def compact_channels(model: nn.Module) -> tuple[nn.Module, CompactionReport]:
    """Remove provably dead channels across the plain layers of a frozen model.

    An output channel of a ``Linear`` / ``Conv`` layer whose weights are all zero is a
    constant; it is removed with the matching input channel of the layers that read it,
    through the element-wise and per-channel modules between them (BatchNorm, ReLU and
    friends, residual additions where every side agrees), and its constant is folded
    into the readers' biases where that is exact (a ``Linear``, or a convolution without
    zero padding; otherwise the channel is kept). An input channel that no reader's
    weight uses is removed too, from the producers on. Nothing else changes: the result
    computes what ``model`` computes in ``eval()`` mode, to float rounding.

    Args:
        model: A network of plain modules (``nn.Linear``, ``nn.Conv1d/2d/3d``,
            ``nn.BatchNorm1d/2d/3d``, activations, pooling, ``Flatten``, ``Dropout``,
            ``Identity``, residual additions) whose unselected weights are exact zeros,
            e.g. a sparse model whose wired layers were frozen into plain ones.
            Anything else may be in it: the channels it touches are left as they are.

    Returns:
        ``(compacted, report)``: a deep copy of ``model`` with smaller layers, in
        ``eval()`` mode (``model`` itself is not changed), and a
        :class:`~graphwire.export.CompactionReport` listing every layer's channels
        before and after, and what was left as it is and why. A model that does not
        trace with ``torch.fx`` comes back as an unchanged copy, with
        ``report.traced == False``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from graphwire.export import compact_channels
        >>> net = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)
        ... ).eval()
        >>> with torch.no_grad():
        ...     net[0].weight[:3] = 0.0  # three dead output channels: constants
        ...     net[0].bias[:3] = torch.tensor([0.5, -0.5, 1.0])  # ReLU'd: 0.5, 0, 1
        >>> small, report = compact_channels(net)
        >>> small[0].out_channels, small[1].num_features, small[3].in_channels
        (5, 5, 5)
        >>> x = torch.randn(2, 3, 9, 9)
        >>> torch.allclose(small(x), net(x), atol=1e-5)
        True
        >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
        layer  type    in      out
        -----  ------  ------  ------
        0      Conv2d  3       8 -> 5
        3      Conv2d  8 -> 5  4
        total: 3 of 12 output channels removed; 2 constants folded into a bias, 0 kept
    """
    out = copy.deepcopy(model)
    out.eval()
    before = _layer_shapes(out)
    report = CompactionReport()
    opaque = untraceable(out, frozenset())
    if opaque is None:
        report.traced = False
        report.notes.append(
            f"{type(model).__name__} does not trace with torch.fx (torch.fx.symbolic_trace): "
            "nothing was compacted"
        )
    else:
        report.notes += _opaque_notes(out, opaque)
        frozen_opaque = frozenset(opaque)
        for _ in range(len(before) + 1):  # each pass can expose channels for the next
            graph = Tracer(frozen_opaque).trace(out)
            analysis = _Analysis(out, graph)
            edits, folded, kept, _notes = _plan(analysis)
            report.kept_constant = kept
            if not edits:
                report.notes += _frozen_notes(analysis)
                break
            report.folded += folded
            rebuilt = {name: _rebuild(analysis.modules[name], e) for name, e in edits.items()}
            replace_modules(
                out, lambda name, m, r=rebuilt: name in r, lambda name, m, r=rebuilt: r[name]
            )
    after = _layer_shapes(out)
    report.layers = [
        LayerChannels(name, kind, cin, after[name][1], cout, after[name][2])
        for name, (kind, cin, cout) in before.items()
    ]
    return out, report


def _frozen_notes(an: _Analysis) -> list[str]:
    """One line per reason channels were left as they are.

    Model inputs and outputs, which always keep their channels, are not listed.
    """
    seen: dict[str, None] = {}
    for sp in an.spaces.values():
        for why in sp.frozen:
            if why not in ("a model input", "a model output"):
                seen.setdefault(f"channels left as they are: {why}")
    return list(seen)
