"""The training loop: one :class:`Trainer` for every suite, single- or multi-process."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from graphwire._utils import describe
from graphwire.errors import CheckpointError, ConfigError, DataError, GraphwireError
from graphwire.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from graphwire.training.config import TrainConfig
from graphwire.training.data import DataSplits, make_loader
from graphwire.training.distributed import (
    DistInfo,
    all_reduce_sum,
    masks_agree,
    unwrap_model,
    wrap_model,
)
from graphwire.training.optim import build_optimizer, build_scheduler
from graphwire.wiring.optimizer import DNWOptimizer, Rewirable

__all__ = ["Trainer", "TrainResult", "evaluate", "StepHook"]

#: Called after every optimizer step with the trainer and the batch loss.
StepHook = Callable[["Trainer", float], None]


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports.

    Attributes:
        history: One record per epoch: ``epoch``, ``step``, ``lr``, ``train_loss``,
            ``train_acc``, ``val_loss``, ``val_acc`` (``None`` when not evaluated),
            ``swaps`` (edges swapped in during the epoch), ``edges`` (edges in use),
            ``unfed`` (non-input nodes of wired graphs that no selected edge feeds, see
            :meth:`~graphwire.WiredGraph.unfed_nodes`) and ``time_s``.
        final_val_acc: Validation accuracy after the last epoch run.
        best_val_acc: Best validation accuracy over the epochs evaluated.
        swaps_total: Edges swapped in over the whole run.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    final_val_acc: float | None = None
    best_val_acc: float | None = None
    swaps_total: int = 0


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Any, info: DistInfo | None = None, device: torch.device | None = None
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy (in %) of ``model`` over ``loader``.

    In a distributed run each process evaluates its shard and the sums are reduced, so
    every process returns the same numbers.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> from graphwire.training.data import make_loader
        >>> from graphwire.training.loop import evaluate
        >>> data = TensorDataset(torch.eye(4), torch.arange(4))
        >>> evaluate(torch.nn.Identity(), make_loader(data, 2, train=False))["acc"]
        100.0
    """
    info = info or DistInfo()
    device = device or info.device
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0.0, 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)  # [B, classes]
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += float((logits.argmax(1) == y).sum())
        count += y.numel()
    model.train(was_training)
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], info)
    if count == 0:
        raise DataError("the evaluation loader is empty; there is nothing to evaluate.")
    return {"loss": loss_sum / count, "acc": 100.0 * correct / count}


def _edges_in_use(model: nn.Module) -> int:
    return sum(int(m.edge_mask.sum()) for m in model.modules() if isinstance(m, Rewirable))


def _unfed_nodes(model: nn.Module) -> int:
    # every WiredGraph (wired layers have no nodes)
    return sum(m.unfed_nodes().numel() for m in model.modules() if hasattr(m, "unfed_nodes"))


