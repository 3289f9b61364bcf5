/* csr_linear: a sparse linear layer on row-major float32 inputs. */
#include "graphwire.h"
#include "rows.h"
#include "grad.h"

/* A sparse linear layer on row-major inputs: y[r, v] = bias[v] + sum over nonzeros (v, u)
   of val * x[r, u] for x [R, n] and y [R, m]. Blocks of BLOCK rows of x are transposed
   into a thread's buffer (buf[u * BLOCK + r], 8 x 8 register transposes), walked by the
   same row kernel as csr_mix (each nonzero: one broadcast, a BLOCK-wide multiply-add),
   and the block's outputs are transposed back into y with the bias added: no
   transposed copies of x or y in memory, every access contiguous. */
#define BLOCK 64

#if GW_AVX2
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

/* buf[u * BLOCK + r] = x[r * ld + u] for u < n and r < rows (<= BLOCK); zeros for
   rows <= r < BLOCK */
static void pack_f32(const float* restrict x, int64_t ld, int64_t n, int64_t rows,
                     float* restrict buf) {
  int64_t r = 0;
#if GW_AVX2
  for (; r + 8 <= rows; r += 8) {
    int64_t u = 0;
    for (; u + 8 <= n; u += 8) {
      __m256 a[8];
      for (int k = 0; k < 8; ++k) a[k] = _mm256_loadu_ps(x + (r + k) * ld + u);
      tr8(a);
      for (int k = 0; k < 8; ++k) _mm256_store_ps(buf + (u + k) * BLOCK + r, a[k]);
    }
    for (; u < n; ++u)
      for (int k = 0; k < 8; ++k) buf[u * BLOCK + r + k] = x[(r + k) * ld + u];
  }
#endif
  for (; r < rows; ++r)
    for (int64_t u = 0; u < n; ++u) buf[u * BLOCK + r] = x[r * ld + u];
  if (rows < BLOCK)
    for (int64_t u = 0; u < n; ++u) memset(buf + u * BLOCK + rows, 0, (BLOCK - rows) * 4);
}

/* y[r * m + v] = out[(v - v0) * BLOCK + r] + bias[v] for r < rows and v0 <= v < v1.
   Eight rows of y at a time, left to right: rows of y lie a power of two apart for
   common widths, and walking down a column of them would evict its own cache lines. */
static void unpack_f32(const float* restrict out, const float* restrict bias, int64_t m,
                       int64_t v0, int64_t v1, int64_t rows, float* restrict y) {
  int64_t r = 0;
#if GW_AVX2
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
GW_NO_VECTORIZE
static void few_rows_f32(const float* restrict x, float* restrict y,
                         const int64_t* restrict rowptr, const int64_t* restrict col,
                         const float* restrict val, const float* restrict bias, int64_t R,
                         int64_t n, int64_t m, int threads) {
  (void)threads;  /* used by the OpenMP pragma only (unused when serial) */
  GW_OMP(parallel for num_threads(threads) schedule(static))
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
  GW_OMP(parallel for num_threads(threads) schedule(static) reduction(|: failed))
  for (int64_t job = 0; job < blocks * chunks; ++job) {
    const int64_t b = job / chunks, c = job % chunks;
    const int64_t r0 = b * BLOCK, rows = R - r0 < BLOCK ? R - r0 : BLOCK;
    const int64_t v0 = c * per < m ? c * per : m, v1 = v0 + per < m ? v0 + per : m;
    if (v0 >= v1) continue;
    float* buf = gw_scratch(0, (size_t)(n + (v1 - v0)) * BLOCK * sizeof(float));
    if (!buf) { failed = 1; continue; }
    float* out = buf + n * BLOCK;  /* out[(v - v0) * BLOCK + r] */
    pack_f32(x + r0 * n, n, n, rows, buf);
    for (int64_t v = v0; v < v1; ++v)
      LROW_F32(buf, col, val, rowptr[v], rowptr[v + 1], out + (v - v0) * BLOCK);
    unpack_f32(out, bias, m, v0, v1, rows, y + r0 * m);
  }
  return failed;
}

/* The weight gradient of the sparse linear layer at its selected weights, written into
   a dense gradient: g[flat[e]] = sum over r < R of dy[r, v] * x[r, col[e]] for every
   nonzero e of row v (g zeroed by the caller, [m, n]; x [R, n], dy [R, m], row-major).
   The rows v are split between the threads by their nonzeros (each entry one thread's
   sum in a fixed order: the result does not depend on the thread count); each thread
   walks blocks of BLOCK rows of x and dy, transposed into its buffer as csr_linear does
   (x's block whole, dy's for its rows v), and adds one BLOCK-long dot product per nonzero
   and block, four nonzeros of a row against one load of dy. Returns 1 when out of
   memory. */
int gw_linear_wgrad_f32(const float* x, const float* dy, const int64_t* rowptr,
                        const int64_t* col, const int64_t* flat, float* g, int64_t R,
                        int64_t n, int64_t m, int threads) {
  const int64_t nnz = rowptr[m];
  if (nnz * R < 65536) threads = 1; /* less work than waking a second thread */
  (void)threads;
  int failed = 0;
  GW_OMP(parallel num_threads(threads) reduction(|: failed))
  {
    const int64_t t = gw_thread_num(), T = gw_num_threads();
    const int64_t v0 = gw_rows_from(rowptr, m, nnz * t / T);
    const int64_t v1 = gw_rows_from(rowptr, m, nnz * (t + 1) / T);
    const int64_t e0 = rowptr[v0], e1 = rowptr[v1];
    float* buf = v1 > v0 ? gw_scratch(0, (size_t)(n + (v1 - v0)) * BLOCK * sizeof(float)) : NULL;
    float* acc = v1 > v0 ? (float*)calloc((size_t)(e1 - e0), sizeof(float)) : NULL;
    if (v1 > v0 && (!buf || !acc)) failed = 1;
    for (int64_t r0 = 0; r0 < R && buf && acc; r0 += BLOCK) {
      const int64_t rows = R - r0 < BLOCK ? R - r0 : BLOCK;
      float* xb = buf;                 /* xb[u * BLOCK + r] */
      float* db = buf + n * BLOCK;     /* db[(v - v0) * BLOCK + r] */
      pack_f32(x + r0 * n, n, n, rows, xb);
      pack_f32(dy + r0 * m + v0, m, v1 - v0, rows, db);
      for (int64_t v = v0; v < v1; ++v) {
        const float* dv = db + (v - v0) * BLOCK;
        int64_t e = rowptr[v];
        for (; e + 4 <= rowptr[v + 1]; e += 4)
          gw_dot4_f32(dv, xb + col[e] * BLOCK, xb + col[e + 1] * BLOCK, xb + col[e + 2] * BLOCK,
                      xb + col[e + 3] * BLOCK, BLOCK, acc + (e - e0));
        for (; e < rowptr[v + 1]; ++e) acc[e - e0] += gw_dot_f32(dv, xb + col[e] * BLOCK, BLOCK);
      }
    }
    if (acc)
      for (int64_t e = e0; e < e1; ++e) g[flat[e]] = acc[e - e0];
    free(acc);
  }
  return failed;
}
