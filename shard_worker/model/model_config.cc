#include "shard_worker/model/model_config.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

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

// Reads a required positive integer field.
absl::Status ReadPositiveInt(const json& j, const char* field, int64_t* out, bool required = true) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    if (required) return FieldError(field, "is missing");
    return absl::OkStatus();
  }
  if (!it->is_number_integer()) return FieldError(field, "must be an integer");
  int64_t v = it->get<int64_t>();
  if (v <= 0) return FieldError(field, absl::StrCat("must be positive, got ", v));
  *out = v;
  return absl::OkStatus();
}

absl::Status ReadFloat(const json& j, const char* field, float* out, bool required) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    if (required) return FieldError(field, "is missing");
    return absl::OkStatus();
  }
  if (!it->is_number()) return FieldError(field, "must be a number");
  *out = it->get<float>();
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
    if (!v.is_number_integer() || v.get<int64_t>() < 0) return FieldError(field, "must hold token ids");
    ids.push_back(v.get<int32_t>());
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
  const json* params = nullptr;
  if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) params = &*it;
  std::string rope_type = "default";
  if (params != nullptr) {
    if (auto t = params->find("rope_type"); t != params->end() && t->is_string()) rope_type = *t;
    if (auto t = params->find("rope_theta"); t != params->end()) {
      if (!t->is_number()) return FieldError("rope_parameters.rope_theta", "must be a number");
      c->rope_theta = t->get<double>();
    }
  } else {
    if (auto t = j.find("rope_theta"); t != j.end() && t->is_number()) c->rope_theta = t->get<double>();
    if (auto s = j.find("rope_scaling"); s != j.end() && s->is_object()) {
      auto t = s->find("rope_type");
      if (t == s->end()) t = s->find("type");
      if (t != s->end() && t->is_string()) rope_type = *t;
    }
  }
  if (rope_type != "default") {
    return FieldError("rope_parameters.rope_type",
                      absl::StrCat("'", rope_type, "' is not supported (only 'default')"));
  }
  if (!(c->rope_theta > 0)) return FieldError("rope_theta", "must be positive");
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
    if (auto it = j.find("first_k_dense_replace"); it != j.end() && it->is_number_integer())
      dense = it->get<int64_t>();
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
    if (auto f = j.find("index_topk_freq"); f != j.end() && f->is_number_integer())
      freq = std::max<int64_t>(1, f->get<int64_t>());
    if (auto o = j.find("index_skip_topk_offset"); o != j.end() && o->is_number_integer())
      offset = o->get<int64_t>();
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
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("config.json: not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("config.json: top level must be an object");
  ModelConfig c;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) return FieldError("model_type", "is missing");
  c.model_type = *mt;
  if (c.model_type != "glm_moe_dsa") {
    return FieldError("model_type", absl::StrCat("is '", c.model_type,
                                                 "'; this engine serves 'glm_moe_dsa' (GLM-5)"));
  }
  for (auto [field, out] : std::initializer_list<std::pair<const char*, int64_t*>>{
           {"vocab_size", &c.vocab_size},
           {"hidden_size", &c.hidden_size},
           {"intermediate_size", &c.intermediate_size},
           {"moe_intermediate_size", &c.moe_intermediate_size},
           {"num_hidden_layers", &c.num_hidden_layers},
           {"num_attention_heads", &c.num_attention_heads},
           {"n_routed_experts", &c.n_routed_experts},
           {"num_experts_per_tok", &c.num_experts_per_tok},
           {"q_lora_rank", &c.q_lora_rank},
           {"kv_lora_rank", &c.kv_lora_rank},
           {"qk_nope_head_dim", &c.qk_nope_head_dim},
           {"qk_rope_head_dim", &c.qk_rope_head_dim},
           {"v_head_dim", &c.v_head_dim},
           {"index_topk", &c.index_topk},
           {"index_head_dim", &c.index_head_dim},
           {"index_n_heads", &c.index_n_heads},
       }) {
    if (auto s = ReadPositiveInt(j, field, out); !s.ok()) return s;
  }
  if (auto s = ReadPositiveInt(j, "max_position_embeddings", &c.max_position_embeddings, false); !s.ok()) return s;
  if (c.max_position_embeddings == 0) c.max_position_embeddings = 4096;
  if (auto s = ReadPositiveInt(j, "n_group", &c.n_group, false); !s.ok()) return s;
  if (auto s = ReadPositiveInt(j, "topk_group", &c.topk_group, false); !s.ok()) return s;
  if (auto it = j.find("n_shared_experts"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0) return FieldError("n_shared_experts", "must be >= 0");
    c.n_shared_experts = it->get<int64_t>();
  }
  if (auto it = j.find("num_nextn_predict_layers"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 1)
      return FieldError("num_nextn_predict_layers", "must be 0 or 1");
    c.num_nextn_predict_layers = it->get<int64_t>();
  }
  if (auto s = ReadFloat(j, "routed_scaling_factor", &c.routed_scaling_factor, false); !s.ok()) return s;
  if (auto s = ReadFloat(j, "rms_norm_eps", &c.rms_norm_eps, false); !s.ok()) return s;
  if (auto s = ReadBool(j, "norm_topk_prob", &c.norm_topk_prob); !s.ok()) return s;
  if (auto s = ReadBool(j, "tie_word_embeddings", &c.tie_word_embeddings); !s.ok()) return s;
  for (const char* flag : {"attention_bias", "mlp_bias"}) {
    bool v = false;
    if (auto s = ReadBool(j, flag, &v); !s.ok()) return s;
    if (v) return FieldError(flag, "= true is not supported (GLM-5 has no biases there)");
  }
  if (auto it = j.find("hidden_act"); it != j.end() && !it->is_null() && *it != "silu")
    return FieldError("hidden_act", absl::StrCat("is ", Describe(*it), "; only \"silu\" is supported"));
  if (auto it = j.find("num_key_value_heads"); it != j.end() && it->is_number_integer() &&
      it->get<int64_t>() != c.num_attention_heads)
    return FieldError("num_key_value_heads", "must equal num_attention_heads for MLA");
  if (auto it = j.find("qk_head_dim"); it != j.end() && it->is_number_integer() &&
      it->get<int64_t>() != c.qk_head_dim())
    return FieldError("qk_head_dim", "must equal qk_nope_head_dim + qk_rope_head_dim");
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
    if (bs == q->end() || !bs->is_array() || bs->size() != 2 || !(*bs)[0].is_number_integer() ||
        !(*bs)[1].is_number_integer() || (*bs)[0].get<int64_t>() <= 0 || (*bs)[1].get<int64_t>() <= 0)
      return FieldError("quantization_config.weight_block_size", "must be [rows, cols] (positive)");
    c.fp8_weights = true;
    c.fp8_block_rows = (*bs)[0].get<int64_t>();
    c.fp8_block_cols = (*bs)[1].get<int64_t>();
  }
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = FromJson(ss.str());
  if (!c.ok()) return absl::Status(c.status().code(), absl::StrCat(path, ": ", c.status().message()));
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
  return j.dump(2);
}

}  // namespace glm::model
