#include "coordinator/api/anthropic_protocol.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"
#include "coordinator/api/json_fields.h"
#include "coordinator/api/response_format.h"
#include "coordinator/api/openai_protocol.h"

namespace glm::api {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Anthropic content where only text may stand (system prompts, tool results): a string or text
// blocks.
absl::StatusOr<std::string> TextOf(const json& content, const std::string& field) {
  return JoinTextParts(content, field, {{"text", "text"}});
}

absl::Status UnsupportedBlock(const std::string& field, const std::string& type) {
  if (type == "image" || type == "document")
    return InvalidField(field, absl::StrCat("'", type, "' is not supported by this model (text only)"));
  return InvalidField(field, absl::StrCat("'", type, "' is not a content block this server knows"));
}

// One Anthropic message → the OpenAI-shaped messages the chat template reads (appended to `out`).
// `m` is checked; `ordered` is the same message in the client's key order (OrderedBody), which
// tool_use inputs are taken from.
absl::Status TranslateMessage(const json& m, const ordered_json& ordered, const std::string& at, ordered_json* out) {
  if (!m.is_object()) return InvalidField(at, "must be an object");
  auto role = RequiredString(m, "role", at);
  if (!role.ok()) return role.status();
  if (*role != "user" && *role != "assistant")
    return InvalidField(at + ".role", absl::StrCat("'", *role, "' is not one of user, assistant (the system prompt ",
                                                   "goes in the top-level system field)"));
  if (!m.contains("content")) return InvalidField(at + ".content", "is required");
  const json& content = m["content"];
  if (content.is_string()) {
    out->push_back({{"role", *role}, {"content", content}});
    return absl::OkStatus();
  }
  if (!content.is_array()) return InvalidField(at + ".content", "must be a string or an array of content blocks");
  std::string text, reasoning;
  ordered_json tool_calls = ordered_json::array();
  bool has_text = false;
  auto flush_user_text = [&] {
    if (has_text) out->push_back({{"role", "user"}, {"content", std::move(text)}});
    text.clear();
    has_text = false;
  };
  for (size_t j = 0; j < content.size(); ++j) {
    const std::string bat = absl::StrCat(at, ".content[", j, "]");
    const json& block = content[j];
    if (!block.is_object()) return InvalidField(bat, "must be an object (a content block)");
    auto type = RequiredString(block, "type", bat);
    if (!type.ok()) return type.status();
    if (*type == "text") {
      auto part = RequiredString(block, "text", bat);
      if (!part.ok()) return part.status();
      if (has_text) text += "\n";
      text += *part;
      has_text = true;
    } else if (*role == "user" && *type == "tool_result") {
      auto id = RequiredString(block, "tool_use_id", bat);
      if (!id.ok()) return id.status();
      std::string result;
      if (Present(block, "content")) {
        auto r = TextOf(block["content"], bat + ".content");
        if (!r.ok()) return r.status();
        result = *std::move(r);
      }
      // A failed tool's output reads as such to the model (Anthropic's is_error flag has no
      // place in the chat template).
      if (Present(block, "is_error") && !block["is_error"].is_boolean())
        return InvalidField(bat + ".is_error", "must be true or false");
      if (block.contains("is_error") && block["is_error"] == true) result = absl::StrCat("Error: ", result);
      flush_user_text();  // text before a result stays before it
      out->push_back({{"role", "tool"}, {"tool_call_id", *id}, {"content", std::move(result)}});
    } else if (*role == "assistant" && *type == "tool_use") {
      auto id = RequiredString(block, "id", bat);
      if (!id.ok()) return id.status();
      auto name = RequiredString(block, "name", bat);
      if (!name.ok()) return name.status();
      if (block.contains("input") && !block["input"].is_object()) return InvalidField(bat + ".input", "must be an object");
      const ordered_json& oblock = ordered["content"][j];
      const ordered_json input = oblock.contains("input") ? oblock["input"] : ordered_json::object();
      tool_calls.push_back(
          {{"id", *id}, {"type", "function"}, {"function", {{"name", *name}, {"arguments", input.dump()}}}});
    } else if (*role == "assistant" && *type == "thinking") {
      auto t = RequiredString(block, "thinking", bat);
      if (!t.ok()) return t.status();
      reasoning += *t;
    } else if (*role == "assistant" && *type == "redacted_thinking") {
      // Another model's encrypted reasoning: nothing this model can read.
    } else {
      return UnsupportedBlock(bat + ".type", *type);
    }
  }
  if (*role == "user") {
    flush_user_text();
    return absl::OkStatus();
  }
  ordered_json msg = {{"role", "assistant"}, {"content", text}};
  if (!reasoning.empty()) msg["reasoning_content"] = reasoning;
  if (!tool_calls.empty()) msg["tool_calls"] = std::move(tool_calls);
  out->push_back(std::move(msg));
  return absl::OkStatus();
}

// Anthropic tools → OpenAI function tools, {"name", "description", "parameters"} as vLLM spells
// them; `ordered` is `tools` in the client's key order, whose input_schema each takes.
absl::StatusOr<ordered_json> TranslateTools(const json& tools, const ordered_json& ordered) {
  if (!tools.is_array()) return InvalidField("tools", "must be an array");
  ordered_json out = ordered_json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string at = absl::StrCat("tools[", i, "]");
    const json& t = tools[i];
    if (!t.is_object()) return InvalidField(at, "must be an object");
    if (Present(t, "type") && t["type"] != "custom")
      return InvalidField(at + ".type", absl::StrCat(t["type"].dump(), " is a server tool this server does not run; ",
                                                     "declare it as a custom tool (name, input_schema)"));
    auto name = RequiredString(t, "name", at);
    if (!name.ok()) return name.status();
    if (!Present(t, "input_schema") || !t["input_schema"].is_object())
      return InvalidField(at + ".input_schema", "is required (a JSON schema object)");
    ordered_json fn = {{"name", *name}};
    if (Present(t, "description")) {
      if (!t["description"].is_string()) return InvalidField(at + ".description", "must be a string");
      fn["description"] = t["description"].get<std::string>();
    }
    fn["parameters"] = ordered[i]["input_schema"];
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

}  // namespace

absl::StatusOr<AnthropicRequest> ParseAnthropicRequest(const json& body, const std::string& served_name,
                                                       bool count_only, const std::string* raw_body) {
  if (!body.is_object()) return InvalidField("body", "must be a JSON object");
  AnthropicRequest r;
  ApiRequest& a = r.api;
  a.input = ApiRequest::Input::kChat;
  a.input_field = "messages";
  r.model = served_name;
  if (Present(body, "model")) {
    if (!body["model"].is_string()) return InvalidField("model", "must be a string");
    r.model = body["model"].get<std::string>();
  }
  if (!Present(body, "messages") || !body["messages"].is_array() || body["messages"].empty())
    return InvalidField("messages", "must be a non-empty array of messages");
  const ordered_json ordered = OrderedBody(body, raw_body);
  ordered_json messages = ordered_json::array();
  if (Present(body, "system")) {
    auto system = TextOf(body["system"], "system");
    if (!system.ok()) return system.status();
    messages.push_back({{"role", "system"}, {"content", *system}});
  }
  for (size_t i = 0; i < body["messages"].size(); ++i)
    if (auto s = TranslateMessage(body["messages"][i], ordered["messages"][i], absl::StrCat("messages[", i, "]"),
                                  &messages);
        !s.ok())
      return s;
  // Empty content arrays translate to nothing: a conversation of only those has no turn to answer.
  if (messages.empty()) return InvalidField("messages", "have no content (every content array is empty)");
  // A conversation that ends with the assistant's own words is a prefill: the reply continues
  // that text (Anthropic's semantics), so no new assistant turn is opened after it, and the prompt
  // is cut right after the text (continue_final_message), also where a template ends the turn
  // with an end-of-turn token (GLM templates close a turn only by starting the next).
  if (messages.back()["role"] == "assistant" && !messages.back().contains("tool_calls")) {
    a.add_generation_prompt = false;
    a.continue_final_message = true;
    a.continue_final_field = absl::StrCat("messages[", body["messages"].size() - 1, "].content");
  }
  a.messages = std::move(messages);

  if (Present(body, "tools")) {
    auto tools = TranslateTools(body["tools"], ordered["tools"]);
    if (!tools.ok()) return tools.status();
    if (!tools->empty()) a.tools = *std::move(tools);
  }
  if (Present(body, "tool_choice")) {
    const json& tc = body["tool_choice"];
    if (!tc.is_object() || !Present(tc, "type") || !tc["type"].is_string())
      return InvalidField("tool_choice.type", "is required (\"auto\" or \"none\")");
    const std::string type = tc["type"].get<std::string>();
    if (type != "auto" && type != "none" && type != "any" && type != "tool")
      return InvalidField("tool_choice.type", absl::StrCat("'", type, "' is not one of auto, any, tool, none"));
    if (type == "none") a.tools = nullptr;  // the model must not see (and so not call) the tools
    if (type == "any" || type == "tool") {  // forced: one or more calls, by constrained decoding
      std::string name;
      if (type == "tool") {
        if (!Present(tc, "name") || !tc["name"].is_string()) return InvalidField("tool_choice.name", "is required");
        name = tc["name"].get<std::string>();
      }
      bool single = false;  // Anthropic's disable_parallel_tool_use: exactly one call
      if (auto s = GetOptionalBool(tc, "disable_parallel_tool_use", &single); !s.ok())
        return InvalidField("tool_choice.disable_parallel_tool_use", "must be a boolean");
      auto grammar = ForcedToolCall(a.tools, name, "tool_choice", !single);
      if (!grammar.ok()) return grammar.status();
      a.output_grammar = *std::move(grammar);
      a.output_format_field = "tool_choice";
    }
  }
  if (Present(body, "thinking")) {
    // GLM chat templates switch reasoning with enable_thinking; budget_tokens has no equivalent
    // (max_tokens bounds reasoning and answer together).
    const json& th = body["thinking"];
    if (!th.is_object() || !Present(th, "type") || !th["type"].is_string())
      return InvalidField("thinking.type", "is required (\"enabled\" or \"disabled\")");
    const std::string type = th["type"].get<std::string>();
    if (type != "enabled" && type != "disabled")
      return InvalidField("thinking.type", absl::StrCat("'", type, "' is not one of enabled, disabled"));
    a.template_kwargs["enable_thinking"] = type == "enabled";
  }
  if (Present(body, "output_format")) {
    if (a.output_grammar != nullptr)
      return InvalidField("output_format", "cannot be combined with a forced tool_choice");
    // Anthropic's structured outputs: {"type": "json_schema", "schema": {...}}.
    const json& of = body["output_format"];
    if (!of.is_object() || !of.contains("type") || of["type"] != "json_schema")
      return InvalidField("output_format.type", "must be \"json_schema\"");
    auto grammar = ParseResponseFormat(of, {"output_format", true, raw_body, {"output_format"}});
    if (!grammar.ok()) return grammar.status();
    a.output_grammar = *std::move(grammar);
    a.output_format_field = "output_format";
  }
  if (count_only) return r;

  if (!Present(body, "max_tokens")) return InvalidField("max_tokens", "is required");
  const json& mt = body["max_tokens"];
  if (!mt.is_number_integer() || mt.get<int64_t>() < 1) return InvalidField("max_tokens", "must be an integer >= 1");
  a.max_tokens = mt.get<int64_t>();
  if (auto s = GetOptionalBool(body, "stream", &r.stream); !s.ok()) return s;
  // vLLM's extension, which benchmarks use for outputs of an exact length.
  if (auto s = GetOptionalBool(body, "ignore_eos", &a.ignore_eos); !s.ok()) return s;
  if (auto s = GetOptionalFloat(body, "temperature", &a.temperature); !s.ok()) return s;
  if (auto s = GetOptionalFloat(body, "top_p", &a.top_p); !s.ok()) return s;
  // This server's per-request speculative decoding (as on chat completions): none, mtp:K, ngram:K.
  if (Present(body, "speculative")) {
    if (!body["speculative"].is_string()) return InvalidField("speculative", "must be a string");
    a.speculative = body["speculative"].get<std::string>();
  }
  if (Present(body, "top_k")) {
    if (!body["top_k"].is_number_integer()) return InvalidField("top_k", "must be an integer");
    const int64_t k = body["top_k"].get<int64_t>();
    if (k < 0 || k > std::numeric_limits<int32_t>::max()) return InvalidField("top_k", "must be >= 0");
    a.top_k = static_cast<int32_t>(k);
  }
  if (Present(body, "stop_sequences")) {
    const json& stops = body["stop_sequences"];
    if (!stops.is_array()) return InvalidField("stop_sequences", "must be an array of strings");
    for (size_t i = 0; i < stops.size(); ++i) {
      if (!stops[i].is_string() || stops[i].get_ref<const std::string&>().empty())
        return InvalidField(absl::StrCat("stop_sequences[", i, "]"), "must be a non-empty string");
      a.stop.push_back(stops[i].get<std::string>());
    }
  }
  return r;
}

json AnthropicErrorJson(const absl::Status& status, int* http_status) {
  std::string type = "api_error";
  int http = 500;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition: type = "invalid_request_error"; http = 400; break;
    case absl::StatusCode::kNotFound: type = "not_found_error"; http = 404; break;
    case absl::StatusCode::kResourceExhausted: type = "rate_limit_error"; http = 429; break;
    // Anthropic's "overloaded" (529): the server is draining or lost a worker; retry elsewhere or later.
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted: type = "overloaded_error"; http = 529; break;
    case absl::StatusCode::kDeadlineExceeded: type = "timeout_error"; http = 504; break;
    default: break;
  }
  if (http_status != nullptr) *http_status = http;
  return {{"type", "error"}, {"error", {{"type", type}, {"message", std::string(status.message())}}}};
}

