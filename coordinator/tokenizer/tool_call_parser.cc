#include "coordinator/tokenizer/tool_call_parser.h"

#include "absl/strings/str_cat.h"
#include "coordinator/tokenizer/status_macros.h"

namespace glm::tokenizer {
namespace {

using OJson = nlohmann::ordered_json;

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kToolOpen = "<tool_call>";
constexpr std::string_view kToolClose = "</tool_call>";
constexpr std::string_view kKeyOpen = "<arg_key>";
constexpr std::string_view kKeyClose = "</arg_key>";
constexpr std::string_view kValueOpen = "<arg_value>";
constexpr std::string_view kValueClose = "</arg_value>";

bool IsWs(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsWs(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWs(s.back())) s.remove_suffix(1);
  return s;
}

// Length of the longest suffix of `text` that is a proper prefix of one of `tags`: that much
// must wait for more input before it can be emitted.
size_t HeldBackLength(std::string_view text, std::initializer_list<std::string_view> tags) {
  size_t best = 0;
  for (std::string_view tag : tags) {
    for (size_t n = std::min(text.size(), tag.size() - 1); n > best; --n) {
      if (text.substr(text.size() - n) == tag.substr(0, n)) {
        best = n;
        break;
      }
    }
  }
  return best;
}

}  // namespace

ToolCallParser::ToolCallParser(Options options)
    : options_(std::move(options)),
      state_(options_.starts_in_reasoning ? State::kReasoning : State::kContent),
      trim_leading_ws_(options_.trim_reply_start) {}

bool ToolCallParser::IsStringParameter(const std::string& function, const std::string& key) const {
  if (!options_.tools.is_array()) return false;
  // Every access is type-checked: `tools` is the client's JSON (json::value() throws when a key
  // holds another type, e.g. "name": null), and this runs while a reply is being generated.
  auto member = [](const nlohmann::json& obj, const std::string& name) -> const nlohmann::json* {
    if (!obj.is_object()) return nullptr;
    const auto it = obj.find(name);
    return it == obj.end() ? nullptr : &*it;
  };
  for (const auto& tool : options_.tools) {
    const nlohmann::json* fn = member(tool, "function");
    if (fn == nullptr) fn = &tool;
    const nlohmann::json* name = member(*fn, "name");
    if (name == nullptr || !name->is_string() || name->get_ref<const std::string&>() != function) continue;
    const nlohmann::json* params = member(*fn, "parameters");
    const nlohmann::json* props = params == nullptr ? nullptr : member(*params, "properties");
    const nlohmann::json* prop = props == nullptr ? nullptr : member(*props, key);
    const nlohmann::json* type = prop == nullptr ? nullptr : member(*prop, "type");
    return type != nullptr && type->is_string() && type->get_ref<const std::string&>() == "string";
  }
  return false;
}

absl::StatusOr<ToolCall> ToolCallParser::ParseToolCallBody(std::string_view body) const {
  ToolCall call;
  const size_t first_key = body.find(kKeyOpen);
  call.name = std::string(Trim(body.substr(0, first_key)));
  if (call.name.empty()) return absl::InvalidArgumentError("tool call without a function name");
  if (call.name.find('<') != std::string::npos || call.name.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("malformed tool call name '", call.name, "'"));
  }
  OJson args = OJson::object();
  size_t pos = first_key;
  while (pos != std::string_view::npos && pos < body.size()) {
    const size_t key_start = pos + kKeyOpen.size();
    const size_t key_end = body.find(kKeyClose, key_start);
    if (key_end == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("tool call '", call.name, "': unterminated <arg_key>"));
    }
    const std::string key(Trim(body.substr(key_start, key_end - key_start)));
    const size_t value_open = body.find(kValueOpen, key_end);
    if (value_open == std::string_view::npos ||
        !Trim(body.substr(key_end + kKeyClose.size(), value_open - key_end - kKeyClose.size())).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("tool call '", call.name, "': <arg_key>", key,
                                                     " has no <arg_value>"));
    }
    const size_t value_start = value_open + kValueOpen.size();
    size_t value_end = body.find(kValueClose, value_start);
    // A value the model did not close (</tool_call> came first) runs to the end of the body.
    const std::string_view raw = body.substr(
        value_start, value_end == std::string_view::npos ? std::string_view::npos : value_end - value_start);
    OJson value;
    bool is_json = false;
    if (!IsStringParameter(call.name, key)) {
      value = OJson::parse(Trim(raw), nullptr, /*allow_exceptions=*/false);
      is_json = !value.is_discarded() && !Trim(raw).empty();
    }
    if (!is_json) value = std::string(raw);
    args[key] = std::move(value);
    if (value_end == std::string_view::npos) break;
    pos = body.find(kKeyOpen, value_end + kValueClose.size());
  }
  call.arguments = args.dump(-1, ' ', false, OJson::error_handler_t::replace);
  return call;
}

