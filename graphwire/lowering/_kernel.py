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
export with :func:`torch.export.export`; eager calls on plain tensors skip the
dispatcher and run the operator's body directly (every kernel here does the same).

:func:`shift_mix` (``graphwire::shift_mix``) is the same walk over nonzeros whose columns
are *shifted* rows of a padded, flattened image: a sparse ``k x k`` convolution without
im2col (:class:`~graphwire.lowering.SparseConv2d`). :func:`sparse_conv2d`
(``graphwire::sparse_conv2d``) is the whole float32 convolution in one call: padding into
per-thread scratch memory, stride phases, the shifted mixes, bias and crop;
:class:`SparseConvCall` calls it directly with arguments prepared per input shape.

:func:`csr_linear` (``graphwire::csr_linear``) is the sparse linear layer on row-major
inputs (blocks of 64 rows transposed in registers, the bias added in the kernel; a
scalar walk per row for at most :data:`FEW_ROWS` rows), and :func:`ell_mix`
(``graphwire::ell_mix``) the one for rows of one length on few input rows.
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import Tensor

from graphwire import _native

__all__ = [
    "available",
    "csr_linear",
    "csr_mix",
    "ell_mix",
    "shift_mix",
    "sparse_conv2d",
    "load",
]

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

/* out[0:64] = sum over e in [e0, e1) of val[e] * base[idx[e] * stride : + 64], with
   AVX-512 where the CPU has it (four 16-wide accumulators per half of the nonzeros:
   eight independent chains), else by `fallback` (row_f32 or shift_f32). */
#ifdef __AVX512F__
static inline void walk512_f32(const float* restrict base, const int64_t* restrict idx,
                               int64_t stride, const float* restrict val, int64_t e0,
                               int64_t e1, float* restrict out) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0,
         b3 = a0;
  int64_t e = e0;
  for (; e + 2 <= e1; e += 2) {
    const __m512 s = _mm512_set1_ps(val[e]), t = _mm512_set1_ps(val[e + 1]);
    const float* x = base + idx[e] * stride;
    const float* z = base + idx[e + 1] * stride;
    a0 = _mm512_fmadd_ps(s, _mm512_loadu_ps(x), a0);
    a1 = _mm512_fmadd_ps(s, _mm512_loadu_ps(x + 16), a1);
    a2 = _mm512_fmadd_ps(s, _mm512_loadu_ps(x + 32), a2);
    a3 = _mm512_fmadd_ps(s, _mm512_loadu_ps(x + 48), a3);
    b0 = _mm512_fmadd_ps(t, _mm512_loadu_ps(z), b0);
    b1 = _mm512_fmadd_ps(t, _mm512_loadu_ps(z + 16), b1);
    b2 = _mm512_fmadd_ps(t, _mm512_loadu_ps(z + 32), b2);
    b3 = _mm512_fmadd_ps(t, _mm512_loadu_ps(z + 48), b3);
  }
  if (e < e1) {
    const __m512 s = _mm512_set1_ps(val[e]);
    const float* x = base + idx[e] * stride;
    a0 = _mm512_fmadd_ps(s, _mm512_loadu_ps(x), a0);
    a1 = _mm512_fmadd_ps(s, _mm512_loadu_ps(x + 16), a1);
    a2 = _mm512_fmadd_ps(s, _mm512_loadu_ps(x + 32), a2);
    a3 = _mm512_fmadd_ps(s, _mm512_loadu_ps(x + 48), a3);
  }
  _mm512_storeu_ps(out, _mm512_add_ps(a0, b0));
  _mm512_storeu_ps(out + 16, _mm512_add_ps(a1, b1));
  _mm512_storeu_ps(out + 32, _mm512_add_ps(a2, b2));
  _mm512_storeu_ps(out + 48, _mm512_add_ps(a3, b3));
}
#define LROW_F32(buf, col, val, e0, e1, out) walk512_f32(buf, col, 64, val, e0, e1, out)
#define SHIFT_F32(xg, src, val, e0, e1, out) walk512_f32(xg, src, 1, val, e0, e1, out)
#else
#define LROW_F32 row_f32
#define SHIFT_F32 shift_f32
#endif

/* The walk over 64-wide tiles of output positions p = h * W + w of the wide output; only
   w < Wo and h < Ho are stored, as y[g, v, h * Wo + w], with bias[v] added (bias may be
   NULL), then res[g, v, h * Wo + w] (a residual of y's shape; may be NULL), then the ReLU
   where relu is set (by STORE, per piece of a row). NAME_tile does one tile (from t0)
   of image g for output channels [v0, v1), reading xg (image g's input from position
   t0) at src[e] per nonzero, for an output of Ho rows in images of Py positions;
   NAME_sources builds src (NULL on failure: *bad is 2 where a shift or a column reads
   past x); NAME_tiles does all tiles of all G images. */
