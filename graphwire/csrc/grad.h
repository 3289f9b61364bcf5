/* Dot products of the sampled weight gradients (grad.c, conv.c): static inline, so each
   caller inlines its own copy. gw_dot4_*: s[j] += sum over p < L of a[p] * bj[p] for four
   vectors b0..b3 against one a (a is loaded once for four products); gw_dot_*: one. */
#ifndef GRAPHWIRE_GRAD_H
#define GRAPHWIRE_GRAD_H

#include "graphwire.h"

#if GW_AVX2
static inline float gw_hsum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
#endif

static inline void gw_dot4_f32(const float* restrict a, const float* restrict b0,
                               const float* restrict b1, const float* restrict b2,
                               const float* restrict b3, int64_t L, float* restrict s) {
  int64_t p = 0;
#if GW_AVX2
  __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
  for (; p + 8 <= L; p += 8) {
    const __m256 av = _mm256_loadu_ps(a + p);
    c0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b0 + p), c0);
    c1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b1 + p), c1);
    c2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b2 + p), c2);
    c3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b3 + p), c3);
  }
  s[0] += gw_hsum8(c0), s[1] += gw_hsum8(c1), s[2] += gw_hsum8(c2), s[3] += gw_hsum8(c3);
#endif
  float t0 = 0, t1 = 0, t2 = 0, t3 = 0;
  for (; p < L; ++p) t0 += a[p] * b0[p], t1 += a[p] * b1[p], t2 += a[p] * b2[p], t3 += a[p] * b3[p];
  s[0] += t0, s[1] += t1, s[2] += t2, s[3] += t3;
}

static inline float gw_dot_f32(const float* restrict a, const float* restrict b, int64_t L) {
  int64_t p = 0;
  float s = 0;
#if GW_AVX2
  __m256 c0 = _mm256_setzero_ps(), c1 = c0;
  for (; p + 16 <= L; p += 16) {
    c0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), _mm256_loadu_ps(b + p), c0);
    c1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 8), _mm256_loadu_ps(b + p + 8), c1);
  }
  s = gw_hsum8(_mm256_add_ps(c0, c1));
#endif
  for (; p < L; ++p) s += a[p] * b[p];
  return s;
}

static inline void gw_dot4_f64(const double* restrict a, const double* restrict b0,
                               const double* restrict b1, const double* restrict b2,
                               const double* restrict b3, int64_t L, double* restrict s) {
  double t0 = 0, t1 = 0, t2 = 0, t3 = 0;
  for (int64_t p = 0; p < L; ++p)
    t0 += a[p] * b0[p], t1 += a[p] * b1[p], t2 += a[p] * b2[p], t3 += a[p] * b3[p];
  s[0] += t0, s[1] += t1, s[2] += t2, s[3] += t3;
}

static inline double gw_dot_f64(const double* restrict a, const double* restrict b, int64_t L) {
  double s = 0;
  for (int64_t p = 0; p < L; ++p) s += a[p] * b[p];
  return s;
}

/* acc[8 * j : 8 * j + 8] += the lane sums of a[p] * bj[p] for four vectors b0..b3 (the
   same products as gw_dot4_f32, left in 8 lanes: a caller summing many short products
   into one entry adds lanes once at the end instead of once per product). Without AVX2
   every product goes to lane 0. */
static inline void gw_dot4_lanes_f32(const float* restrict a, const float* restrict b0,
                                     const float* restrict b1, const float* restrict b2,
                                     const float* restrict b3, int64_t L,
                                     float* restrict acc) {
  int64_t p = 0;
#if GW_AVX2
  __m256 c0 = _mm256_loadu_ps(acc), c1 = _mm256_loadu_ps(acc + 8);
  __m256 c2 = _mm256_loadu_ps(acc + 16), c3 = _mm256_loadu_ps(acc + 24);
  for (; p + 8 <= L; p += 8) {
    const __m256 av = _mm256_loadu_ps(a + p);
    c0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b0 + p), c0);
    c1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b1 + p), c1);
    c2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b2 + p), c2);
    c3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b3 + p), c3);
  }
  _mm256_storeu_ps(acc, c0), _mm256_storeu_ps(acc + 8, c1);
  _mm256_storeu_ps(acc + 16, c2), _mm256_storeu_ps(acc + 24, c3);
#endif
  float t0 = 0, t1 = 0, t2 = 0, t3 = 0;
  for (; p < L; ++p) t0 += a[p] * b0[p], t1 += a[p] * b1[p], t2 += a[p] * b2[p], t3 += a[p] * b3[p];
  acc[0] += t0, acc[8] += t1, acc[16] += t2, acc[24] += t3;
}

/* The first row v of a CSR pattern with rowptr[v] >= target (rows when none): the rows
   of a thread whose share of the nonzeros starts at target. */
static inline int64_t gw_rows_from(const int64_t* rowptr, int64_t rows, int64_t target) {
  int64_t lo = 0, hi = rows;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (rowptr[mid] >= target) hi = mid; else lo = mid + 1;
  }
  return lo;
}

#endif
