#include "coordinator/api/text_frontend.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"
#include "coordinator/api/json_fields.h"
#include "coordinator/scheduler/banned_sequences_constraint.h"
#include "coordinator/scheduler/token_set_constraint.h"
#include "coordinator/structured/json_token_constraint.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/utf8.h"

namespace glm::api {
namespace {

constexpr char kNoTokenizer[] = "this model is served with token ids only (no tokenizer.json)";

std::string Field(const ApiRequest& r, absl::string_view name) {
  return absl::StrCat(r.field_prefix, name);
}

bool Finite(float v) { return std::isfinite(v); }

}  // namespace

TextFrontend::TextFrontend(const ServedModel* model, int32_t default_max_tokens)
    : model_(model), default_max_tokens_(default_max_tokens) {
  std::random_device rd;
  nonce_ = absl::StrCat(absl::Hex(static_cast<uint32_t>(rd()), absl::kZeroPad8));
}

std::string TextFrontend::NewRequestId(absl::string_view prefix, absl::string_view separator) const {
  return absl::StrCat(prefix, separator, nonce_, "-",
                      next_id_.fetch_add(1, std::memory_order_relaxed));
}

bool TextFrontend::AcceptsModelName(const std::string& name) const {
  if (name.empty() || model_->accept_any_name || name == model_->name) return true;
  for (const std::string& a : model_->aliases)
    if (a == name) return true;
  return false;
}

absl::Status TextFrontend::CheckModelName(const std::string& name) const {
  if (AcceptsModelName(name)) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("The model '", name, "' does not exist (serving '", model_->name, "')"));
}

std::string TextFrontend::TokenText(int32_t id) const {
  if (model_->tokenizer == nullptr) return "";
  auto text = model_->tokenizer->Decode({id}, /*skip_special_tokens=*/false);
  return text.ok() ? *text : "";
}

std::string TextFrontend::TokenBytes(int32_t id) const {
  if (model_->tokenizer == nullptr) return "";
  auto bytes = model_->tokenizer->DecodeBytes({id}, /*skip_special_tokens=*/false);
  return bytes.ok() ? *bytes : "";
}

std::string TextFrontend::LogprobTokenName(int32_t id) const {
  const std::string bytes = TokenBytes(id);
  if (tokenizer::ValidateUtf8(bytes).ok()) return TokenText(id);
  std::string name = "bytes:";
  for (unsigned char c : bytes) absl::StrAppend(&name, "\\x", absl::Hex(c, absl::kZeroPad2));
  return name;
}

bool TextFrontend::IsSpecialToken(int32_t id) const {
  return model_->tokenizer != nullptr && model_->tokenizer->IsSpecial(id);
}

absl::StatusOr<std::vector<int32_t>> TextFrontend::EncodeChat(const ApiRequest& r, bool add_special_tokens,
                                                              std::string* rendered) const {
  auto text = RenderChat(r.messages, r.tools, r.add_generation_prompt, TemplateArguments(r), r.input_field, r.tools_field);
  if (!text.ok()) return text.status();
  if (r.continue_final_message) {
    text = CutAfterFinalMessage(r.messages, *std::move(text), r.continue_final_field);
    if (!text.ok()) return text.status();
  }
  auto ids = EncodeText(*text, add_special_tokens, r.input_field);
  if (ids.ok() && rendered != nullptr) *rendered = *std::move(text);
  return ids;
}

nlohmann::json TextFrontend::TemplateArguments(const ApiRequest& r) const {
  if (r.output_grammar == nullptr || r.template_kwargs.contains("enable_thinking")) return r.template_kwargs;
  nlohmann::json args = r.template_kwargs.is_object() ? r.template_kwargs : nlohmann::json::object();
  args["enable_thinking"] = false;
  return args;
}

