#include "coordinator/tokenizer/post_processor.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace glm::tokenizer {
namespace {

using nlohmann::json;

class NoOpProcessor : public PostProcessor {
 public:
  void Process(std::vector<int32_t>*) const override {}
};

// Prefix and suffix ids around the sequence: covers TemplateProcessing's single template and
// the Bert/Roberta processors.
class AffixProcessor : public PostProcessor {
 public:
  AffixProcessor(std::vector<int32_t> prefix, std::vector<int32_t> suffix)
      : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void Process(std::vector<int32_t>* ids) const override {
    ids->insert(ids->begin(), prefix_.begin(), prefix_.end());
    ids->insert(ids->end(), suffix_.begin(), suffix_.end());
  }

 private:
  std::vector<int32_t> prefix_, suffix_;
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> parts)
      : parts_(std::move(parts)) {}
  void Process(std::vector<int32_t>* ids) const override {
    for (const auto& p : parts_) p->Process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

absl::StatusOr<std::unique_ptr<PostProcessor>> FromTemplate(const json& config) {
  const json& single = config.at("single");
  const json& specials = config.value("special_tokens", json::object());
  std::vector<int32_t> prefix, suffix;
  bool seen_sequence = false;
  for (const auto& item : single) {
    if (item.contains("Sequence")) {
      if (item["Sequence"].value("id", std::string("A")) != "A") continue;
      seen_sequence = true;
      continue;
    }
    if (!item.contains("SpecialToken")) {
      return absl::InvalidArgumentError("TemplateProcessing: unknown template piece");
    }
    const std::string name = item["SpecialToken"].at("id").get<std::string>();
    if (!specials.contains(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("TemplateProcessing: special token '", name, "' is not defined"));
    }
    for (const auto& id : specials[name].at("ids")) {
      (seen_sequence ? suffix : prefix).push_back(id.get<int32_t>());
    }
  }
  return std::make_unique<AffixProcessor>(std::move(prefix), std::move(suffix));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> PostProcessor::FromJson(const json& config) {
  if (config.is_null()) return std::unique_ptr<PostProcessor>();
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError("post_processor: expected an object with a string 'type'");
  }
  const std::string type = config["type"].get<std::string>();
  try {
    if (type == "ByteLevel") return std::make_unique<NoOpProcessor>();
    if (type == "TemplateProcessing") return FromTemplate(config);
    if (type == "BertProcessing" || type == "RobertaProcessing") {
      return std::make_unique<AffixProcessor>(
          std::vector<int32_t>{config.at("cls").at(1).get<int32_t>()},
          std::vector<int32_t>{config.at("sep").at(1).get<int32_t>()});
    }
    if (type == "Sequence") {
      std::vector<std::unique_ptr<PostProcessor>> parts;
      for (const auto& sub : config.at("processors")) {
        auto part = FromJson(sub);
        if (!part.ok()) return part.status();
        if (*part != nullptr) parts.push_back(*std::move(part));
      }
      return std::make_unique<SequenceProcessor>(std::move(parts));
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("post_processor ", type, ": ", e.what()));
  }
  return absl::UnimplementedError(absl::StrCat("unsupported post_processor type '", type, "'"));
}

}  // namespace glm::tokenizer
