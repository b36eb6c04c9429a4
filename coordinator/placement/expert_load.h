// Recorded routing statistics: how many tokens chose each routed expert of each MoE layer
// (`glmctl expert-load` records them over a text). The planner replicates the hottest experts
// from them (--expert-load FILE --hot-expert-replicas N).
//
// File form (JSON):
//   {"model": "glm5-tiny-code", "tokens": 4096,
//    "layers": [{"layer": 1, "tokens_per_expert": [312, 97, ...]}, ...]}
// one entry per MoE layer recorded (num_hidden_layers is the MTP layer), n_routed_experts counts each.
#ifndef GLM_COORDINATOR_PLACEMENT_EXPERT_LOAD_H_
#define GLM_COORDINATOR_PLACEMENT_EXPERT_LOAD_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shard_worker/model/model_config.h"

namespace glm::placement {

struct ExpertLoad {
  std::string model;   // the model directory's name it was recorded on (may be empty)
  int64_t tokens = 0;  // tokens run through the model
  // layer -> [n_routed_experts] tokens routed to each expert.
  std::map<int64_t, std::vector<int64_t>> tokens_per_expert;
};

std::string ExpertLoadToJson(const ExpertLoad& load);

// Parses and checks against the model: every layer a MoE layer of it (or its MTP layer), listed
// once, with n_routed_experts non-negative integer counts. InvalidArgument naming what is wrong.
absl::StatusOr<ExpertLoad> ExpertLoadFromJson(const std::string& json, const model::ModelConfig& config);

// The file (--expert-load): NotFound / PermissionDenied / InvalidArgument naming the path.
absl::StatusOr<ExpertLoad> ReadExpertLoadFile(const std::string& path, const model::ModelConfig& config);

}  // namespace glm::placement

#endif  // GLM_COORDINATOR_PLACEMENT_EXPERT_LOAD_H_
