// An owning buffer of memory bound to one NUMA node: where a shard worker keeps its weights and
// KV pages, so the bandwidth-bound decode loop reads local memory only.
#ifndef GLM_NUMA_NUMA_BUFFER_H_
#define GLM_NUMA_NUMA_BUFFER_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "numa/topology.h"

namespace glm::numa {

class NumaBuffer {
 public:
  // Alignment of the fallback allocation (one huge page, so transparent huge pages can back it).
  static constexpr size_t kFallbackAlignment = 2 << 20;

  // `bytes` of memory bound (HWLOC_MEMBIND_BIND) to NUMA node `numa_os_index` of `topology`.
  // Where binding is not supported (one-node machines, containers without mbind, topologies that
  // are not this machine's) it falls back to a plain aligned allocation and bound() is false.
  // The memory is not touched (pages come on first write, on the bound node). NotFound for an
  // unknown node, ResourceExhausted when the memory cannot be had.
  static absl::StatusOr<NumaBuffer> Allocate(const Topology& topology, int64_t bytes, int numa_os_index);

  NumaBuffer() = default;
  NumaBuffer(NumaBuffer&& other) noexcept;
  NumaBuffer& operator=(NumaBuffer&& other) noexcept;
  NumaBuffer(const NumaBuffer&) = delete;
  NumaBuffer& operator=(const NumaBuffer&) = delete;
  ~NumaBuffer();

  void* data() const { return data_; }
  int64_t size() const { return size_; }
  // True when the memory is bound to the requested node; false for the fallback allocation.
  bool bound() const { return bound_; }
  int numa_node() const { return numa_node_; }

 private:
  void Release();

  void* data_ = nullptr;
  int64_t size_ = 0;
  bool bound_ = false;
  int numa_node_ = -1;
  // The topology that allocated a bound buffer (hwloc_free needs it); it must outlive the buffer.
  const Topology* topology_ = nullptr;
};

}  // namespace glm::numa

#endif  // GLM_NUMA_NUMA_BUFFER_H_
