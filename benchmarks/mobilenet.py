"""mobilenet: the ImageNet table's rows: parameters and multiply-adds of every variant.

Counts every MobileNetV1-like graph of the paper's Table 1 offline with
``graphwire.count`` at 224 x 224 (a fresh model: untrained, so DNW rows count the
random initial selection; the paper's DNW counts are lower because nodes die during
training). With ``--data-dir`` pointing at ImageNet (``train/`` and ``val/``) and
``--epochs`` the variants are also trained (SGD 0.1, cosine per iteration, momentum
0.9, weight decay 5e-5, batch 512, 250 epochs in the paper) and their top-1 reported.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks import small_scale
from benchmarks._common import (
    Timer,
    add_common_arguments,
    machine_info,
    markdown_table,
    plot_paper_vs_ours,
    write_results,
)
from graphwire import Trainer
from graphwire.training import init_distributed

#: The paper's Table 1: model -> (params in M, multiply-adds in M, top-1).
PAPER = {
    "mobilenet_v1_x025": (0.5, 41.0, 50.6),
    "random_mobilenet_x0225": (1.2, 55.7, 53.3),
    "dnw_mobilenet_small_x015": (0.24, 22.1, 50.3),
    "dnw_mobilenet_small_x0225": (0.4, 41.2, 59.9),
    "dnw_mobilenet_x0225": (1.1, 42.1, 60.9),
    "dnw_mobilenet_x03": (1.3, 66.7, 65.0),
    "random_mobilenet_x049": (1.8, 170.0, 64.1),
    "dnw_mobilenet_x049": (1.8, 154.0, 70.4),
}

COLUMNS = [
    "model",
    "params_M",
    "macs_M",
    "top1",
    "paper_params_M",
    "paper_macs_M",
    "paper_top1",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the suite."""
    add_common_arguments(parser, epochs=None, seeds=1, out="runs/mobilenet")
    parser.add_argument("--models", nargs="+", default=list(PAPER), help="variants to count")
    parser.add_argument("--image-size", type=int, default=224, help="side of the counted input")


def count_model(name: str, image_size: int) -> dict[str, Any]:
    """Parameters and multiply-adds (in millions) of a fresh ``name`` at ``image_size``."""
    import graphwire
    from models import create_model

    model = create_model(name, image_size=image_size, seed=0).eval()
    cost = graphwire.count(model, (1, 3, image_size, image_size))
    return {"model": name, "params_M": cost.params / 1e6, "macs_M": cost.macs / 1e6}


def train_model(name: str, args: argparse.Namespace) -> float | None:
    """Train ``name`` on ImageNet with the paper's recipe; return its top-1."""
    from models import create_model

    spec = {
        "dataset": "imagenet",
        "data_dir": args.data_dir,
        "seed": 0,
        "device": args.device,
        "run_dir": str(Path(args.out) / "runs" / name),
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch_size or 512,
            "optimizer": {"lr": args.lr or 0.1, "momentum": 0.9, "weight_decay": 5e-5},
            "schedule": {"kind": "cosine"},
        },
        "progress": not args.no_progress,
    }
    info = init_distributed(args.device)
    data = small_scale.load_data(spec)
    model = create_model(name, seed=0, num_classes=data.num_classes)
    trainer = Trainer(model, data, small_scale.train_config(spec), info=info)
    return trainer.fit().final_val_acc


def run(args: argparse.Namespace) -> int:
    """Count every variant (and train them when ImageNet is given)."""
    out = Path(args.out)
    info = init_distributed(args.device)
    rows = []
    with Timer() as timer:
        for name in args.models:
            row = count_model(name, args.image_size)
            train = args.data_dir is not None and args.epochs
            row["top1"] = train_model(name, args) if train else None
            paper = PAPER.get(name, (None, None, None))
            row.update(paper_params_M=paper[0], paper_macs_M=paper[1], paper_top1=paper[2])
            rows.append(row)
    if not info.is_main:
        return 0
    notes = [
        f"Counts at {args.image_size} x {args.image_size} of freshly built models (seed 0); "
        "DNW rows count the initial selection, so they match the random graph of equal k. "
        "The paper's DNW counts are after training, when dead nodes no longer cost.",
        "top1 is filled in only when trained on ImageNet (--data-dir, --epochs).",
        f"Wall time: {timer.seconds:.0f} s.",
    ]
    meta = {"machine": machine_info(), "image_size": args.image_size, "wall_s": timer.seconds}
    paths = write_results(
        out, suite="mobilenet", rows=rows, columns=COLUMNS, meta=meta, notes=notes
    )
    print(markdown_table(rows, COLUMNS))
    if not args.no_plots:
        plot_paper_vs_ours(
            [dict(r, group="") for r in rows],
            out / "macs_paper_vs_ours.png",
            group="group",
            label="model",
            ours="macs_M",
            ours_std=None,
            paper="paper_macs_M",
            ours_name="ours (untrained, M mult-adds)",
            paper_name="paper (M mult-adds)",
        )
    print(f"results written under {out.resolve()}: {', '.join(p.name for p in paths.values())}")
    return 0