absl::StatusOr<std::shared_ptr<scheduler::TokenConstraint>> TextFrontend::OutputConstraint(const ApiRequest& r) const {
  const tokenizer::Tokenizer* tok = model_->tokenizer;
  if (tok == nullptr || !tok->decodes_per_token())
    return InvalidField(r.output_format_field, "needs the model's byte-level tokenizer (tokenizer.json), which "
                                               "this server does not have");
  if (!r.output_grammar->is_tool_call() && r.input == ApiRequest::Input::kChat && r.tools.is_array() &&
      !r.tools.empty())
    return InvalidField(r.output_format_field, absl::StrCat("cannot be combined with ", r.tools_field,
                                                            ": the reply is the formatted text, never a tool call"));
  if (r.output_grammar->is_tool_call()) {
    // The call is spelt with the tokenizer's own tag tokens, which the chat parser reads back.
    for (const char* tag : {"<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"}) {
      const std::optional<int32_t> id = tok->TokenToId(tag);
      if (!id.has_value() || !tok->IsSpecial(*id))
        return InvalidField(r.output_format_field, absl::StrCat("forcing a tool call needs the tokenizer's ", tag,
                                                                " special token, which this model does not have"));
    }
  }
  if (r.template_kwargs.is_object() && r.template_kwargs.contains("enable_thinking") &&
      r.template_kwargs["enable_thinking"] == true)
    return InvalidField(r.output_format_field, "cannot be combined with enable_thinking: the format applies from "
                                               "the reply's first token");
  // A forced call in the layout the served template writes (requests are parsed in GLM-4.5's).
  auto grammar = structured::JsonGrammar::InToolCallLayout(r.output_grammar, model_->tool_call_layout);
  if (!grammar.ok()) return InvalidField(r.output_format_field, grammar.status().message());
  const int64_t vocab = model_->vocab_size > 0 ? model_->vocab_size : tok->vocab_size();
  absl::MutexLock lock(&formats_mu_);
  if (vocabulary_ == nullptr) {
    // Special tokens are spelt with a mark byte no text has: JSON never matches one, a forced
    // tool call asks for its tags.
    std::vector<std::string> bytes(std::min<int64_t>(vocab, tok->vocab_size()));
    for (int32_t id = 0; id < static_cast<int32_t>(bytes.size()); ++id)
      bytes[id] = structured::TokenVocabulary::Spelling(tok->TokenBytes(id), tok->IsSpecial(id),
                                                        tok->IdToToken(id).value_or(""),
                                                        structured::JsonGrammar::kSpecialMark);
    vocabulary_ = std::make_shared<const structured::TokenVocabulary>(std::move(bytes));
  }
  std::shared_ptr<structured::OutputFormat> format;
  for (auto it = formats_.begin(); it != formats_.end(); ++it) {
    if ((*it)->grammar().fingerprint() != (*grammar)->fingerprint()) continue;
    format = *it;
    formats_.splice(formats_.begin(), formats_, it);
    break;
  }
  if (format == nullptr) {
    format = std::make_shared<structured::OutputFormat>(*std::move(grammar), vocabulary_);
    formats_.push_front(format);
    if (formats_.size() > kMaxCachedFormats) {
      const structured::OutputFormat::Stats gone = formats_.back()->stats();
      retired_.masks.hits += gone.hits;
      retired_.masks.misses += gone.misses;
      retired_.masks.compute_seconds += gone.compute_seconds;
      formats_.pop_back();
    }
  }
  ++retired_.requests;
  return std::make_shared<structured::JsonTokenConstraint>(std::move(format));
}

TextFrontend::StructuredOutputStats TextFrontend::structured_output_stats() const {
  absl::MutexLock lock(&formats_mu_);
  StructuredOutputStats total = retired_;
  for (const auto& f : formats_) {
    const structured::OutputFormat::Stats s = f->stats();
    total.masks.hits += s.hits;
    total.masks.misses += s.misses;
    total.masks.entries += s.entries;
    total.masks.compute_seconds += s.compute_seconds;
  }
  return total;
}

absl::StatusOr<std::vector<int32_t>> TextFrontend::EncodeText(const std::string& text, bool add_special_tokens,
                                                              absl::string_view field) const {
  if (model_->tokenizer == nullptr) return InvalidField(field, kNoTokenizer);
  auto ids = model_->tokenizer->Encode(text, add_special_tokens);
  if (!ids.ok()) return InvalidField(field, ids.status().message());
  return ids;
}

