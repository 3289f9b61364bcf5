"""Speed: graphwire against the baselines a user would write, with the speed issue's targets.

Every point (a case at one density) builds one :class:`~graphwire.WiredGraph` and
mirrors its weights, selection and node operations into every baseline, so all methods
run the same network on the same inputs. Methods are timed interleaved in one process
(medians over ``--repeats`` after one warm-up call each, ``--infer-repeats`` for the
inference timings of the points, whose calls take milliseconds; CUDA synchronised):

- ``paper_dense`` (baseline 1, :class:`benchmarks._baselines.PaperDense`): the paper's
  way, one dense ``[N, N]`` masked weight with straight-through gradients, one matmul or
  1x1 conv over the node channels per stage or time step, one ``torch.topk`` per step;
  inference and training (forward, backward, SGD step, re-selection);
- ``pruned`` (baseline 2, single layers only): ``nn.Conv2d`` / ``nn.Linear`` on the
  layer's own channels under ``torch.nn.utils.prune``, inference;
- ``compiled_dense`` (baseline 3): ``graphwire.freeze(net, kernel="dense")``, the
  compacted model (dead nodes removed, channels compacted) with dense products only;
  and ``torch_csr`` (baseline 3b): the same compacted model with every block a
  ``torch.sparse`` CSR matrix (``torch.sparse.mm``), inference;
- ``reference`` (baseline 4, the 200-node cases only): message passing, inference, for
  scale;
- ``default``: ``WiredGraph`` as built (no compile call), inference under
  ``torch.inference_mode`` and training through :class:`~graphwire.DNWOptimizer`;
- ``compiled_eval``: ``graphwire.freeze(net)`` (dense or sparse blocks by its cost
  model), inference.

Each row names the baseline of its ratio. The suite measures the machine's float32
matmul rate and copy bandwidth at start, and reports per row the fraction of each that
the row's active-edge multiply-adds and node-feature bytes reach. It computes every
target of the speed issue (see :func:`targets`) and writes ``results.json``,
``results.md`` (tables, targets, profiles of missed cases) and ``time_vs_density.png``.
"""

from __future__ import annotations

import argparse
import contextlib
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
from torch import nn

import graphwire
from benchmarks._baselines import PaperDense, pruned_layer, torch_csr_model, updated_nodes
from graphwire import DNWOptimizer, ReachabilityError, WiredGraph
from graphwire.export import kernel_info
from graphwire.graph import complete_digraph, layered_dag

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "speed"
DENSITIES = (0.01, 0.05, 0.10, 0.30)
#: The speed issue's targets.
TRAIN_MIN, TRAIN_MIN_DAG = 1.0, 1.5
LAYER_MIN_VS_PRUNED, STATIC_MIN_VS_COMPACTED = 3.0, 1.5
SELECTION_MAX_SHARE = 0.02
#: Peak memory counts as higher than baseline 1's beyond this fraction (and half a MB):
#: the CPU figure sums the profiler's allocation records, which vary a little per run.
MEMORY_SLACK = 0.02
#: Where each ratio comes from, for the tables.
BASELINES = {
    "paper_dense": "baseline 1: the paper's dense [N, N] masked weight",
    "pruned": "baseline 2: torch.nn.utils.prune on the layer's own Conv2d / Linear",
    "compiled_dense": 'baseline 3: compacted dense model, graphwire.freeze(kernel="dense")',
    "torch_csr": "baseline 3b: the compacted model with torch.sparse CSR blocks",
    "reference": "baseline 4: message passing (backend='reference')",
}
RK4 = {"method": "rk4", "options": {"step_size": 0.25}}
DOPRI5 = {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3}


@dataclass
class Case:
    """One benchmark graph: its builder, mode, node op, batch and feature shape."""

    name: str
    graph: Callable[[], graphwire.ChannelGraph]
    mode: str
    node_op: str
    batch: int
    features: tuple[int, ...]
    densities: tuple[float, ...] = DENSITIES
    kwargs: dict = field(default_factory=dict)
    reference: bool = False  # time message passing too (small graphs only)
    layer: bool = False  # a single layer: time the pruned torch layer too


