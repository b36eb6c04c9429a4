#include "shard_worker/kernels/quantize_avx2.h"

#include <algorithm>
#include <limits>

#include "shard_worker/kernels/avx2_common.h"
#include "shard_worker/kernels/quantize.h"

namespace glm::kernels {
namespace {

// Lanes [0, n) of w[i..): mask for maskload.
GLM_AVX2_INLINE __m256i TailMask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

GLM_AVX2_INLINE __m256 LoadChunk(const float* w, int64_t i, int64_t n) {
  return i + 8 <= n ? _mm256_loadu_ps(w + i) : _mm256_maskload_ps(w + i, TailMask(n - i));
}

GLM_AVX2_INLINE __m256 Codes(__m256 x, __m256 inv, __m256 low, __m256 high) {
  return _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x, inv), low), high),
                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// q[0..32) = the codes of the 4 chunks x[0..4): in [-128, 127], so the saturating packs keep
// them; the permute undoes the packs' lane order.
GLM_AVX2_INLINE void StoreCodes32(const __m256* x, __m256 inv, __m256 low, __m256 high, int8_t* q) {
  const __m256i a = _mm256_cvtps_epi32(Codes(x[0], inv, low, high));
  const __m256i b = _mm256_cvtps_epi32(Codes(x[1], inv, low, high));
  const __m256i c = _mm256_cvtps_epi32(Codes(x[2], inv, low, high));
  const __m256i d = _mm256_cvtps_epi32(Codes(x[3], inv, low, high));
  const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                      _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// err[j] for up to 8 scales at once: M accumulators stay in registers over the group (a tail's
// missing lanes read 0, so q = 0, d = 0 and the lane sums are unchanged), then the lane tree of
// all of them by horizontal adds: hadd(hadd(a, b), hadd(c, d)) holds ((l0 + l1) + (l2 + l3)) in
// the low half and ((l4 + l5) + (l6 + l7)) in the high half of each, and their sum is the tree.
template <int M>
GLM_AVX2_INLINE void ScaleSearchBlock(const float* w, int64_t n, const float* scales, float lo, float hi,
                                      float* err) {
  __m256 acc[8], inv[M], sc[M];
  for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
  for (int j = 0; j < M; ++j) {
    sc[j] = _mm256_set1_ps(scales[j]);
    inv[j] = _mm256_set1_ps(1.0f / scales[j]);
  }
  const __m256 low = _mm256_set1_ps(lo), high = _mm256_set1_ps(hi);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 x = LoadChunk(w, i, n);
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) {
      const __m256 d = _mm256_fnmadd_ps(Codes(x, inv[j], low, high), sc[j], x);  // x - q·s, one rounding
      acc[j] = _mm256_fmadd_ps(d, d, acc[j]);
    }
  }
  const __m256 q0 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
  const __m256 q1 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
  alignas(32) float out[8];
  _mm_store_ps(out, _mm_add_ps(_mm256_castps256_ps128(q0), _mm256_extractf128_ps(q0, 1)));
  _mm_store_ps(out + 4, _mm_add_ps(_mm256_castps256_ps128(q1), _mm256_extractf128_ps(q1, 1)));
  for (int j = 0; j < M; ++j) err[j] = out[j];
}

// The common group in one pass, as QuantizeGroupI8 / QuantizeGroupI4 (quantize.cc) compute it:
// the group's C chunks of 8 stay in registers from the max through the rounding, and no piece is
// called through a pointer. A group that needs the general path's care returns false untouched.
template <int C, int M>
GLM_AVX2_F16C __attribute__((always_inline)) static inline bool QuantizeGroupFast(const float* w, bool extreme_base,
                                                                                  float divisor, const float* mult,
                                                                                  float lo, float hi, int8_t* q,
                                                                                  uint16_t* scale) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 x[C], amax = _mm256_setzero_ps(), unordered = _mm256_setzero_ps();
  for (int c = 0; c < C; ++c) {
    x[c] = _mm256_loadu_ps(w + 8 * c);
    unordered = _mm256_or_ps(unordered, _mm256_cmp_ps(x[c], x[c], _CMP_UNORD_Q));
    amax = _mm256_max_ps(_mm256_and_ps(x[c], abs_mask), amax);
  }
  if (_mm256_movemask_ps(unordered) != 0) return false;  // NaN: the general path's NaN scale
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float top = _mm_cvtss_f32(m);
  if (!(top > 0.0f) || !(top <= std::numeric_limits<float>::max())) return false;  // all zero, or inf
  float base = top / divisor;
  if (extreme_base) {  // the first value of the largest magnitude, with its sign
    const __m256 target = _mm256_set1_ps(top);
    for (int c = 0; c < C; ++c) {
      const int hits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(x[c], abs_mask), target, _CMP_EQ_OQ));
      if (hits != 0) {
        base = w[8 * c + __builtin_ctz(static_cast<unsigned>(hits))];
        break;
      }
    }
  }
  // The M candidates (lanes past M repeat candidate 0 and are ignored), rounded to f16.
  alignas(32) float products[8];
  for (int j = 0; j < 8; ++j) products[j] = base * mult[j < M ? j : 0];
  const __m128i codes = _mm256_cvtps_ph(_mm256_load_ps(products), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 scales = _mm256_cvtph_ps(codes);
  // Every candidate usable (non-zero, finite), else the general path filters them.
  const __m256 magnitude = _mm256_and_ps(scales, abs_mask);
  const int usable = _mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(magnitude, _mm256_setzero_ps(), _CMP_GT_OQ),
                                                      _mm256_cmp_ps(magnitude, _mm256_set1_ps(65504.0f), _CMP_LE_OQ)));
  if (usable != 0xff) return false;
  alignas(32) float s[8];
  _mm256_store_ps(s, scales);
  float err[8];
  ScaleSearchBlock<M>(w, 8 * C, s, lo, hi, err);
  int best = 0;
  for (int j = 1; j < M; ++j)
    if (err[j] < err[best]) best = j;
  alignas(16) uint16_t f16[8];
  _mm_store_si128(reinterpret_cast<__m128i*>(f16), codes);
  *scale = f16[best];
  const __m256 inv = _mm256_set1_ps(1.0f / s[best]), low = _mm256_set1_ps(lo), high = _mm256_set1_ps(hi);
  for (int c = 0; c < C; c += 4) StoreCodes32(x + c, inv, low, high, q + 8 * c);
  return true;
}

}  // namespace

