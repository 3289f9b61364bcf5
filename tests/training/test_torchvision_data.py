"""CIFAR-10 and ImageNet loading over the stand-in torchvision (``fake_torchvision``)."""

import pytest
import torch

from graphwire.errors import DataError
from graphwire.training import load_dataset


def test_cifar10_loads_as_three_channel_32px_images(tmp_path, fake_torchvision):
    (tmp_path / "cifar-10-batches-py").mkdir()
    data = load_dataset("cifar10", str(tmp_path))
    x, y = data.train[0]
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 3, 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 0
    assert (len(data.train), len(data.val)) == (40, 20)


def test_missing_data_set_names_the_folder_it_expected(tmp_path, fake_torchvision):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset("cifar10", str(tmp_path))
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=r"val.*never downloads"):
        load_dataset("imagenet", str(tmp_path))


def test_imagenet_reads_one_class_per_folder(tmp_path, fake_torchvision):
    for split in ("train", "val"):
        for name in ("n01440764", "n01443537", "n01484850"):
            (tmp_path / split / name).mkdir(parents=True)
    data = load_dataset("imagenet", str(tmp_path), image_size=64)
    assert (data.num_classes, data.in_channels, data.image_size) == (3, 3, 64)
    x, y = data.val[5]
    assert x.shape[0] == 3 and y == 2
