"""sparse: sparse ResNet training with DNW, keeping 10%, 20% and 30% of the weights.

Every convolution and the classifier are wired at a uniform per-layer rate (BN dense),
with all layers sparse or the first layer kept dense. On ImageNet (``--data-dir``) this
is the paper's ResNet-50 (100 epochs, cosine, 5 warm-up epochs, lr 0.256 for batch 256,
momentum 0.875, weight decay 3.05e-5, label smoothing 0.1); on the embedded digits a
small CIFAR-style ResNet trains in minutes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks import small_scale
from benchmarks._common import (
    Timer,
    add_common_arguments,
    apply_overrides,
    machine_info,
    markdown_table,
    mean_std,
    plot_curves,
    run_jobs,
    write_results,
)
from graphwire import Trainer
from graphwire.training import init_distributed

#: The paper's sparse ResNet-50 top-1: kept fraction -> (DNW, DNW with first layer dense).
PAPER = {0.1: (74.0, 75.0), 0.2: (76.2, 76.6), 0.3: (76.9, 77.1), 1.0: (77.5, None)}

COLUMNS = ["density", "first_layer", "acc_mean", "acc_std", "seeds", "params", "paper"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the suite."""
    add_common_arguments(parser, epochs=None, seeds=1, out="runs/sparse")
    parser.add_argument("--densities", nargs="+", type=float, default=[0.1, 0.2, 0.3])
    parser.add_argument("--limit", type=int, default=None, help="images per split (quick runs)")


def _spec(args, dataset: str, density: float, first_dense: bool, seed: int) -> dict[str, Any]:
    if dataset == "imagenet":
        model_name, model = "resnet50", {}
        train = {
            "epochs": 100,
            "batch_size": 256,
            "label_smoothing": 0.1,
            "optimizer": {"lr": 0.256, "momentum": 0.875, "weight_decay": 3.05e-5},
            "schedule": {"kind": "cosine", "warmup_epochs": 5},
        }
    else:
        model_name, model = "resnet_cifar", {"depth": 8, "width": 16}
        epochs = 160 if dataset == "cifar10" else 8
        train = {
            "epochs": epochs,
            "batch_size": 128 if dataset == "cifar10" else 64,
            "optimizer": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
            "schedule": {"kind": "cosine"},
        }
    apply_overrides(train, args)
    tag = f"d{density:g}-{'first-dense' if first_dense else 'all-sparse'}-seed{seed}"
    return {
        "model_name": model_name,
        "model": {**model, "density": density, "keep_first_dense": first_dense},
        "density": density,
        "first_dense": first_dense,
        "seed": seed,
        "train": train,
        "dataset": dataset,
        "dataset_kwargs": {},
        "data_dir": args.data_dir,
        "download": args.download,
        "limit": args.limit,
        "device": args.device,
        "run_dir": str(Path(args.out) / "runs" / tag),
        "progress": False,
    }


def train_sparse(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one sparse ResNet; return its summary."""
    from models import create_model

    info = init_distributed(spec.get("device"))
    data = small_scale.load_data(spec)
    model = create_model(
        spec["model_name"],
        seed=spec["seed"],
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        **spec["model"],
    )
    params = sum(int(m.edge_mask.sum()) for m in model.modules() if hasattr(m, "edge_mask"))
    config = small_scale.train_config(spec)
    result = Trainer(model, data, config, info=info).fit()
    return {
        "density": spec["density"],
        "first_dense": spec["first_dense"],
        "seed": spec["seed"],
        "final_acc": result.final_val_acc,
        "history": result.history,
        "kept_weights": params,
    }


def run(args: argparse.Namespace) -> int:
    """Train every density, all sparse and first layer dense; write the table and plots."""
    dataset = small_scale.resolve_dataset(args, default="imagenet")
    info = init_distributed(args.device)
    specs = [
        _spec(args, dataset, d, first, seed)
        for d in args.densities
        for first in (False, True)
        for seed in range(args.seeds)
    ]
    with Timer() as timer:
        runs = run_jobs(
            train_sparse,
            specs,
            small_scale.workers_for(args),
            desc=f"sparse ({dataset})",
            progress=not args.no_progress and info.is_main,
        )
    if not info.is_main:
        return 0
    rows = []
    for d in args.densities:
        for first in (False, True):
            group = [r for r in runs if r["density"] == d and r["first_dense"] == first]
            mean, std = mean_std([r["final_acc"] for r in group])
            paper = PAPER.get(d, (None, None))[1 if first else 0]
            rows.append(
                {
                    "density": d,
                    "first_layer": "dense" if first else "sparse",
                    "acc_mean": mean,
                    "acc_std": std,
                    "seeds": len(group),
                    "params": group[0]["kept_weights"],
                    "paper": paper,
                }
            )
    out = Path(args.out)
    notes = [
        f"{dataset}: final validation accuracy (%), mean and std over {args.seeds} seeds; "
        "'paper' is ResNet-50 on ImageNet (top-1). 'params' counts the kept wired weights.",
        f"Wall time: {timer.seconds:.0f} s.",
    ]
    meta = {"dataset": dataset, "runs": runs, "machine": machine_info(), "wall_s": timer.seconds}
    paths = write_results(out, suite="sparse", rows=rows, columns=COLUMNS, meta=meta, notes=notes)
    print(markdown_table(rows, COLUMNS))
    if not args.no_plots:
        curves: dict[str, dict[str, list[list[float]]]] = {}
        for r in runs:
            panel = "first layer dense" if r["first_dense"] else "all layers sparse"
            accs = [h["val_acc"] for h in r["history"] if h["val_acc"] is not None]
            curves.setdefault(panel, {}).setdefault(f"{r['density']:.0%}", []).append(accs)
        plot_curves(curves, out / "accuracy_curves.png")
    print(f"results written under {out.resolve()}: {', '.join(p.name for p in paths.values())}")
    return 0
