/* What this CPU can run, and what a library was built for: the loader
   (graphwire/_native/__init__.py) asks the scalar library which variants this CPU
   executes, and checks that a variant's library holds the code paths it was built for. */
#include "graphwire.h"

/* The best variant this CPU and its operating system execute: 2 for avx512 (AVX-512 F,
   BW, VL and DQ with AVX2 and FMA), 1 for avx2 (AVX2 and FMA), 0 for scalar only (also
   on every CPU that is not x86). __builtin_cpu_supports checks that the operating
   system saves the vector registers too. */
int gw_cpu_level(void) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return 2;
  return 1;
#else
  return 0;
#endif
}

/* The level of the code paths compiled into this library: 2 where the AVX-512 paths
   are, 1 where the AVX2 ones are, 0 where the scalar loops are. */
int gw_built_level(void) { return GW_AVX512 ? 2 : GW_AVX2 ? 1 : 0; }

/* 1 where this library's kernels run on OpenMP threads, 0 where they are serial. */
int gw_built_openmp(void) {
#ifdef _OPENMP
  return 1;
#else
  return 0;
#endif
}
