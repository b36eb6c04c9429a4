// Activations quantised to int8 for the kI4 matmul: int4 weights are multiplied with int8
// activations by integer dot products (vpdpbusd / vpmaddubsw), as llama.cpp's Q4_0 × Q8_0 does.
// Why: decoding each nibble to f32 (a lookup and a convert per weight) kept the int4 kernels at
// ~48 GB/s on two Zen 5 cores, below the memory bandwidth; an integer dot handles 64 weights per
// instruction. The activation rounding (1/254 of a 32-column block's largest magnitude) is far
// below the weights' own (1/15 of a group's range).
//
// The arithmetic every kI4 path follows, fixed by the columns and group size alone:
//   per token, per block b of 32 columns (zero beyond cols): a = max|x| over the block,
//     sx_b = a / 127 and xq = round-to-nearest-even(x · (127 / a)) in [-127, 127]
//     (a below kQ8MinMagnitude, 0 included: sx_b = 0, xq = 0 — 127 / a would overflow, and such
//     a block adds nothing an f32 sum would keep; a non-finite value in the block: sx_b = NaN,
//     xq = 0, so the output is NaN as an f32 product would be);
//   isum_b = Σ q · xq over the block's columns, exact in int32 (q = nibble − 8);
//   y = Σ_b float(isum_b) · (sw_g(b) · sx_b) in f32, where sw_g is the weight group's scale.
// SIMD paths split isum_b over lanes (exact) and sum the lanes' f32 terms in a fixed tree, so
// they differ from the reference only in f32 summation order.
#ifndef GLM_SHARD_WORKER_KERNELS_Q8_ACTIVATIONS_H_
#define GLM_SHARD_WORKER_KERNELS_Q8_ACTIVATIONS_H_

#include <cstdint>

#include "shard_worker/kernels/weight_view.h"

namespace glm::kernels {

inline constexpr int64_t kQ8ChunkCols = 128;  // four 32-column blocks
inline constexpr float kQ8MinMagnitude = 1e-30f;

// One token's activations for 128 columns (four blocks k = 0..3), in the order a 64-byte load of
// kI4 weights (four 16-byte blocks: low nibbles columns 32k + j, high nibbles 32k + 16 + j at
// byte 16k + j) meets them, so int32 lane l of a dot covers bytes 4l..4l+3 of block l / 4:
//   lo[16k + j] = xq[32k + j], hi[16k + j] = xq[32k + 16 + j]   (j = 0..15)
//   scale[l] = sx of block l / 4
//   neg_offset[l] = −8 · Σ over lo[4l..4l+3] and hi[4l..4l+3] (nibbles are q + 8: a dot with
//                   them exceeds Σ q · xq by exactly −this; negated so that the dot can start
//                   from it)
// Blocks past the row's columns are all zero. An AVX2 register takes half a chunk: bytes
// 32h..32h+31 of lo / hi and lanes 8h..8h+7 of scale / neg_offset.
struct alignas(64) Q8Chunk {
  int8_t lo[64];
  int8_t hi[64];
  float scale[16];
  int32_t neg_offset[16];
};

inline int64_t Q8ChunksPerRow(int64_t cols) { return (cols + kQ8ChunkCols - 1) / kQ8ChunkCols; }

// Quantises n <= 32 values (the rest of the block counts as zero) into q[32] and *scale.
void QuantizeActivationBlock(const float* x, int n, int8_t* q, float* scale);

// Fills out[Q8ChunksPerRow(cols)] from x[cols] (scalar; the SIMD paths give the same bytes).
void PrepareQ8Chunks(const float* x, int64_t cols, Q8Chunk* out);

// The weight group of each block of a kI4 row's 128-column chunks, chunk after chunk (groups are
// a multiple of 32 columns, or the whole row when group >= cols), without a division per chunk.
class ChunkGroups {
 public:
  ChunkGroups(int64_t cols, int64_t group)
      : blocks_per_group_(group >= cols ? (cols + 31) / 32 + 4 : group / 32) {}
  // The next chunk: group[k] = weight group of its block k (k = 0..3, past the row included).
  void Next(int64_t (&group)[4]) {
    for (int k = 0; k < 4; ++k) {
      group[k] = group_;
      if (++in_group_ == blocks_per_group_) in_group_ = 0, ++group_;
    }
  }

 private:
  int64_t blocks_per_group_;
  int64_t group_ = 0, in_group_ = 0;
};

// The reference dot of kI4 row r of w with one token's chunks (block order, see above).
float I4RowDotQ8(const WeightView& w, int64_t r, const Q8Chunk* chunks);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_Q8_ACTIVATIONS_H_
