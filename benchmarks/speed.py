"""Speed: reference backend vs masked dense vs graphwire's default path and frozen module.

For each case and density, on the same weights and inputs in one process, the suite
times (medians over interleaved repeats after warm-up):

1. ``reference``: ``WiredGraph(..., backend="reference")``, the message-passing oracle,
   inference;
2. ``masked_dense``: the full ``N x N`` dense weight times the mask, as a 1x1 conv over
   all node channels (how the paper's code runs), inference and training;
3. ``default``: the ``WiredGraph`` as a user builds it, with no compile call (the dense
   backend), inference under ``torch.inference_mode`` and training: forward + backward +
   SGD step + selection through :class:`~graphwire.DNWOptimizer`;
4. ``compiled_eval``: ``graphwire.compile(net, mode="eval")`` under inference mode.

Masked dense training runs the same step (straight-through weights, SGD, one top-k over
the candidate entries). Every row reports the median time, the ratio to masked dense
(same task: inference or training), peak memory, and the fraction of the machine's
limit: active-edge multiply-adds (three per edge and position when training) over the
rate of a large float32 matmul measured in the same process. A separate row times the
selection alone at 10 million candidate edges against a training step of that graph.

Results: ``results.json``, ``results.md`` and ``time_vs_density.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import graphwire
from graphwire import DNWOptimizer, ODESolver, ReachabilityError, WiredGraph
from graphwire.graph import complete_digraph, layered_dag
from graphwire.lowering import dag_stages, sparse_kernel_available
from graphwire.wiring import select_topk

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "speed"
DENSITIES = (0.01, 0.05, 0.10, 0.30)


@dataclass
class Case:
    """One benchmark graph: its builder arguments, mode, node op and feature shape."""

    name: str
    graph: Callable[[], graphwire.ChannelGraph]
    mode: str
    node_op: str
    batch: int
    features: tuple[int, ...]
    densities: tuple[float, ...] = DENSITIES
    kwargs: dict = field(default_factory=dict)


def cases(quick: bool) -> list[Case]:
    """The suite's cases; ``quick`` shrinks every size for a smoke run."""
    if quick:
        return [
            Case("layer256", lambda: layered_dag([64, 64]), "dag", "identity", 4, (8, 8)),
            Case("static", lambda: layered_dag([8, 32, 32, 32, 32]), "dag", "conv", 4, (8, 8)),
            Case(
                "discrete",
                lambda: complete_digraph(48, inputs=8, outputs=8),
                "discrete",
                "conv",
                4,
                (8, 8),
                kwargs={"steps": 5},
            ),
            Case(
                "continuous",
                lambda: complete_digraph(48, inputs=8, outputs=8),
                "continuous",
                "conv",
                4,
                (8, 8),
                kwargs={"solver": ODESolver(method="rk4", options={"step_size": 0.25})},
            ),
        ]
    static_k = 32000 / layered_dag([32, 192, 192, 192, 192]).num_edges
    return [
        Case("layer256", lambda: layered_dag([256, 256]), "dag", "identity", 64, (32, 32)),
        Case(
            "static",
            lambda: layered_dag([32, 192, 192, 192, 192]),
            "dag",
            "conv",
            64,
            (8, 8),
            densities=(*DENSITIES, round(static_k, 4)),
        ),
        Case(
            "discrete",
            lambda: complete_digraph(256, inputs=32, outputs=64),
            "discrete",
            "conv",
            32,
            (8, 8),
            kwargs={"steps": 5},
        ),
        Case(
            "continuous",
            lambda: complete_digraph(256, inputs=32, outputs=64),
            "continuous",
            "conv",
            32,
            (8, 8),
            # fixed steps: an adaptive solver's work changes as each method trains its
            # own copy of the weights, which would make the timings incomparable
            kwargs={"solver": ODESolver(method="rk4", options={"step_size": 0.25})},
        ),
    ]


