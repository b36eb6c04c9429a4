#include "shard_worker/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/string_view.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "shard_worker/model/model_file.h"

namespace glm::model {
namespace {

using nlohmann::json;

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: field '", field, "' ", what));
}

// A value for an error message: scalars as written (strings cut short), containers by their type
// only. dump() of a container recurses once per level: a value nested 200,000 deep overflowed
// the stack while the message was built.
std::string Describe(const json& v) {
  switch (v.type()) {
    case json::value_t::string: {
      const std::string& s = v.get_ref<const std::string&>();
      return s.size() <= 64 ? json(s).dump() : json(s.substr(0, 64)).dump() + "...";
    }
    case json::value_t::array:
      return absl::StrCat("an array of ", v.size(), v.size() == 1 ? " element" : " elements");
    case json::value_t::object:
      return "an object";
    case json::value_t::binary:
      return "binary data";
    default:
      return v.dump();  // null, boolean, number: no nesting
  }
}

// A string member of an object, or `fallback` when absent or null; anything else is an error
// naming `field` (json::value() throws on a non-object, or a member of another type).
absl::Status ReadStringMember(const json& object, const char* key, const std::string& field, std::string fallback,
                              std::string* out) {
  *out = std::move(fallback);
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return FieldError(field, absl::StrCat("must be a string, got ", Describe(*it)));
  *out = it->get<std::string>();
  return absl::OkStatus();
}

// Upper bounds on the dimensions, far above GLM-5 (78 layers, 256 experts, hidden 6144, vocabulary
// 154,880, 64 heads) and DeepSeek-V3, yet low enough that a corrupt value fails here, named,
// instead of exhausting memory in what is built per layer and per expert (ExpectedTensors, the
// layer tables, the planner) or overflowing int64 in products of dimensions (no matrix reaches
// 2^53 elements).
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxExperts = int64_t{1} << 16;
// Routed experts over all layers: ExpectedTensors holds three entries for each (GLM-5: 20,224).
constexpr int64_t kMaxExpertsInAllLayers = int64_t{1} << 20;
constexpr int64_t kMaxSharedExperts = 1024;
constexpr int64_t kMaxHidden = int64_t{1} << 20;
constexpr int64_t kMaxIntermediate = int64_t{1} << 22;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxHeads = int64_t{1} << 12;
constexpr int64_t kMaxRank = int64_t{1} << 20;     // q_lora_rank, kv_lora_rank
constexpr int64_t kMaxHeadDim = int64_t{1} << 16;  // per-head dimensions
constexpr int64_t kMaxContext = int64_t{1} << 30;  // max_position_embeddings, index_topk
constexpr int64_t kMaxFp8Block = int64_t{1} << 16;
// Float fields: RMSNorm's epsilon is added to a mean square (GLM-5: 1e-5; a large one swamps it, a
// negative one gives NaN); routed_scaling_factor multiplies the expert outputs (GLM-5: 2.5).
constexpr double kMaxRmsNormEps = 0.1;
constexpr double kMaxRoutedScalingFactor = 1000.0;

// An integer field's value, when it is one that fits int64 (above INT64_MAX, get<int64_t>()
// wraps negative: 2^64 - 1 read as -1).
absl::StatusOr<int64_t> IntegerValue(const json& v, absl::string_view field) {
  if (!v.is_number_integer()) return FieldError(field, absl::StrCat("must be an integer, got ", Describe(v)));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return FieldError(field, absl::StrCat("is out of range, got ", v.get<uint64_t>()));
  return v.get<int64_t>();
}

// An optional integer field in [lo, hi]; *out keeps its value when the field is absent or null.
absl::Status ReadIntInRange(const json& j, const char* field, int64_t lo, int64_t hi, int64_t* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  auto v = IntegerValue(*it, field);
  if (!v.ok()) return v.status();
  if (*v < lo || *v > hi) return FieldError(field, absl::StrCat("must be in [", lo, ", ", hi, "], got ", *v));
  *out = *v;
  return absl::OkStatus();
}

// Reads a positive integer field of at most `max`.
absl::Status ReadPositiveInt(const json& j, const char* field, int64_t* out, int64_t max, bool required = true) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    if (required) return FieldError(field, "is missing");
    return absl::OkStatus();
  }
  auto v = IntegerValue(*it, field);
  if (!v.ok()) return v.status();
  if (*v <= 0) return FieldError(field, absl::StrCat("must be positive, got ", *v));
  if (*v > max) return FieldError(field, absl::StrCat("is implausibly large (at most ", max, "), got ", *v));
  *out = *v;
  return absl::OkStatus();
}

