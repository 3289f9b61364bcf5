"""Data: two embedded data sets, and CIFAR-10 / ImageNet from a directory through torchvision.

Two data sets need no files and no network: scikit-learn's bundled ``digits`` (1,797 8x8
grey images, 10 classes) and ``mnist1d`` (Greydanus and Kobak's MNIST-1D: 1-D signals of
40 samples, 10 classes, generated on the spot from a fixed seed by the ``mnist1d``
package), so every suite runs offline. CIFAR-10 and ImageNet are read from ``data_dir``
with torchvision when it is installed; nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import random
from dataclasses import dataclass, field
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
    "load_mnist1d",
    "MNIST1D_ARGS",
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
        train: Training set (items ``(image [C, H, W], label)``, or ``(signal [C, L],
            label)`` for 1-D data such as ``mnist1d``).
        val: Validation set.
        num_classes: Number of classes.
        in_channels: Image (or signal) channels.
        image_size: Image side in pixels (the signal length ``L`` for 1-D data).
        source: How the data was made, for the record: a generated set's generator and
            its arguments (empty for data read from disk or given by the user).
    """

    name: str
    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    source: dict[str, Any] = field(default_factory=dict)


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
        >>> from graphwire.training.data import load_digits
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


#: The generation arguments of MNIST-1D: those of ``mnist1d.data.get_dataset_args()`` (the
#: published data set's), without its download URL. :func:`load_mnist1d` overrides
#: ``num_samples`` and ``seed`` when asked.
MNIST1D_ARGS: dict[str, Any] = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}

_MNIST1D_MISSING = (
    "the embedded MNIST-1D is generated by the mnist1d package, which is not installed; "
    "install it with `pip install mnist1d` (or `pip install graphwire[benchmarks]`), or use "
    "the embedded digits (--dataset digits)."
)


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(num_samples: int, seed: int) -> tuple[Any, Any, Any, Any]:
    """Generate MNIST-1D with ``mnist1d.data.make_dataset`` (never its download path)."""
    import numpy as np
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    args = ObjectView({**MNIST1D_ARGS, "num_samples": num_samples, "seed": seed})
    # make_dataset seeds Python's and NumPy's global generators: keep the caller's state.
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    return d["x"], d["y"], d["x_test"], d["y_test"]


def load_mnist1d(
    *, num_samples: int = 5000, seed: int = 42, limit: int | None = None
) -> DataSplits:
    """MNIST-1D (Greydanus and Kobak), generated offline from a fixed seed.

    The signals come from ``mnist1d.data.make_dataset`` with the published generation
    arguments (:data:`~graphwire.training.data.MNIST1D_ARGS`); with the defaults (5,000 samples,
    seed 42) they are the published data set: 4,000 training and 1,000 test signals of 40
    samples, which serve as the training and validation split. Nothing is downloaded.
    MNIST-1D is made not to saturate: logistic regression reaches about 32%, an MLP about
    68% and a CNN about 94%. The generator already centres the signals and scales them to
    unit standard deviation.

    Args:
        num_samples: Signals to generate (80% for training, 20% for validation).
        seed: Seed of the generator.
        limit: Keep only the first ``limit`` signals of each split (for quick tests).

    Returns:
        Splits of :class:`~torch.utils.data.TensorDataset` with ``[1, 40]`` signals
        (``in_channels=1``, ``image_size=40``).

    Raises:
        DataError: the ``mnist1d`` package is not installed.

    Example:
        >>> from graphwire.training.data import load_mnist1d
        >>> d = load_mnist1d()
        >>> len(d.train), len(d.val), d.num_classes, d.train[0][0].shape
        (4000, 1000, 10, torch.Size([1, 40]))
    """
    if importlib.util.find_spec("mnist1d") is None:
        raise DataError(_MNIST1D_MISSING)
    if num_samples < 20:
        raise DataError(f"num_samples must be at least 20 (2 per class); got {num_samples!r}.")
    x, y, x_val, y_val = _mnist1d_arrays(int(num_samples), int(seed))
    xt = torch.tensor(x, dtype=torch.float32).unsqueeze(1)  # [N, 1, 40]
    xv = torch.tensor(x_val, dtype=torch.float32).unsqueeze(1)
    yt, yv = torch.tensor(y, dtype=torch.long), torch.tensor(y_val, dtype=torch.long)
    if limit is not None:
        xt, yt, xv, yv = xt[:limit], yt[:limit], xv[:limit], yv[:limit]
    source = {
        "generator": "mnist1d.data.make_dataset",
        **MNIST1D_ARGS,
        "num_samples": int(num_samples),
        "seed": int(seed),
    }
    return DataSplits(
        "mnist1d", TensorDataset(xt, yt), TensorDataset(xv, yv), 10, 1, int(xt.shape[-1]), source
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
DATASETS = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "cifar10": load_cifar10,
    "imagenet": load_imagenet,
}

#: The data sets that are generated or bundled, so need no ``data_dir``.
EMBEDDED = ("digits", "mnist1d")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, **kwargs: Any) -> DataSplits:
    """Load a data set by name; ``digits`` and ``mnist1d`` need no ``data_dir``, the others do.

    Example:
        >>> from graphwire.training import load_dataset
        >>> load_dataset("digits", upscale=2).image_size
        16
        >>> load_dataset("mnist1d").image_size
        40
    """
    loader = choose("dataset", name, DATASETS, DataError)
    if name in EMBEDDED:
        return loader(**kwargs)
    if data_dir is None:
        raise DataError(
            f"dataset {name!r} is read from disk: pass data_dir (--data-dir DIR); the embedded "
            "'digits' and 'mnist1d' need none."
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
        >>> from graphwire.training.data import load_digits, make_loader
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
