"""The CIFAR-10 path of the small-scale suite, end to end, over a stand-in torchvision.

PyPI's torchvision does not import beside the CPU torch that CI installs, so these tests
put a small fake ``torchvision`` in ``sys.modules``: its CIFAR10 holds random 32x32 RGB
images and its transforms follow torchvision's types. What is checked is graphwire's
side: ``--data-dir`` selects CIFAR-10 and the paper's profile, images reach the models as
3 x 32 x 32 tensors, and the suite trains and writes its results.
"""

import importlib.machinery
import json
import sys
import types

import numpy as np
import pytest
import torch

from benchmarks.__main__ import main
from graphwire.training import load_dataset


class _Transform:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __call__(self, x):
        return x


class _ToTensor(_Transform):
    def __call__(self, x):  # uint8 [H, W, C] -> float [C, H, W] in [0, 1]
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).float() / 255


class _Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class _CIFAR10(torch.utils.data.Dataset):
    def __init__(self, root, train, transform=None, download=False):
        n = 40 if train else 20
        rng = np.random.default_rng(0 if train else 1)
        self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 10 for i in range(n)]
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.transform(self.data[i]), self.targets[i]


@pytest.fixture
def fake_torchvision(monkeypatch):
    tv = types.ModuleType("torchvision")
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
    names = ("RandomCrop", "RandomHorizontalFlip", "Normalize", "RandomResizedCrop")
    tv.transforms = types.SimpleNamespace(
        Compose=_Compose, ToTensor=_ToTensor, **{n: _Transform for n in names}
    )
    tv.datasets = types.SimpleNamespace(CIFAR10=_CIFAR10)
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    return tv


def test_cifar10_loads_as_three_channel_32px_images(tmp_path, fake_torchvision):
    (tmp_path / "cifar-10-batches-py").mkdir()
    data = load_dataset("cifar10", str(tmp_path))
    x, y = data.train[0]
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 3, 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 0
    assert (len(data.train), len(data.val)) == (40, 20)


def test_small_scale_on_cifar10_uses_the_paper_profile(tmp_path, fake_torchvision):
    (tmp_path / "cifar-10-batches-py").mkdir()
    args = ["small-scale", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    args += ["--epochs", "1", "--seeds", "1", "--settings", "static", "--rules", "dnw"]
    args += ["--workers", "1", "--no-progress", "--no-plots"]
    assert main(args) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["dataset"] == "cifar10"
    assert result["train"]["static"]["batch_size"] == 512  # the paper's schedule, 1 epoch
    (row,) = result["rows"]
    assert (row["setting"], row["rule"]) == ("static", "dnw")
    assert row["edges"] == 32_000  # the paper's k over 800 nodes, not the digits profile's
    assert 0 <= row["acc_mean"] <= 100
