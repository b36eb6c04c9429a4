// `glmctl plan`: the placement planner from the command line. Reads a model's config.json and a
// host topology (hwloc XML or a synthetic description), assumes N identical hosts with one worker
// per NUMA node (`mpirun --map-by ppr:1:numa`), and prints the plan as a table and as JSON.
#ifndef GLM_COORDINATOR_CLI_PLAN_COMMAND_H_
#define GLM_COORDINATOR_CLI_PLAN_COMMAND_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/placement/size_flags.h"

namespace glm::cli {

struct PlanCommandOptions {
  std::string model_dir;      // --model: checkpoint directory (its config.json) or a config.json
  std::string topology_xml;   // --topology: hwloc XML of one host (`lstopo host.xml`)
  std::string synthetic;      // --synthetic: e.g. "pack:2 numa:2 core:16" (instead of --topology)
  int hosts = 1;              // --hosts: identical hosts, named host0..host{N-1}
  int stages = 0;             // --stages: pipeline stages; 0 = one per host
  std::string expert_layout = "expert-parallel";  // --expert-layout: or "expert-tensor-parallel"
  double memory_budget_gib = 0;  // --memory-budget-gib: per rank; 0 = 90% of its NUMA node's share
  double numa_memory_gib = 0;    // --numa-memory-gib: synthetic only, memory per NUMA node; 0 = 64
  // --kv-cache-gib: per rank, reserved on top of the weights (the coordinator's default)
  double kv_cache_gib = placement::kDefaultKvCacheGib;
  double bandwidth_gbps = 0;     // --bandwidth-gbps: measured per-node read bandwidth; 0 = estimate
  std::string weight_dtype = "stored";    // --weight-dtype: how workers hold matrices (int8, int4, ...)
  std::string quantize_scope = "experts"; // --quantize-scope: experts | all | mtp (with int8/int4)
  std::string activation_dtype = "f32";   // --activation-dtype: f32 | bf16 (written into the plan)
  std::string kv_cache_dtype = "f32";     // --kv-cache-dtype: the rows kv_bytes_per_token counts
  std::string index_key_dtype = "f32";    // --index-key-dtype: the indexer key rows it counts
  double expert_memory_gib = 0;  // --expert-memory-gib: per rank, routed experts beyond it on disk
  std::string expert_load;       // --expert-load: routing statistics (glmctl expert-load) for the replicas
  int64_t hot_expert_replicas = 0;  // --hot-expert-replicas: copies of each MoE layer's N hottest experts
  bool json = false;             // --json: print only the JSON
};

// The text to print (table, blank line, JSON; or JSON alone). InvalidArgument for bad options,
// ResourceExhausted (with the numbers) when the model does not fit.
absl::StatusOr<std::string> RunPlanCommand(const PlanCommandOptions& options);

}  // namespace glm::cli

#endif  // GLM_COORDINATOR_CLI_PLAN_COMMAND_H_
