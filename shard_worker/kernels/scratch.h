// Per-thread scratch for a forward pass's large temporaries ([tokens, width] activations).
//
// Why: a fresh std::vector per layer costs a zero fill and, above glibc's mmap threshold, page
// faults on every first touch — on this project's VMs a fault is a hypervisor exit, and a
// 2048-token prefill spent ~a quarter of its time there. A call site instead keeps a
// `thread_local std::vector<float>` and asks GrowScratch for room: the block grows to the largest
// request that thread ever made and its pages stay mapped for the next layer and the next step.
//
// Contract: the contents are unspecified (whatever the last use left), so a caller writes every
// element before it reads it; a thread_local block belongs to one call site, never live twice on
// one thread (no recursion through it).
#ifndef GLM_SHARD_WORKER_KERNELS_SCRATCH_H_
#define GLM_SHARD_WORKER_KERNELS_SCRATCH_H_

#include <cstdint>
#include <vector>

namespace glm::kernels {

// v's storage, grown to at least n floats.
inline float* GrowScratch(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_SCRATCH_H_