def _family(
    prefix, dag, cyclic, node_op, batch, features, reference=False, extra=(), dag_batch=None
):
    """The four modes of one node kind and size: DAG, discrete, RK4 and dopri5."""
    kw = dict(node_op=node_op, batch=batch, features=features, reference=reference)
    dag_kw = {**kw, "batch": dag_batch or batch}
    return [
        Case(f"{prefix}_dag", dag, "dag", densities=(*DENSITIES, *extra), **dag_kw),
        Case(f"{prefix}_discrete", cyclic, "discrete", kwargs={"steps": 5}, **kw),
        Case(f"{prefix}_rk4", cyclic, "continuous", kwargs={"solver": RK4}, **kw),
        Case(f"{prefix}_dopri5", cyclic, "continuous", kwargs={"solver": DOPRI5}, **kw),
    ]


def cases(quick: bool) -> list[Case]:
    """The suite's cases; ``quick`` shrinks every size for a smoke run.

    Names: ``layer256`` (the 256 -> 256 layer on 64 x 32 x 32 features), then
    ``{vec,img}{200,800}_{dag,discrete,rk4,dopri5}``: vector or 8 x 8 image nodes, 200
    nodes or the tiny classifier's 800, in each mode (continuous time by fixed-step RK4
    and adaptive dopri5). ``img800_dag`` is the static tiny classifier's graph; it also
    runs at the paper's k (13.02% of its candidates).
    """
    if quick:
        return [
            Case(
                "layer256", lambda: layered_dag([32, 32]), "dag", "identity", 4, (8, 8), layer=True
            ),
            *_family(
                "vec200",
                lambda: layered_dag([8, 8, 8]),
                lambda: complete_digraph(24, inputs=4, outputs=4),
                "relu",
                8,
                (),
                reference=True,
            ),
            *_family(
                "img800",
                lambda: layered_dag([8, 16, 16]),
                lambda: complete_digraph(32, inputs=8, outputs=8),
                "conv",
                2,
                (4, 4),
                reference=True,
            ),
        ]
    static = layered_dag([32, 192, 192, 192, 192])
    static_k = round(32000 / static.num_edges, 4)
    chosen = [
        Case(
            "layer256", lambda: layered_dag([256, 256]), "dag", "identity", 64, (32, 32), layer=True
        ),
        *_family(
            "vec200",
            lambda: layered_dag([40] * 5),
            lambda: complete_digraph(200, inputs=20, outputs=20),
            "relu",
            128,
            (),
            reference=True,
        ),
        *_family(
            "img200",
            lambda: layered_dag([40] * 5),
            lambda: complete_digraph(200, inputs=20, outputs=20),
            "conv",
            16,
            (8, 8),
            reference=True,
        ),
        *_family(
            "vec800",
            lambda: layered_dag([32, 192, 192, 192, 192]),
            lambda: complete_digraph(800, inputs=32, outputs=100),
            "relu",
            128,
            (),
        ),
        *_family(
            "img800",
            lambda: layered_dag([32, 192, 192, 192, 192]),
            lambda: complete_digraph(800, inputs=32, outputs=100),
            "conv",
            4,  # the dynamic modes run 5 steps or 16+ evaluations: a small batch
            (8, 8),
            extra=(static_k,),
            dag_batch=32,
        ),
    ]
    for case in chosen:  # about 32 evaluations forward and back: the smallest batch
        if case.name == "img800_dopri5":
            case.batch = 2
    return chosen


