#include "numa/binding.h"

#include <hwloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace glm::numa {
namespace {

struct BitmapDeleter {
  void operator()(hwloc_bitmap_s* b) const { hwloc_bitmap_free(b); }
};
using BitmapPtr = std::unique_ptr<hwloc_bitmap_s, BitmapDeleter>;

hwloc_obj_t FindNumaNode(hwloc_topology_t t, int os_index) {
  for (hwloc_obj_t n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, nullptr); n != nullptr;
       n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, n))
    if (static_cast<int>(n->os_index) == os_index) return n;
  return nullptr;
}

absl::Status RequireThisSystem(const Topology& topology) {
  if (!topology.is_this_system())
    return absl::FailedPreconditionError("binding needs the topology of this machine (Topology::Local())");
  return absl::OkStatus();
}

absl::Status BindError(const std::string& what) {
  const int err = errno;
  // ENOSYS / EXDEV: the OS or hwloc cannot do this binding here (containers, single node).
  if (err == ENOSYS || err == EXDEV)
    return absl::UnimplementedError(absl::StrCat(what, " is not supported here: ", std::strerror(err)));
  return absl::InternalError(absl::StrCat(what, " failed: ", std::strerror(err)));
}

std::string ListString(hwloc_const_bitmap_t set) {
  char* s = nullptr;
  hwloc_bitmap_list_asprintf(&s, set);
  std::string out = s != nullptr ? s : "?";
  std::free(s);
  return out;
}

std::string Hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

// The node whose cpuset contains `cpus` (already cut to the topology's cpus), or -1.
int NodeContaining(hwloc_topology_t t, hwloc_const_bitmap_t cpus) {
  if (hwloc_bitmap_iszero(cpus)) return -1;
  for (hwloc_obj_t n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, nullptr); n != nullptr;
       n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, n))
    if (n->cpuset != nullptr && hwloc_bitmap_isincluded(cpus, n->cpuset)) return static_cast<int>(n->os_index);
  return -1;
}

}  // namespace

absl::Status BindProcessToNumaNode(const Topology& topology, int os_index) {
  if (auto s = RequireThisSystem(topology); !s.ok()) return s;
  hwloc_topology_t t = topology.handle();
  hwloc_obj_t node = FindNumaNode(t, os_index);
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("no NUMA node with os index ", os_index));
  if (hwloc_set_cpubind(t, node->cpuset, HWLOC_CPUBIND_PROCESS) != 0)
    return BindError(absl::StrCat("binding the process to the cpus of NUMA node ", os_index));
  // Memory policy for later allocations (first touch would also land here once the threads are
  // pinned, but the policy also covers threads that are not).
  if (hwloc_set_membind(t, node->nodeset, HWLOC_MEMBIND_BIND, HWLOC_MEMBIND_PROCESS | HWLOC_MEMBIND_BYNODESET) != 0) {
    // With one node all memory is local anyway; containers often refuse mbind (ENOSYS), and a
    // worker that cannot set a pointless policy should still start.
    const bool unsupported = errno == ENOSYS || errno == EXDEV || errno == EPERM;
    if (unsupported && hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE) <= 1) return absl::OkStatus();
    // The cpu binding above stays: say so, or the caller would think nothing was bound.
    return BindError(absl::StrCat("the cpus are bound, but binding the process memory to NUMA node ", os_index));
  }
  return absl::OkStatus();
}

