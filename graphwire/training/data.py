"""Data: the embedded digits, and CIFAR-10 / ImageNet from a directory through torchvision.

The default data set is scikit-learn's bundled ``digits`` (1,797 8x8 grey images, 10
classes), so every suite runs offline. CIFAR-10 and ImageNet are read from ``data_dir``
with torchvision when it is installed; nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from graphwire._utils import choose
from graphwire.errors import DataError
from graphwire.training.distributed import DistInfo

__all__ = [
    "DataSplits",
    "load_digits",
    "load_cifar10",
    "load_imagenet",
    "load_dataset",
    "DATASETS",
    "TensorLoader",
    "make_loader",
]

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class DataSplits:
    """A training and a validation set with what a model needs to know about them.

    Args:
        name: Data set name.
        train: Training set (items ``(image [C, H, W], label)``).
        val: Validation set.
        num_classes: Number of classes.
        in_channels: Image channels.
        image_size: Image side in pixels.
    """

    name: str
    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: int


def load_digits(
    *, val_fraction: float = 0.3, split_seed: int = 0, upscale: int = 1, limit: int | None = None
) -> DataSplits:
    """scikit-learn's bundled 8x8 digits, standardised, with a fixed seeded split.

    The split is stratified by class and depends only on ``split_seed``, so every run and
    every rule sees the same training and validation images.

    Args:
        val_fraction: Fraction of the images held out for validation.
        split_seed: Seed of the split.
        upscale: Integer factor of bilinear upscaling (``2`` gives 16x16 images).
        limit: Keep only the first ``limit`` images of each split (for quick tests).

    Returns:
        Splits of :class:`~torch.utils.data.TensorDataset` with ``[1, 8u, 8u]`` images.

    Example:
        >>> from graphwire.training import load_digits
        >>> d = load_digits()
        >>> len(d.train), len(d.val), d.num_classes, d.train[0][0].shape
        (1258, 539, 10, torch.Size([1, 8, 8]))
    """
    if importlib.util.find_spec("sklearn") is None:
        raise DataError(
            "the embedded digits need scikit-learn; install it with "
            "`pip install scikit-learn` (or `pip install graphwire[benchmarks]`)."
        )
    from sklearn.datasets import load_digits as sk_digits

    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1); got {val_fraction!r}.")
    raw = sk_digits()
    x = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1)  # [N, 1, 8, 8]
    y = torch.tensor(raw.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(split_seed)
    train_idx, val_idx = [], []
    for c in range(10):  # stratified: the same fraction of each class held out
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_val = round(val_fraction * idx.numel())
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    tr = torch.cat(train_idx)[torch.randperm(sum(t.numel() for t in train_idx), generator=gen)]
    va = torch.cat(val_idx).sort().values
    mean, std = x[tr].mean(), x[tr].std()
    x = (x - mean) / std
    if upscale > 1:
        x = F.interpolate(x, scale_factor=upscale, mode="bilinear", align_corners=False)
    if limit is not None:
        tr, va = tr[:limit], va[:limit]
    return DataSplits(
        "digits", TensorDataset(x[tr], y[tr]), TensorDataset(x[va], y[va]), 10, 1, x.shape[-1]
    )


def _torchvision(what: str):
    if importlib.util.find_spec("torchvision") is None:
        raise DataError(
            f"{what} is read through torchvision, which is not installed. Install the build "
            "matching your torch (`pip install torchvision`), or use the embedded digits "
            "(leave --data-dir unset)."
        )
    import torchvision

    return torchvision


def load_cifar10(data_dir: str | os.PathLike, *, download: bool = False) -> DataSplits:
    """CIFAR-10 from ``data_dir`` with the standard augmentation (crop 4, flip).

    Args:
        data_dir: Directory holding ``cifar-10-batches-py/`` (the python version).
        download: Download into ``data_dir`` when missing (only when asked).

    Raises:
        DataError: torchvision is missing, or the files are not in ``data_dir``.
    """
    tv = _torchvision("CIFAR-10")
    root = Path(data_dir)
    if not download and not (root / "cifar-10-batches-py").is_dir():
        raise DataError(
            f"CIFAR-10 not found: expected {str(root / 'cifar-10-batches-py')!r} (the python "
            "version from https://www.cs.toronto.edu/~kriz/cifar.html, extracted). Put it "
            "there, or pass download=True (--download) to fetch it."
        )
    t = tv.transforms
    norm = t.Normalize(CIFAR_MEAN, CIFAR_STD)
    augment = [t.RandomCrop(32, padding=4), t.RandomHorizontalFlip()]
    train_tf = t.Compose([*augment, t.ToTensor(), norm])
    val_tf = t.Compose([t.ToTensor(), norm])
    train = tv.datasets.CIFAR10(str(root), train=True, transform=train_tf, download=download)
    val = tv.datasets.CIFAR10(str(root), train=False, transform=val_tf, download=download)
    return DataSplits("cifar10", train, val, 10, 3, 32)


def load_imagenet(data_dir: str | os.PathLike, *, image_size: int = 224) -> DataSplits:
    """ImageNet from ``data_dir/train`` and ``data_dir/val`` (one folder per class).

    Training: random resized crop and flip; validation: resize to 8/7 of the size and
    centre crop. ImageNet is never downloaded.

    Raises:
        DataError: torchvision is missing, or ``train/`` or ``val/`` is not in ``data_dir``.
    """
    tv = _torchvision("ImageNet")
    root = Path(data_dir)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(
                f"ImageNet not found: expected {str(root / split)!r} with one sub-folder of "
                "images per class (the usual ILSVRC-2012 layout; the validation images sorted "
                "into class folders). graphwire never downloads ImageNet."
            )
    t = tv.transforms
    norm = t.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = t.Compose(
        [t.RandomResizedCrop(image_size), t.RandomHorizontalFlip(), t.ToTensor(), norm]
    )
    val_tf = t.Compose(
        [t.Resize(image_size * 8 // 7), t.CenterCrop(image_size), t.ToTensor(), norm]
    )
    train = tv.datasets.ImageFolder(str(root / "train"), transform=train_tf)
    val = tv.datasets.ImageFolder(str(root / "val"), transform=val_tf)
    return DataSplits("imagenet", train, val, len(train.classes), 3, image_size)


#: Data sets by name.
DATASETS = {"digits": load_digits, "cifar10": load_cifar10, "imagenet": load_imagenet}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, **kwargs: Any) -> DataSplits:
    """Load a data set by name; ``digits`` needs no ``data_dir``, the others do.

    Example:
        >>> from graphwire.training import load_dataset
        >>> load_dataset("digits", upscale=2).image_size
        16
    """
    loader = choose("dataset", name, DATASETS, DataError)
    if name == "digits":
        return loader(**kwargs)
    if data_dir is None:
        raise DataError(
            f"dataset {name!r} is read from disk: pass data_dir (--data-dir DIR); the embedded "
            "'digits' needs none."
        )
    return loader(data_dir, **kwargs)


class TensorLoader:
    """Batches of an in-memory :class:`~torch.utils.data.TensorDataset`, without workers.

    Much faster than a :class:`~torch.utils.data.DataLoader` on small tensors. The order
    comes from a :class:`~torch.utils.data.DistributedSampler`, so it depends only on
    ``seed`` and the epoch (set by :meth:`set_epoch`), and each process of a distributed
    run gets its own shard.

    Args:
        dataset: The tensors.
        batch_size: Batch size.
        shuffle: Shuffle each epoch (training) or keep the order (evaluation).
        seed: Seed of the shuffling.
        info: The process's place in a distributed run.
        drop_last: Drop the last incomplete batch.
    """

    def __init__(
        self,
        dataset: TensorDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        info: DistInfo | None = None,
        drop_last: bool = False,
    ):
        info = info or DistInfo()
        self.tensors = dataset.tensors
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler = _sampler(dataset, shuffle, seed, info)

    def set_epoch(self, epoch: int) -> None:
        """Pick the epoch whose order ``iter(loader)`` gives."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        order = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield tuple(t[idx] for t in self.tensors)