# ---------------------------------------------------------------------------- measuring
def peak_memory(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak memory in MB allocated while ``fn`` runs, above what was live before it.

    CUDA: the caching allocator's peak. CPU: the running sum of every allocation and
    free recorded by the torch profiler, in time order (glibc keeps freed pages
    resident, so the process's resident size would miss reuse).
    """
    if device.type == "cuda":
        gc.collect()
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
) -> dict[str, float]:
    """Median seconds of each function, interleaved, after one warm-up call each.

    Each repeat starts one method later in the order (a rotation), so every method runs
    after each other equally often: in a fixed order the method after one that runs the
    same network (``compiled_eval`` after ``default``) finds the caches warm, and the
    one after the dense baseline finds them cold.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values() if warmup else ():
        fn()
    order = list(fns.items())
    for i in range(repeats):
        for name, fn in order[i % len(order) :] + order[: i % len(order)]:
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


def copy_bandwidth(device: torch.device, mb: int = 128) -> float:
    """Bytes per second of a large float32 copy on ``device`` (read plus write)."""
    src = torch.randn(mb * 2**18, device=device)
    dst = torch.empty_like(src)
    seconds = timed({"copy": lambda: dst.copy_(src)}, 5, device)["copy"]
    return 2 * src.numel() * src.element_size() / seconds


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
        "sparse_kernel": kernel_info()["available"],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["allocator"] = "torch CUDA caching allocator"
    return info


def top_ops(fn: Callable[[], object], device: torch.device, rows: int = 8) -> str:
    """A small profile of one call of ``fn``: the top ops by self time."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        _sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=40)


class Precision:
    """The timed calls' precision: float32, or autocast to bfloat16 / float16."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.name, self.device = name, device
        self.dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]

    def __call__(self):
        """A context: autocast, or nothing for float32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def wrap(self, fn: Callable[[], object]) -> Callable[[], object]:
        """``fn`` run under this precision."""

        def run():
            with self():
                return fn()

        return run


# ---------------------------------------------------------------------------- one point
def run_point(case: Case, density: float, args, rates: dict, device: torch.device) -> list:
    """Time every method on one case at one density; return result rows."""
    prec = Precision(args.precision, device)
    graph = case.graph()
    kw = dict(node_op=case.node_op, mode=case.mode, density=density, seed=0, **case.kwargs)
    net = WiredGraph(graph, **kw).to(device)
    x = torch.randn(case.batch, graph.inputs.numel(), *case.features, device=device)
    dense = PaperDense(net).to(device)
    try:
        frozen = graphwire.freeze(net)
        compacted = graphwire.freeze(net, kernel="dense")
        csr = torch_csr_model(net)
    except ReachabilityError:  # so sparse that no output sees the data: nothing to run
        frozen = compacted = csr = None
    opt_net = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9))
    opt_dense = torch.optim.SGD(dense.parameters(), lr=1e-3, momentum=0.9)
    selected = int(net.mask().sum())
    with torch.no_grad():
        grad_out = torch.randn_like(net(x))

    def train_default():
        opt_net.zero_grad()
        net(x).backward(grad_out)
        opt_net.step()

    def train_dense():
        opt_dense.zero_grad()
        dense(x).backward(grad_out)
        opt_dense.step()
        dense.reselect()

    def infer(module, inp=x):
        def run():
            with torch.inference_mode():
                module(inp)

        return run

    infer_fns = {"paper_dense": infer(dense), "default": infer(net)}
    if frozen is not None:
        infer_fns.update(
            compiled_eval=infer(frozen), compiled_dense=infer(compacted), torch_csr=infer(csr)
        )
    if case.layer:
        image = len(case.features) == 2
        pruned = pruned_layer(net, image)
        infer_fns["pruned"] = infer(pruned)

    # agreement with the reference (message passing) on a batch chunk, before training
    ref = WiredGraph(graph, **kw, backend="reference").to(device)
    ref.load_state_dict(net.state_dict())
    per_sample = selected * max(x[0, 0].numel(), 1) * x.element_size()
    chunk = max(1, min(case.batch, (16 << 20) // max(per_sample, 1)))
    part = x[:chunk]
    check = {}
    with torch.no_grad(), prec():
        expected = ref(part).float()
        for name, module in (("paper_dense", dense), ("default", net)):
            check[name] = float((module(part).float() - expected).abs().max())
        if frozen is not None:
            with torch.inference_mode():
                for name, module in (
                    ("compiled_eval", frozen),
                    ("compiled_dense", compacted),
                    ("torch_csr", csr),
                ):
                    check[name] = float((module(part).float() - expected).abs().max())
        if case.layer:
            check["pruned"] = float((pruned(part).float() - expected).abs().max())

    # continuous time: function evaluations of one forward pass, per method
    nfe = {}
    if case.mode == "continuous":
        with torch.no_grad(), prec():
            net.nfe, dense.nfe = 0, 0
            net(x)
            dense(x)
            nfe = {"default": net.nfe, "paper_dense": dense.nfe}

    # inference in evaluation mode (the default path runs its training backend; the
    # frozen module is graphwire.compile's); training in training mode
    net.eval(), dense.eval()
    infer_t = timed({k: prec.wrap(f) for k, f in infer_fns.items()}, args.infer_repeats, device)
    net.train(), dense.train()
    train_fns = {"paper_dense": train_dense, "default": train_default}
    train_t = timed({k: prec.wrap(f) for k, f in train_fns.items()}, args.repeats, device)
    if case.reference and not args.no_reference:
        # timed on one batch chunk (its cost is linear in the batch), scaled to the batch
        t = timed({"r": prec.wrap(infer(ref, part))}, 1, device, warmup=False)["r"]
        infer_t["reference"] = t * case.batch / chunk

    positions = case.batch * (int(torch.tensor(case.features).prod()) if case.features else 1)
    item = x.element_size() if prec.dtype is None else torch.finfo(prec.dtype).bits // 8

    def passes(method: str) -> int:
        if case.mode == "dag":
            return 1
        if case.mode == "discrete":
            return case.kwargs["steps"]
        return nfe.get(method, nfe.get("default", 1))

    base = {
        "case": case.name,
        "mode": case.mode,
        "solver": case.kwargs.get("solver", {}).get("method"),
        "node_kind": "image" if case.features else "vector",
        "nodes": graph.num_nodes,
        "batch": case.batch,
        "density": density,
        "candidates": graph.num_edges,
        "selected": selected,
        "precision": prec.name,
    }
    rows = []

    def row(task, method, seconds, fn, ratios):
        if method in ("compiled_eval", "compiled_dense", "torch_csr"):
            edges, nodes = frozen.kept_edges, frozen.kept_nodes
        elif method == "pruned":
            edges, nodes = selected, graph.num_nodes
        else:
            edges, nodes = selected, graph.num_nodes
        work = 3 if task == "train" else 1  # forward, input gradients, weight gradients
        macs = work * edges * positions * passes(method)
        moved = work * 2 * nodes * positions * item * passes(method)
        measure = fn is not None and not args.no_memory
        rows.append(
            {
                **base,
                "task": task,
                "method": method,
                "median_ms": seconds * 1e3,
                **{f"vs_{b}": t / seconds for b, t in ratios.items()},
                "peak_mb": peak_memory(prec.wrap(fn), device) if measure else None,
                "compute_fraction": macs / seconds / rates["matmul_macs_per_s"],
                "memory_fraction": moved / seconds / rates["copy_bytes_per_s"],
                "max_abs_diff_vs_reference": check.get(method),
                "nfe": nfe.get(method),
            }
        )

    for method, seconds in infer_t.items():
        ratios = {"paper_dense": infer_t["paper_dense"]}
        if "pruned" in infer_t:
            ratios["pruned"] = infer_t["pruned"]
        if method == "compiled_eval":
            ratios["compiled_dense"] = infer_t["compiled_dense"]
        memory_fn = infer_fns.get(method) if method in ("paper_dense", "default") else None
        if method == "compiled_eval":
            memory_fn = infer_fns[method]
        row("inference", method, seconds, memory_fn, ratios)
        if method == "reference":
            rows[-1]["timed_on_batch"] = chunk
    for method, seconds in train_t.items():
        row("train", method, seconds, train_fns[method], {"paper_dense": train_t["paper_dense"]})
    if frozen is not None:
        rows[-1]["dropped_nodes_eval"] = frozen.dropped_nodes

    # a missed training target: where the time of graphwire's step goes
    ratio = train_t["paper_dense"] / train_t["default"]
    if ratio < (TRAIN_MIN_DAG if case.mode == "dag" else TRAIN_MIN) and not args.no_profile:
        rows[-1]["profile"] = top_ops(prec.wrap(train_default), device)
    return rows


# ---------------------------------------------------------------------------- trained static
def trained_static_point(args, rates: dict, device: torch.device) -> dict:
    """Inference of the tiny static classifier's graph after a short DNW training.

    The model (``models.create_model("tiny_static")``: 800 nodes, k = 32,000) trains for
    ``--train-steps`` SGD steps (lr 0.1, momentum 0.9, re-selection after each) on the
    embedded digits upscaled to 32 x 32; its graph is then compiled with the cost model
    and with dense blocks only, and each is timed on the stem's features of a batch.
    """
    from graphwire.training import load_dataset
    from models import create_model

    prec = Precision(args.precision, device)
    size = dict(num_nodes=80, k=600, stem_channels=8, readout=8) if args.quick else {}
    model = create_model("tiny_static", in_channels=1, seed=0, **size).to(device)
    data = load_dataset("digits", upscale=4).train
    gen = torch.Generator().manual_seed(0)
    opt = DNWOptimizer(
        model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    )
    batch = 64 if not args.quick else 8
    steps = args.train_steps if args.train_steps is not None else (2 if args.quick else 60)
    start = time.perf_counter()
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data), (batch,), generator=gen)
        xb, yb = data.tensors[0][idx].to(device), data.tensors[1][idx].to(device)
        opt.zero_grad()
        with prec():
            loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - start
    model.eval()
    net = model.graph_net
    with torch.no_grad():
        z = model.stem(data.tensors[0][:batch].to(device))
    methods = {
        "compiled_eval": graphwire.freeze(net),
        "compiled_dense": graphwire.freeze(net, kernel="dense"),
        "torch_csr": torch_csr_model(net),
        "default": net,
        "paper_dense": PaperDense(net).to(device),
    }

    def infer(module):
        def run():
            with torch.inference_mode(), prec():
                module(z)

        return run

    times = timed({k: infer(m) for k, m in methods.items()}, args.repeats, device)
    frozen = methods["compiled_eval"]
    return {
        "train_steps": steps,
        "train_s": train_s,
        "nodes": net.graph.num_nodes,
        "batch": batch,
        "candidates": net.graph.num_edges,
        "selected": int(net.mask().sum()),
        "kept_nodes": frozen.kept_nodes,
        "kept_edges": frozen.kept_edges,
        "times_ms": {k: t * 1e3 for k, t in times.items()},
        "vs_compiled_dense": times["compiled_dense"] / times["compiled_eval"],
    }


# ---------------------------------------------------------------------------- selection
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

    times = timed(
        {
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


def recurrent_fill(graph: graphwire.ChannelGraph) -> float:
    """Entries of a recurrent graph's dense blocks (``[n_u, n_u + n_h]``) per candidate edge."""
    nu = updated_nodes(graph).numel()
    return nu * graph.num_nodes / max(graph.num_edges, 1)


def crossover_points(args, device: torch.device) -> list[dict]:
    """Dense against reference backend as the candidate set thins (``backend="auto"``)."""
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
                "fill": recurrent_fill(graph),
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


# ---------------------------------------------------------------------------- targets
def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "missed")