absl::Status BindThisThreadToCore(const Topology& topology, int numa_os_index, int core_index) {
  if (auto s = RequireThisSystem(topology); !s.ok()) return s;
  hwloc_topology_t t = topology.handle();
  hwloc_obj_t node = FindNumaNode(t, numa_os_index);
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("no NUMA node with os index ", numa_os_index));
  const int cores = hwloc_get_nbobjs_inside_cpuset_by_type(t, node->cpuset, HWLOC_OBJ_CORE);
  if (core_index < 0 || core_index >= cores)
    return absl::OutOfRangeError(
        absl::StrCat("core ", core_index, " of NUMA node ", numa_os_index, ": the node has ", cores, " cores"));
  hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(t, node->cpuset, HWLOC_OBJ_CORE, core_index);
  // One PU of the core: the hot loop is bandwidth-bound, so its sibling hyperthread stays idle.
  BitmapPtr set(hwloc_bitmap_dup(core->cpuset));
  hwloc_bitmap_singlify(set.get());
  if (hwloc_set_cpubind(t, set.get(), HWLOC_CPUBIND_THREAD) != 0)
    return BindError(absl::StrCat("binding this thread to core ", core_index, " of NUMA node ", numa_os_index));
  return absl::OkStatus();
}

std::string DescribeBinding() {
  std::string host = Hostname();
  const long pid = static_cast<long>(getpid());
  hwloc_topology_t t = nullptr;
  if (hwloc_topology_init(&t) != 0 || hwloc_topology_load(t) != 0) {
    if (t != nullptr) hwloc_topology_destroy(t);
    return absl::StrCat(host, " pid ", pid, ": topology unavailable");
  }
  BitmapPtr cpus(hwloc_bitmap_alloc());
  std::string out;
  if (hwloc_get_cpubind(t, cpus.get(), HWLOC_CPUBIND_PROCESS) != 0) {
    out = absl::StrCat(host, " pid ", pid, ": binding unknown (", std::strerror(errno), ")");
  } else {
    BitmapPtr nodes(hwloc_bitmap_alloc());
    hwloc_cpuset_to_nodeset(t, cpus.get(), nodes.get());
    const bool whole = hwloc_bitmap_isincluded(hwloc_topology_get_topology_cpuset(t), cpus.get());
    out = absl::StrCat(host, " pid ", pid, whole ? " not bound: cpus " : " bound to cpus ", ListString(cpus.get()),
                       " (NUMA node ", ListString(nodes.get()), ")");
  }
  hwloc_topology_destroy(t);
  return out;
}

int NumaNodeOfCurrentThread() {
  hwloc_topology_t t = nullptr;
  if (hwloc_topology_init(&t) != 0 || hwloc_topology_load(t) != 0) {
    if (t != nullptr) hwloc_topology_destroy(t);
    return -1;
  }
  int result = -1;
  BitmapPtr cpus(hwloc_bitmap_alloc());
  if (hwloc_get_last_cpu_location(t, cpus.get(), HWLOC_CPUBIND_THREAD) == 0) {
    BitmapPtr nodes(hwloc_bitmap_alloc());
    hwloc_cpuset_to_nodeset(t, cpus.get(), nodes.get());
    result = hwloc_bitmap_first(nodes.get());
  }
  hwloc_topology_destroy(t);
  return result;
}

absl::StatusOr<int> NumaNodeContainingCpus(const Topology& topology, const std::string& cpu_list) {
  hwloc_topology_t t = topology.handle();
  BitmapPtr cpus(hwloc_bitmap_alloc());
  if (cpu_list.empty() || hwloc_bitmap_list_sscanf(cpus.get(), cpu_list.c_str()) != 0 || hwloc_bitmap_iszero(cpus.get()))
    return absl::InvalidArgumentError(absl::StrCat("cpu list '", cpu_list, "' is not a list like 0-3,8"));
  hwloc_bitmap_and(cpus.get(), cpus.get(), hwloc_topology_get_topology_cpuset(t));
  return NodeContaining(t, cpus.get());
}

int NumaNodeOfProcessBinding(const Topology& topology) {
  hwloc_topology_t t = topology.handle();
  BitmapPtr cpus(hwloc_bitmap_alloc());
  if (hwloc_get_cpubind(t, cpus.get(), HWLOC_CPUBIND_PROCESS) != 0) return -1;
  hwloc_bitmap_and(cpus.get(), cpus.get(), hwloc_topology_get_topology_cpuset(t));
  return NodeContaining(t, cpus.get());
}

}  // namespace glm::numa
