#include "shard_worker/model/checkpoint_layout.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace glm::model {

std::string LayerPrefix(int64_t layer) { return absl::StrCat("model.layers.", layer, "."); }

int64_t TensorLayer(const std::string& name) {
  static const std::string kPrefix = "model.layers.";
  if (!absl::StartsWith(name, kPrefix)) return -1;
  return std::strtoll(name.c_str() + kPrefix.size(), nullptr, 10);
}

namespace {



void AddMlp(ExpectedMap& m, const std::string& prefix, int64_t hidden, int64_t inter) {
  m[prefix + "gate_proj.weight"] = {TensorRole::kMatrix, {inter, hidden}};
  m[prefix + "up_proj.weight"] = {TensorRole::kMatrix, {inter, hidden}};
  m[prefix + "down_proj.weight"] = {TensorRole::kMatrix, {hidden, inter}};
}

void AddLayer(ExpectedMap& m, const ModelConfig& c, int64_t layer) {
  const std::string p = LayerPrefix(layer);
  const int64_t h = c.hidden_size, heads = c.num_attention_heads;
  m[p + "input_layernorm.weight"] = {TensorRole::kVector, {h}};
  m[p + "post_attention_layernorm.weight"] = {TensorRole::kVector, {h}};
  const std::string a = p + "self_attn.";
  m[a + "q_a_proj.weight"] = {TensorRole::kMatrix, {c.q_lora_rank, h}};
  m[a + "q_a_layernorm.weight"] = {TensorRole::kVector, {c.q_lora_rank}};
  m[a + "q_b_proj.weight"] = {TensorRole::kMatrix, {heads * c.qk_head_dim(), c.q_lora_rank}};
  m[a + "kv_a_proj_with_mqa.weight"] = {TensorRole::kMatrix, {c.kv_lora_rank + c.qk_rope_head_dim, h}};
  m[a + "kv_a_layernorm.weight"] = {TensorRole::kVector, {c.kv_lora_rank}};
  m[a + "kv_b_proj.weight"] = {TensorRole::kMatrix, {heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}};
  m[a + "o_proj.weight"] = {TensorRole::kMatrix, {h, heads * c.v_head_dim}};
  // Shared-indexer layers reuse an earlier selection; checkpoints may still carry weights.
  const bool optional = c.indexer_kind(layer) == IndexerKind::kShared;
  const std::string ix = a + "indexer.";
  m[ix + "wq_b.weight"] = {TensorRole::kMatrix, {c.index_n_heads * c.index_head_dim, c.q_lora_rank}, optional};
  m[ix + "wk.weight"] = {TensorRole::kMatrix, {c.index_head_dim, h}, optional};
  m[ix + "k_norm.weight"] = {TensorRole::kVector, {c.index_head_dim}, optional};
  m[ix + "k_norm.bias"] = {TensorRole::kVector, {c.index_head_dim}, optional};
  m[ix + "weights_proj.weight"] = {TensorRole::kMatrix, {c.index_n_heads, h}, optional};
  if (c.mlp_kind(layer) == MlpKind::kDense) {
    AddMlp(m, p + "mlp.", h, c.intermediate_size);
  } else {
    m[p + "mlp.gate.weight"] = {TensorRole::kMatrix, {c.n_routed_experts, h}};
    m[p + "mlp.gate.e_score_correction_bias"] = {TensorRole::kVector, {c.n_routed_experts}};
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      AddMlp(m, absl::StrCat(p, "mlp.experts.", e, "."), h, c.moe_intermediate_size);
    if (c.n_shared_experts > 0)
      AddMlp(m, p + "mlp.shared_experts.", h, c.moe_intermediate_size * c.n_shared_experts);
  }
  if (layer == c.num_hidden_layers) {  // MTP
    m[p + "enorm.weight"] = {TensorRole::kVector, {h}};
    m[p + "hnorm.weight"] = {TensorRole::kVector, {h}};
    m[p + "eh_proj.weight"] = {TensorRole::kMatrix, {h, 2 * h}};
    m[p + "embed_tokens.weight"] = {TensorRole::kMatrix, {c.vocab_size, h}};
    m[p + "shared_head.norm.weight"] = {TensorRole::kVector, {h}};
    m[p + "shared_head.head.weight"] = {TensorRole::kMatrix, {c.vocab_size, h}};
  }
}

}  // namespace

ExpectedMap ExpectedTensors(const ModelConfig& c) {
  ExpectedMap m;
  m["model.embed_tokens.weight"] = {TensorRole::kMatrix, {c.vocab_size, c.hidden_size}};
  m["model.norm.weight"] = {TensorRole::kVector, {c.hidden_size}};
  m["lm_head.weight"] = {TensorRole::kMatrix, {c.vocab_size, c.hidden_size}, c.tie_word_embeddings};
  for (int64_t l = 0; l < c.num_weight_layers(); ++l) AddLayer(m, c, l);
  return m;
}


}  // namespace glm::model
