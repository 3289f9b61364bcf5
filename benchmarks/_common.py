"""Helpers shared by the suites: options, machine info, result files, plots, job pools."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "add_common_arguments",
    "machine_info",
    "mean_std",
    "markdown_table",
    "write_results",
    "run_jobs",
    "set_threads",
    "plot_curves",
    "plot_swaps",
    "plot_adjacency",
    "plot_layered",
    "plot_paper_vs_ours",
    "Timer",
]


def add_common_arguments(
    parser: argparse.ArgumentParser, *, epochs: int | None, seeds: int, out: str
) -> None:
    """The options every training suite takes.

    Args:
        parser: The suite's parser.
        epochs: Default epochs (``None``: the suite's profile decides).
        seeds: Default number of seeds.
        out: Default output directory.
    """
    parser.add_argument(
        "--data-dir",
        default=None,
        help="directory holding CIFAR-10 (cifar-10-batches-py/) or ImageNet (train/, val/); "
        "unset: an embedded data set (MNIST-1D for small-scale and the demo, digits otherwise)",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        choices=["mnist1d", "digits", "cifar10", "imagenet"],
        help="data set (default: the suite's embedded one, or its data set when --data-dir is "
        "given)",
    )
    parser.add_argument("--download", action="store_true", help="download CIFAR-10 if missing")
    parser.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    parser.add_argument("--seeds", type=int, default=seeds, help="number of seeds (0, 1, ...)")
    parser.add_argument("--out", default=out, help="output directory")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size per process")
    parser.add_argument("--lr", type=float, default=None, help="base learning rate")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="training runs in parallel, one CPU thread each (default: CPU count; 1 on GPU "
        "or under torchrun)",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")


def apply_overrides(train: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Apply the command line's ``--epochs``, ``--batch-size`` and ``--lr`` to a training spec."""
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.batch_size is not None:
        train["batch_size"] = args.batch_size
    if args.lr is not None:
        train.setdefault("optimizer", {})["lr"] = args.lr
    return train


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in this process (small ops are fastest single-threaded)."""
    torch.set_num_threads(max(1, n))


def machine_info() -> dict[str, Any]:
    """The machine, torch and graphwire versions a result was measured with."""
    import graphwire

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "graphwire": graphwire.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
        info["commit"] = commit or None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub markdown table of ``rows`` restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(
    out: str | Path,
    *,
    suite: str,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    meta: dict[str, Any],
    notes: Iterable[str] = (),
) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv`` and ``results.md`` under ``out``.

    The markdown names the machine and torch version; the JSON holds everything.

    Returns:
        The paths written, by format.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    machine = meta.get("machine") or machine_info()
    payload = {"suite": suite, **meta, "machine": machine, "rows": list(rows)}
    paths = {"json": out / "results.json", "csv": out / "results.csv", "md": out / "results.md"}
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n")
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c) for c in columns})
    cuda = f", GPU {machine['cuda']}" if machine.get("cuda") else ""
    header = [
        f"# {suite}",
        "",
        f"Measured on {machine['processor']} ({machine['cpu_count']} CPUs{cuda}), "
        f"torch {machine['torch']}, graphwire {machine['graphwire']}"
        + (f" (commit {machine['commit']})" if machine.get("commit") else "")
        + ".",
        "",
    ]
    body = [markdown_table(rows, columns), ""]
    notes = [f"- {n}" for n in notes]
    paths["md"].write_text("\n".join(header + body + notes) + ("\n" if notes else ""))
    return paths


def _job_entry(args: tuple[Callable[[dict[str, Any]], Any], dict[str, Any]]) -> Any:
    fn, spec = args
    set_threads(1)
    return fn(spec)


def run_jobs(
    fn: Callable[[dict[str, Any]], Any],
    specs: Sequence[dict[str, Any]],
    workers: int,
    *,
    desc: str = "runs",
    progress: bool = True,
) -> list[Any]:
    """Run ``fn(spec)`` for every spec, in ``workers`` processes of one thread each.

    Tiny networks train fastest single-threaded, several at once; ``workers=1`` runs
    in this process (as under ``torchrun`` or on a GPU). Results keep the order of specs.
    Each worker process runs several jobs in turn: a fresh process costs about 9 s of
    imports and data loading on a 2-core machine, and every job seeds itself (the
    Trainer seeds torch, NumPy and Python from its config), so reuse changes no result.
    """
    from tqdm.auto import tqdm

    if workers <= 1 or len(specs) <= 1:
        return [fn(s) for s in tqdm(specs, desc=desc, disable=not progress)]
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    pool = ctx.Pool(min(workers, len(specs)))
    try:
        it = pool.imap(_job_entry, [(fn, s) for s in specs], chunksize=1)
        results = list(tqdm(it, total=len(specs), desc=desc, disable=not progress))
    except BaseException:
        pool.terminate()
        raise
    # close and join rather than terminate: killed workers leak the semaphores that
    # scikit-learn's joblib opened in them, and Python warns about each at exit
    pool.close()
    pool.join()
    return results


class Timer:
    """Wall-clock seconds of a ``with`` block: ``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


# ---------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(
    curves: dict[str, dict[str, list[list[float]]]],
    path: str | Path,
    *,
    ylabel: str = "validation accuracy (%)",
    title: str = "",
) -> Path:
    """One panel per group (e.g. setting), one line per label (e.g. rule): mean and band.

    Args:
        curves: ``{panel: {label: [per-seed list of values per epoch]}}``.
        path: PNG to write.
        ylabel: Label of the y axis.
        title: Figure title.
    """
    plt = _pyplot()
    panels = list(curves)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for label, runs in curves[panel].items():
            runs = [r for r in runs if r]
            if not runs:
                continue
            n = min(len(r) for r in runs)
            t = torch.tensor([r[:n] for r in runs], dtype=torch.float64)
            mean = t.mean(0)
            std = t.std(0) if len(runs) > 1 else torch.zeros_like(mean)
            epochs = range(1, n + 1)
            ax.plot(epochs, mean, label=label)
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_swaps(swaps: dict[str, list[list[int]]], path: str | Path) -> Path:
    """Edges swapped in per epoch, mean over seeds, one line per run group."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, runs in swaps.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        mean = torch.tensor([r[:n] for r in runs], dtype=torch.float64).mean(0)
        ax.plot(range(1, n + 1), mean, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("edges swapped in")
    ax.set_yscale("symlog")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_adjacency(graph, weight: torch.Tensor, mask: torch.Tensor, path: str | Path) -> Path:
    """The learned wiring as an ``N x N`` image of ``|w|`` over the selected edges."""
    plt = _pyplot()
    n = graph.num_nodes
    img = torch.zeros(n, n)
    src, dst = graph.edge_index[:, mask.cpu()]
    img[dst, src] = weight.detach().cpu()[mask.cpu()].abs()
    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.imshow(img.numpy(), cmap="magma", interpolation="nearest")
    ax.set_xlabel("source node u")
    ax.set_ylabel("target node v")
    ax.set_title(f"learned wiring: {int(mask.sum())} edges, |w|")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_layered(graph, weight: torch.Tensor, mask: torch.Tensor, path: str | Path) -> Path:
    """A layered drawing: nodes placed by group (or inputs / hidden / outputs), edges by |w|."""
    plt = _pyplot()
    n = graph.num_nodes
    if graph.group_id is not None:
        layer = graph.group_id.clone()
    else:
        layer = torch.ones(n, dtype=torch.long)
        layer[graph.inputs] = 0
        layer[graph.outputs] = 2
    xs, ys = torch.zeros(n), torch.zeros(n)
    for g in layer.unique().tolist():
        nodes = (layer == g).nonzero().flatten()
        xs[nodes] = float(g)
        ys[nodes] = torch.linspace(0, 1, nodes.numel()) if nodes.numel() > 1 else 0.5
    sel = mask.cpu()
    src, dst = graph.edge_index[:, sel]
    w = weight.detach().cpu()[sel].abs()
    w = w / w.max().clamp_min(1e-12)
    fig, ax = plt.subplots(figsize=(6, 4))
    order = w.argsort()
    for i in order.tolist():
        u, v = int(src[i]), int(dst[i])
        ax.plot(
            [xs[u], xs[v]],
            [ys[u], ys[v]],
            color="tab:blue",
            lw=0.3 + 1.2 * float(w[i]),
            alpha=0.15 + 0.6 * float(w[i]),
        )
    used = torch.zeros(n, dtype=torch.bool)
    used[src] = True
    used[dst] = True
    ax.scatter(xs[~used], ys[~used], s=6, color="lightgrey", zorder=3, label="unused")
    ax.scatter(xs[used], ys[used], s=8, color="black", zorder=3, label="wired")
    ax.set_xticks(sorted(set(xs.tolist())))
    ax.set_xlabel("layer (node group)")
    ax.set_yticks([])
    ax.set_title("learned wiring, layered")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_paper_vs_ours(
    rows: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    group: str,
    label: str,
    ours: str,
    ours_std: str | None,
    paper: str,
    paper_std: str | None = None,
    ours_name: str = "ours",
    paper_name: str = "paper",
) -> Path:
    """Bars of our numbers beside the paper's, grouped by ``group`` and ``label`` columns."""
    plt = _pyplot()
    keys = [f"{r[group]}\n{r[label]}" for r in rows]
    x = torch.arange(len(rows), dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 3.6))

    def values(col: str | None) -> list[float]:
        if col is None:
            return [0.0] * len(rows)
        return [float(r[col]) if r.get(col) is not None else math.nan for r in rows]

    ax.bar(x - 0.2, values(ours), 0.4, yerr=values(ours_std), label=ours_name, capsize=3)
    ax.bar(x + 0.2, values(paper), 0.4, yerr=values(paper_std), label=paper_name, capsize=3)
    ax.set_xticks(x.tolist())
    ax.set_xticklabels(keys, fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
