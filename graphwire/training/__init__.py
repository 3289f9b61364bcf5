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

from graphwire.training.checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from graphwire.training.config import SCHEDULES, OptimizerConfig, ScheduleConfig, TrainConfig
from graphwire.training.data import (
    DATASETS,
    MNIST1D_ARGS,
    DataSplits,
    TensorLoader,
    load_cifar10,
    load_dataset,
    load_digits,
    load_imagenet,
    load_mnist1d,
    make_loader,
)
from graphwire.training.distributed import (
    DistInfo,
    all_reduce_sum,
    cleanup_distributed,
    init_distributed,
    masks_agree,
    unwrap_model,
    wrap_model,
)
from graphwire.training.loop import StepHook, Trainer, TrainResult, evaluate
from graphwire.training.optim import LRSchedule, build_optimizer, build_scheduler, parameter_groups

__all__ = [
    "Trainer",
    "TrainResult",
    "StepHook",
    "evaluate",
    "TrainConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "SCHEDULES",
    "parameter_groups",
    "build_optimizer",
    "build_scheduler",
    "LRSchedule",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "CHECKPOINT_FORMAT",
    "DataSplits",
    "load_digits",
    "load_mnist1d",
    "load_cifar10",
    "load_imagenet",
    "load_dataset",
    "DATASETS",
    "MNIST1D_ARGS",
    "TensorLoader",
    "make_loader",
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "wrap_model",
    "unwrap_model",
    "all_reduce_sum",
    "masks_agree",
]
