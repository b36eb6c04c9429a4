#include "numa/topology.h"

#include <hwloc.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace glm::numa {
namespace {

constexpr double kGib = 1024.0 * 1024.0 * 1024.0;

// Owns a topology until it is handed to a Topology object.
struct TopologyDeleter {
  void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
};
using TopologyPtr = std::unique_ptr<hwloc_topology, TopologyDeleter>;

absl::StatusOr<TopologyPtr> InitTopology() {
  hwloc_topology_t t = nullptr;
  if (hwloc_topology_init(&t) != 0) return absl::InternalError("hwloc_topology_init failed");
  return TopologyPtr(t);
}

absl::Status LoadTopology(hwloc_topology_t t, const std::string& what) {
  if (hwloc_topology_load(t) != 0)
    return absl::InternalError(absl::StrCat("hwloc could not load the topology of ", what, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

// hwloc's name of a level in the synthetic syntax, or "" when unknown.
std::string HwlocLevelName(const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "pack" || n == "package" || n == "socket") return "pack";
  if (n == "numa" || n == "node" || n == "numanode") return "numa";
  if (n == "core") return "core";
  if (n == "pu" || n == "thread") return "pu";
  if (n == "l1" || n == "l2" || n == "l3" || n == "l1d" || n == "group") return n;
  return "";
}

int CountInside(hwloc_topology_t t, hwloc_const_cpuset_t set, hwloc_obj_type_t type) {
  return hwloc_get_nbobjs_inside_cpuset_by_type(t, set, type);
}

}  // namespace

absl::StatusOr<std::string> ToHwlocSyntheticDescription(const std::string& desc, double numa_memory_gib) {
  if (!(numa_memory_gib > 0))
    return absl::InvalidArgumentError(absl::StrCat("NUMA memory must be positive, got ", numa_memory_gib, " GiB"));
  const auto memory_bytes = static_cast<int64_t>(numa_memory_gib * kGib);
  std::vector<std::string> out;
  bool has_numa = false, has_pu = false;
  // hwloc builds every object of the description: "numa:20000 core:1" ran for minutes. The
  // largest hosts have a few thousand hardware threads.
  constexpr int64_t kMaxObjects = int64_t{1} << 16;
  int64_t objects = 1;
  for (absl::string_view item : absl::StrSplit(desc, ' ', absl::SkipWhitespace())) {
    std::vector<std::string> parts = absl::StrSplit(item, ':');
    int64_t count = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &count) || count <= 0)
      return absl::InvalidArgumentError(absl::StrCat("synthetic topology '", desc, "': item '", std::string(item),
                                                     "' is not level:count with a positive count"));
    if (count > kMaxObjects || (objects *= count) > kMaxObjects)
      return absl::InvalidArgumentError(absl::StrCat("synthetic topology '", desc, "': more than ", kMaxObjects,
                                                     " objects of one level (the counts multiply)"));
    const std::string level = HwlocLevelName(parts[0]);
    if (level.empty())
      return absl::InvalidArgumentError(absl::StrCat("synthetic topology '", desc, "': unknown level '", parts[0],
                                                     "' (pack, numa, l3, l2, l1, group, core, pu)"));
    if (has_pu) return absl::InvalidArgumentError(absl::StrCat("synthetic topology '", desc, "': pu must be last"));
    std::string s = absl::StrCat(level, ":", count);
    if (level == "numa") {
      if (has_numa)
        return absl::InvalidArgumentError(absl::StrCat("synthetic topology '", desc, "': more than one numa level"));
      has_numa = true;
      absl::StrAppend(&s, "(memory=", memory_bytes, ")");
    }
    has_pu = has_pu || level == "pu";
    out.push_back(std::move(s));
  }
  if (out.empty()) return absl::InvalidArgumentError("synthetic topology description is empty");
  // hwloc needs PUs as the last level and would give a lone default node 1 GiB.
  if (!has_pu) out.push_back("pu:1");
  if (!has_numa) out.insert(out.begin(), absl::StrCat("numa:1(memory=", memory_bytes, ")"));
  return absl::StrJoin(out, " ");
}

