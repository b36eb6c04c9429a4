#include "shard_worker/kernels/matmul_quant_avx2.h"

#include <immintrin.h>

#include <cstring>
#include <utility>

#include "shard_worker/kernels/avx2_common.h"
#include "shard_worker/kernels/matmul_quant_driver.h"

// Internal linkage and no std templates inside the target region (see matmul_avx2.cc).
#define GLM_Q256 GLM_AVX2
#define GLM_Q256_INLINE GLM_AVX2_INLINE

namespace glm::kernels {
namespace {

constexpr int kLanes = 8;
constexpr int kChunk = 32;  // both formats: 32 columns, four vectors, per step
constexpr int64_t ByteOffset(DType d, int64_t c) { return d == DType::kI8 ? c : c / 2; }

// 16 ymm registers: R·T accumulators plus the rows' scales and one chunk's decoded vectors.
constexpr int kTileTokens = 4;
constexpr int kGroupRows[kQuantMaxTileTokens + 1] = {0, 4, 4, 2, 2};

template <int T>
GLM_Q256_INLINE void FmaTokens(__m256 v, const float* x, int64_t pitch, __m256 (&acc)[T]) {
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(v, _mm256_load_ps(x + t * pitch), acc[t]);
}

// One 32-column chunk of R rows (row i's chunk bytes at rows[i], all readable), vector 0 first.
template <DType D, int R, int T>
GLM_Q256_INLINE void Step(const uint8_t* const (&rows)[R], int64_t c, const float* xp,
                          int64_t pitch, const __m256 (&s)[R], const __m256 (&m)[R],
                          __m256 (&acc)[R][T]) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    __m256 v[4];
    if constexpr (D == DType::kI8) {
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rows[r] + 8 * k));
        v[k] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw)), s[r]);
      }
    } else {
      // Bytes 0..7 hold columns 0..7 (low nibbles) and 16..23 (high), bytes 8..15 columns 8..15
      // and 24..31.
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r]));
      const __m256i a = _mm256_cvtepu8_epi32(raw);
      const __m256i b = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(raw, raw));
      const __m256i low4 = _mm256_set1_epi32(0xf);
      v[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(a, low4)), s[r], m[r]);
      v[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b, low4)), s[r], m[r]);
      v[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(a, 4)), s[r], m[r]);
      v[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4)), s[r], m[r]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) FmaTokens<T>(v[k], xp + c + k * kLanes, pitch, acc[r]);
  }
}

// QuantBlockFn for R rows × T tokens (see matmul_quant_driver.h).
template <DType D, int R, int T>
GLM_Q256 void Block(const uint8_t* w, int64_t row_bytes, const float* scales, int64_t sstride,
                    int64_t cols, int64_t group, const float* xp, int64_t pitch, int64_t pf_bytes,
                    float* y, int64_t y_stride) {
  __m256 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();

  const int64_t pf_wrap = (R - 1) * row_bytes;
  const uint8_t* rows[R];
  int64_t gi = 0;
  for (int64_t g0 = 0; g0 < cols; g0 += group, ++gi) {
    __m256 s[R], m[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      s[r] = _mm256_set1_ps(scales[r * sstride + gi]);
      m[r] = D == DType::kI4 ? _mm256_mul_ps(s[r], _mm256_set1_ps(-8.0f)) : s[r];
    }
    const int64_t g1 = g0 + group < cols ? g0 + group : cols;
    int64_t c = g0;
    for (; c + kChunk <= g1; c += kChunk) {
      const int64_t boff = ByteOffset(D, c);
      if (pf_bytes != 0 && (boff & 63) == 0) {
        int64_t off = boff + pf_bytes;
        if (off >= row_bytes) off += pf_wrap;
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(w + r * row_bytes + off), _MM_HINT_T0);
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) rows[r] = w + r * row_bytes + boff;
      Step<D, R, T>(rows, c, xp, pitch, s, m, acc);
    }
    if (c < g1) {
      // kI8 tail: copy the row's remaining bytes into zeroed chunks (never read past the row).
      // kI4 rows are padded to whole blocks and read in place.
      alignas(32) uint8_t tail[R][kChunk];
      const int64_t boff = ByteOffset(D, c);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        if constexpr (D == DType::kI8) {
          std::memset(tail[r], 0, kChunk);
          std::memcpy(tail[r], w + r * row_bytes + boff, g1 - c);
          rows[r] = tail[r];
        } else {
          rows[r] = w + r * row_bytes + boff;
        }
      }
      Step<D, R, T>(rows, c, xp, pitch, s, m, acc);
    }
  }

#pragma GCC unroll 4
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) y[t * y_stride + r] = Reduce(acc[r][t]);
}

template <DType D, int... Ts>
void FillDType(QuantKernelSet& k, std::integer_sequence<int, Ts...>) {
  const int d = D == DType::kI8 ? 0 : 1;
  k.chunk_cols[d] = kChunk;
  ((k.rows_per_group[d][Ts + 1] = kGroupRows[Ts + 1]), ...);
  ((k.grouped[d][Ts + 1] = &Block<D, kGroupRows[Ts + 1], Ts + 1>), ...);
  ((k.single[d][Ts + 1] = &Block<D, 1, Ts + 1>), ...);
}

QuantKernelSet MakeKernelSet() {
  QuantKernelSet k;
  k.max_tile_tokens = kTileTokens;
  auto tiles = std::make_integer_sequence<int, kTileTokens>();
  FillDType<DType::kI8>(k, tiles);
  FillDType<DType::kI4>(k, tiles);
  return k;
}

}  // namespace

void MatMulRowsQuantAvx2(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                         int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  static const QuantKernelSet kernels = MakeKernelSet();
  RunQuantMatMul(kernels, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
}

}  // namespace glm::kernels
