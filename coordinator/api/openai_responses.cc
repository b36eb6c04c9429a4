#include "coordinator/api/openai_responses.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"
#include "coordinator/api/json_fields.h"
#include "coordinator/api/response_format.h"
#include "coordinator/api/openai_protocol.h"

namespace glm::api {
namespace {

using json = nlohmann::json;

// A message's content: a string, or text parts (input_text / output_text / text; refusal text
// counts as text).
absl::StatusOr<std::string> ContentText(const json& content, const std::string& at) {
  return JoinTextParts(content, at, {{"input_text", "text"}, {"output_text", "text"}, {"text", "text"}, {"refusal", "refusal"}});
}

// Input items → chat messages. An assistant turn arrives as several items (reasoning, message,
// function calls); they fill one assistant message until a user, system or tool item follows.
class InputTranslator {
 public:
  // `store` (may be null) resolves item references to the stored replies of `holder`.
  InputTranslator(ResponseStore* store, std::string holder) : store_(store), holder_(std::move(holder)) {}

  absl::Status Add(const json& item, const std::string& at) {
    if (!item.is_object()) return InvalidField(at, "must be an object (an input item)");
    std::string type = "message";
    if (Present(item, "type")) {
      if (!item["type"].is_string()) return InvalidField(at + ".type", "must be a string");
      type = item["type"].get<std::string>();
    }
    if (type == "message") return AddMessage(item, at);
    if (type == "function_call") {
      auto call_id = RequiredString(item, "call_id", at);
      if (!call_id.ok()) return call_id.status();
      auto name = RequiredString(item, "name", at);
      if (!name.ok()) return name.status();
      auto arguments = RequiredString(item, "arguments", at);
      if (!arguments.ok()) return arguments.status();
      json& turn = Assistant();
      if (!turn.contains("tool_calls")) turn["tool_calls"] = json::array();
      turn["tool_calls"].push_back(
          {{"id", *call_id}, {"type", "function"}, {"function", {{"name", *name}, {"arguments", *arguments}}}});
      return absl::OkStatus();
    }
    if (type == "function_call_output") {
      auto call_id = RequiredString(item, "call_id", at);
      if (!call_id.ok()) return call_id.status();
      if (!Present(item, "output")) return InvalidField(at + ".output", "is required");
      auto output = ContentText(item["output"], at + ".output");
      if (!output.ok()) return output.status();
      EndTurn();
      messages_.push_back({{"role", "tool"}, {"tool_call_id", *call_id}, {"content", *output}});
      return absl::OkStatus();
    }
    if (type == "reasoning") {
      // The model's own reasoning from an earlier reply (reasoning_text content, else summaries).
      std::string text;
      for (const char* key : {"content", "summary"}) {
        if (!text.empty() || !Present(item, key) || !item[key].is_array()) continue;
        for (const json& part : item[key])
          if (part.is_object() && part.contains("text") && part["text"].is_string()) text += part["text"].get<std::string>();
      }
      json& turn = Assistant();
      turn["reasoning_content"] = turn.value("reasoning_content", "") + text;
      return absl::OkStatus();
    }
    if (type == "item_reference") {
      // An output item of a stored reply: its id is "<kind>_<response id>_<index>".
      auto id = RequiredString(item, "id", at);
      if (!id.ok()) return id.status();
      const size_t first = id->find('_'), last = id->rfind('_');
      std::optional<ResponseStore::Entry> entry;
      if (store_ != nullptr && first != std::string::npos && last > first)
        entry = store_->Get(id->substr(first + 1, last - first - 1), holder_);
      if (entry.has_value())
        for (const json& output : entry->response.value("output", json::array()))
          if (output.is_object() && output.value("id", "") == *id) return Add(output, at);
      return InvalidField(at + ".id", absl::StrCat("no stored output item '", *id, "'; send the item itself"));
    }
    return InvalidField(at + ".type", absl::StrCat("'", type, "' is not an input item this server supports"));
  }

  json TakeMessages() { return std::move(messages_); }

