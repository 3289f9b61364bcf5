"""Tutorial: a custom channel graph from networkx, checked, wired, trained and read back.

Run it with ``python docs/tutorials/custom_graph.py``. It builds a small-world core
between 8 input and 3 output channels in networkx, turns it into a ChannelGraph, shows
what validation catches, trains a DNW network on a toy classification task, and reads the
learned graph back into networkx and torch-geometric.
"""

from __future__ import annotations

import networkx as nx
import torch
import torch.nn.functional as F

import graphwire
from graphwire import ChannelGraph, CycleError
from graphwire.graph import from_networkx, to_networkx, to_pyg

NUM_IN, NUM_OUT = 8, 3


def build_graph(hidden: int = 24, seed: int = 0) -> ChannelGraph:
    """Inputs -> a Watts-Strogatz core (oriented low -> high, so acyclic) -> outputs.

    The nodes get three groups, so each kind of node can have its own operation.
    """
    nxg = nx.DiGraph()
    # Flag inputs and outputs explicitly (otherwise: sources are inputs, sinks outputs).
    nxg.add_nodes_from((f"x{i}" for i in range(NUM_IN)), input=True)
    core = nx.watts_strogatz_graph(hidden, 6, 0.3, seed=seed)
    nxg.add_edges_from((f"x{i}", f"h{j}") for i in range(NUM_IN) for j in range(hidden))
    nxg.add_edges_from((f"h{min(u, v)}", f"h{max(u, v)}") for u, v in core.edges)
    nxg.add_nodes_from((f"y{o}" for o in range(NUM_OUT)), output=True)
    nxg.add_edges_from((f"h{j}", f"y{o}") for j in range(hidden) for o in range(NUM_OUT))
    plain, mapping = from_networkx(nxg, return_mapping=True)
    # Node groups (disjoint, covering every node): here by the label's first letter.
    kinds = {"inputs": "x", "hidden": "h", "outputs": "y"}
    groups = {
        kind: [i for label, i in mapping.items() if label.startswith(prefix)]
        for kind, prefix in kinds.items()
    }
    graph = ChannelGraph(
        plain.edge_index, plain.num_nodes, inputs=plain.inputs, outputs=plain.outputs, groups=groups
    )
    graph.node_labels = plain.node_labels
    return graph


def show_validation() -> None:
    """A back edge makes the graph cyclic: fine for the dynamic modes, an error for a DAG."""
    cyclic = ChannelGraph(
        torch.tensor([[0, 1, 2, 3], [1, 2, 3, 1]]), 4, inputs=[0], outputs=[3]
    )  # 1 -> 2 -> 3 -> 1
    cyclic.validate(mode="discrete")  # cycles are allowed in discrete and continuous time
    try:
        cyclic.validate(mode="dag")
    except CycleError as err:
        print(f"validate(mode='dag') raised CycleError; the cycle is {err.cycle}")


def toy_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points in R^8 labelled by which of 3 fixed random directions they point along most."""
    directions = torch.randn(NUM_IN, NUM_OUT, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(n, NUM_IN, generator=torch.Generator().manual_seed(seed))
    return x, (x @ directions).argmax(dim=1)


def main(steps: int = 300, hidden: int = 24, batch: int = 128, seed: int = 0) -> dict:
    """Build, validate, train and inspect; return a summary of the run."""
    graph = build_graph(hidden, seed)
    print(graph)
    show_validation()

    # ReLU hidden nodes; linear outputs (they are the logits). Keep 30% of the candidates.
    node_op = {"inputs": "identity", "hidden": "relu", "outputs": "identity"}
    net = graphwire.WiredGraph(graph, node_op=node_op, density=0.3, seed=seed)
    base = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt = graphwire.DNWOptimizer(net, base)
    x_test, y_test = toy_task(1024, seed + 1)
    x_train, y_train = toy_task(steps * batch, seed)
    for step in range(steps):
        xb, yb = (
            x_train[step * batch : (step + 1) * batch],
            y_train[step * batch : (step + 1) * batch],
        )
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (net(x_test).argmax(1) == y_test).float().mean().item()
    print(f"test accuracy {accuracy:.3f} after {steps} steps; {opt.swaps_total} edges swapped in")

    # The learned graph: the selected edges, with their weights, as a ChannelGraph ...
    learned = net.learned_graph()
    nx_learned = to_networkx(learned)
    labels = graph.node_labels
    hidden_used = [
        labels[v]
        for v in nx_learned.nodes
        if labels[v].startswith("h") and nx_learned.in_degree(v) and nx_learned.out_degree(v)
    ]
    print(f"{learned.num_edges} edges kept; {len(hidden_used)} of {hidden} hidden nodes in use")
    # ... and as torch-geometric data, for any PyG tool.
    print(to_pyg(learned))
    return {"accuracy": accuracy, "swaps": opt.swaps_total, "edges": learned.num_edges}


if __name__ == "__main__":
    main()
