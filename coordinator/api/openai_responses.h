// OpenAI's Responses API (POST /v1/responses), the wire API of OpenAI's agent harnesses (Codex
// CLI among them), on the same chat path as /v1/chat/completions.
//
// Conversations: either the whole conversation comes in `input` (what clients do with "store":
// false), or `previous_response_id` names a stored reply (ResponseStore; "store" defaults to true)
// whose conversation the new input continues; `item_reference` input items name output items of
// stored replies. `conversation` objects are refused with an explanation.
// Input items map onto the chat template's OpenAI-shaped messages: `instructions` is the system
// message; a run of assistant-side items (reasoning, an assistant message, function_call) is one
// assistant message (reasoning_content, content, tool_calls); a function_call_output is a tool
// message. Function tools ({"type": "function", "name", "parameters"}) become chat tools;
// built-in tools, images and files are refused with the field named.
//
// Output items: `reasoning` (the model's <think> text as reasoning_text content), `message`
// (one output_text part) and `function_call` (call_id, name, arguments). Streamed as the API's
// typed events with sequence numbers, ending with response.completed, or response.incomplete
// (reason max_output_tokens) when the length limit cut the reply.
#ifndef GLM_COORDINATOR_API_OPENAI_RESPONSES_H_
#define GLM_COORDINATOR_API_OPENAI_RESPONSES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/api/request_output.h"
#include "coordinator/api/response_store.h"
#include "coordinator/api/text_frontend.h"
#include "nlohmann/json.hpp"

namespace glm::api {

struct ResponsesRequest {
  ApiRequest api;       // chat input (OpenAI-shaped messages and tools) and sampling
  std::string model;    // echoed back (the served name when the client sent none)
  bool stream = false;
  // Echoed in the response object, as the API does.
  nlohmann::json instructions = nullptr;
  nlohmann::json tools = nlohmann::json::array();  // as the client sent them
  nlohmann::json tool_choice = "auto";
  nlohmann::json max_output_tokens = nullptr;
  bool store = true;                                // keep the reply for previous_response_id / GET
  bool parallel_tool_calls = true;                  // a forced reply may make several calls
  std::string holder;                               // the caller's API key: who may read the stored reply
  nlohmann::json previous_response_id = nullptr;
  nlohmann::json reasoning = {{"effort", nullptr}, {"summary", nullptr}};  // reasoning.effort as asked
  nlohmann::json text = {{"format", {{"type", "text"}}}};  // as the client sent it (format default: text)
  nlohmann::json metadata = nlohmann::json::object();    // the client's string pairs
  // Echoed as sent: "disabled" or "auto" (input past the context is a 400 either way; no item is
  // dropped to make it fit).
  std::string truncation = "disabled";
  // Every turn's chat messages without `instructions` (the previous response's conversation, then
  // this input): what a stored reply continues.
  nlohmann::json conversation = nlohmann::json::array();
};

// Parses a Responses body. INVALID_ARGUMENT names the field ("input[2].content[0].type").
// `raw_body`, the body's text when there is one, gives a json_schema's properties and the tools'
// parameter schemas in the client's key order.
// `store` holds the replies previous_response_id may name (null: none are kept, and it is refused);
// `holder` is the caller's API key (ApiKeys::Holder), whose replies it may continue.
absl::StatusOr<ResponsesRequest> ParseResponsesRequest(const nlohmann::json& body, const std::string& served_name,
                                                       const std::string* raw_body = nullptr,
                                                       ResponseStore* store = nullptr, const std::string& holder = "");

class ResponsesBuilder {
 public:
  // `request` must outlive the builder; `id` is the response id ("resp_..."), `created_at` Unix s.
  ResponsesBuilder(const ResponsesRequest* request, std::string id, int64_t created_at);

  // Streaming: the events ("event: T\ndata: {...}\n\n") this delta adds. The first call sends
  // response.created and response.in_progress; an output item opens when its kind of output
  // starts and is done when another starts or the reply ends.
  std::string StreamEvents(const OutputDelta& delta);
  // Streaming failure after the headers went out: an error event.
  std::string StreamError(const nlohmann::json& error);

  // Non-streaming: fold in a delta; after the finished one, Final() is the response object.
  void Accumulate(const OutputDelta& delta);
  nlohmann::json Final() const;

  // After the finished delta, either way: the response object as sent, and the reply as one
  // chat assistant message (content, reasoning_content, tool_calls) for the conversation store
  // (null when the reply has no output item).
  nlohmann::json Completed() const;
  nlohmann::json AssistantTurn() const;
  const std::string& id() const { return id_; }

 private:
  enum class Item { kNone, kReasoning, kMessage };
  std::string Event(const std::string& type, nlohmann::json data);
  nlohmann::json ResponseObject(const std::string& status, nlohmann::json output) const;
  nlohmann::json Usage() const;
  nlohmann::json ReasoningItem(const std::string& id, const std::string& text, const char* status) const;
  nlohmann::json MessageItem(const std::string& id, const std::string& text, const char* status) const;
  nlohmann::json CallItem(const std::string& id, const tokenizer::ToolCall& call, const std::string& arguments,
                          const char* status) const;
  // Every delta, streamed or not: the running text, reasoning, calls and counts.
  void Fold(const OutputDelta& delta);
  // A finished reply's status: "incomplete" when max_output_tokens cut it, else "completed".
  const char* EndStatus() const { return finish_reason_ == "length" ? "incomplete" : "completed"; }
  // Streaming: ends the open item (its done events) / opens one of `kind`.
  // Ends the open item with `status` ("incomplete": the reply was cut while writing it).
  void CloseItem(std::string* out, const char* status = "completed");
  void OpenItem(Item kind, std::string* out);

  const ResponsesRequest* request_;
  std::string id_;
  int64_t created_at_;
  // Streaming.
  bool started_ = false;
  int64_t sequence_ = 0;
  Item open_ = Item::kNone;
  std::string open_id_;
  std::string open_text_;
  nlohmann::json done_items_ = nlohmann::json::array();  // output items finished so far
  // Running totals and counts.
  std::string text_;
  std::string reasoning_;
  std::vector<tokenizer::ToolCall> tool_calls_;
  std::string finish_reason_;
  int32_t prompt_tokens_ = 0;
  int32_t completion_tokens_ = 0;
  int32_t cached_tokens_ = 0;
  int32_t reasoning_tokens_ = 0;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_OPENAI_RESPONSES_H_
