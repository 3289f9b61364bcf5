"""Quick start: build a custom graph, wire it with DNW, train a few steps, see edges swap.

Run it with ``python docs/tutorials/quickstart.py``.
"""

import networkx as nx
import torch

import graphwire
from graphwire.graph import from_networkx


def main(steps: int = 30, seed: int = 0) -> graphwire.DNWOptimizer:
    """Train a 4-input, 2-output wired network on a toy regression task."""
    # 1. A custom graph: any networkx DiGraph whose sources are inputs and sinks outputs.
    nxg = nx.DiGraph()
    nxg.add_edges_from((f"x{i}", f"h{j}") for i in range(4) for j in range(16))
    nxg.add_edges_from((f"h{i}", f"h{j}") for i in range(16) for j in range(i + 1, 16))
    nxg.add_edges_from((f"h{j}", f"y{o}") for j in range(16) for o in range(2))
    graph = from_networkx(nxg)

    # 2. Wire it: keep 20% of the candidate edges, chosen by |w| and re-chosen every step.
    net = graphwire.WiredGraph(graph, node_op="relu", density=0.2, seed=seed)
    opt = graphwire.DNWOptimizer(net, torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9))

    # 3. Train; every candidate edge gets a gradient, so useful ones swap in.
    start = net.mask().clone()
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(4, 2, generator=gen)
    for step in range(steps):
        x = torch.randn(128, 4, generator=gen)
        loss = (net(x) - torch.tanh(x @ teacher)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            swapped = opt.swaps_last_step
            print(f"step {step:3d}  loss {loss.item():.4f}  edges swapped {swapped}")
    print(f"{int(net.mask().sum())} of {graph.num_edges} edges in use, {opt.swaps_total} swaps")

    # 4. Which edges the training brought in, by their networkx labels.
    labels = graph.node_labels
    came_in = (net.mask() & ~start).nonzero().flatten()
    for u, v in graph.edge_index[:, came_in].t().tolist():
        print(f"  swapped in: {labels[u]} -> {labels[v]}")
    return opt


if __name__ == "__main__":
    main()