absl::Status ToolCallParser::Drain(bool final, ParsedDelta* delta) {
  while (!buffer_.empty()) {
    if (state_ == State::kToolCall) {
      const size_t close = buffer_.find(kToolClose);
      if (close == std::string::npos && !final) return absl::OkStatus();
      const std::string body = buffer_.substr(0, close);
      // A call without its </tool_call> (cut by max_tokens or a stop string, possibly inside a
      // name or value) is never a call: clients execute whatever is in tool_calls, and a
      // truncated name or argument would run the wrong thing. It goes out as content.
      absl::StatusOr<ToolCall> call = absl::InvalidArgumentError("tool call without </tool_call>");
      if (close != std::string::npos) call = ParseToolCallBody(body);
      if (call.ok()) {
        call->id = absl::StrCat(options_.id_prefix, next_id_++);
        delta->tool_calls.push_back(*std::move(call));
      } else {
        // Markup the model got wrong, or a call cut off by max_tokens: not the client's error.
        // Its text goes out as content (what vLLM's parsers do), and the request finishes as
        // the engine says (stop / length) instead of failing.
        delta->content.append(kToolOpen).append(body).append(close == std::string::npos ? std::string_view() : kToolClose);
      }
      buffer_.erase(0, close == std::string::npos ? buffer_.size() : close + kToolClose.size());
      state_ = State::kContent;
      trim_leading_ws_ = true;
      continue;
    }
    if (trim_leading_ws_) {
      // Drop the leading blank lines, not the first line's indentation: a code reply that starts
      // with "\n    return x" keeps its four spaces. Until something other than whitespace (or
      // the end) arrives, a newline may still follow: hold the whitespace back.
      size_t n = 0;
      while (n < buffer_.size() && IsWs(buffer_[n])) ++n;
      if (n == buffer_.size() && !final) return absl::OkStatus();
      const size_t last_newline = buffer_.find_last_of('\n', n == 0 ? 0 : n - 1);
      if (n > 0 && last_newline != std::string::npos) buffer_.erase(0, last_newline + 1);
      trim_leading_ws_ = false;
      if (buffer_.empty()) return absl::OkStatus();
    }
    const bool reasoning = state_ == State::kReasoning;
    std::string& sink = reasoning ? delta->reasoning : delta->content;
    // The earliest tag that changes state.
    size_t at = std::string::npos;
    std::string_view tag;
    static constexpr std::string_view kContentTags[] = {kThinkOpen, kThinkClose, kToolOpen};
    const size_t num_tags = reasoning ? 1 : options_.parse_tool_calls ? 3 : 2;
    for (size_t i = 0; i < num_tags; ++i) {
      const std::string_view t = reasoning ? kThinkClose : kContentTags[i];
      const size_t p = buffer_.find(t);
      if (p < at) {
        at = p;
        tag = t;
      }
    }
    if (at == std::string::npos) {
      const size_t hold = final       ? 0
                          : reasoning ? HeldBackLength(buffer_, {kThinkClose})
                          : options_.parse_tool_calls
                              ? HeldBackLength(buffer_, {kThinkOpen, kThinkClose, kToolOpen})
                              : HeldBackLength(buffer_, {kThinkOpen, kThinkClose});
      const size_t n = buffer_.size() - hold;
      if (!reasoning && buffer_.find_first_not_of(" \t\r\n", 0) < n) content_emitted_ = true;
      sink.append(buffer_, 0, n);
      buffer_.erase(0, n);
      return absl::OkStatus();
    }
    if (!reasoning && buffer_.find_first_not_of(" \t\r\n", 0) < at) content_emitted_ = true;
    sink.append(buffer_, 0, at);
    buffer_.erase(0, at + tag.size());
    if (tag == kThinkOpen) {
      state_ = State::kReasoning;
      trim_leading_ws_ = true;
    } else if (tag == kThinkClose) {
      // In content a stray </think> is dropped: content already streamed cannot be recalled
      // (set starts_in_reasoning when the prompt itself opens <think>). The blank lines after it
      // stay, as do those after a reasoning block in mid-reply; only the reply's start (before
      // any content) is trimmed, where the template's "</think>\n" belongs to the markup.
      trim_leading_ws_ = !content_emitted_;
      state_ = State::kContent;
    } else {
      state_ = State::kToolCall;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ParsedDelta> ToolCallParser::Push(std::string_view text) {
  buffer_.append(text);
  ParsedDelta delta;
  GLM_RETURN_IF_ERROR(Drain(false, &delta));
  return delta;
}

absl::StatusOr<ParsedDelta> ToolCallParser::Finish() {
  ParsedDelta delta;
  GLM_RETURN_IF_ERROR(Drain(true, &delta));
  return delta;
}

OJson ToolCallParser::ToOpenAi(const std::vector<ToolCall>& calls) {
  OJson out = OJson::array();
  for (const ToolCall& c : calls) {
    out.push_back({{"id", c.id},
                   {"type", "function"},
                   {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  }
  return out;
}

}  // namespace glm::tokenizer
