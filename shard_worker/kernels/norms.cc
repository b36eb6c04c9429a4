#include "shard_worker/kernels/norms.h"

// GCC 12's own AVX-512 intrinsics self-initialise `__Y` (GCC PR 105593) and warn once inlined;
// the warnings are about the header, not this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cmath>

#if defined(__x86_64__)
#include "shard_worker/kernels/avx512_common.h"
#include "shard_worker/kernels/matmul_avx2.h"
#include "shard_worker/kernels/matmul_avx512.h"
#include "shard_worker/kernels/norms_avx2.h"
#endif

namespace glm::kernels {

void RmsNormReference(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum_sq = 0.0;  // double: the reference is float64 and n reaches 6144
  for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  float inv = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inv);
}

namespace {

#if defined(__x86_64__)
// The sum of squares in 8 double lanes (one long dependency chain per lane instead of one in
// all), the lanes added in a fixed tree; the scaling as the scalar twin does it.
GLM_AVX512 void RmsNormAvx512(const float* x, const float* weight, int64_t n, float eps,
                                                      float* out) {
  __m512d acc = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 8) {
    const __mmask16 k = n - i >= 8 ? static_cast<__mmask16>(0xff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512d v = _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(k, x + i)));
    acc = _mm512_fmadd_pd(v, v, acc);
  }
  alignas(64) double l[8];
  _mm512_store_pd(l, acc);
  const double sum_sq = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps)));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask16(n - i);
    _mm512_mask_storeu_ps(out + i, k,
                          _mm512_mul_ps(_mm512_maskz_loadu_ps(k, weight + i), _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv)));
  }
}
#endif

using RmsNormFn = void (*)(const float*, const float*, int64_t, float, float*);

RmsNormFn SelectRmsNorm() {
#if defined(__x86_64__)
  if (CpuSupportsAvx512MatMul()) return &RmsNormAvx512;
  if (CpuSupportsAvx2MatMul()) return &RmsNormAvx2;
#endif
  return &RmsNormReference;
}

}  // namespace

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  static const RmsNormFn fn = SelectRmsNorm();
  fn(x, weight, n, eps, out);
}

void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps,
               float* out) {
  double mean = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= static_cast<double>(n);
  double var = 0.0;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<double>(n);
  float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
  for (int64_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(x[i] - mean) * inv * weight[i] + bias[i];
}

}  // namespace glm::kernels