// A float field, finite and in (lo, hi] (read as double: 1e39 does not fit a float).
absl::Status ReadFloat(const json& j, const char* field, float* out, bool required, double lo, double hi) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    if (required) return FieldError(field, "is missing");
    return absl::OkStatus();
  }
  if (!it->is_number()) return FieldError(field, absl::StrCat("must be a number, got ", Describe(*it)));
  const double v = it->get<double>();
  if (!std::isfinite(v) || !(v > lo) || !(v <= hi))
    return FieldError(field, absl::StrCat("must be in (", lo, ", ", hi, "], got ", v));
  *out = static_cast<float>(v);
  return absl::OkStatus();
}

absl::Status ReadBool(const json& j, const char* field, bool* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return FieldError(field, "must be true or false");
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> ReadTokenIds(const json& j, const char* field) {
  std::vector<int32_t> ids;
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return ids;
  auto one = [&](const json& v) -> absl::Status {
    if (!v.is_number_integer()) return FieldError(field, absl::StrCat("must hold token ids, got ", Describe(v)));
    // Checked before narrowing: 4294967587 read as int32 was 291, a token in the vocabulary.
    const bool fits = v.is_number_unsigned()
                          ? v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int32_t>::max())
                          : v.get<int64_t>() >= 0 && v.get<int64_t>() <= std::numeric_limits<int32_t>::max();
    if (!fits) return FieldError(field, absl::StrCat("holds ", v.dump(), ", not a token id"));
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    return absl::OkStatus();
  };
  if (it->is_array()) {
    for (const auto& v : *it) {
      if (auto s = one(v); !s.ok()) return s;
    }
  } else if (auto s = one(*it); !s.ok()) {
    return s;
  }
  return ids;
}

absl::Status ParseRope(const json& j, ModelConfig* c) {
  // transformers 5 writes `rope_parameters`; older exports write `rope_theta` + `rope_scaling`.
  // As transformers reads them: the type under "rope_type" or the legacy "type", rope_theta in
  // the parameters or else at the top level. Only plain RoPE is implemented, so any scaling type
  // named in either place is refused rather than silently run as plain RoPE.
  std::string rope_type = "default";
  bool theta_in_params = false;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_object()) return FieldError(key, absl::StrCat("must be an object, got ", Describe(*it)));
    for (const char* type_key : {"rope_type", "type"}) {
      auto t = it->find(type_key);
      if (t == it->end() || t->is_null()) continue;
      if (!t->is_string())
        return FieldError(absl::StrCat(key, ".", type_key), absl::StrCat("must be a string, got ", Describe(*t)));
      if (*t != "default") rope_type = t->get<std::string>();
    }
    if (auto t = it->find("rope_theta"); t != it->end() && !t->is_null()) {
      if (!t->is_number())
        return FieldError(absl::StrCat(key, ".rope_theta"), absl::StrCat("must be a number, got ", Describe(*t)));
      c->rope_theta = t->get<double>();
      theta_in_params = true;
    }
  }
  if (auto t = j.find("rope_theta"); !theta_in_params && t != j.end() && !t->is_null()) {
    if (!t->is_number()) return FieldError("rope_theta", absl::StrCat("must be a number, got ", Describe(*t)));
    c->rope_theta = t->get<double>();
  }
  if (rope_type != "default") {
    return FieldError("rope_parameters.rope_type",
                      absl::StrCat("'", rope_type, "' is not supported (only 'default')"));
  }
  // Finite too, though nlohmann already refuses a number beyond double range (1e400).
  if (!(c->rope_theta > 0) || !std::isfinite(c->rope_theta))
    return FieldError("rope_theta", absl::StrCat("must be positive and finite, got ", c->rope_theta));
  return absl::OkStatus();
}

