/* graphwire's native CPU kernels: what every source file shares.

   All files of this folder are compiled together into one shared library per ISA
   variant (graphwire/_native/__init__.py): "scalar" with no ISA flags, "avx2" with
   -mavx2 -mfma, "avx512" with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma,
   each with -std=c11 -Wall -Wextra -Werror, and with -fopenmp where torch's OpenMP
   runtime can be linked. This header maps those choices to macros:

   GW_AVX2, GW_AVX512  1 where the code may use the instructions (else 0): AVX2 paths use
                       FMA intrinsics, so they need both __AVX2__ and __FMA__
   GW_OMP(...)         `#pragma omp ...` with OpenMP, nothing without it (serial kernels)
   gw_thread_num(), gw_num_threads()   omp_get_thread_num / omp_get_num_threads, or 0 / 1
   GW_NO_VECTORIZE, GW_NO_DISTRIBUTE   GCC's optimize attributes (no-tree-vectorize,
                       no-tree-loop-distribute-patterns); nothing for other compilers
   GW_HIDDEN           a function shared between source files, not exported */
#ifndef GRAPHWIRE_H
#define GRAPHWIRE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#define GW_AVX2 1
#else
#define GW_AVX2 0
#endif

#if GW_AVX2 && defined(__AVX512F__)
#define GW_AVX512 1
#else
#define GW_AVX512 0
#endif

#if GW_AVX2
#include <immintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#define GW_PRAGMA(...) _Pragma(#__VA_ARGS__)
#define GW_OMP(...) GW_PRAGMA(omp __VA_ARGS__)
static inline int gw_thread_num(void) { return omp_get_thread_num(); }
static inline int gw_num_threads(void) { return omp_get_num_threads(); }
#else
#define GW_OMP(...)
static inline int gw_thread_num(void) { return 0; }
static inline int gw_num_threads(void) { return 1; }
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define GW_NO_VECTORIZE __attribute__((optimize("no-tree-vectorize")))
#define GW_NO_DISTRIBUTE __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define GW_NO_VECTORIZE
#define GW_NO_DISTRIBUTE
#endif

#if defined(__GNUC__) || defined(__clang__)
#define GW_HIDDEN __attribute__((visibility("hidden")))
#else
#define GW_HIDDEN
#endif

/* Scratch memory per thread and use, grown and kept across calls (fresh pages cost more
   than the work here): slot 0 for csr_linear's blocks, 1 for the input of sparse_conv2d
   and conv_wgrad, 2 for conv_wgrad's output gradient.
   64-byte aligned; NULL when out of memory. (scratch.c) */
GW_HIDDEN float* gw_scratch(int slot, size_t bytes);

#endif
