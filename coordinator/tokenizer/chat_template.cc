#include "coordinator/tokenizer/chat_template.h"

#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/json_depth.h"
#include "coordinator/tokenizer/status_macros.h"
#include "shard_worker/model/model_file.h"

namespace glm::tokenizer {
namespace {

using OJson = nlohmann::ordered_json;
namespace fs = std::filesystem;

constexpr const char* kSpecialTokenKeys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                             "pad_token", "cls_token", "mask_token"};

// An AddedToken-like {"content": ...} object or a plain string.
std::optional<std::string> TokenContent(const OJson& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

// Request JSON is converted recursively (dump, Value::FromJson) and the template recurses over
// it, so its nesting is bounded before any of that; real messages and tool schemas nest a few
// tens of levels. Measured iteratively: the input may be arbitrarily deep.
constexpr int kMaxRequestJsonDepth = 256;

template <typename J>
absl::Status CheckJsonDepth(const J& root, const char* what) {
  if (JsonDepth(root, kMaxRequestJsonDepth) <= kMaxRequestJsonDepth) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " nested more than ", kMaxRequestJsonDepth, " levels deep"));
}

// messages as template values. An assistant message's tool_calls[i].function.arguments that holds
// a JSON object as text (what OpenAI clients send back) becomes a string that also answers dict
// lookups (jinja::Value::StringWithObject): GLM's templates iterate `arguments.items()`, as
// transformers' convention has it (vLLM parses the text for them), while DeepSeek's and others
// concatenate the text; each then renders as it does with its own kind of input.
jinja::Value MessagesValue(const OJson& messages) {
  if (!messages.is_array()) return jinja::Value::FromJson(messages);
  jinja::ValueList items;
  for (const OJson& m : messages) {
    jinja::Value mv = jinja::Value::FromJson(m);
    if (m.is_object() && m.contains("tool_calls") && m["tool_calls"].is_array()) {
      jinja::ValueList calls;
      for (const OJson& c : m["tool_calls"]) {
        jinja::Value cv = jinja::Value::FromJson(c);
        const OJson* f = c.is_object() && c.contains("function") ? &c["function"] : nullptr;
        if (f != nullptr && f->is_object() && f->contains("arguments") && (*f)["arguments"].is_string()) {
          const std::string& text = (*f)["arguments"].get_ref<const std::string&>();
          const OJson parsed = OJson::parse(text, nullptr, /*allow_exceptions=*/false);
          if (!parsed.is_discarded() && parsed.is_object() && CheckJsonDepth(parsed, "arguments").ok()) {
            jinja::Value fv = jinja::Value::FromJson(*f);
            fv.Set("arguments", jinja::Value::StringWithObject(text, jinja::Value::FromJson(parsed)));
            cv.Set("function", std::move(fv));
          }
        }
        calls.push_back(std::move(cv));
      }
      mv.Set("tool_calls", jinja::Value::List(std::move(calls)));
    }
    items.push_back(std::move(mv));
  }
  return jinja::Value::List(std::move(items));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromTokenizerConfig(
    const std::string& path) {
  fs::path file = path;
  std::error_code ec;
  if (fs::is_directory(file, ec)) file /= "tokenizer_config.json";
  GLM_ASSIGN_OR_RETURN(std::string text, model::ReadModelFile(file.string(), model::kMaxSmallModelFileBytes));
  absl::StatusOr<OJson> parsed = model::ParseModelJson<OJson>(text, file.string());
  if (!parsed.ok()) return parsed.status();
  const OJson config = *std::move(parsed);
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file.string(), " is not a JSON object"));
  }
  std::string source;
  if (config.contains("chat_template")) {
    const OJson& ct = config["chat_template"];
    if (ct.is_string()) {
      source = ct.get<std::string>();
    } else if (ct.is_array()) {
      // transformers' named templates: [{"name": ..., "template": ...}]; "default" wins, else
      // the first. Entries are type-checked: a get<> on the wrong type would throw.
      for (size_t i = 0; i < ct.size(); ++i) {
        const OJson& entry = ct[i];
        if (!entry.is_object() || !entry.contains("template")) continue;
        if (!entry["template"].is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(file.string(), ": chat_template[", i,
                           "].template must be a string, got ", entry["template"].type_name()));
        }
        std::string name;
        if (entry.contains("name")) {
          if (!entry["name"].is_string()) {
            return absl::InvalidArgumentError(
                absl::StrCat(file.string(), ": chat_template[", i,
                             "].name must be a string, got ", entry["name"].type_name()));
          }
          name = entry["name"].get<std::string>();
        }
        if (source.empty() || name == "default") source = entry["template"].get<std::string>();
      }
    } else if (!ct.is_null()) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.string(), ": chat_template must be a string or a list of {name, template}"));
    }
  }
  if (source.empty()) {
    const fs::path jinja_file = file.parent_path() / "chat_template.jinja";
    auto jinja = model::ReadModelFile(jinja_file.string(), model::kMaxSmallModelFileBytes);
    if (!jinja.ok()) {
      return absl::NotFoundError(absl::StrCat(file.string(), " has no chat_template"));
    }
    source = *std::move(jinja);
  }
  OJson specials = OJson::object();
  for (const char* key : kSpecialTokenKeys) {
    if (!config.contains(key)) continue;
    if (auto content = TokenContent(config[key])) specials[key] = *content;
  }
  if (config.contains("additional_special_tokens") && config["additional_special_tokens"].is_array()) {
    OJson list = OJson::array();
    for (const auto& t : config["additional_special_tokens"]) {
      if (auto content = TokenContent(t)) list.push_back(*content);
    }
    specials["additional_special_tokens"] = std::move(list);
  }
  auto tmpl = FromString(source, specials);
  if (!tmpl.ok()) {
    return absl::Status(tmpl.status().code(),
                        absl::StrCat(file.string(), ": ", tmpl.status().message()));
  }
  return tmpl;
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromString(
    std::string_view source, const OJson& special_tokens) {
  auto ct = std::unique_ptr<ChatTemplate>(new ChatTemplate());
  GLM_ASSIGN_OR_RETURN(ct->template_, jinja::Template::Parse(source));
  if (special_tokens.is_object()) ct->special_tokens_ = special_tokens;
  return ct;
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::json& messages,
                                                 const nlohmann::json& tools,
                                                 bool add_generation_prompt,
                                                 const nlohmann::json& extra) const {
  GLM_RETURN_IF_ERROR(CheckJsonDepth(messages, "messages"));
  GLM_RETURN_IF_ERROR(CheckJsonDepth(tools, "tools"));
  GLM_RETURN_IF_ERROR(CheckJsonDepth(extra, "extra template arguments"));
  // Round-trip through text: the cheapest exact conversion between the two JSON flavours.
  return RenderOrdered(OJson::parse(messages.dump()), OJson::parse(tools.dump()),
                       add_generation_prompt, OJson::parse(extra.dump()));
}

