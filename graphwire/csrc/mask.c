/* In-place copy of a boolean mask that counts the entries it turns on and off
   (graphwire._native.replace_counting). */
#include "graphwire.h"

/* dst[i] = src[i] for bytes holding 0 or 1; counts[0] = how many went 0 -> 1, counts[1]
   how many went 1 -> 0. One pass; threads split the range. */
void gw_replace_counting(uint8_t* dst, const uint8_t* src, int64_t n, int64_t* counts,
                         int threads) {
  (void)threads;  /* used by the OpenMP pragma only (unused when serial) */
  int64_t added = 0, removed = 0;
  GW_OMP(parallel for num_threads(threads) reduction(+: added, removed) schedule(static))
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t d = dst[i], s = src[i];
    added += s > d;
    removed += d > s;
    dst[i] = s;
  }
  counts[0] = added;
  counts[1] = removed;
}

/* The positions of the set bytes of m[0:n] (bytes 0 or 1), ascending, into out; returns
   how many. 64 bytes at a time with AVX2: their bit mask, walked by its lowest set bit. */
static int64_t set_bytes(const uint8_t* m, int64_t n, int64_t* out) {
  int64_t k = 0, c0 = 0;
#if GW_AVX2
  const __m256i zero = _mm256_setzero_si256();
  for (; c0 + 64 <= n; c0 += 64) {  /* one unpredictable loop exit per 64 bytes */
    const __m256i lo = _mm256_loadu_si256((const __m256i*)(m + c0));
    const __m256i hi = _mm256_loadu_si256((const __m256i*)(m + c0 + 32));
    uint64_t bits = (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpgt_epi8(lo, zero)) |
                    (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpgt_epi8(hi, zero)) << 32;
    while (bits) {
      out[k++] = c0 + __builtin_ctzll(bits);
      bits &= bits - 1;
    }
  }
#endif
  for (int64_t c = c0; c < n; ++c)
    if (m[c]) out[k++] = c;
  return k;
}

/* The set bytes of m[0:n] (bytes 0 or 1): 64 at a time with AVX2 (bit masks' popcount). */
static int64_t count_bytes(const uint8_t* m, int64_t n) {
  int64_t k = 0, c = 0;
#if GW_AVX2
  const __m256i zero = _mm256_setzero_si256();
  for (; c + 32 <= n; c += 32) {
    const __m256i v = _mm256_loadu_si256((const __m256i*)(m + c));
    k += __builtin_popcount((uint32_t)_mm256_movemask_epi8(_mm256_cmpgt_epi8(v, zero)));
  }
#endif
  for (; c < n; ++c) k += m[c] != 0;
  return k;
}

/* The CSR pattern of a boolean [rows, cols] matrix (bytes 0 or 1), by row and by column,
   for sparse training (graphwire._native.grads.mask_pattern). By row: rowptr [rows + 1],
   col [nnz] and flat [nnz] (the row-major index row * cols + col). By column: rowptr_t
   [cols + 1], col_t [nnz] (the row) and flat_t [nnz], rows ascending within a column.
   The threads take blocks of rows: each counts its rows' bytes, then writes its rows'
   entries and counts them per column, then places them in the columns after the entries
   of the threads before it, so the result does not depend on the thread count. nnz is
   the caller's count of set bytes (every array holds nnz); returns the count found, or
   -1 when out of memory: a different count means the mask changed, and then the arrays
   are incomplete. */
int64_t gw_mask_pattern(const uint8_t* mask, int64_t rows, int64_t cols, int64_t nnz,
                        int64_t* rowptr, int64_t* col, int64_t* flat, int64_t* rowptr_t,
                        int64_t* col_t, int64_t* flat_t, int threads) {
  if (rows * cols < (1 << 16)) threads = 1;
  int64_t* per = (int64_t*)calloc((size_t)(threads * (cols + 1)), sizeof(int64_t));
  if (!per) return -1;
  rowptr[0] = 0;
  GW_OMP(parallel for num_threads(threads) schedule(static))
  for (int64_t r = 0; r < rows; ++r) rowptr[r + 1] = count_bytes(mask + r * cols, cols);
  for (int64_t r = 0; r < rows; ++r) rowptr[r + 1] += rowptr[r];
  if (rowptr[rows] != nnz) { free(per); return rowptr[rows]; }
  int failed = 0;
  GW_OMP(parallel num_threads(threads) reduction(|: failed))
  {
    const int64_t t = gw_thread_num(), T = gw_num_threads();
    const int64_t r0 = rows * t / T, r1 = rows * (t + 1) / T;
    int64_t* mine = per + t * (cols + 1);  /* this thread's entries per column */
    int64_t* at = (int64_t*)malloc((size_t)(cols > 0 ? cols : 1) * sizeof(int64_t));
    if (!at) failed = 1;
    for (int64_t r = r0; r < r1 && at; ++r) {
      const int64_t e = rowptr[r], k = set_bytes(mask + r * cols, cols, at);
      for (int64_t q = 0; q < k; ++q) {
        col[e + q] = at[q], flat[e + q] = r * cols + at[q];
        ++mine[at[q]];
      }
    }
    GW_OMP(barrier)
    GW_OMP(single)
    {  /* column pointers, and each thread's first slot in every column */
      rowptr_t[0] = 0;
      for (int64_t c = 0; c < cols; ++c) {
        int64_t slot = rowptr_t[c];
        for (int64_t u = 0; u < T; ++u) {
          const int64_t n = per[u * (cols + 1) + c];
          per[u * (cols + 1) + c] = slot;
          slot += n;
        }
        rowptr_t[c + 1] = slot;
      }
    }
    for (int64_t r = r0; r < r1 && at; ++r)
      for (int64_t q = rowptr[r]; q < rowptr[r + 1]; ++q) {
        const int64_t slot = mine[col[q]]++;
        col_t[slot] = r;
        flat_t[slot] = flat[q];
      }
    free(at);
  }
  free(per);
  return failed ? -1 : nnz;
}

