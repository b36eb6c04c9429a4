#include "shard_worker/kernels/matmul_avx2.h"

#include <immintrin.h>

#include <cstring>
#include <limits>
#include <utility>

#include "shard_worker/kernels/matmul_simd_driver.h"

// All kernels have internal linkage and use no std templates, so no AVX2 code can be merged
// into callers built for the baseline ISA.
#define GLM_AVX2 __attribute__((target("avx2,fma,f16c")))
#define GLM_AVX2_INLINE GLM_AVX2 __attribute__((always_inline)) inline

namespace glm::kernels {
namespace {

constexpr int kChunk = 16;  // columns per step: two 8-lane vectors
// 16 ymm registers: tiles of at most 4 tokens and R rows per group so that R·T accumulators plus
// one row's 2 weight vectors fit, with 6 to 8 independent FMA chains.
constexpr int kTileTokens = 4;
constexpr int kGroupRows[kMaxTileTokens + 1] = {0, 8, 4, 2, 2, 0, 0, 0, 0};

// e4m3fn → f16 bits (value · 2^-8, the driver folds 2^8 into the scales), → f32, times the
// column scales. NaN codes decode to ±1.875 (480 · 2^-8, no finite e4m3 value) and are patched.
GLM_AVX2_INLINE void DecodeFp8(__m128i raw, __m256 s0, __m256 s1, __m256& v0, __m256& v1) {
  __m256i h = _mm256_cvtepu8_epi16(raw);
  h = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(h, 8), 1),
                       _mm256_set1_epi16(static_cast<short>(0xbfff)));
  const __m256 a0 = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
  const __m256 a1 = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 nan_code = _mm256_set1_ps(1.875f);
  const __m256 n0 = _mm256_cmp_ps(_mm256_and_ps(a0, abs_mask), nan_code, _CMP_EQ_OQ);
  const __m256 n1 = _mm256_cmp_ps(_mm256_and_ps(a1, abs_mask), nan_code, _CMP_EQ_OQ);
  v0 = _mm256_or_ps(_mm256_mul_ps(a0, s0), n0);  // all-ones bits are a NaN
  v1 = _mm256_or_ps(_mm256_mul_ps(a1, s1), n1);
}

// Two f32 vectors of the 16-column chunk starting at p (p points at full, readable bytes).
template <DType D>
GLM_AVX2_INLINE void LoadChunk(const uint8_t* p, __m256 s0, __m256 s1, __m256& v0, __m256& v1) {
  if constexpr (D == DType::kF32) {
    v0 = _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    v1 = _mm256_loadu_ps(reinterpret_cast<const float*>(p) + 8);
  } else if constexpr (D == DType::kBF16) {
    __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    v0 = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));  // even columns
    v1 = _mm256_castsi256_ps(
        _mm256_and_si256(raw, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));  // odd
  } else {
    DecodeFp8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), s0, s1, v0, v1);
  }
}

// 8 lanes reduced 8 → 4 → 2 → 1 in one fixed tree.
GLM_AVX2_INLINE float Reduce(__m256 s) {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

// FMA chunk c of R rows (row i's chunk bytes at rows[i]) into the R × T accumulators, first
// vector then second.
template <DType D, int R, int T>
GLM_AVX2_INLINE void Step(const uint8_t* const (&rows)[R], int64_t c, const float* xp,
                          int64_t pitch, const float* scales, __m256 (&acc)[R][T]) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  if constexpr (D == DType::kF8E4M3) {
    s0 = _mm256_loadu_ps(scales + c);
    s1 = _mm256_loadu_ps(scales + c + 8);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    __m256 v0, v1;
    LoadChunk<D>(rows[r], s0, s1, v0, v1);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      __m256 a = _mm256_fmadd_ps(v0, _mm256_loadu_ps(xp + t * pitch + c), acc[r][t]);
      acc[r][t] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(xp + t * pitch + c + 8), a);
    }
  }
}

// SimdBlockFn for R rows × T tokens (see matmul_simd_driver.h).
template <DType D, int R, int T>
GLM_AVX2 void Block(const uint8_t* w, int64_t row_bytes, int64_t cols, const float* xp,
                    int64_t pitch, const float* scales, int64_t pf_bytes, float* y,
                    int64_t y_stride) {
  constexpr int64_t kEs = DTypeSize(D);
  __m256 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();

  const int64_t full = cols / kChunk * kChunk;
  const int64_t pf_wrap = (R - 1) * row_bytes;  // past its row, prefetch the next group's
  const uint8_t* rows[R];
  for (int64_t c = 0; c < full; c += kChunk) {
    if (pf_bytes != 0) {
      int64_t off = c * kEs + pf_bytes;
      if (off >= row_bytes) off += pf_wrap;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const char* p = reinterpret_cast<const char*>(w + r * row_bytes + off);
        _mm_prefetch(p, _MM_HINT_T0);
        if constexpr (kEs == 4) _mm_prefetch(p + 32, _MM_HINT_T0);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) rows[r] = w + r * row_bytes + c * kEs;
    Step<D, R, T>(rows, c, xp, pitch, scales, acc);
  }
  if (full < cols) {
    // Tail: copy the remaining bytes of each row into zeroed chunks (never read past the row).
    alignas(32) uint8_t tail[R][kChunk * kEs];
    std::memset(tail, 0, sizeof tail);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      std::memcpy(tail[r], w + r * row_bytes + full * kEs, (cols - full) * kEs);
      rows[r] = tail[r];
    }
    Step<D, R, T>(rows, full, xp, pitch, scales, acc);
  }

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

bool CpuSupportsAvx2MatMul() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

void MatMulRowsAvx2(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                    int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  static const SimdKernelSet kernels = MakeKernelSet();
  RunSimdMatMul(kernels, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
}

}  // namespace glm::kernels
