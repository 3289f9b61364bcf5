"""Configuration of a training run: explicit dataclasses, passed in, never read globally."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from graphwire._utils import choose
from graphwire.errors import ConfigError

__all__ = ["OptimizerConfig", "ScheduleConfig", "TrainConfig", "SCHEDULES"]

#: Learning-rate schedules by name.
SCHEDULES = ("constant", "multistep", "cosine")


@dataclass
class OptimizerConfig:
    """SGD with momentum and weight decay, as in every run of the paper.

    Args:
        lr: Base learning rate.
        momentum: SGD momentum (applies to every edge weight, selected or not).
        weight_decay: L2 weight decay of the ``"decay"`` and ``"edges"`` groups.
        nesterov: Use Nesterov momentum.
        edge_weight_decay: Weight decay of the edge weights; ``None`` uses
            ``weight_decay`` (the paper decays every edge).
        no_decay_norm_bias: Put biases and normalisation parameters in a group without
            weight decay.
        edge_lr_scale: Multiplies the learning rate of the edge weights (1: the paper).
            Below 1 it slows the swapping of edges relative to the rest of the network.

    Example:
        >>> from graphwire import OptimizerConfig
        >>> OptimizerConfig(lr=0.05).momentum
        0.9
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    edge_weight_decay: float | None = None
    no_decay_norm_bias: bool = False
    edge_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"OptimizerConfig.lr must be positive; got {self.lr!r}.")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"OptimizerConfig.momentum must be in [0, 1); got {self.momentum!r}.")
        if self.weight_decay < 0:
            raise ConfigError(
                f"OptimizerConfig.weight_decay must be >= 0; got {self.weight_decay!r}."
            )


@dataclass
class ScheduleConfig:
    """The learning-rate schedule, stepped once per iteration.

    Args:
        kind: ``"constant"``, ``"multistep"`` (multiply by ``gamma`` at each epoch in
            ``milestones``) or ``"cosine"`` (per-iteration cosine decay to ``min_lr``).
        milestones: Epochs at which ``"multistep"`` decays.
        gamma: Decay factor of ``"multistep"``.
        warmup_epochs: Epochs of linear warm-up from ``warmup_start`` times the base rate.
        warmup_start: Fraction of the base rate at the first iteration of the warm-up.
        min_lr: Fraction of the base rate that ``"cosine"`` ends at.

    Example:
        >>> from graphwire import ScheduleConfig
        >>> ScheduleConfig("multistep", milestones=(80, 120)).gamma
        0.1
    """

    kind: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_start: float = 0.0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        choose("ScheduleConfig.kind", self.kind, dict.fromkeys(SCHEDULES), ConfigError)
        self.milestones = tuple(int(m) for m in self.milestones)
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError(
                f"ScheduleConfig.milestones must be increasing epochs; got {self.milestones}."
            )
        if self.warmup_epochs < 0:
            raise ConfigError(
                f"ScheduleConfig.warmup_epochs must be >= 0; got {self.warmup_epochs!r}."
            )


@dataclass
class TrainConfig:
    """Everything about a run except the model and the data.

    Args:
        epochs: Number of training epochs.
        batch_size: Batch size per process.
        optimizer: The optimizer's configuration.
        schedule: The learning-rate schedule.
        seed: Seed of the data order (per epoch) and of the run's RNG state.
        label_smoothing: Label smoothing of the cross-entropy loss.
        eval_every: Evaluate every this many epochs (and always after the last).
        checkpoint_dir: Directory for ``last.pt`` (and ``epoch{N}.pt`` when
            ``keep_checkpoints``); ``None`` writes none.
        checkpoint_every: Write a checkpoint every this many epochs.
        keep_checkpoints: Keep one checkpoint per epoch instead of overwriting ``last.pt``.
        resume: Checkpoint to resume from; it must exist (no silent fresh start).
        metrics_path: JSON-lines file receiving one record per epoch; ``None`` writes none.
        progress: Show a tqdm progress bar (on the main process only).
        verify_masks_every: In a multi-process run, check every this many steps that
            every rank holds the same edge masks (0: never).
        max_grad_norm: Clip the gradient norm to this value; ``None`` does not clip.
        device: Device to train on; ``None`` picks the distributed run's device or CPU.

    Example:
        >>> from graphwire import TrainConfig
        >>> TrainConfig(epochs=2, batch_size=64).schedule.kind
        'cosine'
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: int = 0
    label_smoothing: float = 0.0
    eval_every: int = 1
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    keep_checkpoints: bool = False
    resume: str | None = None
    metrics_path: str | None = None
    progress: bool = True
    verify_masks_every: int = 0
    max_grad_norm: float | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"TrainConfig.{name} must be a positive int; got {value!r}.")
        if isinstance(self.optimizer, dict):
            self.optimizer = OptimizerConfig(**self.optimizer)
        if isinstance(self.schedule, dict):
            self.schedule = ScheduleConfig(**self.schedule)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (nested dataclasses as dicts)."""
        return asdict(self)
