#include "shard_worker/kernels/matmul_avx2.h"

#include <immintrin.h>

#include <cstring>
#include <limits>
#include <utility>

#include "shard_worker/kernels/avx2_common.h"
#include "shard_worker/kernels/gemm_avx2.h"
#include "shard_worker/kernels/matmul_quant_avx2.h"
#include "shard_worker/kernels/matmul_simd_driver.h"
#include "shard_worker/kernels/prefetch.h"

namespace glm::kernels {
namespace {

constexpr int kLanes = 8;
// Columns per step: F32 and BF16 two vectors, FP8 four (32 B).
constexpr int ChunkCols(DType d) { return d == DType::kF8E4M3 ? 32 : 16; }
constexpr int Interleave(DType d) { return d == DType::kBF16 ? 2 : 1; }  // FP8: FillDType

// 16 ymm registers: tiles of at most 4 tokens and R rows per group so that R·T accumulators plus
// one row's weight vectors fit, with 6 to 8 independent FMA chains. BF16 takes the most rows that
// fit (12 accumulators: matmul_bench --dtype bf16 8192x4096 --path avx2, interleaved on a Zen 5:
// 2 tokens R = 6 vs 4: 45.8-48.5 vs 44.1-45.4 GB/s, 3 tokens R = 4 vs 2: 41.5-46.3 vs 34.7-37.4,
// 4 tokens R = 3 vs 2: 32.4-34.8 vs 28.9-31.7); FP8's decode needs the registers (R = 4 and 3 at
// 3 and 4 tokens: 8.2-8.7 vs 10.7-10.8 and 7.0-7.2 vs 8.1-8.4 GB/s), and F32 keeps its old groups.
// R never changes a row's sums.
constexpr int kTileTokens = 4;
constexpr int kGroupRows[kMaxTileTokens + 1] = {0, 8, 4, 2, 2, 0, 0, 0, 0};      // F32, FP8
constexpr int kBf16GroupRows[kMaxTileTokens + 1] = {0, 8, 6, 4, 3, 0, 0, 0, 0};  // BF16
constexpr const int* GroupRows(DType d) { return d == DType::kBF16 ? kBf16GroupRows : kGroupRows; }

// acc[t] += v · x[t · pitch] for every token.
template <int T>
GLM_AVX2_INLINE void FmaTokens(__m256 v, const float* x, int64_t pitch, __m256 (&acc)[T]) {
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(v, _mm256_load_ps(x + t * pitch), acc[t]);
}

// One step: chunk c of R rows (row i's chunk bytes at rows[i], all readable) into the R × T
// accumulators, vector 0 first.
template <DType D, int R, int T, bool kNanFree>
GLM_AVX2_F16C_INLINE void Step(const uint8_t* const (&rows)[R], int64_t c, const float* xp,
                          int64_t pitch, const float* scales, __m256 (&acc)[R][T]) {
  if constexpr (D == DType::kF32) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float* p = reinterpret_cast<const float*>(rows[r]);
      FmaTokens<T>(_mm256_loadu_ps(p), xp + c, pitch, acc[r]);
      FmaTokens<T>(_mm256_loadu_ps(p + 8), xp + c + 8, pitch, acc[r]);
    }
  } else if constexpr (D == DType::kBF16) {
    // 16 bf16 in 8 lanes: lane << 16 is the even column, lane & 0xffff0000 the odd one.
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r]));
      FmaTokens<T>(_mm256_castsi256_ps(_mm256_slli_epi32(raw, 16)), xp + c, pitch, acc[r]);
      FmaTokens<T>(_mm256_castsi256_ps(_mm256_and_si256(
                       raw, _mm256_set1_epi32(static_cast<int>(0xffff0000u)))),
                   xp + c + 8, pitch, acc[r]);
    }
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m256 v[4];
      DecodeFp8<!kNanFree>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r])), scales + c, v);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) FmaTokens<T>(v[k], xp + c + k * kLanes, pitch, acc[r]);
    }
  }
}