 private:
  absl::Status AddMessage(const json& item, const std::string& at) {
    auto role = RequiredString(item, "role", at);
    if (!role.ok()) return role.status();
    if (*role != "user" && *role != "assistant" && *role != "system" && *role != "developer")
      return InvalidField(at + ".role", absl::StrCat("'", *role, "' is not one of user, assistant, system, developer"));
    if (!item.contains("content")) return InvalidField(at + ".content", "is required");
    auto text = ContentText(item["content"], at + ".content");
    if (!text.ok()) return text.status();
    if (*role == "assistant") {
      json* turn = open_assistant_ ? &messages_.back() : nullptr;
      // Text after this turn's calls, or a second message: a turn of its own.
      if (turn == nullptr || turn->contains("tool_calls") || !(*turn)["content"].get_ref<const std::string&>().empty()) {
        EndTurn();
        turn = &Assistant();
      }
      (*turn)["content"] = *text;
      return absl::OkStatus();
    }
    EndTurn();
    messages_.push_back({{"role", *role == "developer" ? "system" : *role}, {"content", *text}});
    return absl::OkStatus();
  }
  json& Assistant() {
    if (!open_assistant_) {
      messages_.push_back({{"role", "assistant"}, {"content", ""}});
      open_assistant_ = true;
    }
    return messages_.back();
  }
  void EndTurn() { open_assistant_ = false; }

