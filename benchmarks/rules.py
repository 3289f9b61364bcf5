"""rules: DNW against the field's other wiring rules at equal final edge count.

Trains the tiny classifiers of small-scale on the embedded MNIST-1D (static, discrete and
continuous time: ``vector_static``, ``vector_discrete``, ``vector_continuous``, 5% of the
candidate edges) and a small CIFAR-style ResNet sparsified at 10% per layer
(``resnet_cifar`` on the embedded digits, as the sparse suite does), with every rule:
DNW, RigL, SET, L1 + anneal, gradual magnitude pruning and a fixed random graph
(``--rules`` adds ``targeted_dropout``), over 3 seeds. Every rule ends with the same number
of edges. Reports the final validation accuracy, the final edge count, the edges swapped in
per epoch and the training time per step, with the DNW paper's own comparison (L1 + anneal
84.3% against DNW's 89.7% on CIFAR-10, MobileNetV1-like x0.225) as a reference line.
``--smoke`` runs every code path on tiny sizes in seconds.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
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
    plot_swaps,
    run_jobs,
    write_results,
)
from graphwire import Trainer
from graphwire.training import init_distributed
from graphwire.wiring import GMP, SET, L1Anneal, RigL, WiringRule

#: The models: the three tiny classifiers of small-scale and the sparsified ResNet.
MODELS = ("static", "discrete", "continuous", "resnet")
#: The rules compared by default; ``targeted_dropout`` can be added with ``--rules``.
RULES = ("dnw", "rigl", "set", "l1_anneal", "gmp", "random")
EXTRA_RULES = ("targeted_dropout",)

#: The DNW paper's comparison on CIFAR-10, MobileNetV1-like x0.225 (5 runs): rule -> top-1.
PAPER = {"dnw": 89.7, "l1_anneal": 84.3, "random": 87.2, "targeted_dropout": 89.2}
PAPER_SETTING = "CIFAR-10, MobileNetV1-like x0.225 (DNW paper)"

#: Where the recorded copy lives in the repository (``--record``).
RECORDED = Path(__file__).resolve().parent / "results" / "rules"

COLUMNS = [
    "model",
    "rule",
    "acc_mean",
    "acc_std",
    "seeds",
    "accs",
    "edges",
    "swaps_per_epoch",
    "ms_per_step",
    "paper_ref",
]

#: The ResNet: depth 8, width 16, every convolution and the classifier at 10% (uniform).
RESNET = {"depth": 8, "width": 16, "density": 0.1}
RESNET_TRAIN = {
    "epochs": 8,
    "batch_size": 64,
    "optimizer": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
    "schedule": {"kind": "cosine"},
}
#: --smoke: tiny sizes (as benchmarks/smoke.py uses), two epochs, 64 samples per split.
SMOKE_PROFILE = small_scale.Profile(
    model={"num_nodes": 56, "readout": 4, "density": 0.1},
    per_setting={
        "static": {},
        "discrete": {"steps": 2},
        "continuous": {"method": "rk4", "solver_options": {"step_size": 1.0}},
    },
    train={
        s: {"epochs": 2, "batch_size": 16, "optimizer": {"lr": 0.1}} for s in small_scale.SETTINGS
    },
    dataset={"num_samples": 200},
    models=dict(small_scale.MNIST1D.models),
)
SMOKE_RESNET = {"depth": 8, "width": 4, "density": 0.2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the suite."""
    add_common_arguments(parser, epochs=None, seeds=3, out="runs/rules")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=(*RULES, *EXTRA_RULES))
    parser.add_argument("--limit", type=int, default=None, help="samples per split (quick runs)")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, 1 seed, 64 samples: every code path"
    )
    parser.add_argument(
        "--record", action="store_true", help=f"also write the results into {RECORDED}"
    )


