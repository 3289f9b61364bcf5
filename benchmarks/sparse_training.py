"""sparse-training: the time of one training step, dense vs masked vs graphwire's sparse step.

For each network, rule, density and batch size, on the same weights and masks in one
process, the suite times one optimizer step (forward, backward, SGD with momentum and
weight decay, the rule's hooks) of three methods:

1. ``dense``: the network as built, no mask (plain ``torch.optim.SGD``): what sparsity
   is measured against in the accuracy tables, shown for scale;
2. ``masked``: the masked dense step, the baseline of the issue's targets. For RigL and
   SET it is rigl-torch's way: a plain dense network whose inactive weights are zero,
   a dense forward and backward, the gradients multiplied by the masks before the step
   and the weights after it, and on an update step drop-and-grow by ``torch.topk`` per
   layer (RigL from the dense gradient, SET at random). For DNW it is the paper's way:
   one dense weight per layer, the straight-through product ``w - (w * ~mask).detach()``
   in the forward pass (``torch.func.functional_call``), dense gradients, and a new top-k
   per layer after every step;
3. ``masked_graphwire``: graphwire's own masked dense step, the same wired layers as
   ``sparse`` with ``kernel="dense"`` (the weight times its mask, dense products), so
   the two differ only in the products; for DNW it is the stronger baseline (graphwire's
   top-k is faster than ``torch.topk`` per layer);
4. ``sparse``: the network after :func:`graphwire.layers.sparsify` with the same rule
   and masks, trained by :class:`graphwire.DNWOptimizer` as a user would; its wired
   layers pick sparse products where the cost model says they pay (``kernel="auto"``);
5. ``sparse_forced``: the same with every wired layer on sparse products
   (``kernel="sparse"``), to show what the cost model turned down.

The targets are checked against the strongest baseline, the faster of the two masked
steps.

Times are medians over interleaved segments of steps (each method in turn, the order
rotating; 4 steps of the ResNet, 8 of the small CNN, 30 of the MLP, so that the first,
cold step after a switch weighs alike). RigL and SET are timed twice: on their regular
steps (no mask update) and on update steps (``delta_t=1``), and the step *averaged over a
run* with the paper's ``delta_t=100`` is ``(99 * regular + update) / 100``; the targets
are checked on that average. DNW has one kind of step.

Networks: the CIFAR ResNet-20 (``models.resnet_cifar``, 32 x 32), a small CNN (three 3 x 3
convolutions of 32, 64 and 128 channels with max pooling, then a linear classifier, on
32 x 32) and the MLP 784-300-100-10 (the classic sparse-training benchmark); every
convolution and linear layer is wired at the density (one rate per layer). The fraction
of the machine's limit is the live multiply-adds a step must compute (three times the
forward's live multiply-adds from ``graphwire.count``: forward, input gradient and weight
gradient; for DNW the weight gradient's are the dense ones; for ``dense`` all dense) per
second over the rate of a large float32 matmul measured in the same process; the same
count for every method of a rule, so the fractions compare as the times do.

Results: ``results.json``, ``results.md`` (tables and the targets), ``step_time.png``
(step time against density per network and batch) in ``--out``; ``--profile`` adds where
the sparse step spends its time at 10% (the torch profiler's table by operator), per
network, rule and batch. ``--smoke`` runs tiny networks in seconds (the tests run it).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import graphwire
from benchmarks._common import set_threads
from benchmarks.speed import machine, matmul_rate
from graphwire import DNWOptimizer
from graphwire.layers import sparsify
from graphwire.wiring import SET, RigL
from models.resnet import resnet_cifar

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sparse_training"
DENSITIES = (0.1, 0.2, 0.3)
BATCHES = (32, 128)
RULES = ("rigl", "set", "dnw")
#: The paper's steps between RigL / SET updates: the run average weighs update steps so.
DELTA_T = 100
#: The issue's targets at 10% of weights: the sparse step over the masked dense one.
TARGETS = {("resnet_cifar", "rigl"): 2.0, ("resnet_cifar", "set"): 2.0, ("mlp", "rigl"): 2.0}
TARGETS |= {("mlp", "set"): 2.0, **{(n, "dnw"): 1.3 for n in ("resnet_cifar", "mlp")}}
LR = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
#: The methods timed, in the rows' order.
METHODS = ("dense", "masked", "masked_graphwire", "sparse", "sparse_forced")


@dataclass(frozen=True)
class Net:
    """One network of the suite: how to build it dense, one example's shape, classes."""

    name: str
    build: Callable[[], nn.Module]
    example: tuple[int, ...]
    steps: int = 4  # steps per timed segment: short steps run longer segments


