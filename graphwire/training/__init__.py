"""Training: the one training loop, its configuration, checkpoints, data and processes.

The fourth stage of graphwire's flow: graph -> wiring rule -> execution -> **training**
-> export. :class:`Trainer` trains any classifier holding wired modules with SGD wrapped
in :class:`~graphwire.DNWOptimizer`; configuration is given as dataclasses.

Example:
    >>> import torch
    >>> from graphwire.training import Trainer, TrainConfig, load_digits
    >>> data = load_digits(limit=64)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    >>> config = TrainConfig(epochs=1, batch_size=64, progress=False)
    >>> Trainer(model, data, config).fit().history[0]["epoch"]
    1
"""

from graphwire.training.checkpoint import load_checkpoint, save_checkpoint
from graphwire.training.config import OptimizerConfig, ScheduleConfig, TrainConfig
from graphwire.training.data import (
    DataSplits,
    load_cifar10,
    load_dataset,
    load_digits,
    load_imagenet,
    load_mnist1d,
    make_loader,
)
from graphwire.training.distributed import (
    cleanup_distributed,
    init_distributed,
    masks_agree,
    wrap_model,
)
from graphwire.training.loop import Trainer, TrainResult, evaluate
from graphwire.training.optim import build_optimizer

__all__ = [
    "Trainer",
    "TrainResult",
    "evaluate",
    "TrainConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "build_optimizer",
    "save_checkpoint",
    "load_checkpoint",
    "DataSplits",
    "load_digits",
    "load_mnist1d",
    "load_cifar10",
    "load_imagenet",
    "load_dataset",
    "make_loader",
    "init_distributed",
    "cleanup_distributed",
    "wrap_model",
    "masks_agree",
]
