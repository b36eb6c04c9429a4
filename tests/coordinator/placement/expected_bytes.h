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

// A matrix as stored: FP8 + f32 block scales (FP8 checkpoints) or BF16.
inline int64_t StoredBytes(const model::ModelConfig& c, const model::ExpectedTensor& t) {
  const int64_t numel = t.shape[0] * t.shape[1];
  if (!c.fp8_weights) return 2 * numel;
  const int64_t blocks = ((t.shape[0] + 127) / 128) * ((t.shape[1] + 127) / 128);
  return numel + 4 * blocks;
}

// Bytes one tensor takes once loaded: vectors and the router as f32; kv_b_proj as stored plus
// each head's W_uk transposed (BF16, f32 for FP8 checkpoints); embeddings, heads and the
// indexer's weights_proj as BF16; every other matrix as stored.
inline int64_t LoadedBytes(const model::ModelConfig& c, const std::string& name, const model::ExpectedTensor& t) {
  int64_t numel = 1;
  for (int64_t d : t.shape) numel *= d;
  if (t.role == model::TensorRole::kVector) return 4 * numel;
  if (Contains(name, "mlp.gate.weight")) return 4 * numel;
  if (Contains(name, "kv_b_proj")) {
    const int64_t heads = t.shape[0] / (c.qk_nope_head_dim + c.v_head_dim);
    return StoredBytes(c, t) + heads * c.qk_nope_head_dim * t.shape[1] * (c.fp8_weights ? 4 : 2);
  }
  if (Contains(name, "embed_tokens") || Contains(name, "lm_head") || Contains(name, "shared_head.head") ||
      Contains(name, "weights_proj"))
    return 2 * numel;
  return StoredBytes(c, t);
}

// Of a kv_b_proj's loaded bytes, those a decode step does not read: its stored W_uk rows (the
// transposed copy is read instead), counted as the planner does (the W_uv rows' share of the
// stored bytes is read).
inline int64_t KvBUnreadBytes(const model::ModelConfig& c, const model::ExpectedTensor& t) {
  const int64_t stored = StoredBytes(c, t);
  return stored - stored * c.v_head_dim / (c.qk_nope_head_dim + c.v_head_dim);
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
