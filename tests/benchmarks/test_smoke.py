import json
import statistics

import pytest

from benchmarks.__main__ import SUITES, main


def test_smoke_runs_every_suite_code_path(tmp_path):
    assert main(["smoke", "--out", str(tmp_path), "--plots"]) == 0
    small = json.loads((tmp_path / "small-scale" / "results.json").read_text())
    rows = {(r["setting"], r["rule"]) for r in small["rows"]}
    settings = ("static", "discrete", "continuous", "rnn")
    assert rows == {(s, r) for s in settings for r in ("random", "dnw")}
    assert small["dataset"] == "mnist1d"  # the default of small-scale and the demo
    assert small["machine"]["torch"] and small["machine"]["processor"]
    for row in small["rows"]:
        runs = [
            r for r in small["runs"] if (r["setting"], r["rule"]) == (row["setting"], row["rule"])
        ]
        assert len(runs) == row["seeds"]  # the row aggregates its seeds' runs
        assert row["acc_mean"] == pytest.approx(statistics.mean(r["final_acc"] for r in runs))
        assert row["setting"] == "rnn" or row["paper_mean"] > 70  # the paper has no RNN
    assert "mnist1d 0.0.2" in (tmp_path / "small-scale" / "results.md").read_text()
    assert (tmp_path / "small-scale" / "accuracy_curves.png").stat().st_size > 0
    assert (tmp_path / "small-scale" / "wiring_static_adjacency.png").is_file()
    assert (tmp_path / "small-scale" / "wiring_discrete_layered.png").is_file()
    compiled = json.loads((tmp_path / "small-scale" / "compiled.json").read_text())
    assert compiled["same_predictions"] == 1.0
    assert compiled["macs"] > 0 and compiled["kept_nodes"] > 0
    assert compiled["paper_dense_ms"] > 0 and compiled["compiled_ms"] > 0
    assert compiled["compacted_dense_ms"] > 0 and compiled["speedup_vs_compacted_dense"] > 0
    alt = json.loads((tmp_path / "alt" / "results.json").read_text())
    assert [r["rule"] for r in alt["rows"]][:2] == ["complete", "random"]
    mob = json.loads((tmp_path / "mobilenet" / "results.json").read_text())
    assert all(r["macs_M"] > 0 and r["params_M"] > 0 for r in mob["rows"])
    sparse = (tmp_path / "sparse" / "results.md").read_text()
    assert "first_layer" in sparse and "torch" in sparse


def test_top_level_help_lists_every_suite(capsys):
    with pytest.raises(SystemExit) as done:  # argparse exits after printing the help
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SUITES)
    assert "10%, 20% and 30%" in " ".join(out.split())  # percent signs printed as written
