"""Tutorial: sparse training of an existing network with DNW.

Run it with ``python docs/tutorials/sparse_training.py``. A small convolutional network
for the 8 x 8 digits is trained three ways with the same loop
(:class:`graphwire.Trainer`): dense; sparse with DNW (``sparsify``: every conv
and linear layer keeps a fraction of its weights, re-chosen every step); and sparse with a
fixed random mask at the same density. ``graphwire.count`` reports the live parameters and
multiply-adds of each.
"""

from __future__ import annotations

from torch import nn

import graphwire
from graphwire import OptimizerConfig, ScheduleConfig, TrainConfig, Trainer
from graphwire.layers import sparsify
from graphwire.training import load_dataset


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


if __name__ == "__main__":
    main()
