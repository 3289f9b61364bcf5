/* A radix top-k select for large float32 score vectors (graphwire/wiring/_select.py):
   a histogram of the top 16 bits of each value's order-preserving key, the mask above
   the bucket of the k-th largest, and a histogram of the low 16 bits of that bucket's
   keys for the exact threshold; ties go to the lower index. */
#include "graphwire.h"
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
  GW_OMP(parallel num_threads(threads) reduction(|: nan))
  {
    int t = gw_thread_num(), nt = gw_num_threads();
    GW_OMP(single)
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
  GW_OMP(parallel num_threads(used))
  {
    int t = gw_thread_num(), nt = gw_num_threads();
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
