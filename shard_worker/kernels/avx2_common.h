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

// The matmul path's functions (its CPUs have F16C too: CpuSupportsAvx2MatMul).
#define GLM_AVX2_F16C __attribute__((target("avx2,fma,f16c")))
#define GLM_AVX2_F16C_INLINE GLM_AVX2_F16C __attribute__((always_inline)) static inline

// FP8 e4m3fn, 32 bytes → 4 × 8 f32 times the scales s (as matmul_avx512's DecodeFp8): a byte
// unpack puts each byte in the high half of a 16-bit word, an arithmetic shift and a mask make
// the f16 bits S.0EEEE.MMM0000000 (the e4m3 value · 2^-8, subnormals included; the driver folds
// 2^8 into the scales, so fl(f16 · 256s) == fl(e4m3 · s) exactly), NaN codes (f16 ±1.875) get
// f16 NaN bits, and vcvtph2ps widens. Vector k, lane j holds chunk column (k & 1) · 16 +
// (k >> 1) · 8 + j. It replaced a shuffle-free decode by 32-bit shifts with an integer exponent
// rebias, whose subnormal fix-up (blend of a second FMA) and NaN/sign handling cost 13 operations
// per 8 weights (Zen 4, one thread, avx2 path: 6.0 GB/s cold). kPatchNan false: for bytes known to
// hold no NaN code (WeightView::fp8_nan_free), the same values without the compares.
template <bool kPatchNan = true>
GLM_AVX2_F16C_INLINE void DecodeFp8(__m256i raw, const float* s, __m256 (&v)[4]) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i keep = _mm256_set1_epi16(static_cast<short>(0xbfff));
  const __m256i abs16 = _mm256_set1_epi16(0x7fff), nan16 = _mm256_set1_epi16(0x3f80);
  const __m256i quiet = _mm256_set1_epi16(0x7e00);
  __m256i lo = _mm256_and_si256(_mm256_srai_epi16(_mm256_unpacklo_epi8(zero, raw), 1), keep);
  __m256i hi = _mm256_and_si256(_mm256_srai_epi16(_mm256_unpackhi_epi8(zero, raw), 1), keep);
  if constexpr (kPatchNan) {  // 0x3f80 | 0x7e00 = 0x7f80: an f16 NaN, which vcvtph2ps keeps
    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(lo, abs16), nan16), quiet));
    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(hi, abs16), nan16), quiet));
  }
  v[0] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(lo)), _mm256_load_ps(s));
  v[1] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(lo, 1)), _mm256_load_ps(s + 8));
  v[2] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(hi)), _mm256_load_ps(s + 16));
  v[3] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(hi, 1)), _mm256_load_ps(s + 24));
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
