"""The training loop (``graphwire/training/loop.py``): what ``Trainer`` and ``evaluate`` do.

Checkpoints and resuming are in ``test_checkpoint.py``, several processes in
``test_distributed.py``; these are the loop's own behaviours on one process.
"""

import json

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from graphwire import ConfigError, DNWOptimizer, OptimizerConfig, TrainConfig, Trainer
from graphwire.training.data import make_loader
from graphwire.training.loop import evaluate


def config(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=32, progress=False, optimizer=OptimizerConfig(lr=0.05))
    return TrainConfig(**{**base, **kw})


def test_training_lowers_the_validation_loss(digits_small, small_wired):
    model = small_wired(seed=0)
    trainer = Trainer(model, digits_small, config(epochs=4))
    before = trainer.evaluate()
    result = trainer.fit()
    after = trainer.evaluate()
    assert after["loss"] < before["loss"] and after["acc"] > before["acc"]
    assert result.final_val_acc == pytest.approx(after["acc"])
    assert result.best_val_acc == max(r["val_acc"] for r in result.history)


def test_history_records_every_epoch_and_the_swaps_of_the_optimizer(digits_small, small_wired):
    model = small_wired(seed=1)
    trainer = Trainer(model, digits_small, config(epochs=3))
    assert isinstance(trainer.optimizer, DNWOptimizer)  # a wired model gets the DNW step
    result = trainer.fit()
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    steps = [r["step"] for r in result.history]
    assert steps == [trainer.steps_per_epoch * e for e in (1, 2, 3)] == sorted(steps)
    assert sum(r["swaps"] for r in result.history) == trainer.optimizer.swaps_total
    assert result.swaps_total == trainer.optimizer.swaps_total > 0
    kept = int(model.graph.edge_mask.sum())
    assert all(r["edges"] == kept for r in result.history)  # DNW keeps the budget


def test_step_hooks_see_every_step_with_its_loss(digits_small, small_wired):
    seen = []
    trainer = Trainer(
        small_wired(seed=2),
        digits_small,
        config(epochs=2),
        step_hooks=[lambda t, loss: seen.append((t.step, loss))],
    )
    trainer.fit()
    assert [s for s, _ in seen] == list(range(1, 2 * trainer.steps_per_epoch + 1))
    assert all(isinstance(loss, float) and loss > 0 for _, loss in seen)


def test_fit_until_an_epoch_then_on_equals_one_fit(digits_small, small_wired):
    whole = Trainer(small_wired(seed=3), digits_small, config(epochs=3)).fit()
    trainer = Trainer(small_wired(seed=3), digits_small, config(epochs=3))
    trainer.fit(until_epoch=1)
    assert len(trainer.history) == 1
    split = trainer.fit()
    assert [r["train_loss"] for r in split.history] == [r["train_loss"] for r in whole.history]


def test_metrics_log_is_one_json_line_per_epoch(tmp_path, digits_small, small_wired):
    path = tmp_path / "metrics.jsonl"
    result = Trainer(small_wired(seed=4), digits_small, config(metrics_path=str(path))).fit()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == result.history


def test_evaluate_is_the_mean_loss_and_the_accuracy_over_the_loader():
    x = torch.eye(4)  # one-hot inputs: the identity model predicts class i for row i
    y = torch.tensor([0, 1, 2, 0])  # the last row is wrong
    loader = make_loader(TensorDataset(x, y), 3, train=False)  # batches of 3 and 1
    out = evaluate(nn.Identity(), loader)
    assert out["acc"] == pytest.approx(75.0)
    expected = nn.functional.cross_entropy(x, y).item()  # averaged over examples, not batches
    assert out["loss"] == pytest.approx(expected)


def test_a_plain_model_trains_with_the_base_optimizer(digits_small):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    trainer = Trainer(model, digits_small, config(epochs=1))
    assert not isinstance(trainer.optimizer, DNWOptimizer)
    assert trainer.fit().history[0]["swaps"] == 0


def test_errors_name_the_argument(digits_small, small_wired):
    with pytest.raises(ConfigError, match="config must be a TrainConfig"):
        Trainer(small_wired(), digits_small, {"epochs": 1})
