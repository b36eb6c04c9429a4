// Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens) on the same engine as
// the OpenAI endpoints, so Anthropic-API agent harnesses (Claude Code and the Anthropic SDKs)
// talk to the cluster directly, without a translating proxy.
//
// A request is translated into the chat path's OpenAI-shaped messages (the chat template's
// input): `system` becomes a system message; an assistant's `tool_use` blocks its tool_calls (the
// `input` object as the arguments JSON) and its `thinking` blocks its reasoning_content; a user's
// `tool_result` blocks become tool messages, in block order. `tools` ({name, description,
// input_schema}) become OpenAI function tools. A last assistant message is a prefill: the reply
// continues it (no new assistant turn is opened). Image and document blocks, server tools and a
// forced tool_choice ("any", "tool") are refused with the field named: they cannot be honoured.
// `output_format` ({"type": "json_schema", "schema"}, Anthropic's structured outputs) constrains
// the reply's text to JSON of the schema, as response_format does on the OpenAI endpoints.
//
// The response maps the chat output back: reasoning → a `thinking` block, content → a `text`
// block, tool calls → `tool_use` blocks (ids "toolu_..."); finish reasons stop/length/tool_calls
// → stop_reason end_turn (or stop_sequence, naming the matched string)/max_tokens/tool_use.
// usage.input_tokens excludes the prompt tokens served from the prefix cache, which are
// cache_read_input_tokens, as Anthropic counts them.
#ifndef GLM_COORDINATOR_API_ANTHROPIC_PROTOCOL_H_
#define GLM_COORDINATOR_API_ANTHROPIC_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/api/request_output.h"
#include "coordinator/api/text_frontend.h"
#include "nlohmann/json.hpp"

namespace glm::api {

struct AnthropicRequest {
  ApiRequest api;      // chat input (OpenAI-shaped messages and tools) and sampling
  std::string model;   // echoed back (the served name when the client sent none)
  bool stream = false;
};

// Parses a Messages body. `count_only` (count_tokens) needs no max_tokens. INVALID_ARGUMENT names
// the field ("messages[1].content[0].type"). `raw_body`, the body's text when there is one, gives
// tool_use inputs and tool and output_format schemas in the client's key order.
absl::StatusOr<AnthropicRequest> ParseAnthropicRequest(const nlohmann::json& body, const std::string& served_name,
                                                       bool count_only = false, const std::string* raw_body = nullptr);

// Anthropic's error object, {"type": "error", "error": {"type", "message"}}, and its HTTP status.
nlohmann::json AnthropicErrorJson(const absl::Status& status, int* http_status);

class AnthropicResponseBuilder {
 public:
  AnthropicResponseBuilder(std::string id, std::string model);

  // Streaming: the server-sent events ("event: X\ndata: {...}\n\n") this delta adds. The first
  // call opens the message (message_start); content goes into blocks, a new block whenever the
  // kind changes; the finished delta closes the last block and ends the message (message_delta
  // with stop_reason and usage, message_stop).
  std::string StreamEvents(const OutputDelta& delta);
  // Streaming failure after the headers went out: an error event.
  static std::string StreamError(const absl::Status& status);

  // Non-streaming: fold in a delta; after the finished one, Final() is the message object.
  void Accumulate(const OutputDelta& delta);
  nlohmann::json Final() const;

 private:
  enum class Block { kNone, kThinking, kText };
  void Count(const OutputDelta& delta);
  nlohmann::json Usage() const;
  std::string StopReason() const;
  // Streaming: closes the open block (if any) and opens one of `kind`.
  void OpenBlock(Block kind, std::string* out);
  void CloseBlock(std::string* out);

  std::string id_;
  std::string model_;
  bool started_ = false;
  Block open_ = Block::kNone;
  int block_index_ = -1;
  // Running totals.
  std::string text_;
  std::string reasoning_;
  std::vector<tokenizer::ToolCall> tool_calls_;
  std::string finish_reason_;
  std::string matched_stop_;
  int32_t prompt_tokens_ = 0;
  int32_t completion_tokens_ = 0;
  int32_t cached_tokens_ = 0;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_ANTHROPIC_PROTOCOL_H_
