import json

import pytest
import torch

from benchmarks import sparse_training
from benchmarks.__main__ import SUITES, main


def test_sparse_training_smoke_times_every_method_and_checks_the_targets(tmp_path):
    assert "sparse-training" in SUITES
    argv = ["sparse-training", "--smoke", "--profile", "--out", str(tmp_path)]
    assert main(argv) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    rows = result["rows"]
    keys = {(r["network"], r["rule"], r["method"]) for r in rows}
    assert keys == {
        (n, rule, m)
        for n in ("resnet_cifar", "small_cnn", "mlp")
        for rule in sparse_training.RULES
        for m in sparse_training.METHODS
    }
    for r in rows:
        assert r["regular_ms"] > 0 and r["fraction_of_limit"] > 0
        assert (r["update_ms"] is None) == (r["rule"] == "dnw")  # DNW: one kind of step
        if r["update_ms"] is not None:  # the run average weighs one update step in DELTA_T
            expected = (99 * r["regular_ms"] + r["update_ms"]) / 100
            assert r["average_ms"] == pytest.approx(expected)
        group = [
            g
            for g in rows
            if (g["network"], g["rule"], g["batch"]) == (r["network"], r["rule"], r["batch"])
        ]
        masked = next(g for g in group if g["method"] == "masked")
        strongest = min(g["average_ms"] for g in group if g["method"].startswith("masked"))
        assert r["speedup_vs_masked"] == pytest.approx(masked["average_ms"] / r["average_ms"])
        assert r["speedup_vs_strongest"] == pytest.approx(strongest / r["average_ms"])
    text = (tmp_path / "results.md").read_text()
    verdicts = [
        line for line in text.splitlines() if line.startswith("| resnet_cifar | rigl | 4 |")
    ]
    assert len(verdicts) == 1 and ("met" in verdicts[0] or "missed by" in verdicts[0])
    assert (tmp_path / "step_time.png").stat().st_size > 0
    assert "Self CPU" in (tmp_path / "profile_mlp_set_b4.txt").read_text()


def test_the_masked_baseline_keeps_inactive_weights_zero_and_the_budget():
    """rigl-torch's way: after steps and an update, as many active weights, zeros elsewhere."""
    torch.manual_seed(0)
    net = sparse_training.networks(smoke=True)[2]
    methods = sparse_training.build(net, "rigl", 0.3, delta_t=2)
    masked = methods["masked"][0]
    before = {name: int(m.sum()) for name, m in masked.masks.items()}
    x, y = torch.randn(4, *net.example), torch.randint(0, 10, (4,))
    changed = False
    first = {name: m.clone() for name, m in masked.masks.items()}
    for _ in range(4):
        masked.step(x, y)
    for name, mask in masked.masks.items():
        assert int(mask.sum()) == before[name]
        assert bool((masked.params[name][~mask] == 0).all())
        changed |= not torch.equal(mask, first[name])
    assert changed  # drop-and-grow moved weights
