import json

from benchmarks.__main__ import SUITES, main


def test_sparsified_smoke_runs_every_method_and_compiled_matches_masked(tmp_path):
    assert "sparsified" in SUITES
    argv = ["sparsified", "--smoke", "--repeats", "1", "--profile", "--out", str(tmp_path)]
    assert main(argv) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    rows = result["rows"]
    keys = {(r["network"], r["batch"], r["method"]) for r in rows}
    assert keys == {
        (n, b, m)
        for n in ("resnet_cifar", "transformer")
        for b in (1, 2)
        for m in ("dense", "dense_folded", "masked", "compiled")
    }
    assert result["machine"]["torch_threads"] == 2 and result["machine"]["allocator"]
    for r in rows:
        assert r["median_ms"] > 0 and r["speedup_vs_dense"] > 0 < r["speedup_vs_dense_folded"]
        assert 0 < r["kept_weights"] < r["wired_weights"]
        if r["method"] == "compiled":
            assert r["max_abs_diff_vs_masked"] <= 1e-4 * max(1.0, r["output_scale"])
    dense = {r["network"]: r["live_macs_per_example"] for r in rows if r["method"] == "dense"}
    assert dense == {
        r["network"]: r["live_macs_per_example"] for r in rows if r["method"] == "dense_folded"
    }
    masked = {r["network"]: r["live_macs_per_example"] for r in rows if r["method"] == "masked"}
    assert all(masked[n] < dense[n] for n in dense)  # count sees only the selected weights
    text = (tmp_path / "results.md").read_text()
    assert "| vs dense folded |" in text
    assert "| network | batch | dense ms | compiled ms |" in text and "torch 2" in text
    assert (tmp_path / "time_vs_density.png").stat().st_size > 0
    profile = (tmp_path / "profile_resnet_cifar_b2_compiled.txt").read_text()
    assert "Self CPU" in profile
