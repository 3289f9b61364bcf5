"""How many runs small-scale starts in parallel: an explicit --device decides."""

import argparse

import torch

from benchmarks.small_scale import workers_for


def _args(device, workers=3):
    return argparse.Namespace(device=device, workers=workers)


def test_cpu_device_on_a_gpu_machine_gets_the_normal_worker_count(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert workers_for(_args("cpu")) == 3
    assert workers_for(_args("cuda:0")) == 1
    assert workers_for(_args(None)) == 1  # no --device: the visible GPU


def test_without_a_gpu_only_an_explicit_cuda_device_means_one_worker(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert workers_for(_args(None)) == 3
    assert workers_for(_args("cpu")) == 3
    assert workers_for(_args("cuda")) == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert workers_for(_args("cpu")) == 1  # under torchrun