#define DEFINE_SHIFT(NAME, REAL, ROW, STORE)                                               \
  static void NAME##_tile(const REAL* xg, REAL* y, const int64_t* rowptr,                  \
                          const int64_t* src, const REAL* val, const REAL* bias,           \
                          const REAL* res, int relu, int64_t g, int64_t m, int64_t v0,     \
                          int64_t v1, int64_t t0, int64_t W, int64_t Ho, int64_t Wo,       \
                          int64_t Py) {                                                    \
    REAL tmp[64] __attribute__((aligned(64)));                                             \
    /* the tile's pieces of image rows with w < Wo: from tmp[from] to y[to], len long;   \
       found once per tile (divisions), not per output channel */                          \
    int64_t from[66], to[66], len[66], pieces = 0;                                         \
    for (int64_t p = t0; p < t0 + 64 && pieces < 66;) {                                    \
      const int64_t h = p / W, base = h * W; /* p is (h, p - base) */                     \
      const int64_t end = base + W < t0 + 64 ? base + W : t0 + 64;                         \
      if (h >= Ho) break;                                                                  \
      const int64_t stop = base + Wo < end ? base + Wo : end;                              \
      if (stop > p) {                                                                      \
        from[pieces] = p - t0, to[pieces] = h * Wo + (p - base), len[pieces] = stop - p;   \
        ++pieces;                                                                          \
      }                                                                                    \
      p = end;                                                                             \
    }                                                                                      \
    for (int64_t v = v0; v < v1; ++v) {                                                    \
      ROW(xg, src, val, rowptr[v], rowptr[v + 1], tmp);                                    \
      const REAL bv = bias ? bias[v] : 0;                                                  \
      REAL* yv = y + (g * m + v) * Py;                                                     \
      const REAL* rv = res ? res + (g * m + v) * Py : NULL;                                \
      for (int64_t k = 0; k < pieces; ++k)                                                 \
        STORE(yv + to[k], tmp + from[k], rv ? rv + to[k] : NULL, bv, len[k], relu);        \
    }                                                                                      \
  }                                                                                        \
  static int64_t* NAME##_sources(const int64_t* col, const int64_t* srow,                  \
                                 const int64_t* scol, int64_t nnz, int64_t n, int64_t Pin, \
                                 int64_t P, int64_t W, int* bad) {                         \
    int64_t* src = (int64_t*)malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(int64_t));       \
    *bad = src ? 0 : 1;                                                                    \
    if (!src) return NULL;                                                                 \
    for (int64_t e = 0; e < nnz; ++e) {                                                    \
      const int64_t off = srow[e] * W + scol[e];                                           \
      if (off < 0 || off + P > Pin || col[e] < 0 || col[e] >= n) *bad = 2;                 \
      src[e] = col[e] * Pin + off;                                                         \
    }                                                                                      \
    if (*bad) { free(src); return NULL; }                                                  \
    return src;                                                                            \
  }                                                                                        \
  static int NAME##_tiles(const REAL* x, REAL* y, const int64_t* rowptr,                   \
                          const int64_t* col, const int64_t* srow, const int64_t* scol,    \
                          const REAL* val, const REAL* bias, const REAL* res, int relu,    \
                          int64_t G, int64_t n, int64_t m, int64_t Pin, int64_t P,         \
                          int64_t W, int64_t Ho, int64_t Wo, int threads) {                \
    const int64_t tiles = P / 64;                                                          \
    int bad = 0;                                                                           \
    int64_t* src = NAME##_sources(col, srow, scol, rowptr[m], n, Pin, P, W, &bad);         \
    if (!src) return bad;                                                                  \
    int64_t chunks = 1;  /* few tiles (small images): split the output rows too */        \
    if (G * tiles < 4 * (int64_t)threads) {                                                \
      chunks = (4 * (int64_t)threads + G * tiles - 1) / (G * tiles);                       \
      if (chunks > m) chunks = m > 0 ? m : 1;                                              \
    }                                                                                      \
    const int64_t per = (m + chunks - 1) / chunks;                                         \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                     \
    for (int64_t job = 0; job < G * tiles * chunks; ++job) {                               \
      const int64_t gt = job / chunks, c = job % chunks;                                   \
      const int64_t g = gt / tiles, t0 = (gt % tiles) * 64;                                \
      const int64_t v1 = (c + 1) * per < m ? (c + 1) * per : m;                            \
      NAME##_tile(x + g * n * Pin + t0, y, rowptr, src, val, bias, res, relu, g, m,        \
                  c * per, v1, t0, W, Ho, Wo, Ho * Wo);                                    \
    }                                                                                      \
    free(src);                                                                             \
    return 0;                                                                              \
  }                                                                                        \
  int NAME(const REAL* x, REAL* y, const int64_t* rowptr, const int64_t* col,            \
           const int64_t* srow, const int64_t* scol, const REAL* val, int64_t G,           \
           int64_t n, int64_t m, int64_t Pin, int64_t P, int64_t W, int64_t Ho,            \
           int64_t Wo, int threads) {                                                      \
    return NAME##_tiles(x, y, rowptr, col, srow, scol, val, NULL, NULL, 0, G, n, m, Pin,   \
                        P, W, Ho, Wo, threads);                                            \
  }

