// The MoE block: route every token, run each active expert once over the tokens routed to it
// (grouped, so an expert's weights are read once per step), add the shared expert.
#ifndef GLM_SHARD_WORKER_MOE_MOE_LAYER_H_
#define GLM_SHARD_WORKER_MOE_MOE_LAYER_H_

#include <cstdint>
#include <vector>

#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/model_config.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/moe/router.h"

namespace glm::moe {

// Per-step statistics (for the decode benchmark's byte count and load-balance reports).
struct MoeStats {
  int64_t expert_bytes_read = 0;  // routed experts actually computed (each once per step)
  int64_t active_experts = 0;
};

// y = act(x·gateᵀ) ⊙ (x·upᵀ) · downᵀ for x [n, hidden] → y [n, hidden].
void RunMlp(const model::MlpWeights& w, const float* x, int64_t n, float* y, kernels::ThreadPool* pool);

class MoeLayer {
 public:
  MoeLayer(const model::ModelConfig& config, kernels::ThreadPool* pool);

  // x [T, hidden] (post-attention normalised) → out [T, hidden].
  void Forward(const model::MoeWeights& w, const float* x, int64_t T, float* out, MoeStats* stats) const;

 private:
  const model::ModelConfig& config_;
  kernels::ThreadPool* pool_;
  Router router_;
};

}  // namespace glm::moe

#endif  // GLM_SHARD_WORKER_MOE_MOE_LAYER_H_
