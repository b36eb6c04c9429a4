// GLM-5 / DeepSeek-V3 expert routing for one token: sigmoid scores, correction bias for the
// choice only, group-limited top-k (groups ranked by the sum of their two best biased scores),
// weights from the unbiased scores, normalised if configured, times routed_scaling_factor.
#ifndef GLM_SHARD_WORKER_MOE_ROUTER_H_
#define GLM_SHARD_WORKER_MOE_ROUTER_H_

#include <cstdint>
#include <vector>

#include "shard_worker/model/model_config.h"

namespace glm::moe {

struct Routing {
  std::vector<int32_t> experts;  // [top_k], ascending expert id (a canonical summation order)
  std::vector<float> weights;    // [top_k], matching experts
};

class Router {
 public:
  explicit Router(const model::ModelConfig& config);
  // logits [n_routed_experts] (x · router_weightᵀ), bias [n_routed_experts].
  Routing Route(const float* logits, const float* bias) const;

 private:
  int64_t n_experts_, n_group_, topk_group_, top_k_;
  bool norm_topk_prob_;
  float scaling_;
};

}  // namespace glm::moe

#endif  // GLM_SHARD_WORKER_MOE_ROUTER_H_