/* o[0:L] = relu?((t[0:L] + bv) + r[0:L]): one piece of an output row (r may be NULL) */
#define DEFINE_STORE(NAME, REAL)                                                           \
  static inline void NAME(REAL* restrict o, const REAL* restrict t, const REAL* restrict r, \
                          REAL bv, int64_t L, int relu) {                                  \
    if (r) { /* (conv + bias) + residual, in torch's order, then the ReLU */             \
      if (relu)                                                                            \
        for (int64_t q = 0; q < L; ++q) {                                                  \
          const REAL s = (t[q] + bv) + r[q];                                               \
          o[q] = s < 0 ? 0 : s;                                                            \
        }                                                                                  \
      else                                                                                 \
        for (int64_t q = 0; q < L; ++q) o[q] = (t[q] + bv) + r[q];                         \
    } else if (relu) {                                                                     \
      for (int64_t q = 0; q < L; ++q) {                                                    \
        const REAL s = t[q] + bv;                                                          \
        o[q] = s < 0 ? 0 : s;                                                              \
      }                                                                                    \
    } else {                                                                               \
      for (int64_t q = 0; q < L; ++q) o[q] = t[q] + bv;                                    \
    }                                                                                      \
  }

DEFINE_STORE(store_f64, double)
#ifdef __AVX512F__
/* the same with 16-wide masked loads and stores (the pieces are short and unaligned);
   max(0, s) keeps a NaN s, as s < 0 ? 0 : s does */
static inline void store_f32(float* restrict o, const float* restrict t,
                             const float* restrict r, float bv, int64_t L, int relu) {
  const __m512 b = _mm512_set1_ps(bv), zero = _mm512_setzero_ps();
  for (int64_t q = 0; q < L; q += 16) {
    const __mmask16 k = L - q >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (L - q)) - 1);
    __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, t + q), b);
    if (r) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, r + q));
    if (relu) v = _mm512_max_ps(zero, v);
    _mm512_mask_storeu_ps(o + q, k, v);
  }
}
#else
DEFINE_STORE(store_f32, float)
#endif

DEFINE_SHIFT(gw_shift_mix_f32, float, SHIFT_F32, store_f32)
DEFINE_SHIFT(gw_shift_mix_f64, double, shift_f64, store_f64)

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

/* A sparse linear layer on row-major inputs: y[r, v] = bias[v] + sum over nonzeros (v, u)
   of val * x[r, u] for x [R, n] and y [R, m]. Blocks of BLOCK rows of x are transposed
   into a thread's buffer (buf[u * BLOCK + r], 8 x 8 register transposes), walked by the
   same row kernel as csr_mix (each nonzero: one broadcast, a BLOCK-wide multiply-add),
   and the block's outputs are transposed back into y with the bias added: no
   transposed copies of x or y in memory, every access contiguous. */
#define BLOCK 64

/* Scratch memory per thread and use, grown and kept across calls (fresh pages cost
   more than the work here): slot 0 for csr_linear's blocks, 1 for sparse_conv2d's input */
static float* gw_scratch(int slot, size_t bytes) {
  static __thread float* mem[2] = {NULL, NULL};
  static __thread size_t cap[2] = {0, 0};
  if (bytes > cap[slot]) {
    free(mem[slot]);
    cap[slot] = bytes + bytes / 2;
    mem[slot] = (float*)aligned_alloc(64, (cap[slot] + 63) / 64 * 64);
    if (!mem[slot]) cap[slot] = 0;
  }
  return mem[slot];
}

