"""A tiled sparse-times-dense kernel for CPU inference, built on first use.

``y[g, v, p] = sum over nonzeros (v, u) of a[v, u] * x[g, u, p]`` for a CSR matrix ``a``
and dense ``x`` of shape ``[G, n, P]``. The kernel copies a tile of ``P`` (256 bytes of
every row) into a contiguous buffer that stays in cache while it walks the nonzeros, and
keeps each output row's tile in vector registers. It is plain C, built on first use by
graphwire's one native builder (the system ``cc``, ``-O3 -march=native -fopenmp``, a
per-user cache, :mod:`ctypes`); no torch headers, so it builds in about a second. When
no compiler is available or the build fails, :func:`csr_mix` falls back to torch operations and
:func:`available` reports ``False``, so callers choose dense products instead.

:func:`csr_mix` is registered as the torch custom operator ``graphwire::csr_mix`` with a
shape-only implementation, so modules using it run under ``torch.inference_mode`` and
export with :func:`torch.export.export`.

:func:`shift_mix` (``graphwire::shift_mix``) is the same walk over nonzeros whose columns
are *shifted* rows of a padded, flattened image: a sparse ``k x k`` convolution without
im2col (:class:`~graphwire.lowering.SparseConv2d`).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from graphwire import _native

__all__ = ["available", "csr_mix", "ell_mix", "shift_mix", "load"]

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#define TILE_BYTES 256

/* out[0:T] = sum over e in [e0, e1) of val[e] * buf[col[e] * T : col[e] * T + T] */
static inline void row_f32(const float* restrict buf, const int64_t* restrict col,
                           const float* restrict val, int64_t e0, int64_t e1,
                           float* restrict out) {
#ifdef __AVX2__
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
         a7 = a0;
  for (int64_t e = e0; e < e1; ++e) {
    const __m256 s = _mm256_set1_ps(val[e]);
    const float* x = buf + col[e] * 64;
    a0 = _mm256_fmadd_ps(s, _mm256_load_ps(x), a0);
    a1 = _mm256_fmadd_ps(s, _mm256_load_ps(x + 8), a1);
    a2 = _mm256_fmadd_ps(s, _mm256_load_ps(x + 16), a2);
    a3 = _mm256_fmadd_ps(s, _mm256_load_ps(x + 24), a3);
    a4 = _mm256_fmadd_ps(s, _mm256_load_ps(x + 32), a4);
    a5 = _mm256_fmadd_ps(s, _mm256_load_ps(x + 40), a5);
    a6 = _mm256_fmadd_ps(s, _mm256_load_ps(x + 48), a6);
    a7 = _mm256_fmadd_ps(s, _mm256_load_ps(x + 56), a7);
  }
  _mm256_store_ps(out, a0); _mm256_store_ps(out + 8, a1);
  _mm256_store_ps(out + 16, a2); _mm256_store_ps(out + 24, a3);
  _mm256_store_ps(out + 32, a4); _mm256_store_ps(out + 40, a5);
  _mm256_store_ps(out + 48, a6); _mm256_store_ps(out + 56, a7);
#else
  for (int t = 0; t < 64; ++t) out[t] = 0;
  for (int64_t e = e0; e < e1; ++e) {
    const float s = val[e]; const float* x = buf + col[e] * 64;
    for (int t = 0; t < 64; ++t) out[t] += s * x[t];
  }
#endif
}

static inline void row_f64(const double* restrict buf, const int64_t* restrict col,
                           const double* restrict val, int64_t e0, int64_t e1,
                           double* restrict out) {
#ifdef __AVX2__
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
          a7 = a0;
  for (int64_t e = e0; e < e1; ++e) {
    const __m256d s = _mm256_set1_pd(val[e]);
    const double* x = buf + col[e] * 32;
    a0 = _mm256_fmadd_pd(s, _mm256_load_pd(x), a0);
    a1 = _mm256_fmadd_pd(s, _mm256_load_pd(x + 4), a1);
    a2 = _mm256_fmadd_pd(s, _mm256_load_pd(x + 8), a2);
    a3 = _mm256_fmadd_pd(s, _mm256_load_pd(x + 12), a3);
    a4 = _mm256_fmadd_pd(s, _mm256_load_pd(x + 16), a4);
    a5 = _mm256_fmadd_pd(s, _mm256_load_pd(x + 20), a5);
    a6 = _mm256_fmadd_pd(s, _mm256_load_pd(x + 24), a6);
    a7 = _mm256_fmadd_pd(s, _mm256_load_pd(x + 28), a7);
  }
  _mm256_store_pd(out, a0); _mm256_store_pd(out + 4, a1);
  _mm256_store_pd(out + 8, a2); _mm256_store_pd(out + 12, a3);
  _mm256_store_pd(out + 16, a4); _mm256_store_pd(out + 20, a5);
  _mm256_store_pd(out + 24, a6); _mm256_store_pd(out + 28, a7);
#else
  for (int t = 0; t < 32; ++t) out[t] = 0;
  for (int64_t e = e0; e < e1; ++e) {
    const double s = val[e]; const double* x = buf + col[e] * 32;
    for (int t = 0; t < 32; ++t) out[t] += s * x[t];
  }
#endif
}

#define DEFINE_KERNEL(NAME, REAL, ROW)                                                     \
  int NAME(const REAL* x, REAL* y, const int64_t* rowptr, const int64_t* col,            \
           const REAL* val, int64_t G, int64_t n, int64_t m, int64_t P, int threads) {     \
    const int64_t T = TILE_BYTES / sizeof(REAL);                                           \
    const int64_t tiles = (P + T - 1) / T;                                                 \
    int failed = 0;                                                                        \
    _Pragma("omp parallel num_threads(threads) reduction(|: failed)") {                    \
      REAL* buf = (REAL*)aligned_alloc(64, (size_t)(n + 1) * TILE_BYTES);                 \
      if (!buf) failed = 1;                                                                \
      REAL* out = buf + n * T;                                                             \
      _Pragma("omp for schedule(static)")                                                 \
      for (int64_t job = 0; job < G * tiles; ++job) {                                      \
        if (!buf) continue;                                                                \
        const int64_t g = job / tiles, t0 = (job % tiles) * T;                             \
        const int64_t w = P - t0 < T ? P - t0 : T;                                         \
        const REAL* xg = x + g * n * P + t0;                                               \
        REAL* yg = y + g * m * P + t0;                                                     \
        for (int64_t u = 0; u < n; ++u) {                                                  \
          memcpy(buf + u * T, xg + u * P, w * sizeof(REAL));                               \
          if (w < T) memset(buf + u * T + w, 0, (T - w) * sizeof(REAL));                   \
        }                                                                                  \
        for (int64_t v = 0; v < m; ++v) {                                                  \
          ROW(buf, col, val, rowptr[v], rowptr[v + 1], out);                               \
          memcpy(yg + v * P, out, w * sizeof(REAL));                                       \
        }                                                                                  \
      }                                                                                    \
      free(buf);                                                                           \
    }                                                                                      \
    return failed;                                                                         \
  }

DEFINE_KERNEL(gw_csr_mix_f32, float, row_f32)
DEFINE_KERNEL(gw_csr_mix_f64, double, row_f64)
/* Shifted mixes (a sparse convolution without im2col): for a padded, flattened input
   x [G, n, Pin] and nonzeros e = (v, u, o), y[g, v, p] = sum of val[e] * x[g, u, p + o]
   for p in [0, P) (P a multiple of 64 elements, Pin >= P + max o), where the shift is
   o = srow[e] * W + scol[e]. Internally src[e] = u * Pin + o. */
static inline void shift_f32(const float* restrict xg, const int64_t* restrict src,
                             const float* restrict val, int64_t e0, int64_t e1,
                             float* restrict out) {
#ifdef __AVX2__
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
         a7 = a0;
  for (int64_t e = e0; e < e1; ++e) {
    const __m256 s = _mm256_set1_ps(val[e]);
    const float* x = xg + src[e];
    a0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(x), a0);
    a1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(x + 8), a1);
    a2 = _mm256_fmadd_ps(s, _mm256_loadu_ps(x + 16), a2);
    a3 = _mm256_fmadd_ps(s, _mm256_loadu_ps(x + 24), a3);
    a4 = _mm256_fmadd_ps(s, _mm256_loadu_ps(x + 32), a4);
    a5 = _mm256_fmadd_ps(s, _mm256_loadu_ps(x + 40), a5);
    a6 = _mm256_fmadd_ps(s, _mm256_loadu_ps(x + 48), a6);
    a7 = _mm256_fmadd_ps(s, _mm256_loadu_ps(x + 56), a7);
  }
  _mm256_storeu_ps(out, a0); _mm256_storeu_ps(out + 8, a1);
  _mm256_storeu_ps(out + 16, a2); _mm256_storeu_ps(out + 24, a3);
  _mm256_storeu_ps(out + 32, a4); _mm256_storeu_ps(out + 40, a5);
  _mm256_storeu_ps(out + 48, a6); _mm256_storeu_ps(out + 56, a7);
#else
  for (int t = 0; t < 64; ++t) out[t] = 0;
  for (int64_t e = e0; e < e1; ++e) {
    const float s = val[e]; const float* x = xg + src[e];
    for (int t = 0; t < 64; ++t) out[t] += s * x[t];
  }
#endif
}

static inline void shift_f64(const double* restrict xg, const int64_t* restrict src,
                             const double* restrict val, int64_t e0, int64_t e1,
                             double* restrict out) {
  for (int h = 0; h < 2; ++h) {  /* two 32-wide halves of the 64-element tile */
#ifdef __AVX2__
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0,
            a6 = a0, a7 = a0;
    for (int64_t e = e0; e < e1; ++e) {
      const __m256d s = _mm256_set1_pd(val[e]);
      const double* x = xg + src[e] + 32 * h;
      a0 = _mm256_fmadd_pd(s, _mm256_loadu_pd(x), a0);
      a1 = _mm256_fmadd_pd(s, _mm256_loadu_pd(x + 4), a1);
      a2 = _mm256_fmadd_pd(s, _mm256_loadu_pd(x + 8), a2);
      a3 = _mm256_fmadd_pd(s, _mm256_loadu_pd(x + 12), a3);
      a4 = _mm256_fmadd_pd(s, _mm256_loadu_pd(x + 16), a4);
      a5 = _mm256_fmadd_pd(s, _mm256_loadu_pd(x + 20), a5);
      a6 = _mm256_fmadd_pd(s, _mm256_loadu_pd(x + 24), a6);
      a7 = _mm256_fmadd_pd(s, _mm256_loadu_pd(x + 28), a7);
    }
    double* o = out + 32 * h;
    _mm256_storeu_pd(o, a0); _mm256_storeu_pd(o + 4, a1);
    _mm256_storeu_pd(o + 8, a2); _mm256_storeu_pd(o + 12, a3);
    _mm256_storeu_pd(o + 16, a4); _mm256_storeu_pd(o + 20, a5);
    _mm256_storeu_pd(o + 24, a6); _mm256_storeu_pd(o + 28, a7);
#else
    double* o = out + 32 * h;
    for (int t = 0; t < 32; ++t) o[t] = 0;
    for (int64_t e = e0; e < e1; ++e) {
      const double s = val[e]; const double* x = xg + src[e] + 32 * h;
      for (int t = 0; t < 32; ++t) o[t] += s * x[t];
    }
#endif
  }
}

#define DEFINE_SHIFT(NAME, REAL, ROW)                                                      \
  int NAME(const REAL* x, REAL* y, const int64_t* rowptr, const int64_t* col,            \
           const int64_t* srow, const int64_t* scol, const REAL* val, int64_t G,           \
           int64_t n, int64_t m, int64_t Pin, int64_t P, int64_t W, int64_t Ho,            \
           int64_t Wo, int threads) {                                                      \
    /* tiles of 64 positions p = h * W + w of the wide output; only w < Wo and h < Ho   \
       are stored, as y[g, v, h * Wo + w] */                                               \
    const int64_t tiles = P / 64, nnz = rowptr[m];                                         \
    int64_t* src = (int64_t*)malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(int64_t));       \
    if (!src) return 1;                                                                    \
    int bad = 0;                                                                           \
    for (int64_t e = 0; e < nnz; ++e) {                                                    \
      const int64_t off = srow[e] * W + scol[e];                                           \
      if (off < 0 || off + P > Pin) bad = 1;                                               \
      src[e] = col[e] * Pin + off;                                                         \
    }                                                                                      \
    if (bad) { free(src); return 2; }                                                      \
    int64_t chunks = 1;  /* few tiles (small images): split the output rows too */        \
    if (G * tiles < 4 * (int64_t)threads) {                                                \
      chunks = (4 * (int64_t)threads + G * tiles - 1) / (G * tiles);                       \
      if (chunks > m) chunks = m > 0 ? m : 1;                                              \
    }                                                                                      \
    const int64_t per = (m + chunks - 1) / chunks, Py = Ho * Wo;                           \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                     \
    for (int64_t job = 0; job < G * tiles * chunks; ++job) {                               \
      REAL tmp[64] __attribute__((aligned(64)));                                           \
      const int64_t gt = job / chunks, c = job % chunks;                                   \
      const int64_t g = gt / tiles, t0 = (gt % tiles) * 64;                                \
      const REAL* xg = x + g * n * Pin + t0;                                               \
      const int64_t v1 = (c + 1) * per < m ? (c + 1) * per : m;                            \
      for (int64_t v = c * per; v < v1; ++v) {                                             \
        ROW(xg, src, val, rowptr[v], rowptr[v + 1], tmp);                                  \
        REAL* yv = y + (g * m + v) * Py;                                                   \
        for (int64_t p = t0; p < t0 + 64;) {  /* copy the row pieces with w < Wo */       \
          const int64_t h = p / W, w = p % W;                                              \
          const int64_t end = (h + 1) * W < t0 + 64 ? (h + 1) * W : t0 + 64;               \
          if (h >= Ho) break;                                                              \
          if (w < Wo) {                                                                    \
            const int64_t stop = h * W + Wo < end ? h * W + Wo : end;                      \
            memcpy(yv + h * Wo + w, tmp + (p - t0), (size_t)(stop - p) * sizeof(REAL));    \
          }                                                                                \
          p = end;                                                                         \
        }                                                                                  \
      }                                                                                    \
    }                                                                                      \
    free(src);                                                                             \
    return 0;                                                                              \
  }

DEFINE_SHIFT(gw_shift_mix_f32, float, shift_f32)
DEFINE_SHIFT(gw_shift_mix_f64, double, shift_f64)

/* Row-major ELL (every row holds L entries, padded with value 0 at column 0), for
   inputs of few rows: y[b, v] = sum over j < L of val[v, j] * x[b, idx[v, j]] for a
   row-major x [B, n] and y [B, m]. Scalar loads with four accumulators: on CPUs whose
   vector gathers are slow (microcode mitigations) they beat gathers, and x's rows
   stay in cache across the output rows a thread walks. */
#define DEFINE_ELL(NAME, REAL)                                                             \
  __attribute__((optimize("no-tree-vectorize")))                                          \
  int NAME(const REAL* x, REAL* y, const int32_t* idx, const REAL* val, int64_t B,        \
           int64_t n, int64_t m, int64_t L, int threads) {                                 \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                     \
    for (int64_t v = 0; v < m; ++v) {                                                      \
      const int32_t* iv = idx + v * L;                                                     \
      const REAL* vv = val + v * L;                                                        \
      for (int64_t b = 0; b < B; ++b) {                                                    \
        const REAL* xr = x + b * n;                                                        \
        REAL a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                               \
        int64_t j = 0;                                                                     \
        for (; j + 4 <= L; j += 4) {                                                       \
          a0 += vv[j] * xr[iv[j]];                                                         \
          a1 += vv[j + 1] * xr[iv[j + 1]];                                                 \
          a2 += vv[j + 2] * xr[iv[j + 2]];                                                 \
          a3 += vv[j + 3] * xr[iv[j + 3]];                                                 \
        }                                                                                  \
        for (; j < L; ++j) a0 += vv[j] * xr[iv[j]];                                        \
        y[b * m + v] = (a0 + a1) + (a2 + a3);                                              \
      }                                                                                    \
    }                                                                                      \
    return 0;                                                                              \
  }

DEFINE_ELL(gw_ell_mix_f32, float)
DEFINE_ELL(gw_ell_mix_f64, double)
"""