absl::StatusOr<std::unique_ptr<Topology>> Topology::Local() {
  auto t = InitTopology();
  if (!t.ok()) return t.status();
  if (auto s = LoadTopology(t->get(), "this machine"); !s.ok()) return s;
  return std::unique_ptr<Topology>(new Topology(t->release(), /*this_system=*/true));
}

absl::StatusOr<std::unique_ptr<Topology>> Topology::FromSynthetic(const std::string& desc, double numa_memory_gib) {
  auto hw_desc = ToHwlocSyntheticDescription(desc, numa_memory_gib);
  if (!hw_desc.ok()) return hw_desc.status();
  auto t = InitTopology();
  if (!t.ok()) return t.status();
  if (hwloc_topology_set_synthetic(t->get(), hw_desc->c_str()) != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("hwloc rejected synthetic topology '", desc, "' (as '", *hw_desc, "')"));
  if (auto s = LoadTopology(t->get(), absl::StrCat("'", desc, "'")); !s.ok()) return s;
  return std::unique_ptr<Topology>(new Topology(t->release(), /*this_system=*/false));
}

absl::StatusOr<std::unique_ptr<Topology>> Topology::FromXmlString(const std::string& xml) {
  auto t = InitTopology();
  if (!t.ok()) return t.status();
  if (hwloc_topology_set_xmlbuffer(t->get(), xml.data(), static_cast<int>(xml.size()) + 1) != 0)
    return absl::InvalidArgumentError("hwloc rejected the XML topology");
  if (auto s = LoadTopology(t->get(), "the XML topology"); !s.ok()) return s;
  return std::unique_ptr<Topology>(new Topology(t->release(), /*this_system=*/false));
}

absl::StatusOr<std::unique_ptr<Topology>> Topology::FromXmlFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the topology XML"));
  std::stringstream buf;
  buf << in.rdbuf();
  auto t = FromXmlString(buf.str());
  if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(path, ": ", t.status().message()));
  return t;
}

Topology::~Topology() { hwloc_topology_destroy(topo_); }

int Topology::num_packages() const {
  int n = hwloc_get_nbobjs_by_type(topo_, HWLOC_OBJ_PACKAGE);
  return n > 0 ? n : 1;  // some VMs report none; the machine is then one package
}
int Topology::num_cores() const { return hwloc_get_nbobjs_by_type(topo_, HWLOC_OBJ_CORE); }
int Topology::num_pus() const { return hwloc_get_nbobjs_by_type(topo_, HWLOC_OBJ_PU); }

std::vector<int> Topology::NumaNodeOsIndexes() const {
  std::vector<int> out;
  for (hwloc_obj_t n = hwloc_get_next_obj_by_type(topo_, HWLOC_OBJ_NUMANODE, nullptr); n != nullptr;
       n = hwloc_get_next_obj_by_type(topo_, HWLOC_OBJ_NUMANODE, n))
    out.push_back(static_cast<int>(n->os_index));
  return out;
}

placement::HostTopology Topology::ToProto(const std::string& hostname) const {
  placement::HostTopology host;
  host.set_hostname(hostname);
  host.set_packages(num_packages());
  for (hwloc_obj_t n = hwloc_get_next_obj_by_type(topo_, HWLOC_OBJ_NUMANODE, nullptr); n != nullptr;
       n = hwloc_get_next_obj_by_type(topo_, HWLOC_OBJ_NUMANODE, n)) {
    placement::NumaNode* node = host.add_numa_nodes();
    node->set_os_index(static_cast<int32_t>(n->os_index));
    node->set_cores(CountInside(topo_, n->cpuset, HWLOC_OBJ_CORE));
    node->set_pus(CountInside(topo_, n->cpuset, HWLOC_OBJ_PU));
    node->set_memory_bytes(static_cast<int64_t>(n->attr->numanode.local_memory));
  }
  return host;
}

absl::StatusOr<std::string> Topology::ToXml() const {
  char* xml = nullptr;
  int len = 0;
  if (hwloc_topology_export_xmlbuffer(topo_, &xml, &len, 0) != 0)
    return absl::InternalError(absl::StrCat("hwloc could not export the topology as XML: ", std::strerror(errno)));
  std::string out(xml, len > 0 ? static_cast<size_t>(len - 1) : 0);  // len counts the NUL
  hwloc_free_xmlbuffer(topo_, xml);
  return out;
}

}  // namespace glm::numa
