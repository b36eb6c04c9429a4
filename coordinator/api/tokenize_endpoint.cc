#include "coordinator/api/tokenize_endpoint.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"
#include "coordinator/api/json_fields.h"
#include "coordinator/api/openai_protocol.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace glm::api {
namespace {

using json = nlohmann::json;

constexpr char kNoTokenizerMessage[] = "this model is served with token ids only (no tokenizer.json)";

absl::Status CheckModel(const TextFrontend& frontend, const json& body) {
  if (!Present(body, "model")) return absl::OkStatus();
  if (!body["model"].is_string()) return InvalidField("model", "must be a string");
  return frontend.CheckModelName(body["model"].get<std::string>());
}

}  // namespace

absl::StatusOr<json> TokenizeBody(const TextFrontend& frontend, const json& body, const std::string* raw_body) {
  if (!body.is_object()) return InvalidField("body", "must be a JSON object");
  if (auto s = CheckModel(frontend, body); !s.ok()) return s;
  if (!frontend.has_tokenizer()) return InvalidField(Present(body, "messages") ? "messages" : "prompt", kNoTokenizerMessage);
  const bool chat = Present(body, "messages");
  if (chat && Present(body, "prompt")) return InvalidField("prompt", "give either prompt or messages, not both");
  bool return_token_strs = false;
  if (auto s = GetOptionalBool(body, "return_token_strs", &return_token_strs); !s.ok()) return s;
  // vLLM's defaults: a text prompt gets the tokenizer's special tokens (as /v1/completions encodes
  // it); a chat template already writes the ones it wants.
  bool add_special_tokens = !chat;
  if (auto s = GetOptionalBool(body, "add_special_tokens", &add_special_tokens); !s.ok()) return s;

  absl::StatusOr<std::vector<int32_t>> ids;
  if (chat) {
    // The chat completions parser, so messages, tools, chat_template_kwargs and
    // add_generation_prompt mean (and are checked) exactly what they mean there.
    auto parsed = ParseOpenAiRequest(OpenAiEndpoint::kChat, body, frontend.model().name, raw_body);
    if (!parsed.ok()) return parsed.status();
    ids = frontend.EncodeChat(parsed->api, add_special_tokens);
  } else {
    if (!Present(body, "prompt")) return InvalidField("prompt", "is required (or messages)");
    if (!body["prompt"].is_string()) return InvalidField("prompt", "must be a string");
    ids = frontend.EncodeText(body["prompt"].get<std::string>(), add_special_tokens, "prompt");
  }
  if (!ids.ok()) return ids.status();

  json token_strs = nullptr;
  if (return_token_strs) {
    token_strs = json::array();
    for (int32_t id : *ids) token_strs.push_back(frontend.TokenText(id));
  }
  return json{{"count", ids->size()},
              {"max_model_len", frontend.model().max_context},
              {"tokens", *ids},
              {"token_strs", std::move(token_strs)}};
}

absl::StatusOr<json> DetokenizeBody(const TextFrontend& frontend, const json& body) {
  if (!body.is_object()) return InvalidField("body", "must be a JSON object");
  if (auto s = CheckModel(frontend, body); !s.ok()) return s;
  if (!Present(body, "tokens")) return InvalidField("tokens", "is required");
  const json& v = body["tokens"];
  if (!v.is_array()) return InvalidField("tokens", "must be an array of token ids");
  const int64_t vocab = frontend.model().vocab_size;
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string field = absl::StrCat("tokens[", i, "]");
    if (!v[i].is_number_integer()) return InvalidField(field, "must be an integer token id");
    // A value past INT64_MAX is read as unsigned: named as sent, not wrapped negative.
    const bool huge = v[i].is_number_unsigned() && v[i].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX);
    const int64_t id = huge ? INT64_MAX : v[i].get<int64_t>();
    if (huge || id < 0 || (vocab > 0 && id >= vocab))
      return InvalidField(field, absl::StrCat(huge ? absl::StrCat(v[i].get<uint64_t>()) : absl::StrCat(id),
                                              " is out of range [0, ", vocab, ")"));
    ids.push_back(static_cast<int32_t>(id));
  }
  bool skip_special_tokens = false;
  if (auto s = GetOptionalBool(body, "skip_special_tokens", &skip_special_tokens); !s.ok()) return s;
  const tokenizer::Tokenizer* tok = frontend.model().tokenizer;
  if (tok == nullptr) return InvalidField("tokens", kNoTokenizerMessage);
  auto text = tok->Decode(ids, skip_special_tokens);
  if (!text.ok()) return InvalidField("tokens", text.status().message());
  return json{{"prompt", *text}};
}

}  // namespace glm::api
