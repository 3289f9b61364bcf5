"""Training: the one training loop, its configuration, checkpoints, data and processes.

The fourth stage of graphwire's flow: graph -> wiring rule -> execution -> **training**
-> export. :class:`~graphwire.Trainer` trains any classifier holding wired modules with
SGD wrapped in :class:`~graphwire.DNWOptimizer`; configuration is given as dataclasses
(:class:`~graphwire.TrainConfig`, :class:`~graphwire.OptimizerConfig`,
:class:`~graphwire.ScheduleConfig`). Data comes as :class:`DataSplits`, from
:func:`load_dataset` or your own tensors; :func:`init_distributed` joins the process group
``torchrun`` describes, and :func:`load_checkpoint` reads what ``Trainer.save`` wrote.

Example:
    >>> import torch
    >>> from graphwire import Trainer, TrainConfig
    >>> from graphwire.training import load_dataset
    >>> data = load_dataset("digits", limit=64)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    >>> config = TrainConfig(epochs=1, batch_size=64, progress=False)
    >>> Trainer(model, data, config).fit().history[0]["epoch"]
    1
"""

from graphwire.training.checkpoint import load_checkpoint
from graphwire.training.data import DataSplits, load_dataset
from graphwire.training.distributed import init_distributed

__all__ = ["DataSplits", "load_dataset", "init_distributed", "load_checkpoint"]