def small_cnn(width: int = 32, classes: int = 10) -> nn.Module:
    """Three 3 x 3 convolutions (``width``, 2x, 4x channels) with pooling, then a classifier."""
    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * w, 4 * w, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, classes),
    )


def mlp(sizes: tuple[int, ...] = (784, 300, 100, 10)) -> nn.Module:
    """Linear layers of ``sizes`` with ReLUs between."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def networks(smoke: bool) -> list[Net]:
    """The suite's networks; ``smoke`` shrinks each to a toy of the same structure."""
    if smoke:
        return [
            Net("resnet_cifar", lambda: resnet_cifar(depth=8, width=4, sparse=False), (3, 8, 8)),
            Net("small_cnn", lambda: small_cnn(4), (3, 8, 8)),
            Net("mlp", lambda: mlp((64, 32, 16, 10)), (64,)),
        ]
    return [
        Net("resnet_cifar", lambda: resnet_cifar(sparse=False), (3, 32, 32)),
        Net("small_cnn", small_cnn, (3, 32, 32), steps=8),
        Net("mlp", mlp, (784,), steps=30),
    ]


def make_rule(name: str, delta_t: int):
    """A fresh rule for the sparse model (RigL / SET with ``delta_t``, never ending)."""
    if name == "rigl":
        return RigL(alpha=0.3, delta_t=delta_t)
    if name == "set":
        return SET(zeta=0.3, delta_t=delta_t, seed=0)
    return "dnw"


# ------------------------------------------------------------------------ the baselines
class MaskedDense:
    """The masked dense step: rigl-torch's way (RigL, SET) or the paper's (DNW).

    A plain dense copy of the network; ``masks`` maps each wired weight's name to its
    mask. See the module docstring for the step of each rule.
    """

    def __init__(self, dense: nn.Module, masks: dict[str, Tensor], rule: str, delta_t: int):
        self.model, self.rule, self.delta_t = dense, rule, delta_t
        self.params = dict(dense.named_parameters())
        self.masks = {name: m.clone() for name, m in masks.items()}
        self.counts = {name: int(m.sum()) for name, m in masks.items()}
        self.opt = torch.optim.SGD(dense.parameters(), **LR)
        self.steps = 0
        self.generator = torch.Generator().manual_seed(0)
        if rule != "dnw":  # rigl-torch: inactive weights are zero
            with torch.no_grad():
                for name, mask in self.masks.items():
                    self.params[name].mul_(mask)

    def forward(self, x: Tensor) -> Tensor:
        """The network's output; DNW's through the straight-through product."""
        if self.rule != "dnw":
            return self.model(x)
        effective = {  # the paper's straight-through product, per layer
            name: (w - (w * ~self.masks[name]).detach()) if name in self.masks else w
            for name, w in self.params.items()
        }
        return torch.func.functional_call(self.model, effective, (x,))

    def step(self, x: Tensor, y: Tensor) -> None:
        """One training step on ``(x, y)``, with the rule's mask handling."""
        self.steps += 1
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.forward(x), y).backward()
        with torch.no_grad():
            if self.rule == "dnw":
                self.opt.step()
                for name, mask in self.masks.items():  # a new top-k per layer
                    w = self.params[name].detach().abs().reshape(-1)
                    new = torch.zeros_like(mask).reshape(-1)
                    new[torch.topk(w, self.counts[name]).indices] = True
                    mask.copy_(new.view_as(mask))
                return
            update = self.steps % self.delta_t == 0
            if update:
                self._drop_and_grow()
            for name, mask in self.masks.items():
                self.params[name].grad.mul_(mask)
            self.opt.step()
            for name, mask in self.masks.items():
                self.params[name].mul_(mask)

    def _drop_and_grow(self) -> None:
        """rigl-torch's update: drop 30% smallest |w|, grow by |grad| (RigL) or at random."""
        for name, mask in self.masks.items():
            w, g = self.params[name].detach().reshape(-1), self.params[name].grad.reshape(-1)
            flat = mask.reshape(-1)
            active = int(flat.sum())
            drop = int(0.3 * active)
            score = torch.where(flat, w.abs(), torch.full_like(w, -float("inf")))
            keep = torch.topk(score, active - drop).indices
            new = torch.zeros_like(flat)
            new[keep] = True
            if self.rule == "rigl":
                grow_score = g.abs()
            else:
                grow_score = torch.rand(w.shape, generator=self.generator)
            grow_score = torch.where(new, torch.full_like(grow_score, -float("inf")), grow_score)
            new[torch.topk(grow_score, drop).indices] = True
            grown = new & ~flat
            w[grown] = 0.0
            flat.copy_(new)


