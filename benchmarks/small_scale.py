"""small-scale: the paper's Table 2, random graph vs DNW in static, discrete and continuous time.

Trains the tiny classifiers (``models.tiny_static``, ``tiny_discrete``,
``tiny_continuous``) with a fixed random graph and with DNW at the same edge count,
over several seeds, and reports mean and standard deviation of the final validation
accuracy beside the paper's CIFAR-10 numbers. On the embedded MNIST-1D (the default;
generated offline by the ``mnist1d`` package) the three settings are the vector-node
models ``vector_static``, ``vector_discrete`` and ``vector_continuous`` (each of the 40
signal samples an input node, 200 nodes, 5% of the candidate edges); ``--settings rnn``
adds the graph RNN reading the signal as a sequence. ``--dataset digits`` runs the image
models scaled down to the 8x8 digits; with ``--data-dir`` pointing at CIFAR-10 the paper's
sizes and hyperparameters are used (800 nodes, k = 32,000, batch 512, SGD 0.1, 160
epochs, steps at 80 and 120).
"""

from __future__ import annotations

import argparse
import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks._common import (
    Timer,
    add_common_arguments,
    apply_overrides,
    machine_info,
    markdown_table,
    mean_std,
    plot_adjacency,
    plot_curves,
    plot_layered,
    plot_paper_vs_ours,
    plot_swaps,
    run_jobs,
    write_results,
)
from graphwire import OptimizerConfig, ScheduleConfig, TrainConfig, Trainer
from graphwire.training import DataSplits, init_distributed, load_checkpoint, load_dataset

SETTINGS = ("static", "discrete", "continuous")
#: Settings run only when asked (``--settings rnn``): the graph RNN of the zoo, reading the
#: signal as a sequence.
EXTRA_SETTINGS = ("rnn",)
RULES = ("random", "dnw")

#: The paper's Table 2 on CIFAR-10: (setting, rule) -> (mean, std) over 5 runs.
PAPER = {
    ("static", "random"): (76.1, 0.5),
    ("static", "dnw"): (80.9, 0.6),
    ("discrete", "random"): (77.3, 0.7),
    ("discrete", "dnw"): (82.3, 0.6),
    ("continuous", "random"): (78.5, 1.2),
    ("continuous", "dnw"): (83.1, 0.3),
}

COLUMNS = [
    "setting",
    "rule",
    "acc_mean",
    "acc_std",
    "seeds",
    "accs",
    "edges",
    "params",
    "swaps_mean",
    "unfed_mean",
    "train_s_mean",
    "paper_mean",
    "paper_std",
]


@dataclass
class Profile:
    """Model sizes and training settings of one data set, per time setting.

    Args:
        model: ``create_model`` overrides shared by the three settings.
        per_setting: Further overrides per setting (solver, steps).
        train: ``TrainConfig`` fields per setting.
        dataset: Keyword arguments of :func:`graphwire.training.load_dataset`.
        models: Registered model name per setting (default ``tiny_<setting>``).
    """

    model: dict[str, Any]
    per_setting: dict[str, dict[str, Any]]
    train: dict[str, dict[str, Any]]
    dataset: dict[str, Any] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    def model_name(self, setting: str) -> str:
        """The registered model of ``setting``."""
        return self.models.get(setting, f"tiny_{setting}")


def _sgd(lr: float, wd: float = 1e-4) -> dict[str, Any]:
    return {"lr": lr, "momentum": 0.9, "weight_decay": wd}


#: Digits: 64 nodes (16 fed by the stem, 16 read out), k = 600 edges in every setting (15%
#: of the N^2 entries; 37% of the static graph's 1,632 candidates), the same SGD for both
#: rules: batch 64, lr 0.2 after a one-epoch linear warm-up, cosine decay over 20 epochs;
#: continuous time takes one RK4 step over [0, 1]. At k = 205 (5%)
#: DNW's global top-k churns through most of its edges in the first epochs and trails the
#: random graph; see benchmarks/results/small-scale/digits/results.md for the measurements.
_DIGITS_SCHEDULE = {"kind": "cosine", "warmup_epochs": 1.0, "warmup_start": 0.05}
DIGITS = Profile(
    model={"num_nodes": 64, "stem_channels": 16, "readout": 16, "k": 600, "density": None},
    per_setting={
        "static": {},
        "discrete": {"steps": 3},
        "continuous": {"method": "rk4", "solver_options": {"step_size": 1.0}},
    },
    train={
        setting: {
            "epochs": epochs,
            "batch_size": 64,
            "optimizer": _sgd(0.2),
            "schedule": dict(_DIGITS_SCHEDULE),
        }
        for setting, epochs in (("static", 20), ("discrete", 20), ("continuous", 20))
    },
)

