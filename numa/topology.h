// A host's hardware topology (packages, NUMA nodes, cores, PUs) as hwloc sees it: this machine,
// a synthetic description ("pack:2 numa:2 core:16") or an XML export of another machine. This is
// the only layer that talks to hwloc; callers see protobuf HostTopology or plain values.
#ifndef GLM_NUMA_TOPOLOGY_H_
#define GLM_NUMA_TOPOLOGY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protos/placement.pb.h"

// hwloc's handle type, forward-declared so that <hwloc.h> stays inside numa/*.cc.
struct hwloc_topology;

namespace glm::numa {

class Topology {
 public:
  // Memory given to each NUMA node of a synthetic topology when the caller does not say.
  static constexpr double kDefaultSyntheticNumaMemoryGib = 64.0;

  // This machine (loaded from the OS).
  static absl::StatusOr<std::unique_ptr<Topology>> Local();
  // A synthetic topology in the syntax: space-separated `level:count` items, outermost
  // first, with levels pack|package|socket, numa|node, l3, l2, core, pu (e.g. "pack:2 numa:2
  // core:16"). A missing pu level means one PU per core; a missing numa level means one node
  // per machine. Every NUMA node gets `numa_memory_gib` of memory.
  static absl::StatusOr<std::unique_ptr<Topology>> FromSynthetic(
      const std::string& desc, double numa_memory_gib = kDefaultSyntheticNumaMemoryGib);
  // An hwloc XML export (`lstopo foo.xml` or ToXml()).
  static absl::StatusOr<std::unique_ptr<Topology>> FromXmlFile(const std::string& path);
  static absl::StatusOr<std::unique_ptr<Topology>> FromXmlString(const std::string& xml);

  ~Topology();
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  // True when loaded from this machine's OS: only then can binding take effect.
  bool is_this_system() const { return this_system_; }

  int num_packages() const;
  int num_cores() const;
  int num_pus() const;
  // OS indexes of the NUMA nodes, in logical order.
  std::vector<int> NumaNodeOsIndexes() const;

  // packages, then per NUMA node its os_index, physical cores, PUs and local memory bytes
  // (bandwidth_gbps left 0 = unknown; a probe fills it in).
  placement::HostTopology ToProto(const std::string& hostname) const;
  // hwloc XML export; FromXmlString(ToXml()) gives the same ToProto().
  absl::StatusOr<std::string> ToXml() const;

  // The raw handle, for binding.cc and numa_buffer.cc in this folder only.
  hwloc_topology* handle() const { return topo_; }

 private:
  Topology(hwloc_topology* topo, bool this_system) : topo_(topo), this_system_(this_system) {}

  hwloc_topology* topo_;  // owned
  bool this_system_;
};

// Translates the synthetic syntax into hwloc 2.9's ("pack:2 numa:2 core:16" ->
// "pack:2 numa:2(memory=N) core:16 pu:1"). Exposed for tests and error messages.
absl::StatusOr<std::string> ToHwlocSyntheticDescription(const std::string& desc, double numa_memory_gib);

}  // namespace glm::numa

#endif  // GLM_NUMA_TOPOLOGY_H_
