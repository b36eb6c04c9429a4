#ifndef GLM_SHARD_WORKER_KERNELS_MATMUL_PORTABLE_H_
#define GLM_SHARD_WORKER_KERNELS_MATMUL_PORTABLE_H_

#include "shard_worker/kernels/matmul.h"

namespace glm::kernels {

// Plain C++ with blocking the compiler can vectorise for the baseline ISA: converts a few weight
// rows to f32 once and reuses them for every token.
void MatMulRowsPortable(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                        int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_MATMUL_PORTABLE_H_
