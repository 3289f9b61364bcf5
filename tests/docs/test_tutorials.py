"""Every tutorial script runs, at a tiny size, and does what its page says."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import pytest

from graphwire.export import kernel_info

TUTORIALS = Path(__file__).resolve().parents[2] / "docs" / "tutorials"

#: Tiny arguments for each tutorial's ``main``; every script in docs/tutorials must be here.
TINY: dict[str, dict] = {
    "quickstart": {"steps": 3},
    "custom_graph": {"steps": 40, "hidden": 12},
    "time_modes": {"epochs": 1, "hidden": 8, "k": 150, "limit": 128, "batch": 64},
    "sparse_training": {"epochs": 1, "width": 4, "density": 0.2, "limit": 64, "batch_size": 32},
    "multiprocess": {"epochs": 1, "hidden": 8, "limit": 64},
    "own_data": {
        "settings": ("static",),
        "seeds": 1,
        "epochs": 1,
        "num_nodes": 16,
        "n": 96,
    },
    "freeze_export": {"epochs": 1, "hidden": 16, "density": 0.2, "limit": 128},
    "sparse_resnet": {"steps": 3, "depth": 8, "width": 4, "limit": 128, "batch": 32},
}


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"tutorial_{name}", TUTORIALS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_script_has_a_tiny_run_and_a_page():
    scripts = sorted(p.stem for p in TUTORIALS.glob("*.py"))
    assert scripts == sorted(TINY), "add the new tutorial to TINY with tiny arguments"
    index = (TUTORIALS / "index.md").read_text()
    for name in scripts:
        if name != "quickstart":  # the quick start has its own page, docs/quickstart.md
            assert (TUTORIALS / f"{name}.md").exists()
            assert f"\n{name}\n" in index, f"{name} is missing from the tutorials toctree"


@pytest.mark.parametrize("name", sorted(TINY))
def test_main_accepts_the_tiny_arguments(name):
    params = inspect.signature(load(name).main).parameters
    assert set(TINY[name]) <= set(params)


def test_quickstart(capsys):
    opt = load("quickstart").main(**TINY["quickstart"])
    assert opt.step_count == 3
    assert "edges in use" in capsys.readouterr().out


def test_custom_graph(capsys):
    out = load("custom_graph").main(**TINY["custom_graph"])
    text = capsys.readouterr().out
    assert "CycleError" in text and "Data(edge_index=" in text
    assert 0.0 <= out["accuracy"] <= 1.0 and out["edges"] > 0


def test_custom_graph_groups_and_labels():
    graph = load("custom_graph").build_graph(hidden=12, seed=0)
    assert graph.group_names == ("inputs", "hidden", "outputs")
    labels = graph.node_labels
    assert [labels[i] for i in graph.inputs.tolist()] == [f"x{i}" for i in range(8)]
    assert [labels[i] for i in graph.outputs.tolist()] == ["y0", "y1", "y2"]
    graph.validate(mode="dag")


def test_time_modes(capsys):
    results = load("time_modes").main(**TINY["time_modes"])
    assert set(results) == {"dag", "discrete", "continuous"}
    assert all(0.0 <= acc <= 1.0 for acc in results.values())
    assert capsys.readouterr().out.count("swaps") == 3


def test_freeze_export():
    out = load("freeze_export").main(**TINY["freeze_export"])
    assert out["train_gap"] < 1e-4 and out["eval_gap"] < 1e-4
    assert out["reload_gap"] == 0.0
    assert out["export_gap"] is not None and out["export_gap"] < 1e-4


def test_sparse_resnet(capsys):
    out = load("sparse_resnet").main(**TINY["sparse_resnet"])
    assert out["gap"] < 1e-4 and out["export_gap"] is not None and out["export_gap"] < 1e-4
    assert out["swaps"] > 0  # DNW re-chose weights during the steps
    assert out["macs"]["compiled"] < out["macs"]["dense"]
    assert out["macs"]["masked"] < out["macs"]["dense"]
    text = capsys.readouterr().out
    assert "output channels removed" in text and "torch.export" in text
    # sparse convolutions (the cost model's choice where the kernel is built) fuse ReLUs
    assert out["fused"] > 0 or not kernel_info()["available"]


def test_sparse_training(capsys):
    out = load("sparse_training").main(**TINY["sparse_training"])
    assert set(out) == {"dense", "dnw", "random"}
    # same budget for both sparse rules, far below the dense network's cost
    assert out["dnw"]["params"] == out["random"]["params"] < out["dense"]["params"]
    assert out["dnw"]["macs"] < out["dense"]["macs"]
    assert out["random"]["swaps"] == 0 and out["dense"]["swaps"] == 0
    assert "WiredConv2d" in capsys.readouterr().out


def test_sparse_training_step_times(capsys):
    times = load("sparse_training").step_times(sizes=(64, 32, 10), batch=8, steps=3)
    assert set(times) == {"rigl", "set", "dnw"}
    assert all(set(t) == {"dense", "masked", "sparse"} for t in times.values())
    assert all(ms > 0 for t in times.values() for ms in t.values())
    assert "layers on sparse products: 0 of 2" in capsys.readouterr().out  # too small to pay


def test_multiprocess_single_process():
    out = load("multiprocess").main(**TINY["multiprocess"])
    assert out["world_size"] == 1 and len(out["mask_digest"]) == 16


def test_own_data(capsys):
    tutorial = load("own_data")
    data = tutorial.make_own_data(n=40)
    image, label = data.train[0]
    assert image.shape == (1, 12, 12) and 0 <= int(label) < data.num_classes
    accs = tutorial.main(**TINY["own_data"])
    assert set(accs) == {("static", "random"), ("static", "dnw")}
    assert "| static | dnw |" in capsys.readouterr().out


def test_multiprocess_two_ranks():
    """Two CPU processes with the environment torchrun gives them: both keep the same masks."""
    import os
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, str(TUTORIALS / "multiprocess.py")]
    cmd += ["--epochs", "1", "--hidden", "8", "--limit", "64"]
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    assert "2 process(es)" in outputs[0][0] and "process(es)" not in outputs[1][0]
    digests = [out.split("mask digest ")[1].strip() for out, _ in outputs]
    assert digests[0] == digests[1]  # the same edges on both ranks
