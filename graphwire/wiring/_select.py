"""A native top-k mask for large float32 score vectors on the CPU: a radix select.

The ``k`` largest values of ``x`` (or of ``|x|``, without materialising it) are found in
three passes over ``x``: a histogram of the top 11 bits of each value's order-preserving
integer key (per thread), a collection of the keys in the bucket that holds the
``k``-th largest, and the mask itself (``key > threshold``, then the ties at the
threshold in index order until ``k`` are set). The bucket's keys are resolved by two more
histograms over that bucket alone. No full-size temporaries are allocated: a fresh 40 MB
tensor costs more in page faults than a pass over it. Results are identical to the torch
path of :func:`graphwire.wiring.select_topk`, ties included (tested).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from graphwire import _native

__all__ = ["topk_mask", "applies", "available", "MIN_SIZE"]

#: Below this many scores the torch path is as fast (the passes are cheap either way).
MIN_SIZE = 1 << 16

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define BLOCK 65536

static inline uint32_t key_of(uint32_t bits, int magnitude) {
  if (magnitude) return bits & 0x7fffffffu;
  if (bits == 0x80000000u) bits = 0;            /* -0.0 ties with +0.0, as in torch */
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

/* Select, in the bucket-resolved keys cand[0:m], the need-th largest key (1-based). */
static uint32_t kth_key(const uint32_t* cand, int64_t m, int64_t need, uint32_t prefix) {
  int64_t h[2048];
  uint32_t hi = prefix;                          /* bits 31..21 fixed */
  memset(h, 0, sizeof h);
  for (int64_t i = 0; i < m; ++i) h[(cand[i] >> 10) & 0x7ff]++;
  int64_t b = 2047;
  for (; b > 0 && h[b] < need; --b) need -= h[b];
  hi |= (uint32_t)b << 10;                        /* bits 20..10 fixed */
  memset(h, 0, 1024 * sizeof(int64_t));
  for (int64_t i = 0; i < m; ++i)
    if ((cand[i] >> 10) == (hi >> 10)) h[cand[i] & 0x3ff]++;
  b = 1023;
  for (; b > 0 && h[b] < need; --b) need -= h[b];
  return hi | (uint32_t)b;
}

/* mask[i] = 1 for the k largest keys of x (0 < k < n), ties to the lower index.
   Returns 0, 1 when x holds a NaN (mask untouched), 2 when out of memory. */
int gw_topk_mask_f32(const float* x, int64_t n, int64_t k, int magnitude, uint8_t* mask,
                     int threads) {
  const uint32_t* bits = (const uint32_t*)x;
  if (threads < 1) threads = 1;
  int64_t* hist = (int64_t*)calloc((size_t)threads * 2048, sizeof(int64_t));
  int64_t blocks = (n + BLOCK - 1) / BLOCK;
  int64_t* ties = (int64_t*)calloc((size_t)blocks, sizeof(int64_t));
  if (!hist || !ties) { free(hist); free(ties); return 2; }
  int nan = 0, used = 1;
  /* pass 1: per-thread histograms of the top 11 key bits over a static partition */
  #pragma omp parallel num_threads(threads) reduction(|: nan)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    #pragma omp single
    used = nt;
    int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
    int64_t* h = hist + (int64_t)t * 2048;
    for (int64_t i = lo; i < hi; ++i) {
      uint32_t b = bits[i];
      nan |= (b & 0x7fffffffu) > 0x7f800000u;
      h[key_of(b, magnitude) >> 21]++;
    }
  }
  if (nan) { free(hist); free(ties); return 1; }
  int64_t total[2048];
  for (int b = 0; b < 2048; ++b) {
    total[b] = 0;
    for (int t = 0; t < used; ++t) total[b] += hist[(int64_t)t * 2048 + b];
  }
  int64_t need = k, bucket = 2047;
  for (; bucket > 0 && total[bucket] < need; --bucket) need -= total[bucket];
  /* pass 2: the keys of that bucket, each thread writing at its own offset */
  int64_t m = total[bucket];
  uint32_t* cand = (uint32_t*)malloc((size_t)(m > 0 ? m : 1) * sizeof(uint32_t));
  if (!cand) { free(hist); free(ties); return 2; }
  #pragma omp parallel num_threads(used)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    for (int s = t; s < used; s += nt) {
      int64_t off = 0;
      for (int r = 0; r < s; ++r) off += hist[(int64_t)r * 2048 + bucket];
      int64_t lo = n * s / used, hi = n * (s + 1) / used;
      for (int64_t i = lo; i < hi; ++i) {
        uint32_t key = key_of(bits[i], magnitude);
        if ((int64_t)(key >> 21) == bucket) cand[off++] = key;
      }
    }
  }
  uint32_t thr = kth_key(cand, m, need, (uint32_t)bucket << 21);
  int64_t above = k - need;                      /* keys in higher buckets */
  for (int64_t i = 0; i < m; ++i) above += cand[i] > thr;
  free(cand);
  int64_t allowed = k - above;                   /* ties at thr to set, >= 1 */
  /* pass 3: the mask above the threshold, counting ties per block */
  #pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    int64_t lo = blk * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n, c = 0;
    for (int64_t i = lo; i < hi; ++i) {
      uint32_t key = key_of(bits[i], magnitude);
      mask[i] = key > thr;
      c += key == thr;
    }
    ties[blk] = c;
  }
  for (int64_t blk = 0; blk < blocks && allowed > 0; ++blk) {
    if (!ties[blk]) continue;
    int64_t lo = blk * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
    for (int64_t i = lo; i < hi && allowed > 0; ++i)
      if (key_of(bits[i], magnitude) == thr) { mask[i] = 1; --allowed; }
  }
  free(hist); free(ties);
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
