/* The two cores' peak f32 multiply-add rate, the yardstick for BENCHMARKS.md's GFLOP/s shares:
 * twelve independent chains of 16-lane FMAs per thread, nothing else.
 *
 *   gcc -O2 -march=native -fopenmp -o /tmp/fma_peak scripts/fma_peak.c
 *   OMP_NUM_THREADS=1 /tmp/fma_peak; OMP_NUM_THREADS=2 /tmp/fma_peak
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

#define FMA12(x, y)                                                                            \
  a0 = _mm512_fmadd_ps(a0, x, y); a1 = _mm512_fmadd_ps(a1, x, y);                               \
  a2 = _mm512_fmadd_ps(a2, x, y); a3 = _mm512_fmadd_ps(a3, x, y);                               \
  a4 = _mm512_fmadd_ps(a4, x, y); a5 = _mm512_fmadd_ps(a5, x, y);                               \
  a6 = _mm512_fmadd_ps(a6, x, y); a7 = _mm512_fmadd_ps(a7, x, y);                               \
  a8 = _mm512_fmadd_ps(a8, x, y); a9 = _mm512_fmadd_ps(a9, x, y);                               \
  a10 = _mm512_fmadd_ps(a10, x, y); a11 = _mm512_fmadd_ps(a11, x, y);

int main(void) {
  const long iters = 100000000;
  double flops = 0, start = omp_get_wtime();
#pragma omp parallel reduction(+ : flops)
  {
    __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    __m512 a0 = x, a1 = y, a2 = x, a3 = y, a4 = x, a5 = y, a6 = x, a7 = y, a8 = x, a9 = y,
           a10 = x, a11 = y;
    for (long k = 0; k < iters; k++) {
      FMA12(x, y)
      /* Keeps the twelve accumulators in registers and the loop from being folded. */
      __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5),
                       "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    if (_mm512_reduce_add_ps(s) == 12345.0f) printf("(never)\n");
    flops += (double)iters * 12 * 16 * 2;
  }
  printf("%d threads: %.1f GFLOP/s\n", omp_get_max_threads(), flops / (omp_get_wtime() - start) / 1e9);
  return 0;
}