absl::Status TextFrontend::ValidateTools(const nlohmann::ordered_json& tools, absl::string_view field) {
  if (tools.is_null()) return absl::OkStatus();
  if (!tools.is_array()) return InvalidField(field, "must be an array");
  auto present = [](const nlohmann::ordered_json& obj, const char* key) {
    const auto it = obj.find(key);
    return it != obj.end() && !it->is_null() ? &*it : nullptr;
  };
  for (size_t i = 0; i < tools.size(); ++i) {
    const nlohmann::ordered_json& t = tools[i];
    const std::string at = absl::StrCat(field, "[", i, "]");
    if (!t.is_object()) return InvalidField(at, "must be an object");
    if (const auto* type = present(t, "type"); type != nullptr) {
      if (!type->is_string()) return InvalidField(at + ".type", "must be \"function\"");
      if (type->get_ref<const std::string&>() != "function")
        return InvalidField(at + ".type", absl::StrCat("'", type->get_ref<const std::string&>(),
                                                       "' is not supported (only \"function\")"));
    }
    const auto* fn = present(t, "function");
    if (fn == nullptr || !fn->is_object())
      return InvalidField(at + ".function", "is required (an object with a name)");
    const auto* name = present(*fn, "name");
    if (name == nullptr || !name->is_string() || name->get_ref<const std::string&>().empty())
      return InvalidField(at + ".function.name", "is required (a non-empty string)");
    if (const auto* p = present(*fn, "parameters"); p != nullptr && !p->is_object())
      return InvalidField(at + ".function.parameters", "must be an object (a JSON schema)");
    if (const auto* d = present(*fn, "description"); d != nullptr && !d->is_string())
      return InvalidField(at + ".function.description", "must be a string");
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::ordered_json> TextFrontend::NormalizeMessages(const nlohmann::ordered_json& messages,
                                                                       absl::string_view field) {
  if (!messages.is_array() || messages.empty()) return InvalidField(field, "must be a non-empty array of messages");
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const std::string at = absl::StrCat(field, "[", i, "]");
    if (!m.is_object()) return InvalidField(at, "must be an object");
    const auto role_it = m.find("role");
    if (role_it == m.end() || !role_it->is_string()) return InvalidField(at + ".role", "is required (a string)");
    std::string role = role_it->get<std::string>();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      return InvalidField(at + ".role", absl::StrCat("'", role, "' is not one of system, user, assistant, tool ",
                                                     "(or developer)"));
    nlohmann::ordered_json n = m;  // (the keys stay where the client put them)
    n["role"] = role;
    const auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      // An assistant turn of only tool calls (this server's own replies) has content null.
      n["content"] = "";
    } else if (content->is_array()) {
      auto text = JoinTextParts(nlohmann::json(*content), at + ".content", {{"text", "text"}});
      if (!text.ok()) return text.status();
      n["content"] = *std::move(text);
    } else if (!content->is_string()) {
      return InvalidField(at + ".content", "must be a string, an array of content parts or null");
    }
    if (const auto calls = m.find("tool_calls"); calls != m.end() && !calls->is_null() && !calls->is_array())
      return InvalidField(at + ".tool_calls", "must be an array");
    out.push_back(std::move(n));
  }
  return out;
}

absl::StatusOr<std::string> TextFrontend::CutAfterFinalMessage(const nlohmann::ordered_json& messages,
                                                                std::string rendered, absl::string_view field) {
  // transformers' apply_chat_template(continue_final_message=True): the final message's content,
  // or its last text part, found where it last occurs (else trimmed); everything after it (the
  // turn's end-of-turn token, a generation prompt) is dropped.
  const nlohmann::ordered_json* content = nullptr;
  if (messages.is_array() && !messages.empty() && messages.back().is_object() && messages.back().contains("content"))
    content = &messages.back()["content"];
  std::string final_text;  // null or absent content: "", found at the end
  if (content != nullptr && content->is_string()) {
    final_text = content->get<std::string>();
  } else if (content != nullptr && content->is_array()) {
    bool found = false;
    for (auto part = content->rbegin(); part != content->rend() && !found; ++part) {
      if (part->is_object() && part->contains("text") && (*part)["text"].is_string()) {
        final_text = (*part)["text"].get<std::string>();
        found = true;
      }
    }
    if (!found) return InvalidField(field, "the final message has no text to continue");
  }
  size_t at = rendered.rfind(final_text);
  if (at == std::string::npos) {
    final_text = std::string(absl::StripAsciiWhitespace(final_text));
    at = rendered.rfind(final_text);
  }
  if (at == std::string::npos)
    return InvalidField(field, "the final message's content does not appear in the prompt the chat template "
                               "renders, so there is nothing to continue");
  rendered.resize(at + final_text.size());
  return rendered;
}