absl::StatusOr<std::string> ChatTemplate::RenderOrdered(const OJson& messages, const OJson& tools,
                                                        bool add_generation_prompt,
                                                        const OJson& extra) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a list");
  if (!tools.is_null() && !tools.is_array()) {
    return absl::InvalidArgumentError("tools must be a list or null");
  }
  if (!extra.is_null() && !extra.is_object()) {
    return absl::InvalidArgumentError("extra template arguments must be an object");
  }
  GLM_RETURN_IF_ERROR(CheckJsonDepth(messages, "messages"));
  GLM_RETURN_IF_ERROR(CheckJsonDepth(tools, "tools"));
  GLM_RETURN_IF_ERROR(CheckJsonDepth(extra, "extra template arguments"));
  jinja::Value context = jinja::Value::MakeDict();
  context.Set("messages", MessagesValue(messages));
  context.Set("tools", jinja::Value::FromJson(tools));
  context.Set("documents", jinja::Value::None());
  context.Set("add_generation_prompt", jinja::Value::Bool(add_generation_prompt));
  for (auto it = special_tokens_.begin(); it != special_tokens_.end(); ++it) {
    context.Set(it.key(), jinja::Value::FromJson(it.value()));
  }
  if (extra.is_object()) {
    for (auto it = extra.begin(); it != extra.end(); ++it) {
      context.Set(it.key(), jinja::Value::FromJson(it.value()));
    }
  }
  return template_->Render(context.dict());
}

}  // namespace glm::tokenizer