#: CIFAR-10: the paper's sizes and schedule.
CIFAR10 = Profile(
    model={},
    per_setting={"static": {}, "discrete": {"steps": 5}, "continuous": {}},
    train={
        s: {
            "epochs": 160,
            "batch_size": 512,
            "optimizer": _sgd(0.1),
            "schedule": {"kind": "multistep", "milestones": (80, 120)},
        }
        for s in SETTINGS
    },
)


#: MNIST-1D (the default): vector nodes, as in the issue that asked for this data set: each
#: of the 40 signal samples is an input node, the other 160 nodes are scalar ReLU nodes, and
#: one global top-k keeps 5% of the candidate edges (the paper's fraction): 800 of the
#: layered DAG's 16,000 in static, 1,990 of the complete digraph's 39,800 in discrete time
#: (3 weight-tied steps) and continuous time (one fixed RK4 step over [0, 1]). The graph
#: RNN (``--settings rnn``) reads the signal 4 samples per step (10 steps) into 64 tanh
#: nodes, keeps 25% of its 4,992 candidate edges (graph_rnn's default fraction) and trains
#: with lr 0.02: at lr 0.1 DNW swaps its whole edge set every epoch and trails the fixed
#: graph (see benchmarks/results/small-scale/rnn/results.md).
_MNIST1D_SCHEDULE = {"kind": "cosine", "warmup_epochs": 1.0, "warmup_start": 0.05}
MNIST1D = Profile(
    model={"num_nodes": 200, "density": 0.05},
    per_setting={
        "static": {},
        "discrete": {"steps": 3},
        "continuous": {"method": "rk4", "solver_options": {"step_size": 1.0}},
        "rnn": {"num_nodes": 64, "in_features": 4, "density": 0.25},
    },
    train={
        setting: {
            "epochs": 30,
            "batch_size": 64,
            "optimizer": _sgd(0.02 if setting == "rnn" else 0.1),
            "schedule": dict(_MNIST1D_SCHEDULE),
        }
        for setting in (*SETTINGS, *EXTRA_SETTINGS)
    },
    models={
        "static": "vector_static",
        "discrete": "vector_discrete",
        "continuous": "vector_continuous",
        "rnn": "graph_rnn_1d",
    },
)


def profile_for(dataset: str) -> Profile:
    """The profile of a data set (MNIST-1D, digits, or the paper's for CIFAR-10 and others)."""
    profiles = {"mnist1d": MNIST1D, "digits": DIGITS}
    return copy.deepcopy(profiles.get(dataset, CIFAR10))


def add_arguments(parser: argparse.ArgumentParser, *, out: str = "runs/small-scale") -> None:
    """Options of the suite."""
    add_common_arguments(parser, epochs=None, seeds=3, out=out)
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(SETTINGS),
        choices=(*SETTINGS, *EXTRA_SETTINGS),
        help="time settings; 'rnn' (MNIST-1D only) trains the graph RNN on the signal as a "
        "sequence",
    )
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument(
        "--limit", type=int, default=None, help="use only this many images per split (quick runs)"
    )


# ---------------------------------------------------------------------- one run
def resolve_dataset(
    args: argparse.Namespace, default: str = "cifar10", embedded: str = "digits"
) -> str:
    """The data set: ``--dataset``, else ``default`` with ``--data-dir``, else ``embedded``.

    small-scale and the demo pass ``embedded="mnist1d"``; the image suites keep digits.
    """
    if args.dataset:
        return args.dataset
    return default if args.data_dir else embedded


