#include "shard_worker/model/checkpoint_layout.h"

#include <cstdlib>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/model/checkpoint.h"

namespace glm::model {

std::string LayerPrefix(int64_t layer) { return absl::StrCat("model.layers.", layer, "."); }

int64_t TensorLayer(const std::string& name) {
  static const std::string kPrefix = "model.layers.";
  if (!absl::StartsWith(name, kPrefix)) return -1;
  return std::strtoll(name.c_str() + kPrefix.size(), nullptr, 10);
}

bool IsExpertMatrix(const std::string& name) {
  return (absl::StrContains(name, ".experts.") || absl::StrContains(name, ".shared_experts.")) &&
         absl::EndsWith(name, "_proj.weight");
}

int64_t ExpertMatrixCols(const ModelConfig& config, const std::string& name) {
  if (!absl::EndsWith(name, "down_proj.weight")) return config.hidden_size;
  return absl::StrContains(name, ".shared_experts.") ? config.moe_intermediate_size * config.n_shared_experts
                                                     : config.moe_intermediate_size;
}

std::string QuantScaleName(const std::string& weight_name) { return weight_name + "_scale"; }

bool StoredExpertFormat(const ModelConfig& config, int64_t cols, kernels::DType* dtype, int64_t* group_size) {
  if (config.expert_quant_format.empty()) return false;
  *dtype = config.expert_quant_format == "int8" ? kernels::DType::kI8 : kernels::DType::kI4;
  *group_size = config.expert_quant_group_size < 0 ? cols : config.expert_quant_group_size;
  return true;
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

namespace {

std::string ShapeString(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

std::vector<int64_t> ScaleShape(const ModelConfig& c, const std::vector<int64_t>& shape) {
  return {(shape[0] + c.fp8_block_rows - 1) / c.fp8_block_rows,
          (shape[1] + c.fp8_block_cols - 1) / c.fp8_block_cols};
}

// A pre-quantised expert matrix of logical shape [rows, cols]: its codes (I8 [rows, cols], or U8
// [rows, row bytes] of packed int4) and its F16 scales [rows, groups].
absl::Status ValidateStoredCodes(const Checkpoint& ckpt, const std::string& name, const std::vector<int64_t>& shape,
                                 kernels::DType codes, int64_t group) {
  const auto loc = ckpt.Find(name);
  const int64_t rows = shape[0], cols = shape[1];
  const bool int8 = codes == kernels::DType::kI8;
  const char* format = int8 ? "int8" : "int4";
  if (std::string why = kernels::CheckQuantGroupSize(codes, group, cols); !why.empty())
    return absl::DataLossError(absl::StrCat(loc.Where(), ": expert_quantization's group size does not fit it: ", why));
  const std::vector<int64_t> want = {rows, int8 ? cols : kernels::DTypeRowBytes(codes, cols)};
  if (loc.info->dtype != (int8 ? "I8" : "U8") || loc.info->shape != want)
    return absl::DataLossError(absl::StrCat(loc.Where(), " is ", loc.info->dtype, " ", ShapeString(loc.info->shape),
                                            "; config.json's expert_quantization (", format, ") needs ",
                                            int8 ? "I8 " : "U8 ", ShapeString(want), " for a ",
                                            ShapeString(shape), " matrix"));
  const std::string scale_name = QuantScaleName(name);
  const auto scale = ckpt.Find(scale_name);
  if (scale.file == nullptr)
    return absl::DataLossError(absl::StrCat(loc.Where(), " is pre-quantised but '", scale_name, "' is missing"));
  const std::vector<int64_t> scale_shape = {rows, kernels::QuantGroupsPerRow(cols, group)};
  if (scale.info->dtype != "F16" || scale.info->shape != scale_shape)
    return absl::DataLossError(absl::StrCat(scale.Where(), " is ", scale.info->dtype, " ",
                                            ShapeString(scale.info->shape), "; groups of ", group, " need F16 ",
                                            ShapeString(scale_shape)));
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateCheckpointTensors(const Checkpoint& ckpt, const ExpectedMap& expected) {
  const ModelConfig& c = ckpt.config();
  std::set<std::string> accounted;
  for (const auto& [name, spec] : expected) {
    auto loc = ckpt.Find(name);
    if (loc.file == nullptr) {
      if (spec.optional) continue;
      return absl::DataLossError(absl::StrCat(ckpt.dir(), ": tensor '", name,
                                              "' is missing (required by config.json)"));
    }
    accounted.insert(name);
    kernels::DType codes;
    int64_t group = 0;
    if (spec.role == TensorRole::kMatrix && IsExpertMatrix(name) && StoredExpertFormat(c, spec.shape[1], &codes, &group)) {
      if (auto st = ValidateStoredCodes(ckpt, name, spec.shape, codes, group); !st.ok()) return st;
      accounted.insert(QuantScaleName(name));
      continue;
    }
    if (loc.info->shape != spec.shape)
      return absl::DataLossError(absl::StrCat(loc.Where(), " has shape ", ShapeString(loc.info->shape),
                                              ", config.json implies ", ShapeString(spec.shape)));
    const std::string& dt = loc.info->dtype;
    bool float_ok = dt == "F32" || dt == "BF16" || dt == "F16";
    if (spec.role == TensorRole::kVector && !float_ok)
      return absl::DataLossError(absl::StrCat(loc.Where(), " has dtype ", dt, "; expected F32, BF16 or F16"));
    if (spec.role == TensorRole::kMatrix && !float_ok && dt != "F8_E4M3")
      return absl::DataLossError(absl::StrCat(loc.Where(), " has dtype ", dt, "; expected F32, BF16, F16 or F8_E4M3"));
    std::string scale_name = name.substr(0, name.size() - std::string("weight").size()) + "weight_scale_inv";
    auto scale = ckpt.Find(scale_name);
    if (dt == "F8_E4M3") {
      if (scale.file == nullptr)
        return absl::DataLossError(absl::StrCat(loc.Where(), " is F8_E4M3 but '", scale_name, "' is missing"));
      if (scale.info->dtype != "F32" && scale.info->dtype != "BF16")
        return absl::DataLossError(absl::StrCat(scale.Where(), " must be F32 or BF16"));
      auto want = ScaleShape(c, spec.shape);
      if (scale.info->shape != want)
        return absl::DataLossError(absl::StrCat(scale.Where(), " has shape ", ShapeString(scale.info->shape),
                                                ", blocks of ", c.fp8_block_rows, "x", c.fp8_block_cols,
                                                " need ", ShapeString(want)));
      if (!c.fp8_weights)
        return absl::DataLossError(absl::StrCat(loc.Where(), " is F8_E4M3 but config.json has no fp8 quantization_config"));
      accounted.insert(scale_name);
    }
  }
  for (const auto& name : ckpt.TensorNames()) {
    if (accounted.count(name) || absl::EndsWith(name, "rotary_emb.inv_freq")) continue;
    auto loc = ckpt.Find(name);
    return absl::DataLossError(absl::StrCat(loc.Where(), " is unexpected for this config.json"));
  }
  return absl::OkStatus();
}

}  // namespace glm::model
