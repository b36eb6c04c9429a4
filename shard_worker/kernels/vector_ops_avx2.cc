#include "shard_worker/kernels/vector_ops_avx2.h"

#include <cmath>

#include "shard_worker/kernels/avx2_common.h"
#include "shard_worker/kernels/vector_ops.h"

namespace glm::kernels {

GLM_AVX2 float DotAvx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  __m256 s = _mm256_add_ps(acc0, acc1);
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  float acc = _mm_cvtss_f32(lo);
  for (; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// No FMA in the target: the compiler may not contract the multiply and add (exact values).
__attribute__((target("avx2"))) void AddScaleAvx2(const float* a, const float* b, float s, float* out, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)), vs));
  for (; i < n; ++i) out[i] = (a[i] + b[i]) * s;
}

__attribute__((target("avx2"))) void ReluAccumulateAvx2(const float* x, float scale, float alpha, float* y, int64_t n) {
  const __m256 vs = _mm256_set1_ps(scale), va = _mm256_set1_ps(alpha), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
    const __m256 yv = _mm256_loadu_ps(y + i);
    const __m256 positive = _mm256_cmp_ps(d, zero, _CMP_GT_OQ);
    _mm256_storeu_ps(y + i, _mm256_blendv_ps(yv, _mm256_add_ps(yv, _mm256_mul_ps(d, va)), positive));
  }
  ReluAccumulateReference(x + i, scale, alpha, y + i, n - i);
}

GLM_AVX2 void AxpyAvx2(float alpha, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// Two passes, as the AVX-512 path: the maximum (vmaxps keeps its second operand's lane when the
// first is NaN: NaN never wins), then the first index holding it.
GLM_AVX2 int64_t ArgMaxAvx2(const float* x, int64_t n) {
  if (n <= 1 || std::isnan(x[0])) return ArgMaxReference(x, n);
  __m256 vmax = _mm256_set1_ps(x[0]);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(_mm256_loadu_ps(x + i), vmax);
  __m128 q = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  q = _mm_max_ps(q, _mm_movehl_ps(q, q));
  q = _mm_max_ss(q, _mm_movehdup_ps(q));
  float m = _mm_cvtss_f32(q);
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  const __m256 vm = _mm256_set1_ps(m);
  for (i = 0; i + 8 <= n; i += 8) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), vm, _CMP_EQ_OQ));
    if (hit != 0) return i + __builtin_ctz(static_cast<unsigned>(hit));
  }
  for (; i < n; ++i)
    if (x[i] == m) return i;
  return 0;  // unreachable: m came from x
}

GLM_AVX2 void DotRowsF64Avx2(const float* x, const float* m, int64_t n_rows, int64_t n, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* row = m + r * n;
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();  // lanes 0-3, 4-7
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
      lo = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + c)), _mm256_cvtps_pd(_mm_loadu_ps(row + c)), lo);
      hi = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + c + 4)), _mm256_cvtps_pd(_mm_loadu_ps(row + c + 4)), hi);
    }
    alignas(32) double l[8];
    _mm256_store_pd(l, lo);
    _mm256_store_pd(l + 4, hi);
    for (int k = 0; c + k < n; ++k) l[k] = std::fma(static_cast<double>(x[c + k]), static_cast<double>(row[c + k]), l[k]);
    out[r] = static_cast<float>(((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])));
  }
}

}  // namespace glm::kernels