# ---------------------------------------------------------------------------- baseline
class MaskedDense(nn.Module):
    """The paper's way: a dense ``N x N`` weight times a mask, applied as a 1x1 conv.

    Each topological step (DAG) or time step convolves *all* ``N`` node channels with the
    rows of ``W * M`` for the nodes it updates. Shares the node operations of ``net``.
    """

    def __init__(self, net: WiredGraph) -> None:
        super().__init__()
        g, n = net.graph, net.graph.num_nodes
        src, dst = g.edge_index
        self.mode, self.steps, self.solver = net.mode, net.steps, net.solver
        self.register_buffer("flat", dst * n + src)  # candidate entries of the square
        dense = torch.zeros(n * n, dtype=net.weight.dtype)
        dense[self.flat] = net.weight.detach()
        self.weight = nn.Parameter(dense.view(n, n))
        mask = torch.zeros(n * n, dtype=torch.bool)
        mask[self.flat] = net.edge_mask
        self.register_buffer("mask", mask.view(n, n))
        self.node_op, self.input_op = net.node_op, net.input_op
        self.register_buffer("inputs", g.inputs.clone())
        self.register_buffer("outputs", g.outputs.clone())
        updated = net.dense.layout.updated if net.mode != "dag" else torch.zeros(0).long()
        self.register_buffer("updated", updated.clone())
        steps = dag_stages(g) if net.mode == "dag" else []
        self.step_sizes = [s.numel() for s in steps]
        self.register_buffer(
            "step_nodes", torch.cat(steps) if steps else torch.zeros(0, dtype=torch.long)
        )
        self.num_nodes = n
        self.budget = net.budget

    @torch.no_grad()
    def reselect(self) -> None:
        """One top-k over the candidate entries of ``|W|``."""
        scores = self.weight.view(-1)[self.flat].abs()
        self.mask.view(-1)[self.flat] = select_topk(scores, self.budget)

    def matrix(self) -> Tensor:
        """Straight-through ``W * M``: masked forward, gradient to every entry."""
        return self.weight - (self.weight * ~self.mask).detach()

    def conv(self, z: Tensor, a: Tensor) -> Tensor:
        """1x1 convolution of all node channels ``z`` with ``a`` (``[m, N]``)."""
        return F.conv2d(z, a[:, :, None, None]) if z.dim() == 4 else z @ a.t()

    def forward(self, x: Tensor) -> Tensor:
        """Run the graph on the input nodes' features ``x``."""
        a = self.matrix()
        z0 = self.input_op(x, self.inputs)
        z = z0.new_zeros(z0.shape[0], self.num_nodes, *z0.shape[2:])
        z = z.index_copy(1, self.inputs, z0)  # [B, N, *F]
        if self.mode == "dag":
            for nodes in self.step_nodes.split(self.step_sizes):
                z = z.index_copy(1, nodes, self.node_op(self.conv(z, a[nodes]), nodes))
        elif self.mode == "discrete":
            for _ in range(self.steps):
                upd = self.node_op(self.conv(z, a[self.updated]), self.updated)
                z = z.index_copy(1, self.updated, upd)
        else:
            from torchdiffeq import odeint

            a_u = a[self.updated]

            def dynamics(t: Tensor, z: Tensor) -> Tensor:
                dz = self.node_op(self.conv(z, a_u), self.updated)
                return torch.zeros_like(z).index_copy(1, self.updated, dz)

            t = torch.tensor([0.0, self.solver.t1], dtype=z.dtype, device=z.device)
            z = odeint(dynamics, z, t, **self.solver.as_kwargs())[-1]
        return z.index_select(1, self.outputs)


