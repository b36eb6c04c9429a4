// AVX-512 (F/BW/VL) matmul for group-quantised weights (kI8, kI4), reached through
// MatMulRowsAvx512. Accumulation layout, fixed by cols, dtype and group size alone: one 16-lane f32
// accumulator per (row, token), reduced 16→8→4→2→1 at the end —
//   kI8: 64-column chunks (one 64-byte line) against int16 activations (q16_activations.h): lane
//        l gets the exact integer dot of its 4 columns (2 of each half), then one FMA of its f32
//        value times sw · sx (per half where the halves' groups differ);
//   kI4: 128-column chunks (one 64-byte line) against int8 activations (q8_activations.h), lane l
//        with 8 columns.
// The dots are vpdpwssd / vpdpbusd where the CPU has AVX512_VNNI, else vpmaddwd / vpmaddubsw +
// vpmaddwd: the same integers, so the same outputs bit for bit.
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX512_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX512_H_

#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/q16_activations.h"
#include "shard_worker/kernels/q8_activations.h"

namespace glm::kernels {

// Requires CpuSupportsAvx512MatMul(); w.dtype must be kI8 or kI4.
void MatMulRowsQuantAvx512(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                           int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);

// Whether the kI8 / kI4 kernels use AVX512_VNNI (by default: where the CPU has it; reported at startup).
bool Avx512Int4UsesVnni();
// Test hook: turn VNNI off (or back on; false if the CPU lacks it).
bool UseAvx512VnniForInt4(bool use);

// PrepareQ8Chunks (q8_activations.h) with AVX-512: the same bytes. Requires CpuSupportsAvx512MatMul().
void PrepareQ8ChunksAvx512(const float* x, int64_t cols, Q8Chunk* out);
// PrepareQ16Chunks (q16_activations.h) with AVX-512: the same bytes. Requires CpuSupportsAvx512MatMul().
void PrepareQ16ChunksAvx512(const float* x, int64_t cols, Q16Chunk* out);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX512_H_
