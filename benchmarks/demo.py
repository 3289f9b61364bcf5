"""demo: the main job: the small-scale suite on the embedded MNIST-1D, then the best graph compiled.

Trains static, discrete-time and continuous-time classifiers with a fixed random graph
and with DNW at equal edge count, over 3 seeds, on MNIST-1D (generated offline from a
fixed seed by the ``mnist1d`` package; ``--dataset digits`` for scikit-learn's bundled
digits), prints the table, then compiles the best learned graph for inference
(``graphwire.compile``) and reports its multiply-adds (``graphwire.count``)
and its evaluation speed against the paper's dense masked network (the speed suite's
baseline 1, ``paper_dense``) and the compacted dense model, timed interleaved (medians).
Runs in a few minutes on two CPU cores; ``make demo`` calls it.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import graphwire
from benchmarks import small_scale
from benchmarks._baselines import PaperDense
from benchmarks._common import Timer, markdown_table, set_threads
from graphwire import WiredGraph
from graphwire.export import FrozenGraph as CompiledGraph
from graphwire.training import init_distributed

#: Where the recorded copy of the demo's results lives in the repository (MNIST-1D, the
#: default); another data set's copy goes into a subfolder named after it (``digits/``).
RECORDED = Path(__file__).resolve().parent / "results" / "small-scale"


def recorded_dir(dataset: str) -> Path:
    """The recorded copy's folder for ``dataset``."""
    return RECORDED if dataset == "mnist1d" else RECORDED / dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options: those of small-scale, with the demo's defaults."""
    small_scale.add_arguments(parser, out="runs/demo")
    parser.add_argument(
        "--record",
        action="store_true",
        help=f"also copy the results into {RECORDED} (the recorded copy in the repository; "
        "a subfolder named after the data set for other than MNIST-1D)",
    )


def _time_interleaved(
    modules: list[torch.nn.Module], x: torch.Tensor, repeats: int = 31
) -> list[float]:
    """Median milliseconds of one inference pass over ``x`` per module, timed in turn.

    Each round runs every module once, so a slow moment of a shared machine hits them
    alike rather than one of them.
    """
    times: list[list[float]] = [[] for _ in modules]
    with torch.inference_mode():
        for _ in range(3):
            for m in modules:
                m(x)
        for _ in range(repeats):
            for m, t in zip(modules, times):
                start = time.perf_counter()
                m(x)
                t.append(time.perf_counter() - start)
    return [1e3 * sorted(t)[len(t) // 2] for t in times]


def compile_best(
    runs: list[dict[str, Any]], specs: dict, batch: int = 256
) -> dict[str, Any] | None:
    """Compile the best DNW graph for inference; count it and time it against its baselines."""
    dnw = [r for r in runs if r["rule"] == "dnw"]
    if not dnw:
        return None
    best = max(dnw, key=lambda r: r["final_acc"])
    spec = specs[(best["setting"], best["rule"], best["seed"])]
    model = small_scale.restore_model(spec).eval()
    data = small_scale.load_data(spec)
    x = data.val.tensors[0][:batch] if hasattr(data.val, "tensors") else None
    if x is None:
        x = torch.stack([data.val[i][0] for i in range(min(batch, len(data.val)))])
    shape = (1, *x.shape[1:])
    report: dict[str, Any] = {
        "setting": best["setting"],
        "seed": best["seed"],
        "val_acc": best["final_acc"],
        "edges": best["edges"],
    }
    set_threads(torch.get_num_threads())
    compiled = graphwire.freeze(model)
    dense = _paper_dense(model)
    with torch.inference_mode():
        ref, out = dense(x), compiled(x)
    report["max_abs_diff"] = float((ref - out).abs().max())
    report["same_predictions"] = float((ref.argmax(1) == out.argmax(1)).float().mean())
    # The paper's accounting counts the live structure of the trained network, which is
    # exactly what the compiled module keeps (dead nodes and their edges removed).
    cost = graphwire.count(model, shape)
    report["macs"], report["params"] = cost.macs, cost.params
    frozen = [m for m in compiled.modules() if isinstance(m, CompiledGraph)]
    report["kept_nodes"] = sum(m.kept_nodes for m in frozen)
    report["dropped_nodes"] = sum(m.dropped_nodes for m in frozen)
    # the baselines: the paper's dense masked network (baseline 1), and the compacted dense
    # model (the frozen module with dense products only: what compaction alone buys)
    compact = graphwire.freeze(model, kernel="dense")
    times = _time_interleaved([dense, compact, compiled], x)
    report["paper_dense_ms"], report["compacted_dense_ms"], report["compiled_ms"] = times
    report["speedup_vs_paper_dense"] = report["paper_dense_ms"] / report["compiled_ms"]
    report["speedup_vs_compacted_dense"] = report["compacted_dense_ms"] / report["compiled_ms"]
    report["batch"] = int(x.shape[0])
    return report


def _paper_dense(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose wired graphs run as the paper's dense masked network."""
    dense = copy.deepcopy(model)
    for parent in list(dense.modules()):
        for name, child in parent.named_children():
            if isinstance(child, WiredGraph):
                setattr(parent, name, PaperDense(child))
    return dense


def run(args: argparse.Namespace) -> int:
    """Run the small-scale suite (MNIST-1D by default), then compile, count and time the best."""
    info = init_distributed(args.device)
    with Timer() as total:
        rows, runs, specs = small_scale.run_suite(args, suite="small-scale (demo)")
        report = compile_best(runs, specs) if info.is_main else None
    if not info.is_main:
        return 0
    out = Path(args.out)
    if report is not None:
        print("\nBest learned graph, compiled for inference:")
        print(markdown_table([report], list(report)))
        (out / "compiled.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\ndemo wall time: {total.seconds:.0f} s")
    summary = {"wall_s": total.seconds, "compiled": report}
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.record:
        _record(out, report, total.seconds, small_scale.resolve_dataset(args, embedded="mnist1d"))
    print(f"files: {out.resolve()} (tables results.md/.csv/.json, plots *.png, runs/ per run)")
    return 0


def _record(out: Path, report: dict[str, Any] | None, wall: float, dataset: str) -> None:
    import shutil

    recorded = recorded_dir(dataset)
    recorded.mkdir(parents=True, exist_ok=True)
    for path in out.iterdir():
        if path.is_file() and path.suffix in {".json", ".csv", ".md", ".png"}:
            shutil.copy2(path, recorded / path.name)
    md = recorded / "results.md"
    lines = [md.read_text().rstrip(), "", f"Demo wall time (`make demo`): {wall:.0f} s."]
    if report is not None and "compiled_ms" in report:
        lines += [
            "",
            "## Best learned graph, compiled for inference",
            "",
            markdown_table([report], list(report)),
            "",
            "Inference at the batch shown, medians of interleaved rounds: "
            "`speedup_vs_paper_dense` is against the paper's dense masked network (the speed "
            "suite's baseline 1: one dense [N, N] masked weight, one 1x1 mix per stage or step), "
            "`speedup_vs_compacted_dense` against the compacted dense model (the frozen module "
            "with dense products only: dead nodes removed), so the sparse kernel's gain is "
            "shown apart from compaction's.",
        ]
    md.write_text("\n".join(lines) + "\n")
    print(f"recorded copy: {recorded}")