  ResponseStore* store_;
  std::string holder_;
  json messages_ = json::array();
  bool open_assistant_ = false;
};

}  // namespace

absl::StatusOr<ResponsesRequest> ParseResponsesRequest(const json& body, const std::string& served_name,
                                                       const std::string* raw_body, ResponseStore* store,
                                                       const std::string& holder) {
  if (!body.is_object()) return InvalidField("body", "must be a JSON object");
  ResponsesRequest r;
  ApiRequest& a = r.api;
  a.input = ApiRequest::Input::kChat;
  a.input_field = "input";
  a.max_tokens_field = "max_output_tokens";
  r.model = served_name;
  r.holder = holder;
  if (Present(body, "model")) {
    if (!body["model"].is_string()) return InvalidField("model", "must be a string");
    r.model = body["model"].get<std::string>();
  }
  if (Present(body, "conversation"))
    return InvalidField("conversation", "conversation objects are not kept here; send the whole conversation in "
                                        "input, or continue a stored reply with previous_response_id");
  // Options that would change the reply if honoured: refused, not ignored (as on chat).
  bool background = false;
  if (auto s = GetOptionalBool(body, "background", &background); !s.ok()) return s;
  if (background)
    return InvalidField("background", "background responses are not run here: leave background out (or false) "
                                      "and wait for the reply, or stream it");
  if (Present(body, "include")) {
    if (!body["include"].is_array()) return InvalidField("include", "must be an array of strings");
    for (const json& item : body["include"])
      if (item == "message.output_text.logprobs")
        return InvalidField("include", "message.output_text.logprobs is not produced here; /v1/chat/completions "
                                       "with logprobs gives them");
  }
  if (Present(body, "top_logprobs") && !(body["top_logprobs"].is_number_integer() && body["top_logprobs"] == 0))
    return InvalidField("top_logprobs", "logprobs are not produced on /v1/responses; /v1/chat/completions with "
                                        "logprobs gives them");
  if (Present(body, "truncation")) {
    if (body["truncation"] != "disabled" && body["truncation"] != "auto")
      return InvalidField("truncation", "must be \"disabled\" or \"auto\"");
    r.truncation = body["truncation"].get<std::string>();
  }
  if (auto s = GetOptionalBool(body, "store", &r.store); !s.ok()) return s;
  if (auto s = GetOptionalBool(body, "parallel_tool_calls", &r.parallel_tool_calls); !s.ok()) return s;
  if (Present(body, "previous_response_id")) {
    const json& prev = body["previous_response_id"];
    if (!prev.is_string()) return InvalidField("previous_response_id", "must be a string");
    std::optional<ResponseStore::Entry> entry;
    if (store != nullptr) entry = store->Get(prev.get<std::string>(), holder);
    if (!entry.has_value())
      return InvalidField("previous_response_id",
                          absl::StrCat("no stored response '", prev.get<std::string>(),
                                       "' (never stored, deleted, evicted or from before a restart); send the "
                                       "whole conversation in input"));
    r.previous_response_id = prev;
    r.conversation = std::move(entry->conversation);
  }
  InputTranslator translator(store, holder);
  json system = json::array();
  if (Present(body, "instructions")) {
    if (!body["instructions"].is_string()) return InvalidField("instructions", "must be a string");
    r.instructions = body["instructions"];
    system.push_back({{"role", "system"}, {"content", r.instructions}});
  }
  if (!Present(body, "input")) return InvalidField("input", "is required");
  const json& input = body["input"];
  if (input.is_string()) {
    if (auto s = translator.Add({{"role", "user"}, {"content", input}}, "input"); !s.ok()) return s;
  } else if (input.is_array() && !input.empty()) {
    for (size_t i = 0; i < input.size(); ++i)
      if (auto s = translator.Add(input[i], absl::StrCat("input[", i, "]")); !s.ok()) return s;
  } else {
    return InvalidField("input", "must be a string or a non-empty array of input items");
  }
  for (json& m : translator.TakeMessages()) r.conversation.push_back(std::move(m));
  // (Built here from input items: the only client JSON in them, tool arguments, is text the
  // template parses in its own key order.)
  a.messages = nlohmann::ordered_json(system);
  for (const json& m : r.conversation) a.messages.push_back(nlohmann::ordered_json(m));

  if (Present(body, "reasoning")) {
    const json& reasoning = body["reasoning"];
    if (!reasoning.is_object()) return InvalidField("reasoning", "must be an object");
    if (Present(reasoning, "effort")) {
      if (auto s = ApplyReasoningEffort(reasoning["effort"], "reasoning.effort", &a.template_kwargs); !s.ok()) return s;
      r.reasoning["effort"] = reasoning["effort"];
    }
  }
  if (Present(body, "tools")) {
    if (!body["tools"].is_array()) return InvalidField("tools", "must be an array");
    r.tools = body["tools"];
    const nlohmann::ordered_json ordered = OrderedBody(body, raw_body)["tools"];  // schemas as the client wrote them
    nlohmann::ordered_json tools = nlohmann::ordered_json::array();
    for (size_t i = 0; i < r.tools.size(); ++i) {
      const std::string at = absl::StrCat("tools[", i, "]");
      const json& t = r.tools[i];
      if (!t.is_object()) return InvalidField(at, "must be an object");
      auto type = RequiredString(t, "type", at);
      if (!type.ok()) return type.status();
      if (*type != "function")
        return InvalidField(at + ".type", absl::StrCat("'", *type, "' is a built-in tool this server does not run; ",
                                                       "declare a function tool"));
      auto name = RequiredString(t, "name", at);
      if (!name.ok()) return name.status();
      nlohmann::ordered_json fn = {{"name", *name}};
      if (Present(t, "description")) fn["description"] = ordered[i]["description"];
      if (Present(t, "parameters")) fn["parameters"] = ordered[i]["parameters"];
      tools.push_back({{"type", "function"}, {"function", std::move(fn)}});
    }
    if (!tools.empty()) a.tools = std::move(tools);
  }
  std::string forced;  // tool_choice "required" ("*") or {"type": "function", "name"}
  if (Present(body, "tool_choice")) {
    r.tool_choice = body["tool_choice"];
    if (auto s = ParseToolChoice(r.tool_choice, "tool_choice", /*flat=*/true, &a.tools, &forced); !s.ok()) return s;
  }
  if (Present(body, "metadata")) {
    // OpenAI's limits: up to 16 pairs, keys of up to 64 characters, string values of up to 512.
    const json& metadata = body["metadata"];
    if (!metadata.is_object()) return InvalidField("metadata", "must be an object of string values");
    if (metadata.size() > 16) return InvalidField("metadata", "may hold at most 16 pairs");
    for (const auto& [key, value] : metadata.items()) {
      if (key.size() > 64) return InvalidField("metadata", "keys must be at most 64 characters");
      if (!value.is_string()) return InvalidField(absl::StrCat("metadata.", key), "must be a string");
      if (value.get_ref<const std::string&>().size() > 512)
        return InvalidField(absl::StrCat("metadata.", key), "must be at most 512 characters");
    }
    r.metadata = metadata;
  }
  if (Present(body, "text")) {
    const json& text = body["text"];
    if (!text.is_object()) return InvalidField("text", "must be an object");
    for (const auto& [key, value] : text.items())
      if (!value.is_null()) r.text[key] = value;
    if (Present(text, "format")) {
      auto grammar = ParseResponseFormat(text["format"], {"text.format", true, raw_body, {"text", "format"}});
      if (!grammar.ok()) return grammar.status();
      a.output_grammar = *std::move(grammar);
      a.output_format_field = "text.format";
    }
  }
  if (!forced.empty()) {
    if (a.output_grammar != nullptr)
      return InvalidField("tool_choice", "a forced tool call cannot be combined with text.format");
    auto grammar = ForcedToolCall(a.tools, forced == "*" ? "" : forced, "tool_choice", r.parallel_tool_calls);
    if (!grammar.ok()) return grammar.status();
    a.output_grammar = *std::move(grammar);
    a.output_format_field = "tool_choice";
  }
  if (Present(body, "max_output_tokens")) {
    const json& mt = body["max_output_tokens"];
    if (!mt.is_number_integer() || mt.get<int64_t>() < 1) return InvalidField("max_output_tokens", "must be an integer >= 1");
    a.max_tokens = mt.get<int64_t>();
    r.max_output_tokens = mt;
  }
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
  if (Present(body, "priority")) {  // vLLM's, as on chat completions
    const json& p = body["priority"];
    if (!p.is_number_integer() || p.get<int64_t>() < INT32_MIN || p.get<int64_t>() > INT32_MAX)
      return InvalidField("priority", "must be a 32-bit integer");
    a.priority = static_cast<int32_t>(p.get<int64_t>());
  }
  return r;
}

ResponsesBuilder::ResponsesBuilder(const ResponsesRequest* request, std::string id, int64_t created_at)
    : request_(request), id_(std::move(id)), created_at_(created_at) {}

void ResponsesBuilder::Fold(const OutputDelta& d) {
  text_ += d.text;
  reasoning_ += d.reasoning;
  tool_calls_.insert(tool_calls_.end(), d.tool_calls.begin(), d.tool_calls.end());
  prompt_tokens_ = d.prompt_tokens;
  completion_tokens_ = d.completion_tokens;
  cached_tokens_ = d.cached_tokens;
  reasoning_tokens_ = d.reasoning_tokens;
  if (d.finished) finish_reason_ = d.finish_reason;
}

json ResponsesBuilder::Usage() const {
  return {{"input_tokens", prompt_tokens_},
          {"input_tokens_details", {{"cached_tokens", cached_tokens_}}},
          {"output_tokens", completion_tokens_},
          {"output_tokens_details", {{"reasoning_tokens", reasoning_tokens_}}},
          {"total_tokens", prompt_tokens_ + completion_tokens_}};
}

json ResponsesBuilder::ResponseObject(const std::string& status, json output) const {
  const bool ended = status == "completed" || status == "incomplete";
  return {{"id", id_},
          {"object", "response"},
          {"created_at", created_at_},
          {"status", status},
          {"model", request_->model},
          {"output", std::move(output)},
          {"error", nullptr},
          {"incomplete_details", status == "incomplete" ? json{{"reason", "max_output_tokens"}} : json(nullptr)},
          {"instructions", request_->instructions},
          {"max_output_tokens", request_->max_output_tokens},
          {"temperature", request_->api.temperature},
          {"top_p", request_->api.top_p},
          {"tools", request_->tools},
          {"tool_choice", request_->tool_choice},
          {"parallel_tool_calls", request_->parallel_tool_calls},
          {"previous_response_id", request_->previous_response_id},
          {"store", request_->store},
          {"reasoning", request_->reasoning},
          {"text", request_->text},
          {"truncation", request_->truncation},
          {"metadata", request_->metadata},
          {"usage", ended ? Usage() : json(nullptr)}};
}

json ResponsesBuilder::ReasoningItem(const std::string& id, const std::string& text, const char* status) const {
  json content = json::array();
  if (!text.empty() || std::string(status) != "in_progress") content.push_back({{"type", "reasoning_text"}, {"text", text}});
  return {{"type", "reasoning"}, {"id", id}, {"summary", json::array()}, {"content", std::move(content)}, {"status", status}};
}

json ResponsesBuilder::MessageItem(const std::string& id, const std::string& text, const char* status) const {
  json content = json::array();
  if (std::string(status) != "in_progress")
    content.push_back({{"type", "output_text"}, {"text", text}, {"annotations", json::array()}});
  return {{"type", "message"}, {"id", id}, {"status", status}, {"role", "assistant"}, {"content", std::move(content)}};
}

json ResponsesBuilder::CallItem(const std::string& id, const tokenizer::ToolCall& call, const std::string& arguments,
                                const char* status) const {
  return {{"type", "function_call"}, {"id", id},          {"call_id", call.id},
          {"name", call.name},       {"arguments", arguments}, {"status", status}};
}

std::string ResponsesBuilder::Event(const std::string& type, json data) {
  data["type"] = type;
  data["sequence_number"] = sequence_++;
  return absl::StrCat("event: ", type, "\ndata: ", DumpJson(data), "\n\n");
}

void ResponsesBuilder::CloseItem(std::string* out, const char* status) {
  if (open_ == Item::kNone) return;
  const int64_t index = static_cast<int64_t>(done_items_.size());
  if (open_ == Item::kReasoning) {
    *out += Event("response.reasoning_text.done",
                  {{"item_id", open_id_}, {"output_index", index}, {"content_index", 0}, {"text", open_text_}});
    done_items_.push_back(ReasoningItem(open_id_, open_text_, status));
  } else {
    const json part = {{"type", "output_text"}, {"text", open_text_}, {"annotations", json::array()}};
    *out += Event("response.output_text.done",
                  {{"item_id", open_id_}, {"output_index", index}, {"content_index", 0}, {"text", open_text_}});
    *out += Event("response.content_part.done",
                  {{"item_id", open_id_}, {"output_index", index}, {"content_index", 0}, {"part", part}});
    done_items_.push_back(MessageItem(open_id_, open_text_, status));
  }
  *out += Event("response.output_item.done", {{"output_index", index}, {"item", done_items_.back()}});
  open_ = Item::kNone;
  open_text_.clear();
}

void ResponsesBuilder::OpenItem(Item kind, std::string* out) {
  if (open_ == kind) return;
  CloseItem(out);
  const int64_t index = static_cast<int64_t>(done_items_.size());
  open_ = kind;
  if (kind == Item::kReasoning) {
    open_id_ = absl::StrCat("rs_", id_, "_", index);
    *out += Event("response.output_item.added",
                  {{"output_index", index}, {"item", ReasoningItem(open_id_, "", "in_progress")}});
  } else {
    open_id_ = absl::StrCat("msg_", id_, "_", index);
    *out += Event("response.output_item.added",
                  {{"output_index", index}, {"item", MessageItem(open_id_, "", "in_progress")}});
    *out += Event("response.content_part.added",
                  {{"item_id", open_id_},
                   {"output_index", index},
                   {"content_index", 0},
                   {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}});
  }
}

std::string ResponsesBuilder::StreamEvents(const OutputDelta& d) {
  Fold(d);
  std::string out;
  if (!started_) {
    started_ = true;
    out += Event("response.created", {{"response", ResponseObject("in_progress", json::array())}});
    out += Event("response.in_progress", {{"response", ResponseObject("in_progress", json::array())}});
  }
  if (!d.reasoning.empty()) {
    OpenItem(Item::kReasoning, &out);
    open_text_ += d.reasoning;
    out += Event("response.reasoning_text.delta", {{"item_id", open_id_},
                                                   {"output_index", static_cast<int64_t>(done_items_.size())},
                                                   {"content_index", 0},
                                                   {"delta", d.reasoning}});
  }
  if (!d.text.empty()) {
    OpenItem(Item::kMessage, &out);
    open_text_ += d.text;
    out += Event("response.output_text.delta", {{"item_id", open_id_},
                                                {"output_index", static_cast<int64_t>(done_items_.size())},
                                                {"content_index", 0},
                                                {"delta", d.text},
                                                {"logprobs", json::array()}});
  }
  for (const tokenizer::ToolCall& call : d.tool_calls) {
    // A call arrives whole (the parser emits completed calls): added, its arguments, done.
    CloseItem(&out);
    const int64_t at = static_cast<int64_t>(done_items_.size());
    const std::string item_id = absl::StrCat("fc_", id_, "_", at);
    out += Event("response.output_item.added", {{"output_index", at}, {"item", CallItem(item_id, call, "", "in_progress")}});
    out += Event("response.function_call_arguments.delta",
                 {{"item_id", item_id}, {"output_index", at}, {"delta", call.arguments}});
    out += Event("response.function_call_arguments.done",
                 {{"item_id", item_id}, {"output_index", at}, {"arguments", call.arguments}});
    done_items_.push_back(CallItem(item_id, call, call.arguments, "completed"));
    out += Event("response.output_item.done", {{"output_index", at}, {"item", done_items_.back()}});
  }
  if (d.finished) {
    CloseItem(&out, EndStatus());  // the item being written when max_output_tokens cut it: incomplete
    const std::string status = EndStatus();
    out += Event(absl::StrCat("response.", status), {{"response", ResponseObject(status, done_items_)}});
  }
  return out;
}

std::string ResponsesBuilder::StreamError(const json& error) {
  // error: OpenAI's {"error": {"message", "type", "param", "code"}}.
  const json& e = error.contains("error") ? error["error"] : error;
  return Event("error", {{"code", e.value("code", json(nullptr))},
                         {"message", e.value("message", "")},
                         {"param", e.value("param", json(nullptr))}});
}

void ResponsesBuilder::Accumulate(const OutputDelta& d) {
  Fold(d);
}

json ResponsesBuilder::Final() const {
  json output = json::array();
  // The item being written when max_output_tokens cut the reply is incomplete (tool calls arrive
  // whole): the message, else the reasoning.
  const bool cut = std::string(EndStatus()) == "incomplete";
  if (!reasoning_.empty())
    output.push_back(ReasoningItem(absl::StrCat("rs_", id_, "_0"), reasoning_,
                                   cut && text_.empty() && tool_calls_.empty() ? "incomplete" : "completed"));
  if (!text_.empty())
    output.push_back(MessageItem(absl::StrCat("msg_", id_, "_", output.size()), text_,
                                 cut && tool_calls_.empty() ? "incomplete" : "completed"));
  for (const tokenizer::ToolCall& call : tool_calls_)
    output.push_back(CallItem(absl::StrCat("fc_", id_, "_", output.size()), call, call.arguments, "completed"));
  return ResponseObject(EndStatus(), std::move(output));
}

json ResponsesBuilder::Completed() const {
  if (!started_) return Final();
  return ResponseObject(EndStatus(), done_items_);
}

json ResponsesBuilder::AssistantTurn() const {
  // A reply with no output item (nothing but an end token) adds no turn, as resending its output
  // items would not.
  if (text_.empty() && reasoning_.empty() && tool_calls_.empty()) return nullptr;
  json turn = {{"role", "assistant"}, {"content", text_}};
  if (!reasoning_.empty()) turn["reasoning_content"] = reasoning_;
  if (!tool_calls_.empty()) {
    json calls = json::array();
    for (const tokenizer::ToolCall& call : tool_calls_)
      calls.push_back({{"id", call.id}, {"type", "function"}, {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
    turn["tool_calls"] = std::move(calls);
  }
  return turn;
}

}  // namespace glm::api