absl::StatusOr<std::string> TextFrontend::RenderChat(const nlohmann::ordered_json& messages,
                                                     const nlohmann::ordered_json& tools,
                                                     bool add_generation_prompt,
                                                     const nlohmann::json& template_kwargs,
                                                     absl::string_view field, absl::string_view tools_field) const {
  if (model_->tokenizer == nullptr) return InvalidField(field, kNoTokenizer);
  if (model_->chat_template == nullptr)
    return InvalidField(field, "this model has no chat template (tokenizer_config.json chat_template)");
  auto normalized = NormalizeMessages(messages, field);
  if (!normalized.ok()) return normalized.status();
  if (auto s = ValidateTools(tools, tools_field); !s.ok()) return s;
  if (!template_kwargs.is_object()) return InvalidField("chat_template_kwargs", "must be an object");
  auto text = model_->chat_template->RenderOrdered(*normalized, tools, add_generation_prompt, template_kwargs);
  if (!text.ok()) return InvalidField(field, absl::StrCat("the chat template failed: ", text.status().message()));
  return text;
}

std::optional<structured::ToolCallLayout> TextFrontend::TemplateToolCallLayout() const {
  // One call with two string arguments, as an OpenAI client sends it back in a conversation.
  static const auto* const kMessages = new nlohmann::ordered_json(nlohmann::ordered_json::parse(R"([
      {"role": "user", "content": "probe"},
      {"role": "assistant", "content": "", "tool_calls": [{"id": "call_probe", "type": "function", "function":
          {"name": "probe_tool", "arguments": "{\"first_key\": \"first value\", \"second_key\": \"second value\"}"}}]}])"));
  static const auto* const kTools = new nlohmann::ordered_json(nlohmann::ordered_json::parse(R"([
      {"type": "function", "function": {"name": "probe_tool", "description": "probe", "parameters": {"type": "object",
          "properties": {"first_key": {"type": "string"}, "second_key": {"type": "string"}}}}}])"));
  auto rendered = RenderChat(*kMessages, *kTools, /*add_generation_prompt=*/false, nlohmann::json::object(), "messages");
  if (!rendered.ok()) return std::nullopt;
  const std::string_view text = *rendered;
  size_t at = text.find("<tool_call>probe_tool");
  if (at == std::string_view::npos) return std::nullopt;
  at += std::string_view("<tool_call>probe_tool").size();
  // The whitespace between `at` and the next `next`, moving past `next`; nullopt if anything else.
  auto gap = [&](std::string_view next) -> std::optional<std::string> {
    const size_t end = text.find(next, at);
    if (end == std::string_view::npos) return std::nullopt;
    const std::string_view between = text.substr(at, end - at);
    if (between.find_first_not_of(" \t\r\n") != std::string_view::npos) return std::nullopt;
    at = end + next.size();
    return std::string(between);
  };
  const auto after_name = gap("<arg_key>first_key</arg_key>");
  const auto after_key = gap("<arg_value>first value</arg_value>");
  const auto after_value = gap("<arg_key>second_key</arg_key>");
  const auto after_key2 = gap("<arg_value>second value</arg_value>");
  const auto after_value2 = gap("</tool_call>");
  if (!after_name || !after_key || !after_value || after_key != after_key2 || after_value != after_value2)
    return std::nullopt;
  return structured::ToolCallLayout{*after_name, *after_key, *after_value};
}

