import json

from benchmarks.__main__ import main


def test_quick_speed_suite_runs_and_default_paths_match_reference(tmp_path):
    argv = ["speed", "--quick", "--cases", "static", "discrete", "--repeats", "1"]
    assert main([*argv, "--no-selection", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    rows = result["rows"]
    assert {r["case"] for r in rows} == {"static", "discrete"}
    assert {r["method"] for r in rows} >= {"reference", "masked_dense", "default"}
    assert {(r["task"], r["method"]) for r in rows} >= {
        ("train", "default"),
        ("inference", "default"),
    }
    assert any(r["method"] == "compiled_eval" for r in rows)
    for r in rows:
        assert r["median_ms"] > 0
        if r["max_abs_diff_vs_reference"] is not None:
            assert r["max_abs_diff_vs_reference"] < 1e-4
    text = (tmp_path / "results.md").read_text()
    assert text.count("|") > 100 and "default / frozen" in text
    assert (tmp_path / "time_vs_density.png").stat().st_size > 0


def test_crossover_rows_cover_both_backends(tmp_path):
    from benchmarks.speed import sparse_candidates

    g = sparse_candidates(64, 4, 8, 4)
    assert int((g.in_degree[8:] > 0).sum()) == 56  # every non-input node has candidates
    argv = ["speed", "--quick", "--cases", "layer256", "--repeats", "1", "--no-selection"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    cross = json.loads((tmp_path / "results.json").read_text())["crossover"]
    assert [c["fan_in"] for c in cross] == [32, 4]
    assert cross[0]["fill"] < cross[1]["fill"]
    assert all(c["dense_train_ms"] > 0 and c["reference_train_ms"] > 0 for c in cross)
    assert "auto picks" in (tmp_path / "results.md").read_text()