absl::Status ParseLayerKinds(const json& j, ModelConfig* c) {
  const int64_t n = c->num_hidden_layers;
  // mlp_layer_types, else the first `first_k_dense_replace` layers are dense.
  if (auto it = j.find("mlp_layer_types"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || static_cast<int64_t>(it->size()) != n)
      return FieldError("mlp_layer_types", absl::StrCat("must list ", n, " layers"));
    for (const auto& v : *it) {
      if (v == "dense") c->mlp_layer_types.push_back(MlpKind::kDense);
      else if (v == "sparse") c->mlp_layer_types.push_back(MlpKind::kSparse);
      else return FieldError("mlp_layer_types", absl::StrCat("has unknown value ", Describe(v)));
    }
  } else {
    int64_t dense = 3;
    if (auto s = ReadIntInRange(j, "first_k_dense_replace", 0, std::numeric_limits<int64_t>::max(), &dense); !s.ok())
      return s;
    for (int64_t i = 0; i < n; ++i)
      c->mlp_layer_types.push_back(i < dense ? MlpKind::kDense : MlpKind::kSparse);
  }
  // indexer_types, else `index_topk_pattern` ("FSS..."), else the freq/offset schedule.
  if (auto it = j.find("indexer_types"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || static_cast<int64_t>(it->size()) != n)
      return FieldError("indexer_types", absl::StrCat("must list ", n, " layers"));
    for (const auto& v : *it) {
      if (v == "full") c->indexer_types.push_back(IndexerKind::kFull);
      else if (v == "shared") c->indexer_types.push_back(IndexerKind::kShared);
      else return FieldError("indexer_types", absl::StrCat("has unknown value ", Describe(v)));
    }
  } else if (auto p = j.find("index_topk_pattern"); p != j.end() && p->is_string()) {
    std::string pattern = *p;
    if (static_cast<int64_t>(pattern.size()) != n)
      return FieldError("index_topk_pattern", absl::StrCat("must have ", n, " letters"));
    for (char ch : pattern) {
      if (ch == 'F') c->indexer_types.push_back(IndexerKind::kFull);
      else if (ch == 'S') c->indexer_types.push_back(IndexerKind::kShared);
      else return FieldError("index_topk_pattern", "must use only 'F' and 'S'");
    }
  } else {
    int64_t freq = 1, offset = 2;
    // Any offset past ±num_hidden_layers gives the same schedule; the bound keeps i - offset + 1
    // from overflowing.
    if (auto s = ReadIntInRange(j, "index_topk_freq", std::numeric_limits<int64_t>::min(),
                                std::numeric_limits<int64_t>::max(), &freq);
        !s.ok())
      return s;
    freq = std::max<int64_t>(1, freq);
    if (auto s = ReadIntInRange(j, "index_skip_topk_offset", -kMaxLayers, std::numeric_limits<int64_t>::max(), &offset);
        !s.ok())
      return s;
    for (int64_t i = 0; i < n; ++i) {
      int64_t k = std::max<int64_t>(i - offset + 1, 0);
      c->indexer_types.push_back(k % freq == 0 ? IndexerKind::kFull : IndexerKind::kShared);
    }
  }
  if (c->indexer_types[0] != IndexerKind::kFull)
    return FieldError("indexer_types", "must start with 'full' (a shared layer reuses an earlier selection)");
  return absl::OkStatus();
}

}  // namespace

MlpKind ModelConfig::mlp_kind(int64_t layer) const {
  return layer < num_hidden_layers ? mlp_layer_types[layer] : MlpKind::kSparse;
}

