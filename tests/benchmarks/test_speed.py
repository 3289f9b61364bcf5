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
