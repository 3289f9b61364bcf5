import json

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks._baselines import PaperDense, pruned_layer, torch_csr_model
from graphwire import ODESolver, WiredGraph
from graphwire.graph import complete_digraph, layered_dag


def _net(mode, images, solver="rk4"):
    graph = (
        layered_dag([4, 6, 6, 3]) if mode == "dag" else complete_digraph(10, inputs=3, outputs=2)
    )
    kw = {"steps": 3} if mode == "discrete" else {}
    if mode == "continuous":
        kw["solver"] = (
            ODESolver(method="rk4", options={"step_size": 0.25})
            if solver == "rk4"
            else ODESolver(method="dopri5", rtol=1e-6, atol=1e-6)
        )
    net = WiredGraph(
        graph, node_op="conv" if images else "tanh", mode=mode, density=0.4, seed=3, **kw
    )
    net = net.double()
    x = torch.randn(5, graph.inputs.numel(), *((4, 4) if images else ()), dtype=torch.float64)
    return net, x


@pytest.mark.parametrize(
    ("mode", "images", "solver"),
    [
        ("dag", False, ""),
        ("dag", True, ""),
        ("discrete", False, ""),
        ("discrete", True, ""),
        ("continuous", True, "rk4"),
        ("continuous", False, "dopri5"),
    ],
)
def test_paper_dense_baseline_matches_reference_outputs_and_every_edge_gradient(
    mode, images, solver
):
    """Baseline 1 runs graphwire's network: outputs, and at candidate entries the [E] grads."""
    net, x = _net(mode, images, solver)
    net.backend = "reference"
    dense = PaperDense(net).double()
    target = torch.randn_like(net(x))
    for module in (net, dense):
        (module(x) - target).pow(2).sum().backward()
    torch.testing.assert_close(dense(x), net(x), rtol=1e-6, atol=1e-6)
    grad = dense.weight.grad.view(-1)[dense.flat]  # candidate entries, in edge order
    torch.testing.assert_close(grad, net.weight.grad, rtol=1e-6, atol=1e-6)
    assert bool((net.weight.grad[~net.mask()] != 0).any())  # straight-through reached them
    # one top-k re-selects the same edges as graphwire's selection
    with torch.no_grad():
        new = torch.randn(net.weight.shape, dtype=torch.float64)
        net.weight.copy_(new)
        dense.weight.view(-1)[dense.flat] = new
    net.reselect()
    dense.reselect()
    assert torch.equal(dense.mask.view(-1)[dense.flat], net.mask())


def test_inference_baselines_match_reference():
    net, x = _net("dag", True)
    net.backend = "reference"
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(torch_csr_model(net)(x), expected, rtol=1e-6, atol=1e-6)
        layer = WiredGraph(layered_dag([5, 7]), node_op="identity", density=0.3, seed=0).double()
        xl = torch.randn(3, 5, 4, 4, dtype=torch.float64)
        torch.testing.assert_close(pruned_layer(layer, image=True)(xl), layer(xl))
        torch.testing.assert_close(
            pruned_layer(layer, image=False)(xl[..., 0, 0]), layer(xl[..., 0, 0])
        )


def test_quick_speed_suite_names_every_baseline_and_computes_the_targets(tmp_path):
    argv = ["speed", "--quick", "--repeats", "1", "--densities", "0.1", "--no-selection"]
    argv += ["--cases", "layer256", "vec200_discrete", "img800_dag", "--train-steps", "1"]
    assert main([*argv, "--no-crossover", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    rows = result["rows"]
    assert {r["case"] for r in rows} == {"layer256", "vec200_discrete", "img800_dag"}
    methods = {(r["case"], r["task"], r["method"]) for r in rows}
    for case in ("layer256", "vec200_discrete", "img800_dag"):
        assert {(case, "train", "paper_dense"), (case, "train", "default")} <= methods
        for m in ("paper_dense", "default", "compiled_eval", "compiled_dense", "torch_csr"):
            assert (case, "inference", m) in methods
    assert ("layer256", "inference", "pruned") in methods
    assert ("vec200_discrete", "inference", "reference") in methods
    for r in rows:
        assert r["median_ms"] > 0 and r["vs_paper_dense"] > 0
        assert r["compute_fraction"] > 0 and r["memory_fraction"] > 0
        if r["max_abs_diff_vs_reference"] is not None:
            assert r["max_abs_diff_vs_reference"] < 1e-4, r
        if r["case"] == "layer256" and r["task"] == "inference":
            assert r["vs_pruned"] > 0
    assert result["rates"]["matmul_macs_per_s"] > 0 and result["rates"]["copy_bytes_per_s"] > 0
    targets = {t["baseline"]: t for t in result["targets"]}
    assert {"paper_dense", "pruned", "compiled_dense"} <= set(targets)
    assert all(t["outcome"] in ("met", "missed", "n/a") for t in result["targets"])
    assert result["trained_static"]["vs_compiled_dense"] > 0
    text = (tmp_path / "results.md").read_text()
    assert "baseline 1" in text and "baseline 2" in text and "## Targets" in text
    assert (tmp_path / "time_vs_density.png").stat().st_size > 0


def test_crossover_rows_cover_both_backends(tmp_path):
    from benchmarks.speed import sparse_candidates

    g = sparse_candidates(64, 4, 8, 4)
    assert int((g.in_degree[8:] > 0).sum()) == 56  # every non-input node has candidates
    argv = ["speed", "--quick", "--cases", "layer256", "--repeats", "1", "--no-selection"]
    argv += ["--densities", "0.1", "--no-static", "--no-memory"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    cross = json.loads((tmp_path / "results.json").read_text())["crossover"]
    assert [c["fan_in"] for c in cross] == [32, 4]
    assert cross[0]["fill"] < cross[1]["fill"]
    assert all(c["dense_train_ms"] > 0 and c["reference_train_ms"] > 0 for c in cross)
    assert "auto picks" in (tmp_path / "results.md").read_text()
