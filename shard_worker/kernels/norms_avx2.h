// AVX2 + FMA twin of RmsNorm (norms.h) for x86-64 CPUs without AVX-512: the same 8 double lanes
// (two vectors of 4), FMA and lane tree as the AVX-512 path, so both give the same values.
// Exposed for tests; requires CpuSupportsAvx2MatMul(); norms.cc dispatches to it.
#ifndef GLM_SHARD_WORKER_KERNELS_NORMS_AVX2_H_
#define GLM_SHARD_WORKER_KERNELS_NORMS_AVX2_H_

#include <cstdint>

namespace glm::kernels {

void RmsNormAvx2(const float* x, const float* weight, int64_t n, float eps, float* out);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_NORMS_AVX2_H_
