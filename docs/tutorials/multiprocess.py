"""Tutorial: multi-process (data-parallel) training of a wired network.

Launch it on N processes with torchrun::

    torchrun --nproc_per_node=2 docs/tutorials/multiprocess.py

or run it as one process with ``python docs/tutorials/multiprocess.py``. Each process
joins the process group torchrun describes, reads its own shard of the data, and the
gradients are averaged, so every process applies the same update and re-selects the same
edges. The trainer checks that the masks agree on every rank after every step, and each
rank prints a digest of its final mask.
"""

from __future__ import annotations

import argparse
import hashlib

import torch.distributed as dist
from torch import nn

import graphwire
from graphwire import OptimizerConfig, TrainConfig, Trainer
from graphwire.graph import layered_dag
from graphwire.training import init_distributed, load_dataset


def main(
    epochs: int = 5,
    hidden: int = 64,
    density: float = 0.1,
    limit: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> dict:
    """Train on every process torchrun started (or on this one); return rank 0's summary."""
    info = init_distributed(device="cpu")  # reads RANK, WORLD_SIZE, ... set by torchrun
    try:
        data = load_dataset("digits", limit=limit)
        size = data.image_size * data.image_size * data.in_channels
        graph = layered_dag([size, hidden, hidden, data.num_classes])
        # The same seed on every rank gives the same initial weights and mask; DDP also
        # broadcasts rank 0's parameters and buffers (masks included) when it wraps the model.
        net = graphwire.WiredGraph(graph, node_op="relu", density=density, seed=seed)
        model = nn.Sequential(nn.Flatten(), net)  # [B, 1, 8, 8] -> one input node per pixel
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,  # per process: the global batch is world_size times this
            optimizer=OptimizerConfig(lr=0.05),
            seed=seed,
            progress=info.is_main,
            verify_masks_every=1,  # all-reduce a digest of the masks after every step
        )
        result = Trainer(model, data, config, info=info).fit()  # raises if masks disagree
        digest = hashlib.sha256(net.edge_mask.cpu().numpy().tobytes()).hexdigest()[:16]
        if info.is_main:
            print(
                f"{info.world_size} process(es): val accuracy {result.final_val_acc:.1f}%, "
                f"{result.swaps_total} swaps"
            )
        print(f"rank {info.rank}: mask digest {digest}")  # the same on every rank
        return {
            "world_size": info.world_size,
            "rank": info.rank,
            "accuracy": result.final_val_acc,
            "swaps": result.swaps_total,
            "mask_digest": digest,
        }
    finally:
        if dist.is_initialized():  # leave the process group torchrun's environment made
            dist.destroy_process_group()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    main(epochs=args.epochs, hidden=args.hidden, limit=args.limit)
