// Elementwise activations and softmax, in f32.
#ifndef GLM_SHARD_WORKER_KERNELS_ACTIVATIONS_H_
#define GLM_SHARD_WORKER_KERNELS_ACTIVATIONS_H_

#include <cstdint>

namespace glm::kernels {

// out[i] = silu(gate[i]) * up[i]; out may alias gate or up. Vector exponentials where present
// (within ~2e-7 relative of std::exp); each element's value never depends on n or its index.
void SiluMul(const float* gate, const float* up, int64_t n, float* out);
// Scalar twin (std::exp).
void SiluMulReference(const float* gate, const float* up, int64_t n, float* out);

// In-place softmax over x[n]; entries equal to -inf get probability 0. The exponentials run on
// the widest vector unit present (a polynomial within ~2 ulp of expf), the sum in double.
void Softmax(float* x, int64_t n);
// Scalar twin (std::exp), what the tests compare Softmax against.
void SoftmaxReference(float* x, int64_t n);

// log Σ exp(x[i]) (the log-softmax normaliser: logprobs over a vocabulary of 150K+ entries),
// as max + log Σ exp(x - max) with the sum in double; -inf when every entry is -inf or n <= 0.
// Vector exponentials as Softmax's.
float LogSumExp(const float* x, int64_t n);
// Scalar twin (double exponentials).
float LogSumExpReference(const float* x, int64_t n);


}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_ACTIVATIONS_H_
