"""gpu-check: one prepared run of everything that needs a GPU, from the checkout as it is.

``make gpu-check`` (or ``python3 benchmarks/gpu_check.py``, or ``python3 -m benchmarks
gpu-check``) runs, on the first CUDA device:

1. the CUDA tests (``pytest tests -k cuda``: the tests that skip without a GPU);
2. host synchronisation in a training step: ``torch.cuda.set_sync_debug_mode("warn")``
   around the forward + backward and around the optimizer step (re-selection) of each
   mode, counting the warnings (the re-selection's top-k is allowed to synchronise);
3. the speed suite on CUDA in float32 and under bfloat16 autocast (every case);
4. training throughput of the tiny CIFAR classifiers (``tiny_static``,
   ``tiny_discrete``, ``tiny_continuous`` at 32 x 32, batch 512): images per second and
   the implied time of Table 2's 160 epochs of 50,000 images;
5. the torchvision CIFAR-10 data path on a small CIFAR-10-format folder the script
   writes itself (see :func:`data_path_check` for torchvision's checksum);
6. the ``sparsified`` suite on CUDA (dense vs masked vs compiled ResNet-50, CIFAR ResNet
   and transformer encoder at 10%, 20% and 30% of weights, batch 1 and 16; 5 repeats).

It prints one table and writes ``results.md`` and ``results.json`` under
``benchmarks/results/gpu/<gpu name>/`` (the speed suite's own pages beside them). It
installs nothing and needs no ``pip install`` of graphwire: run from the repository
root, it puts the checkout first on ``sys.path``. Without CUDA it says so, runs the same
steps on the CPU at a tiny size (a dry run, written to a temporary folder unless
``--out`` is given) and exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the checkout, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gpu"
#: Table 2's schedule: 160 epochs of CIFAR-10's 50,000 training images.
EPOCHS, TRAIN_IMAGES = 160, 50_000
TINY = ("tiny_static", "tiny_discrete", "tiny_continuous")


#: The check's steps, in the order they run (``--steps`` picks some).
STEPS = ("tests", "equivalence", "sync", "speed", "throughput", "data", "sparsified")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


# ---------------------------------------------------------------------------- steps
def cuda_tests(dry: bool) -> dict:
    """``pytest tests -k cuda`` in a subprocess (not in a dry run: they skip on a CPU).

    A machine without pytest (nothing may be installed) gets only
    :func:`equivalence_check`, which the script runs everywhere.
    """
    import importlib.util

    if dry:
        return {"status": "not run (dry run: the CUDA tests skip without a GPU)"}
    if importlib.util.find_spec("pytest") is None:
        return {"status": "not run: pytest is not installed here (see the equivalence row)"}
    cmd = [sys.executable, "-m", "pytest", "tests", "-k", "cuda", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    return {"status": "passed" if done.returncode == 0 else "FAILED", "summary": tail[0]}


def equivalence_check(device: torch.device) -> dict:
    """Dense backend and frozen module against message passing on ``device``.

    Every mode, vector and image nodes: outputs and every ``[E]`` gradient of the default
    (dense) backend against the reference backend, and the frozen module's outputs; the
    largest absolute difference of each, in float32.
    """
    import graphwire
    from graphwire import ODESolver, WiredGraph
    from graphwire.graph import complete_digraph, layered_dag

    worst = {"outputs": 0.0, "edge_gradients": 0.0, "frozen_outputs": 0.0}
    for mode in ("dag", "discrete", "continuous"):
        for images in (False, True):
            graph = (
                layered_dag([6, 12, 12, 4])
                if mode == "dag"
                else complete_digraph(20, inputs=6, outputs=4)
            )
            kw = {"steps": 3} if mode == "discrete" else {}
            if mode == "continuous":
                kw["solver"] = ODESolver(method="rk4", options={"step_size": 0.25})
            op = "conv" if images else "tanh"
            net = WiredGraph(graph, node_op=op, mode=mode, density=0.3, seed=0, **kw).to(device)
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(4, 6, *((6, 6) if images else ()), generator=gen).to(device)
            target = torch.randn_like(net(x))
            got = {}
            for backend in ("reference", "dense"):
                net.backend = backend
                net.zero_grad(set_to_none=True)
                y = net(x)
                (y - target).pow(2).sum().backward()
                got[backend] = (y.detach(), net.weight.grad.detach().clone())
            (y_ref, g_ref), (y_fast, g_fast) = got["reference"], got["dense"]
            worst["outputs"] = max(worst["outputs"], float((y_fast - y_ref).abs().max()))
            worst["edge_gradients"] = max(
                worst["edge_gradients"], float((g_fast - g_ref).abs().max())
            )
            with torch.inference_mode():
                frozen = graphwire.freeze(net)(x)
            worst["frozen_outputs"] = max(
                worst["frozen_outputs"], float((frozen - y_ref).abs().max())
            )
    ok = worst["outputs"] < 1e-4 and worst["frozen_outputs"] < 1e-4
    ok = ok and worst["edge_gradients"] < 1e-3
    return {"status": "passed" if ok else "FAILED", **worst}


def _tiny_net(mode: str, solver: str, device: torch.device, quick: bool):
    from graphwire import DNWOptimizer, ODESolver, WiredGraph
    from graphwire.graph import complete_digraph, layered_dag

    n = 48 if quick else 800
    if mode == "dag":
        graph = layered_dag([8, 20, 20] if quick else [32, 192, 192, 192, 192])
    else:
        graph = complete_digraph(n, inputs=8 if quick else 32, outputs=8 if quick else 100)
    kw = {"steps": 5} if mode == "discrete" else {}
    if mode == "continuous":
        kw["solver"] = (
            ODESolver(method="rk4", options={"step_size": 0.25})
            if solver == "rk4"
            else ODESolver(method="dopri5", rtol=1e-3, atol=1e-3)
        )
    net = WiredGraph(graph, node_op="conv", mode=mode, density=0.05, seed=0, **kw).to(device)
    opt = DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9))
    x = torch.randn(4 if quick else 64, graph.inputs.numel(), 8, 8, device=device)
    return net, opt, x


def sync_check(device: torch.device, quick: bool) -> list[dict]:
    """Synchronising CUDA calls in a training step, per mode (CUDA only)."""
    rows = []
    for mode, solver in (
        ("dag", ""),
        ("discrete", ""),
        ("continuous", "rk4"),
        ("continuous", "dopri5"),
    ):
        name = mode if not solver else f"{mode} ({solver})"
        if device.type != "cuda":
            rows.append({"case": name, "forward_backward": None, "optimizer_step": None})
            continue
        net, opt, x = _tiny_net(mode, solver, device, quick)
        for _ in range(2):  # warm-up: lazy initialisation may synchronise once
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
        torch.cuda.synchronize()
        counts, first = {}, {}
        for part in ("forward_backward", "optimizer_step"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    if part == "forward_backward":
                        opt.zero_grad()
                        net(x).square().mean().backward()
                    else:
                        opt.step()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            syncs = [w for w in caught if "synchroniz" in str(w.message)]
            counts[part] = len(syncs)
            first[part] = f"{syncs[0].filename}:{syncs[0].lineno}" if syncs else ""
        rows.append({"case": name, **counts, "first_sync": first})
    return rows


def speed_runs(device: torch.device, out: Path, quick: bool) -> dict:
    """The speed suite in float32 and under bfloat16 autocast, each in its own folder."""
    from benchmarks.__main__ import main

    results = {}
    for precision in ("float32", "bfloat16"):
        folder = out / f"speed-{precision}"
        argv = ["speed", "--device", device.type, "--precision", precision, "--out", str(folder)]
        argv += ["--no-crossover"]  # the crossover table is the CPU's backend="auto" evidence
        if not quick:  # sized for the 8-minute budget: 3 repeats, message passing once
            argv += ["--repeats", "3"] + (["--no-reference"] if precision != "float32" else [])
        if quick:  # the dry run: the same calls on two small cases (one in bfloat16)
            argv += ["--quick", "--repeats", "1", "--densities", "0.1", "--no-static"]
            argv += ["--no-selection", "--no-memory", "--no-profile", "--no-reference"]
            argv += ["--cases", "vec200_dag"] + (["layer256"] if precision == "float32" else [])
        start = time.perf_counter()
        main(argv)
        data = json.loads((folder / "results.json").read_text())
        results[precision] = {
            "wall_s": time.perf_counter() - start,
            "targets": data["targets"],
            "folder": str(folder.relative_to(out)),
        }
    return results


def sparsified_run(device: torch.device, out: Path, quick: bool) -> dict:
    """The ``sparsified`` suite on ``device`` (its smoke networks in the dry run)."""
    from benchmarks.__main__ import main

    folder = out / "sparsified"
    argv = ["sparsified", "--device", device.type, "--out", str(folder), "--no-plots"]
    argv += ["--smoke"] if quick else ["--repeats", "5"]
    start = time.perf_counter()
    main(argv)
    data = json.loads((folder / "results.json").read_text())
    speedups = [  # the compiled network against the dense one, at the lowest density
        {k: r[k] for k in ("network", "batch", "median_ms", "speedup_vs_dense")}
        for r in data["rows"]
        if r["method"] == "compiled" and r["density"] == min(data["densities"])
    ]
    return {
        "wall_s": time.perf_counter() - start,
        "density": min(data["densities"]),
        "compiled": speedups,
        "folder": str(folder.relative_to(out)),
    }


def throughput(device: torch.device, quick: bool) -> list[dict]:
    """Training images per second of the tiny CIFAR classifiers at batch 512."""
    from graphwire import DNWOptimizer
    from models import create_model

    rows = []
    batch, steps = (4, 1) if quick else (512, 10)
    size = dict(num_nodes=24, k=60, stem_channels=4, readout=4) if quick else {}
    # the dry run: float32 and one model (bfloat16 convolutions are slow on a CPU)
    for precision in ("float32",) if quick else ("float32", "bfloat16"):
        for name in TINY[:1] if quick else TINY:
            model = create_model(name, seed=0, **size).to(device)
            opt = DNWOptimizer(
                model,
                torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4),
            )
            x = torch.randn(batch, 3, 32, 32, device=device)
            y = torch.randint(0, 10, (batch,), device=device)

            def step(model=model, opt=opt, x=x, y=y, precision=precision):
                opt.zero_grad()
                dtype = torch.bfloat16 if precision == "bfloat16" else None
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()

            step()  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / steps
            rate = batch / seconds
            rows.append(
                {
                    "model": name,
                    "precision": precision,
                    "batch": batch,
                    "step_ms": seconds * 1e3,
                    "images_per_s": rate,
                    "table2_hours": EPOCHS * TRAIN_IMAGES / rate / 3600,
                }
            )
    return rows


def write_cifar_folder(root: Path, per_batch: int, seed: int = 0) -> Path:
    """A CIFAR-10-format folder (``cifar-10-batches-py``) of random images.

    Five training batches and a test batch, each a pickled dict with ``data`` (uint8
    ``[n, 3072]``, channel-major rows) and ``labels``, and ``batches.meta`` with the
    label names: the layout of the python version of CIFAR-10.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        entry = {
            "batch_label": name,
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    labels = ["airplane", "automobile", "bird", "cat", "deer"]
    labels += ["dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": labels}))
    return folder


