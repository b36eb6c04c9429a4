// The ISA-independent half of the group-quantised (kI8 / kI4) SIMD matmul paths
// (matmul_quant_avx512.cc, matmul_quant_avx2.cc): pads the activations, walks the row range in
// groups of R rows and the tokens in tiles of T, and calls the ISA's block kernels. Like
// matmul_simd_driver (which serves F32 / BF16 / FP8), it never changes an output's arithmetic:
//
//   for a given (cols, dtype, group_size, ISA) every y[t][r] is Σ over lanes of one fixed
//   accumulator layout (chunk columns per step, natural column order, zero padding at the end),
//   reduced by one fixed tree — whatever R, T, the row range or the thread count.
//
// kI4: the activations are quantised to int8 per 32-column block (q8_activations.h), kI8: to
// int16 per 64-column chunk (q16_activations.h); both are met by integer dot products, and the
// f32 terms are summed per lane in chunk order, then reduced.
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_DRIVER_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_DRIVER_H_

#include <algorithm>
#include <cstdint>

#include "shard_worker/kernels/prefetch.h"
#include "shard_worker/kernels/q16_activations.h"
#include "shard_worker/kernels/q8_activations.h"
#include "shard_worker/kernels/weight_view.h"

namespace glm::kernels {

// One block kernel: R consecutive weight rows × T tokens (both fixed by the kernel).
//   w, row_bytes     first row's bytes; row i at w + i * row_bytes
//   scales, sstride  first row's group scales (f16 bits); row i's at scales + i * sstride
//   cols, group      real columns; columns per scale (>= cols: one group)
//   xq, chunks       token t's activation chunks (kI4: Q8ChunksPerRow(cols) Q8Chunk, kI8:
//                    Q16ChunksPerRow(cols) Q16Chunk) at xq + t * chunks
//   pf_bytes         software prefetch distance in the row stream (0 = none)
//   y                y[t * y_stride + i] receives token t, row i of the group
template <typename Chunk>
using QuantBlockFn = void (*)(const uint8_t* w, int64_t row_bytes, const uint16_t* scales, int64_t sstride,
                              int64_t cols, int64_t group, const Chunk* xq, int64_t chunks,
                              int64_t pf_bytes, float* y, int64_t y_stride);
using I4BlockFn = QuantBlockFn<Q8Chunk>;
using I8BlockFn = QuantBlockFn<Q16Chunk>;
// PrepareQ8Chunks / PrepareQ16Chunks semantics (an ISA may give faster twins producing the same
// bytes).
using Q8PrepareFn = void (*)(const float* x, int64_t cols, Q8Chunk* out);
using Q16PrepareFn = void (*)(const float* x, int64_t cols, Q16Chunk* out);

inline constexpr int kQuantMaxTileTokens = 4;

struct QuantKernelSet {
  int max_tile_tokens = kQuantMaxTileTokens;
  // Indexed by the tile's token count; R = rows_per_group for grouped, 1 for single.
  int i8_rows_per_group[kQuantMaxTileTokens + 1] = {};
  I8BlockFn i8_grouped[kQuantMaxTileTokens + 1] = {};
  I8BlockFn i8_single[kQuantMaxTileTokens + 1] = {};
  int i4_rows_per_group[kQuantMaxTileTokens + 1] = {};
  I4BlockFn i4_grouped[kQuantMaxTileTokens + 1] = {};
  I4BlockFn i4_single[kQuantMaxTileTokens + 1] = {};
  Q8PrepareFn prepare_q8 = &PrepareQ8Chunks;
  Q16PrepareFn prepare_q16 = &PrepareQ16Chunks;
};

// The group scales are a second stream, 2 bytes per group: prefetched as far ahead (in rows'
// worth of data) as the weights, and past a row's end into the same row of the next R-row group
// — without that, every group of short rows (a 2048-column int4 row holds 2 lines of scales)
// started with R demand misses. Distance in scales for `group_bytes` of weights per scale.
inline int64_t ScalePrefetchDistance(int64_t pf_bytes, int64_t group_bytes) {
  return pf_bytes <= 0 ? 0 : std::max<int64_t>(32, pf_bytes / std::max<int64_t>(1, group_bytes));
}

// Prefetches the scale line `distance` scales past group g of each of R rows (wrapping as above).
template <int R>
__attribute__((always_inline)) inline void PrefetchScales(const uint16_t* scales, int64_t sstride, int64_t g, int64_t distance) {
  if (distance == 0) return;
  int64_t off = g + distance;
  if (off >= sstride) off += (R - 1) * sstride;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) PrefetchStreamLine(scales + r * sstride + off);
}

// MatMulRowsFn semantics (see matmul.h) for w.dtype kI8 / kI4.
void RunQuantMatMul(const QuantKernelSet& k, const float* x, int64_t n_tokens, int64_t x_stride,
                    const WeightView& w, int64_t row_begin, int64_t row_end, float* y,
                    int64_t y_stride);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_DRIVER_H_
