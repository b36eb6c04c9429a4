#include "numa/numa_buffer.h"

#include <hwloc.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"

namespace glm::numa {
namespace {

hwloc_obj_t FindNumaNode(hwloc_topology_t t, int os_index) {
  for (hwloc_obj_t n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, nullptr); n != nullptr;
       n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, n))
    if (static_cast<int>(n->os_index) == os_index) return n;
  return nullptr;
}

}  // namespace

absl::StatusOr<NumaBuffer> NumaBuffer::Allocate(const Topology& topology, int64_t bytes, int numa_os_index) {
  if (bytes <= 0) return absl::InvalidArgumentError(absl::StrCat("NUMA buffer size must be positive, got ", bytes));
  hwloc_topology_t t = topology.handle();
  hwloc_obj_t node = FindNumaNode(t, numa_os_index);
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("no NUMA node with os index ", numa_os_index));
  NumaBuffer buf;
  buf.size_ = bytes;
  buf.numa_node_ = numa_os_index;
  // A synthetic or XML topology describes another machine: binding there would name nodes this
  // one may not have, so only this machine's topology binds.
  if (topology.is_this_system()) {
    // STRICT: fail rather than silently hand back unbound memory, so bound() tells the truth.
    void* p = hwloc_alloc_membind(t, static_cast<size_t>(bytes), node->nodeset, HWLOC_MEMBIND_BIND,
                                  HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT | HWLOC_MEMBIND_NOCPUBIND);
    if (p != nullptr) {
      buf.data_ = p;
      buf.bound_ = true;
      buf.topology_ = &topology;
      return buf;
    }
    // Binding unsupported or refused (ENOSYS, EXDEV, EPERM under seccomp): plain memory below.
  }
  const size_t rounded = (static_cast<size_t>(bytes) + kFallbackAlignment - 1) / kFallbackAlignment * kFallbackAlignment;
  void* p = std::aligned_alloc(kFallbackAlignment, rounded);
  if (p == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", bytes, " bytes for NUMA node ", numa_os_index));
  buf.data_ = p;
  buf.bound_ = false;
  return buf;
}

NumaBuffer::NumaBuffer(NumaBuffer&& other) noexcept { *this = std::move(other); }

NumaBuffer& NumaBuffer::operator=(NumaBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    bound_ = std::exchange(other.bound_, false);
    numa_node_ = std::exchange(other.numa_node_, -1);
    topology_ = std::exchange(other.topology_, nullptr);
  }
  return *this;
}

NumaBuffer::~NumaBuffer() { Release(); }

void NumaBuffer::Release() {
  if (data_ == nullptr) return;
  if (topology_ != nullptr) {
    hwloc_free(topology_->handle(), data_, static_cast<size_t>(size_));
  } else {
    std::free(data_);
  }
  data_ = nullptr;
}

}  // namespace glm::numa
