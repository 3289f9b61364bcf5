import argparse

import torch

from benchmarks import small_scale
from benchmarks._common import run_jobs


def _specs(out):
    parser = argparse.ArgumentParser()
    small_scale.add_arguments(parser)
    args = parser.parse_args(
        ["--epochs", "1", "--seeds", "2", "--settings", "static", "discrete", "--rules", "dnw"]
        + ["--limit", "96", "--batch-size", "16", "--out", str(out)]
    )
    return small_scale.plan(args, "digits", out)


def _outcome(run):
    history = [{k: v for k, v in r.items() if k != "time_s"} for r in run["history"]]
    return run["setting"], run["seed"], run["final_acc"], run["swaps_total"], history


def test_worker_pool_reuses_processes_without_changing_results(tmp_path):
    # four jobs on two workers: each worker runs a second job after a first one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers: sums in the same order
    try:
        in_process = run_jobs(small_scale.train_one, _specs(tmp_path / "a"), 1, progress=False)
    finally:
        torch.set_num_threads(threads)
    pooled = run_jobs(small_scale.train_one, _specs(tmp_path / "b"), 2, progress=False)
    assert len(pooled) == 4
    assert any(r["swaps_total"] > 0 for r in pooled)  # the wiring moved: equality means something
    assert [_outcome(r) for r in pooled] == [_outcome(r) for r in in_process]
