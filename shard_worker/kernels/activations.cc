#include "shard_worker/kernels/activations.h"

// GCC 12's own AVX-512 intrinsics self-initialise `__Y` (GCC PR 105593) and warn once inlined;
// the warnings are about the header, not this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cmath>
#include <limits>

#if defined(__x86_64__)
#include "shard_worker/kernels/activations_avx2.h"
#include "shard_worker/kernels/avx512_common.h"
#include "shard_worker/kernels/matmul_avx2.h"
#include "shard_worker/kernels/matmul_avx512.h"
#endif

namespace glm::kernels {

void SiluMulReference(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void SoftmaxReference(float* x, int64_t n) {
  float max_v = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max_v = x[i] > max_v ? x[i] : max_v;
  if (!std::isfinite(max_v)) {  // all masked: no attention mass anywhere
    for (int64_t i = 0; i < n; ++i) x[i] = 0.0f;
    return;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_v);
    sum += x[i];
  }
  float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

float LogSumExpReference(const float* x, int64_t n) {
  float max_v = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max_v = x[i] > max_v ? x[i] : max_v;
  if (!std::isfinite(max_v)) return max_v;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - max_v);
  return max_v + static_cast<float>(std::log(sum));
}

namespace {

#if defined(__x86_64__)
// e^x: n = round(x·log2 e), r = x - n·ln 2 in two parts (Cody-Waite), e^r by a degree-6
// Taylor/Horner polynomial on |r| <= ln2/2 (relative error < 2e-7), times 2^n by vscalefps
// (which flushes n < -149 to 0 and overflows n > 127 to +inf). Inputs are clamped to
// [-104, 89]: beyond them the float result is already 0 or +inf.
GLM_AVX512_INLINE __m512 Exp(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

GLM_AVX512 void SoftmaxAvx512(float* x, int64_t n) {
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
  float max_v = _mm512_reduce_max_ps(vmax);
  for (; i < n; ++i) max_v = x[i] > max_v ? x[i] : max_v;
  if (!std::isfinite(max_v)) {  // all masked: no attention mass anywhere
    for (int64_t k = 0; k < n; ++k) x[k] = 0.0f;
    return;
  }
  // The sum in double, 8 lanes at a time, in a fixed order (a function of n only).
  const __m512 m = _mm512_set1_ps(max_v);
  __m512d sum_lo = _mm512_setzero_pd(), sum_hi = _mm512_setzero_pd();
  for (i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask16(n - i);
    const __m512 e = _mm512_maskz_mov_ps(k, Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m)));
    _mm512_mask_storeu_ps(x + i, k, e);
    sum_lo = _mm512_add_pd(sum_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    sum_hi = _mm512_add_pd(sum_hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  const double sum = _mm512_reduce_add_pd(_mm512_add_pd(sum_lo, sum_hi));
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
  for (i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask16(n - i);
    _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv));
  }
}

GLM_AVX512 float LogSumExpAvx512(const float* x, int64_t n) {
  if (n <= 0) return -std::numeric_limits<float>::infinity();
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
  float max_v = _mm512_reduce_max_ps(vmax);
  for (; i < n; ++i) max_v = x[i] > max_v ? x[i] : max_v;
  if (!std::isfinite(max_v)) return max_v;
  const __m512 m = _mm512_set1_ps(max_v);
  __m512d sum_lo = _mm512_setzero_pd(), sum_hi = _mm512_setzero_pd();
  for (i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask16(n - i);
    const __m512 e = _mm512_maskz_mov_ps(k, Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m)));
    sum_lo = _mm512_add_pd(sum_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    sum_hi = _mm512_add_pd(sum_hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  return max_v + static_cast<float>(std::log(_mm512_reduce_add_pd(_mm512_add_pd(sum_lo, sum_hi))));
}

// silu(g)·u = g / (1 + e^-g) · u, 16 lanes at a time, the tail masked (same lane arithmetic).
GLM_AVX512 void SiluMulAvx512(const float* gate, const float* up, int64_t n, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask16(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(k, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(k, up + i);
    const __m512 e = Exp(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u));
  }
}
#endif

using SoftmaxFn = void (*)(float*, int64_t);
using LogSumExpFn = float (*)(const float*, int64_t);

LogSumExpFn SelectLogSumExp() {
#if defined(__x86_64__)
  if (CpuSupportsAvx512MatMul()) return &LogSumExpAvx512;
  if (CpuSupportsAvx2MatMul()) return &LogSumExpAvx2;
#endif
  return &LogSumExpReference;
}
using SiluMulFn = void (*)(const float*, const float*, int64_t, float*);

SiluMulFn SelectSiluMul() {
#if defined(__x86_64__)
  if (CpuSupportsAvx512MatMul()) return &SiluMulAvx512;
  if (CpuSupportsAvx2MatMul()) return &SiluMulAvx2;
#endif
  return &SiluMulReference;
}

SoftmaxFn SelectSoftmax() {
#if defined(__x86_64__)
  if (CpuSupportsAvx512MatMul()) return &SoftmaxAvx512;
  if (CpuSupportsAvx2MatMul()) return &SoftmaxAvx2;
#endif
  return &SoftmaxReference;
}

}  // namespace

void Softmax(float* x, int64_t n) {
  static const SoftmaxFn fn = SelectSoftmax();
  fn(x, n);
}

float LogSumExp(const float* x, int64_t n) {
  static const LogSumExpFn fn = SelectLogSumExp();
  return fn(x, n);
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  static const SiluMulFn fn = SelectSiluMul();
  fn(gate, up, n, out);
}

}  // namespace glm::kernels
