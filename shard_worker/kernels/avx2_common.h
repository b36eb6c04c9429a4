// AVX2 pieces shared by the decode (matmul_avx2.cc) and prefill (gemm_avx2.cc) kernels: both
// must decode FP8 and reduce lanes with exactly the same arithmetic (a token's result may not
// depend on its batch). Include only from the AVX2 kernel files (static functions).
#ifndef GLM_SHARD_WORKER_KERNELS_AVX2_COMMON_H_
#define GLM_SHARD_WORKER_KERNELS_AVX2_COMMON_H_

#include <immintrin.h>

// Internal linkage and no std templates inside: no AVX2 code can be merged into callers built
// for the baseline ISA.
#define GLM_AVX2 __attribute__((target("avx2,fma")))
#define GLM_AVX2_INLINE GLM_AVX2 __attribute__((always_inline)) static inline

namespace glm::kernels {

// FP8 e4m3fn, byte K of every 32-bit lane → 8 f32 times the scales s, without shuffles (see
// matmul_avx512.cc for the bit layout): magnitude to f32 bits 26..20, exponent rebiased by +120,
// subnormals fixed as 2v - 2^-6, sign copied, NaN codes forced to NaN (all-ones bits).
template <int K>
GLM_AVX2_INLINE __m256 DecodeFp8(__m256i d, __m256 s) {
  constexpr int kShift = 20 - 8 * K;
  __m256i m = kShift >= 0 ? _mm256_slli_epi32(d, kShift) : _mm256_srli_epi32(d, -kShift);
  m = _mm256_and_si256(m, _mm256_set1_epi32(0x07f00000));
  const __m256i nan = _mm256_cmpeq_epi32(m, _mm256_set1_epi32(0x07f00000));
  const __m256i sub = _mm256_cmpeq_epi32(_mm256_and_si256(m, _mm256_set1_epi32(0x07800000)),
                                         _mm256_setzero_si256());
  __m256 v = _mm256_castsi256_ps(_mm256_add_epi32(m, _mm256_set1_epi32(120 << 23)));
  v = _mm256_blendv_ps(v, _mm256_fmsub_ps(v, _mm256_set1_ps(2.0f), _mm256_set1_ps(0x1p-6f)),
                       _mm256_castsi256_ps(sub));
  const __m256i sign_src = K == 3 ? d : _mm256_slli_epi32(d, 24 - 8 * K);  // bit 8K+7 → 31
  v = _mm256_or_ps(v, _mm256_and_ps(_mm256_castsi256_ps(sign_src),
                                    _mm256_castsi256_ps(_mm256_set1_epi32(
                                        static_cast<int>(0x80000000u)))));
  return _mm256_or_ps(_mm256_mul_ps(v, s), _mm256_castsi256_ps(nan));
}

// 8 lanes reduced 8 → 4 → 2 → 1 in one fixed tree.
GLM_AVX2_INLINE float Reduce(__m256 s) {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_AVX2_COMMON_H_
