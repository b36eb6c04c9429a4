// The placement planner: (model config, every worker's topology, options) -> PlacementPlan.
// Pipeline stages own contiguous layer ranges; inside a stage attention heads and dense MLPs are
// split across the stage's ranks and the routed experts divided among them (see DESIGN.md).
#ifndef GLM_COORDINATOR_PLACEMENT_PLANNER_H_
#define GLM_COORDINATOR_PLACEMENT_PLANNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/placement/expert_load.h"
#include "protos/placement.pb.h"
#include "shard_worker/model/model_config.h"

namespace glm::placement {

// The most compute threads a plan may give one rank (RankAssignment::cores): the worker starts
// that many, so a plan's 2000000000 must be refused, not tried until std::thread fails.
inline constexpr int kMaxRankCores = 4096;

struct PlannerOptions {
  int stages = 0;                  // pipeline stages; 0 = one per host
  // "expert-parallel" (whole experts per rank) or "expert-tensor-parallel" (every rank a slice
  // of every expert).
  std::string expert_layout = "expert-parallel";
  // GiB options: finite, 0..kMaxFlagGib (size_flags.h), else InvalidArgument naming the flag.
  double memory_budget_gib = 0;    // per rank; 0 = the NUMA node's memory minus a reserve
  double kv_cache_gib = 0;         // per rank, reserved on top of the weights
  int64_t weight_bytes_per_param = 0;  // 0 = as stored in the checkpoint (BF16 2, FP8 1 + scales)
  // How the workers hold matrices (model::ParseWeightDType / ParseQuantizeScope names): int8 /
  // int4 count their packed bytes and group scales, bf16 / f32 their element size. Written
  // into the plan for the workers. Not together with weight_bytes_per_param.
  std::string weight_dtype = "stored";
  std::string quantize_scope = "experts";
  std::string activation_dtype = "f32";  // "f32" | "bf16" (kernels::ParseActivationDType), into the plan
  // The KV cache's rows (kv_cache::ParseKvDType names), into the plan: its kv_bytes_per_token.
  std::string kv_cache_dtype = "f32";
  std::string index_key_dtype = "f32";  // the DSA indexer key rows' (the same names), into the plan
  // Per rank: memory for routed experts; beyond it they stay on disk and stream through an LRU
  // cache of this size, so only the cache counts against the memory budget. 0 = all resident.
  double expert_memory_gib = 0;
  std::string model_name;
  // Hot-expert replicas (expert_replica_planner.h): up to this many of each MoE layer's most-chosen
  // experts copied to other ranks of their expert-parallel stage, where memory allows, from the
  // routing statistics `expert_load` recorded (required when > 0; not owned).
  int64_t hot_expert_replicas = 0;
  const ExpertLoad* expert_load = nullptr;
};

// Workers are the ranks 1..N in the order of `workers` (one entry per worker rank: the host
// topology it runs on and the NUMA node it is bound to). Stages take the ranks host by host
// (rank order within a host), so round-robin rank placement (`mpirun --map-by node`) still
// keeps a stage on one host where the ranks per host allow. Fails with the numbers when the
// plan does not fit memory.
struct WorkerSlot {
  HostTopology host;
  int32_t numa_node = 0;  // os index
};

absl::StatusOr<PlacementPlan> Plan(const model::ModelConfig& config, const std::vector<WorkerSlot>& workers,
                                   const PlannerOptions& options);

// The worker slots `mpirun --map-by ppr:1:numa` produces for these hosts (rank order: host by
// host, NUMA node by NUMA node).
std::vector<WorkerSlot> OnePerNumaNode(const std::vector<HostTopology>& hosts);

// Readable table (host -> NUMA node -> rank: layers, heads, experts, GiB, predicted ms/token).
std::string PlanToTable(const PlacementPlan& plan);
// JSON (protobuf JSON mapping) and back; loading validates the plan against the config and
// world size.
absl::StatusOr<std::string> PlanToJson(const PlacementPlan& plan);
absl::StatusOr<PlacementPlan> PlanFromJson(const std::string& json, const model::ModelConfig& config,
                                           int world_size);
// The text of a plan file (the coordinator's --placement), or an error naming the path and why
// it cannot be read: NotFound for a missing file, PermissionDenied, InvalidArgument for a
// directory or an empty file.
absl::StatusOr<std::string> ReadPlanFile(const std::string& path);
// The same for any JSON input file; `expected` names what it should hold (for the empty case).
absl::StatusOr<std::string> ReadJsonFile(const std::string& path, const std::string& expected);
// Structural checks: every layer in exactly one stage, heads / slices / experts / vocab
// covered exactly once per stage, ranks 1..N each assigned once.
// Per rank also: 1 <= cores <= kMaxRankCores (and no more than its NUMA node's hardware threads
// when the plan lists the node), byte counts and predictions not negative, doubles finite.
absl::Status ValidatePlan(const PlacementPlan& plan, const model::ModelConfig& config, int world_size);
// Checks of a pinned plan (--placement) against what the coordinator knows beyond the plan's
// structure; each runs on a plan ValidatePlan accepted.
// The plan's `model` is `model_name` (the served model directory's name) or empty; else
// InvalidArgument naming both.
absl::Status CheckPlanModel(const PlacementPlan& plan, const std::string& model_name);
// Recounts every rank's bytes (weights held, streamed experts, decode and KV bytes per token) and
// the predictions from its slices with the cost model and the plan's weight format, replacing the
// file's numbers (the table and the summary printed them as they were: any total); then
// ResourceExhausted naming each rank whose recounted weights plus kv_reserve_bytes exceed its
// memory_budget_bytes (0 = unlimited).
absl::Status RecountPlan(const model::ModelConfig& config, PlacementPlan* plan);
// Each rank against the worker that runs it (`workers[k - 1]` for rank k, from its hello): the
// plan's host is the worker's; when the worker's topology lists NUMA nodes, the plan's node is
// one of them, its cores at most the node's hardware threads, and the budgets of the ranks on
// a node at most the memory the topology reports for it. InvalidArgument naming rank and field.
absl::Status CheckPlanAgainstWorkers(const PlacementPlan& plan, const std::vector<WorkerSlot>& workers);
// The model's counts a plan stores as int32 (layers, heads, MLP columns, experts, vocabulary
// rows) fit int32: beyond, slices and expert ids would wrap.
absl::Status CheckPlanDimensions(const model::ModelConfig& config);

}  // namespace glm::placement

#endif  // GLM_COORDINATOR_PLACEMENT_PLANNER_H_