# ---------------------------------------------------------------------------- timing
def step_fn(method: str, model, opt, x: Tensor, y: Tensor) -> Callable[[], None]:
    """One training step of ``method`` on ``(x, y)``."""
    if method == "masked":
        return lambda: model.step(x, y)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def interleaved(fns: dict[str, Callable[[], None]], repeats: int, steps: int) -> dict[str, float]:
    """Median seconds per step of each method: ``repeats`` rotating rounds of ``steps`` steps."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    for i in range(repeats):
        for name, fn in order[i % len(order) :] + order[: i % len(order)]:
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(ts) for name, ts in times.items()}


def build(net: Net, rule: str, density: float, delta_t: int):
    """The dense network, its sparsified copy and the masked baseline on the same weights."""
    torch.manual_seed(0)
    dense = net.build()
    sparse = sparsify(dense, rule=make_rule(rule, delta_t), density=density, seed=0)
    masks = {
        name + ".weight": m.edge_mask
        for name, m in sparse.named_modules()
        if hasattr(m, "edge_mask")
    }
    with torch.no_grad():  # the same weights (the sparsified copy zeroed its inactive ones)
        for name, p in sparse.named_parameters():
            dict(dense.named_parameters())[name].copy_(p)
    masked = MaskedDense(copy.deepcopy(dense), masks, rule, delta_t)
    plain = copy.deepcopy(dense)
    graphwire_dense = copy.deepcopy(sparse)  # the same wired layers on dense products
    forced = copy.deepcopy(sparse)  # ... and on sparse products wherever they run
    for dense_copy, forced_copy in zip(graphwire_dense.modules(), forced.modules()):
        if hasattr(dense_copy, "kernel"):
            dense_copy.kernel, forced_copy.kernel = "dense", "sparse"
    return {
        "dense": (plain, torch.optim.SGD(plain.parameters(), **LR)),
        "masked": (masked, None),
        "masked_graphwire": (graphwire_dense, gw_optimizer(graphwire_dense)),
        "sparse": (sparse, gw_optimizer(sparse)),
        "sparse_forced": (forced, gw_optimizer(forced)),
    }


def gw_optimizer(model: nn.Module) -> DNWOptimizer:
    """What a graphwire user trains with: SGD wrapped by :class:`graphwire.DNWOptimizer`."""
    return DNWOptimizer(model, torch.optim.SGD(model.parameters(), **LR))


def sparse_share(model: nn.Module, x: Tensor) -> str:
    """Which wired layers chose sparse products on ``x``: ``"k of n"`` (forward hooks)."""
    from graphwire.layers import WiredConv1d, WiredConv2d, WiredLinear

    chosen: list[bool] = []

    def hook(module, args):
        chosen.append(module.runs_sparse(args[0]))

    handles = [
        m.register_forward_pre_hook(hook)
        for m in model.modules()
        if isinstance(m, (WiredLinear, WiredConv1d, WiredConv2d))
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return f"{sum(chosen)} of {len(chosen)}"


def forward_macs(model: nn.Module, example: tuple[int, ...]) -> float:
    """Live multiply-adds of one example's forward pass (``graphwire.count``)."""
    return float(graphwire.count(model, (1, *example)).macs)


