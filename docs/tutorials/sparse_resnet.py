"""Tutorial: sparsify a ResNet, train it with DNW, compile it, measure it, export it.

Run it with ``python docs/tutorials/sparse_resnet.py``. A CIFAR-style ResNet from the
model zoo is made sparse with ``sparsify`` (DNW, one rate per layer, first layer dense),
trained for a few steps on the 8 x 8 digits, then frozen for inference with
``graphwire.compile``: each wired layer becomes a plain layer with its masked weight,
channels left without any weight are removed across layers (the compaction report says
which), and each layer runs as a dense product or a sparse kernel. The compiled model is
checked against the masked one, timed against the dense network, counted with
``graphwire.count`` and exported with ``torch.export``.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

import graphwire
from graphwire.layers import sparsify
from graphwire.training import load_dataset
from models.resnet import resnet_cifar


def best_of(fn, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls (a rough, machine-dependent figure)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(
    steps: int = 100,
    depth: int = 14,
    width: int = 16,
    density: float = 0.1,
    limit: int | None = None,
    batch: int = 64,
    export: bool = True,
    seed: int = 0,
) -> dict:
    """Sparsify, train, compile, compare, time, count and export; return what was checked."""
    torch.manual_seed(seed)
    data = load_dataset("digits", limit=limit)
    x, y = data.train.tensors
    xv, yv = data.val.tensors

    # 1. An ordinary network, then the same network with every conv and the classifier
    # wired: each keeps `density` of its weights, chosen by DNW (the largest |w|).
    dense = resnet_cifar(depth=depth, width=width, in_channels=1, sparse=False, seed=seed)
    model = sparsify(dense, density=density, rule="dnw", keep_first_dense=True, seed=seed)

    # 2. Train a few steps: DNWOptimizer re-chooses each layer's weights after every step.
    opt = graphwire.DNWOptimizer(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        masked_out = model(xv)
    accuracy = (masked_out.argmax(1) == yv).float().mean().item()
    print(
        f"after {steps} steps: loss {loss.item():.3f}, accuracy {accuracy:.3f}, "
        f"{opt.swaps_total} weights swapped in"
    )

    # 3. Compile: frozen, compacted, each layer dense or sparse. `model` is untouched.
    infer = graphwire.freeze(model)
    report = infer.compaction_report
    print(report)
    kinds = sorted(set(infer.fused_epilogues.values()))
    print(f"{len(infer.fused_epilogues)} sparse convolutions took over {kinds}")
    with torch.inference_mode():
        gap = (infer(xv) - masked_out).abs().max().item()
    print(f"compiled vs masked model: max difference {gap:.1e}")

    # 4. Measure: time against the dense network, live multiply-adds with graphwire.count.
    dense.eval()
    with torch.inference_mode():
        t_dense = best_of(lambda: dense(xv), 5)
        t_masked = best_of(lambda: model(xv), 5)
        t_compiled = best_of(lambda: infer(xv), 5)
    shape = (1, *xv.shape[1:])
    macs = {
        name: graphwire.count(m, shape).macs
        for name, m in (("dense", dense), ("masked", model), ("compiled", infer))
    }
    print(
        f"{len(xv)} images: dense {t_dense * 1e3:.1f} ms, masked {t_masked * 1e3:.1f} ms, "
        f"compiled {t_compiled * 1e3:.1f} ms; multiply-adds per image: "
        + ", ".join(f"{k} {v:,}" for k, v in macs.items())
    )

    # 5. Export: a graph of tensor operations for other runtimes.
    export_gap = None
    if export:
        program = torch.export.export(infer, (xv[:4],))
        with torch.inference_mode():
            export_gap = (program.module()(xv[:4]) - infer(xv[:4])).abs().max().item()
        print(
            f"torch.export: {len(program.graph.nodes)} graph nodes, max difference {export_gap:.1e}"
        )
    return {
        "accuracy": accuracy,
        "gap": gap,
        "removed": report.removed,
        "fused": len(infer.fused_epilogues),
        "macs": macs,
        "times": {"dense": t_dense, "masked": t_masked, "compiled": t_compiled},
        "export_gap": export_gap,
        "swaps": opt.swaps_total,
    }


if __name__ == "__main__":
    main()
