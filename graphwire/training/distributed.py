"""Multi-process training: ``torchrun`` set-up, DistributedDataParallel, mask agreement.

Launch with ``torchrun --nproc_per_node=N -m benchmarks SUITE ...``: every process calls
:func:`init_distributed`, which reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins the process group, gloo on
CPU and NCCL on GPU. Gradients are averaged across processes, so every rank applies the
same update and re-selects the same edges; :func:`masks_agree` checks it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from graphwire.wiring.optimizer import Rewirable

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "wrap_model",
    "unwrap_model",
    "all_reduce_sum",
    "masks_agree",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run.

    Args:
        rank: Global rank of this process.
        world_size: Number of processes.
        local_rank: Rank on this machine (picks the GPU).
        device: The device this process trains on.

    Example:
        >>> from graphwire.training.distributed import DistInfo
        >>> DistInfo().is_main
        True
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


def init_distributed(device: str | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment.

    Without ``WORLD_SIZE`` > 1 in the environment this is a single-process run and
    nothing is initialised.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available). With CUDA each
            process takes the GPU of its local rank.
        backend: Process-group backend; default gloo on CPU, NCCL on CUDA.

    Returns:
        This process's :class:`DistInfo`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup_distributed() -> None:
    """Leave the process group, if one was joined.

    Drop every object that holds a DDP-wrapped model (a
    :class:`~graphwire.training.Trainer`, the wrapped module) before calling this. A DDP
    module freed after the group is destroyed holds the last reference to it, and with
    gloo the group's destructor can then deadlock at process exit.
    """
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """Wrap ``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` when distributed.

    DDP broadcasts rank 0's parameters and buffers (the edge masks included) at
    construction, then averages gradients; a single-process run gets ``model`` back.
    """
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum ``values`` over all processes (identity in a single-process run)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def _mask_digest(model: nn.Module) -> Tensor:
    # Position-weighted sums of every mask: equal masks give equal digests, and a single
    # edge swapped changes them.
    parts = []
    for m in unwrap_model(model).modules():
        if isinstance(m, Rewirable):
            mask = m.edge_mask.to(torch.float64)
            pos = torch.arange(1, mask.numel() + 1, dtype=torch.float64, device=mask.device)
            parts.append(torch.stack([mask.sum(), (mask * pos).sum(), (mask * pos.sqrt()).sum()]))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def masks_agree(model: nn.Module, info: DistInfo) -> bool:
    """Whether every process holds the same edge masks (always true on one process).

    Compares a digest of the masks (counts and position-weighted sums) by an all-reduce
    of its minimum and maximum over the ranks.
    """
    if not info.distributed:
        return True
    digest = _mask_digest(model).to(info.device)
    low, high = digest.clone(), digest.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))
