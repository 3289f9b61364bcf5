/* Sampled weight gradients for sparse training: dot products only at the selected
   weights (a sampled dense-dense product, SDDMM), never the dense gradient.

   gw_sddmm_f64: out[e] = sum over p < L of a[v * L + p] * b[col[e] * L + p] for every
   nonzero e of row v of a CSR pattern (rowptr, col): with a = dy^T [m, L] and
   b = x^T [n, L], the weight gradient of a float64 sparse linear layer at its selected
   weights (graphwire::sddmm; float32 layers run gw_linear_wgrad_f32 of linear.c, without
   the transposed copies). The rows are split between the threads by their nonzeros;
   each out[e] is one thread's sum in a fixed order, so the result does not depend on the
   thread count. */
#include "graphwire.h"
#include "grad.h"

int gw_sddmm_f64(const double* a, const double* b, const int64_t* rowptr,
                 const int64_t* col, double* out, int64_t rows, int64_t L, int threads) {
  const int64_t nnz = rowptr[rows];
  if (nnz * L < 65536) threads = 1; /* less work than waking a second thread */
  (void)threads;
  GW_OMP(parallel num_threads(threads))
  {
    const int64_t t = gw_thread_num(), T = gw_num_threads();
    const int64_t v0 = gw_rows_from(rowptr, rows, nnz * t / T);
    const int64_t v1 = gw_rows_from(rowptr, rows, nnz * (t + 1) / T);
    for (int64_t v = v0; v < v1; ++v) {
      const double* av = a + v * L;
      int64_t e = rowptr[v];
      for (; e + 4 <= rowptr[v + 1]; e += 4) {
        double s[4] = {0, 0, 0, 0};
        gw_dot4_f64(av, b + col[e] * L, b + col[e + 1] * L, b + col[e + 2] * L,
                    b + col[e + 3] * L, L, s);
        out[e] = s[0], out[e + 1] = s[1], out[e + 2] = s[2], out[e + 3] = s[3];
      }
      for (; e < rowptr[v + 1]; ++e) out[e] = gw_dot_f64(av, b + col[e] * L, L);
    }
  }
  return 0;
}
