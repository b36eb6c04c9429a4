// Test-side byte counts computed from the checkpoint layout by tensor name, independently of the
// planner's cost model (which works from shapes and slices).
#ifndef GLM_TESTS_COORDINATOR_PLACEMENT_EXPECTED_BYTES_H_
#define GLM_TESTS_COORDINATOR_PLACEMENT_EXPECTED_BYTES_H_

#include <cstdint>
#include <string>

#include "shard_worker/model/checkpoint_layout.h"
#include "shard_worker/model/model_config.h"

namespace glm::placement::testing {

inline bool Contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// Bytes one tensor takes once loaded: vectors, the router and kv_b_proj as f32; embeddings, heads
// and the indexer's weights_proj as BF16; every other matrix FP8 + f32 block scales (FP8
// checkpoints) or BF16.
inline int64_t LoadedBytes(const model::ModelConfig& c, const std::string& name, const model::ExpectedTensor& t) {
  int64_t numel = 1;
  for (int64_t d : t.shape) numel *= d;
  if (t.role == model::TensorRole::kVector) return 4 * numel;
  if (Contains(name, "kv_b_proj") || Contains(name, "mlp.gate.weight")) return 4 * numel;
  if (Contains(name, "embed_tokens") || Contains(name, "lm_head") || Contains(name, "shared_head.head") ||
      Contains(name, "weights_proj"))
    return 2 * numel;
  if (!c.fp8_weights) return 2 * numel;
  const int64_t blocks = ((t.shape[0] + 127) / 128) * ((t.shape[1] + 127) / 128);
  return numel + 4 * blocks;
}

// Parts every rank of a stage holds whole (the rest is sliced among the ranks).
inline bool Replicated(const std::string& name, const model::ExpectedTensor& t) {
  if (t.role == model::TensorRole::kVector) return true;
  return Contains(name, "q_a_proj") || Contains(name, "kv_a_proj") || Contains(name, "indexer.") ||
         Contains(name, "mlp.gate.weight") || Contains(name, "embed_tokens") || Contains(name, "eh_proj");
}

struct ModelBytes {
  int64_t total = 0;
  int64_t replicated = 0;
};

// What the engine loads: everything except the optional indexer weights of shared layers.
inline ModelBytes CountModelBytes(const model::ModelConfig& c) {
  ModelBytes b;
  for (const auto& [name, t] : model::ExpectedTensors(c)) {
    if (t.optional) continue;
    const int64_t bytes = LoadedBytes(c, name, t);
    b.total += bytes;
    if (Replicated(name, t)) b.replicated += bytes;
  }
  return b;
}

// One routed expert's gate/up/down.
inline int64_t ExpertBytes(const model::ModelConfig& c) {
  int64_t sum = 0;
  for (const auto& [name, t] : model::ExpectedTensors(c)) {
    const std::string prefix = model::LayerPrefix(c.num_weight_layers() - 1) + "mlp.experts.0.";
    if (name.rfind(prefix, 0) == 0) sum += LoadedBytes(c, name, t);
  }
  return sum;
}

}  // namespace glm::placement::testing

#endif  // GLM_TESTS_COORDINATOR_PLACEMENT_EXPECTED_BYTES_H_