def load_data(spec: dict[str, Any]) -> DataSplits:
    """The data a spec names (the embedded digits and MNIST-1D need no directory)."""
    kwargs = dict(spec.get("dataset_kwargs", {}))
    if spec["dataset"] == "cifar10" and spec.get("download"):
        kwargs["download"] = True
    if spec["dataset"] in ("digits", "mnist1d") and spec.get("limit"):
        kwargs["limit"] = spec["limit"]
    return load_dataset(spec["dataset"], spec.get("data_dir"), **kwargs)


def build_model(spec: dict[str, Any], data: DataSplits) -> nn.Module:
    """The tiny classifier of ``spec["setting"]`` with ``spec["rule"]``, fit to ``data``."""
    from models import create_model, model_defaults

    overrides = {k: v for k, v in spec["model"].items() if v is not None}
    if "k" not in overrides and "density" not in overrides and spec.get("density"):
        overrides["density"] = spec["density"]
    # Image models take image_size; 1-D models the signal length; the graph RNN neither
    # (its in_features, the samples per step, comes from the profile).
    accepted = model_defaults(spec["model_name"])
    shape = {"num_classes": data.num_classes, "in_channels": data.in_channels}
    shape["length" if "length" in accepted else "image_size"] = data.image_size
    shape = {k: v for k, v in shape.items() if k in accepted}
    return create_model(
        spec["model_name"], rule=spec["rule"], seed=spec["seed"], **shape, **overrides
    )


