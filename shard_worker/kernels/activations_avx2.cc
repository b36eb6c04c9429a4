#include "shard_worker/kernels/activations_avx2.h"

#include <cmath>
#include <limits>

#include "shard_worker/kernels/avx2_common.h"

namespace glm::kernels {
namespace {

// e^x as the AVX-512 path computes it (activations.cc): n = round(x·log2 e), r = x - n·ln 2 in
// two parts, e^r by the same degree-6 polynomial, times 2^n — built here from n's bits, which
// reach the normal floats only: inputs below ln(FLT_MIN) ≈ -87.34 give 0 (the true value is
// under 1.2e-38: a subnormal or 0), above 89 +inf.
GLM_AVX2_INLINE __m256 Exp8(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);  // also NaN: no
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(89.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n for n in [-126, 128]: (n + 127) << 23 (n = 128 gives the bits of +inf).
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  return _mm256_andnot_ps(tiny, e);
}

// Lanes [0, rem) of 8 selected (rem >= 8: all).
GLM_AVX2_INLINE __m256i TailMask8(int64_t rem) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rem < 8 ? rem : 8)), lane);
}

GLM_AVX2_INLINE float MaxOf(const float* x, int64_t n) {
  __m256 vmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  __m128 q = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  q = _mm_max_ps(q, _mm_movehl_ps(q, q));
  q = _mm_max_ss(q, _mm_movehdup_ps(q));
  float max_v = _mm_cvtss_f32(q);
  for (; i < n; ++i) max_v = x[i] > max_v ? x[i] : max_v;
  return max_v;
}

// Σ e^(x[i] - m) over the 8 lanes, in double (4 + 4 lanes), storing the exponentials to `out`
// when it is not null.
GLM_AVX2_INLINE double SumExp(const float* x, int64_t n, float m, float* out) {
  const __m256 vm = _mm256_set1_ps(m);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i k = TailMask8(n - i);
    const __m256 e = _mm256_and_ps(_mm256_castsi256_ps(k), Exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), vm)));
    if (out != nullptr) _mm256_maskstore_ps(out + i, k, e);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double l[4];
  _mm256_store_pd(l, _mm256_add_pd(lo, hi));
  return (l[0] + l[2]) + (l[1] + l[3]);
}

}  // namespace

GLM_AVX2 void SiluMulAvx2(const float* gate, const float* up, int64_t n, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i k = TailMask8(n - i);
    const __m256 g = _mm256_maskload_ps(gate + i, k);
    const __m256 u = _mm256_maskload_ps(up + i, k);
    const __m256 e = Exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_maskstore_ps(out + i, k, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u));
  }
}

GLM_AVX2 void SoftmaxAvx2(float* x, int64_t n) {
  if (n <= 0) return;
  const float max_v = MaxOf(x, n);
  if (!std::isfinite(max_v)) {  // all masked: no mass anywhere
    for (int64_t k = 0; k < n; ++k) x[k] = 0.0f;
    return;
  }
  const double sum = SumExp(x, n, max_v, x);
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / sum));
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i k = TailMask8(n - i);
    _mm256_maskstore_ps(x + i, k, _mm256_mul_ps(_mm256_maskload_ps(x + i, k), inv));
  }
}

GLM_AVX2 float LogSumExpAvx2(const float* x, int64_t n) {
  if (n <= 0) return -std::numeric_limits<float>::infinity();
  const float max_v = MaxOf(x, n);
  if (!std::isfinite(max_v)) return max_v;
  return max_v + static_cast<float>(std::log(SumExp(x, n, max_v, nullptr)));
}

}  // namespace glm::kernels
