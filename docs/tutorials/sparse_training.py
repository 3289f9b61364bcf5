"""Tutorial: sparse training of an existing network with DNW.

Run it with ``python docs/tutorials/sparse_training.py``. A small convolutional network
for the 8 x 8 digits is trained three ways with the same loop
(:class:`graphwire.Trainer`): dense; sparse with DNW (``sparsify``: every conv
and linear layer keeps a fraction of its weights, re-chosen every step); and sparse with a
fixed random mask at the same density. ``graphwire.count`` reports the live parameters and
multiply-adds of each. :func:`step_times` then times one training step of the MLP
784-300-100-10 three ways: dense, masked (every wired layer on dense products) and sparse
(the default: sparse products where the cost model says they pay).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import graphwire
from graphwire import DNWOptimizer, OptimizerConfig, ScheduleConfig, TrainConfig, Trainer
from graphwire.layers import WiredConv2d, WiredLinear, sparsify
from graphwire.training import load_dataset
from graphwire.wiring import SET, RigL


def existing_network(width: int = 32) -> nn.Module:
    """An ordinary PyTorch CNN: nothing graphwire-specific in it."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 10),
    )


def describe_layers(model: nn.Module) -> None:
    """Print how many weights each wired layer keeps."""
    for name, module in model.named_modules():
        if isinstance(module, graphwire.wiring.WiredModule):  # every wired layer is one
            kept, total = int(module.edge_mask.sum()), module.edge_mask.numel()
            print(f"    {name:>3} {type(module).__name__:<12} keeps {kept:6d} of {total:6d}")


def main(
    epochs: int = 8,
    width: int = 16,
    density: float = 0.1,
    limit: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, dict]:
    """Train dense, DNW-sparse and random-sparse versions; return accuracy (%) and cost."""
    data = load_dataset("digits", limit=limit)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=OptimizerConfig(lr=0.1, momentum=0.9, weight_decay=1e-4),
        schedule=ScheduleConfig("cosine"),
        seed=seed,
        progress=False,
    )
    dense = existing_network(width)
    runs = {
        "dense": dense,
        # DNW: the first conv stays dense (it has few weights and sees raw pixels).
        "dnw": sparsify(dense, density=density, keep_first_dense=True, seed=seed),
        # The same budget on a fixed random mask, for comparison.
        "random": sparsify(dense, density=density, keep_first_dense=True, rule="random", seed=seed),
    }
    results = {}
    for name, model in runs.items():
        result = Trainer(model, data, config).fit()
        cost = graphwire.count(model, (1, 1, data.image_size, data.image_size))
        print(
            f"{name:>6}: val accuracy {result.final_val_acc:5.1f}%, {result.swaps_total:6d} swaps, "
            f"{cost.params:6d} live parameters, {cost.macs:8d} multiply-adds"
        )
        if name != "dense":
            describe_layers(model)
        results[name] = {
            "accuracy": result.final_val_acc,
            "swaps": result.swaps_total,
            "params": cost.params,
            "macs": cost.macs,
        }
    return results


def mlp(sizes: tuple[int, ...] = (784, 300, 100, 10)) -> nn.Module:
    """The classic sparse-training benchmark: linear layers with ReLUs between."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def step_times(
    sizes: tuple[int, ...] = (784, 300, 100, 10),
    batch: int = 128,
    density: float = 0.1,
    steps: int = 30,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Median milliseconds of one training step: ``{rule: {method: ms}}``.

    ``dense``: the MLP without masks and plain SGD; ``masked``: the wired MLP with every
    layer on dense products (``kernel="dense"``, the weight times its mask); ``sparse``:
    the same wired MLP as built (``kernel="auto"``). RigL and SET never update here
    (``delta_t`` past the run): their regular steps, which are all but one in a hundred.
    """
    torch.manual_seed(seed)
    x, y = torch.randn(batch, sizes[0]), torch.randint(0, sizes[-1], (batch,))
    rules = {
        "rigl": lambda: RigL(delta_t=10**9),
        "set": lambda: SET(delta_t=10**9, seed=seed),
        "dnw": lambda: "dnw",
    }
    results: dict[str, dict[str, float]] = {}
    for name, rule in rules.items():
        dense = mlp(sizes)
        models = {"dense": dense}
        for method in ("masked", "sparse"):
            models[method] = sparsify(dense, rule=rule(), density=density, seed=seed)
            for layer in models[method].modules():
                if isinstance(layer, (WiredLinear, WiredConv2d)) and method == "masked":
                    layer.kernel = "dense"  # the masked dense step
        steps_of = {}
        for method, model in models.items():
            base = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            opt = base if method == "dense" else DNWOptimizer(model, base)

            def step(model=model, opt=opt) -> None:
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()

            steps_of[method] = step
        times: dict[str, list[float]] = {m: [] for m in steps_of}
        for _ in range(steps):  # interleaved: every method sees the same machine state
            for method, step in steps_of.items():
                start = time.perf_counter()
                step()
                times[method].append(time.perf_counter() - start)
        results[name] = {m: 1e3 * statistics.median(t[1:]) for m, t in times.items()}
        # the cost model's choice per layer, for inputs of this batch (shape and dtype only)
        wired = [m for m in models["sparse"].modules() if isinstance(m, WiredLinear)]
        sparse_layers = [m.runs_sparse(torch.empty(batch, m.in_features)) for m in wired]
        print(
            f"{name:>5}: "
            + ", ".join(f"{m} {ms:.2f} ms" for m, ms in results[name].items())
            + f"; layers on sparse products: {sum(sparse_layers)} of {len(sparse_layers)}"
        )
    return results


if __name__ == "__main__":
    main()
    step_times()
