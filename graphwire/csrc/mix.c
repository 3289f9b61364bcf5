/* csr_mix (a CSR matrix times tiles of dense rows) and ell_mix (a row-major ELL matrix
   times the rows of x), float32 and float64. */
#include "graphwire.h"
#include "rows.h"

#define DEFINE_KERNEL(NAME, REAL, ROW)                                                     \
  int NAME(const REAL* x, REAL* y, const int64_t* rowptr, const int64_t* col,              \
           const REAL* val, int64_t G, int64_t n, int64_t m, int64_t P, int threads) {     \
    const int64_t T = TILE_BYTES / sizeof(REAL);                                           \
    const int64_t tiles = (P + T - 1) / T;                                                 \
    int failed = 0;                                                                        \
    (void)threads; /* used by the OpenMP pragmas only (unused when serial) */              \
    GW_OMP(parallel num_threads(threads) reduction(|: failed)) {                           \
      REAL* buf = (REAL*)aligned_alloc(64, (size_t)(n + 1) * TILE_BYTES);                  \
      if (!buf) failed = 1;                                                                \
      REAL* out = buf + n * T;                                                             \
      GW_OMP(for schedule(static))                                                         \
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
/* Row-major ELL (every row holds L entries, padded with value 0 at column 0), for
   inputs of few rows: y[b, v] = sum over j < L of val[v, j] * x[b, idx[v, j]] for a
   row-major x [B, n] and y [B, m]. Scalar loads with four accumulators: on CPUs whose
   vector gathers are slow (microcode mitigations) they beat gathers, and x's rows
   stay in cache across the output rows a thread walks. */
#define DEFINE_ELL(NAME, REAL)                                                             \
  GW_NO_VECTORIZE                                                                          \
  int NAME(const REAL* x, REAL* y, const int32_t* idx, const REAL* val, int64_t B,         \
           int64_t n, int64_t m, int64_t L, int threads) {                                 \
    (void)threads; /* used by the OpenMP pragma only (unused when serial) */               \
    GW_OMP(parallel for num_threads(threads) schedule(static))                             \
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
