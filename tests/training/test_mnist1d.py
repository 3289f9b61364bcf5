"""The embedded MNIST-1D: generated offline, deterministic, registered by name."""

import importlib.util
import random
import socket
import urllib.request

import numpy as np
import pytest
import torch

from graphwire import DataError
from graphwire.training import data as data_module
from graphwire.training import load_dataset
from graphwire.training.data import DATASETS, load_mnist1d


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("MNIST-1D must not touch the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    import requests

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    data_module._mnist1d_arrays.cache_clear()  # generate anew under the guard
    yield
    data_module._mnist1d_arrays.cache_clear()


def test_shapes_classes_and_split(no_network):
    d = load_mnist1d(num_samples=400, seed=1)
    assert (d.name, d.num_classes, d.in_channels, d.image_size) == ("mnist1d", 10, 1, 40)
    x, y = d.train.tensors
    xv, yv = d.val.tensors
    assert x.shape == (320, 1, 40) and xv.shape == (80, 1, 40)
    assert x.dtype == torch.float32 and y.dtype == torch.long
    assert set(y.tolist()) == set(range(10)) and set(yv.tolist()) <= set(range(10))
    both = torch.cat([x, xv])
    assert abs(float(both.mean())) < 1e-4 and abs(float(both.std()) - 1) < 1e-2  # standardised


def test_same_seed_same_signals_other_seed_other_signals(no_network):
    a = load_mnist1d(num_samples=200, seed=3)
    data_module._mnist1d_arrays.cache_clear()
    b = load_mnist1d(num_samples=200, seed=3)
    c = load_mnist1d(num_samples=200, seed=4)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert torch.equal(a.val.tensors[1], b.val.tensors[1])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])


def test_the_callers_random_state_is_left_alone(no_network):
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    expected = (random.random(), np.random.random())  # noqa: NPY002
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    load_mnist1d(num_samples=100, seed=0)
    assert (random.random(), np.random.random()) == expected  # noqa: NPY002


def test_registered_by_name_without_a_directory_and_limit(no_network):
    assert DATASETS["mnist1d"] is load_mnist1d
    d = load_dataset("mnist1d", num_samples=200, seed=0, limit=16)
    assert len(d.train) == 16 and len(d.val) == 16


def test_missing_package_names_it_and_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mnist1d" else real(name, *a)
    )
    with pytest.raises(DataError, match=r"mnist1d.*pip install mnist1d"):
        load_mnist1d()