def train_config(spec: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of a spec."""
    t = dict(spec["train"])
    optimizer = OptimizerConfig(**t.pop("optimizer", {}))
    schedule = ScheduleConfig(**t.pop("schedule", {}))
    run_dir = Path(spec["run_dir"])
    return TrainConfig(
        optimizer=optimizer,
        schedule=schedule,
        seed=spec["seed"],
        checkpoint_dir=str(run_dir),
        metrics_path=str(run_dir / "metrics.jsonl"),
        progress=spec.get("progress", False),
        device=spec.get("device"),
        **t,
    )


def train_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train the model a spec describes; return its summary (picklable, for worker pools)."""
    info = init_distributed(spec.get("device"))
    data = load_data(spec)
    model = build_model(spec, data)
    params = sum(p.numel() for p in model.parameters())
    edges = sum(int(m.edge_mask.sum()) for m in model.modules() if hasattr(m, "edge_mask"))
    with Timer() as timer:
        result = Trainer(model, data, train_config(spec), info=info).fit()
    return {
        "setting": spec["setting"],
        "rule": spec["rule"],
        "seed": spec["seed"],
        "final_acc": result.final_val_acc,
        "best_acc": result.best_val_acc,
        "swaps_total": result.swaps_total,
        "history": result.history,
        "edges": edges,
        "params": params,
        "train_s": timer.seconds,
        "run_dir": spec["run_dir"],
    }


def restore_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a run's model and load its last checkpoint (weights and masks)."""
    data = load_data(spec)
    model = build_model(spec, data)
    # The trained model is the model itself (no compiled copy): its state dict loads here.
    model.load_state_dict(load_checkpoint(Path(spec["run_dir"]) / "last.pt")["model"])
    return model


# ---------------------------------------------------------------------- the suite
def plan(args: argparse.Namespace, dataset: str, out: Path) -> list[dict[str, Any]]:
    """One spec per (setting, rule, seed); ``args.profile`` (if set) replaces the profile."""
    prof = getattr(args, "profile", None) or profile_for(dataset)
    specs = []
    for setting in args.settings:
        for rule in args.rules:
            for seed in range(args.seeds):
                train = apply_overrides(copy.deepcopy(prof.train[setting]), args)
                specs.append(
                    {
                        "setting": setting,
                        "rule": rule,
                        "seed": seed,
                        "model_name": prof.model_name(setting),
                        "model": _model_settings(prof, setting),
                        "train": train,
                        "dataset": dataset,
                        "dataset_kwargs": prof.dataset,
                        "data_dir": args.data_dir,
                        "download": args.download,
                        "limit": getattr(args, "limit", None),
                        "device": args.device,
                        "run_dir": str(out / "runs" / f"{setting}-{rule}-seed{seed}"),
                        "progress": False,
                    }
                )
    return specs


def _model_settings(prof: Profile, setting: str) -> dict[str, Any]:
    if setting not in prof.per_setting:
        raise SystemExit(f"small-scale: setting {setting!r} has no profile for this data set.")
    per = prof.per_setting[setting]
    if "num_nodes" in per or setting in EXTRA_SETTINGS:
        return dict(per)  # its own model: the shared sizes do not apply
    return {**prof.model, **per}


def workers_for(args: argparse.Namespace) -> int:
    """Parallel runs: one per CPU on CPU, one under torchrun or on a GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 1
    # an explicit --device decides; without one, a visible GPU is where the runs go
    on_gpu = args.device.startswith("cuda") if args.device else torch.cuda.is_available()
    if on_gpu:
        return 1
    return args.workers or os.cpu_count() or 1


def aggregate(runs: list[dict[str, Any]], settings, rules) -> list[dict[str, Any]]:
    """One row per (setting, rule): mean and std of the final accuracy over seeds."""
    rows = []
    for setting in settings:
        for rule in rules:
            group = [r for r in runs if r["setting"] == setting and r["rule"] == rule]
            if not group:
                continue
            accs = [r["final_acc"] for r in group]
            mean, std = mean_std(accs)
            paper = PAPER.get((setting, rule), (None, None))
            rows.append(
                {
                    "setting": setting,
                    "rule": rule,
                    "acc_mean": mean,
                    "acc_std": std,
                    "seeds": len(group),
                    "accs": " ".join(f"{a:.1f}" for a in accs),
                    "edges": group[0]["edges"],
                    "params": group[0]["params"],
                    "swaps_mean": mean_std([r["swaps_total"] for r in group])[0],
                    "unfed_mean": mean_std([r["history"][-1]["unfed"] for r in group])[0],
                    "train_s_mean": mean_std([r["train_s"] for r in group])[0],
                    "paper_mean": paper[0],
                    "paper_std": paper[1],
                }
            )
    return rows


def verdicts(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per setting: DNW's margin over the random graph and whether it exceeds the seeds' std."""
    out = {}
    for setting in {r["setting"] for r in rows}:
        by_rule = {r["rule"]: r for r in rows if r["setting"] == setting}
        if "dnw" in by_rule and "random" in by_rule:
            d, r = by_rule["dnw"], by_rule["random"]
            margin = d["acc_mean"] - r["acc_mean"]
            spread = max(d["acc_std"], r["acc_std"])
            out[setting] = {"margin": margin, "std": spread, "holds": margin > spread}
    return out


def draw(runs, rows, out: Path, specs_by_key: dict) -> list[Path]:
    """Accuracy curves, swaps per epoch, learned wirings and the paper beside ours."""
    curves: dict[str, dict[str, list[list[float]]]] = {}
    swaps: dict[str, list[list[int]]] = {}
    for r in runs:
        accs = [h["val_acc"] for h in r["history"] if h["val_acc"] is not None]
        curves.setdefault(r["setting"], {}).setdefault(r["rule"], []).append(accs)
        if r["rule"] == "dnw":
            swaps.setdefault(r["setting"], []).append([h["swaps"] for h in r["history"]])
    paths = [plot_curves(curves, out / "accuracy_curves.png")]
    if swaps:
        paths.append(plot_swaps(swaps, out / "swaps_per_epoch.png"))
    paths.append(
        plot_paper_vs_ours(
            rows,
            out / "paper_vs_ours.png",
            group="setting",
            label="rule",
            ours="acc_mean",
            ours_std="acc_std",
            paper="paper_mean",
            paper_std="paper_std",
            ours_name="ours (this data set)",
            paper_name="paper (CIFAR-10)",
        )
    )
    for setting in {r["setting"] for r in runs}:
        dnw = [r for r in runs if r["setting"] == setting and r["rule"] == "dnw"]
        if not dnw:
            continue
        best = max(dnw, key=lambda r: r["final_acc"])
        model = restore_model(specs_by_key[(best["setting"], best["rule"], best["seed"])])
        wired = next((m for m in model.modules() if hasattr(m, "graph")), None)
        if wired is None:  # the graph RNN's wiring is three wired layers, not one graph
            continue
        paths.append(
            plot_adjacency(
                wired.graph, wired.weight, wired.edge_mask, out / f"wiring_{setting}_adjacency.png"
            )
        )
        paths.append(
            plot_layered(
                wired.graph, wired.weight, wired.edge_mask, out / f"wiring_{setting}_layered.png"
            )
        )
    return paths


def run_suite(
    args: argparse.Namespace, *, suite: str = "small-scale"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict]:
    """Train every (setting, rule, seed), write results and plots; rank 0 writes.

    Returns:
        The rows, the runs and the specs by ``(setting, rule, seed)``.
    """
    dataset = resolve_dataset(args, embedded="mnist1d")
    out = Path(args.out)
    specs = plan(args, dataset, out)
    info = init_distributed(args.device)
    with Timer() as timer:
        runs = run_jobs(
            train_one,
            specs,
            workers_for(args),
            desc=f"{suite} ({dataset})",
            progress=not args.no_progress and info.is_main,
        )
    rows = aggregate(runs, args.settings, args.rules)
    by_key = {(s["setting"], s["rule"], s["seed"]): s for s in specs}
    if info.is_main:
        verdict = verdicts(rows)
        prof = getattr(args, "profile", None) or profile_for(dataset)
        notes = [
            f"{dataset}: final validation accuracy (%) after the last epoch, mean and std over "
            f"{args.seeds} seeds; paper columns are CIFAR-10 (Table 2, 5 runs).",
            f"Wall time of all runs: {timer.seconds:.0f} s.",
            "unfed_mean: non-input nodes that no selected edge feeds after the last epoch "
            "(they output a constant; see graphwire.WiredGraph.unfed_nodes), mean over seeds.",
        ]
        notes += dataset_notes(dataset, prof)
        notes += [
            f"{s}: DNW - random = {v['margin']:+.2f} points, seeds' std {v['std']:.2f}: "
            + ("DNW wins by more than the std." if v["holds"] else "NOT more than the std.")
            for s, v in sorted(verdict.items())
        ]
        meta = {
            "dataset": dataset,
            "profile": {"model": prof.model, "per_setting": prof.per_setting},
            "train": {s["setting"]: s["train"] for s in specs},
            "wall_s": timer.seconds,
            "verdicts": verdict,
            "runs": [{k: v for k, v in r.items()} for r in runs],
            "machine": machine_info(),
        }
        paths = write_results(out, suite=suite, rows=rows, columns=COLUMNS, meta=meta, notes=notes)
        print(markdown_table(rows, COLUMNS))
        for n in notes:
            print(n)
        if not args.no_plots:
            for p in draw(runs, rows, out, by_key):
                paths[p.stem] = p
        names = ", ".join(p.name for p in paths.values())
        print(f"results written under {out.resolve()}: {names}")
    return rows, runs, by_key


def dataset_notes(dataset: str, prof: Profile) -> list[str]:
    """What the results page must say about the data: for MNIST-1D its version and arguments."""
    if dataset != "mnist1d":
        return []
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = f"mnist1d {version('mnist1d')}"
    except PackageNotFoundError:  # pragma: no cover - the loader needs the package
        package = "mnist1d (version unknown)"
    args = dict(load_dataset("mnist1d", **prof.dataset).source)  # what generated the data
    args.pop("generator", None)
    n = args["num_samples"]
    n_train = int(n * args["train_split"])
    return [
        f"Data: MNIST-1D generated offline by {package} (mnist1d.data.make_dataset, never "
        f"its download), {n_train} training and {n - n_train} validation signals of "
        f"{args['final_seq_length']} samples, 10 classes; generation arguments "
        + ", ".join(f"{k}={v}" for k, v in args.items())
        + ".",
    ]


def run(args: argparse.Namespace) -> int:
    """Run the suite."""
    run_suite(args)
    return 0
