/* The memory read bandwidth of one and two cores, the ceiling of batch-1 decoding (which reads
 * every weight once per token): each thread sums its half of an array with 512-bit loads into
 * four independent accumulators; the best of ten passes. The first argument is the array's size
 * in MB (beyond the L3 for memory, within it for the L3).
 *
 *   gcc -O2 -march=native -fopenmp -o /tmp/read_bandwidth scripts/read_bandwidth.c
 *   OMP_NUM_THREADS=2 /tmp/read_bandwidth 1024; OMP_NUM_THREADS=2 /tmp/read_bandwidth 24
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  size_t mb = argc > 1 ? atol(argv[1]) : 512;
  size_t n = mb * 1024 * 1024 / 4;
  float *a = aligned_alloc(64, n * 4);
  for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023);
  double best = 1e9; float sink = 0;
  for (int rep = 0; rep < 10; rep++) {
    double t = omp_get_wtime();
    float s = 0;
#pragma omp parallel reduction(+ : s)
    {
      int th = omp_get_thread_num(), nt = omp_get_num_threads();
      size_t lo = n * th / nt / 64 * 64, hi = n * (th + 1) / nt / 64 * 64;
      __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (size_t i = lo; i < hi; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(a + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(a + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(a + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(a + i + 48));
      }
      s += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
    t = omp_get_wtime() - t;
    sink += s;
    if (t < best) best = t;
  }
  printf("%zu MB, %d threads: %.1f GB/s (best of 10)%s\n", mb, omp_get_max_threads(), n * 4.0 / best / 1e9, sink == 1 ? "!" : "");
  return 0;
}
