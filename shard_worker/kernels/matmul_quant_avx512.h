// AVX-512 (F/BW/VL) matmul for group-quantised weights (kI8, kI4), reached through
// MatMulRowsAvx512. Accumulation layout, fixed by cols, dtype and group size alone: one 16-lane f32
// accumulator per (row, token), reduced 16→8→4→2→1 at the end —
//   kI8: 32-column chunks, 2 vectors of 16 sign-extended bytes (32, not a 64-byte line, so that
//        groups of 32 work: a chunk never straddles two scales), each decoded to q · scale exactly
//        and FMA'd with the f32 activations; the last partial chunk zero-padded;
//   kI4: 128-column chunks (one 64-byte line) against int8 activations (q8_activations.h): lane l
//        gets the exact integer dot of its 8 columns, then one FMA of its f32 value times
//        sw · sx. The dot is vpdpbusd where the CPU has AVX512_VNNI, else vpmaddubsw + vpmaddwd:
//        the same integers, so the same outputs bit for bit.
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX512_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX512_H_

#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/q8_activations.h"

namespace glm::kernels {

// Requires CpuSupportsAvx512MatMul(); w.dtype must be kI8 or kI4.
void MatMulRowsQuantAvx512(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                           int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);

// Whether the kI4 kernels use AVX512_VNNI (by default: where the CPU has it; reported at startup).
bool Avx512Int4UsesVnni();
// Test hook: turn VNNI off (or back on; false if the CPU lacks it).
bool UseAvx512VnniForInt4(bool use);

// PrepareQ8Chunks (q8_activations.h) with AVX-512: the same bytes. Requires CpuSupportsAvx512MatMul().
void PrepareQ8ChunksAvx512(const float* x, int64_t cols, Q8Chunk* out);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_QUANT_AVX512_H_
