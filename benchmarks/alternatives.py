"""alternatives: the paper's comparison of wiring rules at equal edge count.

Rules: fixed random graph, no update rule (top-k, gradients to selected edges only),
targeted dropout (rho = 0.95), fine-tune (the top-k of a trained complete graph, frozen,
fine-tuned at learning rate 0.01), one-shot lottery ticket (that mask, weights rewound
to their initial values) and DNW. On CIFAR-10 (``--data-dir``) the network is the
MobileNetV1-like x0.225 graph of the paper (batch 128, cosine lr 0.1, weight decay 1e-4,
160 epochs); on the embedded digits it is the small static tiny classifier, so the suite
runs in minutes.
"""

from __future__ import annotations

import argparse
import copy
import functools
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
    plot_paper_vs_ours,
    run_jobs,
    write_results,
)
from graphwire import Trainer
from graphwire.training import init_distributed, load_checkpoint

RULES = ("random", "dnw_no_update", "targeted_dropout", "fine_tune", "lottery", "dnw")

#: CIFAR-10, MobileNetV1-like x0.225 (5 runs), from the paper.
PAPER = {
    "random": 87.2,
    "dnw_no_update": 86.7,
    "targeted_dropout": 89.2,
    "lottery": 87.9,
    "fine_tune": 89.7,
    "dnw": 89.7,
}

COLUMNS = ["rule", "acc_mean", "acc_std", "seeds", "accs", "paper"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the suite."""
    add_common_arguments(parser, epochs=None, seeds=2, out="runs/alternatives")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--fine-tune-lr", type=float, default=0.01)
    parser.add_argument("--limit", type=int, default=None, help="images per split (quick runs)")


def _base_spec(args: argparse.Namespace, dataset: str, seed: int, out: Path) -> dict[str, Any]:
    if dataset == "digits":
        prof = getattr(args, "profile", None) or small_scale.profile_for("digits")
        model_name, model = "tiny_static", {**prof.model, **prof.per_setting["static"]}
        train = copy.deepcopy(prof.train["static"])
    else:
        model_name, model = "dnw_mobilenet_x0225", {}
        train = {
            "epochs": 160,
            "batch_size": 128,
            "optimizer": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
            "schedule": {"kind": "cosine"},
        }
    apply_overrides(train, args)
    return {
        "setting": "alternatives",
        "seed": seed,
        "model_name": model_name,
        "model": model,
        "train": train,
        "dataset": dataset,
        "dataset_kwargs": {},
        "data_dir": args.data_dir,
        "download": args.download,
        "limit": args.limit,
        "device": args.device,
        "progress": False,
    }


def _rule_arg(rule: str):
    if rule == "targeted_dropout":
        from graphwire.wiring import TargetedDropout

        return TargetedDropout(rho=0.95)
    return rule


def train_rule(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one rule; fine-tune and lottery start from a trained complete graph's run."""
    from models import create_model
    from models.baselines import fine_tune_from, lottery_ticket

    info = init_distributed(spec.get("device"))
    data = small_scale.load_data(spec)
    rule = spec["rule"]
    build_kw = {k: v for k, v in spec["model"].items() if v is not None}
    build_kw.update(
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        image_size=data.image_size,
    )
    if spec["model_name"].startswith("tiny"):
        build_kw.setdefault("density", 0.05)
    if rule in ("fine_tune", "lottery"):
        dense = create_model(
            spec["model_name"], **_no_budget(build_kw), rule="complete", seed=spec["seed"]
        )
        initial = copy.deepcopy(dense.state_dict())
        dense.load_state_dict(load_checkpoint(Path(spec["dense_dir"]) / "last.pt")["model"])
        build = functools.partial(create_model, spec["model_name"], seed=spec["seed"], **build_kw)
        model = (
            fine_tune_from(dense, build)
            if rule == "fine_tune"
            else lottery_ticket(dense, initial, build)
        )
    elif rule == "complete":
        model = create_model(
            spec["model_name"], **_no_budget(build_kw), rule="complete", seed=spec["seed"]
        )
    else:
        model = create_model(
            spec["model_name"], rule=_rule_arg(rule), seed=spec["seed"], **build_kw
        )
    config = small_scale.train_config(spec)
    result = Trainer(model, data, config, info=info).fit()
    return {
        "rule": rule,
        "seed": spec["seed"],
        "final_acc": result.final_val_acc,
        "history": result.history,
        "swaps_total": result.swaps_total,
    }


def _no_budget(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if k not in ("k", "density")}


def run(args: argparse.Namespace) -> int:
    """Train every rule over the seeds; write the table and plots."""
    dataset = small_scale.resolve_dataset(args)
    out = Path(args.out)
    info = init_distributed(args.device)
    workers = small_scale.workers_for(args)
    progress = not args.no_progress and info.is_main
    needs_dense = any(r in ("fine_tune", "lottery") for r in args.rules)
    with Timer() as timer:
        specs = {}
        for seed in range(args.seeds):
            for rule in [*(["complete"] if needs_dense else []), *args.rules]:
                spec = _base_spec(args, dataset, seed, out)
                spec["rule"] = rule
                spec["run_dir"] = str(out / "runs" / f"{rule}-seed{seed}")
                spec["dense_dir"] = str(out / "runs" / f"complete-seed{seed}")
                if rule == "fine_tune":
                    spec["train"]["optimizer"]["lr"] = args.fine_tune_lr
                specs[(rule, seed)] = spec
        first = [s for (r, _), s in specs.items() if r == "complete"]
        rest = [s for (r, _), s in specs.items() if r != "complete"]
        runs = run_jobs(train_rule, first, workers, desc="complete graphs", progress=progress)
        runs += run_jobs(
            train_rule, rest, workers, desc=f"alternatives ({dataset})", progress=progress
        )
    if not info.is_main:
        return 0
    rows = []
    for rule in ["complete", *args.rules] if needs_dense else args.rules:
        group = [r for r in runs if r["rule"] == rule]
        accs = [r["final_acc"] for r in group]
        mean, std = mean_std(accs)
        rows.append(
            {
                "rule": rule,
                "acc_mean": mean,
                "acc_std": std,
                "seeds": len(group),
                "accs": " ".join(f"{a:.1f}" for a in accs),
                "paper": PAPER.get(rule),
            }
        )
    notes = [
        f"{dataset}: final validation accuracy (%), mean and std over {args.seeds} seeds; "
        "'paper' is CIFAR-10 with the MobileNetV1-like x0.225 graph.",
        "complete: the dense graph that fine-tune and lottery take their masks from.",
        f"Wall time: {timer.seconds:.0f} s.",
    ]
    meta = {"dataset": dataset, "runs": runs, "machine": machine_info(), "wall_s": timer.seconds}
    paths = write_results(
        out, suite="alternatives", rows=rows, columns=COLUMNS, meta=meta, notes=notes
    )
    print(markdown_table(rows, COLUMNS))
    if not args.no_plots:
        curves = {"alternatives": {}}
        for r in runs:
            accs = [h["val_acc"] for h in r["history"] if h["val_acc"] is not None]
            curves["alternatives"].setdefault(r["rule"], []).append(accs)
        plot_curves(curves, out / "accuracy_curves.png")
        plot_paper_vs_ours(
            [dict(r, group="") for r in rows],
            out / "paper_vs_ours.png",
            group="group",
            label="rule",
            ours="acc_mean",
            ours_std="acc_std",
            paper="paper",
            ours_name=f"ours ({dataset})",
            paper_name="paper (CIFAR-10)",
        )
    print(f"results written under {out.resolve()}: {', '.join(p.name for p in paths.values())}")
    return 0