def data_path_check(device: torch.device, quick: bool) -> dict:
    """The torchvision CIFAR-10 path on a folder this script writes.

    ``graphwire.training.load_dataset("cifar10", folder)`` goes through
    ``torchvision.datasets.CIFAR10``, which checks every file's MD5 against the
    original archive's, so it rejects any written folder; that outcome is recorded. The
    rest of the path (torchvision's reading of the batches, the usual augmentation, a
    loader with workers and pinned memory, a training step on the device) then
    runs on a subclass of torchvision's class that only skips the checksum.
    """
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return {"status": "not run: torchvision is not installed"}
    import torchvision

    from graphwire import DataError, DNWOptimizer
    from graphwire.training import load_dataset
    from models import create_model

    class WrittenCIFAR10(torchvision.datasets.CIFAR10):
        """torchvision's CIFAR-10 reader without the MD5 check of the original files."""

        def _check_integrity(self) -> bool:
            base = Path(self.root) / self.base_folder
            return all((base / name).is_file() for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    out: dict = {"torchvision": torchvision.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        per_batch = 16 if quick else 200
        write_cifar_folder(Path(tmp), per_batch)
        try:
            data = load_dataset("cifar10", tmp)
            out["load_dataset"] = f"loaded {len(data.train)} + {len(data.val)} images"
        except (RuntimeError, DataError) as err:
            out["load_dataset"] = f"rejected by torchvision: {err}"[:160]
        t = torchvision.transforms
        norm = t.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))  # CIFAR-10
        train_tf = t.Compose(
            [t.RandomCrop(32, padding=4), t.RandomHorizontalFlip(), t.ToTensor(), norm]
        )
        train = WrittenCIFAR10(tmp, train=True, transform=train_tf)
        loader = torch.utils.data.DataLoader(
            train, 8 if quick else 128, shuffle=True, num_workers=2, pin_memory=True
        )
        size = dict(num_nodes=48, k=200, stem_channels=8, readout=8) if quick else {}
        model = create_model("tiny_static", seed=0, **size).to(device)
        opt = DNWOptimizer(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        start, seen, shapes = time.perf_counter(), 0, None
        for i, (xb, yb) in enumerate(loader):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            shapes = (tuple(xb.shape), str(xb.dtype))
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
            seen += xb.shape[0]
            if i == 2:
                break
        out.update(
            status="passed" if seen and len(train) == 5 * per_batch else "FAILED",
            train_images=len(train),
            classes=len(train.classes),
            batch_shape=shapes,
            steps_s=time.perf_counter() - start,
        )
    return out


# ---------------------------------------------------------------------------- output
def write_results(out: Path, result: dict) -> str:
    """Write ``results.json`` and ``results.md``; return the markdown."""
    m = result["machine"]
    lines = [
        f"# GPU check: {m['gpu']}",
        "",
        f"torch {m['torch']}, CUDA {m['cuda']}, python {m['python']}, "
        f"{m['platform']}. Wall time of the last call {result['wall_s']:.0f} s."
        + (" **CPU dry run at a tiny size: no GPU was used.**" if result["dry_run"] else ""),
        "",
        "| check | result |",
        "|---|---|",
    ]
    if "cuda_tests" in result:
        lines.append(
            f"| CUDA tests (`pytest tests -k cuda`) | {result['cuda_tests']['status']} "
            f"{result['cuda_tests'].get('summary', '')} |"
        )
    if "equivalence" in result:
        eq = result["equivalence"]
        lines.append(
            f"| dense backend and frozen module vs message passing, every mode (max abs diff) "
            f"| {eq['status']}: outputs {eq['outputs']:.1e}, [E] gradients "
            f"{eq['edge_gradients']:.1e}, frozen outputs {eq['frozen_outputs']:.1e} |"
        )
    for s in result.get("sync", []):
        fb, st = s["forward_backward"], s["optimizer_step"]
        if fb is None:
            lines.append(f"| host syncs, training step, {s['case']} | not measured (no CUDA) |")
        else:
            lines.append(
                f"| host syncs, training step, {s['case']} | forward + backward {fb}, optimizer "
                f"step (re-selection) {st} |"
            )
    for precision, sp in result.get("speed", {}).items():
        for t in sp["targets"]:
            lines.append(
                f"| speed {precision}: {t['target']} (vs `{t['baseline']}`) | {t['outcome']}: "
                f"{t['detail'][:200]} |"
            )
    for r in result.get("throughput", []):
        lines.append(
            f"| throughput {r['model']} {r['precision']}, batch {r['batch']} | "
            f"{r['images_per_s']:,.0f} images/s ({r['step_ms']:.0f} ms a step): "
            f"{EPOCHS} epochs of {TRAIN_IMAGES:,} images in {r['table2_hours']:.1f} h |"
        )
    if "data_path" in result:
        d = result["data_path"]
        lines.append(
            f"| torchvision CIFAR-10 data path | {d.get('status')}: "
            + ", ".join(f"{k} {v}" for k, v in d.items() if k != "status")
            + " |"
        )
    sp = result.get("sparsified")
    for r in sp["compiled"] if sp else []:
        lines.append(
            f"| sparsified {r['network']}, {sp['density']:.0%} of weights, batch {r['batch']} | "
            f"compiled {r['median_ms']:.2f} ms, {r['speedup_vs_dense']:.2f}x the dense network |"
        )
    folders = [f"`{sp['folder']}/results.md`" for sp in result.get("speed", {}).values()]
    if sp:
        folders.append(f"`{sp['folder']}/results.md`")
    if folders:
        lines += ["", "The suites' own tables: " + ", ".join(folders) + "."]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    return text


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the GPU check."""
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: benchmarks/results/gpu/<gpu name>; a temporary "
        "folder for the CPU dry run)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="the CPU dry run at a tiny size, even with CUDA"
    )
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=STEPS,
        default=list(STEPS),
        metavar="STEP",
        help=f"run only these steps (default: all, in this order: {', '.join(STEPS)}); "
        "to split the check over several calls",
    )


def run(args: argparse.Namespace) -> int:
    """Run every check; print the table; write the results."""
    start = time.perf_counter()
    dry = args.dry_run or not torch.cuda.is_available()
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; a CPU dry run of the same steps at a tiny size.")
    device = torch.device("cpu" if dry else "cuda")
    gpu = "cpu dry run" if dry else torch.cuda.get_device_name(0)
    out = args.out
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="gpu-check-")) if dry else RESULTS / _slug(gpu)
    result = {
        "machine": {
            "gpu": gpu,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "dry_run": dry,
    }
    steps = {
        "tests": ("cuda_tests", lambda: cuda_tests(dry)),
        "equivalence": ("equivalence", lambda: equivalence_check(device)),
        "sync": ("sync", lambda: sync_check(device, dry)),
        "speed": ("speed", lambda: speed_runs(device, out, dry)),
        "throughput": ("throughput", lambda: throughput(device, dry)),
        "data": ("data_path", lambda: data_path_check(device, dry)),
        "sparsified": ("sparsified", lambda: sparsified_run(device, out, dry)),
    }
    earlier = out / "results.json"  # a check split over calls: keep the other steps
    if set(args.steps) != set(STEPS) and earlier.exists():
        before = json.loads(earlier.read_text())
        if before.get("machine") == result["machine"] and before.get("dry_run") == dry:
            for step, (key, _) in steps.items():
                if step not in args.steps and key in before:
                    result[key] = before[key]
    for step in STEPS:
        if step in args.steps:
            key, fn = steps[step]
            result[key] = fn()
    result["wall_s"] = time.perf_counter() - start
    print(write_results(out, result))
    print(f"gpu-check results: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python3 benchmarks/gpu_check.py [--out DIR] [--dry-run]``."""
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
