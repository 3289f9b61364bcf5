"""small-scale on CIFAR-10 end to end, over the stand-in torchvision (``fake_torchvision``)."""

import json

from benchmarks.__main__ import main


def test_small_scale_on_cifar10_uses_the_paper_profile(tmp_path, fake_torchvision):
    (tmp_path / "cifar-10-batches-py").mkdir()
    args = ["small-scale", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    args += ["--epochs", "1", "--seeds", "1", "--settings", "static", "--rules", "dnw"]
    args += ["--workers", "1", "--no-progress", "--no-plots"]
    assert main(args) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["dataset"] == "cifar10"
    assert result["train"]["static"]["batch_size"] == 512  # the paper's schedule, 1 epoch
    (row,) = result["rows"]
    assert (row["setting"], row["rule"]) == ("static", "dnw")
    assert row["edges"] == 32_000  # the paper's k over 800 nodes, not the digits profile's
    (run,) = result["runs"]  # the one run, as trained, is what the row reports
    assert row["acc_mean"] == run["final_acc"] and row["seeds"] == 1
