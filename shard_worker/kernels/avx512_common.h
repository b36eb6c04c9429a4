// AVX-512 pieces shared by the decode (matmul_avx512.cc) and prefill (gemm_avx512.cc) kernels:
// both must decode FP8 and reduce lanes with exactly the same arithmetic, since the engine
// relies on a token's result being the same in a batch of 1 or of 2048. Include only from the
// AVX-512 kernel files (the functions are static: each file keeps its own internal copy).
#ifndef GLM_SHARD_WORKER_KERNELS_AVX512_COMMON_H_
#define GLM_SHARD_WORKER_KERNELS_AVX512_COMMON_H_

#include <immintrin.h>

#include <cstdint>

#include <limits>

// Everything that touches zmm registers carries this target; with internal linkage and no std
// templates inside, no function compiled for AVX-512 can be picked by the linker for callers on
// other CPUs.
#define GLM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define GLM_AVX512_INLINE GLM_AVX512 __attribute__((always_inline)) static inline
// The same plus AVX512-VBMI (byte permutes from two registers: vpermi2b), for the FP8 table decode;
// only called where CpuSupportsAvx512Vbmi() holds.
#define GLM_AVX512_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx2,fma,f16c")))
#define GLM_AVX512_VBMI_INLINE GLM_AVX512_VBMI __attribute__((always_inline)) static inline

namespace glm::kernels {

// FP8 e4m3fn, 64 bytes → 4 × 16 f32 times the scales s: an in-lane byte unpack puts each byte
// in the high half of a 16-bit word, one arithmetic shift and a mask make it the f16 bits
// S.0EEEE.MMM0000000 (the e4m3 value · 2^-8, subnormals included; the driver folds 2^8 into the
// scales, so fl(f16 · 256s) == fl(e4m3 · s) exactly), and vcvtph2ps widens. Lane order: vector
// k, lane j holds chunk column ((k & 1) · 2 + j / 8) · 16 + (k >> 1) · 8 + j % 8. NaN codes
// (f16 ±1.875) are patched. (A shuffle-free decode by 32-bit shifts and an integer exponent
// rebias measured no faster on Zen 5 or Sapphire Rapids: it needs subnormal fix-ups.)
// kPatchNan false: for bytes known to hold no NaN code (WeightView::fp8_nan_free); the same
// values, without the per-half compares and masked multiplies.
template <bool kPatchNan = true>
GLM_AVX512_INLINE void DecodeFp8(__m512i raw, const __m512 (&s)[4], __m512 (&v)[4]) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i keep = _mm512_set1_epi16(static_cast<short>(0xbfff));
  const __m512i abs16 = _mm512_set1_epi16(0x7fff);
  const __m512i nan16 = _mm512_set1_epi16(0x3f80);
  __m512i lo = _mm512_and_si512(_mm512_srai_epi16(_mm512_unpacklo_epi8(zero, raw), 1), keep);
  __m512i hi = _mm512_and_si512(_mm512_srai_epi16(_mm512_unpackhi_epi8(zero, raw), 1), keep);
  if constexpr (!kPatchNan) {
    v[0] = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(lo)), s[0]);
    v[1] = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(lo, 1)), s[1]);
    v[2] = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(hi)), s[2]);
    v[3] = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(hi, 1)), s[3]);
    return;
  }
  const __mmask32 ok_lo = _mm512_cmpneq_epi16_mask(_mm512_and_si512(lo, abs16), nan16);
  const __mmask32 ok_hi = _mm512_cmpneq_epi16_mask(_mm512_and_si512(hi, abs16), nan16);
  const __m512 qnan = _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN());
  v[0] = _mm512_mask_mul_ps(qnan, static_cast<__mmask16>(ok_lo),
                            _mm512_cvtph_ps(_mm512_castsi512_si256(lo)), s[0]);
  v[1] = _mm512_mask_mul_ps(qnan, static_cast<__mmask16>(ok_lo >> 16),
                            _mm512_cvtph_ps(_mm512_extracti64x4_epi64(lo, 1)), s[1]);
  v[2] = _mm512_mask_mul_ps(qnan, static_cast<__mmask16>(ok_hi),
                            _mm512_cvtph_ps(_mm512_castsi512_si256(hi)), s[2]);
  v[3] = _mm512_mask_mul_ps(qnan, static_cast<__mmask16>(ok_hi >> 16),
                            _mm512_cvtph_ps(_mm512_extracti64x4_epi64(hi, 1)), s[3]);
}