def targets(result: dict) -> list[dict]:
    """Each target of the speed issue: its baseline, outcome and the worst shortfall.

    1. Training step >= 1.0x baseline 1 on every point, >= 1.5x on layered DAGs.
    2. Inference at 10% density >= 3x baseline 2 on the 256 -> 256 layer (graphwire's
       faster inference path), and >= 1.5x the compacted dense model (baseline 3) on the
       tiny static classifier's graph after training.
    3. Re-selection under 2% of a training step at ~10M candidates.
    4. Peak memory of graphwire's training step and inference no higher than baseline 1.
    """
    rows, out = result["rows"], []
    train = [r for r in rows if r["task"] == "train" and r["method"] == "default"]
    for name, want, keep in (
        ("training step, every point", TRAIN_MIN, lambda r: True),
        ("training step, layered DAGs", TRAIN_MIN_DAG, lambda r: r["mode"] == "dag"),
    ):
        pts = [r for r in train if keep(r)]
        missed = [r for r in pts if r["vs_paper_dense"] < want]
        worst = min(pts, key=lambda r: r["vs_paper_dense"]) if pts else None
        out.append(
            {
                "target": f"{name}: >= {want:.1f}x",
                "baseline": "paper_dense",
                "outcome": _verdict(not missed if pts else None),
                "detail": (
                    f"{len(pts) - len(missed)} of {len(pts)} points met; worst "
                    f"{worst['vs_paper_dense']:.2f}x ({worst['case']} at {worst['density']:.0%})"
                    + (
                        "; missed: "
                        + ", ".join(
                            f"{r['case']}@{r['density']:.0%} {r['vs_paper_dense']:.2f}x"
                            for r in missed
                        )
                        if missed
                        else ""
                    )
                    if pts
                    else "no points"
                ),
            }
        )
    layer = [
        r
        for r in rows
        if r["case"] == "layer256"
        and r["task"] == "inference"
        and abs(r["density"] - 0.10) < 1e-9
        and r["method"] in ("compiled_eval", "default")
    ]
    best = max(layer, key=lambda r: r["vs_pruned"]) if layer else None
    out.append(
        {
            "target": f"inference, 256 -> 256 layer at 10%: >= {LAYER_MIN_VS_PRUNED:.0f}x",
            "baseline": "pruned",
            "outcome": _verdict(None if best is None else best["vs_pruned"] >= LAYER_MIN_VS_PRUNED),
            "detail": "no point"
            if best is None
            else f"{best['method']} {best['vs_pruned']:.2f}x ("
            + ", ".join(f"{r['method']} {r['vs_pruned']:.2f}x" for r in layer)
            + ")",
        }
    )
    static = result.get("trained_static")
    out.append(
        {
            "target": f"inference, trained tiny static graph: >= {STATIC_MIN_VS_COMPACTED:.1f}x",
            "baseline": "compiled_dense",
            "outcome": _verdict(
                None if not static else static["vs_compiled_dense"] >= STATIC_MIN_VS_COMPACTED
            ),
            "detail": "not run"
            if not static
            else f"compiled_eval {static['vs_compiled_dense']:.2f}x after "
            f"{static['train_steps']} DNW steps ({static['kept_nodes']} nodes, "
            f"{static['kept_edges']:,} edges kept)",
        }
    )
    sel = result.get("selection")
    out.append(
        {
            "target": f"selection under {SELECTION_MAX_SHARE:.0%} of a step at ~10M candidates",
            "baseline": "graphwire's own training step",
            "outcome": _verdict(
                None if not sel else sel["selection_share_of_step"] < SELECTION_MAX_SHARE
            ),
            "detail": "not run"
            if not sel
            else f"{sel['selection_share_of_step']:.2%} ({sel['reselect_ms']:.1f} ms of "
            f"{sel['train_step_ms']:.0f} ms at {sel['candidates']:,} candidates)",
        }
    )
    by = {(r["case"], r["density"], r["task"], r["method"]): r for r in rows}
    over = []
    for (case, density, task, method), r in by.items():
        if method not in ("default", "compiled_eval") or r["peak_mb"] is None:
            continue
        b = by.get((case, density, task, "paper_dense"))
        if (
            b is not None
            and b["peak_mb"] is not None
            and r["peak_mb"] > b["peak_mb"] * (1 + MEMORY_SLACK) + 0.5
        ):
            over.append(
                f"{case}@{density:.0%} {task} {method} {r['peak_mb']:.0f} MB "
                f"> {b['peak_mb']:.0f} MB"
            )
    measured = any(r["peak_mb"] is not None for r in rows)
    out.append(
        {
            "target": "peak memory no higher than baseline 1",
            "baseline": "paper_dense",
            "outcome": _verdict(not over if measured else None),
            "detail": ("higher at: " + "; ".join(over))
            if over
            else ("no point higher" if measured else "not measured"),
        }
    )
    return out


