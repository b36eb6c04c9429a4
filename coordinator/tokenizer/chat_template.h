// A model's chat template (the Jinja `chat_template` of tokenizer_config.json) rendered the way
// transformers' apply_chat_template renders it: variables `messages`, `tools` (None when
// absent), `documents` (None), `add_generation_prompt`, the special tokens (bos_token,
// eos_token, ..., additional_special_tokens) and any extra arguments such as enable_thinking.
#ifndef GLM_COORDINATOR_TOKENIZER_CHAT_TEMPLATE_H_
#define GLM_COORDINATOR_TOKENIZER_CHAT_TEMPLATE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/jinja_template.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {

class ChatTemplate {
 public:
  // `path` is a tokenizer_config.json or a model directory containing one. The template is its
  // `chat_template` (a string, or a list of {name, template} where "default" wins), else a
  // chat_template.jinja file next to it. Special tokens may be strings or {"content": ...}.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> FromTokenizerConfig(const std::string& path);
  // A template source plus its special tokens ({"bos_token": "<s>", ...}).
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> FromString(
      std::string_view source,
      const nlohmann::ordered_json& special_tokens = nlohmann::ordered_json::object());

  // messages/tools: OpenAI-style JSON; a null `tools` is passed as None. `extra`: additional
  // template variables; they override the special tokens of the same name. Note that
  // nlohmann::json sorts object keys, which `tojson` output then shows; RenderOrdered keeps
  // the caller's key order as transformers (Python dicts) does.
  absl::StatusOr<std::string> Render(const nlohmann::json& messages, const nlohmann::json& tools,
                                     bool add_generation_prompt,
                                     const nlohmann::json& extra = nlohmann::json::object()) const;
  absl::StatusOr<std::string> RenderOrdered(
      const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
      bool add_generation_prompt,
      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const nlohmann::ordered_json& special_tokens() const { return special_tokens_; }

 private:
  ChatTemplate() = default;
  std::unique_ptr<jinja::Template> template_;
  nlohmann::ordered_json special_tokens_ = nlohmann::ordered_json::object();
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_CHAT_TEMPLATE_H_
