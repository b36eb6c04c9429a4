#include "coordinator/placement/expert_load.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "coordinator/placement/planner.h"

namespace glm::placement {

std::string ExpertLoadToJson(const ExpertLoad& load) {
  // One line per layer (GLM-5: 78 lines of 256 counts, not 20,000 lines of one).
  std::string out = absl::StrCat("{\"model\": ", nlohmann::json(load.model).dump(), ", \"tokens\": ", load.tokens,
                                 ", \"layers\": [");
  bool first = true;
  for (const auto& [layer, counts] : load.tokens_per_expert) {
    absl::StrAppend(&out, first ? "\n" : ",\n", " {\"layer\": ", layer,
                    ", \"tokens_per_expert\": ", nlohmann::json(counts).dump(), "}");
    first = false;
  }
  out += "\n]}\n";
  return out;
}

absl::StatusOr<ExpertLoad> ExpertLoadFromJson(const std::string& text, const model::ModelConfig& config) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("expert load: not JSON (expected `glmctl expert-load` output)");
  if (!j.is_object()) return absl::InvalidArgumentError("expert load: expected a JSON object");
  ExpertLoad load;
  if (auto it = j.find("model"); it != j.end()) {
    if (!it->is_string()) return absl::InvalidArgumentError("expert load: \"model\" must be a string");
    load.model = it->get<std::string>();
  }
  if (auto it = j.find("tokens"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0)
      return absl::InvalidArgumentError("expert load: \"tokens\" must be a non-negative integer");
    load.tokens = it->get<int64_t>();
  }
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array())
    return absl::InvalidArgumentError("expert load: \"layers\" must be an array of {layer, tokens_per_expert}");
  const int64_t E = config.n_routed_experts;
  for (size_t i = 0; i < layers->size(); ++i) {
    const nlohmann::json& entry = (*layers)[i];
    const std::string where = absl::StrCat("expert load: layers[", i, "]");
    if (!entry.is_object() || !entry.contains("layer") || !entry["layer"].is_number_integer())
      return absl::InvalidArgumentError(absl::StrCat(where, " needs an integer \"layer\""));
    const int64_t layer = entry["layer"].get<int64_t>();
    if (layer < 0 || layer >= config.num_weight_layers() || config.mlp_kind(layer) != model::MlpKind::kSparse)
      return absl::InvalidArgumentError(absl::StrCat(where, ": layer ", layer, " is not a MoE layer of the model"));
    auto counts = entry.find("tokens_per_expert");
    if (counts == entry.end() || !counts->is_array() || static_cast<int64_t>(counts->size()) != E)
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": \"tokens_per_expert\" must list ", E, " counts (the model's routed experts)"));
    std::vector<int64_t> v;
    v.reserve(E);
    // Bounded so that a layer's sum stays far inside int64 (counts near its maximum overflowed it
    // and every expert looked hot); 1e15 routed tokens is decades of a busy server.
    constexpr int64_t kMaxCount = 1'000'000'000'000'000;
    for (const nlohmann::json& c : *counts) {
      if (!c.is_number_integer() || c.get<int64_t>() < 0 || (c.is_number_unsigned() && c.get<uint64_t>() > kMaxCount) ||
          c.get<int64_t>() > kMaxCount)
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": counts must be integers in [0, ", kMaxCount, "]"));
      v.push_back(c.get<int64_t>());
    }
    if (!load.tokens_per_expert.emplace(layer, std::move(v)).second)
      return absl::InvalidArgumentError(absl::StrCat(where, ": layer ", layer, " is listed twice"));
  }
  return load;
}

absl::StatusOr<ExpertLoad> ReadExpertLoadFile(const std::string& path, const model::ModelConfig& config) {
  auto text = ReadJsonFile(path, "routing statistics from `glmctl expert-load`");
  if (!text.ok()) return text.status();
  auto load = ExpertLoadFromJson(*text, config);
  if (!load.ok()) return absl::Status(load.status().code(), absl::StrCat(path, ": ", load.status().message()));
  return load;
}

}  // namespace glm::placement