// BF16 bits of the e4m3fn magnitude a (0..127), split into high and low bytes: every e4m3 value
// is a BF16 value (3 mantissa bits of 7; exponents 2^-9 .. 2^8, subnormals included), and the
// NaN code 0x7f is BF16's quiet NaN.
constexpr uint16_t Fp8MagnitudeBf16Bits(int a) {
  const int e = a >> 3, m = a & 7;
  if (a == 0x7f) return 0x7fc0;
  if (e > 0) return static_cast<uint16_t>(((e + 120) << 7) | (m << 4));  // 2^(e-7)·(1 + m/8)
  if (m == 0) return 0;
  const int p = m >= 4 ? 2 : m >= 2 ? 1 : 0;  // m·2^-9 = 2^(p-9)·(m / 2^p)
  return static_cast<uint16_t>(((118 + p) << 7) | ((m << (7 - p)) & 0x7f));
}
struct Fp8ByteTables {
  alignas(64) uint8_t hi[128];
  alignas(64) uint8_t lo[128];
};
constexpr Fp8ByteTables MakeFp8ByteTables() {
  Fp8ByteTables t{};
  for (int a = 0; a < 128; ++a) {
    t.hi[a] = static_cast<uint8_t>(Fp8MagnitudeBf16Bits(a) >> 8);
    t.lo[a] = static_cast<uint8_t>(Fp8MagnitudeBf16Bits(a) & 0xff);
  }
  return t;
}
inline constexpr Fp8ByteTables kFp8ByteTables = MakeFp8ByteTables();

// DecodeFp8 by table (needs VBMI): two vpermi2b look the magnitude's BF16 high and low bytes up
// (index bits 0-6; the sign bit is ORed into the high byte), two byte unpacks make BF16 words, and
// shift / mask widen them to f32 — no vcvtph2ps, whose cost bounded the f16 decode (Zen 4, one
// core, cache-resident 1024x4096: 13.5 → 17.3 GB/s at one token). The values are exactly the f16
// decode's (fl(e4m3 · s), scale factor 1), NaN codes give NaN with no patch. Lane order: vector k,
// lane j holds chunk column (j / 4) · 16 + (k >> 1) · 8 + 2 · (j % 4) + (k & 1).
GLM_AVX512_VBMI_INLINE void DecodeFp8ByTable(__m512i raw, const __m512 (&s)[4], __m512 (&v)[4]) {
  const __m512i hi0 = _mm512_load_si512(kFp8ByteTables.hi), hi1 = _mm512_load_si512(kFp8ByteTables.hi + 64);
  const __m512i lo0 = _mm512_load_si512(kFp8ByteTables.lo), lo1 = _mm512_load_si512(kFp8ByteTables.lo + 64);
  // hi | (raw & 0x80): ternary-logic truth table A | (B & C).
  const __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(hi0, raw, hi1), raw,
                                               _mm512_set1_epi8(static_cast<char>(0x80)), 0xf8);
  const __m512i lo = _mm512_permutex2var_epi8(lo0, raw, lo1);
  const __m512i w0 = _mm512_unpacklo_epi8(lo, hi), w1 = _mm512_unpackhi_epi8(lo, hi);
  const __m512i odd = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  v[0] = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), s[0]);
  v[1] = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(w0, odd)), s[1]);
  v[2] = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)), s[2]);
  v[3] = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(w1, odd)), s[3]);
}

