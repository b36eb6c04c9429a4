// The MoE block: route every token, run each active expert once over the tokens routed to it
// (grouped, so an expert's weights are read once per step), add the shared expert.
#ifndef GLM_SHARD_WORKER_MOE_MOE_LAYER_H_
#define GLM_SHARD_WORKER_MOE_MOE_LAYER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/model_config.h"
#include "absl/status/status.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/moe/expert_store.h"
#include "shard_worker/moe/router.h"

namespace glm::moe {

// Per-step statistics (for the decode benchmark's byte count and load-balance reports).
struct MoeStats {
  // Routed experts actually computed, each once per step (ExpertSource::counted_experts).
  int64_t expert_bytes_read = 0;
  int64_t active_experts = 0;
  // Routing statistics: [n_routed_experts] counters each Forward adds its tokens' choices to (the
  // serving cluster's record for the planner's hot-expert replicas). Null: not counted.
  std::atomic<int64_t>* tokens_per_expert = nullptr;
};

// Where a layer's routed experts come from when they are streamed (ExpertStore::streaming()).
// Decode with resident experts splits each expert's rows across the pool once an expert holds at
// least this many bytes (default 1 MiB; smaller experts run whole, one per task). Process-wide,
// for tests and benchmarks; the results are the same either way.
void SetSplitExpertBytes(int64_t bytes);
int64_t SplitExpertBytes();

struct ExpertSource {
  ExpertStore* store = nullptr;  // null or not streaming: MoeWeights::experts (resident)
  int64_t layer = 0;
  // The next streamed MoE layer: its router applied to this layer's input predicts which of its
  // experts to prefetch while this layer computes. Null: no prefetch.
  const model::MoeWeights* next = nullptr;
  int64_t next_layer = -1;
  // Token groups of one step (Glm5Model) each compute the experts their tokens chose, so two
  // groups may compute the same one: [ceil(n_routed_experts / 64)] bits of the experts whose
  // bytes a group already counted this step, so MoeStats counts each once. Null: count all.
  std::atomic<uint64_t>* counted_experts = nullptr;
};

// Calibration (model/mlp_calibration.h): called with every MLP matmul's input rows x [n, weight.cols]
// as the MLPs run — `weight` is gate_proj for the gate/up input, down_proj for the down input
// (silu(gate)·up). Called from the pool's threads: it must be thread-safe. Process-wide; null
// (the default) costs one atomic load per MLP.
using MlpInputObserver = std::function<void(const kernels::WeightView& weight, const float* x, int64_t n)>;
void SetMlpInputObserver(const MlpInputObserver* observer);

// y = act(x·gateᵀ) ⊙ (x·upᵀ) · downᵀ for x [n, hidden] → y [n, hidden].
void RunMlp(const model::MlpWeights& w, const float* x, int64_t n, float* y, kernels::ThreadPool* pool);

class MoeLayer {
 public:
  MoeLayer(const model::ModelConfig& config, kernels::ThreadPool* pool);

  // x [T, hidden] (post-attention normalised) → out [T, hidden].
  void Forward(const model::MoeWeights& w, const float* x, int64_t T, float* out, MoeStats* stats) const;
  // The same, with the experts from `source` (bit-identical results; errors are failed reads).
  absl::Status Forward(const model::MoeWeights& w, const float* x, int64_t T, float* out, MoeStats* stats,
                       const ExpertSource& source) const;

 private:
  // f32 router logits [T, E] of x [T, hidden] against router [E, hidden].
  void RouterLogits(const std::vector<float>& router, const float* x, int64_t T, float* logits) const;
  // Routes x with the next layer's router and queues the experts it picks (most tokens first).
  void PrefetchNext(const model::MoeWeights& next, int64_t next_layer, const float* x, int64_t T,
                    ExpertStore* store) const;

  const model::ModelConfig& config_;
  kernels::ThreadPool* pool_;
  Router router_;
};

}  // namespace glm::moe

#endif  // GLM_SHARD_WORKER_MOE_MOE_LAYER_H_
