"""A native top-k mask for large float32 score vectors on the CPU: a radix select.

The ``k`` largest values of ``x`` (or of ``|x|``, without materialising it) are found in
two passes over ``x``: a histogram of the top 16 bits of each value's order-preserving
integer key (per thread), then the mask of the keys in higher buckets together with the
keys of the bucket that holds the ``k``-th largest (about 0.2% of them for normal
weights), collected in index order. A histogram of their low 16 bits gives the exact
threshold, and the ties at it are set in index order until ``k`` are. No full-size
temporaries are allocated: a fresh 40 MB tensor costs more in page faults than a pass.
Results are identical to the torch path of :func:`graphwire.wiring.select_topk`, ties
included (tested). The C source is ``graphwire/csrc/select.c``, in the library of
graphwire's one native builder (``graphwire._native``); without it (no compiler, or
``GRAPHWIRE_KERNELS=off``) :func:`topk_mask` returns ``None`` and the caller uses torch.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from graphwire import _native

__all__ = ["topk_mask", "applies", "available", "MIN_SIZE"]

#: Below this many scores the torch path is faster: the native select has a floor of
#: about 100 us (its two 65,536-bucket histograms). Measured on a 2-core Xeon with k one
#: twentieth of the scores: torch 54 us against 112 us at 4,000 scores, 169 against 129 us
#: at 16,000 and 530 against 178 us at 40,000 (``torch.topk`` is slow at that size).
MIN_SIZE = 1 << 14


def _lib() -> ctypes.CDLL | None:
    return _native.load()


def available() -> bool:
    """Whether the native selection kernel is usable here (builds it if needed)."""
    return _lib() is not None


def applies(scores: Tensor) -> bool:
    """Whether :func:`topk_mask` runs natively on ``scores`` (else it returns ``None``)."""
    return (
        scores.device.type == "cpu"
        and scores.dtype == torch.float32
        and scores.dim() == 1
        and scores.numel() >= MIN_SIZE
        and scores.is_contiguous()
        and not torch.compiler.is_compiling()
        and _lib() is not None
    )


def topk_mask(scores: Tensor, k: int, *, magnitude: bool) -> Tensor | None:
    """Boolean mask of the ``k`` largest ``scores`` (of ``|scores|`` with ``magnitude``).

    Ties go to the lower index. ``0 < k < n`` is the caller's to ensure.

    Returns:
        The mask; ``None`` where the kernel does not apply (not a large contiguous
        float32 CPU vector, no kernel, or out of memory), and the caller uses torch.

    Raises:
        ValueError: if ``scores`` holds a NaN.
    """
    if not applies(scores):
        return None
    lib = _lib()
    mask = torch.empty(scores.numel(), dtype=torch.bool)
    code = lib.gw_topk_mask_f32(  # type: ignore[union-attr]
        scores.data_ptr(),
        scores.numel(),
        int(k),
        int(magnitude),
        mask.data_ptr(),
        torch.get_num_threads(),
    )
    if code == 1:
        raise ValueError("scores hold NaN")
    return mask if code == 0 else None