class Trainer:
    """Train a classifier with the one training loop of graphwire.

    SGD (wrapped in :class:`~graphwire.DNWOptimizer`), a per-iteration schedule,
    evaluation, a progress bar, a JSON-lines metrics log and atomic checkpoints.

    A fresh run seeds torch, NumPy and Python from ``config.seed``; the data order
    depends only on the seed and the epoch, and checkpoints hold every RNG state, so a
    run interrupted and resumed ends exactly where an uninterrupted one does (on CPU).
    In a ``torchrun`` run (``info.world_size > 1``) the model is wrapped in
    DistributedDataParallel, each process reads its shard, and only rank 0 writes.

    Args:
        model: The classifier, ``[B, C, H, W] -> [B, classes]`` logits.
        data: The training and validation sets.
        config: The run's configuration.
        info: This process's place in a distributed run (default: single process).
        step_hooks: Functions called as ``hook(trainer, loss)`` after every step.

    Example:
        >>> import torch
        >>> from graphwire import Trainer, TrainConfig
        >>> from graphwire.training import load_dataset
        >>> data = load_dataset("digits", limit=64)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        >>> cfg = TrainConfig(epochs=1, batch_size=32, progress=False)
        >>> result = Trainer(model, data, cfg).fit()
        >>> len(result.history), result.history[0]["step"]
        (1, 2)
    """

    def __init__(
        self,
        model: nn.Module,
        data: DataSplits,
        config: TrainConfig,
        *,
        info: DistInfo | None = None,
        step_hooks: Sequence[StepHook] = (),
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig; got {describe(config)}.")
        self.config, self.info = config, info or DistInfo()
        self.device = torch.device(config.device) if config.device else self.info.device
        self.model = unwrap_model(model).to(self.device)
        self.net = wrap_model(self.model, self.info)
        self.train_loader = make_loader(
            data.train, config.batch_size, train=True, seed=config.seed, info=self.info
        )
        self.val_loader = make_loader(data.val, config.batch_size, train=False, info=self.info)
        self.steps_per_epoch = len(self.train_loader)
        self.optimizer = build_optimizer(self.model, config.optimizer)
        self.scheduler = build_scheduler(
            self.optimizer, config.schedule, self.steps_per_epoch, config.epochs
        )
        self.step_hooks = list(step_hooks)
        self.epoch, self.step = 0, 0
        self.history: list[dict[str, Any]] = []
        self._fresh = True
        if config.resume:
            self.load(config.resume)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer (with masks), scheduler, RNG states, epoch, step and history."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "history": self.history,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`.

        Raises:
            CheckpointError: if the checkpoint does not match the model or the data.
        """
        missing = {"model", "optimizer", "scheduler", "rng", "epoch", "step"} - set(state)
        if missing:
            raise CheckpointError(f"checkpoint lacks {sorted(missing)}; it is not a run state.")
        if state.get("steps_per_epoch", self.steps_per_epoch) != self.steps_per_epoch:
            raise CheckpointError(
                f"checkpoint was written with {state['steps_per_epoch']} steps per epoch but "
                f"this run has {self.steps_per_epoch}; resume with the same data and batch size."
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise CheckpointError(
                f"checkpoint does not match the model: {err}. Resume with the model (name, "
                "size, rule) the checkpoint was written with."
            ) from err
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(
                f"checkpoint's optimizer state does not match this model's parameter groups: {err}."
            ) from err
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state.get("history", []))
        self._fresh = False

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically (rank 0 only; other ranks return the path)."""
        if not self.info.is_main:
            return Path(path)
        return save_checkpoint(path, self.state_dict())

    def load(self, path: str | Path) -> None:
        """Resume from the checkpoint at ``path`` (it must exist)."""
        self.load_state_dict(load_checkpoint(path, map_location=self.device))

    # ------------------------------------------------------------------ running
    def fit(self, until_epoch: int | None = None) -> TrainResult:
        """Train from the current epoch to ``config.epochs`` (or stop after ``until_epoch``).

        Stopping early and resuming from the checkpoint reproduces the full run.

        Returns:
            The history so far and the final and best validation accuracies.
        """
        cfg = self.config
        if self._fresh:
            random.seed(cfg.seed)
            np.random.seed(cfg.seed)  # noqa: NPY002 (the legacy global generator users draw from)
            torch.manual_seed(cfg.seed)
            self._fresh = False
            if self.info.is_main and cfg.metrics_path:
                Path(cfg.metrics_path).parent.mkdir(parents=True, exist_ok=True)
                Path(cfg.metrics_path).write_text("")
        elif self.info.is_main and cfg.metrics_path:  # resumed: the log matches the checkpoint
            Path(cfg.metrics_path).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.metrics_path).write_text("".join(json.dumps(r) + "\n" for r in self.history))
        last = cfg.epochs if until_epoch is None else min(until_epoch, cfg.epochs)
        while self.epoch < last:
            record = self.train_epoch()
            self.history.append(record)
            if self.info.is_main and cfg.metrics_path:
                with open(cfg.metrics_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            if cfg.checkpoint_dir and (
                self.epoch % cfg.checkpoint_every == 0 or self.epoch == cfg.epochs
            ):
                directory = Path(cfg.checkpoint_dir)
                self.save(directory / "last.pt")
                if cfg.keep_checkpoints:
                    self.save(directory / f"epoch{self.epoch}.pt")
        return self.result()

    def result(self) -> TrainResult:
        """The :class:`TrainResult` of the epochs run so far."""
        accs = [r["val_acc"] for r in self.history if r.get("val_acc") is not None]
        swaps = getattr(self.optimizer, "swaps_total", 0)
        return TrainResult(
            history=list(self.history),
            final_val_acc=accs[-1] if accs else None,
            best_val_acc=max(accs) if accs else None,
            swaps_total=int(swaps),
        )

    def train_epoch(self) -> dict[str, Any]:
        """Run one epoch (and evaluate when due); return its metrics record."""
        from tqdm.auto import tqdm

        cfg, start = self.config, time.perf_counter()
        self.train_loader.sampler.set_epoch(self.epoch)
        self.net.train()
        loss_sum, correct, count, swaps = 0.0, 0.0, 0.0, 0
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            disable=not (cfg.progress and self.info.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        for x, y in self.train_loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            logits = self.net(x)  # [B, classes]
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise ConfigError(
                    f"loss became {loss_value} at step {self.step}; lower the learning rate "
                    f"(now {self.scheduler.get_last_lr()[0]:.3g})."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            step_swaps = (
                self.optimizer.swaps_last_step if isinstance(self.optimizer, DNWOptimizer) else 0
            )
            swaps += step_swaps
            n = y.numel()
            loss_sum += loss_value * n
            correct += float((logits.argmax(1) == y).sum())
            count += n
            if cfg.verify_masks_every and self.step % cfg.verify_masks_every == 0:
                if not masks_agree(self.model, self.info):
                    raise GraphwireError(
                        f"edge masks differ across ranks at step {self.step}; the processes "
                        "did not apply the same update (check that every rank runs the same "
                        "model and seed)."
                    )
            for hook in self.step_hooks:
                hook(self, loss_value)
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss_sum / count:.3f}",
                acc=f"{100 * correct / count:.1f}",
                lr=f"{self.scheduler.get_last_lr()[0]:.3g}",
                swaps=step_swaps,
                refresh=False,
            )
        bar.close()
        self.epoch += 1
        loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], self.info)
        record: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.step,
            "lr": float(self.scheduler.get_last_lr()[0]),
            "train_loss": loss_sum / max(count, 1),
            "train_acc": 100.0 * correct / max(count, 1),
            "val_loss": None,
            "val_acc": None,
            "swaps": int(swaps),
            "edges": _edges_in_use(self.model),
            "unfed": _unfed_nodes(self.model),
        }
        if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs:
            metrics = evaluate(self.model, self.val_loader, self.info, self.device)
            record["val_loss"], record["val_acc"] = metrics["loss"], metrics["acc"]
        record["time_s"] = time.perf_counter() - start
        return record

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy (%) of the current model on the validation set."""
        return evaluate(self.model, self.val_loader, self.info, self.device)