# ---------------------------------------------------------------------------- output
def _f(value, spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def write_markdown(path: Path, result: dict) -> None:
    """The results page: machine, baselines, targets, tables, profiles."""
    m, rates = result["machine"], result["rates"]
    lines = [
        "# Speed suite",
        "",
        f"Machine: {m['cpu']}, {m['cpu_cores']} cores, {m['torch_threads']} torch threads, "
        f"{m['allocator']}, torch {m['torch']}, device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else "")
        + f", sparse kernel built: {m['sparse_kernel']}, precision {result['precision']}. "
        f"Measured at start: float32 matmul {rates['matmul_macs_per_s'] / 1e9:.1f} G "
        f"multiply-adds/s, copy {rates['copy_bytes_per_s'] / 1e9:.1f} GB/s."
        + (" Quick (smoke) sizes: not a measurement." if result.get("quick") else ""),
        "",
        "Times are medians after one warm-up call, all methods interleaved in one process on "
        "the same weights, inputs and selection. Every ratio names its baseline "
        "(`x` > 1: graphwire is faster):",
        "",
        *[f"- `{k}`: {v}" for k, v in BASELINES.items()],
        "",
        "`default` is `WiredGraph` as built (no compile call); `compiled_eval` is "
        "`graphwire.freeze(net)`. Fractions of the machine's limit: active-edge "
        "multiply-adds (x3 for a training step) per second over the matmul rate "
        "(`compute`), and node-feature bytes (each node written and read once per stage or "
        "function evaluation, x3 for training) per second over the copy bandwidth "
        "(`memory`).",
        "",
        "## Targets",
        "",
        "| target | baseline | outcome | detail |",
        "|---|---|---|---|",
    ]
    for t in result.get("targets", []):
        lines.append(f"| {t['target']} | `{t['baseline']}` | {t['outcome']} | {t['detail']} |")
    rows = result["rows"]
    lines += [
        "",
        "## Training step (forward, backward, SGD step, re-selection)",
        "",
        "| case | density | paper_dense ms | default ms | default vs paper_dense "
        "| peak MB (paper / default) | compute | memory | nfe (paper / default) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["case"], r["density"], r["task"], r["method"]): r for r in rows}
    for (case, density, task, method), r in by.items():
        if task != "train" or method != "default":
            continue
        b = by[(case, density, task, "paper_dense")]
        lines.append(
            f"| {case} | {density:.2%} | {b['median_ms']:.2f} | {r['median_ms']:.2f} | "
            f"{r['vs_paper_dense']:.2f}x | {_f(b['peak_mb'], '.1f')} / {_f(r['peak_mb'], '.1f')} "
            f"| {r['compute_fraction']:.3f} | {r['memory_fraction']:.3f} | "
            f"{_f(b['nfe'], 'd')} / {_f(r['nfe'], 'd')} |"
        )
    lines += [
        "",
        "## Inference",
        "",
        "Ratios: `vs_paper_dense` against baseline 1 for every method; on `layer256` also "
        "`vs_pruned` (baseline 2); for `compiled_eval` also `vs_compiled_dense` (baseline 3: "
        "the sparse kernel's gain over compaction alone).",
        "",
        "| case | density | method | median ms | vs paper_dense | vs pruned "
        "| vs compiled_dense | peak MB | compute | memory | max abs diff vs reference |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["task"] != "inference":
            continue
        lines.append(
            f"| {r['case']} | {r['density']:.2%} | {r['method']} | {r['median_ms']:.2f} | "
            f"{r['vs_paper_dense']:.2f}x | {_f(r.get('vs_pruned'), '.2f', 'x')} | "
            f"{_f(r.get('vs_compiled_dense'), '.2f', 'x')} | {_f(r['peak_mb'], '.1f')} | "
            f"{r['compute_fraction']:.3f} | {r['memory_fraction']:.3f} | "
            f"{_f(r['max_abs_diff_vs_reference'], '.1e')} |"
        )
    static = result.get("trained_static")
    if static:
        t = static["times_ms"]
        lines += [
            "",
            "## Trained tiny static classifier (inference of its graph)",
            "",
            f"`tiny_static` ({static['nodes']} nodes, k = {static['selected']:,}) after "
            f"{static['train_steps']} DNW steps on "
            f"the digits at 32 x 32 ({static['train_s']:.0f} s), batch {static['batch']} of "
            f"stem features; compiled: {static['kept_nodes']} nodes and "
            f"{static['kept_edges']:,} of {static['selected']:,} edges kept. A short training, "
            "not the paper's 160 epochs: a fully trained graph has more dead nodes.",
            "",
            "| method | median ms | compiled_dense / method |",
            "|---|---|---|",
        ]
        for k, v in t.items():
            lines.append(f"| {k} | {v:.2f} | {t['compiled_dense'] / v:.2f}x |")
    cross = result.get("crossover")
    if cross:
        lines += [
            "",
            '## `backend="auto"`',
            "",
            "Dense against reference training step (discrete time, 3 steps, vector nodes, 50% "
            "of candidates kept) as the candidate set thins; `fill` is dense block entries per "
            "candidate edge.",
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
            "## Selection",
            "",
            f"At {s['candidates']:,} candidate edges ({s['selected']:,} selected): "
            f"reselect {s['reselect_ms']:.1f} ms, "
            f"training step (batch {s['batch']}, 8x8) {s['train_step_ms']:.0f} ms: "
            f"selection is {s['selection_share_of_step']:.2%} of a step.",
        ]
    profiled = [r for r in rows if r.get("profile")]
    if profiled:
        lines += [
            "",
            "## Where the time goes in missed training points",
            "",
            "One profiled training step of graphwire's default path, top ops by self time.",
        ]
        for r in profiled:
            lines += [
                "",
                f"### {r['case']} at {r['density']:.2%}: {r['vs_paper_dense']:.2f}x paper_dense",
                "",
                "```",
                r["profile"].rstrip(),
                "```",
            ]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, rows: list[dict]) -> None:
    """Time against density, one panel per case, one line per task and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["case"] for r in rows))
    cols = min(len(names), 6)
    nrows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        sub = [r for r in rows if r["case"] == name]
        for key in dict.fromkeys((r["task"], r["method"]) for r in sub):
            pts = sorted(
                (r["density"], r["median_ms"]) for r in sub if (r["task"], r["method"]) == key
            )
            ax.plot(*zip(*pts), marker="o", label=f"{key[1]} ({key[0]})")
        ax.set(title=name, xlabel="density", ylabel="median ms", yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the speed suite."""
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per method")
    parser.add_argument(
        "--infer-repeats",
        type=int,
        default=None,
        help="timed repeats per method of each point's inference (default 25, quick 3)",
    )
    parser.add_argument("--cases", nargs="*", default=None, help="subset of case names")
    parser.add_argument("--densities", nargs="*", type=float, default=None, help="subset")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    parser.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="float32, or every timed call under torch.autocast to this dtype",
    )
    parser.add_argument("--no-selection", action="store_true", help="skip the 10M selection row")
    parser.add_argument(
        "--no-crossover", action="store_true", help="skip the dense/reference crossover rows"
    )
    parser.add_argument(
        "--no-static", action="store_true", help="skip the trained tiny static classifier"
    )
    parser.add_argument("--train-steps", type=int, default=None, help="its DNW steps")
    parser.add_argument("--no-reference", action="store_true", help="skip message passing")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    parser.add_argument(
        "--no-profile", action="store_true", help="no profile of missed training points"
    )
    parser.add_argument(
        "--profile", action="store_true", help="only profile the selection graph's training step"
    )
    parser.add_argument(
        "--append", action="store_true", help="keep other cases' rows from an earlier run in --out"
    )


def run(args: argparse.Namespace) -> int:
    """Run the suite and write JSON, markdown and a plot to ``args.out``."""
    device = torch.device(args.device)
    if args.profile:
        args.out.mkdir(parents=True, exist_ok=True)
        profile_selection(args, device, args.out / "profile_selection.txt")
        print((args.out / "profile_selection.txt").read_text())
        return 0
    started = time.perf_counter()
    args.repeats = args.repeats or (3 if args.quick else 5)
    # a median of 5 calls of a few milliseconds moved the inference ratios by up to 0.4
    # between runs on a shared VM; inference calls are cheap, so take more of them
    args.infer_repeats = getattr(args, "infer_repeats", None) or (3 if args.quick else 25)
    chosen = [c for c in cases(args.quick) if not args.cases or c.name in args.cases]
    torch.manual_seed(0)
    small = args.quick and device.type == "cpu"
    rates = {
        "matmul_macs_per_s": matmul_rate(device, 512 if small else 2048),
        "copy_bytes_per_s": copy_bandwidth(device, 16 if small else 128),
    }
    result = {
        "machine": machine(device),
        "rates": rates,
        "quick": args.quick,
        "precision": args.precision,
        "baselines": BASELINES,
    }
    result["cases"] = [
        {k: v for k, v in asdict(c).items() if k not in ("graph", "kwargs")} for c in chosen
    ]
    rows, names = [], {c.name for c in chosen}
    previous = args.out / "results.json"
    if args.append and previous.exists():  # keep the other cases of an earlier run
        old = json.loads(previous.read_text())
        rows = [r for r in old["rows"] if r["case"] not in names]
        for key in ("selection", "crossover", "trained_static"):
            result[key] = old.get(key)
    points = [
        (c, d)
        for c in chosen
        for d in c.densities
        if args.densities is None or any(abs(d - e) < 1e-9 for e in args.densities)
    ]
    for i, (case, density) in enumerate(points):
        t0 = time.perf_counter()
        rows += run_point(case, density, args, rates, device)
        print(
            f"[{i + 1}/{len(points)}] {case.name} {density:.2%}: {time.perf_counter() - t0:.1f} s"
        )
        result["rows"] = rows
        save(args.out, result, figure=False)  # after every point: a long run keeps its rows
    result["rows"] = rows
    if not args.no_static:
        result["trained_static"] = trained_static_point(args, rates, device)
    if not args.no_selection:
        result["selection"] = selection_point(args, device)
    if not args.no_crossover:
        result["crossover"] = crossover_points(args, device)
    result["wall_s"] = time.perf_counter() - started
    save(args.out, result)
    print((args.out / "results.md").read_text())
    print(f"speed suite: {result['wall_s']:.0f} s")
    return 0


def save(out: Path, result: dict, figure: bool = True) -> None:
    """Write the JSON, the markdown page and (with ``figure``) the plot."""
    out.mkdir(parents=True, exist_ok=True)
    result["targets"] = targets(result)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    write_markdown(out / "results.md", result)
    if figure and result["rows"]:
        plot(out / "time_vs_density.png", result["rows"])
