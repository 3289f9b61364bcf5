"""Tutorial: train a wired network on its default backend, freeze it for inference, export it.

Run it with ``python docs/tutorials/freeze_export.py``. It trains a DNW network on the
8 x 8 digits as built (the dense backend), checks it against the
reference backend, freezes it with ``graphwire.freeze`` (dead nodes removed, channels
compacted), saves and reloads it, and exports the frozen module with ``torch.export``.
"""

from __future__ import annotations

import io
import time

import torch
import torch.nn.functional as F

import graphwire
from graphwire.graph import layered_dag
from graphwire.training import load_dataset


def make_net(hidden: int, density: float, seed: int) -> graphwire.WiredGraph:
    """64 pixels -> two hidden blocks -> 10 outputs, DNW keeping ``density`` of the edges."""
    graph = layered_dag([64, hidden, hidden, 10])
    return graphwire.WiredGraph(graph, node_op="relu", density=density, seed=seed)


def best_of(fn, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls (a rough, machine-dependent figure)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(
    epochs: int = 8,
    hidden: int = 128,
    density: float = 0.05,
    limit: int | None = None,
    batch: int = 64,
    export: bool = True,
    seed: int = 0,
) -> dict:
    """Train, freeze, compare, save, reload and export; return what was checked."""
    torch.manual_seed(seed)
    data = load_dataset("digits", limit=limit)
    x, y = (t.flatten(1) if t.dim() > 2 else t for t in data.train.tensors)
    xv, yv = (t.flatten(1) if t.dim() > 2 else t for t in data.val.tensors)

    # 1. Train with the module: the default backend runs dense blocks.
    net = make_net(hidden, density, seed)
    assert net.backend == "dense"
    opt = graphwire.DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        dense_out = net(xv)
        net.backend = "reference"  # the message-passing oracle, same weights and mask
        train_gap = (dense_out - net(xv)).abs().max().item()
        net.backend = "auto"
        accuracy = (dense_out.argmax(1) == yv).float().mean().item()
    print(f"accuracy {accuracy:.3f}; {opt.swaps_total} swaps; dense vs reference {train_gap:.1e}")

    # 2. Freeze: a copy without dead nodes, blocks dense or sparse; `net` is untouched.
    frozen = graphwire.freeze(net)
    print(
        f"kept {frozen.kept_nodes} of {net.graph.num_nodes} nodes "
        f"({frozen.dropped_nodes} dead) and {frozen.kept_edges} of {int(net.mask().sum())} edges"
    )
    with torch.inference_mode():
        eval_gap = (frozen(xv) - net(xv)).abs().max().item()
        t_ref = best_of(lambda: net(xv), 5)
        t_fast = best_of(lambda: frozen(xv), 5)
    print(f"frozen module vs default backend: max difference {eval_gap:.1e}")
    print(
        f"inference on {len(xv)} images: default backend {t_ref * 1e3:.2f} ms, "
        f"frozen {t_fast * 1e3:.2f} ms"
    )

    # 3. Save and reload. The eval module's shapes depend on the selection, so the portable
    # checkpoint is the WiredGraph's state dict (weights *and* mask): load it into a network
    # built the same way and freeze again. (torch.save(frozen) pickles the module whole.)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    rebuilt = make_net(hidden, density, seed=seed + 1)  # other initial weights and mask
    rebuilt.load_state_dict(torch.load(buffer))
    reloaded = graphwire.freeze(rebuilt)
    with torch.inference_mode():
        reload_gap = (reloaded(xv) - frozen(xv)).abs().max().item()
    print(f"reloaded vs saved: max difference {reload_gap:.1e}")

    # 4. torch.export: a graph of plain tensor ops, ready for other runtimes.
    export_gap = None
    if export:
        program = torch.export.export(frozen, (xv[:8],))
        export_gap = (program.module()(xv[:8]) - frozen(xv[:8])).abs().max().item()
        print(
            f"torch.export: {len(program.graph.nodes)} graph nodes, max difference {export_gap:.1e}"
        )
    return {
        "accuracy": accuracy,
        "train_gap": train_gap,
        "eval_gap": eval_gap,
        "reload_gap": reload_gap,
        "export_gap": export_gap,
        "dropped_nodes": frozen.dropped_nodes,
    }


if __name__ == "__main__":
    main()