def run_config(net: Net, rule: str, density: float, batch: int, args, rate: float) -> list[dict]:
    """Every method of one (network, rule, density, batch): result rows."""
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, *net.example, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    kinds = {"regular": 10**9} if rule == "dnw" else {"regular": 10**9, "update": 1}
    times: dict[str, dict[str, float]] = {}
    share = ""
    for kind, delta_t in kinds.items():
        methods = build(net, rule, density, delta_t)
        fns = {m: step_fn(m, model, opt, x, y) for m, (model, opt) in methods.items()}
        segment = args.steps or (1 if args.smoke else net.steps)
        repeats, steps = (args.repeats, segment) if kind == "regular" else (args.repeats, 1)
        times[kind] = interleaved(fns, repeats, steps)
        if kind == "regular":
            share = sparse_share(methods["sparse"][0], x)
            live = forward_macs(methods["sparse"][0], net.example)
            dense_macs = forward_macs(methods["dense"][0], net.example)
            if args.profile and abs(density - 0.1) < 1e-9:
                write_profile(fns["sparse"], args.out / f"profile_{net.name}_{rule}_b{batch}.txt")
    rows = []
    for method in METHODS:
        regular = times["regular"][method]
        update = times.get("update", {}).get(method)
        average = regular if update is None else ((DELTA_T - 1) * regular + update) / DELTA_T
        if method == "dense":  # the live multiply-adds of the step (what it must compute)
            step_macs = 3 * dense_macs
        elif rule == "dnw":  # DNW's weight gradient is dense
            step_macs = 2 * live + dense_macs
        else:
            step_macs = 3 * live
        rows.append(
            {
                "network": net.name,
                "rule": rule,
                "density": density,
                "batch": batch,
                "method": method,
                "regular_ms": regular * 1e3,
                "update_ms": None if update is None else update * 1e3,
                "average_ms": average * 1e3,
                "step_macs": step_macs * batch,
                "fraction_of_limit": step_macs * batch / average / rate,
                "sparse_layers": share if method == "sparse" else None,
            }
        )
    masked = rows[1]["average_ms"]  # rows follow METHODS
    strongest = min(rows[1]["average_ms"], rows[2]["average_ms"])
    for r in rows:
        r["speedup_vs_masked"] = masked / r["average_ms"]
        r["speedup_vs_strongest"] = strongest / r["average_ms"]
    return rows


