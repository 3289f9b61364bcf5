"""sparsified: dense vs masked vs compiled inference of networks turned sparse by ``sparsify``.

For each network, density and batch size, on the same weights and inputs in one process,
the suite times (medians over interleaved repeats after one warm-up call each, under
``torch.inference_mode``):

1. ``dense``: the network as built, every weight used (``sparse=False``): the baseline
   of the issue's targets;
   ``dense_folded``: the same with its BatchNorms folded into the convolutions
   (by ``torch.fx.experimental.optimization.fuse``; a network that does not trace
   keeps them), which a
   user shipping the dense network for inference would do; the compiled network folds
   them too, so ``speedup_vs_dense_folded`` is its gain from sparsity alone;
2. ``masked``: the network after :func:`graphwire.layers.sparsify` (DNW, one uniform rate
   per layer, first layer dense, as in the paper's ResNet-50 runs), uncompiled: each
   wired layer multiplies its full weight by its mask, as mask-based sparse training
   libraries do;
3. ``compiled``: ``graphwire.freeze(masked)``: wired layers frozen, dead channels
   compacted across layers, each layer run as a dense product or a sparse kernel.

Networks: ResNet-50 at 224 x 224 (``models.resnet50``), the CIFAR ResNet-20 at 32 x 32
(``models.resnet_cifar``) and ``torch.nn.TransformerEncoder`` (d_model 128, 4 heads,
feed-forward 512, 2 layers) on 128 tokens. The selection is the DNW rule's first top-k on
the initial weights (no training: the time of a layer depends on how many weights it
keeps, and DNW keeps exactly the budget).

Every row reports the median time, the speed-up over the dense network, the largest
difference from the masked model's outputs, and the fraction of the machine's limit: the
live multiply-adds (``graphwire.count``) per second over the rate of a large float32
matmul measured in the same process. The issue's targets at 10% of weights (ResNet-50 at
least 1.5x the dense network, the CIFAR ResNet and the encoder at least 2x, both batch
sizes) are checked in the markdown.

Results: ``results.json``, ``results.md`` and ``time_vs_density.png`` in ``--out``;
``--profile`` adds, per network and batch at 10%, where the dense and compiled networks
spend their time (the torch profiler's table by operator), for a missed target.
``--smoke`` runs tiny versions of the networks in seconds (the tests run it; its numbers
mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import graphwire
from benchmarks._common import set_threads
from benchmarks.speed import machine, matmul_rate, timed
from graphwire.layers import sparsify
from models.resnet import resnet50, resnet_cifar

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sparsified"
DENSITIES = (0.1, 0.2, 0.3)
BATCHES = (1, 16)
#: The issue's speed-up targets over the dense network at 10% of weights.
TARGETS = {"resnet50": 1.5, "resnet_cifar": 2.0, "transformer": 2.0}


@dataclass(frozen=True)
class Net:
    """One network of the suite: how to build it dense, and one input example's shape."""

    name: str
    build: Callable[[], nn.Module]
    example: tuple[int, ...]  # one example, without the batch dimension


def transformer(d_model: int = 128, layers: int = 2, heads: int = 4, ff: int = 512) -> nn.Module:
    """``torch.nn.TransformerEncoder`` on ``[batch, tokens, d_model]`` (batch first)."""
    layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def networks(smoke: bool) -> list[Net]:
    """The suite's networks; ``smoke`` shrinks each to a toy of the same structure."""
    if smoke:
        return [
            Net("resnet_cifar", lambda: resnet_cifar(depth=8, width=4, sparse=False), (3, 8, 8)),
            Net("transformer", lambda: transformer(16, 1, 2, 32), (8, 16)),
        ]
    return [
        Net("resnet50", lambda: resnet50(sparse=False), (3, 224, 224)),
        Net("resnet_cifar", lambda: resnet_cifar(sparse=False), (3, 32, 32)),
        Net("transformer", transformer, (128, 128)),
    ]


