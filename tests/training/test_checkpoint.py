import json

import pytest
import torch

from graphwire import CheckpointError, OptimizerConfig, ScheduleConfig, TrainConfig, Trainer
from graphwire.training import load_checkpoint
from graphwire.training.checkpoint import save_checkpoint


def _config(tmp, name, **kw):
    return TrainConfig(
        epochs=3,
        batch_size=32,
        seed=5,
        progress=False,
        optimizer=OptimizerConfig(lr=0.1),
        schedule=ScheduleConfig("multistep", milestones=(1, 2), warmup_epochs=0.5),
        checkpoint_dir=str(tmp / name),
        metrics_path=str(tmp / name / "metrics.jsonl"),
        **kw,
    )


def _strip_time(history):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


def test_interrupted_and_resumed_run_ends_like_uninterrupted(tmp_path, digits_small, small_wired):
    full = Trainer(small_wired(seed=1), digits_small, _config(tmp_path, "full"))
    ref = full.fit()
    assert ref.swaps_total > 0  # the masks actually change, so equality is not trivial

    first = Trainer(small_wired(seed=1), digits_small, _config(tmp_path, "cut"))
    first.fit(until_epoch=1)
    torch.manual_seed(1234)  # whatever happens in between must not matter
    torch.rand(100)
    resumed = Trainer(
        small_wired(seed=1),
        digits_small,
        _config(tmp_path, "cut", resume=str(tmp_path / "cut" / "last.pt")),
    )
    assert resumed.epoch == 1 and resumed.step == first.step
    out = resumed.fit()

    got = resumed.model.state_dict()
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, got[name]), name
    assert torch.equal(full.model.graph.edge_mask, resumed.model.graph.edge_mask)
    assert _strip_time(ref.history) == _strip_time(out.history)
    assert out.swaps_total == ref.swaps_total
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert _strip_time([json.loads(x) for x in lines]) == _strip_time(ref.history)


def test_history_logs_unfed_nodes_of_the_selection(tmp_path, digits_small, small_wired):
    model = small_wired(seed=1, rule="random")  # a fixed selection that leaves nodes unfed
    graph = model.graph.learned_graph()
    hidden = torch.arange(16, graph.num_nodes)  # every node after the 16 inputs
    unfed = int((graph.in_degree[hidden] == 0).sum())
    assert unfed > 0
    history = Trainer(model, digits_small, _config(tmp_path, "unfed")).fit().history
    assert [r["unfed"] for r in history] == [unfed] * 3


def test_checkpoint_holds_masks_scheduler_rng_and_position(tmp_path, digits_small, small_wired):
    t = Trainer(small_wired(), digits_small, _config(tmp_path, "a"))
    t.fit(until_epoch=1)
    state = load_checkpoint(tmp_path / "a" / "last.pt")
    assert state["epoch"] == 1 and state["step"] == t.steps_per_epoch
    assert torch.equal(state["optimizer"]["masks"]["graph"], t.model.graph.edge_mask)
    assert state["scheduler"]["last_epoch"] == t.steps_per_epoch
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert not [p for p in (tmp_path / "a").iterdir() if ".tmp" in p.name]


def test_missing_checkpoint_is_an_error_not_a_fresh_start(tmp_path, digits_small, small_wired):
    cfg = _config(tmp_path, "m", resume=str(tmp_path / "nope.pt"))
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(small_wired(), digits_small, cfg)


def test_truncated_checkpoint_is_an_error(tmp_path, digits_small, small_wired):
    t = Trainer(small_wired(), digits_small, _config(tmp_path, "t"))
    t.fit(until_epoch=1)
    path = tmp_path / "t" / "last.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_foreign_file_is_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a graphwire checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


def test_mismatched_model_is_an_error(tmp_path, digits_small, small_wired):
    t = Trainer(small_wired(), digits_small, _config(tmp_path, "mm"))
    t.fit(until_epoch=1)
    other = small_wired(hidden=20)  # a smaller graph: the edge weights do not fit
    cfg = _config(tmp_path, "mm", resume=str(tmp_path / "mm" / "last.pt"))
    with pytest.raises(CheckpointError, match="does not match the model"):
        Trainer(other, digits_small, cfg)


def test_other_batch_size_is_an_error(tmp_path, digits_small, small_wired):
    Trainer(small_wired(), digits_small, _config(tmp_path, "b")).fit(until_epoch=1)
    cfg = _config(tmp_path, "b", resume=str(tmp_path / "b" / "last.pt"))
    cfg.batch_size = 64
    with pytest.raises(CheckpointError, match="steps per epoch"):
        Trainer(small_wired(), digits_small, cfg)


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 1})
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled
        save_checkpoint(path, {"epoch": 2, "bad": lambda: 0})
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def _draws_after_fit(tmp, name, seed, digits, model_cls):
    import random

    import numpy as np

    random.seed(1234)
    np.random.seed(1234)  # noqa: NPY002 - polluted on purpose: fit must reseed
    cfg = TrainConfig(epochs=1, batch_size=64, seed=seed, progress=False)
    Trainer(model_cls(), digits, cfg).fit()
    return np.random.rand(), random.random(), float(torch.rand(()))  # noqa: NPY002


def test_fresh_run_seeds_python_numpy_and_torch(tmp_path, digits_small, small_wired):
    a = _draws_after_fit(tmp_path, "a", 3, digits_small, small_wired)
    b = _draws_after_fit(tmp_path, "b", 3, digits_small, small_wired)
    c = _draws_after_fit(tmp_path, "c", 4, digits_small, small_wired)
    assert a == b
    assert all(x != y for x, y in zip(a, c))