def make_wiring_rule(name: str, steps_per_epoch: int, epochs: int, seed: int) -> str | WiringRule:
    """The rule ``name`` with its paper's defaults, scaled to a run of this length.

    RigL: ``alpha`` 0.3, an update every 100 steps (fewer in short runs: at least 10 per
    run) until 75% of training. SET: ``zeta`` 0.3, an update after every epoch, seeded.
    L1 + anneal: the budget reached at 60% of training (its default). GMP: pruning from
    10% to 60% of training (Zhu and Gupta prune early and fine-tune after), every 100
    steps or at least 10 times. DNW, random and targeted dropout are used by name.
    """
    total = steps_per_epoch * epochs
    every = max(1, min(100, total // 10))
    if name == "rigl":
        return RigL(alpha=0.3, delta_t=every, t_end=max(1, int(0.75 * total)))
    if name == "set":
        return SET(zeta=0.3, delta_t=steps_per_epoch, seed=seed)
    if name == "l1_anneal":
        return L1Anneal(total_steps=total)
    if name == "gmp":
        start, end = int(0.1 * total), max(int(0.6 * total), int(0.1 * total) + 1)
        return GMP(t_start=start, t_end=end, delta_t=max(1, min(100, (end - start) // 10)))
    return name


def plan(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """One spec per (model, rule, seed)."""
    prof = SMOKE_PROFILE if args.smoke else small_scale.profile_for("mnist1d")
    specs = []
    for model in args.models:
        for rule in args.rules:
            for seed in range(args.seeds):
                if model == "resnet":
                    spec = {
                        "model_name": "resnet_cifar",
                        "model": dict(SMOKE_RESNET if args.smoke else RESNET),
                        "train": copy.deepcopy(RESNET_TRAIN),
                        "dataset": "digits",
                        "dataset_kwargs": {},
                    }
                else:
                    spec = {
                        "model_name": prof.model_name(model),
                        "model": small_scale._model_settings(prof, model),
                        "train": copy.deepcopy(prof.train[model]),
                        "dataset": "mnist1d",
                        "dataset_kwargs": prof.dataset,
                    }
                if args.smoke:
                    spec["train"].update(epochs=2, batch_size=16)
                apply_overrides(spec["train"], args)
                spec.update(
                    setting=model,
                    rule=rule,
                    seed=seed,
                    data_dir=None,
                    download=False,
                    limit=64 if args.smoke else args.limit,
                    device=args.device,
                    run_dir=str(out / "runs" / f"{model}-{rule}-seed{seed}"),
                    progress=False,
                )
                specs.append(spec)
    return specs


def _build(spec: dict[str, Any], data, rule: str | WiringRule):
    from graphwire.layers import sparsify
    from models import create_model

    if spec["setting"] != "resnet":
        return small_scale.build_model({**spec, "rule": rule}, data)
    settings = dict(spec["model"])
    density = settings.pop("density")
    dense = create_model(
        spec["model_name"],
        sparse=False,
        seed=spec["seed"],
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        **settings,
    )
    return sparsify(dense, density=density, rule=rule, seed=spec["seed"], inplace=True)


def train_rule(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one (model, rule, seed); return its summary (picklable, for worker pools)."""
    info = init_distributed(spec.get("device"))
    data = small_scale.load_data(spec)
    train = spec["train"]
    steps_per_epoch = math.ceil(len(data.train) / (train["batch_size"] * info.world_size))
    rule = make_wiring_rule(spec["rule"], steps_per_epoch, train["epochs"], spec["seed"])
    model = _build(spec, data, rule)
    wired = [m for m in model.modules() if hasattr(m, "edge_mask")]
    budget = sum({id(m.shared_budget): m.shared_budget.k for m in wired}.values())
    stamps: list[tuple[int, float]] = []

    def stamp(trainer: Trainer, loss: float) -> None:
        stamps.append((trainer.epoch, time.perf_counter()))

    with Timer() as timer:
        config = small_scale.train_config(spec)
        trainer = Trainer(model, data, config, info=info, step_hooks=[stamp])
        result = trainer.fit()
    # time per step: between consecutive steps of one epoch (no evaluation in between)
    gaps = [b - a for (ea, a), (eb, b) in zip(stamps, stamps[1:]) if ea == eb]
    return {
        "setting": spec["setting"],
        "rule": spec["rule"],
        "rule_repr": repr(rule),
        "seed": spec["seed"],
        "final_acc": result.final_val_acc,
        "history": result.history,
        "budget": budget,
        "edges": result.history[-1]["edges"],
        "swaps_total": result.swaps_total,
        "steps": trainer.step,
        "train_s": timer.seconds,
        "ms_per_step": 1e3 * statistics.median(gaps) if gaps else None,
    }


def aggregate(runs: list[dict[str, Any]], models, rules) -> list[dict[str, Any]]:
    """One row per (model, rule): accuracy over seeds, edges, swaps per epoch, ms per step."""
    rows = []
    for model in models:
        for rule in rules:
            group = [r for r in runs if r["setting"] == model and r["rule"] == rule]
            if not group:
                continue
            mean, std = mean_std([r["final_acc"] for r in group])
            epochs = [len(r["history"]) for r in group]
            rows.append(
                {
                    "model": model,
                    "rule": rule,
                    "acc_mean": mean,
                    "acc_std": std,
                    "seeds": len(group),
                    "accs": " ".join(f"{r['final_acc']:.1f}" for r in group),
                    "edges": group[0]["edges"],
                    "budget": group[0]["budget"],
                    "swaps_per_epoch": mean_std(
                        [r["swaps_total"] / max(e, 1) for r, e in zip(group, epochs)]
                    )[0],
                    "ms_per_step": mean_std(
                        [r["ms_per_step"] for r in group if r["ms_per_step"] is not None]
                    )[0],
                    "paper_ref": PAPER.get(rule),
                    "rule_repr": group[0]["rule_repr"],
                }
            )
    return rows


def plot_against_paper(rows: list[dict[str, Any]], path: Path) -> Path:
    """Our accuracy per rule and model, with the paper's numbers as reference lines."""
    from benchmarks._common import _pyplot

    plt = _pyplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        group = [r for r in rows if r["model"] == model]
        names = [r["rule"] for r in group]
        ax.bar(names, [r["acc_mean"] for r in group], yerr=[r["acc_std"] for r in group])
        for rule, color in (("dnw", "tab:green"), ("l1_anneal", "tab:red")):
            if rule in PAPER and rule in names:
                ax.axhline(PAPER[rule], color=color, ls="--", lw=1, label=f"paper {rule}")
        ax.set_title(model)
        ax.set_ylabel("validation accuracy (%)")
        ax.tick_params(axis="x", rotation=45)
        ax.legend(fontsize=7)
    fig.suptitle(f"ours (embedded data) vs {PAPER_SETTING}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(runs: list[dict[str, Any]], rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Accuracy and swaps against epochs per model, and ours beside the paper's figure."""
    curves: dict[str, dict[str, list[list[float]]]] = {}
    paths = []
    swaps: dict[str, dict[str, list[list[int]]]] = {}
    for r in runs:
        accs = [h["val_acc"] for h in r["history"] if h["val_acc"] is not None]
        curves.setdefault(r["setting"], {}).setdefault(r["rule"], []).append(accs)
        per_epoch = [h["swaps"] for h in r["history"]]
        swaps.setdefault(r["setting"], {}).setdefault(r["rule"], []).append(per_epoch)
    paths.append(plot_curves(curves, out / "accuracy_curves.png"))
    for model, by_rule in swaps.items():
        paths.append(plot_swaps(by_rule, out / f"swaps_per_epoch_{model}.png"))
    paths.append(plot_against_paper(rows, out / "paper_vs_ours.png"))
    return paths


def run(args: argparse.Namespace) -> int:
    """Train every (model, rule, seed); write the table, the notes and the plots."""
    if args.smoke:
        args.seeds = 1
    out = Path(args.out)
    specs = plan(args, out)
    info = init_distributed(args.device)
    with Timer() as timer:
        runs = run_jobs(
            train_rule,
            specs,
            small_scale.workers_for(args),
            desc="rules",
            progress=not args.no_progress and info.is_main,
        )
    if not info.is_main:
        return 0
    rows = aggregate(runs, args.models, args.rules)
    mismatched = sorted({r["model"] for r in rows if r["edges"] != r["budget"]})
    notes = [
        "Final validation accuracy (%) after the last epoch, mean and std over "
        f"{args.seeds} seeds; MNIST-1D for the tiny classifiers, the embedded digits for the "
        "ResNet.",
        "edges: edges in use after the last epoch (every rule ends at the same budget: the "
        "pruning rules shrink to it, the others keep it); swaps_per_epoch: edges swapped "
        "in per epoch (edges pruned by GMP and L1 + anneal are not swaps).",
        "ms_per_step: median wall time between two training steps of one epoch (data, "
        "forward, backward, optimizer step and the rule's update), mean over seeds; measured "
        "on a shared machine with several runs in parallel: compare rules within a model.",
        f"paper_ref: the DNW paper's {PAPER_SETTING}: L1 + anneal 84.3, DNW 89.7, random "
        "graph 87.2, targeted dropout 89.2 (5 runs). A reference, not the same setting.",
        "Rules: " + "; ".join(sorted({f"{r['rule']} = {r['rule_repr']}" for r in rows})) + ".",
        f"Wall time of all runs: {timer.seconds:.0f} s.",
    ]
    if mismatched:
        notes.append(f"Edge counts differ from the budget in: {', '.join(mismatched)}.")
    meta = {
        "models": args.models,
        "rules": args.rules,
        "wall_s": timer.seconds,
        "runs": runs,
        "machine": machine_info(),
        "paper": PAPER,
    }
    targets = [out] + ([RECORDED] if args.record else [])
    for target in targets:
        paths = write_results(
            target, suite="rules", rows=rows, columns=COLUMNS, meta=meta, notes=notes
        )
        if not args.no_plots:
            for p in draw(runs, rows, target):
                paths[p.stem] = p
    print(markdown_table(rows, COLUMNS))
    for n in notes:
        print(n)
    print(f"results written under {out.resolve()}: {', '.join(p.name for p in paths.values())}")
    return 0
