import json
import statistics

import pytest

from benchmarks.__main__ import main
from benchmarks.rules import RULES


def test_rules_smoke_runs_every_rule_at_equal_edge_count(tmp_path):
    argv = ["rules", "--smoke", "--models", "static", "resnet", "--workers", "1"]
    assert main([*argv, "--no-progress", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    rows = result["rows"]
    assert {(r["model"], r["rule"]) for r in rows} == {
        (m, r) for m in ("static", "resnet") for r in RULES
    }
    for model in ("static", "resnet"):
        group = [r for r in rows if r["model"] == model]
        assert len({r["edges"] for r in group}) == 1  # every rule ends at the same count
        assert all(r["edges"] == r["budget"] for r in group)
        for r in group:  # each row aggregates its seeds' runs
            runs = [x for x in result["runs"] if (x["setting"], x["rule"]) == (model, r["rule"])]
            assert len(runs) == r["seeds"] and r["ms_per_step"] > 0
            assert r["acc_mean"] == pytest.approx(statistics.mean(x["final_acc"] for x in runs))
    by_rule = {r["rule"]: r for r in rows if r["model"] == "static"}
    assert by_rule["random"]["swaps_per_epoch"] == 0 and by_rule["rigl"]["swaps_per_epoch"] > 0
    page = (tmp_path / "results.md").read_text()
    assert "84.3" in page and "89.7" in page  # the paper's reference line
    for plot in ("accuracy_curves", "swaps_per_epoch_static", "paper_vs_ours"):
        assert (tmp_path / f"{plot}.png").stat().st_size > 0
