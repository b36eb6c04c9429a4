// Normalisations over the last dimension, in f32.
#ifndef GLM_SHARD_WORKER_KERNELS_NORMS_H_
#define GLM_SHARD_WORKER_KERNELS_NORMS_H_

#include <cstdint>

namespace glm::kernels {

// out[i] = weight[i] * x[i] / sqrt(mean(x²) + eps); x and out may alias. weight: [n] f32.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// out[i] = (x[i] - mean) / sqrt(var + eps) * weight[i] + bias[i] (biased variance, as torch).
void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps,
               float* out);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_NORMS_H_
