"""A native top-k mask for large float32 score vectors on the CPU: a radix select.

The ``k`` largest values of ``x`` (or of ``|x|``, without materialising it) are found in
two passes over ``x``: a histogram of the top 16 bits of each value's order-preserving
integer key (per thread), then the mask of the keys in higher buckets together with the
keys of the bucket that holds the ``k``-th largest (about 0.2% of them for normal
weights), collected in index order. A histogram of their low 16 bits gives the exact
threshold, and the ties at it are set in index order until ``k`` are. No full-size
temporaries are allocated: a fresh 40 MB tensor costs more in page faults than a pass.
Results are identical to the torch path of :func:`graphwire.wiring.select_topk`, ties
included (tested).
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

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define BUCKETS 65536  /* the top 16 bits of a key */

static inline uint32_t key_of(uint32_t bits, int magnitude) {
  if (magnitude) return bits & 0x7fffffffu;
  if (bits == 0x80000000u) bits = 0;            /* -0.0 ties with +0.0, as in torch */
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

/* mask[i] = 1 for the k largest keys of x (0 < k < n), ties to the lower index.
   Returns 0, 1 when x holds a NaN (mask untouched), 2 when out of memory. */
int gw_topk_mask_f32(const float* x, int64_t n, int64_t k, int magnitude, uint8_t* mask,
                     int threads) {
  const uint32_t* bits = (const uint32_t*)x;
  if (threads < 1) threads = 1;
  int32_t* hist = (int32_t*)calloc((size_t)threads * BUCKETS, sizeof(int32_t));
  if (!hist) return 2;
  int nan = 0, used = 1;
  /* pass 1: per-thread histograms of the top 16 key bits over a static partition */
  #pragma omp parallel num_threads(threads) reduction(|: nan)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    #pragma omp single
    used = nt;
    int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
    int32_t* h = hist + (int64_t)t * BUCKETS;
    for (int64_t i = lo; i < hi; ++i) {
      uint32_t b = bits[i];
      nan |= (b & 0x7fffffffu) > 0x7f800000u;
      h[key_of(b, magnitude) >> 16]++;
    }
  }
  if (nan) { free(hist); return 1; }
  int64_t need = k, bucket = BUCKETS - 1, m = 0;
  for (;; --bucket) {
    m = 0;
    for (int t = 0; t < used; ++t) m += hist[(int64_t)t * BUCKETS + bucket];
    if (m >= need || bucket == 0) break;
    need -= m;
  }
  /* pass 2: the mask above the threshold bucket, and that bucket's keys in index order
     (each thread writes at its own offset, so the order is kept) */
  uint32_t* cand = (uint32_t*)malloc((size_t)(m > 0 ? m : 1) * sizeof(uint32_t));
  int64_t* where = (int64_t*)malloc((size_t)(m > 0 ? m : 1) * sizeof(int64_t));
  if (!cand || !where) { free(hist); free(cand); free(where); return 2; }
  const uint32_t top = (uint32_t)bucket;
  #pragma omp parallel num_threads(used)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    for (int s = t; s < used; s += nt) {
      int64_t off = 0;
      for (int r = 0; r < s; ++r) off += hist[(int64_t)r * BUCKETS + top];
      int64_t lo = n * s / used, hi = n * (s + 1) / used;
      for (int64_t i = lo; i < hi; ++i) {
        uint32_t key = key_of(bits[i], magnitude), b = key >> 16;
        mask[i] = b > top;
        if (b == top) { cand[off] = key; where[off] = i; ++off; }
      }
    }
  }
  /* the threshold within the bucket: a histogram of the low 16 bits of its keys */
  int32_t* low = hist;                           /* reuse: BUCKETS entries suffice */
  memset(low, 0, BUCKETS * sizeof(int32_t));
  for (int64_t j = 0; j < m; ++j) low[cand[j] & 0xffffu]++;
  int64_t b = BUCKETS - 1;
  for (; b > 0 && low[b] < need; --b) need -= low[b];
  const uint32_t thr = (top << 16) | (uint32_t)b;
  for (int64_t j = 0; j < m; ++j) {              /* need = ties at thr to set, >= 1 */
    if (cand[j] > thr) mask[where[j]] = 1;
    else if (cand[j] == thr && need > 0) { mask[where[j]] = 1; --need; }
  }
  free(hist); free(cand); free(where);
  return 0;
}
"""


def _declare(lib: ctypes.CDLL) -> None:
    fn = lib.gw_topk_mask_f32
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    fn.argtypes += [ctypes.c_void_p, ctypes.c_int]
    fn.restype = ctypes.c_int


def _lib() -> ctypes.CDLL | None:
    return _native.load("topk_mask", _SOURCE, _declare, "selection uses torch operations")


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
