// Activations quantised to int16 for the kI8 matmul: int8 weights are multiplied with int16
// activations by integer dot products (vpdpwssd / vpmaddwd).
// Why: decoding each int8 weight to f32 (a widening, a convert and a multiply per 16 weights,
// then an FMA) made the kI8 kernels compute-bound on two Zen 5 cores: the decode read ~50 GB/s
// where the probe read ~65-73. A sign-extension and a vpdpwssd take 32 weights. int8 activations
// (vpdpbusd, as kI4 uses) were tried and rejected: on the bundled model they moved the int8
// top-1 agreement from 99.4% to 97.7% (bar 99%) — their rounding (1/254 of a block's largest
// magnitude) is as large as the weights' own. int16 rounding is 1/65534 of a 64-column chunk's
// largest magnitude: no measurable change.
//
// The arithmetic every kI8 path follows, fixed by the columns and group size alone:
//   per token, per chunk c of 64 columns (zero beyond cols): a = max|x| over the chunk,
//     sx_c = a / 32767 and xq = round-to-nearest-even(x · (32767 / a)) in [-32767, 32767]
//     (a below kQ16MinMagnitude, 0 included: sx_c = 0, xq = 0 — 32767 / a would overflow; a
//     non-finite value in the chunk: sx_c = NaN, xq = 0, so the output is NaN as an f32 product
//     would be);
//   isum_b = Σ q · xq over each 32-column block b, exact in int32 (|q| ≤ 128: |isum_b| < 2^27);
//   y = Σ_b float(isum_b) · (sw_g(b) · sx_c(b)) in f32, where sw_g is the weight group's scale.
// SIMD paths split isum_b over lanes (exact; where both blocks of a chunk share a group they may
// share lanes) and sum the lanes' f32 terms in a fixed tree, so they differ from the reference
// only in f32 summation order.
#ifndef GLM_SHARD_WORKER_KERNELS_Q16_ACTIVATIONS_H_
#define GLM_SHARD_WORKER_KERNELS_Q16_ACTIVATIONS_H_

#include <cstdint>

#include "shard_worker/kernels/weight_view.h"

namespace glm::kernels {

inline constexpr int64_t kQ16ChunkCols = 64;  // two 32-column blocks: one 64-byte line of weights
inline constexpr float kQ16MinMagnitude = 1e-30f;

// One token's activations for 64 columns, in natural column order (a 64-byte load of kI8 weights,
// sign-extended to two 32 × int16 vectors, meets q[0..31] and q[32..63]); scale[l] = sx_c for
// every lane, so a vector load gives it broadcast. Columns past the row are zero.
struct alignas(64) Q16Chunk {
  int16_t q[64];
  float scale[16];
};

inline int64_t Q16ChunksPerRow(int64_t cols) { return (cols + kQ16ChunkCols - 1) / kQ16ChunkCols; }

// Quantises n <= 64 values (the rest of the chunk counts as zero) into q[64] and *scale.
void QuantizeActivationChunk16(const float* x, int n, int16_t* q, float* scale);

// Fills out[Q16ChunksPerRow(cols)] from x[cols] (scalar; the SIMD paths give the same bytes).
void PrepareQ16Chunks(const float* x, int64_t cols, Q16Chunk* out);

// The reference dot of kI8 row r of w with one token's chunks (block order, see above).
float I8RowDotQ16(const WeightView& w, int64_t r, const Q16Chunk* chunks);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_Q16_ACTIVATIONS_H_
