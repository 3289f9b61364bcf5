"""Tutorial: one task, three settings: a static DAG, discrete time and continuous time.

Run it with ``python docs/tutorials/time_modes.py``. It trains DNW networks on the
8 x 8 digits (embedded in scikit-learn, no download) with

- ``mode="dag"`` on a layered DAG (the paper's static setting),
- ``mode="discrete"``: ``T`` weight-tied steps over a complete directed graph,
- ``mode="continuous"``: the same dynamics as an ODE, solved by torchdiffeq,

all with the same edge budget, and prints their accuracy and swaps.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

import graphwire
from graphwire import ChannelGraph
from graphwire.graph import complete_digraph, layered_dag
from graphwire.training import load_dataset

NUM_IN, NUM_OUT = 64, 10


def make_net(mode: str, hidden: int, k: int, seed: int) -> graphwire.WiredGraph:
    """A wired network for ``mode`` with ``hidden`` hidden nodes and ``k`` edges."""
    if mode == "dag":
        # inputs -> two blocks of hidden nodes -> outputs, every block to every later one;
        # the blocks are node groups "block0" .. "block3"
        graph = layered_dag([NUM_IN, hidden // 2, hidden - hidden // 2, NUM_OUT])
        ops = {"block0": "identity", "block1": "relu", "block2": "relu", "block3": "identity"}
        return graphwire.WiredGraph(graph, node_op=ops, k=k, mode="dag", seed=seed)
    # One complete directed graph over all nodes: cycles allowed. Inputs hold the data at
    # t = 0; since they have incoming candidate edges here, they are updated too.
    n = NUM_IN + hidden + NUM_OUT
    complete = complete_digraph(n, inputs=NUM_IN, outputs=NUM_OUT)
    groups = {"state": range(n - NUM_OUT), "readout": range(n - NUM_OUT, n)}
    graph = ChannelGraph(
        complete.edge_index, n, inputs=complete.inputs, outputs=complete.outputs, groups=groups
    )
    ops = {"state": "tanh", "readout": "identity"}
    if mode == "discrete":
        return graphwire.WiredGraph(graph, node_op=ops, k=k, mode="discrete", steps=3, seed=seed)
    # A fixed-step solver keeps the tutorial fast; the default is dopri5 at rtol=atol=1e-3.
    solver = graphwire.ODESolver(method="rk4", options={"step_size": 0.5})
    return graphwire.WiredGraph(
        graph, node_op=ops, k=k, mode="continuous", solver=solver, seed=seed
    )


def train(net, x, y, epochs: int, batch: int, seed: int) -> int:
    """Plain SGD + DNW re-selection; return the edges swapped in."""
    base = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    opt = graphwire.DNWOptimizer(net, base)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return opt.swaps_total


def main(
    epochs: int = 5,
    hidden: int = 48,
    k: int = 1000,
    limit: int | None = None,
    batch: int = 64,
    modes: tuple[str, ...] = ("dag", "discrete", "continuous"),
    seed: int = 0,
) -> dict[str, float]:
    """Train one network per mode; return ``{mode: validation accuracy}``."""
    data = load_dataset("digits", limit=limit)
    x, y = data.train.tensors
    xv, yv = data.val.tensors
    x, xv = x.flatten(1), xv.flatten(1)  # [B, 64]: one input node per pixel
    results = {}
    for mode in modes:
        torch.manual_seed(seed)
        net = make_net(mode, hidden, k, seed)
        start = time.perf_counter()
        swaps = train(net, x, y, epochs, batch, seed)
        with torch.no_grad():
            acc = (net(xv).argmax(1) == yv).float().mean().item()
        seconds = time.perf_counter() - start
        print(
            f"{mode:>10}: {net.graph.num_edges:6d} candidates, {k} kept, "
            f"accuracy {acc:.3f}, {swaps} swaps, {seconds:.1f} s"
        )
        results[mode] = acc
    return results


if __name__ == "__main__":
    main()