# ---------------------------------------------------------------------------- measuring
def peak_memory(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak memory in MB allocated while ``fn`` runs, above what was live before it.

    CUDA: the caching allocator's peak. CPU: the running sum of every allocation and
    free recorded by the torch profiler, in time order (glibc keeps freed pages
    resident, so the process's resident size would miss reuse).
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    live = peak = 0
    for event in events:  # self usage: allocations minus frees of the op itself
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device, warmup: bool = True
):
    """Median seconds of each function, interleaved, after one warm-up call each."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values() if warmup else ():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_rate(device: torch.device, size: int = 2048) -> float:
    """Multiply-adds per second of a large float32 matmul on ``device``."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = timed({"mm": lambda: torch.mm(a, b)}, 5, device)["mm"]
    return size**3 / seconds


def machine(device: torch.device) -> dict:
    """Where the numbers come from."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    preload = os.environ.get("LD_PRELOAD", "")
    allocator = next((a for a in ("jemalloc", "tcmalloc", "mimalloc") if a in preload), "glibc")
    info = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "allocator": f"{allocator} malloc" + (f" (LD_PRELOAD={preload})" if preload else ""),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "sparse_kernel": sparse_kernel_available(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["allocator"] = "torch CUDA caching allocator"
    return info


# ---------------------------------------------------------------------------- one point
def run_point(case: Case, density: float, args, rate: float, device: torch.device) -> list:
    """Time every method on one case at one density; return result rows."""
    graph = case.graph()
    net = WiredGraph(
        graph, node_op=case.node_op, mode=case.mode, density=density, seed=0, **case.kwargs
    ).to(device)
    x = torch.randn(case.batch, graph.inputs.numel(), *case.features, device=device)
    dense = MaskedDense(net).to(device)
    ref = WiredGraph(
        graph, node_op=case.node_op, mode=case.mode, density=density, seed=0, **case.kwargs
    ).to(device)
    ref.load_state_dict(net.state_dict())
    ref.backend = "reference"
    try:
        frozen = graphwire.compile(net, mode="eval")
    except ReachabilityError:  # so sparse that no output sees the data: nothing to run
        frozen = None
    opt_net = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9))
    opt_dense = torch.optim.SGD(dense.parameters(), lr=1e-3, momentum=0.9)
    # the reference gathers one message per selected edge and position: it runs on batch
    # chunks that keep that tensor near 16 MB, and is timed on the first chunk only, then
    # scaled by the number of chunks (its cost is linear in the batch)
    selected = int(net.mask().sum())
    per_sample = selected * max(x[0, 0].numel(), 1) * x.element_size()
    chunk = max(1, min(case.batch, (16 << 20) // per_sample))
    scale = case.batch / chunk

    def reference():
        with torch.inference_mode():
            ref(x[:chunk])

    with torch.no_grad():  # agreement with the reference, on the first chunk
        part = x[:chunk]
        expected = ref(part)
        grad_out = torch.randn_like(net(x))
        check = {
            "masked_dense": float((dense(part) - expected).abs().max()),
            "default": float((net(part) - expected).abs().max()),
        }
    if frozen is not None:
        with torch.inference_mode():
            check["compiled_eval"] = float((frozen(part) - expected).abs().max())

    def train_default():
        opt_net.zero_grad()
        net(x).backward(grad_out)
        opt_net.step()

    def train_dense():
        opt_dense.zero_grad()
        dense(x).backward(grad_out)
        opt_dense.step()
        dense.reselect()

    def infer(module):
        def run():
            with torch.inference_mode():
                module(x)

        return run

    infer_fns = {"masked_dense": infer(dense), "default": infer(net)}
    if frozen is not None:
        infer_fns["compiled_eval"] = infer(frozen)
    train_fns = {"masked_dense": train_dense, "default": train_default}
    inf_t = timed(infer_fns, args.repeats, device)
    train_t = timed(train_fns, args.repeats, device)
    ref_t = timed({"reference": reference}, 1, device, warmup=False)["reference"]
    ref_t *= scale

    # active-edge multiply-adds of one forward pass
    positions = case.batch * int(torch.tensor(case.features).prod()) if case.features else 1
    passes = {"dag": 1, "discrete": case.kwargs.get("steps", 1)}.get(case.mode)
    if passes is None:  # continuous: count the solver's function evaluations
        net.nfe = 0
        with torch.no_grad():
            net(x)
        passes = net.nfe
    macs_eval = None if frozen is None else frozen.kept_edges * positions * passes
    macs_train = 3 * selected * positions * passes

    rows = []

    def row(task, method, seconds, baseline, macs, fn):
        rows.append(
            {
                "case": case.name,
                "mode": case.mode,
                "density": density,
                "candidates": graph.num_edges,
                "selected": selected,
                "task": task,
                "method": method,
                "median_ms": seconds * 1e3,
                "speedup_vs_masked_dense": baseline / seconds,
                "peak_mb": peak_memory(fn, device) if fn is not None else None,
                "fraction_of_limit": None if macs is None else macs / seconds / rate,
                "max_abs_diff_vs_reference": check.get(method),
            }
        )

    base = inf_t["masked_dense"]
    row("inference", "reference", ref_t, base, selected * positions * passes, None)
    rows[-1]["timed_on_batch"] = chunk  # and scaled to the full batch
    row("inference", "masked_dense", base, base, None, infer_fns["masked_dense"])
    macs_default = selected * positions * passes
    row("inference", "default", inf_t["default"], base, macs_default, infer_fns["default"])
    if frozen is not None:  # None: no output reachable under this selection
        row(
            "inference",
            "compiled_eval",
            inf_t["compiled_eval"],
            base,
            macs_eval,
            infer_fns["compiled_eval"],
        )
    base = train_t["masked_dense"]
    row("train", "masked_dense", base, base, None, train_dense)
    row("train", "default", train_t["default"], base, macs_train, train_default)
    rows[-1]["dropped_nodes_eval"] = None if frozen is None else frozen.dropped_nodes
    return rows


def _selection_graph(args, device: torch.device):
    """The ~10M-candidate layered graph of the selection row, with its optimizer."""
    blocks = [32, 1024, 1024, 1024, 1024, 1024] if not args.quick else [16, 256, 256, 256]
    batch = 16 if not args.quick else 2
    net = WiredGraph(layered_dag(blocks), node_op="conv", density=0.05, seed=0).to(device)
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9))
    return net, opt, torch.randn(batch, blocks[0], 8, 8, device=device)


def selection_point(args, device: torch.device) -> dict:
    """Selection time at ~10M candidate edges against one training step."""
    net, opt, x = _selection_graph(args, device)

    def step():
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()

    scores = net.weight.detach().abs()
    times = timed(
        {
            "select_topk": lambda: select_topk(scores, net.budget),
            "reselect": net.reselect,
            "train_step": step,
        },
        args.repeats,
        device,
    )
    return {
        "candidates": net.graph.num_edges,
        "selected": int(net.mask().sum()),
        "batch": x.shape[0],
        "features": [8, 8],
        "select_topk_ms": times["select_topk"] * 1e3,
        "reselect_ms": times["reselect"] * 1e3,
        "train_step_ms": times["train_step"] * 1e3,
        "selection_share_of_step": times["reselect"] / times["train_step"],
    }


def sparse_candidates(n: int, fan_in: int, n_in: int, n_out: int, seed: int = 0):
    """A cyclic graph of ``n`` nodes where each non-input node has ``fan_in`` candidates.

    A chain ``v - 1 -> v`` keeps every output reachable; the other sources are random.
    Its dense recurrent block holds about ``n / fan_in`` entries per candidate edge.
    """
    gen = torch.Generator().manual_seed(seed)
    dst = torch.arange(n_in, n).repeat_interleave(fan_in)
    src = torch.randint(0, n, (dst.numel(),), generator=gen)
    src[::fan_in] = dst[::fan_in] - 1  # the chain
    pairs = torch.unique(torch.stack([src, dst]), dim=1)
    return graphwire.ChannelGraph(pairs, n, inputs=range(n_in), outputs=range(n - n_out, n))


def crossover_points(args, device: torch.device) -> list[dict]:
    """Dense against reference backend as the candidate set thins (``backend="auto"``)."""
    from graphwire.lowering import dense_fill

    n, batch = (128, 8) if args.quick else (512, 64)
    fans = (32, 4) if args.quick else (256, 64, 16, 4, 1)
    rows = []
    for fan_in in fans:
        graph = sparse_candidates(n, fan_in, 16, 8)
        kw = dict(node_op="relu", mode="discrete", steps=3, density=0.5, seed=0)
        nets = {b: WiredGraph(graph, backend=b, **kw).to(device) for b in ("dense", "reference")}
        x = torch.randn(batch, 16, device=device)
        fns = {}
        for name, net in nets.items():
            opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=1e-3))

            def step(net=net, opt=opt, x=x):
                opt.zero_grad()
                net(x).pow(2).mean().backward()
                opt.step()

            fns[name] = step
        times = timed(fns, args.repeats, device)
        auto = WiredGraph(graph, **kw).backend
        rows.append(
            {
                "nodes": n,
                "fan_in": fan_in,
                "candidates": graph.num_edges,
                "fill": dense_fill(graph, "discrete"),
                "dense_train_ms": times["dense"] * 1e3,
                "reference_train_ms": times["reference"] * 1e3,
                "auto_picks": auto,
            }
        )
    return rows


def profile_selection(args, device: torch.device, path: Path) -> None:
    """Write where one training step of the selection graph spends its time."""
    from torch.profiler import ProfilerActivity, profile, record_function

    net, opt, x = _selection_graph(args, device)

    def step():
        opt.zero_grad()
        with record_function("forward"):
            y = net(x)
        with record_function("backward"):
            y.sum().backward()
        with record_function("sgd"):
            opt.base_optimizer.step()
        with record_function("reselect"):
            net.reselect()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=30)
    path.write_text(f"One training step, {net.graph.num_edges:,} candidates\n{table}")


# ---------------------------------------------------------------------------- output
def write_markdown(path: Path, result: dict) -> None:
    """A markdown table of every row, plus the machine and the selection row."""
    m = result["machine"]
    lines = [
        "# Speed suite",
        "",
        f"Machine: {m['cpu']}, {m['cpu_cores']} cores, {m['torch_threads']} torch threads, "
        f"{m['allocator']}, torch {m['torch']}, device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else "")
        + f", sparse kernel built: {m['sparse_kernel']}. "
        f"float32 matmul rate: {result['matmul_macs_per_s'] / 1e9:.1f} G multiply-adds/s.",
        "",
        "Times are medians after warm-up, methods interleaved. Speed-up is against masked "
        "dense on the same task. Fraction: active-edge multiply-adds per second over the "
        "matmul rate.",
        "",
        "| case | density | task | method | median ms | speed-up vs masked dense "
        "| peak MB | fraction of limit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        peak = "" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        frac = "" if r["fraction_of_limit"] is None else f"{r['fraction_of_limit']:.3f}"
        lines.append(
            f"| {r['case']} | {r['density']:.2%} | {r['task']} | {r['method']} | "
            f"{r['median_ms']:.2f} | {r['speedup_vs_masked_dense']:.2f}x | {peak} | {frac} |"
        )
    lines += ["", *target_lines(result["rows"])]
    cross = result.get("crossover")
    if cross:
        lines += [
            "",
            '`backend="auto"`: dense against reference training step (discrete time, 3 '
            "steps, vector nodes, 50% of candidates kept) as the candidate set thins; `fill` is "
            "dense block entries per candidate edge.",
            "",
            "| nodes | fan-in | candidates | fill | dense ms | reference ms | faster "
            "| auto picks |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in cross:
            faster = "dense" if c["dense_train_ms"] <= c["reference_train_ms"] else "reference"
            lines.append(
                f"| {c['nodes']} | {c['fan_in']} | {c['candidates']:,} | {c['fill']:.1f} | "
                f"{c['dense_train_ms']:.2f} | {c['reference_train_ms']:.2f} | {faster} | "
                f"{c['auto_picks']} |"
            )
    s = result.get("selection")
    if s:
        lines += [
            "",
            f"Selection at {s['candidates']:,} candidate edges ({s['selected']:,} selected): "
            f"select_topk {s['select_topk_ms']:.1f} ms, reselect {s['reselect_ms']:.1f} ms, "
            f"training step (batch {s['batch']}, 8x8) {s['train_step_ms']:.0f} ms: "
            f"selection is {s['selection_share_of_step']:.2%} of a step.",
        ]
    path.write_text("\n".join(lines) + "\n")


def target_lines(rows: list[dict]) -> list[str]:
    """The backends issue's inference target per point: default within 1.5x of frozen."""
    by = {(r["case"], r["density"], r["task"], r["method"]): r for r in rows}
    out = [
        "Default path (no compile call) against the frozen module "
        '(`compile(mode="eval")`), inference; target: at most 1.5x its time.',
        "",
        "| case | density | default ms | frozen ms | default / frozen | target |",
        "|---|---|---|---|---|---|",
    ]
    for (case, density, task, method), r in by.items():
        if task != "inference" or method != "default":
            continue
        frozen = by.get((case, density, "inference", "compiled_eval"))
        if frozen is None:
            out.append(f"| {case} | {density:.2%} | {r['median_ms']:.2f} | - | - | no frozen |")
            continue
        ratio = r["median_ms"] / frozen["median_ms"]
        verdict = "met" if ratio <= 1.5 else "missed"
        out.append(
            f"| {case} | {density:.2%} | {r['median_ms']:.2f} | {frozen['median_ms']:.2f} | "
            f"{ratio:.2f}x | {verdict} |"
        )
    return out


def plot(path: Path, rows: list[dict]) -> None:
    """Time against density, one panel per case, one line per task and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["case"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        sub = [r for r in rows if r["case"] == name]
        for key in dict.fromkeys((r["task"], r["method"]) for r in sub):
            pts = sorted(
                (r["density"], r["median_ms"]) for r in sub if (r["task"], r["method"]) == key
            )
            ax.plot(*zip(*pts), marker="o", label=f"{key[1]} ({key[0]})")
        ax.set(title=name, xlabel="density", ylabel="median ms", yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the speed suite."""
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per method")
    parser.add_argument("--cases", nargs="*", default=None, help="subset of case names")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    parser.add_argument("--no-selection", action="store_true", help="skip the 10M selection row")
    parser.add_argument(
        "--no-crossover", action="store_true", help="skip the dense/reference crossover rows"
    )
    parser.add_argument(
        "--profile", action="store_true", help="only profile the selection graph's training step"
    )
    parser.add_argument(
        "--append", action="store_true", help="keep other cases' rows from an earlier run in --out"
    )


def run(args: argparse.Namespace) -> int:
    """Run the suite and write JSON, markdown and a plot to ``args.out``."""
    from tqdm import tqdm

    device = torch.device(args.device)
    if args.profile:
        args.out.mkdir(parents=True, exist_ok=True)
        profile_selection(args, device, args.out / "profile_selection.txt")
        print((args.out / "profile_selection.txt").read_text())
        return 0
    args.repeats = args.repeats or (3 if args.quick else 5)
    chosen = [c for c in cases(args.quick) if not args.cases or c.name in args.cases]
    torch.manual_seed(0)
    rate = matmul_rate(device)
    result = {"machine": machine(device), "matmul_macs_per_s": rate, "quick": args.quick}
    result["cases"] = [
        {k: v for k, v in asdict(c).items() if k not in ("graph", "kwargs")} for c in chosen
    ]
    rows, names = [], {c.name for c in chosen}
    previous = args.out / "results.json"
    if args.append and previous.exists():  # keep the other cases of an earlier run
        old = json.loads(previous.read_text())
        rows = [r for r in old["rows"] if r["case"] not in names]
        result["selection"] = old.get("selection")
    points = [(c, d) for c in chosen for d in c.densities]
    for case, density in tqdm(points, desc="speed", unit="point"):
        rows += run_point(case, density, args, rate, device)
        result["rows"] = rows
        save(args.out, result)  # after every point: a long run keeps what it measured
    if not args.no_selection:
        result["selection"] = selection_point(args, device)
    if not args.no_crossover:
        result["crossover"] = crossover_points(args, device)
    save(args.out, result)
    print((args.out / "results.md").read_text())
    return 0


def save(out: Path, result: dict) -> None:
    """Write the JSON, the markdown table and the plot."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    write_markdown(out / "results.md", result)
    plot(out / "time_vs_density.png", result["rows"])