#ifdef __AVX2__
static inline void tr8(__m256* r) {  /* r[i][j] -> r[j][i] */
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#endif

/* buf[u * BLOCK + r] = x[r * n + u] for r < rows (<= BLOCK); zeros for rows <= r < BLOCK */
static void pack_f32(const float* restrict x, int64_t n, int64_t rows, float* restrict buf) {
  int64_t r = 0;
#ifdef __AVX2__
  for (; r + 8 <= rows; r += 8) {
    int64_t u = 0;
    for (; u + 8 <= n; u += 8) {
      __m256 a[8];
      for (int k = 0; k < 8; ++k) a[k] = _mm256_loadu_ps(x + (r + k) * n + u);
      tr8(a);
      for (int k = 0; k < 8; ++k) _mm256_store_ps(buf + (u + k) * BLOCK + r, a[k]);
    }
    for (; u < n; ++u)
      for (int k = 0; k < 8; ++k) buf[u * BLOCK + r + k] = x[(r + k) * n + u];
  }
#endif
  for (; r < rows; ++r)
    for (int64_t u = 0; u < n; ++u) buf[u * BLOCK + r] = x[r * n + u];
  if (rows < BLOCK)
    for (int64_t u = 0; u < n; ++u) memset(buf + u * BLOCK + rows, 0, (BLOCK - rows) * 4);
}

/* y[r * m + v] = out[(v - v0) * BLOCK + r] + bias[v] for r < rows and v0 <= v < v1.
   Eight rows of y at a time, left to right: rows of y lie a power of two apart for
   common widths, and walking down a column of them would evict its own cache lines. */
static void unpack_f32(const float* restrict out, const float* restrict bias, int64_t m,
                       int64_t v0, int64_t v1, int64_t rows, float* restrict y) {
  int64_t r = 0;
#ifdef __AVX2__
  for (; r + 8 <= rows; r += 8) {
    int64_t v = v0;
    for (; v + 8 <= v1; v += 8) {
      const __m256 b = bias ? _mm256_loadu_ps(bias + v) : _mm256_setzero_ps();
      __m256 a[8];
      for (int k = 0; k < 8; ++k) a[k] = _mm256_load_ps(out + (v - v0 + k) * BLOCK + r);
      tr8(a);
      for (int k = 0; k < 8; ++k) _mm256_storeu_ps(y + (r + k) * m + v, _mm256_add_ps(a[k], b));
    }
    for (; v < v1; ++v)
      for (int k = 0; k < 8; ++k)
        y[(r + k) * m + v] = out[(v - v0) * BLOCK + r + k] + (bias ? bias[v] : 0.0f);
  }
#endif
  for (; r < rows; ++r)
    for (int64_t v = v0; v < v1; ++v)
      y[r * m + v] = out[(v - v0) * BLOCK + r] + (bias ? bias[v] : 0.0f);
}

/* Few rows: one scalar walk of the nonzeros per row of x (a block would be mostly
   padding). Four accumulators; x's rows stay in cache across the outputs. */
__attribute__((optimize("no-tree-vectorize")))
static void few_rows_f32(const float* restrict x, float* restrict y,
                         const int64_t* restrict rowptr, const int64_t* restrict col,
                         const float* restrict val, const float* restrict bias, int64_t R,
                         int64_t n, int64_t m, int threads) {
  _Pragma("omp parallel for num_threads(threads) schedule(static)")
  for (int64_t v = 0; v < m; ++v) {
    const int64_t e0 = rowptr[v], e1 = rowptr[v + 1];
    for (int64_t r = 0; r < R; ++r) {
      const float* xr = x + r * n;
      float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      int64_t e = e0;
      for (; e + 4 <= e1; e += 4) {
        a0 += val[e] * xr[col[e]];
        a1 += val[e + 1] * xr[col[e + 1]];
        a2 += val[e + 2] * xr[col[e + 2]];
        a3 += val[e + 3] * xr[col[e + 3]];
      }
      for (; e < e1; ++e) a0 += val[e] * xr[col[e]];
      y[r * m + v] = (a0 + a1) + (a2 + a3) + (bias ? bias[v] : 0.0f);
    }
  }
}

int gw_csr_linear_f32(const float* x, float* y, const int64_t* rowptr, const int64_t* col,
                      const float* val, const float* bias, int64_t R, int64_t n, int64_t m,
                      int threads, int64_t few) {
  if (R <= few) {  /* one thread where the work is smaller than waking a second */
    few_rows_f32(x, y, rowptr, col, val, bias, R, n, m, rowptr[m] * R < 65536 ? 1 : threads);
    return 0;
  }
  const int64_t blocks = (R + BLOCK - 1) / BLOCK;
  int64_t chunks = 1;  /* few blocks: split the outputs too (each job packs its block) */
  if (blocks < (int64_t)threads) {
    chunks = ((int64_t)threads + blocks - 1) / blocks;
    const int64_t most = (m + 7) / 8;
    if (chunks > most) chunks = most > 0 ? most : 1;
  }
  const int64_t per = ((m + chunks - 1) / chunks + 7) / 8 * 8;  /* multiples of 8 outputs */
  int failed = 0;
  _Pragma("omp parallel for num_threads(threads) schedule(static) reduction(|: failed)")
  for (int64_t job = 0; job < blocks * chunks; ++job) {
    const int64_t b = job / chunks, c = job % chunks;
    const int64_t r0 = b * BLOCK, rows = R - r0 < BLOCK ? R - r0 : BLOCK;
    const int64_t v0 = c * per < m ? c * per : m, v1 = v0 + per < m ? v0 + per : m;
    if (v0 >= v1) continue;
    float* buf = gw_scratch(0, (size_t)(n + (v1 - v0)) * BLOCK * sizeof(float));
    if (!buf) { failed = 1; continue; }
    float* out = buf + n * BLOCK;  /* out[(v - v0) * BLOCK + r] */
    pack_f32(x + r0 * n, n, rows, buf);
    for (int64_t v = v0; v < v1; ++v)
      LROW_F32(buf, col, val, rowptr[v], rowptr[v + 1], out + (v - v0) * BLOCK);
    unpack_f32(out, bias, m, v0, v1, rows, y + r0 * m);
  }
  return failed;
}

/* A sparse k x k convolution in one call (float32): the input's padded phase images are
   built in scratch memory, then walked by the shifted mixes, with the bias added and the
   output cropped as it is stored. x [G, C, H, W] (already padded by its mode where that
   is not zeros: then top = left = 0); the phase image (a, b) of channel c is channel
   (c * sh + a) * sw + b of xq [G, C * sh * sw, rows_q * cols_q], holding
   x[g, c, i * sh + a - top, j * sw + b - left] at (i, j), zero outside x. */
/* One phase image (a, b) of one channel xc [H, W] into plane [rows_q, cols_q]. Short
   rows: inline loops, not memset / memcpy calls. */
__attribute__((optimize("no-tree-loop-distribute-patterns")))
static void phase_plane_f32(const float* restrict xc, float* restrict plane, int64_t a,
                            int64_t b, int64_t H, int64_t W, int64_t top, int64_t left,
                            int64_t sh, int64_t sw, int64_t rows_q, int64_t cols_q) {
  int64_t j0 = 0, j1 = 0;  /* stride 1: columns [j0, j1) of a row hold x */
  if (sw == 1) {
    j0 = left < cols_q ? left : cols_q;
    j1 = left + W < cols_q ? left + W : cols_q;
  }
  for (int64_t i = 0; i < rows_q; ++i) {
    float* o = plane + i * cols_q;
    const int64_t r = i * sh + a - top;
    if (r < 0 || r >= H) {
      for (int64_t j = 0; j < cols_q; ++j) o[j] = 0.0f;
      continue;
    }
    const float* xr = xc + r * W;
#ifdef __AVX512F__
    if (sw == 1) {  /* 16 columns at a time: x where j0 <= j < j1, zeros around it */
      for (int64_t j = 0; j < cols_q; j += 16) {
        const int64_t lo = j0 - j <= 0 ? 0 : j0 - j < 16 ? j0 - j : 16;
        const int64_t hi = j1 - j < 16 ? j1 - j : 16;
        const uint32_t inside = hi > lo ? ((1u << hi) - 1) & ~((1u << lo) - 1) : 0;
        const __mmask16 all = cols_q - j >= 16 ? 0xFFFF : (__mmask16)((1u << (cols_q - j)) - 1);
        /* masked-off lanes are not read: xr - left + j may point before the row */
        _mm512_mask_storeu_ps(o + j, all, _mm512_maskz_loadu_ps((__mmask16)inside, xr - left + j));
      }
      continue;
    }
#endif
    if (sw == 1) {
      for (int64_t j = 0; j < j0; ++j) o[j] = 0.0f;
      for (int64_t j = j0; j < j1; ++j) o[j] = xr[j - left];
      for (int64_t j = j1; j < cols_q; ++j) o[j] = 0.0f;
    } else {
      for (int64_t j = 0; j < cols_q; ++j) {
        const int64_t c = j * sw + b - left;
        o[j] = c >= 0 && c < W ? xr[c] : 0.0f;
      }
    }
  }
}

/* Phase plane q = (c * sh + a) * sw + b of the images from x (channel c of [C, H, W]
   planes from x on): what phase_plane_f32 builds for it */
static inline void phase_f32(const float* x, float* plane, int64_t q, int64_t H, int64_t W,
                             int64_t top, int64_t left, int64_t sh, int64_t sw,
                             int64_t rows_q, int64_t cols_q) {
  const int64_t b = q % sw, a = (q / sw) % sh, c = q / (sh * sw);
  phase_plane_f32(x + c * H * W, plane, a, b, H, W, top, left, sh, sw, rows_q, cols_q);
}

/* sz: G, C, H, W, top, left, sh, sw, rows_q, cols_q, m, Ho, Wo (one pointer, not 13
   arguments: each costs the Python caller a conversion) */
int gw_sparse_conv_f32(const float* x, float* y, const int64_t* rowptr, const int64_t* col,
                       const int64_t* srow, const int64_t* scol, const float* val,
                       const float* bias, const float* res, const int64_t* sz, int relu,
                       int threads) {
  const int64_t G = sz[0], C = sz[1], H = sz[2], W = sz[3], top = sz[4], left = sz[5];
  const int64_t sh = sz[6], sw = sz[7], rows_q = sz[8], cols_q = sz[9], m = sz[10];
  const int64_t Ho = sz[11], Wo = sz[12];
  const int64_t n = C * sh * sw, Pin = rows_q * cols_q, P = (Ho * cols_q + 63) / 64 * 64;
  /* Stripes: each job builds the padded phases of a band of hb output rows of one image
     in its thread's scratch memory and walks the band's tiles, so what a thread walks
     is what it built, in its cache (building a whole batch first spills L2 at batch 16,
     and splitting one image's tiles between threads reads the other core's lines). A
     single image is cut into one band per thread; bands shorter than a tile are not. */
  const int64_t S = G % threads == 0 || G >= 4 * (int64_t)threads ? 1 : threads;
  const int64_t hb = (Ho + S - 1) / S;
  if (hb * cols_q >= 64 || S == 1) {
    const int64_t nnz = rowptr[m], Py = Ho * Wo;
    int64_t reach = 0;  /* the largest shift, in positions */
    for (int64_t e = 0; e < nnz; ++e) {
      const int64_t off = srow[e] * cols_q + scol[e];
      if (off > reach) reach = off;
    }
    if (P + reach > Pin) return 2;  /* the geometry given would read past the phases */
    const int64_t Pb = (hb * cols_q + 63) / 64 * 64;  /* a band's tiles */
    const int64_t rows_b = (Pb + reach + cols_q - 1) / cols_q, Pin_b = rows_b * cols_q;
    int bad = 0, failed = 0;
    int64_t* src = gw_shift_mix_f32_sources(col, srow, scol, nnz, n, Pin_b, Pb, cols_q, &bad);
    if (!src) return bad;
    _Pragma("omp parallel for num_threads(threads) schedule(static)")
    for (int64_t job = 0; job < G * S; ++job) {
      const int64_t g = job / S, h0 = (job % S) * hb;
      const int64_t rows = Ho - h0 < hb ? Ho - h0 : hb;
      if (rows <= 0) continue;
      float* xq = gw_scratch(1, (size_t)(n * Pin_b) * sizeof(float));
      if (!xq) { failed = 1; continue; }
      for (int64_t q = 0; q < n; ++q)  /* phase rows from h0: input rows from h0 * sh */
        phase_f32(x + g * C * H * W, xq + q * Pin_b, q, H, W, top - h0 * sh, left, sh, sw,
                  rows_b, cols_q);
      for (int64_t t0 = 0; t0 < rows * cols_q; t0 += 64)
        gw_shift_mix_f32_tile(xq + t0, y + h0 * Wo, rowptr, src, val, bias,
                              res ? res + h0 * Wo : NULL, relu, g, m, 0, m, t0, cols_q, rows,
                              Wo, Py);
    }
    free(src);
    return failed;
  }
  float* xq = gw_scratch(1, (size_t)(G * n * Pin) * sizeof(float));
  if (!xq) return 1;
  const int64_t planes = G * n;
  _Pragma("omp parallel for num_threads(threads) schedule(static)")
  for (int64_t q = 0; q < planes; ++q)  /* the batch's planes as one image's: g * C + c */
    phase_f32(x, xq + q * Pin, q, H, W, top, left, sh, sw, rows_q, cols_q);
  return gw_shift_mix_f32_tiles(xq, y, rowptr, col, srow, scol, val, bias, res, relu, G, n,
                                m, Pin, P, cols_q, Ho, Wo, threads);
}
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
    lib.gw_csr_linear_f32.argtypes = (
        [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 3 + [ctypes.c_int, ctypes.c_int64]
    )
    lib.gw_csr_linear_f32.restype = ctypes.c_int
    lib.gw_sparse_conv_f32.argtypes = [ctypes.c_void_p] * 10 + [ctypes.c_int, ctypes.c_int]
    lib.gw_sparse_conv_f32.restype = ctypes.c_int
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


def _eager(x: Tensor) -> bool:
    """Whether a kernel call on ``x`` may skip torch's dispatcher (about 5 us a call).

    Eager calls on plain tensors without autograd run the operator's body directly;
    ``torch.export`` and ``torch.compile`` (fake or functional tensors, or dynamo),
    calls that would record a gradient and calls under the torch profiler (whose
    tables then name the kernels) go through the registered custom operator.
    """
    return (
        type(x) is Tensor
        and not (x.requires_grad and torch.is_grad_enabled())
        and not torch.compiler.is_compiling()
        and not torch.autograd.profiler._is_profiler_enabled
    )


def _torch_csr_mix(x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, rows: int) -> Tensor:
    """The same product with torch operations (GPU, other dtypes, or no kernel)."""
    row = torch.repeat_interleave(torch.arange(rows, device=rowptr.device), rowptr.diff())
    dense = val.new_zeros(rows, x.shape[1]).index_put((row, col), val)  # [rows, n]
    return torch.matmul(dense.to(x.dtype), x)


def _csr_mix(x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, rows: int) -> Tensor:
    """The body of :func:`csr_mix`."""
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


_csr_mix_op = torch.library.custom_op("graphwire::csr_mix", _csr_mix, mutates_args=())


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
    return (_csr_mix if _eager(x) else _csr_mix_op)(x, rowptr, col, val, rows)


@_csr_mix_op.register_fake
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


def _shift_mix(
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
    """The body of :func:`shift_mix`."""
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


_shift_mix_op = torch.library.custom_op("graphwire::shift_mix", _shift_mix, mutates_args=())


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
    return (_shift_mix if _eager(x) else _shift_mix_op)(
        x, rowptr, col, shift_row, shift_col, val, rows, row_width, out_h, out_w
    )


@_shift_mix_op.register_fake
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


def _ell_mix(x: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    """The body of :func:`ell_mix`."""
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


_ell_mix_op = torch.library.custom_op("graphwire::ell_mix", _ell_mix, mutates_args=())


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
    return (_ell_mix if _eager(x) else _ell_mix_op)(x, idx, val)


@_ell_mix_op.register_fake
def _(x: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    return x.new_empty(x.shape[0], idx.shape[0])


#: Inputs of at most this many rows run :func:`csr_linear`'s scalar walk per row, others
#: its blocks of 64 rows.
FEW_ROWS = 4


def _torch_csr_linear(
    x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, bias: Tensor | None, rows: int
) -> Tensor:
    """:func:`csr_linear` by the CSR kernel on transposed copies, or torch operations."""
    y = csr_mix(x.t().unsqueeze(0), rowptr, col, val, rows)[0].t()
    return y if bias is None else y + bias


def _csr_linear(
    x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, bias: Tensor | None, rows: int
) -> Tensor:
    """The body of :func:`csr_linear`."""
    lib = load() if x.device.type == "cpu" else None
    usable = x.dtype == val.dtype == torch.float32 and (bias is None or bias.dtype == x.dtype)
    if lib is None or not usable:
        return _torch_csr_linear(x, rowptr, col, val, bias, rows)
    x, rowptr, col, val = (t.contiguous() for t in (x, rowptr, col, val))
    bias = None if bias is None else bias.contiguous()
    r, n = x.shape
    y = x.new_empty(r, rows)
    failed = lib.gw_csr_linear_f32(
        x.data_ptr(),
        y.data_ptr(),
        rowptr.data_ptr(),
        col.data_ptr(),
        val.data_ptr(),
        None if bias is None else bias.data_ptr(),
        r,
        n,
        rows,
        torch.get_num_threads(),
        FEW_ROWS,
    )
    if failed:
        return _torch_csr_linear(x, rowptr, col, val, bias, rows)
    return y


_csr_linear_op = torch.library.custom_op("graphwire::csr_linear", _csr_linear, mutates_args=())


def csr_linear(
    x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, bias: Tensor | None, rows: int
) -> Tensor:
    """A sparse linear layer on row-major inputs: ``y = x @ a.T + bias`` for CSR ``a``.

    ``y[r, v] = bias[v] + sum over nonzeros (v, u) of a[v, u] * x[r, u]``. The kernel
    transposes blocks of 64 rows of ``x`` into a per-thread buffer in registers (8 x 8
    transposes), walks the nonzeros once per block as :func:`csr_mix` does, and writes
    the block's outputs back transposed with the bias added, so neither ``x`` nor ``y``
    is copied transposed in memory. float32 on a CPU; other dtypes and devices run
    :func:`csr_mix` on transposed copies.

    Args:
        x: Dense ``[R, n]``.
        rowptr: int64 ``[rows + 1]`` CSR row pointers.
        col: int64 ``[nnz]`` column of each nonzero.
        val: ``[nnz]`` values, dtype of ``x``.
        bias: ``[rows]`` or ``None``.
        rows: Number of rows of ``a`` (output features).

    Returns:
        ``[R, rows]``.
    """
    return (_csr_linear if _eager(x) else _csr_linear_op)(x, rowptr, col, val, bias, rows)


@_csr_linear_op.register_fake
def _(
    x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, bias: Tensor | None, rows: int
) -> Tensor:
    return x.new_empty(x.shape[0], rows)


def _torch_sparse_conv2d(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    bias: Tensor | None,
    rows: int,
    geometry: list[int],
    residual: Tensor | None = None,
    relu: bool = False,
) -> Tensor:
    """:func:`sparse_conv2d` by torch's padding and :func:`shift_mix` (other dtypes, GPU)."""
    top, left, sh, sw, rows_q, cols_q, out_h, out_w = geometry
    batch, channels, height, width = x.shape
    pads = (left, cols_q * sw - width - left, top, rows_q * sh - height - top)
    x = F.pad(x, pads)  # [B, C, rows_q * sh, cols_q * sw]
    if (sh, sw) != (1, 1):  # the phase images: [B, C, sh, sw, rows_q, cols_q]
        x = x.view(batch, channels, rows_q, sh, cols_q, sw).permute(0, 1, 3, 5, 2, 4)
    x = x.reshape(batch, channels * sh * sw, rows_q * cols_q)
    y = shift_mix(x, rowptr, col, shift_row, shift_col, val, rows, cols_q, out_h, out_w)
    y = y.view(batch, rows, out_h, out_w)
    return _epilogue(y if bias is None else y + bias.view(1, -1, 1, 1), residual, relu)


def _epilogue(y: Tensor, residual: Tensor | None, relu: bool) -> Tensor:
    """``relu(y + residual)`` by torch, each part where asked, for a fresh output ``y``.

    In place on ``y`` where the residual has its shape and dtype (no new tensor; autograd
    allows it, as ``y`` is no leaf); else as ``+`` broadcasts and promotes.
    """
    if residual is not None:
        same = residual.shape == y.shape and residual.dtype == y.dtype
        y = y.add_(residual) if same else y + residual
    return y.relu_() if relu else y


def _conv_sizes(
    shape: torch.Size, rows: int, geometry: list[int]
) -> tuple[tuple[int, ...], ctypes.Array]:
    """The output shape and the integer arguments of ``gw_sparse_conv_f32`` (an array)."""
    batch, channels, height, width = shape
    top, left, sh, sw, rows_q, cols_q, out_h, out_w = geometry
    sizes = (batch, channels, height, width, top, left, sh, sw, rows_q, cols_q)
    return (batch, rows, out_h, out_w), (ctypes.c_int64 * 13)(*sizes, rows, out_h, out_w)


def _sparse_conv2d(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    bias: Tensor | None,
    rows: int,
    geometry: list[int],
    residual: Tensor | None = None,
    relu: bool = False,
) -> Tensor:
    """The body of :func:`sparse_conv2d`."""
    lib = load() if x.device.type == "cpu" else None
    usable = x.dtype == val.dtype == torch.float32 and (bias is None or bias.dtype == x.dtype)
    args = (x, rowptr, col, shift_row, shift_col, val, bias, rows, geometry)
    if lib is None or not usable:
        return _torch_sparse_conv2d(*args, residual, relu)
    x = x.contiguous()
    out_shape, sizes = _conv_sizes(x.shape, rows, geometry)
    fused = residual is None or _fusable(residual, out_shape)
    y = x.new_empty(out_shape)
    buffers = (rowptr, col, shift_row, shift_col, val, bias, residual if fused else None)
    ptrs = (None if b is None else b.data_ptr() for b in buffers)
    failed = lib.gw_sparse_conv_f32(
        x.data_ptr(), y.data_ptr(), *ptrs, sizes, int(relu and fused), torch.get_num_threads()
    )
    if failed == 2:
        raise ValueError("sparse_conv2d reads past its padded input: the geometry is wrong")
    if failed:
        return _torch_sparse_conv2d(*args, residual, relu)
    return y if fused else _epilogue(y, residual, relu)


def _fusable(residual: Tensor, shape: tuple[int, ...]) -> bool:
    """Whether the kernel can add ``residual`` as it stores: float32, CPU, ``shape``, dense."""
    return (
        residual.dtype == torch.float32
        and residual.device.type == "cpu"
        and residual.shape == shape
        and residual.is_contiguous()
        and not residual.requires_grad
    )


_sparse_conv2d_op = torch.library.custom_op(
    "graphwire::sparse_conv2d", _sparse_conv2d, mutates_args=()
)


def sparse_conv2d(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    bias: Tensor | None,
    rows: int,
    geometry: list[int],
    residual: Tensor | None = None,
    relu: bool = False,
) -> Tensor:
    """A sparse ``k x k`` convolution in one call: padding, phases, mixes, bias, crop, epilogue.

    ``x`` is padded with zeros by ``top`` rows and ``left`` columns (and to the phase
    grid), split into its ``sh x sw`` stride phases of ``rows_q x cols_q`` each, and
    mixed by :func:`shift_mix` (nonzero ``e`` reads phase channel ``col[e]`` shifted by
    ``shift_row[e] * cols_q + shift_col[e]``); the bias is added and only ``out_h x
    out_w`` outputs are stored. The float32 CPU kernel builds the padded phases in
    per-thread scratch memory (no padded copy is allocated) and adds the bias as it
    stores; other dtypes and devices run torch's padding and :func:`shift_mix`. A
    ``residual`` is added after the bias and ``relu`` applied last, as the kernel stores
    where it can (a float32 residual of the output's shape, contiguous) and by torch
    otherwise (broadcasting as ``+`` does): ``relu(conv(x) + bias + residual)``, in
    torch's order of additions, so the result equals the separate operations.

    Args:
        x: ``[B, C, H, W]``, padded already by the layer's mode where it is not zeros.
        rowptr: int64 ``[rows + 1]`` CSR row pointers over output channels.
        col: int64 ``[nnz]`` phase channel ``(c * sh + a) * sw + b`` of each nonzero.
        shift_row: int64 ``[nnz]`` shift in phase rows.
        shift_col: int64 ``[nnz]`` shift in phase columns.
        val: ``[nnz]`` values, dtype of ``x``.
        bias: ``[rows]`` or ``None``.
        rows: Output channels.
        geometry: ``[top, left, sh, sw, rows_q, cols_q, out_h, out_w]``.
        residual: Added to the output (after the bias), or ``None``.
        relu: Apply the ReLU last.

    Returns:
        ``[B, rows, out_h, out_w]`` (broadcast with ``residual``'s shape).

    Raises:
        ValueError: if a shift reads past the padded phase images.
    """
    op = _sparse_conv2d if _eager(x) else _sparse_conv2d_op
    return op(x, rowptr, col, shift_row, shift_col, val, bias, rows, geometry, residual, relu)


@_sparse_conv2d_op.register_fake
def _(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    bias: Tensor | None,
    rows: int,
    geometry: list[int],
    residual: Tensor | None = None,
    relu: bool = False,
) -> Tensor:
    return x.new_empty(
        torch.broadcast_shapes(
            (x.shape[0], rows, geometry[6], geometry[7]), () if residual is None else residual.shape
        )
    )


class SparseConvCall:
    """One layer's direct calls of the float32 CPU kernel of :func:`sparse_conv2d`.

    Eager float32 calls on contiguous CPU inputs skip the operator's checks and argument
    building (about 6 us a call, a fifth of a small layer's time): the kernel's integer
    arguments are prepared once per input shape and buffer addresses. Everything else
    (other dtypes and devices, tracing, autograd, a kernel that refused its arguments)
    returns ``None`` and the caller runs :func:`sparse_conv2d`.
    """

    _MAX_PLANS = 16  # input shapes kept per layer

    def __init__(self) -> None:
        self._plans: dict[tuple, tuple] = {}

    def __getstate__(self) -> dict:
        """Nothing to copy: a copy prepares its own plans on its first call.

        The plans hold ctypes functions and arrays, which do not pickle or deep-copy, and
        name buffer addresses a copy does not share.
        """
        return {}

    def __setstate__(self, state: dict) -> None:
        self._plans = {}

    def __call__(
        self,
        x: Tensor,
        buffers: tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None],
        rows: int,
        geometry: list[int],
        residual: Tensor | None = None,
        relu: bool = False,
    ) -> Tensor | None:
        """``sparse_conv2d(x, *buffers, rows, geometry, residual, relu)``, or ``None``.

        ``buffers`` are ``(rowptr, col, shift_row, shift_col, val, bias)``. ``None`` where
        the direct call does not apply (the caller runs :func:`sparse_conv2d`).
        """
        val, bias = buffers[4], buffers[5]
        if not (
            x.dtype == val.dtype == torch.float32
            and x.is_cpu  # an attribute: x.device builds an object (0.3 us)
            and (bias is None or bias.dtype == torch.float32)
            and x.is_contiguous()
            and _eager(x)
        ):
            return None
        ptrs = tuple([None if b is None else b.data_ptr() for b in buffers])  # no generator
        key = (x.shape, ptrs)
        plan = self._plans.get(key)
        if plan is None:
            lib = load()
            if lib is None:
                return None
            plan = (lib.gw_sparse_conv_f32, *_conv_sizes(x.shape, rows, geometry))
            if len(self._plans) >= self._MAX_PLANS:
                self._plans.clear()
            self._plans[key] = plan
        kernel, out_shape, sizes = plan
        if residual is not None and not _fusable(residual, out_shape):
            return None
        res = None if residual is None else residual.data_ptr()
        y = torch.empty(out_shape, dtype=torch.float32)  # not the default dtype: the kernel's
        threads = torch.get_num_threads()
        failed = kernel(x.data_ptr(), y.data_ptr(), *ptrs, res, sizes, int(relu), threads)
        return None if failed else y
