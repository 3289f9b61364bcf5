"""smoke: every suite's code path in seconds (tiny models, one epoch, a few images).

Runs small-scale (on 64 MNIST-1D signals per split, every setting and the graph RNN), the
demo's compile-and-count step, alternatives, mobilenet (counts at a small image size) and
sparse (on 64 digits per split), and checks each wrote its JSON, CSV and markdown. The
tests run it; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import alternatives, demo, mobilenet, small_scale, sparse
from benchmarks._common import Timer

#: A tiny image profile (digits): 24 nodes, one epoch, every setting.
TINY = small_scale.Profile(
    model={"num_nodes": 24, "stem_channels": 4, "readout": 4, "density": 0.1},
    per_setting={
        "static": {},
        "discrete": {"steps": 2},
        "continuous": {"method": "rk4", "solver_options": {"step_size": 1.0}},
    },
    train={
        s: {"epochs": 1, "batch_size": 32, "optimizer": {"lr": 0.1}} for s in small_scale.SETTINGS
    },
)


#: A tiny MNIST-1D profile: the demo's vector-node models with 56 nodes (40 inputs), and the
#: graph RNN with 8 hidden nodes; one epoch.
TINY_1D = small_scale.Profile(
    model={"num_nodes": 56, "readout": 4, "density": 0.1},
    per_setting={
        "static": {},
        "discrete": {"steps": 2},
        "continuous": {"method": "rk4", "solver_options": {"step_size": 1.0}},
        "rnn": {"num_nodes": 8, "in_features": 4, "density": 0.2},
    },
    train={
        s: {"epochs": 1, "batch_size": 32, "optimizer": {"lr": 0.1}}
        for s in (*small_scale.SETTINGS, *small_scale.EXTRA_SETTINGS)
    },
    dataset={"num_samples": 200},
    models=dict(small_scale.MNIST1D.models),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the suite."""
    parser.add_argument("--out", default="runs/smoke", help="output directory")
    parser.add_argument("--plots", action="store_true", help="also draw the plots")


def _args(module, argv: list[str], **extra) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    for key, value in extra.items():
        setattr(args, key, value)
    return args


def run(args: argparse.Namespace) -> int:
    """Run every suite's code path on tiny settings; check the files they wrote."""
    out = Path(args.out)
    common = ["--workers", "1", "--no-progress"] + ([] if args.plots else ["--no-plots"])
    written = {}
    with Timer() as timer:
        ss_args = _args(
            small_scale,
            ["--seeds", "1", "--limit", "64", "--out", str(out / "small-scale"), *common],
            profile=TINY_1D,
            settings=[*small_scale.SETTINGS, *small_scale.EXTRA_SETTINGS],
        )
        rows, runs, specs = small_scale.run_suite(ss_args)
        written["small-scale"] = out / "small-scale"
        report = demo.compile_best(runs, specs, batch=16)
        (out / "small-scale" / "compiled.json").write_text(json.dumps(report, indent=2))
        alt = _args(
            alternatives,
            ["--seeds", "1", "--epochs", "1", "--limit", "64", "--out", str(out / "alt"), *common],
            profile=TINY,
        )
        alternatives.run(alt)
        written["alternatives"] = out / "alt"
        mob = ["--models", "mobilenet_v1_x025", "dnw_mobilenet_x0225", "--image-size", "32"]
        mobilenet.run(_args(mobilenet, [*mob, "--out", str(out / "mobilenet"), *common]))
        written["mobilenet"] = out / "mobilenet"
        sp = ["--densities", "0.1", "--epochs", "1", "--limit", "64", "--batch-size", "32"]
        sparse.run(_args(sparse, [*sp, "--out", str(out / "sparse"), *common]))
        written["sparse"] = out / "sparse"
    missing = [
        str(d / f"results.{ext}")
        for d in written.values()
        for ext in ("json", "csv", "md")
        if not (d / f"results.{ext}").is_file()
    ]
    if missing:
        print("smoke: missing result files: " + ", ".join(missing))
        return 1
    print(f"smoke: {len(written)} suites ran in {timer.seconds:.1f} s; files under {out.resolve()}")
    return 0
