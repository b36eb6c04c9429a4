// Incremental parser for what a GLM model emits: `<think>reasoning</think>`, plain content, and
// tool calls in GLM's XML-ish format
//
//   <tool_call>NAME
//   <arg_key>K</arg_key>
//   <arg_value>V</arg_value>
//   ...
//   </tool_call>
//
// turned into OpenAI-style tool calls (arguments as a JSON string; a value that parses as JSON
// stays JSON, anything else becomes a JSON string; no arguments gives "{}"). Text arrives in
// arbitrary pieces (token boundaries can split a tag anywhere), so a possible tag prefix at the
// end of the input is held back until the next piece decides it.
#ifndef GLM_COORDINATOR_TOKENIZER_TOOL_CALL_PARSER_H_
#define GLM_COORDINATOR_TOKENIZER_TOOL_CALL_PARSER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace glm::tokenizer {

struct ToolCall {
  std::string id;         // Options::id_prefix + 0, 1, ... in order of appearance.
  std::string name;
  std::string arguments;  // A JSON object, serialized.
};

// What one Push (or Finish) adds.
struct ParsedDelta {
  std::string content;
  std::string reasoning;
  std::vector<ToolCall> tool_calls;  // Completed calls.
};

class ToolCallParser {
 public:
  struct Options {
    // The prompt already opened <think> (thinking-mode generation prompts): text is reasoning
    // until </think>.
    bool starts_in_reasoning = false;
    // OpenAI `tools`: when a parameter's schema type is "string", its value is kept as a string
    // even if it looks like JSON (e.g. a zip code "01234").
    nlohmann::json tools = nullptr;
    // False: <tool_call> markup is plain content (a request without tools, or tool_choice
    // "none", as vLLM does); reasoning is still split off.
    bool parse_tool_calls = true;
    std::string id_prefix = "call_";
    // False when the prompt ends inside the assistant's own message (a prefill the reply
    // continues): then the reply's first characters, newlines included, are that message's
    // continuation, not the blank lines GLM writes at the start of a turn.
    bool trim_reply_start = true;
  };

  ToolCallParser() : ToolCallParser(Options{}) {}
  explicit ToolCallParser(Options options);

  // Feeds generated text. A tool call without a function name is InvalidArgument.
  absl::StatusOr<ParsedDelta> Push(std::string_view text);
  // End of generation: releases held-back text; an unterminated tool call (no </tool_call>)
  // comes out as content, never as a call.
  absl::StatusOr<ParsedDelta> Finish();

  // Parses one tool call body (the text between <tool_call> and </tool_call>).
  absl::StatusOr<ToolCall> ParseToolCallBody(std::string_view body) const;
  // OpenAI's message.tool_calls: [{"id", "type": "function", "function": {name, arguments}}].
  static nlohmann::ordered_json ToOpenAi(const std::vector<ToolCall>& calls);
  // GLM's reasoning and tool-call markup (<think>, </think>, <tool_call>, ... <arg_value>): special
  // tokens in its tokenizer, which text for this parser must keep while other special tokens go.
  static constexpr std::string_view kMarkupTokens[] = {"<think>",   "</think>",   "<tool_call>", "</tool_call>",
                                                       "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"};

 private:
  enum class State { kContent, kReasoning, kToolCall };
  absl::Status Drain(bool final, ParsedDelta* delta);
  bool IsStringParameter(const std::string& function, const std::string& key) const;

  Options options_;
  State state_;
  std::string buffer_;
  // At the start, after <think> or </tool_call>, and after a </think> that comes before any content:
  // drop the separating blank lines
  // (GLM emits "\n<think>" after <|assistant|>), keeping the indentation of the first line.
  bool trim_leading_ws_ = true;
  // Whether content other than whitespace went out: after that a </think> ending a reasoning
  // block in mid-reply keeps the line breaks that follow it (only the reply's start is trimmed).
  bool content_emitted_ = false;
  int next_id_ = 0;
};

}  // namespace glm::tokenizer

#endif  // GLM_COORDINATOR_TOKENIZER_TOOL_CALL_PARSER_H_
