"""Checkpoints: written atomically, loaded with clear errors, restoring RNG states exactly."""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphwire.errors import CheckpointError

__all__ = [
    "CHECKPOINT_FORMAT",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
]

#: Tag stored in every checkpoint, checked on load.
CHECKPOINT_FORMAT = "graphwire-checkpoint-v1"


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's (CPU and CUDA) generators.

    NumPy's state is stored as tensors so the checkpoint loads with ``weights_only=True``.

    Example:
        >>> import torch
        >>> from graphwire.training.checkpoint import rng_state, set_rng_state
        >>> state = rng_state(); a = torch.rand(1)
        >>> set_rng_state(state); bool(torch.rand(1) == a)
        True
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the legacy global generator)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators from :func:`rng_state`."""
    random.setstate(_as_tuple(state["python"]))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    legacy = (npst["name"], keys, npst["pos"], npst["has_gauss"], npst["cached"])
    np.random.set_state(legacy)  # noqa: NPY002 (the legacy global generator)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file, fsync, then a rename.

    A reader never sees a half-written checkpoint: an interrupted write leaves the old
    file (or none) in place.

    Args:
        path: Destination file; its directory is created.
        state: Tensors, numbers, strings and containers of them.

    Returns:
        The path written.

    Example:
        >>> import tempfile, torch
        >>> from graphwire.training.checkpoint import load_checkpoint, save_checkpoint
        >>> d = tempfile.mkdtemp()
        >>> p = save_checkpoint(f"{d}/c.pt", {"epoch": 3, "w": torch.ones(2)})
        >>> load_checkpoint(p)["epoch"]
        3
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: The checkpoint file.
        map_location: Where to load the tensors (CPU by default).

    Returns:
        The state dictionary that was saved.

    Raises:
        CheckpointError: if the file is missing, truncated or corrupt, or was not written
            by graphwire. Never falls back to a fresh start.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not exist. Check the path, or leave resume unset "
            "to start a fresh run."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(err).__name__}: {err}); it is "
            "truncated or corrupt. Resume from an earlier checkpoint."
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a graphwire checkpoint (format {found!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); write it with graphwire.training.save_checkpoint."
        )
    return state
