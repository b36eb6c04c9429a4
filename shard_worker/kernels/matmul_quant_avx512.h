// AVX-512 (F/BW/VL) matmul for group-quantised weights (kI8, kI4), reached through
// MatMulRowsAvx512. Accumulation layout, fixed by cols, dtype and group size alone: one 16-lane f32
// accumulator per (row, token); per chunk, one FMA per vector in column order —
//   kI8: 32-column chunks, 2 vectors of 16 sign-extended bytes (32, not a 64-byte line, so that
//        groups of 32 work: a chunk never straddles two scales);
//   kI4: 32-column chunks (16 bytes), the low nibbles (columns 0..15) then the high (16..31);
// each vector decoded to q · scale exactly (kI4 by a vpermps lookup in the group's 16 values
// (q - 8) · scale); the last partial chunk is
// zero-padded, then the lanes are reduced 16→8→4→2→1.
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX512_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX512_H_

#include "shard_worker/kernels/matmul.h"

namespace glm::kernels {

// Requires CpuSupportsAvx512MatMul(); w.dtype must be kI8 or kI4.
void MatMulRowsQuantAvx512(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                           int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX512_H_