@contextlib.contextmanager
def fastpath(enabled: bool) -> Iterator[None]:
    """Turn torch's fused inference path of transformer layers on or off for a block.

    The dense encoder keeps it (what a user gets); the masked and compiled ones run
    without it, since it reads each ``Linear``'s raw ``weight`` (not a masked one, and a
    compiled sparse layer has none).
    """
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def _live_weights(layer: nn.Module | None, attr: str = "weight") -> int | None:
    """Nonzero weights of ``layer`` (its masked weight for a wired layer), None if none."""
    if layer is None:
        return None
    if hasattr(layer, "effective_weight") and attr == "weight":
        return int((layer.effective_weight() != 0).sum())
    w = getattr(layer, attr, None)
    return None if not isinstance(w, torch.Tensor) else int((w != 0).sum())


def attention_cost(m: nn.MultiheadAttention, inputs, output) -> dict[str, tuple[int, int]]:
    """``graphwire.count`` rule for attention (which count has no rule for).

    Live projection weights once per token, plus the two ``T x T x E`` products of the
    scores and the weighted values.
    """
    q = inputs[0]
    tokens = q.shape[1] if m.batch_first else q.shape[0]
    e = m.embed_dim
    w_in = _live_weights(m, "in_proj_weight")
    w_out = _live_weights(getattr(m, "out_proj", None))
    w_in = 3 * e * e if w_in is None else w_in
    w_out = e * e if w_out is None else w_out
    macs = tokens * (w_in + w_out) + 2 * tokens * tokens * e
    return {"dense": (w_in + w_out, macs)}


def live_macs(model: nn.Module, example: tuple[int, ...]) -> float | None:
    """Live multiply-adds of one example (``graphwire.count``), or None if it cannot count."""
    try:
        cost = graphwire.count(model, (1, *example), costs={nn.MultiheadAttention: attention_cost})
        return float(cost.macs)
    except Exception as error:  # noqa: BLE001  (a count that fails leaves a blank, not a crash)
        print(f"sparsified: graphwire.count failed on {type(model).__name__}: {error}")
        return None


