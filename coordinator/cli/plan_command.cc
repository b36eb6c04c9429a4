#include "coordinator/cli/plan_command.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/placement/model_name.h"
#include "coordinator/placement/planner.h"
#include "coordinator/placement/size_flags.h"
#include "numa/topology.h"
#include "shard_worker/model/model_config.h"

namespace glm::cli {
namespace {

absl::StatusOr<std::unique_ptr<numa::Topology>> LoadTopology(const PlanCommandOptions& o) {
  if (o.topology_xml.empty() == o.synthetic.empty())
    return absl::InvalidArgumentError("plan needs exactly one of --topology XML and --synthetic \"pack:2 numa:2 core:16\"");
  if (!o.topology_xml.empty()) {
    if (o.numa_memory_gib > 0)
      return absl::InvalidArgumentError("--numa-memory-gib applies to --synthetic only (XML topologies carry memory)");
    return numa::Topology::FromXmlFile(o.topology_xml);
  }
  return numa::Topology::FromSynthetic(
      o.synthetic, o.numa_memory_gib > 0 ? o.numa_memory_gib : numa::Topology::kDefaultSyntheticNumaMemoryGib);
}

}  // namespace

absl::StatusOr<std::string> RunPlanCommand(const PlanCommandOptions& options) {
  namespace fs = std::filesystem;
  if (options.model_dir.empty()) return absl::InvalidArgumentError("plan needs --model DIR");
  // A plan names every host's ranks; 100000 hosts took 33 s and 2e9 never ended.
  constexpr int kMaxHosts = 4096;
  if (options.hosts < 1 || options.hosts > kMaxHosts)
    return absl::InvalidArgumentError(absl::StrCat("--hosts must be 1..", kMaxHosts, ", got ", options.hosts));
  if (options.stages < 0) return absl::InvalidArgumentError(absl::StrCat("--stages must not be negative, got ", options.stages));
  // Finite and in range before any arithmetic: inf / nan / 1e30 made garbage plans (INT64_MIN
  // bytes, 0 ms/token), and nan was silently taken as 0 (the estimate).
  if (auto s = placement::CheckGbpsFlag("--bandwidth-gbps", options.bandwidth_gbps, "estimate"); !s.ok()) return s;
  if (auto s = placement::CheckGibFlag("--expert-memory-gib", options.expert_memory_gib, "all routed experts resident");
      !s.ok())
    return s;
  if (auto s = placement::CheckGibFlag("--memory-budget-gib", options.memory_budget_gib,
                                       "90% of the NUMA node's share");
      !s.ok())
    return s;
  if (auto s = placement::CheckGibFlag("--numa-memory-gib", options.numa_memory_gib, "64"); !s.ok()) return s;
  if (auto s = placement::CheckGibFlag("--kv-cache-gib", options.kv_cache_gib); !s.ok()) return s;
  fs::path config_path = options.model_dir;
  std::error_code ec;
  if (fs::is_directory(config_path, ec)) config_path /= "config.json";
  auto config = model::ModelConfig::FromFile(config_path.string());
  if (!config.ok()) return config.status();

  auto topology = LoadTopology(options);
  if (!topology.ok()) return topology.status();
  std::vector<placement::HostTopology> hosts;
  for (int h = 0; h < options.hosts; ++h) {
    placement::HostTopology host = (*topology)->ToProto(absl::StrCat("host", h));
    if (options.bandwidth_gbps > 0)
      for (auto& node : *host.mutable_numa_nodes()) node.set_bandwidth_gbps(options.bandwidth_gbps);
    hosts.push_back(std::move(host));
  }

  placement::PlannerOptions planner;
  planner.stages = options.stages;
  planner.expert_layout = options.expert_layout;
  planner.memory_budget_gib = options.memory_budget_gib;
  planner.kv_cache_gib = options.kv_cache_gib;
  planner.weight_dtype = options.weight_dtype;
  planner.quantize_scope = options.quantize_scope;
  planner.activation_dtype = options.activation_dtype;
  planner.kv_cache_dtype = options.kv_cache_dtype;
  planner.index_key_dtype = options.index_key_dtype;
  planner.expert_memory_gib = options.expert_memory_gib;
  planner.model_name = placement::ModelNameFromPath(options.model_dir);
  std::optional<placement::ExpertLoad> load;
  if (!options.expert_load.empty()) {
    auto read = placement::ReadExpertLoadFile(options.expert_load, *config);
    if (!read.ok()) return absl::Status(read.status().code(), absl::StrCat("--expert-load ", read.status().message()));
    load = *std::move(read);
  }
  planner.expert_load = load ? &*load : nullptr;
  planner.hot_expert_replicas = options.hot_expert_replicas;
  auto plan = placement::Plan(*config, placement::OnePerNumaNode(hosts), planner);
  if (!plan.ok()) return plan.status();
  auto json = placement::PlanToJson(*plan);
  if (!json.ok()) return json.status();
  if (options.json) return *json;
  return absl::StrCat(placement::PlanToTable(*plan), "\n", *json);
}

}  // namespace glm::cli
