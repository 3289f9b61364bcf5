"""fan-in: what a constant fan-in buys at inference, kernel by kernel and model by model.

A rule with ``fan_in="constant"`` (every node, every output channel of a layer, keeps
the same number of incoming edges) gives sparse weights whose rows all have one length.
``graphwire.freeze`` then keeps them in ELL form as well as CSR, and vector inputs of at
most ``ELL_MAX_ROWS`` (8) rows run the row-major ELL kernel
``graphwire::ell_mix`` instead of the CSR kernel, which tiles 64 input rows at a time.

The suite times, on the same weights and inputs in one process (medians over
interleaved repeats after one warm-up call each, under ``torch.inference_mode``):

1. ``layers``: one linear layer of constant fan-in (128 -> 512, 512 -> 128,
   1024 -> 1024, 4096 -> 1024; 5, 10 and 20% of weights) at 1, 4, 16 and 128 input rows:
   ``dense`` (the plain ``nn.Linear`` holding the zeros, baseline 2 of the speed suite),
   ``csr`` (:class:`~graphwire.export.SparseLinear` with its ELL form switched off)
   and ``ell`` (the same module as compiled);
2. ``models``: an MLP 1024 -> 1024 -> 1024 -> 10 after ``sparsify`` at 5% and the speed
   suite's 800-node vector DAG at 5 and 10%, each trained by no step (the first top-k)
   with ``DNW()`` and with ``DNW(fan_in="constant")``, compiled, at batch 1, 4 and 64:
   ``dense`` (``graphwire.freeze(..., kernel="dense")`` of the constant fan-in network:
   the compacted dense model, baseline 3), ``compiled_any`` and ``compiled_constant``.

Results: ``results.json``, ``results.md`` and ``time_vs_rows.png`` in ``--out``.
``--smoke`` runs tiny sizes in seconds (the tests run it; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import graphwire
from benchmarks._common import machine_info, set_threads, write_results
from benchmarks.speed import machine, timed
from graphwire import WiredGraph
from graphwire.export import SparseLinear
from graphwire.graph import layered_dag
from graphwire.layers import sparsify
from graphwire.wiring import DNW

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "fan_in"
#: graphwire's switch point: inputs of at most this many rows run the ELL kernel (a
#: tuning constant of the library, kept private there; the plot marks it).
ELL_MAX_ROWS = 8
COLUMNS = ["part", "case", "density", "rows", "method", "median_us", "speedup_vs_dense"]


def _constant_fan_in_linear(inp: int, out: int, density: float, gen: torch.Generator):
    fan_in = max(1, round(density * inp))
    keep = torch.zeros(out, inp, dtype=torch.bool)
    for row in range(out):
        keep[row, torch.randperm(inp, generator=gen)[:fan_in]] = True
    layer = nn.Linear(inp, out)
    with torch.no_grad():
        layer.weight.mul_(keep)
    return layer.eval()


def layer_rows(args) -> list[dict]:
    """Dense, CSR and ELL products of one constant fan-in layer."""
    shapes = [(32, 64)] if args.smoke else [(128, 512), (512, 128), (1024, 1024), (4096, 1024)]
    densities = (0.1,) if args.smoke else (0.05, 0.1, 0.2)
    counts = (1, 16) if args.smoke else (1, 4, 16, 128)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for inp, out in shapes:
        for density in densities:
            dense = _constant_fan_in_linear(inp, out, density, gen)
            ell = SparseLinear(dense)
            csr = SparseLinear(dense)
            csr.ell = False  # the same module with its ELL form switched off
            for n in counts:
                x = torch.randn(n, inp, generator=gen)
                fns = {}
                for name, module in (("dense", dense), ("csr", csr), ("ell", ell)):
                    fns[name] = lambda m=module, x=x: m(x)
                with torch.inference_mode():
                    for module in (csr, ell):  # same outputs as the dense layer
                        torch.testing.assert_close(module(x), dense(x), rtol=1e-4, atol=1e-4)
                    t = timed(fns, args.repeats, torch.device("cpu"))
                rows += _rows("layers", f"linear {inp}->{out}", density, n, t)
    return rows


def _rows(part: str, case: str, density: float, n: int, times: dict[str, float]) -> list[dict]:
    """One result row per method of one timing (``times`` in seconds, with ``"dense"``)."""
    return [
        {
            "part": part,
            "case": case,
            "density": density,
            "rows": n,
            "method": method,
            "median_us": seconds * 1e6,
            "speedup_vs_dense": times["dense"] / seconds,
        }
        for method, seconds in times.items()
    ]


def _mlp(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )


def _models(args):
    """(name, density, builder(rule) -> wired model, input width) of the model part."""
    width = 64 if args.smoke else 1024
    dag = [8, 16, 16] if args.smoke else [32, 192, 192, 192, 192]

    def mlp(rule):
        torch.manual_seed(0)
        return sparsify(_mlp(width), density=0.05, rule=rule, seed=0)

    def graph(density):
        return lambda rule: WiredGraph(
            layered_dag(dag), node_op="relu", density=density, rule=rule, seed=0
        )

    cases = [("mlp", 0.05, mlp, width)]
    for density in (0.1,) if args.smoke else (0.05, 0.1):
        cases.append(("vec800_dag" if not args.smoke else "dag", density, graph(density), dag[0]))
    return cases


def model_rows(args) -> list[dict]:
    """Compiled networks selected with and without a constant fan-in."""
    batches = (1, 4) if args.smoke else (1, 4, 64)
    rows = []
    for name, density, build, width in _models(args):
        constant = build(DNW(fan_in="constant")).eval()
        compiled = {
            "dense": graphwire.freeze(constant, kernel="dense"),
            "compiled_any": graphwire.freeze(build(DNW()).eval()),
            "compiled_constant": graphwire.freeze(constant),
        }
        for batch in batches:
            x = torch.randn(batch, width, generator=torch.Generator().manual_seed(batch))
            with torch.inference_mode():
                torch.testing.assert_close(
                    compiled["compiled_constant"](x), constant(x), rtol=1e-4, atol=1e-4
                )
                fns = {k: (lambda m=m, x=x: m(x)) for k, m in compiled.items()}
                t = timed(fns, args.repeats, torch.device("cpu"))
            rows += _rows("models", name, density, batch, t)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Time against input rows of every layer case, one panel per density."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [r for r in rows if r["part"] == "layers"]
    densities = sorted({r["density"] for r in layers})
    fig, axes = plt.subplots(1, len(densities), figsize=(5 * len(densities), 4), squeeze=False)
    for ax, density in zip(axes[0], densities):
        for case in sorted({r["case"] for r in layers}):
            for method, style in (("dense", "-"), ("csr", ":"), ("ell", "--")):
                pts = [
                    (r["rows"], r["median_us"])
                    for r in layers
                    if r["case"] == case and r["density"] == density and r["method"] == method
                ]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", label=f"{case} {method}")
        ax.axvline(ELL_MAX_ROWS, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="input rows", ylabel="median us")
        ax.set_title(f"{density:.0%} of weights, constant fan-in")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the fan-in suite."""
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--repeats", type=int, default=31, help="timed repeats per method")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")


def run(args: argparse.Namespace) -> int:
    """Run both parts and write the results to ``args.out``."""
    set_threads(args.threads)
    rows = layer_rows(args) + model_rows(args)
    meta = {"machine": {**machine_info(), **machine(torch.device("cpu"))}, "smoke": args.smoke}
    notes = [
        f"ELL is used for inputs of at most ELL_MAX_ROWS = {ELL_MAX_ROWS} rows; beyond, "
        "the compiled layers run the CSR kernel (`ell` and `csr` then time the same path).",
        "`speedup_vs_dense` is against the dense layer (layers) or the compacted dense "
        "model of the constant fan-in network (models).",
    ]
    paths = write_results(
        args.out, suite="fan-in", rows=rows, columns=COLUMNS, meta=meta, notes=notes
    )
    plot(rows, args.out / "time_vs_rows.png")
    print(paths["md"].read_text())
    return 0
