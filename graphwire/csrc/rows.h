/* The inner walks over the nonzeros of one output row, shared by csr_mix (mix.c),
   shift_mix and sparse_conv2d (conv.c) and csr_linear (linear.c): each sums val[e]
   times a 256-byte tile of its input for e in [e0, e1), in vector registers where the
   variant has AVX2 or AVX-512, else in plain loops. Static inline: every caller gets
   its own copy, inlined into its loop. */
#ifndef GRAPHWIRE_ROWS_H
#define GRAPHWIRE_ROWS_H

#include "graphwire.h"

#define TILE_BYTES 256

/* out[0:T] = sum over e in [e0, e1) of val[e] * buf[col[e] * T : col[e] * T + T] */
static inline void row_f32(const float* restrict buf, const int64_t* restrict col,
                           const float* restrict val, int64_t e0, int64_t e1,
                           float* restrict out) {
#if GW_AVX2
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
#if GW_AVX2
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
/* Shifted mixes (a sparse convolution without im2col): for a padded, flattened input
   x [G, n, Pin] and nonzeros e = (v, u, o), y[g, v, p] = sum of val[e] * x[g, u, p + o]
   for p in [0, P) (P a multiple of 64 elements, Pin >= P + max o), where the shift is
   o = srow[e] * W + scol[e]. Internally src[e] = u * Pin + o. */
static inline void shift_f32(const float* restrict xg, const int64_t* restrict src,
                             const float* restrict val, int64_t e0, int64_t e1,
                             float* restrict out) {
#if GW_AVX2
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
#if GW_AVX2
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
#if GW_AVX512
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

#endif