IndexerKind ModelConfig::indexer_kind(int64_t layer) const {
  return layer < num_hidden_layers ? indexer_types[layer] : IndexerKind::kFull;
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(const std::string& json_text) {
  auto parsed = ParseModelJson<json>(json_text, "config.json");
  if (!parsed.ok()) return parsed.status();
  const json j = *std::move(parsed);
  if (!j.is_object()) return absl::InvalidArgumentError("config.json: top level must be an object");
  ModelConfig c;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) return FieldError("model_type", "is missing");
  c.model_type = *mt;
  if (c.model_type != "glm_moe_dsa") {
    return FieldError("model_type", absl::StrCat("is '", c.model_type,
                                                 "'; this engine serves 'glm_moe_dsa' (GLM-5)"));
  }
  struct Dimension {
    const char* field;
    int64_t* out;
    int64_t max;
  };
  for (const Dimension& d : std::initializer_list<Dimension>{
           {"vocab_size", &c.vocab_size, kMaxVocab},
           {"hidden_size", &c.hidden_size, kMaxHidden},
           {"intermediate_size", &c.intermediate_size, kMaxIntermediate},
           {"moe_intermediate_size", &c.moe_intermediate_size, kMaxIntermediate},
           {"num_hidden_layers", &c.num_hidden_layers, kMaxLayers},
           {"num_attention_heads", &c.num_attention_heads, kMaxHeads},
           {"n_routed_experts", &c.n_routed_experts, kMaxExperts},
           {"num_experts_per_tok", &c.num_experts_per_tok, kMaxExperts},
           {"q_lora_rank", &c.q_lora_rank, kMaxRank},
           {"kv_lora_rank", &c.kv_lora_rank, kMaxRank},
           {"qk_nope_head_dim", &c.qk_nope_head_dim, kMaxHeadDim},
           {"qk_rope_head_dim", &c.qk_rope_head_dim, kMaxHeadDim},
           {"v_head_dim", &c.v_head_dim, kMaxHeadDim},
           {"index_topk", &c.index_topk, kMaxContext},
           {"index_head_dim", &c.index_head_dim, kMaxHeadDim},
           {"index_n_heads", &c.index_n_heads, kMaxHeads},
       }) {
    if (auto s = ReadPositiveInt(j, d.field, d.out, d.max); !s.ok()) return s;
  }
  if (auto s = ReadPositiveInt(j, "max_position_embeddings", &c.max_position_embeddings, kMaxContext, false); !s.ok())
    return s;
  if (c.max_position_embeddings == 0) c.max_position_embeddings = 4096;
  if (auto s = ReadPositiveInt(j, "n_group", &c.n_group, kMaxExperts, false); !s.ok()) return s;
  if (auto s = ReadPositiveInt(j, "topk_group", &c.topk_group, kMaxExperts, false); !s.ok()) return s;
  if (auto s = ReadIntInRange(j, "n_shared_experts", 0, kMaxSharedExperts, &c.n_shared_experts); !s.ok()) return s;
  if (auto s = ReadIntInRange(j, "num_nextn_predict_layers", 0, 1, &c.num_nextn_predict_layers); !s.ok()) return s;
  if (c.num_weight_layers() * c.n_routed_experts > kMaxExpertsInAllLayers)
    return FieldError("n_routed_experts",
                      absl::StrCat("× layers is implausibly large (at most ", kMaxExpertsInAllLayers, " routed experts in all; got ",
                                   c.n_routed_experts, " × ", c.num_weight_layers(), ")"));
  if (auto s = ReadFloat(j, "routed_scaling_factor", &c.routed_scaling_factor, false, 0.0, kMaxRoutedScalingFactor);
      !s.ok())
    return s;
  if (auto s = ReadFloat(j, "rms_norm_eps", &c.rms_norm_eps, false, 0.0, kMaxRmsNormEps); !s.ok()) return s;
  if (auto s = ReadBool(j, "norm_topk_prob", &c.norm_topk_prob); !s.ok()) return s;
  if (auto s = ReadBool(j, "tie_word_embeddings", &c.tie_word_embeddings); !s.ok()) return s;
  for (const char* flag : {"attention_bias", "mlp_bias"}) {
    bool v = false;
    if (auto s = ReadBool(j, flag, &v); !s.ok()) return s;
    if (v) return FieldError(flag, "= true is not supported (GLM-5 has no biases there)");
  }
  // The MLA and indexer RoPE are interleaved (attention/rope_layouts.h), as transformers computes
  // a config without these fields (the fixtures' references). A config asking for the other
  // pairing would load and select the wrong keys past index_topk, where no short test looks.
  for (const char* flag : {"rope_interleave", "indexer_rope_interleave"}) {
    bool v = true;
    if (auto s = ReadBool(j, flag, &v); !s.ok()) return s;
    if (!v) return FieldError(flag, "= false is not supported (interleaved RoPE only)");
  }
  if (auto it = j.find("hidden_act"); it != j.end() && !it->is_null() && *it != "silu")
    return FieldError("hidden_act", absl::StrCat("is ", Describe(*it), "; only \"silu\" is supported"));
  // Informational in MLA, but a value that disagrees (or is not an integer) means the file
  // describes another model.
  if (auto it = j.find("num_key_value_heads"); it != j.end() && !it->is_null() &&
      (!it->is_number_integer() || it->get<int64_t>() != c.num_attention_heads))
    return FieldError("num_key_value_heads", absl::StrCat("must equal num_attention_heads (", c.num_attention_heads,
                                                          ") for MLA, got ", Describe(*it)));
  if (auto it = j.find("qk_head_dim"); it != j.end() && !it->is_null() &&
      (!it->is_number_integer() || it->get<int64_t>() != c.qk_head_dim()))
    return FieldError("qk_head_dim", absl::StrCat("must equal qk_nope_head_dim + qk_rope_head_dim (", c.qk_head_dim(),
                                                  "), got ", Describe(*it)));
  if (c.qk_rope_head_dim % 2 != 0) return FieldError("qk_rope_head_dim", "must be even");
  if (c.index_head_dim < c.qk_rope_head_dim)
    return FieldError("index_head_dim", "must be at least qk_rope_head_dim");
  if (c.n_routed_experts % c.n_group != 0)
    return FieldError("n_group", "must divide n_routed_experts");
  if (c.topk_group > c.n_group) return FieldError("topk_group", "must be <= n_group");
  if (c.n_routed_experts / c.n_group < 2 && c.n_group > 1)
    return FieldError("n_group", "groups need at least 2 experts (groups are scored by their top 2)");
  if (c.num_experts_per_tok > c.topk_group * (c.n_routed_experts / c.n_group))
    return FieldError("num_experts_per_tok", "exceeds the experts in the chosen groups");
  if (auto ids = ReadTokenIds(j, "eos_token_id"); ids.ok()) c.eos_token_ids = *ids; else return ids.status();
  for (auto [field, out] : {std::pair<const char*, int32_t*>{"pad_token_id", &c.pad_token_id},
                            {"bos_token_id", &c.bos_token_id}}) {
    auto ids = ReadTokenIds(j, field);
    if (!ids.ok()) return ids.status();
    if (!ids->empty()) *out = ids->front();
  }
  for (int32_t id : c.eos_token_ids)
    if (id >= c.vocab_size) return FieldError("eos_token_id", "is outside the vocabulary");
  if (auto s = ParseRope(j, &c); !s.ok()) return s;
  if (auto s = ParseLayerKinds(j, &c); !s.ok()) return s;
  if (auto q = j.find("quantization_config"); q != j.end() && !q->is_null()) {
    if (!q->is_object())
      return FieldError("quantization_config", absl::StrCat("must be an object, got ", Describe(*q)));
    std::string method, fmt;
    if (auto s = ReadStringMember(*q, "quant_method", "quantization_config.quant_method", "", &method); !s.ok())
      return s;
    if (method != "fp8") return FieldError("quantization_config.quant_method", absl::StrCat("'", method, "' is not supported (only 'fp8')"));
    if (auto s = ReadStringMember(*q, "fmt", "quantization_config.fmt", "e4m3", &fmt); !s.ok()) return s;
    if (fmt != "e4m3") return FieldError("quantization_config.fmt", "must be e4m3");
    auto bs = q->find("weight_block_size");
    auto in_range = [](const json& v) {
      return v.is_number_integer() && (v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(kMaxFp8Block)
                                                              : v.get<int64_t>() > 0 && v.get<int64_t>() <= kMaxFp8Block);
    };
    if (bs == q->end() || !bs->is_array() || bs->size() != 2 || !in_range((*bs)[0]) || !in_range((*bs)[1]) ||
        (*bs)[0].get<int64_t>() <= 0 || (*bs)[1].get<int64_t>() <= 0)
      return FieldError("quantization_config.weight_block_size",
                        absl::StrCat("must be [rows, cols] (positive, at most ", kMaxFp8Block, ")"));
    c.fp8_weights = true;
    c.fp8_block_rows = (*bs)[0].get<int64_t>();
    c.fp8_block_cols = (*bs)[1].get<int64_t>();
  }
  if (auto q = j.find("expert_quantization"); q != j.end() && !q->is_null()) {
    if (!q->is_object())
      return FieldError("expert_quantization", absl::StrCat("must be an object, got ", Describe(*q)));
    if (auto s = ReadStringMember(*q, "format", "expert_quantization.format", "", &c.expert_quant_format); !s.ok())
      return s;
    if (c.expert_quant_format != "int8" && c.expert_quant_format != "int4")
      return FieldError("expert_quantization.format",
                        absl::StrCat("must be \"int8\" or \"int4\", got \"", c.expert_quant_format, "\""));
    auto g = q->find("group_size");
    if (g == q->end() || g->is_null()) return FieldError("expert_quantization.group_size", "is missing");
    auto group_or = IntegerValue(*g, "expert_quantization.group_size");
    if (!group_or.ok()) return group_or.status();
    const int64_t group = *group_or;
    if (group < -1 || group == 0 || group > (int64_t{1} << 20) || (group > 0 && group % 32 != 0))
      return FieldError("expert_quantization.group_size",
                        absl::StrCat("must be a positive multiple of 32 or -1 (one scale a row), got ", group));
    c.expert_quant_group_size = group;
  }
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  auto text = ReadModelFile(path, kMaxSmallModelFileBytes);
  if (!text.ok()) return text.status();
  auto c = FromJson(*text);
  if (!c.ok()) {
    // FromJson's messages start "config.json: "; the path replaces it (it was printed twice).
    absl::string_view message = c.status().message();
    absl::ConsumePrefix(&message, "config.json: ");
    return absl::Status(c.status().code(), absl::StrCat(path, ": ", message));
  }
  return c;
}