// SimdBlockFn for R rows × T tokens (see matmul_simd_driver.h).
// kNanFree (kF8E4M3 only): the weights hold no NaN code (WeightView::fp8_nan_free).
template <DType D, int R, int T, bool kNanFree = false>
GLM_AVX2_F16C void Block(const uint8_t* w, int64_t row_bytes, int64_t cols, const float* xp,
                    int64_t pitch, const float* scales, int64_t pf_bytes, float* y,
                    int64_t y_stride) {
  constexpr int64_t kEs = DTypeSize(D);
  constexpr int kChunk = ChunkCols(D);
  __m256 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();

  const int64_t full = cols / kChunk * kChunk;
  const uint8_t* rows[R];
  for (int64_t c = 0; c < full; c += kChunk) {
    if (pf_bytes != 0) PrefetchRowsAhead<R, kEs == 4 ? 2 : 1, 32>(w, row_bytes, c * kEs, pf_bytes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) rows[r] = w + r * row_bytes + c * kEs;
    Step<D, R, T, kNanFree>(rows, c, xp, pitch, scales, acc);
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
    Step<D, R, T, kNanFree>(rows, full, xp, pitch, scales, acc);
  }

#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) y[t * y_stride + r] = Reduce(acc[r][t]);
}

template <DType D, int... Ts>
void FillDType(SimdKernelSet& k, std::integer_sequence<int, Ts...>) {
  const int d = static_cast<int>(D);
  k.chunk_cols[d] = ChunkCols(D);
  FillInterleavedOrder(kLanes, Interleave(D), ChunkCols(D), k.order[d]);
  if constexpr (D == DType::kF8E4M3) {
    for (int i = 0; i < 32; ++i) {
      const int v = i / kLanes, j = i % kLanes;
      k.order[d][i] = static_cast<int16_t>((v & 1) * 16 + (v >> 1) * 8 + j);
    }
    k.fp8_scale_factor = 256.0f;
    ((k.fp8_nan_free_grouped[Ts + 1] = &Block<D, GroupRows(D)[Ts + 1], Ts + 1, true>), ...);
    ((k.fp8_nan_free_single[Ts + 1] = &Block<D, 1, Ts + 1, true>), ...);
  }
  ((k.rows_per_group[d][Ts + 1] = GroupRows(D)[Ts + 1]), ...);
  ((k.grouped[d][Ts + 1] = &Block<D, GroupRows(D)[Ts + 1], Ts + 1>), ...);
  ((k.single[d][Ts + 1] = &Block<D, 1, Ts + 1>), ...);
}

SimdKernelSet MakeKernelSet() {
  SimdKernelSet k;
  k.max_tile_tokens = kTileTokens;
  auto tiles = std::make_integer_sequence<int, kTileTokens>();
  FillDType<DType::kF32>(k, tiles);
  FillDType<DType::kBF16>(k, tiles);
  FillDType<DType::kF8E4M3>(k, tiles);
  k.gemm = Avx2GemmKernels();
  // Token counts at which the GEMM overtook these tiles (matmul_bench --min-gemm-tokens --path
  // avx2, Zen 5): F32 ~32, BF16 ~64; FP8 at once (8-lane FP8 decode per tile costs more than
  // the GEMM's one panel conversion from 9 tokens up).
  k.min_gemm_tokens[static_cast<int>(DType::kF32)] = 32;
  k.min_gemm_tokens[static_cast<int>(DType::kBF16)] = 64;
  k.min_gemm_tokens[static_cast<int>(DType::kF8E4M3)] = kMaxTileTokens + 1;
  return k;
}

}  // namespace

bool CpuSupportsAvx2MatMul() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

void MatMulRowsAvx2(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                    int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  if (IsGroupQuantized(w.dtype))
    return MatMulRowsQuantAvx2(x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
  static const SimdKernelSet kernels = MakeKernelSet();
  RunSimdMatMul(kernels, x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride);
}

}  // namespace glm::kernels
