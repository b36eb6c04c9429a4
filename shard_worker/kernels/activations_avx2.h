// AVX2 + FMA twins of the activations (activations.h) for x86-64 CPUs without AVX-512 (Zen 2/3,
// client Intel): the exponentials of softmax (attention over up to index_topk keys per head,
// sampling), log-sum-exp (logprobs) and SiluMul (every MLP) 8 lanes at a time instead of scalar
// std::exp. Exposed so the tests can run them on any CPU that has AVX2 (they require
// CpuSupportsAvx2MatMul()); activations.cc dispatches to them.
#ifndef GLM_SHARD_WORKER_KERNELS_ACTIVATIONS_AVX2_H_
#define GLM_SHARD_WORKER_KERNELS_ACTIVATIONS_AVX2_H_

#include <cstdint>

namespace glm::kernels {

void SiluMulAvx2(const float* gate, const float* up, int64_t n, float* out);
void SoftmaxAvx2(float* x, int64_t n);
float LogSumExpAvx2(const float* x, int64_t n);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_ACTIVATIONS_AVX2_H_
