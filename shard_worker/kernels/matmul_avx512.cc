#include "shard_worker/kernels/matmul_avx512.h"

// GCC 12's own AVX-512 intrinsics self-initialise `__Y` (GCC PR 105593) and warn once inlined;
// the warnings are about the header, not this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <limits>
#include <utility>

#include "shard_worker/kernels/matmul_simd_driver.h"

// Everything below that touches zmm registers carries this target; nothing here is templated on
// std types, so no COMDAT function compiled for AVX-512 can be picked by the linker for callers
// on other CPUs (all kernels have internal linkage).
#define GLM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define GLM_AVX512_INLINE GLM_AVX512 __attribute__((always_inline)) inline

namespace glm::kernels {
namespace {

constexpr int kChunk = 32;  // columns per step: two 16-lane vectors

// Token tiles of at most 4 and rows per group R: at least 8 independent FMA chains (R·T), at
// most 26 live zmm (R·T accumulators + 2·R weights), and each activation load shared by R rows.
// Activations of 8 tokens × 4096+ columns do not fit L1, so R matters: at T = 8 one pass of
// R = 1 would re-read 128 KiB of activations from L2 per row; two tiles of 4 tokens × R = 4 read
// 32 KiB per row (the rows' second pass hits L1/L2).
constexpr int kTileTokens = 4;
constexpr int kGroupRows[kMaxTileTokens + 1] = {0, 8, 4, 4, 4, 0, 0, 0, 0};

// e4m3fn → f16 bits S.EEEE.MMM → S.0EEEE.MMM0000000: the f16 value is the e4m3 value · 2^-8
// (subnormals included); the driver folds 2^8 into the scales. NaN codes (|b| = 0x7f) would
// decode as 480·2^-8, so they are patched through a mask.
GLM_AVX512_INLINE void DecodeFp8(__m256i raw, __m512 s0, __m512 s1, __m512& v0, __m512& v1) {
  const __mmask32 nan =
      _mm256_cmpeq_epi8_mask(_mm256_or_si256(raw, _mm256_set1_epi8(static_cast<char>(0x80))),
                             _mm256_set1_epi8(-1));
  __m512i h = _mm512_cvtepu8_epi16(raw);
  h = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(h, 8), 1),
                       _mm512_set1_epi16(static_cast<short>(0xbfff)));
  const __m512 qnan = _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN());
  v0 = _mm512_mask_mul_ps(qnan, static_cast<__mmask16>(~nan),
                          _mm512_cvtph_ps(_mm512_castsi512_si256(h)), s0);
  v1 = _mm512_mask_mul_ps(qnan, static_cast<__mmask16>(~nan >> 16),
                          _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), s1);
}

// Two f32 vectors of the chunk at column c of one row; n < kChunk: only n real columns (masked
// loads read nothing past them and yield zeros).
template <DType D, bool kTail>
GLM_AVX512_INLINE void LoadChunk(const uint8_t* row, int64_t c, int n, __m512 s0, __m512 s1,
                                 __m512& v0, __m512& v1) {
  const __mmask32 m = kTail ? static_cast<__mmask32>((uint64_t{1} << n) - 1) : ~__mmask32{0};
  if constexpr (D == DType::kF32) {
    const float* p = reinterpret_cast<const float*>(row) + c;
    if constexpr (kTail) {
      v0 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), p);
      v1 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> 16), p + 16);
    } else {
      v0 = _mm512_loadu_ps(p);
      v1 = _mm512_loadu_ps(p + 16);
    }
  } else if constexpr (D == DType::kBF16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + c;
    __m512i raw = kTail ? _mm512_maskz_loadu_epi16(m, p) : _mm512_loadu_si512(p);
    v0 = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));  // even columns
    v1 = _mm512_castsi512_ps(
        _mm512_and_si512(raw, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));  // odd
  } else {
    const uint8_t* p = row + c;
    __m256i raw = kTail ? _mm256_maskz_loadu_epi8(m, p)
                        : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    DecodeFp8(raw, s0, s1, v0, v1);
  }
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