def _declare(lib: ctypes.CDLL) -> None:
    for name in ("gw_csr_mix_f32", "gw_csr_mix_f64"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 4 + [ctypes.c_int]
        fn.restype = ctypes.c_int
    for name in ("gw_shift_mix_f32", "gw_shift_mix_f64"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 8 + [ctypes.c_int]
        fn.restype = ctypes.c_int
    for name in ("gw_ell_mix_f32", "gw_ell_mix_f64"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 4 + [ctypes.c_int]
        fn.restype = ctypes.c_int


def load() -> ctypes.CDLL | None:
    """The compiled kernel library, building it on the first call; ``None`` if it cannot."""
    return _native.load(
        "csr_mix", _SOURCE, _declare, "compiled inference modules use dense products instead"
    )


def available() -> bool:
    """Whether the compiled CPU kernel is usable on this machine (builds it if needed)."""
    return load() is not None


def _torch_csr_mix(x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, rows: int) -> Tensor:
    """The same product with torch operations (GPU, other dtypes, or no kernel)."""
    row = torch.repeat_interleave(torch.arange(rows, device=rowptr.device), rowptr.diff())
    dense = val.new_zeros(rows, x.shape[1]).index_put((row, col), val)  # [rows, n]
    return torch.matmul(dense.to(x.dtype), x)


@torch.library.custom_op("graphwire::csr_mix", mutates_args=())
def csr_mix(x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, rows: int) -> Tensor:
    """``y[g, v, p] = sum over nonzeros (v, u) of a[v, u] * x[g, u, p]`` for CSR ``a``.

    Args:
        x: Dense ``[G, n, P]``.
        rowptr: int64 ``[rows + 1]`` CSR row pointers.
        col: int64 ``[nnz]`` column of each nonzero.
        val: ``[nnz]`` values, dtype of ``x``.
        rows: Number of rows of ``a``.

    Returns:
        ``[G, rows, P]``.
    """
    lib = load() if x.device.type == "cpu" else None
    kernels = {torch.float32: "gw_csr_mix_f32", torch.float64: "gw_csr_mix_f64"}
    if lib is None or x.dtype not in kernels or val.dtype != x.dtype:
        return _torch_csr_mix(x, rowptr, col, val, rows)
    x, rowptr, col, val = (t.contiguous() for t in (x, rowptr, col, val))
    g, n, p = x.shape
    y = x.new_empty(g, rows, p)
    failed = getattr(lib, kernels[x.dtype])(
        x.data_ptr(),
        y.data_ptr(),
        rowptr.data_ptr(),
        col.data_ptr(),
        val.data_ptr(),
        g,
        n,
        rows,
        p,
        torch.get_num_threads(),
    )
    if failed:
        return _torch_csr_mix(x, rowptr, col, val, rows)
    return y


@csr_mix.register_fake
def _(x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, rows: int) -> Tensor:
    return x.new_empty(x.shape[0], rows, x.shape[2])


def _torch_shift_mix(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    rows: int,
    row_width: int,
    out_h: int,
    out_w: int,
) -> Tensor:
    """:func:`shift_mix` with torch operations: one dense product per distinct shift."""
    off = shift_row * row_width + shift_col
    width = out_h * row_width
    span = -(-width // 64) * 64  # what the kernel reads: its 64-wide tiles
    if off.numel() and (int(off.min()) < 0 or span + int(off.max()) > x.shape[2]):
        raise ValueError(
            f"shift_mix reads past x: {span} positions + the largest shift > {x.shape[2]}"
        )
    row = torch.repeat_interleave(torch.arange(rows, device=rowptr.device), rowptr.diff())
    y = x.new_zeros(x.shape[0], rows, width)
    for shift in torch.unique(off).tolist():
        pick = off == shift
        dense = val.new_zeros(rows, x.shape[1]).index_put(
            (row[pick], col[pick]), val[pick], accumulate=True
        )
        y = y + torch.matmul(dense.to(x.dtype), x[:, :, shift : shift + width])
    y = y.view(x.shape[0], rows, out_h, row_width)[..., :out_w]
    return y.reshape(x.shape[0], rows, out_h * out_w)


@torch.library.custom_op("graphwire::shift_mix", mutates_args=())
def shift_mix(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    rows: int,
    row_width: int,
    out_h: int,
    out_w: int,
) -> Tensor:
    """A sparse convolution's product: ``y[g, v, p] = sum of val[e] * x[g, col[e], p + off[e]]``.

    ``x`` holds images flattened with ``row_width`` columns; the shift of nonzero ``e``
    of row ``v`` is ``off[e] = shift_row[e] * row_width + shift_col[e]``. The output
    keeps the positions ``p = h * row_width + w`` with ``h < out_h`` and ``w < out_w``,
    stored as ``h * out_w + w``.

    Args:
        x: Dense ``[G, n, P_in]``, with ``P_in >= 64 * ceil(out_h * row_width / 64) +
            max(off)``.
        rowptr: int64 ``[rows + 1]`` CSR row pointers.
        col: int64 ``[nnz]`` input row of each nonzero.
        shift_row: int64 ``[nnz]`` shift of each nonzero in image rows.
        shift_col: int64 ``[nnz]`` shift of each nonzero in image columns.
        val: ``[nnz]`` values, dtype of ``x``.
        rows: Output rows.
        row_width: Columns of the flattened images.
        out_h: Output image rows.
        out_w: Output image columns kept (at most ``row_width``).

    Returns:
        ``[G, rows, out_h * out_w]``.

    Raises:
        ValueError: if a shift reads past the end of ``x``'s rows.
    """
    lib = load() if x.device.type == "cpu" else None
    kernels = {torch.float32: "gw_shift_mix_f32", torch.float64: "gw_shift_mix_f64"}
    args = (rows, row_width, out_h, out_w)
    if lib is None or x.dtype not in kernels or val.dtype != x.dtype:
        return _torch_shift_mix(x, rowptr, col, shift_row, shift_col, val, *args)
    x, rowptr, col, shift_row, shift_col, val = (
        t.contiguous() for t in (x, rowptr, col, shift_row, shift_col, val)
    )
    g, n, p_in = x.shape
    span = -(-out_h * row_width // 64) * 64  # the kernel's 64-wide tiles
    y = x.new_empty(g, rows, out_h * out_w)
    failed = getattr(lib, kernels[x.dtype])(
        x.data_ptr(),
        y.data_ptr(),
        rowptr.data_ptr(),
        col.data_ptr(),
        shift_row.data_ptr(),
        shift_col.data_ptr(),
        val.data_ptr(),
        g,
        n,
        rows,
        p_in,
        span,
        row_width,
        out_h,
        out_w,
        torch.get_num_threads(),
    )
    if failed == 2:
        raise ValueError(f"shift_mix reads past x: {span} positions + the largest shift > {p_in}")
    if failed:
        return _torch_shift_mix(x, rowptr, col, shift_row, shift_col, val, *args)
    return y


@shift_mix.register_fake
def _(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    rows: int,
    row_width: int,
    out_h: int,
    out_w: int,
) -> Tensor:
    return x.new_empty(x.shape[0], rows, out_h * out_w)


def _torch_ell_mix(x: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    """:func:`ell_mix` with torch operations (GPU, other dtypes, or no kernel)."""
    gathered = x[:, idx.long()]  # [B, m, L]
    return (gathered * val.to(x.dtype)).sum(-1)


@torch.library.custom_op("graphwire::ell_mix", mutates_args=())
def ell_mix(x: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    """``y[b, v] = sum over j of val[v, j] * x[b, idx[v, j]]``: an ELL matrix times ``x.T``.

    Every row of the matrix holds the same number ``L`` of entries (a constant fan-in;
    shorter rows are padded with zero values), so the layout needs no row pointers and
    the rows split evenly across threads. The kernel walks rows of ``x`` in place
    (row-major, no transpose), which makes it the fast sparse product for inputs of few
    rows; :func:`csr_mix` tiles the rows of ``x`` instead and wins on large batches.

    Args:
        x: Dense ``[B, n]``.
        idx: int32 ``[m, L]`` column of each entry.
        val: ``[m, L]`` values, dtype of ``x``.

    Returns:
        ``[B, m]``.
    """
    lib = load() if x.device.type == "cpu" else None
    kernels = {torch.float32: "gw_ell_mix_f32", torch.float64: "gw_ell_mix_f64"}
    if lib is None or x.dtype not in kernels or val.dtype != x.dtype or idx.dtype != torch.int32:
        return _torch_ell_mix(x, idx, val)
    x, idx, val = (t.contiguous() for t in (x, idx, val))
    (b, n), (m, width) = x.shape, idx.shape
    y = x.new_empty(b, m)
    getattr(lib, kernels[x.dtype])(
        x.data_ptr(),
        y.data_ptr(),
        idx.data_ptr(),
        val.data_ptr(),
        b,
        n,
        m,
        width,
        torch.get_num_threads(),
    )
    return y


@ell_mix.register_fake
def _(x: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    return x.new_empty(x.shape[0], idx.shape[0])
