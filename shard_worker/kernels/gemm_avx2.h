// AVX2 + FMA prefill GEMM kernels (see gemm_driver.h): packers that decode a weight row to f32 in
// matmul_avx2's lane order (F32 natural, BF16 even/odd per 16 columns, FP8 columns 4j + K per 32),
// and 2-row × 1..5-token microkernels over 8-lane accumulators reduced by matmul_avx2's tree — so
// a prefill output equals the decode path's bit for bit.
#ifndef GLM_SHARD_WORKER_KERNELS_GEMM_AVX2_H_
#define GLM_SHARD_WORKER_KERNELS_GEMM_AVX2_H_

#include "shard_worker/kernels/gemm_driver.h"

namespace glm::kernels {

// Only valid where CpuSupportsAvx2MatMul() holds.
const GemmKernelSet* Avx2GemmKernels();

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_GEMM_AVX2_H_
