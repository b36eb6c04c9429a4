#include "shard_worker/kernels/gemm_avx512.h"

// GCC 12's AVX-512 intrinsics self-initialise `__Y` (GCC PR 105593); see matmul_avx512.cc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <limits>
#include <utility>

#include "shard_worker/kernels/gemm_driver.h"

// Internal linkage and no std templates inside, as in matmul_avx512.cc.
#define GLM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define GLM_AVX512_INLINE GLM_AVX512 __attribute__((always_inline)) inline

namespace glm::kernels {
namespace {

constexpr int kLanes = 16;
// 4 rows × 6 tokens: 24 accumulators + 4 weight vectors + 1 activation = 29 of 32 zmm; per
// vector step 10 loads (4 from the L2 panel, 6 from L1) feed 24 FMAs.
constexpr int kRows = 4;
constexpr int kTokens = 6;
static_assert(kTokens <= kMaxGemmTokens);

// Must stay the same arithmetic as matmul_avx512.cc's DecodeFp8 (the kernels_test GEMM tests
// compare both paths bit for bit): e4m3 → f16 bits (value · 2^-8) → f32 · s, NaN codes → qNaN.
// Lane order: vector k, lane j holds chunk column ((k & 1) · 2 + j / 8) · 16 + (k >> 1) · 8 + j % 8.
GLM_AVX512_INLINE void DecodeFp8(__m512i raw, const __m512 (&s)[4], __m512 (&v)[4]) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i keep = _mm512_set1_epi16(static_cast<short>(0xbfff));
  const __m512i abs16 = _mm512_set1_epi16(0x7fff);
  const __m512i nan16 = _mm512_set1_epi16(0x3f80);
  __m512i lo = _mm512_and_si512(_mm512_srai_epi16(_mm512_unpacklo_epi8(zero, raw), 1), keep);
  __m512i hi = _mm512_and_si512(_mm512_srai_epi16(_mm512_unpackhi_epi8(zero, raw), 1), keep);
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

// The decode path's reduction tree: 16 → 8 → 4 → 2 → 1.
GLM_AVX512_INLINE float Reduce(__m512 s) {
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s),
                           _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

// F32: natural order, 32-column chunks; pitch is a multiple of 32.
GLM_AVX512 void PackF32(const uint8_t* row, int64_t cols, const float*, int64_t pitch,
                        float* dst) {
  const float* p = reinterpret_cast<const float*>(row);
  for (int64_t c = 0; c < pitch; c += kLanes) {
    const int64_t n = cols - c;
    const __mmask16 m = n >= kLanes ? __mmask16(0xffff) : n <= 0 ? __mmask16(0)
                                                                 : __mmask16((1u << n) - 1);
    _mm512_store_ps(dst + c, _mm512_maskz_loadu_ps(m, p + c));
  }
}

// BF16: 32-column chunks, even columns (lane << 16) then odd ones (lane & 0xffff0000).
GLM_AVX512 void PackBf16(const uint8_t* row, int64_t cols, const float*, int64_t pitch,
                         float* dst) {
  const uint16_t* p = reinterpret_cast<const uint16_t*>(row);
  const __m512i hi_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t c = 0; c < pitch; c += 32) {
    const int64_t n = cols - c;
    const __mmask32 m = n >= 32 ? ~__mmask32(0) : n <= 0 ? __mmask32(0)
                                                          : __mmask32((uint64_t{1} << n) - 1);
    const __m512i raw = _mm512_maskz_loadu_epi16(m, p + c);
    _mm512_store_ps(dst + c, _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16)));
    _mm512_store_ps(dst + c + kLanes, _mm512_castsi512_ps(_mm512_and_si512(raw, hi_mask)));
  }
}

// FP8: 64-column chunks (one cache line) in DecodeFp8's order; `scales` in the same order.
GLM_AVX512 void PackFp8(const uint8_t* row, int64_t cols, const float* scales, int64_t pitch,
                        float* dst) {
  for (int64_t c = 0; c < pitch; c += 64) {
    const int64_t n = cols - c;
    const __mmask64 m = n >= 64 ? ~__mmask64(0) : n <= 0 ? __mmask64(0)
                                                          : __mmask64((uint64_t{1} << n) - 1);
    const __m512i raw = _mm512_maskz_loadu_epi8(m, row + c);
    __m512 s[4], v[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) s[q] = _mm512_load_ps(scales + c + q * kLanes);
    DecodeFp8(raw, s, v);
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) _mm512_store_ps(dst + c + q * kLanes, v[q]);
  }
}

// GemmMicroFn for kRows × T.
template <int T>
GLM_AVX512 void Micro(const float* w, int64_t w_stride, const float* x, int64_t x_stride,
                      int64_t n_vec, float* acc_mem, bool load_acc, bool finish, float* y,
                      int64_t y_stride, int n_rows) {
  __m512 acc[kRows][T];
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      acc[r][t] = load_acc ? _mm512_load_ps(acc_mem + (r * T + t) * kLanes) : _mm512_setzero_ps();

  for (int64_t s = 0; s < n_vec; ++s) {
    __m512 wv[kRows];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) wv[r] = _mm512_load_ps(w + r * w_stride + s * kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_load_ps(x + t * x_stride + s * kLanes);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }

  if (finish) {
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r)
        if (r < n_rows) y[t * y_stride + r] = Reduce(acc[r][t]);
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) _mm512_store_ps(acc_mem + (r * T + t) * kLanes, acc[r][t]);
  }
}

template <int... Ts>
void FillMicro(GemmKernelSet& g, std::integer_sequence<int, Ts...>) {
  ((g.micro[Ts + 1] = &Micro<Ts + 1>), ...);
}

GemmKernelSet MakeGemmKernelSet() {
  GemmKernelSet g;
  g.lanes = kLanes;
  g.rows = kRows;
  g.max_tokens = kTokens;
  g.pack[static_cast<int>(DType::kF32)] = &PackF32;
  g.pack[static_cast<int>(DType::kBF16)] = &PackBf16;
  g.pack[static_cast<int>(DType::kF8E4M3)] = &PackFp8;
  FillMicro(g, std::make_integer_sequence<int, kTokens>());
  return g;
}

}  // namespace

const GemmKernelSet* Avx512GemmKernels() {
  static const GemmKernelSet kernels = MakeGemmKernelSet();
  return &kernels;
}

}  // namespace glm::kernels
