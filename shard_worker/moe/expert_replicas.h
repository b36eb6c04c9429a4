// Hot routed experts held by more than one rank of an expert-parallel stage (the planner's
// replicas, placement::RankAssignment::replicas). Each step, every rank of the stage decides from
// the same routing which holder computes each active expert, so every expert is computed exactly
// once in the stage while the busiest rank gets as little as the step allows.
#ifndef GLM_SHARD_WORKER_MOE_EXPERT_REPLICAS_H_
#define GLM_SHARD_WORKER_MOE_EXPERT_REPLICAS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace glm::moe {

class ExpertReplicas {
 public:
  // What computing one expert costs in a step, in tokens: its weights are read once for the
  // whole batch (decode is bound by those bytes), then each routed token adds its arithmetic.
  // Reading a weight takes as long as about (bytes per weight) x (multiply-adds per second) /
  // (bytes per second) tokens' multiply-adds of it: ~3-6 on this project's 2-core VMs, ~10-20
  // on a 64-core node at 300 GB/s. The count only weighs reads against tokens in the balance.
  static constexpr int64_t kReadCostTokens = 16;

  // holders[e]: the stage positions (tp indexes, 0..stage_ranks-1) holding routed expert e of one
  // layer, ascending and distinct, at least one each; self: this rank's position.
  static absl::StatusOr<ExpertReplicas> Create(std::vector<std::vector<int32_t>> holders, int32_t stage_ranks,
                                               int32_t self);

  // tokens[e] (size n_experts): tokens routed to expert e this step (0: inactive). Returns the
  // stage position computing each expert (-1 for inactive ones). Deterministic: single-holder
  // experts load their holder first; then the replicated active experts, most tokens first (ties:
  // lower id), each go to the least-loaded holder (ties: the lower position).
  std::vector<int32_t> Assign(const std::vector<int64_t>& tokens) const;

  int32_t self() const { return self_; }
  int64_t n_experts() const { return static_cast<int64_t>(holders_.size()); }
  const std::vector<int32_t>& holders(int64_t expert) const { return holders_[expert]; }

 private:
  std::vector<std::vector<int32_t>> holders_;
  std::vector<int32_t> replicated_;  // experts with 2+ holders, ascending
  int32_t stage_ranks_ = 1;
  int32_t self_ = 0;
};

}  // namespace glm::moe

#endif  // GLM_SHARD_WORKER_MOE_EXPERT_REPLICAS_H_