std::string ModelConfig::ToJson() const {
  json j;
  j["architectures"] = {"GlmMoeDsaForCausalLM"};
  j["model_type"] = model_type.empty() ? "glm_moe_dsa" : model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["moe_intermediate_size"] = moe_intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_attention_heads;
  j["n_shared_experts"] = n_shared_experts;
  j["n_routed_experts"] = n_routed_experts;
  j["num_experts_per_tok"] = num_experts_per_tok;
  j["n_group"] = n_group;
  j["topk_group"] = topk_group;
  j["norm_topk_prob"] = norm_topk_prob;
  j["routed_scaling_factor"] = routed_scaling_factor;
  j["q_lora_rank"] = q_lora_rank;
  j["kv_lora_rank"] = kv_lora_rank;
  j["qk_nope_head_dim"] = qk_nope_head_dim;
  j["qk_rope_head_dim"] = qk_rope_head_dim;
  j["qk_head_dim"] = qk_head_dim();
  j["v_head_dim"] = v_head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_parameters"] = {{"rope_theta", rope_theta}, {"rope_type", "default"}};
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["eos_token_id"] = eos_token_ids.size() == 1 ? json(eos_token_ids[0]) : json(eos_token_ids);
  if (pad_token_id >= 0) j["pad_token_id"] = pad_token_id;
  j["bos_token_id"] = bos_token_id >= 0 ? json(bos_token_id) : json(nullptr);
  j["index_topk"] = index_topk;
  j["index_head_dim"] = index_head_dim;
  j["index_n_heads"] = index_n_heads;
  json mlp = json::array(), idx = json::array();
  for (auto k : mlp_layer_types) mlp.push_back(k == MlpKind::kDense ? "dense" : "sparse");
  for (auto k : indexer_types) idx.push_back(k == IndexerKind::kFull ? "full" : "shared");
  j["mlp_layer_types"] = mlp;
  j["indexer_types"] = idx;
  j["num_nextn_predict_layers"] = num_nextn_predict_layers;
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["dtype"] = "bfloat16";
  if (fp8_weights) {
    j["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"},
                                {"activation_scheme", "dynamic"},
                                {"weight_block_size", {fp8_block_rows, fp8_block_cols}}};
  }
  if (!expert_quant_format.empty())
    j["expert_quantization"] = {{"format", expert_quant_format}, {"group_size", expert_quant_group_size}};
  return j.dump(2);
}

}  // namespace glm::model
