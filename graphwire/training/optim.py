"""Parameter groups, the DNW-wrapped SGD optimizer and per-iteration learning-rate schedules."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from graphwire.errors import ConfigError
from graphwire.training.config import OptimizerConfig, ScheduleConfig
from graphwire.wiring.optimizer import DNWOptimizer, Rewirable

__all__ = ["parameter_groups", "build_optimizer", "LRSchedule", "build_scheduler"]

#: Normalisation layers whose parameters (InstanceNorm's only with ``affine=True``) go to
#: the ``"no_decay"`` group; public classes only, the Lazy variants included.
_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LazyInstanceNorm1d,
    nn.LazyInstanceNorm2d,
    nn.LazyInstanceNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
)


def parameter_groups(model: nn.Module, config: OptimizerConfig) -> list[dict[str, Any]]:
    """Split the model's trainable parameters into named optimizer groups.

    Groups: ``"edges"`` (the edge weights of every wired module), ``"decay"`` (all other
    weights) and, with ``config.no_decay_norm_bias``, ``"no_decay"`` (biases, 1-D
    parameters and normalisation parameters). Empty groups are left out.

    Args:
        model: The model (not wrapped in DistributedDataParallel).
        config: Supplies the weight decays.

    Returns:
        Parameter groups for a ``torch.optim`` optimizer; each has a ``"name"`` key.

    Example:
        >>> from graphwire import WiredGraph
        >>> from graphwire.graph import layered_dag
        >>> from graphwire import OptimizerConfig
        >>> from graphwire.training.optim import parameter_groups
        >>> net = WiredGraph(layered_dag([2, 3, 1]), density=0.5, seed=0)
        >>> [(g["name"], len(g["params"])) for g in parameter_groups(net, OptimizerConfig())]
        [('edges', 1), ('decay', 1)]
    """
    edges = {
        id(m.weight): m.weight
        for m in model.modules()
        if isinstance(m, Rewirable) and isinstance(m.weight, nn.Parameter)
    }
    no_decay_ids: set[int] = set()
    if config.no_decay_norm_bias:
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, _NORMS) or name.endswith("bias") or "norm" in name:
                    no_decay_ids.add(id(p))
            for p in module.parameters(recurse=False):
                if p.dim() <= 1 and id(p) not in edges:
                    no_decay_ids.add(id(p))
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad or id(p) in edges:
            continue
        (no_decay if id(p) in no_decay_ids else decay).append(p)
    edge_wd = config.weight_decay if config.edge_weight_decay is None else config.edge_weight_decay
    groups = [
        {"name": "edges", "params": [p for p in edges.values() if p.requires_grad]},
        {"name": "decay", "params": decay, "weight_decay": config.weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    groups[0]["weight_decay"] = edge_wd
    if config.edge_lr_scale != 1.0:
        groups[0]["lr"] = config.lr * config.edge_lr_scale
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> Optimizer:
    """SGD over :func:`parameter_groups`, wrapped in :class:`~graphwire.DNWOptimizer`.

    A model without wired modules (a dense baseline) gets the plain SGD optimizer.

    Args:
        model: The model (not wrapped in DistributedDataParallel).
        config: Learning rate, momentum, weight decay, Nesterov.

    Returns:
        The optimizer; its ``step`` re-selects the edges when the model has wired modules.

    Example:
        >>> from graphwire import WiredGraph
        >>> from graphwire.graph import layered_dag
        >>> from graphwire import OptimizerConfig
        >>> from graphwire.training.optim import build_optimizer
        >>> net = WiredGraph(layered_dag([2, 3, 1]), density=0.5, seed=0)
        >>> build_optimizer(net, OptimizerConfig(lr=0.1))
        DNWOptimizer(wired=[''], base=SGD)
    """
    groups = parameter_groups(model, config)
    if not groups:
        raise ConfigError("model has no trainable parameters; there is nothing to optimise.")
    sgd = torch.optim.SGD(
        groups,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    has_wired = any(isinstance(m, Rewirable) for m in model.modules())
    return DNWOptimizer(model, sgd) if has_wired else sgd


class LRSchedule:
    """The learning-rate factor at each iteration: warm-up, then constant, steps or cosine.

    A picklable callable for :class:`torch.optim.lr_scheduler.LambdaLR`, stepped once per
    iteration, so a schedule given in epochs is exact at any batch count.

    Args:
        config: The schedule.
        steps_per_epoch: Iterations per epoch.
        epochs: Number of epochs of the run.

    Example:
        >>> from graphwire import ScheduleConfig
        >>> from graphwire.training.optim import LRSchedule
        >>> s = LRSchedule(ScheduleConfig("multistep", milestones=(2,)), 10, 4)
        >>> s(0), s(19), s(20)
        (1.0, 1.0, 0.1)
        >>> c = LRSchedule(ScheduleConfig("cosine"), 10, 4)
        >>> c(0), round(c(20), 6), c(40)
        (1.0, 0.5, 0.0)
    """

    def __init__(self, config: ScheduleConfig, steps_per_epoch: int, epochs: int):
        if steps_per_epoch <= 0 or epochs <= 0:
            raise ConfigError(
                f"LRSchedule needs positive steps_per_epoch and epochs; got {steps_per_epoch} "
                f"and {epochs} (is the training set empty?)."
            )
        self.kind = config.kind
        self.steps_per_epoch = int(steps_per_epoch)
        self.total = int(steps_per_epoch * epochs)
        self.milestones = [int(m * steps_per_epoch) for m in config.milestones]
        self.gamma = float(config.gamma)
        self.warmup = int(round(config.warmup_epochs * steps_per_epoch))
        self.warmup_start = float(config.warmup_start)
        self.min_lr = float(config.min_lr)

    def __call__(self, step: int) -> float:
        """The factor multiplying the base learning rate at iteration ``step``."""
        if step < self.warmup:
            return self.warmup_start + (1 - self.warmup_start) * step / self.warmup
        if self.kind == "multistep":
            return self.gamma ** sum(step >= m for m in self.milestones)
        if self.kind == "cosine":
            span = max(self.total - self.warmup, 1)
            progress = min((step - self.warmup) / span, 1.0)
            return self.min_lr + (1 - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0


def build_scheduler(
    optimizer: Optimizer, config: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> LambdaLR:
    """A :class:`~torch.optim.lr_scheduler.LambdaLR` to be stepped after every iteration.

    Example:
        >>> import torch
        >>> from graphwire import ScheduleConfig
        >>> from graphwire.training.optim import build_scheduler
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sched = build_scheduler(opt, ScheduleConfig("cosine"), steps_per_epoch=5, epochs=2)
        >>> round(sched.get_last_lr()[0], 4)
        0.1
    """
    return LambdaLR(optimizer, LRSchedule(config, steps_per_epoch, epochs))