GLM_AVX2 float AbsMaxAvx2(const float* w, int64_t n, bool* has_nan, float* extreme) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 amax = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 x = LoadChunk(w, i, n);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    amax = _mm256_max_ps(_mm256_and_ps(x, abs_mask), amax);  // a NaN lane keeps amax (the second operand)
  }
  *has_nan = _mm256_movemask_ps(nan) != 0;
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float result = _mm_cvtss_f32(m);
  *extreme = 0.0f;
  if (result > 0.0f) {
    const __m256 target = _mm256_set1_ps(result);
    for (int64_t i = 0; i < n; i += 8) {
      const int hits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(LoadChunk(w, i, n), abs_mask), target, _CMP_EQ_OQ)) &
                       (i + 8 <= n ? 0xff : (1 << (n - i)) - 1);
      if (hits != 0) {
        *extreme = w[i + __builtin_ctz(static_cast<unsigned>(hits))];
        break;
      }
    }
  }
  return result;
}

GLM_AVX2 void RoundGroupAvx2(const float* w, int64_t n, float s, float lo, float hi, int8_t* q) {
  const __m256 inv = _mm256_set1_ps(1.0f / s), low = _mm256_set1_ps(lo), high = _mm256_set1_ps(hi);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 x[4] = {_mm256_loadu_ps(w + i), _mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(w + i + 16),
                         _mm256_loadu_ps(w + i + 24)};
    StoreCodes32(x, inv, low, high, q + i);
  }
  for (; i < n; i += 8) {
    alignas(32) int32_t codes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(codes), _mm256_cvtps_epi32(Codes(LoadChunk(w, i, n), inv, low, high)));
    for (int j = 0; j < 8 && i + j < n; ++j) q[i + j] = static_cast<int8_t>(codes[j]);
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
  for (int j = 0; j < n_scales; j += 8) {
    switch (std::min(8, n_scales - j)) {
      case 1: ScaleSearchBlock<1>(w, n, scales + j, lo, hi, err + j); break;
      case 2: ScaleSearchBlock<2>(w, n, scales + j, lo, hi, err + j); break;
      case 3: ScaleSearchBlock<3>(w, n, scales + j, lo, hi, err + j); break;
      case 4: ScaleSearchBlock<4>(w, n, scales + j, lo, hi, err + j); break;
      case 5: ScaleSearchBlock<5>(w, n, scales + j, lo, hi, err + j); break;
      case 6: ScaleSearchBlock<6>(w, n, scales + j, lo, hi, err + j); break;
      case 7: ScaleSearchBlock<7>(w, n, scales + j, lo, hi, err + j); break;
      default: ScaleSearchBlock<8>(w, n, scales + j, lo, hi, err + j); break;
    }
  }
}

GLM_AVX2_F16C bool QuantizeGroupFastAvx2(DType dtype, const float* w, int64_t n, int8_t* q, uint16_t* scale) {
  if (dtype == DType::kI8) {
    if (n == 64) return QuantizeGroupFast<8, 6>(w, false, 127.0f, kI8ScaleClips, -127.0f, 127.0f, q, scale);
    if (n == 32) return QuantizeGroupFast<4, 6>(w, false, 127.0f, kI8ScaleClips, -127.0f, 127.0f, q, scale);
    return false;
  }
  if (n == 32) return QuantizeGroupFast<4, 8>(w, true, 1.0f, kI4ScaleDivisors, -8.0f, 7.0f, q, scale);
  if (n == 64) return QuantizeGroupFast<8, 8>(w, true, 1.0f, kI4ScaleDivisors, -8.0f, 7.0f, q, scale);
  return false;
}

}  // namespace glm::kernels
