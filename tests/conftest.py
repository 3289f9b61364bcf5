import importlib.machinery
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


# A stand-in for torchvision, for tests of the CIFAR-10 and ImageNet paths. PyPI's
# torchvision does not import beside the CPU torch that CI installs, so the fixture
# ``fake_torchvision`` puts this small fake in ``sys.modules``: its CIFAR10 and ImageFolder
# hold random uint8 RGB images and its transforms have torchvision's names (``ToTensor``
# converts; the others pass images through). The tests check graphwire's side of the path.
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


class _ImageFolder(torch.utils.data.Dataset):
    def __init__(self, root, transform=None):
        self.classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        rng = np.random.default_rng(0)
        self.data = rng.integers(0, 256, (2 * len(self.classes), 40, 48, 3), dtype=np.uint8)
        self.transform = transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.transform(self.data[i]), i // 2


@pytest.fixture
def fake_torchvision(monkeypatch):
    tv = types.ModuleType("torchvision")
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
    names = ("RandomCrop", "RandomHorizontalFlip", "Normalize", "RandomResizedCrop", "Resize")
    names += ("CenterCrop",)
    tv.transforms = types.SimpleNamespace(
        Compose=_Compose, ToTensor=_ToTensor, **{n: _Transform for n in names}
    )
    tv.datasets = types.SimpleNamespace(CIFAR10=_CIFAR10, ImageFolder=_ImageFolder)
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    return tv
