#include "shard_worker/kernels/norms_avx2.h"

#include <cmath>

#include "shard_worker/kernels/avx2_common.h"

namespace glm::kernels {

GLM_AVX2 void RmsNormAvx2(const float* x, const float* weight, int64_t n, float eps, float* out) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();  // lanes 0-3, 4-7
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
    lo = _mm256_fmadd_pd(a, a, lo);
    hi = _mm256_fmadd_pd(b, b, hi);
  }
  alignas(32) double l[8];
  _mm256_store_pd(l, lo);
  _mm256_store_pd(l + 4, hi);
  for (int k = 0; i + k < n; ++k) {
    const double v = x[i + k];
    l[k] = std::fma(v, v, l[k]);
  }
  const double sum_sq = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
  const float inv_s = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps));
  const __m256 inv = _mm256_set1_ps(inv_s);
  for (i = 0; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(weight + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), inv)));
  for (; i < n; ++i) out[i] = weight[i] * (x[i] * inv_s);
}

}  // namespace glm::kernels
