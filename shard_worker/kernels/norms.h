// Normalisations over the last dimension, in f32.
#ifndef GLM_SHARD_WORKER_KERNELS_NORMS_H_
#define GLM_SHARD_WORKER_KERNELS_NORMS_H_

#include <cstdint>

namespace glm::kernels {

// out[i] = weight[i] * x[i] / sqrt(mean(x²) + eps); x and out may alias. weight: [n] f32.
// mean(x²) is summed in double (the reference is float64 and n reaches 6144), in 8 lanes and a
// fixed tree where vectors exist (a function of n only).
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);
// Scalar twin (one double sum in index order).
void RmsNormReference(const float* x, const float* weight, int64_t n, float eps, float* out);

// out[i] = (x[i] - mean) / sqrt(var + eps) * weight[i] + bias[i] (biased variance, as torch).
void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps,
               float* out);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_NORMS_H_
