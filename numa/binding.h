// Pinning the process and its compute threads to a NUMA node's cores, and reporting where a
// process runs (like Open MPI's --report-bindings), so each shard worker reads NUMA-local memory.
#ifndef GLM_NUMA_BINDING_H_
#define GLM_NUMA_BINDING_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "numa/topology.h"

namespace glm::numa {

// Binds the whole process to the cores of NUMA node `os_index` and sets the memory policy so
// that later allocations are bound to that node. FailedPrecondition for a topology that is not
// this machine's; NotFound for an unknown node; Unimplemented where the OS refuses binding. On a
// one-node machine a refused memory policy is not an error (all memory is local there).
absl::Status BindProcessToNumaNode(const Topology& topology, int os_index);

// Binds the calling thread to core `core_index` (0-based, in logical order) of NUMA node
// `numa_os_index`: compute threads get one core each, no oversubscription.
absl::Status BindThisThreadToCore(const Topology& topology, int numa_os_index, int core_index);

// "host pid 1234 bound to cpus 0-15 (NUMA node 0)", or "... not bound" when the cpuset covers
// the whole machine. This and NumaNodeOfCurrentThread() load the machine's topology on each call
// (milliseconds): they are for start-up reports and tests, not the hot path.
std::string DescribeBinding();

// The NUMA node (os index) of the CPU the calling thread last ran on; -1 if unknown. This says
// where the thread happens to run, not where it may run: never use it to decide whether the
// process is bound (that is NumaNodeOfProcessBinding()).
int NumaNodeOfCurrentThread();

// The NUMA node (os index) whose cpus contain all of `cpu_list` (hwloc/Linux list syntax, e.g.
// "0-3,8"), or -1 when those cpus span several nodes. Cpus the topology does not have are
// ignored. InvalidArgument for an unreadable or empty list. This is the "the launcher already
// bound this process to one node" test, on any topology (synthetic ones in tests).
absl::StatusOr<int> NumaNodeContainingCpus(const Topology& topology, const std::string& cpu_list);

// NumaNodeContainingCpus() of this process's CPU binding (the cpus it may run on,
// hwloc_get_cpubind); -1 when it may run on cpus of several nodes or the binding is unknown.
// On a one-node machine every process is "bound" to that node.
int NumaNodeOfProcessBinding(const Topology& topology);

}  // namespace glm::numa

#endif  // GLM_NUMA_BINDING_H_
