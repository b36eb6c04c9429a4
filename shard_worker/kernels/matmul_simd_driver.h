// The ISA-independent half of the SIMD matmul paths (matmul_avx2.cc, matmul_avx512.cc): prepares
// the activations and FP8 scales into padded per-thread buffers, walks the row range in groups and
// the tokens in tiles, and calls the ISA's block kernels. The kernels only see full, zero-padded
// chunks, so every edge case (column tails, partial scale blocks, odd row counts, many tokens) is
// resolved here, once, without changing any output's summation order:
//
//   for a given (cols, dtype, ISA) every y[t][r] is Σ over lanes of one fixed accumulator layout
//   (chunk_cols columns per step, columns in increasing order per lane, zero padding at the end),
//   reduced by one fixed tree — whichever group size R or token tile T the kernel was built for.
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_SIMD_DRIVER_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_SIMD_DRIVER_H_

#include <cstdint>
#include <vector>

#include "shard_worker/kernels/weight_view.h"

namespace glm::kernels {

struct GemmKernelSet;

// One block kernel: R consecutive weight rows (R fixed by the kernel) × T tokens (fixed too).
//   w          first row's bytes; row i is at w + i * row_bytes
//   cols       real columns; the kernel reads weights up to cols only (masked or copied tails)
//   xp         prepared activations [T][x_pitch] f32, x_pitch = cols rounded up to the dtype's
//              chunk, zero beyond cols, in the kernel's lane order (SimdKernelSet::order)
//   scales     kF8E4M3 only: [x_pitch] per-column multiplier of the rows' scale block, zero
//              padded, in the same lane order; nullptr otherwise
//   pf_bytes   software prefetch distance in the row stream (0 = none)
//   y          y[t * y_stride + i] receives token t, row i of the group
using SimdBlockFn = void (*)(const uint8_t* w, int64_t row_bytes, int64_t cols, const float* xp,
                             int64_t x_pitch, const float* scales, int64_t pf_bytes, float* y,
                             int64_t y_stride);

inline constexpr int kMaxTileTokens = 8;
inline constexpr int kMaxChunkCols = 64;

struct SimdKernelSet {
  // Per dtype: columns per accumulation step (at most kMaxChunkCols), and the lane order of a
  // step: position i (vector i / lanes, lane i % lanes) holds chunk column order[d][i] — the
  // order in which the ISA's decode of packed narrow elements yields them without shuffles
  // (e.g. BF16 even columns, then odd). Activations and scales are permuted to match, once per
  // call or scale block.
  int chunk_cols[3] = {};
  int16_t order[3][kMaxChunkCols] = {};
  float fp8_scale_factor = 1;  // a power of two the FP8 decode leaves out (so it is exact)
  int max_tile_tokens = kMaxTileTokens;
  int rows_per_group[3][kMaxTileTokens + 1] = {};  // [dtype][T]: R of grouped[d][T]
  SimdBlockFn grouped[3][kMaxTileTokens + 1] = {};  // [dtype][T], R = rows_per_group[d][T]
  SimdBlockFn single[3][kMaxTileTokens + 1] = {};   // [dtype][T], R = 1
  // kF8E4M3 weights known to hold no NaN code (WeightView::fp8_nan_free): the same arithmetic
  // without the NaN patch; null: the kernels above serve them too.
  SimdBlockFn fp8_nan_free_grouped[kMaxTileTokens + 1] = {};
  SimdBlockFn fp8_nan_free_single[kMaxTileTokens + 1] = {};
  // Prefill: n_tokens >= min_gemm_tokens[dtype] goes to this GEMM (gemm_driver.h; same
  // arithmetic per output, so the switch changes no result) where it handles the dtype; nullptr:
  // the tiles above at any n_tokens.
  const GemmKernelSet* gemm = nullptr;
  // Where the GEMM starts to pay, per dtype. It converts each weight panel to f32 once per call
  // and then reuses it for every token; the tiles convert a row block per tile of <= 8 tokens but
  // keep it in L1/L2 across the tiles, and write nothing. Below the crossover the panel
  // conversion costs more than it saves: at 16 tokens the AVX-512 BF16 GEMM took 1.6x the tiles'
  // time on a 2048x4096 matrix (bench/matmul_bench --min-gemm-tokens). The crossover depends on
  // how costly a weight is to decode (FP8 > BF16 > F32) and on the ISA, so each kernel set
  // gives its own (measured on Zen 5, tile vs GEMM at equal speed).
  int min_gemm_tokens[3] = {kMaxTileTokens + 1, kMaxTileTokens + 1, kMaxTileTokens + 1};
  // BF16 weights × BF16 activations (SetBf16Activations) by BF16 dot products, where the ISA has
  // them: xp is then [T][x_pitch] uint16 bf16 in natural column order (x_pitch a multiple of
  // bf16dot_chunk_cols, zero padded), passed as the float pointer. Null: activations are rounded
  // to BF16 and the f32 kernels above run.
  int bf16dot_chunk_cols = 0;
  void (*bf16dot_convert)(const float* src, int64_t n, uint16_t* dst) = nullptr;  // F32ToBf16 each
  int bf16dot_rows_per_group[kMaxTileTokens + 1] = {};
  SimdBlockFn bf16dot_grouped[kMaxTileTokens + 1] = {};
  SimdBlockFn bf16dot_single[kMaxTileTokens + 1] = {};
  // The same products on AMX tiles (matmul_amx.h), where the CPU has them: every BF16-activation
  // matmul then takes it, at every token count (a different summation order from vdpbf16ps, so
  // the two never mix). Null: none; AmxTilesEnabled() off: not used.
  void (*amx_bf16)(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w, int64_t row_begin,
                   int64_t row_end, float* y, int64_t y_stride) = nullptr;
};

// MatMulRowsFn semantics (see matmul.h) on top of a kernel set.
void RunSimdMatMul(const SimdKernelSet& k, const float* x, int64_t n_tokens, int64_t x_stride,
                   const WeightView& w, int64_t row_begin, int64_t row_end, float* y,
                   int64_t y_stride);

// order[i] for a chunk of interleave·lanes columns where vector k, lane j holds column
// interleave·j + k (interleave 1: natural order) — what loading `interleave` packed elements per
// 32-bit lane and splitting them by shifts gives.
void FillInterleavedOrder(int lanes, int interleave, int chunk_cols, int16_t* order);

// Helpers shared by the decode, prefill (gemm_driver) and quantised drivers. Sharing one
// PermuteRow is what keeps the decode and prefill lane layouts — and so their results — equal.
// 64-byte aligned view into a per-thread vector of at least n floats.
float* AlignedScratch(std::vector<float>& v, int64_t n);
// dst[pitch] from src[cols]: zero padded, each chunk of `chunk` columns in the kernel's lane order.
void PermuteRow(const float* src, int64_t cols, int64_t pitch, int chunk, const int16_t* order, float* dst);
// Per-column multiplier of FP8 scale-block row `sb` times `factor` (any block_cols, partial blocks).
void ExpandScales(const WeightView& w, int64_t sb, float factor, float* out);

// Benchmark and test hook: n_tokens from which every dtype goes to the GEMM (where the path has
// one), instead of the kernel set's min_gemm_tokens; 0 restores those. The results are the same
// either way (the batch-invariance contract); only the speed differs.
void SetMinGemmTokensOverride(int n_tokens);

// Prefetch distance in bytes ahead of each row stream (benchmark hook; default tuned on Zen 5).
void SetMatMulPrefetchBytes(int64_t bytes);
int64_t MatMulPrefetchBytes();

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_SIMD_DRIVER_H_