def write_profile(fn: Callable[[], None], path: Path) -> None:
    """Where one sparse step spends its time, by operator (torch profiler), to ``path``."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            fn()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{path.stem} (3 steps)\n{table}\n")


# ---------------------------------------------------------------------------- output
def target_lines(rows: list[dict]) -> list[str]:
    """The issue's targets at 10%: the sparse step's run average over the strongest baseline."""
    out = [
        "## Targets (issue #25), at 10% of weights",
        "",
        "RigL and SET: the sparse step averaged over a run (update steps included, "
        f"delta_t={DELTA_T}) at least 2x the masked dense step on the CIFAR ResNet and the "
        "MLP; DNW at least 1.3x.",
        "",
        "| network | rule | batch | strongest masked ms | sparse ms | speed-up | target "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = TARGETS.get((r["network"], r["rule"]))
        if r["method"] != "sparse" or abs(r["density"] - 0.1) > 1e-9 or target is None:
            continue
        speedup = r["speedup_vs_strongest"]
        strongest = r["average_ms"] * speedup
        verdict = "met" if speedup >= target else f"missed by {target / speedup:.2f}x"
        out.append(
            f"| {r['network']} | {r['rule']} | {r['batch']} | {strongest:.2f} | "
            f"{r['average_ms']:.2f} | {speedup:.2f}x | {target}x | {verdict} |"
        )
    return out


def write_markdown(path: Path, result: dict) -> None:
    """The machine, one row per measurement, and the targets."""
    m = result["machine"]
    lines = [
        "# Sparse training: one training step, dense vs masked vs sparse",
        "",
        f"Machine: {m['cpu']}, {m['cpu_cores']} cores, {m['torch_threads']} torch threads, "
        f"{m['allocator']}, torch {m['torch']}, device {m['device']}, sparse kernels "
        f"built: {m['sparse_kernel']}. float32 matmul rate: "
        f"{result['matmul_macs_per_s'] / 1e9:.1f} G multiply-adds/s."
        + (" Smoke run: tiny networks, the numbers mean nothing." if result["smoke"] else ""),
        "",
        f"Medians of {result['repeats']} interleaved segments of {result['steps']} steps "
        "(per network) "
        "(update steps: segments of one). `regular`: a step without a mask update; "
        "`update`: a RigL / SET update step; `average`: the run average at "
        f"delta_t={DELTA_T}. Speed-ups: the average of the masked dense step (rigl-torch's "
        "way, the paper's for DNW), and of the faster of it and graphwire's own masked step, "
        "over the method's. "
        "Fraction: the step's live multiply-adds per second over the matmul rate. "
        "`sparse layers`: the wired layers whose cost model chose sparse products.",
        "",
        "| network | rule | density | batch | method | regular ms | update ms | average ms "
        "| vs masked | vs strongest | fraction of limit | sparse layers |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        update = "" if r["update_ms"] is None else f"{r['update_ms']:.2f}"
        lines.append(
            f"| {r['network']} | {r['rule']} | {r['density']:.0%} | {r['batch']} | "
            f"{r['method']} | {r['regular_ms']:.2f} | {update} | {r['average_ms']:.2f} | "
            f"{r['speedup_vs_masked']:.2f}x | {r['speedup_vs_strongest']:.2f}x | "
            f"{r['fraction_of_limit']:.3f} | "
            f"{r['sparse_layers'] or ''} |"
        )
    lines += ["", *target_lines(result["rows"])]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, rows: list[dict]) -> None:
    """Step time (run average) against density, a line per method.

    A row of panels per rule, a column per network and batch (``dense`` has no mask: one
    level).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = list(dict.fromkeys(r["rule"] for r in rows))
    columns = list(dict.fromkeys((r["network"], r["batch"]) for r in rows))
    fig, axes = plt.subplots(
        len(rules), len(columns), figsize=(3.0 * len(columns), 2.6 * len(rules)), squeeze=False
    )
    styles = {
        "dense": "k:",
        "masked": "C0--",
        "masked_graphwire": "C1--",
        "sparse": "C2-",
        "sparse_forced": "C3:",
    }
    for i, rule in enumerate(rules):
        for j, (name, batch) in enumerate(columns):
            ax = axes[i][j]
            sub = [r for r in rows if (r["rule"], r["network"], r["batch"]) == (rule, name, batch)]
            for method, style in styles.items():
                pts = sorted((r["density"], r["average_ms"]) for r in sub if r["method"] == method)
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", markersize=3, label=method)
            ax.set_title(f"{name}, batch {batch}, {rule}", fontsize=8)
            ax.set_ylim(bottom=0)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if i == len(rules) - 1:
                ax.set_xlabel("density", fontsize=8)
            if j == 0:
                ax.set_ylabel("ms per step", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save(out: Path, result: dict) -> None:
    """Write the JSON, the markdown and the plot."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(out / "results.md", result)
    if result["rows"] and not result["no_plots"]:
        plot(out / "step_time.png", result["rows"])


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the suite."""
    parser.add_argument("--smoke", action="store_true", help="tiny networks, seconds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--models", nargs="*", default=None, help="subset of network names")
    parser.add_argument("--rules", nargs="*", default=None, choices=RULES)
    parser.add_argument("--densities", nargs="*", type=float, default=None)
    parser.add_argument("--batches", nargs="*", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed segments per method")
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per timed segment (default per network)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-plots", action="store_true", help="skip the plot")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also write where the sparse step spends its time at 10%% "
        "(profile_NETWORK_RULE_bBATCH.txt)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the suite and write JSON, markdown and a plot to ``args.out``."""
    set_threads(args.threads)
    args.densities = args.densities or ([0.1] if args.smoke else list(DENSITIES))
    args.batches = args.batches or ([4] if args.smoke else list(BATCHES))
    args.repeats = args.repeats or (1 if args.smoke else 5)
    rules = args.rules or list(RULES)
    chosen = [n for n in networks(args.smoke) if not args.models or n.name in args.models]
    if not chosen:
        names = ", ".join(n.name for n in networks(args.smoke))
        raise SystemExit(f"--models: none of {args.models} is a network here; choose from {names}")
    device = torch.device("cpu")
    result = {
        "machine": machine(device),
        "matmul_macs_per_s": matmul_rate(device),
        "smoke": args.smoke,
        "repeats": args.repeats,
        "steps": args.steps or {n.name: n.steps for n in chosen},
        "no_plots": args.no_plots,
        "rows": [],
    }
    for net in chosen:
        for rule in rules:
            for density in args.densities:
                for batch in args.batches:
                    rows = run_config(net, rule, density, batch, args, result["matmul_macs_per_s"])
                    result["rows"] += rows
                    s = rows[3]
                    print(
                        f"{net.name} {rule} {density:.0%} b{batch}: masked "
                        f"{rows[1]['average_ms']:.2f} ms, graphwire masked "
                        f"{rows[2]['average_ms']:.2f} ms, sparse {s['average_ms']:.2f} ms "
                        f"({s['speedup_vs_strongest']:.2f}x the strongest, sparse layers "
                        f"{s['sparse_layers']})",
                        flush=True,
                    )
            save(args.out, result)  # after every rule: a long run keeps what it measured
    print((args.out / "results.md").read_text())
    return 0
