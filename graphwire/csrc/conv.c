/* shift_mix (a sparse convolution's shifted mixes) in float32 and float64, and
   sparse_conv2d (the whole float32 convolution in one call: padded stride phases in
   per-thread scratch memory, the shifted mixes, bias, crop and epilogue). */
#include "graphwire.h"
#include "rows.h"
#include "grad.h"

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
    _Alignas(64) REAL tmp[64];                                                             \
    /* the tile's pieces of image rows with w < Wo: from tmp[from] to y[to], len long;     \
       found once per tile (divisions), not per output channel */                          \
    int64_t from[66], to[66], len[66], pieces = 0;                                         \
    for (int64_t p = t0; p < t0 + 64 && pieces < 66;) {                                    \
      const int64_t h = p / W, base = h * W; /* p is (h, p - base) */                      \
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
    int64_t* src = (int64_t*)malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(int64_t));        \
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
    int64_t chunks = 1;  /* few tiles (small images): split the output rows too */         \
    if (G * tiles < 4 * (int64_t)threads) {                                                \
      chunks = (4 * (int64_t)threads + G * tiles - 1) / (G * tiles);                       \
      if (chunks > m) chunks = m > 0 ? m : 1;                                              \
    }                                                                                      \
    const int64_t per = (m + chunks - 1) / chunks;                                         \
    GW_OMP(parallel for num_threads(threads) schedule(static))                             \
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
  int NAME(const REAL* x, REAL* y, const int64_t* rowptr, const int64_t* col,              \
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
    if (r) { /* (conv + bias) + residual, in torch's order, then the ReLU */               \
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
#if GW_AVX512
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
/* A sparse k x k convolution in one call (float32): the input's padded phase images are
   built in scratch memory, then walked by the shifted mixes, with the bias added and the
   output cropped as it is stored. x [G, C, H, W] (already padded by its mode where that
   is not zeros: then top = left = 0); the phase image (a, b) of channel c is channel
   (c * sh + a) * sw + b of xq [G, C * sh * sw, rows_q * cols_q], holding
   x[g, c, i * sh + a - top, j * sw + b - left] at (i, j), zero outside x. */
/* One phase image (a, b) of one channel xc [H, W] into plane [rows_q, cols_q]. Short
   rows: inline loops, not memset / memcpy calls. */
GW_NO_DISTRIBUTE
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
#if GW_AVX512
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
    GW_OMP(parallel for num_threads(threads) schedule(static))
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
  GW_OMP(parallel for num_threads(threads) schedule(static))
  for (int64_t q = 0; q < planes; ++q)  /* the batch's planes as one image's: g * C + c */
    phase_f32(x, xq + q * Pin, q, H, W, top, left, sh, sw, rows_q, cols_q);
  return gw_shift_mix_f32_tiles(xq, y, rowptr, col, srow, scol, val, bias, res, relu, G, n,
                                m, Pin, P, cols_q, Ho, Wo, threads);
}

/* The weight gradient of a convolution at its selected weights only (float32):
   out[e] = sum over images g and output positions (h, w) of dy[g, v, h, w] times the
   input that weight e multiplied there, for every nonzero e of output channel v; the
   layout (rowptr, col, srow, scol) and sz are sparse_conv2d's. The images are split
   between the threads; per image, a thread builds the padded phase images of x (as
   sparse_conv2d does) and dy widened to cols_q columns (zeros past Wo) in its scratch
   memory, and each nonzero is one contiguous dot product of Ho * cols_q terms (the zero
   columns cancel the wide rows' extra terms), four nonzeros at a time against one load
   of dy, kept in 8 lanes per nonzero across the thread's images (the lanes are added
   once at the end: small images make short products). Each thread sums into its own
   copy of out, added in thread order: for a given thread count the result is always the
   same. Returns 2 where a shift reads past the phases, 1 when out of memory. */
int gw_conv_wgrad_f32(const float* x, const float* dy, const int64_t* rowptr,
                      const int64_t* col, const int64_t* srow, const int64_t* scol,
                      float* out, const int64_t* sz, int threads) {
  const int64_t G = sz[0], C = sz[1], H = sz[2], W = sz[3], top = sz[4], left = sz[5];
  const int64_t sh = sz[6], sw = sz[7], rows_q = sz[8], cols_q = sz[9], m = sz[10];
  const int64_t Ho = sz[11], Wo = sz[12];
  const int64_t n = C * sh * sw, Pin = rows_q * cols_q, L = Ho * cols_q, nnz = rowptr[m];
  for (int64_t e = 0; e < nnz; ++e) {
    const int64_t off = srow[e] * cols_q + scol[e];
    if (off < 0 || off + L > Pin || col[e] < 0 || col[e] >= n) return 2;
  }
  if (G < threads) threads = G > 0 ? (int)G : 1;
  if (nnz * L * G < 65536) threads = 1;
  float* parts = (float*)calloc((size_t)(threads * (nnz > 0 ? nnz : 1)), sizeof(float));
  /* lanes: 8 per nonzero (and 24 spare for the last group of fewer than four) per thread */
  const int64_t per = 8 * nnz + 32;
  float* lanes = (float*)calloc((size_t)(threads * per), sizeof(float));
  if (!parts || !lanes) { free(parts); free(lanes); return 1; }
  int failed = 0;
  GW_OMP(parallel num_threads(threads) reduction(|: failed))
  {
    const int64_t t = gw_thread_num(), T = gw_num_threads();
    float* acc = parts + t * nnz;
    float* lane = lanes + t * per;
    float* xq = gw_scratch(1, (size_t)(n * Pin) * sizeof(float));
    float* dyw = gw_scratch(2, (size_t)(m * L) * sizeof(float));
    if (!xq || !dyw) failed = 1;
    for (int64_t g = G * t / T; g < G * (t + 1) / T && xq && dyw; ++g) {
      for (int64_t q = 0; q < n; ++q)
        phase_f32(x + g * C * H * W, xq + q * Pin, q, H, W, top, left, sh, sw, rows_q, cols_q);
      for (int64_t v = 0; v < m; ++v) {
        const float* dv = dy + (g * m + v) * Ho * Wo;
        float* wv = dyw + v * L;
        for (int64_t h = 0; h < Ho; ++h) {
          for (int64_t w = 0; w < Wo; ++w) wv[h * cols_q + w] = dv[h * Wo + w];
          for (int64_t w = Wo; w < cols_q; ++w) wv[h * cols_q + w] = 0.0f;
        }
      }
      for (int64_t v = 0; v < m; ++v) {
        const float* wv = dyw + v * L;
        int64_t e = rowptr[v];
#define GW_SRC(k) (xq + col[e + (k)] * Pin + srow[e + (k)] * cols_q + scol[e + (k)])
        for (; e + 4 <= rowptr[v + 1]; e += 4)
          gw_dot4_lanes_f32(wv, GW_SRC(0), GW_SRC(1), GW_SRC(2), GW_SRC(3), L, lane + 8 * e);
        for (; e < rowptr[v + 1]; ++e) acc[e] += gw_dot_f32(wv, GW_SRC(0), L);
#undef GW_SRC
      }
    }
    for (int64_t e = 0; e < nnz; ++e) {  /* the lanes, added in a fixed order */
      const float* l = lane + 8 * e;
      acc[e] += ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    }
  }
  for (int64_t e = 0; e < nnz; ++e) {
    float s = parts[e];
    for (int64_t t = 1; t < threads; ++t) s += parts[t * nnz + e];
    out[e] = s;
  }
  free(parts);
  free(lanes);
  return failed;
}