absl::Status TextFrontend::ValidateSampling(const ApiRequest& r) const {
  if (!Finite(r.temperature) || r.temperature < 0) return InvalidField(Field(r, "temperature"), "must be >= 0");
  if (!Finite(r.top_p) || r.top_p <= 0 || r.top_p > 1) return InvalidField(Field(r, "top_p"), "must be in (0, 1]");
  if (r.top_k < -1) return InvalidField(Field(r, "top_k"), "must be >= 0 (0 or -1 disables it)");
  if (!Finite(r.min_p) || r.min_p < 0 || r.min_p > 1) return InvalidField(Field(r, "min_p"), "must be in [0, 1]");
  if (!Finite(r.repetition_penalty) || r.repetition_penalty <= 0)
    return InvalidField(Field(r, "repetition_penalty"), "must be > 0");
  if (!Finite(r.presence_penalty) || r.presence_penalty < -2 || r.presence_penalty > 2)
    return InvalidField(Field(r, "presence_penalty"), "must be in [-2, 2]");
  if (!Finite(r.frequency_penalty) || r.frequency_penalty < -2 || r.frequency_penalty > 2)
    return InvalidField(Field(r, "frequency_penalty"), "must be in [-2, 2]");
  if (r.max_tokens.has_value() && *r.max_tokens < 0) return InvalidField(Field(r, r.max_tokens_field), "must be >= 0");
  if (r.max_tokens.has_value() && *r.max_tokens > INT32_MAX)
    return InvalidField(Field(r, r.max_tokens_field), "is too large");
  if (r.top_logprobs < 0 || r.top_logprobs > kMaxTopLogprobs)
    return InvalidField(Field(r, r.top_logprobs_field), absl::StrCat("must be in [0, ", kMaxTopLogprobs, "]"));
  if (r.prompt_logprobs < -1 || r.prompt_logprobs > kMaxTopLogprobs)
    return InvalidField(Field(r, "prompt_logprobs"), absl::StrCat("must be in [0, ", kMaxTopLogprobs, "]"));
  if (r.stop.size() > kMaxStopStrings)
    return InvalidField(Field(r, "stop"), absl::StrCat("has ", r.stop.size(), " strings; at most ", kMaxStopStrings));
  for (size_t i = 0; i < r.stop.size(); ++i) {
    if (r.stop[i].empty()) return InvalidField(absl::StrCat(Field(r, "stop"), "[", i, "]"), "is empty");
    if (r.stop[i].size() > kMaxStopStringBytes)
      return InvalidField(absl::StrCat(Field(r, "stop"), "[", i, "]"),
                          absl::StrCat("is ", r.stop[i].size(), " bytes; at most ", kMaxStopStringBytes));
    if (model_->tokenizer == nullptr)
      return InvalidField(Field(r, "stop"), absl::StrCat("stop strings need a tokenizer; ", kNoTokenizer));
  }
  const int32_t vocab = model_->vocab_size > 0 ? model_->vocab_size
                        : model_->tokenizer != nullptr ? model_->tokenizer->vocab_size() : 0;
  for (const auto& [ids, name] : {std::pair{&r.stop_token_ids, "stop_token_ids"},
                                   std::pair{&r.allowed_token_ids, "allowed_token_ids"}}) {
    for (size_t i = 0; i < ids->size(); ++i) {
      const int32_t id = (*ids)[i];
      if (id < 0 || (vocab > 0 && id >= vocab))
        return InvalidField(absl::StrCat(Field(r, name), "[", i, "]"), absl::StrCat(id, " is out of range [0, ", vocab, ")"));
    }
  }
  if (r.bad_words.size() > kMaxBadWords)
    return InvalidField(Field(r, "bad_words"), absl::StrCat("has ", r.bad_words.size(), " words; at most ", kMaxBadWords));
  for (size_t i = 0; i < r.bad_words.size(); ++i) {
    const std::string field = absl::StrCat(Field(r, "bad_words"), "[", i, "]");
    if (absl::StripLeadingAsciiWhitespace(r.bad_words[i]).empty()) return InvalidField(field, "is empty");
    if (r.bad_words[i].size() > kMaxBadWordBytes)
      return InvalidField(field, absl::StrCat("is longer than ", kMaxBadWordBytes, " bytes"));
    if (model_->tokenizer == nullptr) return InvalidField(field, absl::StrCat("bad words need a tokenizer; ", kNoTokenizer));
  }
  for (const auto& [id, bias] : r.logit_bias) {
    const std::string field = absl::StrCat(Field(r, "logit_bias"), "[\"", id, "\"]");
    if (id < 0 || (vocab > 0 && id >= vocab))
      return InvalidField(field, absl::StrCat("token ", id, " is out of range [0, ", vocab, ")"));
    if (!Finite(bias) || bias < -100 || bias > 100) return InvalidField(field, "must be in [-100, 100]");
  }
  // `speculative` is the engine's to check (one parser for the flag and the requests): its
  // "speculative: ..." errors name the field (FieldOf).
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<int32_t>>> TextFrontend::BadWordSequences(const ApiRequest& r) const {
  std::vector<std::vector<int32_t>> out;
  for (size_t i = 0; i < r.bad_words.size(); ++i) {
    const std::string word(absl::StripLeadingAsciiWhitespace(r.bad_words[i]));
    auto plain = model_->tokenizer->Encode(word);
    if (!plain.ok()) return InvalidField(absl::StrCat(Field(r, "bad_words"), "[", i, "]"), plain.status().message());
    if (plain->empty()) continue;
    auto spaced = model_->tokenizer->Encode(" " + word);
    if (!spaced.ok()) return InvalidField(absl::StrCat(Field(r, "bad_words"), "[", i, "]"), spaced.status().message());
    const bool new_word_token = !spaced->empty() && spaced->front() != plain->front() && spaced->size() == plain->size();
    out.push_back(*std::move(plain));
    if (new_word_token) out.push_back(*std::move(spaced));
  }
  return out;
}

absl::StatusOr<PreparedRequest> TextFrontend::Prepare(const ApiRequest& r) const {
  if (auto s = ValidateSampling(r); !s.ok()) return s;
  PreparedRequest out;
  if (r.output_grammar != nullptr) {
    auto constraint = OutputConstraint(r);
    if (!constraint.ok()) return constraint.status();
    out.engine_request.constraint = *std::move(constraint);
    out.engine_request.constraint_field = r.output_format_field;
  }
  if (!r.allowed_token_ids.empty()) {
    if (out.engine_request.constraint != nullptr)
      return InvalidField(Field(r, "allowed_token_ids"), absl::StrCat("cannot be combined with ", r.output_format_field));
    out.engine_request.constraint = std::make_shared<scheduler::TokenSetConstraint>(r.allowed_token_ids);
  }
  if (!r.bad_words.empty()) {
    auto banned = BadWordSequences(r);
    if (!banned.ok()) return banned.status();
    out.engine_request.constraint =
        std::make_shared<scheduler::BannedSequencesConstraint>(*std::move(banned), std::move(out.engine_request.constraint));
  }
  std::vector<int32_t>& prompt = out.engine_request.prompt;
  const int32_t vocab = model_->vocab_size > 0 ? model_->vocab_size
                        : model_->tokenizer != nullptr ? model_->tokenizer->vocab_size() : 0;

  switch (r.input) {
    case ApiRequest::Input::kNone:
      return InvalidField(r.input_field, "is required");
    case ApiRequest::Input::kText: {
      if (model_->tokenizer == nullptr) return InvalidField(r.input_field, kNoTokenizer);
      if (r.text.empty()) return InvalidField(r.input_field, "is empty");
      // Raw completions get the tokenizer's special tokens, as Hugging Face and vLLM do.
      auto ids = EncodeText(r.text, /*add_special_tokens=*/true, r.input_field);
      if (!ids.ok()) return ids.status();
      prompt = std::move(*ids);
      break;
    }
    case ApiRequest::Input::kTokenIds: {
      if (r.token_ids.empty()) return InvalidField(r.input_field, "is empty");
      for (size_t i = 0; i < r.token_ids.size(); ++i) {
        const int32_t id = r.token_ids[i];
        if (id < 0 || (vocab > 0 && id >= vocab))
          return InvalidField(absl::StrCat(r.input_field, "[", i, "]"),
                              absl::StrCat(id, " is out of range [0, ", vocab, ")"));
      }
      prompt = r.token_ids;
      break;
    }
    case ApiRequest::Input::kChat: {
      std::string text;
      auto ids = EncodeChat(r, r.chat_add_special_tokens, &text);
      if (!ids.ok()) return ids.status();
      prompt = std::move(*ids);
      out.output.parse_chat = true;
      out.output.tools = nlohmann::json(r.tools);  // (the tool-call parser looks up parameter types by name)
      absl::string_view tail = absl::StripTrailingAsciiWhitespace(text);
      // A constrained reply is the JSON value itself, even after a template that opened <think>.
      out.output.starts_in_reasoning = r.output_grammar == nullptr && tail.size() >= 7 &&
                                       tail.substr(tail.size() - 7) == "<think>";
      // No generation prompt after an assistant message: the reply continues that message
      // (vLLM's continue_final_message, Anthropic's prefill), leading newlines included.
      out.output.continues_message = !r.add_generation_prompt && r.messages.is_array() && !r.messages.empty() &&
                                     r.messages.back().is_object() && r.messages.back().contains("role") &&
                                     r.messages.back()["role"] == "assistant";
      break;
    }
  }
  if (prompt.empty()) return InvalidField(r.input_field, "encodes to no tokens");
  const int64_t keep = r.truncate_prompt_tokens == -1 ? model_->max_context : r.truncate_prompt_tokens;
  if (keep > 0 && static_cast<int64_t>(prompt.size()) > keep)
    prompt.erase(prompt.begin(), prompt.end() - keep);  // vLLM's: the last N tokens

  int64_t max_tokens = r.max_tokens.has_value() ? *r.max_tokens : default_max_tokens_;
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (model_->max_context > 0) {
    // OpenAI's wording ("maximum context length is"), which client libraries match as well as the code.
    if (n >= model_->max_context)
      return ContextLengthExceeded(
          r.input_field, absl::StrCat("This model's maximum context length is ", model_->max_context,
                                      " tokens (prompt + completion). However, the prompt is ", n, " tokens."),
          {n, 0, model_->max_context});
    if (n + max_tokens > model_->max_context) {
      if (r.max_tokens.has_value())
        return ContextLengthExceeded(
            Field(r, r.max_tokens_field),
            absl::StrCat("This model's maximum context length is ", model_->max_context, " tokens. However, you requested ",
                         n + max_tokens, " tokens (", n, " in the prompt, ", max_tokens,
                         " in the completion). Please reduce the prompt or the completion length."),
            {n, max_tokens, model_->max_context});
      max_tokens = 0;  // a server default larger than what is left: run to the context instead
    }
  }

  scheduler::GenerationRequest& g = out.engine_request;
  g.request_id = r.request_id.empty() ? NewRequestId("req") : r.request_id;
  g.deadline = r.deadline;
  g.speculative = r.speculative;  // "" = the server's --speculative
  if (!r.prediction.empty()) {
    if (r.prediction.size() > kMaxPredictionBytes)
      return InvalidField(r.prediction_field, absl::StrCat("is longer than ", kMaxPredictionBytes, " bytes"));
    auto ids = EncodeText(r.prediction, /*add_special_tokens=*/false, r.prediction_field);
    if (!ids.ok()) return ids.status();
    g.prediction = *std::move(ids);
    // Drafts beyond the context could never be verified.
    if (model_->max_context > 0 && static_cast<int64_t>(g.prediction.size()) > model_->max_context)
      g.prediction.resize(model_->max_context);
  }
  g.cache_salt = r.cache_salt;
  g.priority = r.priority;
  scheduler::SamplingOptions& s = g.sampling;
  s.temperature = r.temperature;
  s.top_p = r.top_p;
  s.top_k = r.top_k < 0 ? 0 : r.top_k;
  s.min_p = r.min_p;
  s.repetition_penalty = r.repetition_penalty;
  s.presence_penalty = r.presence_penalty;
  s.frequency_penalty = r.frequency_penalty;
  s.logit_bias = r.logit_bias;
  s.seed = r.seed;
  s.max_tokens = static_cast<int32_t>(max_tokens);
  s.stop_token_ids = r.stop_token_ids;
  s.ignore_eos = r.ignore_eos;
  s.min_tokens = r.min_tokens;
  s.logprobs = r.logprobs || r.top_logprobs > 0;
  s.top_logprobs = r.top_logprobs;
  s.prompt_logprobs = r.prompt_logprobs;

  out.output.stop = r.stop;
  out.output.min_tokens = r.min_tokens;
  out.output.skip_special_tokens = r.skip_special_tokens;
  out.output.include_stop_str = r.include_stop_str_in_output;
  // vLLM: the token that stopped the request (EOS or a stop_token_ids entry) keeps its text when
  // include_stop_str_in_output is set (a special token's text is still dropped by
  // skip_special_tokens).
  if (!r.include_stop_str_in_output) {
    if (!r.ignore_eos) out.output.hidden_stop_ids = model_->eos_token_ids;
    out.output.hidden_stop_ids.insert(out.output.hidden_stop_ids.end(), r.stop_token_ids.begin(),
                                      r.stop_token_ids.end());
  }
  return out;
}

}  // namespace glm::api