// Chunk column of each of the 64 lanes (vector k = i / 16, lane j = i % 16) of DecodeFp8 (f16)
// or DecodeFp8ByTable.
inline void FillFp8Order(bool by_table, int16_t* order) {
  for (int i = 0; i < 64; ++i) {
    const int k = i / 16, j = i % 16;
    order[i] = static_cast<int16_t>(by_table ? (j / 4) * 16 + (k >> 1) * 8 + 2 * (j % 4) + (k & 1)
                                             : ((k & 1) * 2 + j / 8) * 16 + (k >> 1) * 8 + j % 8);
  }
}

// Lanes [0, min(16, left)) of a 16-lane vector: the mask of a loop's last, partial step.
inline __mmask16 TailMask16(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1);
}

// 16 lanes reduced 16 → 8 → 4 → 2 → 1 in one fixed tree.
GLM_AVX512_INLINE float Reduce(__m512 s) {
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s),
                           _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

// Reduce() of 16 accumulators at once: lane i of the result is bit-identical to Reduce(a[i])
// (every level adds the same lane pairs as Reduce's tree: i + i+8, i + i+4, i + i+2, i + i+1),
// in 15 vector adds and 31 shuffles instead of 16 separate trees. Unused accumulators may be
// left zero: no lane of the result reads another accumulator's lanes.
GLM_AVX512_INLINE __m512 ReduceLanes16(const __m512 (&a)[16]) {
  __m512 s1[8], s2[4], s3[2];
#pragma GCC unroll 8
  for (int m = 0; m < 8; ++m)  // [a[2m] lanes i+(i+8) | a[2m+1] lanes i+(i+8)], i < 8
    s1[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0x44),
                          _mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0xEE));
#pragma GCC unroll 4
  for (int n = 0; n < 4; ++n)  // 128-bit lane L: accumulator 4n+L, lanes i+(i+4), i < 4
    s2[n] = _mm512_add_ps(_mm512_shuffle_f32x4(s1[2 * n], s1[2 * n + 1], 0x88),
                          _mm512_shuffle_f32x4(s1[2 * n], s1[2 * n + 1], 0xDD));
#pragma GCC unroll 2
  for (int p = 0; p < 2; ++p)  // lane L: {acc 8p+L: i+(i+2), i < 2; acc 8p+4+L: same}
    s3[p] = _mm512_add_ps(_mm512_shuffle_ps(s2[2 * p], s2[2 * p + 1], 0x44),
                          _mm512_shuffle_ps(s2[2 * p], s2[2 * p + 1], 0xEE));
  // Element 4L+k holds accumulator 4k+L's total; permute so lane i holds accumulator i.
  const __m512 s4 = _mm512_add_ps(_mm512_shuffle_ps(s3[0], s3[1], 0x88), _mm512_shuffle_ps(s3[0], s3[1], 0xDD));
  const __m512i to_acc = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(to_acc, s4);
}

// y[t·y_stride + r] = Reduce(acc[r][t]) for r < n_rows (≤ R), t < T: one ReduceLanes16 per 16
// accumulators when there are at least 8 (the decode and GEMM tiles), separate trees otherwise.
// Same values either way.
template <int R, int T>
GLM_AVX512_INLINE void StoreReduced(const __m512 (&acc)[R][T], int n_rows, float* y, int64_t y_stride) {
  if constexpr (R * T >= 8) {
    constexpr int kPerPass = 16;
    constexpr int kTotal = R * T;
#pragma GCC unroll 4
    for (int base = 0; base < kTotal; base += kPerPass) {
      __m512 a[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) a[i] = base + i < kTotal ? acc[(base + i) / T][(base + i) % T] : _mm512_setzero_ps();
      alignas(64) float out[16];
      _mm512_store_ps(out, ReduceLanes16(a));
      for (int i = 0; i < 16 && base + i < kTotal; ++i) {  // bounds known: unrolled without a pragma
        const int r = (base + i) / T, t = (base + i) % T;
        if (r < n_rows) y[t * y_stride + r] = out[i];
      }
    }
  } else {
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        if (r < n_rows) y[t * y_stride + r] = Reduce(acc[r][t]);
  }
}

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_AVX512_COMMON_H_