AnthropicResponseBuilder::AnthropicResponseBuilder(std::string id, std::string model)
    : id_(std::move(id)), model_(std::move(model)) {}

void AnthropicResponseBuilder::Count(const OutputDelta& d) {
  prompt_tokens_ = d.prompt_tokens;
  completion_tokens_ = d.completion_tokens;
  cached_tokens_ = d.cached_tokens;
  if (d.finished) finish_reason_ = d.finish_reason;
  if (d.stop_string_matched) matched_stop_ = d.matched_stop;
}

json AnthropicResponseBuilder::Usage() const {
  return {{"input_tokens", prompt_tokens_ - cached_tokens_},
          {"output_tokens", completion_tokens_},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", cached_tokens_}};
}

std::string AnthropicResponseBuilder::StopReason() const {
  if (finish_reason_ == "length") return "max_tokens";
  if (finish_reason_ == "tool_calls") return "tool_use";
  if (!matched_stop_.empty()) return "stop_sequence";
  return "end_turn";
}

namespace {

std::string Event(const char* name, const json& data) {
  return absl::StrCat("event: ", name, "\ndata: ", DumpJson(data), "\n\n");
}

// A tool call's arguments (a serialized JSON object from the parser) as tool_use input.
json ToolInput(const std::string& arguments) {
  json input = json::parse(arguments, nullptr, /*allow_exceptions=*/false);
  return input.is_object() ? input : json::object();
}

}  // namespace

void AnthropicResponseBuilder::CloseBlock(std::string* out) {
  if (open_ == Block::kNone) return;
  *out += Event("content_block_stop", {{"type", "content_block_stop"}, {"index", block_index_}});
  open_ = Block::kNone;
}

void AnthropicResponseBuilder::OpenBlock(Block kind, std::string* out) {
  if (open_ == kind) return;
  CloseBlock(out);
  ++block_index_;
  open_ = kind;
  const json block = kind == Block::kThinking ? json{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}
                                              : json{{"type", "text"}, {"text", ""}};
  *out += Event("content_block_start",
                {{"type", "content_block_start"}, {"index", block_index_}, {"content_block", block}});
}

std::string AnthropicResponseBuilder::StreamEvents(const OutputDelta& d) {
  Count(d);
  std::string out;
  if (!started_) {
    started_ = true;
    json message = {{"id", id_},         {"type", "message"},      {"role", "assistant"},
                    {"model", model_},   {"content", json::array()}, {"stop_reason", nullptr},
                    {"stop_sequence", nullptr}, {"usage", Usage()}};
    out += Event("message_start", {{"type", "message_start"}, {"message", std::move(message)}});
    out += Event("ping", {{"type", "ping"}});
  }
  if (!d.reasoning.empty()) {
    OpenBlock(Block::kThinking, &out);
    out += Event("content_block_delta", {{"type", "content_block_delta"},
                                         {"index", block_index_},
                                         {"delta", {{"type", "thinking_delta"}, {"thinking", d.reasoning}}}});
  }
  if (!d.text.empty()) {
    OpenBlock(Block::kText, &out);
    out += Event("content_block_delta", {{"type", "content_block_delta"},
                                         {"index", block_index_},
                                         {"delta", {{"type", "text_delta"}, {"text", d.text}}}});
  }
  for (const tokenizer::ToolCall& call : d.tool_calls) {
    // A call arrives whole (the parser emits completed calls): one block of one delta.
    CloseBlock(&out);
    ++block_index_;
    out += Event("content_block_start",
                 {{"type", "content_block_start"},
                  {"index", block_index_},
                  {"content_block", {{"type", "tool_use"}, {"id", call.id}, {"name", call.name}, {"input", json::object()}}}});
    out += Event("content_block_delta",
                 {{"type", "content_block_delta"},
                  {"index", block_index_},
                  {"delta", {{"type", "input_json_delta"}, {"partial_json", ToolInput(call.arguments).dump()}}}});
    out += Event("content_block_stop", {{"type", "content_block_stop"}, {"index", block_index_}});
  }
  if (d.finished) {
    CloseBlock(&out);
    out += Event("message_delta",
                 {{"type", "message_delta"},
                  {"delta", {{"stop_reason", StopReason()},
                             {"stop_sequence", matched_stop_.empty() ? json(nullptr) : json(matched_stop_)}}},
                  {"usage", Usage()}});
    out += Event("message_stop", {{"type", "message_stop"}});
  }
  return out;
}

std::string AnthropicResponseBuilder::StreamError(const absl::Status& status) {
  return Event("error", AnthropicErrorJson(status, nullptr));
}

void AnthropicResponseBuilder::Accumulate(const OutputDelta& d) {
  Count(d);
  text_ += d.text;
  reasoning_ += d.reasoning;
  tool_calls_.insert(tool_calls_.end(), d.tool_calls.begin(), d.tool_calls.end());
}

json AnthropicResponseBuilder::Final() const {
  json content = json::array();
  if (!reasoning_.empty()) content.push_back({{"type", "thinking"}, {"thinking", reasoning_}, {"signature", ""}});
  if (!text_.empty()) content.push_back({{"type", "text"}, {"text", text_}});
  for (const tokenizer::ToolCall& call : tool_calls_)
    content.push_back({{"type", "tool_use"}, {"id", call.id}, {"name", call.name}, {"input", ToolInput(call.arguments)}});
  return {{"id", id_},
          {"type", "message"},
          {"role", "assistant"},
          {"model", model_},
          {"content", std::move(content)},
          {"stop_reason", StopReason()},
          {"stop_sequence", matched_stop_.empty() ? json(nullptr) : json(matched_stop_)},
          {"usage", Usage()}};
}

}  // namespace glm::api
