// AVX2 + FMA matmul path, the fallback for x86-64 CPUs without AVX-512. Accumulation layout,
// fixed by cols and dtype alone: one 8-lane f32 accumulator per (row, token); per chunk, one FMA
// per vector in order —
//   F32:  16-column chunks, columns 0..7 then 8..15;
//   BF16: 16-column chunks, the even columns then the odd ones;
//   FP8:  32-column chunks, vector K holding columns 4j + K;
// the last partial chunk is zero-padded, then the lanes are reduced 8→4→2→1.
// Weights are decoded to f32 exactly and multiplied with f32 activations by FMA.
#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_AVX2_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_AVX2_H_

#include "shard_worker/kernels/matmul.h"

namespace glm::kernels {

// True when this CPU (and OS) runs the AVX2 path.
bool CpuSupportsAvx2MatMul();

void MatMulRowsAvx2(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                    int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_AVX2_H_