// One step: FMA chunk c of R rows into the R × T accumulators (first vector, then second).
template <DType D, int R, int T, bool kTail>
GLM_AVX512_INLINE void Step(const uint8_t* w, int64_t row_bytes, int64_t c, int n,
                            const float* xp, int64_t pitch, const float* scales,
                            __m512 (&acc)[R][T]) {
  constexpr int64_t kEs = DTypeSize(D);
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  if constexpr (D == DType::kF8E4M3) {
    s0 = _mm512_loadu_ps(scales + c);
    s1 = _mm512_loadu_ps(scales + c + 16);
  }
  __m512 v0[R], v1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    LoadChunk<D, kTail>(w + r * row_bytes + c * kEs, 0, n, s0, s1, v0[r], v1[r]);
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const __m512 x0 = _mm512_loadu_ps(xp + t * pitch + c);
    const __m512 x1 = _mm512_loadu_ps(xp + t * pitch + c + 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
      acc[r][t] = _mm512_fmadd_ps(v1[r], x1, _mm512_fmadd_ps(v0[r], x0, acc[r][t]));
  }
}

// SimdBlockFn for R rows × T tokens (see matmul_simd_driver.h).
template <DType D, int R, int T>
GLM_AVX512 void Block(const uint8_t* w, int64_t row_bytes, int64_t cols, const float* xp,
                      int64_t pitch, const float* scales, int64_t pf_bytes, float* y,
                      int64_t y_stride) {
  constexpr int64_t kEs = DTypeSize(D);
  __m512 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();

  const int64_t full = cols / kChunk * kChunk;
  // Past the end of its row a stream's prefetch moves to the same row of the next group.
  const int64_t pf_wrap = (R - 1) * row_bytes;
  for (int64_t c = 0; c < full; c += kChunk) {
    if (pf_bytes != 0) {
      int64_t off = c * kEs + pf_bytes;
      if (off >= row_bytes) off += pf_wrap;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const char* p = reinterpret_cast<const char*>(w + r * row_bytes + off);
        _mm_prefetch(p, _MM_HINT_T0);
        if constexpr (kEs == 4) _mm_prefetch(p + 64, _MM_HINT_T0);
      }
    }
    Step<D, R, T, false>(w, row_bytes, c, kChunk, xp, pitch, scales, acc);
  }
  if (full < cols)
    Step<D, R, T, true>(w, row_bytes, full, static_cast<int>(cols - full), xp, pitch, scales,
                        acc);

#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) y[t * y_stride + r] = Reduce(acc[r][t]);
}

template <DType D, int... Ts>
void FillDType(SimdKernelSet& k, std::integer_sequence<int, Ts...>) {
  const int d = static_cast<int>(D);
  ((k.grouped[d][Ts + 1] = &Block<D, kGroupRows[Ts + 1], Ts + 1>), ...);
  ((k.single[d][Ts + 1] = &Block<D, 1, Ts + 1>), ...);
}

SimdKernelSet MakeKernelSet() {
  SimdKernelSet k;
  k.chunk_cols = kChunk;
  k.bf16_even_odd = true;
  k.fp8_scale_factor = 256.0f;
  k.max_tile_tokens = kTileTokens;
  for (int t = 0; t <= kMaxTileTokens; ++t) k.rows_per_group[t] = kGroupRows[t];
  auto tiles = std::make_integer_sequence<int, kTileTokens>();
  FillDType<DType::kF32>(k, tiles);
  FillDType<DType::kBF16>(k, tiles);
  FillDType<DType::kF8E4M3>(k, tiles);
  return k;
}

}  // namespace

bool CpuSupportsAvx512MatMul() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

void MatMulRowsAvx512(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                      int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  static const SimdKernelSet kernels = MakeKernelSet();
  RunSimdMatMul(kernels, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
}

}  // namespace glm::kernels