def fold_batchnorms(model: nn.Module) -> nn.Module:
    """``model`` with its BatchNorms folded into the convolutions, by torch's own pass.

    ``torch.fx.experimental.optimization.fuse`` traces the model; one that does not trace
    (or has nothing to fold) comes back as a copy.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model, inplace=False)
    except Exception:  # noqa: BLE001  (tracing failed: ship it as it is)
        return copy.deepcopy(model)


def run_network(net: Net, args, rate: float, device: torch.device) -> list[dict]:
    """Every density and batch size of one network: result rows."""
    torch.manual_seed(0)
    dense = net.build().to(device).eval()
    folded = fold_batchnorms(dense)  # what a user would ship
    dense_macs = live_macs(dense, net.example)
    rows = []
    for density in args.densities:
        masked = sparsify(dense, density=density, rule="dnw", keep_first_dense=True, seed=0)
        masked = masked.to(device).eval()
        compiled = graphwire.freeze(masked)
        report = getattr(compiled, "compaction_report", None)
        macs = {
            "dense": dense_macs,
            "dense_folded": dense_macs,
            "masked": live_macs(masked, net.example),
            "compiled": live_macs(compiled, net.example),
        }
        kept = sum(int(m.edge_mask.sum()) for m in masked.modules() if hasattr(m, "edge_mask"))
        total = sum(m.weight.numel() for m in masked.modules() if hasattr(m, "edge_mask"))
        for batch in args.batches:
            gen = torch.Generator().manual_seed(batch)
            x = torch.randn(batch, *net.example, generator=gen).to(device)
            with torch.inference_mode(), fastpath(False):
                reference = masked(x)
                diff = float((compiled(x) - reference).abs().max())
                scale = float(reference.abs().max())

            def infer(module: nn.Module, fast: bool = False, x=x) -> Callable[[], object]:
                def call() -> None:
                    with torch.inference_mode(), fastpath(fast):
                        module(x)

                return call

            times = timed(
                {
                    "dense": infer(dense, fast=True),
                    "dense_folded": infer(folded, fast=True),
                    "masked": infer(masked),
                    "compiled": infer(compiled),
                },
                args.repeats,
                device,
            )
            if args.profile and abs(density - 0.1) < 1e-9:
                for method in ("dense", "compiled"):
                    fn = infer(dense, fast=True) if method == "dense" else infer(compiled)
                    path = args.out / f"profile_{net.name}_b{batch}_{method}.txt"
                    title = f"{net.name}, batch {batch}, {method}, 10%"
                    write_profile(fn, path, title, compiled if method == "compiled" else None)
            for method, seconds in times.items():
                m = macs[method]
                rows.append(
                    {
                        "network": net.name,
                        "density": density,
                        "batch": batch,
                        "method": method,
                        "median_ms": seconds * 1e3,
                        "speedup_vs_dense": times["dense"] / seconds,
                        "speedup_vs_dense_folded": times["dense_folded"] / seconds,
                        "live_macs_per_example": m,
                        "fraction_of_limit": None if m is None else m * batch / seconds / rate,
                        "max_abs_diff_vs_masked": diff if method == "compiled" else None,
                        "output_scale": scale,
                        "kept_weights": kept,
                        "wired_weights": total,
                        "channels_removed": None if report is None else report.removed,
                    }
                )
    return rows


def write_profile(
    fn: Callable[[], object], path: Path, title: str, model: nn.Module | None = None
) -> None:
    """Where one call spends its time, by operator (torch profiler), to ``path``.

    The sparse layers of ``model`` are labelled by class (``SparseConv2d``, ...): their
    kernels are called directly in eager mode, so the profiler would not name them.
    """
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    sparse = (graphwire.export.SparseLinear, graphwire.export.SparseConv2d)
    open_ranges: dict[int, record_function] = {}
    handles = []
    for m in model.modules() if model is not None else ():
        if isinstance(m, sparse):

            def enter(module, args):
                open_ranges[id(module)] = record_function(type(module).__name__).__enter__()

            def leave(module, args, out):
                open_ranges.pop(id(module)).__exit__(None, None, None)

            handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    try:
        fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
    finally:
        for h in handles:
            h.remove()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{title}\n{table}\n")


# ---------------------------------------------------------------------------- output
def target_lines(rows: list[dict]) -> list[str]:
    """The issue's targets: compiled over dense at 10% of weights, per network and batch."""
    out = [
        "Targets (issue #14): the compiled network at 10% of weights at least "
        + ", ".join(f"{t}x ({n})" for n, t in TARGETS.items())
        + " faster than the dense one.",
        "",
        "| network | batch | dense ms | compiled ms | speed-up | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    by = {(r["network"], r["density"], r["batch"], r["method"]): r for r in rows}
    for (name, density, batch, method), r in by.items():
        if method != "compiled" or abs(density - 0.1) > 1e-9:
            continue
        target = TARGETS.get(name)
        d = by[(name, density, batch, "dense")]
        speedup = r["speedup_vs_dense"]
        if target is None:
            verdict = "-"
        elif speedup >= target:
            verdict = "met"
        else:
            verdict = f"missed by {target / speedup:.2f}x"
        out.append(
            f"| {name} | {batch} | {d['median_ms']:.2f} | {r['median_ms']:.2f} | "
            f"{speedup:.2f}x | {target if target is not None else '-'}x | {verdict} |"
        )
    return out


def write_markdown(path: Path, result: dict) -> None:
    """The machine, one table row per measurement, and the targets."""
    m = result["machine"]
    lines = [
        "# Sparsified networks: dense vs masked vs compiled",
        "",
        f"Machine: {m['cpu']}, {m['cpu_cores']} cores, {m['torch_threads']} torch threads, "
        f"{m['allocator']}, torch {m['torch']}, device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else "")
        + f", sparse kernel built: {m['sparse_kernel']}. "
        f"float32 matmul rate: {result['matmul_macs_per_s'] / 1e9:.1f} G multiply-adds/s."
        + (" Smoke run: tiny networks, the numbers mean nothing." if result["smoke"] else ""),
        "",
        "Times are medians of "
        f"{result['repeats']} interleaved repeats after a warm-up, under "
        "`torch.inference_mode`. Selection: DNW's top-k of the initial weights, one rate per "
        "layer, first layer dense. Fraction: live multiply-adds (`graphwire.count`) per "
        "second over the matmul rate. Diff: largest absolute difference of the compiled "
        "model's outputs from the masked model's (outputs of order `scale`). The dense "
        "encoder runs torch's fused transformer fast path; the masked and compiled ones run "
        "without it (it reads each layer's raw, unmasked `weight`).",
        "",
        "| network | density | batch | method | median ms | speed-up vs dense "
        "| vs dense folded | live MACs | fraction of limit | diff | scale | channels removed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        macs = r["live_macs_per_example"]
        frac = r["fraction_of_limit"]
        diff = r["max_abs_diff_vs_masked"]
        removed = r["channels_removed"] if r["method"] == "compiled" else None
        lines.append(
            f"| {r['network']} | {r['density']:.0%} | {r['batch']} | {r['method']} | "
            f"{r['median_ms']:.2f} | {r['speedup_vs_dense']:.2f}x | "
            f"{r['speedup_vs_dense_folded']:.2f}x | {_si(macs)} | "
            f"{'' if frac is None else f'{frac:.3f}'} | "
            f"{'' if diff is None else f'{diff:.1e}'} | {r['output_scale']:.2g} | "
            f"{'' if removed is None else removed} |"
        )
    lines += ["", *target_lines(result["rows"])]
    path.write_text("\n".join(lines) + "\n")


def _si(value: float | None) -> str:
    if value is None:
        return ""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def plot(path: Path, rows: list[dict]) -> None:
    """Time against density, one panel per network and batch, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["network"], r["batch"]) for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    for ax, (name, batch) in zip(axes[0], panels):
        sub = [r for r in rows if (r["network"], r["batch"]) == (name, batch)]
        for method in dict.fromkeys(r["method"] for r in sub):
            pts = sorted((r["density"], r["median_ms"]) for r in sub if r["method"] == method)
            ax.plot(*zip(*pts), marker="o", label=method)
        ax.set(title=f"{name}, batch {batch}", xlabel="density", ylabel="median ms")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(out: Path, result: dict) -> None:
    """Write the JSON, the markdown table and the plot."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(out / "results.md", result)
    if result["rows"] and not result.get("no_plots"):
        plot(out / "time_vs_density.png", result["rows"])


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the suite."""
    parser.add_argument("--smoke", action="store_true", help="tiny networks, seconds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--models", nargs="*", default=None, help="subset of network names")
    parser.add_argument("--densities", nargs="*", type=float, default=None)
    parser.add_argument("--batches", nargs="*", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per method")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    parser.add_argument("--no-plots", action="store_true", help="skip the plot")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also write where the dense and compiled networks spend their time at 10%% "
        "(profile_NETWORK_bBATCH_METHOD.txt)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the suite and write JSON, markdown and a plot to ``args.out``."""
    set_threads(args.threads)
    device = torch.device(args.device)
    args.densities = args.densities or ([0.1] if args.smoke else list(DENSITIES))
    args.batches = args.batches or ([1, 2] if args.smoke else list(BATCHES))
    args.repeats = args.repeats or (1 if args.smoke else 10)
    chosen = [n for n in networks(args.smoke) if not args.models or n.name in args.models]
    if not chosen:
        names = ", ".join(n.name for n in networks(args.smoke))
        raise SystemExit(f"--models: none of {args.models} is a network here; choose from {names}")
    torch.manual_seed(0)
    rate = matmul_rate(device)
    result = {
        "machine": machine(device),
        "matmul_macs_per_s": rate,
        "smoke": args.smoke,
        "repeats": args.repeats,
        "densities": args.densities,
        "batches": args.batches,
        "no_plots": args.no_plots,
        "rows": [],
    }
    for net in chosen:
        result["rows"] += run_network(net, args, rate, device)
        save(args.out, result)  # after every network: a long run keeps what it measured
    print((args.out / "results.md").read_text())
    return 0
