"""Tutorial: the small-scale benchmark's comparison (random graph vs DNW) on your own data.

Run it with ``python docs/tutorials/own_data.py``. The benchmark suites read the embedded
digits, CIFAR-10 or an ImageNet-style folder tree (``--data-dir``); for data in any other
form, wrap it in a :class:`graphwire.training.DataSplits` and run the suite's comparison
with the same public pieces the suite uses: ``models.create_model`` builds the paper's
tiny classifiers, :class:`graphwire.Trainer` trains them, one seed at a time.
Here the "own data" is a small synthetic image set made on the spot.
"""

from __future__ import annotations

import statistics

import torch
from torch.utils.data import TensorDataset

from graphwire import OptimizerConfig, TrainConfig, Trainer
from graphwire.training import DataSplits
from models import create_model


def make_own_data(n: int = 1200, size: int = 12, seed: int = 0) -> DataSplits:
    """Your data goes here. A stand-in: noisy images of a bar at one of 4 orientations."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    grid = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    angles = labels.float() * torch.pi / 4 + 0.1 * torch.randn(n, generator=gen)
    dist = (xx * angles.sin()[:, None, None] - yy * angles.cos()[:, None, None]).abs()
    images = torch.exp(-((dist / 0.25) ** 2)) + 0.2 * torch.randn(n, size, size, generator=gen)
    images = images.unsqueeze(1)  # [n, C=1, H, W]
    cut = int(0.8 * n)
    return DataSplits(
        name="bars",
        train=TensorDataset(images[:cut], labels[:cut]),
        val=TensorDataset(images[cut:], labels[cut:]),
        num_classes=4,
        in_channels=1,
        image_size=size,
    )


def main(
    settings: tuple[str, ...] = ("static",),
    seeds: int = 2,
    epochs: int = 4,
    num_nodes: int = 32,
    n: int = 600,
    batch_size: int = 64,
) -> dict[tuple[str, str], list[float]]:
    """Random graph vs DNW at the same edge count, per setting and seed; print a table."""
    data = make_own_data(n=n)
    sizes = {"num_nodes": num_nodes, "stem_channels": 8, "readout": 8}  # a scaled-down model
    accs: dict[tuple[str, str], list[float]] = {}
    for setting in settings:
        for rule in ("random", "dnw"):
            for seed in range(seeds):
                model = create_model(
                    f"tiny_{setting}",
                    rule=rule,
                    num_classes=data.num_classes,
                    in_channels=data.in_channels,
                    image_size=data.image_size,
                    seed=seed,
                    **sizes,
                    **({"steps": 3} if setting == "discrete" else {}),
                )
                config = TrainConfig(
                    epochs=epochs,
                    batch_size=batch_size,
                    optimizer=OptimizerConfig(lr=0.2),
                    seed=seed,
                    progress=False,
                )
                result = Trainer(model, data, config).fit()
                accs.setdefault((setting, rule), []).append(result.final_val_acc)
    print("| setting | rule | accuracy (%) | seeds |")
    print("|---|---|---|---|")
    for (setting, rule), values in accs.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {setting} | {rule} | {statistics.mean(values):.1f} ± {std:.1f} | {len(values)} |")
    return accs


if __name__ == "__main__":
    main()
