#include "coordinator/cli/text_commands.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "shard_worker/model/model_file.h"

namespace glm::cli {
namespace {

using OJson = nlohmann::ordered_json;

constexpr char kNoTokenizer[] = "needs the tokenizer: --tokenizer PATH (tokenizer.json or a model directory) or --model DIR";

// A regular file's text (a directory read as empty text without a word), at most 1 GiB.
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  return model::ReadModelFile(path, model::kMaxLargeModelFileBytes);
}

std::string TextJson(const std::string& text) {
  OJson out = {{"text", text}};
  // Decoded text is valid UTF-8 already; `replace` only guards against surprises.
  return out.dump(-1, ' ', false, OJson::error_handler_t::replace);
}

}  // namespace

absl::StatusOr<std::string> RunTokenizeCommand(const std::string& tokenizer_path, const std::string& text_file,
                                               const std::string& prompt) {
  if (tokenizer_path.empty()) return absl::InvalidArgumentError(kNoTokenizer);
  if (text_file.empty() && prompt.empty())
    return absl::InvalidArgumentError("tokenize needs the text: --text-file FILE or --prompt TEXT");
  auto tok = tokenizer::Tokenizer::FromFile(tokenizer_path);
  if (!tok.ok()) return tok.status();
  auto text = text_file.empty() ? absl::StatusOr<std::string>(prompt) : ReadFile(text_file);
  if (!text.ok()) return text.status();
  auto ids = (*tok)->Encode(*text, /*add_special_tokens=*/false);
  if (!ids.ok()) return ids.status();
  std::string out = "{\"ids\":[";
  for (size_t i = 0; i < ids->size(); ++i) {
    if (i) out += ',';
    out += std::to_string((*ids)[i]);
  }
  out += "]}";
  return out;
}

absl::StatusOr<std::string> RunDetokenizeCommand(const std::string& tokenizer_path,
                                                 const std::string& ids_csv) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos < ids_csv.size()) {
    size_t comma = ids_csv.find(',', pos);
    if (comma == std::string::npos) comma = ids_csv.size();
    std::string field = ids_csv.substr(pos, comma - pos);
    const size_t b = field.find_first_not_of(" \t\n");
    const size_t e = field.find_last_not_of(" \t\n");
    field = b == std::string::npos ? "" : field.substr(b, e - b + 1);
    if (!field.empty() || comma != ids_csv.size()) {
      char* end = nullptr;
      const long long v = std::strtoll(field.c_str(), &end, 10);
      if (field.empty() || end != field.c_str() + field.size() || v < INT32_MIN || v > INT32_MAX) {
        return absl::InvalidArgumentError(absl::StrCat("--ids: '", field, "' is not a token id"));
      }
      ids.push_back(static_cast<int32_t>(v));
    }
    pos = comma + 1;
  }
  if (tokenizer_path.empty()) return absl::InvalidArgumentError(kNoTokenizer);
  auto tok = tokenizer::Tokenizer::FromFile(tokenizer_path);
  if (!tok.ok()) return tok.status();
  auto text = (*tok)->Decode(ids);
  if (!text.ok()) return text.status();
  return TextJson(*text);
}

absl::StatusOr<std::string> RunRenderChatCommand(const std::string& tokenizer_config_path,
                                                 const std::string& request_file) {
  if (tokenizer_config_path.empty())
    return absl::InvalidArgumentError("render-chat needs the template: --tokenizer-config PATH or --model DIR");
  if (request_file.empty()) return absl::InvalidArgumentError("render-chat needs --request-file FILE");
  auto tmpl = tokenizer::ChatTemplate::FromTokenizerConfig(tokenizer_config_path);
  if (!tmpl.ok()) return tmpl.status();
  auto text = ReadFile(request_file);
  if (!text.ok()) return text.status();
  auto parsed = model::ParseModelJson<OJson>(*text, request_file);
  if (!parsed.ok()) return parsed.status();
  OJson request = *std::move(parsed);
  if (!request.is_object()) return absl::InvalidArgumentError(absl::StrCat(request_file, " is not a JSON object"));
  if (request.contains("inputs") && request["inputs"].is_object()) {
    OJson inputs = request["inputs"];
    request.erase("inputs");
    for (auto it = inputs.begin(); it != inputs.end(); ++it) request[it.key()] = it.value();
  }
  if (!request.contains("messages")) {
    return absl::InvalidArgumentError(absl::StrCat(request_file, ": no 'messages'"));
  }
  // What the server refuses is refused here too, rather than rendered as if it were not there.
  const OJson& messages = request["messages"];
  if (!messages.is_array()) return absl::InvalidArgumentError(absl::StrCat(request_file, ": 'messages' must be an array"));
  for (size_t i = 0; i < messages.size(); ++i)
    if (!messages[i].is_object() || !messages[i].contains("role") || !messages[i]["role"].is_string())
      return absl::InvalidArgumentError(
          absl::StrCat(request_file, ": messages[", i, "] must be an object with a string 'role'"));
  if (request.contains("tools") && !request["tools"].is_array() && !request["tools"].is_null())
    return absl::InvalidArgumentError(absl::StrCat(request_file, ": 'tools' must be an array"));
  if (request.contains("add_generation_prompt") && !request["add_generation_prompt"].is_boolean())
    return absl::InvalidArgumentError(absl::StrCat(request_file, ": 'add_generation_prompt' must be true or false"));
  const bool add_generation_prompt = request.value("add_generation_prompt", false);
  OJson extra = OJson::object();
  for (auto it = request.begin(); it != request.end(); ++it) {
    const std::string& key = it.key();
    if (key == "messages" || key == "tools" || key == "add_generation_prompt") continue;
    if ((key == "special_tokens" || key == "chat_template_kwargs") && it.value().is_object()) {
      for (auto jt = it.value().begin(); jt != it.value().end(); ++jt) extra[jt.key()] = jt.value();
      continue;
    }
    extra[key] = it.value();
  }
  auto rendered = (*tmpl)->RenderOrdered(request["messages"], request.value("tools", OJson()),
                                         add_generation_prompt, extra);
  if (!rendered.ok()) return rendered.status();
  return TextJson(*rendered);
}

}  // namespace glm::cli
