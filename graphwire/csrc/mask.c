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
