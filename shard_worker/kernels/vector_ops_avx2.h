// AVX2 + FMA twins of the vector primitives (vector_ops.h), for x86-64 CPUs without AVX-512.
// Exposed so the tests can compare them with the scalar twins on any CPU with AVX2 (each
// requires CpuSupportsAvx2MatMul()); vector_ops.cc dispatches to them.
#ifndef GLM_SHARD_WORKER_KERNELS_VECTOR_OPS_AVX2_H_
#define GLM_SHARD_WORKER_KERNELS_VECTOR_OPS_AVX2_H_

#include <cstdint>

namespace glm::kernels {

float DotAvx2(const float* a, const float* b, int64_t n);
void AxpyAvx2(float alpha, const float* x, float* y, int64_t n);
// Exactly the scalar loop's values (one add and one multiply per element).
void AddScaleAvx2(const float* a, const float* b, float s, float* out, int64_t n);
void ReluAccumulateAvx2(const float* x, float scale, float alpha, float* y, int64_t n);
// The scalar loop's answer (first maximum; NaN never wins; 0 when x[0] is NaN).
int64_t ArgMaxAvx2(const float* x, int64_t n);
// Router logits in double: 8 lanes (two vectors of 4) by FMA, the tail into the same lanes,
// summed in the portable twin's tree ((0+4)+(2+6))+((1+5)+(3+7)); a row's value depends only on
// x, the row and n.
void DotRowsF64Avx2(const float* x, const float* m, int64_t n_rows, int64_t n, float* out);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_VECTOR_OPS_AVX2_H_
