// Pinning the process and its compute threads to a NUMA node's cores, and reporting where a
// process runs (like Open MPI's --report-bindings), so each shard worker reads NUMA-local memory.
#ifndef GLM_NUMA_BINDING_H_
#define GLM_NUMA_BINDING_H_

#include <string>

#include "absl/status/status.h"
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

// The NUMA node (os index) of the CPU the calling thread last ran on; -1 if unknown.
int NumaNodeOfCurrentThread();

}  // namespace glm::numa

#endif  // GLM_NUMA_BINDING_H_