class _ShardSampler(torch.utils.data.Sampler):
    """Every ``world_size``-th index from ``rank``, in order, without padding (evaluation)."""

    def __init__(self, n: int, info: DistInfo):
        self.indices = list(range(info.rank, n, info.world_size))

    def set_epoch(self, epoch: int) -> None:
        """The order does not depend on the epoch."""

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


def _sampler(dataset: Dataset, shuffle: bool, seed: int, info: DistInfo):
    if not shuffle:
        return _ShardSampler(len(dataset), info)
    return DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed
    )


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    seed: int = 0,
    info: DistInfo | None = None,
    num_workers: int = 0,
) -> Any:
    """A loader whose order depends only on ``seed`` and the epoch, sharded over processes.

    In-memory tensor data sets get a :class:`TensorLoader`; others a
    :class:`~torch.utils.data.DataLoader` over a
    :class:`~torch.utils.data.DistributedSampler` (training) or an unpadded shard
    (evaluation, so every image counts once).

    Example:
        >>> from graphwire.training import load_digits, make_loader
        >>> loader = make_loader(load_digits().train, 256, train=True, seed=0)
        >>> len(loader), next(iter(loader))[0].shape
        (5, torch.Size([256, 1, 8, 8]))
    """
    info = info or DistInfo()
    if isinstance(dataset, TensorDataset):
        return TensorLoader(dataset, batch_size, shuffle=train, seed=seed, info=info)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=_sampler(dataset, train, seed, info),
        num_workers=num_workers,
        pin_memory=info.device.type == "cuda",
        drop_last=False,
        persistent_workers=num_workers > 0,
    )
