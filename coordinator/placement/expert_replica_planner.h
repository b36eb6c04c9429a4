// The planner's hot-expert replicas: with recorded routing statistics (expert_load.h), copies of
// each expert-parallel stage's most-chosen routed experts go to the stage's other ranks where
// their memory allows, so that the per-step choice of which holder computes a shared expert
// (moe::ExpertReplicas) evens out the busiest rank's reads and arithmetic.
#ifndef GLM_COORDINATOR_PLACEMENT_EXPERT_REPLICA_PLANNER_H_
#define GLM_COORDINATOR_PLACEMENT_EXPERT_REPLICA_PLANNER_H_

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "coordinator/placement/expert_load.h"
#include "protos/placement.pb.h"
#include "shard_worker/model/model_config.h"

namespace glm::placement {

// --hot-expert-replicas auto: every expert any token chose, as far as memory allows.
inline constexpr int64_t kAllReplicasThatFit = std::numeric_limits<int64_t>::max();

// "auto" or a count >= 0 (the flag's value); false for anything else.
bool ParseHotExpertReplicas(std::string_view text, int64_t* per_layer);

struct ReplicaSummary {
  int64_t added = 0;        // replicas placed
  int64_t no_memory = 0;    // wanted but no rank without the expert had the memory left
};

// Up to `per_layer` replicas in every MoE layer of every expert-parallel stage of 2+ ranks whose
// load `load` recorded: each layer's most-chosen experts (never experts no token chose), placed
// over all the stage's layers in order of their share of their layer's choices, most first, so
// that where memory runs out the coolest are left. Each is copied once, to the rank of the stage
// that does not hold it with the least expected load in that layer (tokens of the experts it
// holds, a shared expert's split between its holders; ties: lower rank) among those whose weights
// plus KV reserve plus the copy fit memory_budget_bytes (0 = unlimited) and which stream no
// experts from disk. Then recounts the plan's bytes and predictions (RecountPlan).
// InvalidArgument for per_layer < 0, for the expert-tensor-parallel layout, or for a plan that
// already lists replicas.
absl::StatusOr<ReplicaSummary> AddHotExpertReplicas(const model::ModelConfig& config, const ExpertLoad& load,
                                                    int64_t per_layer, PlacementPlan* plan);

}  // namespace glm::placement

#endif  // GLM_COORDINATOR_PLACEMENT_EXPERT_REPLICA_PLANNER_H_
