// Short-vector primitives for attention's inner loops (dot products and a·x + y over
// kv_lora_rank / rope / indexer dims), with run-time SIMD dispatch. Results depend only on the
// inputs and n (never on threads or batch), so attention stays batch-invariant.
#ifndef GLM_SHARD_WORKER_KERNELS_VECTOR_OPS_H_
#define GLM_SHARD_WORKER_KERNELS_VECTOR_OPS_H_

#include <cstdint>

namespace glm::kernels {

// Σ a[i]·b[i].
float Dot(const float* a, const float* b, int64_t n);
// y[i] += alpha·x[i].
void Axpy(float alpha, const float* x, float* y, int64_t n);

// Scalar twins (tests compare the dispatched versions against them).
float DotReference(const float* a, const float* b, int64_t n);
void AxpyReference(float alpha, const float* x, float* y, int64_t n);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_VECTOR_OPS_H_
