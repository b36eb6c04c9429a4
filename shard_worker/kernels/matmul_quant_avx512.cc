#include "shard_worker/kernels/matmul_quant_avx512.h"

// GCC 12's own AVX-512 intrinsics self-initialise `__Y` (GCC PR 105593) and warn once inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <algorithm>
#include <utility>

#include "shard_worker/kernels/avx512_common.h"
#include "shard_worker/kernels/matmul_quant_driver.h"

// The same target and lane reduction as the BF16/FP8 kernels (avx512_common.h).
#define GLM_Q512 GLM_AVX512
#define GLM_Q512_INLINE GLM_AVX512_INLINE

namespace glm::kernels {
namespace {

constexpr int kLanes = 16;
constexpr int ChunkCols(DType d) { return 32; }
// Byte offset of column c (a chunk start) in a row.
constexpr int64_t ByteOffset(DType d, int64_t c) { return d == DType::kI8 ? c : c / 2; }

// Token tiles of at most 4; R rows per group so that R·T ≥ 8 FMA chains hide the FMA latency and
// each activation load serves R rows (as in matmul_avx512.cc).
constexpr int kTileTokens = 4;
constexpr int kGroupRows[kQuantMaxTileTokens + 1] = {0, 8, 4, 4, 4};

template <int T>
GLM_Q512_INLINE void FmaTokens(__m512 v, const float* x, int64_t pitch, __m512 (&acc)[T]) {
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(v, _mm512_load_ps(x + t * pitch), acc[t]);
}

// One chunk at column c of R rows. kI8 with kTail reads only n < 32 bytes (masked); kI4 rows are
// padded to whole 32-column blocks, so its last chunk is read in full (zero activations beyond
// cols cancel it).
template <DType D, int R, int T, bool kTail>
GLM_Q512_INLINE void Step(const uint8_t* w, int64_t row_bytes, int64_t c, int n, const float* xp,
                          int64_t pitch, const __m512 (&s)[R], const __m512 (&m)[R],
                          __m512 (&acc)[R][T]) {
  if constexpr (D == DType::kI8) {
    const uint32_t mask = kTail ? (uint32_t{1} << n) - 1 : ~uint32_t{0};
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = w + r * row_bytes + c;
#pragma GCC unroll 2
      for (int k = 0; k < 2; ++k) {
        const __m128i raw =
            kTail ? _mm_maskz_loadu_epi8(static_cast<__mmask16>(mask >> (16 * k)), p + 16 * k)
                  : _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
        const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw)), s[r]);
        FmaTokens<T>(v, xp + c + k * kLanes, pitch, acc[r]);
      }
    }
  } else {
    // m[r] is the group's 16-entry table (code - 8) · scale: vpermps looks each code up by the
    // low 4 bits of its lane (the high nibble above them is ignored), no mask or convert needed.
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i raw = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + r * row_bytes + c / 2)));
      const __m512 v0 = _mm512_permutexvar_ps(raw, m[r]);
      const __m512 v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(raw, 4), m[r]);
      FmaTokens<T>(v0, xp + c, pitch, acc[r]);
      FmaTokens<T>(v1, xp + c + kLanes, pitch, acc[r]);
    }
  }
}

// QuantBlockFn for R rows × T tokens (see matmul_quant_driver.h).
template <DType D, int R, int T>
GLM_Q512 void Block(const uint8_t* w, int64_t row_bytes, const float* scales, int64_t sstride,
                    int64_t cols, int64_t group, const float* xp, int64_t pitch, int64_t pf_bytes,
                    float* y, int64_t y_stride) {
  constexpr int kChunk = ChunkCols(D);
  __m512 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();

  // Past the end of its row a stream's prefetch moves to the same row of the next group.
  const int64_t pf_wrap = (R - 1) * row_bytes;
  // kI4 levels -8..7 in lane order; times the scale they are exactly q · scale (one rounding).
  const __m512 levels = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  int64_t gi = 0;
  for (int64_t g0 = 0; g0 < cols; g0 += group, ++gi) {
    __m512 s[R], m[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      s[r] = _mm512_set1_ps(scales[r * sstride + gi]);
      m[r] = D == DType::kI4 ? _mm512_mul_ps(levels, s[r]) : s[r];
    }
    const int64_t g1 = g0 + group < cols ? g0 + group : cols;
    int64_t c = g0;
    for (; c + kChunk <= g1; c += kChunk) {
      const int64_t boff = ByteOffset(D, c);
      if (pf_bytes != 0 && (boff & 63) == 0) {
        int64_t off = boff + pf_bytes;
        if (off >= row_bytes) off += pf_wrap;
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          _mm_prefetch(reinterpret_cast<const char*>(w + r * row_bytes + off), _MM_HINT_T0);
          // The scale stream: one line per 16 groups, fetched a line ahead.
          if (D == DType::kI4 && (gi & 15) == 0)
            _mm_prefetch(reinterpret_cast<const char*>(scales + r * sstride + gi + 16), _MM_HINT_T0);
        }
      }
      Step<D, R, T, false>(w, row_bytes, c, kChunk, xp, pitch, s, m, acc);
    }
    if (c < g1) Step<D, R, T, true>(w, row_bytes, c, static_cast<int>(g1 - c), xp, pitch, s, m, acc);
  }

  StoreReduced<R, T>(acc, R, y, y_stride);
}

template <DType D, int... Ts>
void FillDType(QuantKernelSet& k, std::integer_sequence<int, Ts...>) {
  const int d = D == DType::kI8 ? 0 : 1;
  k.chunk_cols[d] = ChunkCols(D);
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

void MatMulRowsQuantAvx512(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                           int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  static const QuantKernelSet kernels = MakeKernelSet();
  RunQuantMatMul(kernels, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
}

}  // namespace glm::kernels
