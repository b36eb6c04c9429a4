// AVX2 + FMA matmul for group-quantised weights (kI8, kI4), reached through MatMulRowsAvx2.
// Accumulation layout, fixed by cols, dtype and group size alone: one 8-lane f32 accumulator per
// (row, token) against int16 activations (kI8, q16_activations.h) or int8 ones (kI4,
// q8_activations.h); per 32-column block (kI8) or half 128-column chunk (kI4) one FMA of the
// lanes' exact integer dots (vpmaddwd, or vpmaddubsw + vpmaddwd) times sw · sx, in column order;
// the last partial block is zero-padded, then the lanes are reduced 8→4→2→1.
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX2_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX2_H_

#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/q16_activations.h"
#include "shard_worker/kernels/q8_activations.h"

namespace glm::kernels {

// Requires CpuSupportsAvx2MatMul(); w.dtype must be kI8 or kI4.
// The AVX2 twin of PrepareQ8Chunks (the same bytes), exposed for tests; requires CpuSupportsAvx2MatMul().
void PrepareQ8ChunksAvx2(const float* x, int64_t cols, Q8Chunk* out);
// The AVX2 twin of PrepareQ16Chunks (the same bytes), exposed for tests; likewise.
void PrepareQ16ChunksAvx2(const float* x, int64_t cols, Q16Chunk* out);

void MatMulRowsQuantAvx2(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                         int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX2_H_
