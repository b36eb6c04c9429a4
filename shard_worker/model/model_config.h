// The `config.json` of a Hugging Face `glm_moe_dsa` (GLM-5) checkpoint, validated.
#ifndef GLM_SHARD_WORKER_MODEL_MODEL_CONFIG_H_
#define GLM_SHARD_WORKER_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace glm::model {

enum class MlpKind { kDense, kSparse };
enum class IndexerKind { kFull, kShared };

struct ModelConfig {
  std::string model_type;  // "glm_moe_dsa"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense MLP
  int64_t moe_intermediate_size = 0;  // one routed expert
  int64_t num_hidden_layers = 0;      // main layers; the MTP layer is index num_hidden_layers
  int64_t num_attention_heads = 0;
  int64_t n_shared_experts = 0;
  int64_t n_routed_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.0f;
  int64_t q_lora_rank = 0;
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  std::vector<int32_t> eos_token_ids;
  int32_t pad_token_id = -1;
  int32_t bos_token_id = -1;
  // DSA indexer.
  int64_t index_topk = 0;
  int64_t index_head_dim = 0;
  int64_t index_n_heads = 0;
  std::vector<IndexerKind> indexer_types;  // [num_hidden_layers]
  std::vector<MlpKind> mlp_layer_types;    // [num_hidden_layers]
  int64_t num_nextn_predict_layers = 0;    // 0 or 1 (MTP)
  // Block-FP8 checkpoints (quantization_config.quant_method == "fp8").
  bool fp8_weights = false;
  int64_t fp8_block_rows = 128;
  int64_t fp8_block_cols = 128;
  // Experts stored pre-quantised (`glmctl quantize`; config.json "expert_quantization":
  // {"format": "int8"|"int4", "group_size": N}): every routed and shared expert matrix is held as
  // the re-quantiser's codes (I8 [rows, cols], or U8 [rows, 16·ceil(cols / 32)] of packed int4
  // nibbles) with an F16 "<name>_scale" [rows, groups] beside it, exactly the bytes a load with
  // --weight-dtype FORMAT-gN would compute. Empty: experts in the checkpoint's float format.
  std::string expert_quant_format;      // "", "int8" or "int4"
  int64_t expert_quant_group_size = 0;  // columns per scale; -1 = one scale per row

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool has_mtp() const { return num_nextn_predict_layers > 0; }
  // Layers that hold weights: the main layers plus the MTP layer.
  int64_t num_weight_layers() const { return num_hidden_layers + num_nextn_predict_layers; }
  // MLP/indexer kind of any weight layer (the MTP layer is MoE with its own full indexer).
  MlpKind mlp_kind(int64_t layer) const;
  IndexerKind indexer_kind(int64_t layer) const;

  // Parses and validates config.json text; every error names the field.
  static absl::StatusOr<ModelConfig> FromJson(const std::string& json_text);
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);
  // Serialises back to Hugging Face config.json form (used by `glmctl synth`).
  std::string ToJson() const;
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_MODEL_CONFIG_H_
