#include "shard_worker/kernels/quantize_avx2.h"

#include <algorithm>

#include "shard_worker/kernels/avx2_common.h"

namespace glm::kernels {
namespace {

// Eight lane sums of one scale: lane l holds the elements i ≡ l (mod 8).
GLM_AVX2_INLINE __m256 LaneErrors(const float* w, int64_t n, float s, float lo, float hi) {
  const __m256 scale = _mm256_set1_ps(s), inv = _mm256_set1_ps(1.0f / s);
  const __m256 low = _mm256_set1_ps(lo), high = _mm256_set1_ps(hi);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(w + i);
    const __m256 q = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x, inv), low), high),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 d = _mm256_fnmadd_ps(q, scale, x);  // x - q·s, one rounding
    acc = _mm256_fmadd_ps(d, d, acc);
  }
  if (i < n) {  // the tail's missing lanes read 0: q = 0, d = 0, the lane sum unchanged
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)), idx);
    const __m256 x = _mm256_maskload_ps(w + i, mask);
    const __m256 q = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x, inv), low), high),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 d = _mm256_fnmadd_ps(q, scale, x);
    acc = _mm256_fmadd_ps(d, d, acc);
  }
  return acc;
}

// ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)).
GLM_AVX2_INLINE float LaneTree(__m256 v) {
  alignas(32) float l[8];
  _mm256_store_ps(l, v);
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

// Lanes [0, n) of w[i..): mask for maskload.
GLM_AVX2_INLINE __m256i TailMask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace

GLM_AVX2 float AbsMaxAvx2(const float* w, int64_t n, bool* has_nan) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 amax = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 x = i + 8 <= n ? _mm256_loadu_ps(w + i) : _mm256_maskload_ps(w + i, TailMask(n - i));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    amax = _mm256_max_ps(_mm256_and_ps(x, abs_mask), amax);  // a NaN lane keeps amax (the second operand)
  }
  *has_nan = _mm256_movemask_ps(nan) != 0;
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

GLM_AVX2 void RoundGroupAvx2(const float* w, int64_t n, float s, float lo, float hi, int8_t* q) {
  const __m256 inv = _mm256_set1_ps(1.0f / s), low = _mm256_set1_ps(lo), high = _mm256_set1_ps(hi);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), inv), low), high),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    alignas(32) int32_t codes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(codes), _mm256_cvtps_epi32(v));
    for (int j = 0; j < 8; ++j) q[i + j] = static_cast<int8_t>(codes[j]);
  }
  for (; i < n; ++i) {
    const float v = std::min(std::max(w[i] * (1.0f / s), lo), hi);
    q[i] = static_cast<int8_t>(_mm_cvtss_si32(_mm_round_ss(_mm_setzero_ps(), _mm_set_ss(v),
                                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  }
}

__attribute__((target("avx2,fma,f16c"))) void CandidateScalesAvx2(float base, const float* multipliers, int n,
                                                                   uint16_t* f16, float* f32) {
  // vcvtps2ph rounds to nearest even, overflows to inf and keeps subnormals as F32ToF16 does for
  // every finite value (the products here are finite: base is, and |multiplier| <= 1).
  for (int i = 0; i < n; i += 8) {
    const int m = std::min(8, n - i);
    alignas(32) float in[8] = {}, out[8];
    for (int j = 0; j < m; ++j) in[j] = base * multipliers[i + j];
    const __m128i h = _mm256_cvtps_ph(_mm256_load_ps(in), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_store_ps(out, _mm256_cvtph_ps(h));
    alignas(16) uint16_t codes[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(codes), h);
    for (int j = 0; j < m; ++j) {
      f16[i + j] = codes[j];
      f32[i + j] = out[j];
    }
  }
}

GLM_AVX2 void ScaleSearchErrorsAvx2(const float* w, int64_t n, const float* scales, int n_scales, float lo, float hi,
                                    float* err) {
  for (int j = 0; j < n_scales; ++j) err[j] = LaneTree(LaneErrors(w, n, scales[j], lo, hi));
}

}  // namespace glm::kernels