/* Both layouts of sparse_conv2d for a convolution's boolean mask [O, pg, kh, kw] (pg
   input channels per group, g groups), for sparse training
   (graphwire.layers._sparse_train.conv_pattern). sz: O, pg, kh, kw, g, sh, sw, dh, dw.
   The forward layout, by output channel o: rowptr [O + 1], and per nonzero the stride
   phase col = (c * sh + (i * dh) % sh) * sw + (j * dw) % sw of the global input channel
   c, the shifts srow = (i * dh) / sh and scol = (j * dw) / sw, and flat, the index into
   the weight. The transposed layout of the input gradient, by input channel c (stride 1,
   the kernel flipped): rowptr_t [pg * g + 1], col_t = o, srow_t = (kh - 1 - i) * dh,
   scol_t = (kw - 1 - j) * dw, flat_t; within a channel in forward order. Returns as
   gw_mask_pattern does. A plain walk over the mask's bytes: kernels are small, and the
   walk knows each byte's channel and tap without a division. */
int64_t gw_conv_pattern(const uint8_t* mask, const int64_t* sz, int64_t nnz, int64_t* rowptr,
                        int64_t* col, int64_t* srow, int64_t* scol, int64_t* flat,
                        int64_t* rowptr_t, int64_t* col_t, int64_t* srow_t, int64_t* scol_t,
                        int64_t* flat_t) {
  const int64_t O = sz[0], pg = sz[1], kh = sz[2], kw = sz[3], g = sz[4];
  const int64_t sh = sz[5], sw = sz[6], dh = sz[7], dw = sz[8];
  const int64_t C = pg * g, per_out = O / g;
  /* the channel and tap of every nonzero, for the second pass (no divisions per nonzero) */
  int32_t* cij = (int32_t*)malloc((size_t)(3 * (nnz > 0 ? nnz : 1)) * sizeof(int32_t));
  int64_t* chan = (int64_t*)malloc((size_t)(C + 1) * sizeof(int64_t));
  if (!cij || !chan) { free(cij); free(chan); return -1; }
  for (int64_t c = 0; c <= C; ++c) chan[c] = 0;
  int64_t e = 0;
  const uint8_t* m = mask;
  rowptr[0] = 0;
  for (int64_t o = 0; o < O; ++o) {
    const int64_t c0 = (o / per_out) * pg;
    for (int64_t ci = 0; ci < pg; ++ci)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j, ++m) {
          if (!*m) continue;
          if (e < nnz) {
            const int64_t c = c0 + ci;
            col[e] = (c * sh + (i * dh) % sh) * sw + (j * dw) % sw;
            srow[e] = (i * dh) / sh, scol[e] = (j * dw) / sw;
            flat[e] = m - mask;
            cij[3 * e] = (int32_t)c, cij[3 * e + 1] = (int32_t)i, cij[3 * e + 2] = (int32_t)j;
            ++chan[c + 1];
          }
          ++e;
        }
    rowptr[o + 1] = e < nnz ? e : nnz;
  }
  if (e != nnz) { free(cij); free(chan); return e; }
  for (int64_t c = 0; c < C; ++c) chan[c + 1] += chan[c];
  memcpy(rowptr_t, chan, (size_t)(C + 1) * sizeof(int64_t));
  for (int64_t o = 0; o < O; ++o)
    for (int64_t q = rowptr[o]; q < rowptr[o + 1]; ++q) {
      const int64_t slot = chan[cij[3 * q]]++, i = cij[3 * q + 1], j = cij[3 * q + 2];
      col_t[slot] = o, srow_t[slot] = (kh - 1 - i) * dh, scol_t[slot] = (kw - 1 - j) * dw;
      flat_t[slot] = flat[q];
    }
  free(cij);
  free(chan);
  return nnz;
}

/* The set bytes of m[0:n] (bytes 0 or 1): graphwire._native.grads.count_selected. */
int64_t gw_count_set(const uint8_t* m, int64_t n) { return count_bytes(m, n); }

/* g[i] = 0 where mask[i] is 0 (bytes 0 or 1), float32, in place: the gradients of the
   unselected weights zeroed before an optimizer step, without the float copy of the mask
   that multiplying by it makes. Threads split the range. */
void gw_zero_unselected_f32(float* g, const uint8_t* mask, int64_t n, int threads) {
  (void)threads;  /* used by the OpenMP pragma only (unused when serial) */
  GW_OMP(parallel for num_threads(threads) schedule(static))
  for (int64_t i = 0; i < n; ++i) g[i] = mask[i] ? g[i] : 0.0f;
}
