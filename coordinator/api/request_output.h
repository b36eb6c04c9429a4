// The per-request output state shared by the gRPC and HTTP front ends: engine events (token ids)
// in, client-facing deltas out. In order: incremental detokenization (complete UTF-8 only), stop
// strings (matched on the generated text; a possible partial match is held back; the match and
// everything after it are dropped), then, for chat, the GLM <think>/<tool_call> split.
#ifndef GLM_COORDINATOR_API_REQUEST_OUTPUT_H_
#define GLM_COORDINATOR_API_REQUEST_OUTPUT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/scheduler/request.h"
#include "coordinator/tokenizer/incremental_detokenizer.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/tool_call_parser.h"
#include "nlohmann/json.hpp"

namespace glm::api {

struct OutputOptions {
  std::vector<std::string> stop;           // stop strings (need a tokenizer)
  bool include_stop_str = false;           // the matched stop string ends the text (else it is cut)
  int32_t min_tokens = 0;                  // stop strings are looked for from the min_tokens-th token on
  // Tokens whose text never reaches the client when they end the request: EOS (unless
  // ignore_eos) and the stop_token_ids, as vLLM does.
  std::vector<int32_t> hidden_stop_ids;
  bool skip_special_tokens = true;
  // Chat: run the GLM parser (reasoning, tool calls). Markup tokens are then kept for the parser
  // even though they are special; other special tokens are still dropped.
  bool parse_chat = false;
  bool starts_in_reasoning = false;        // the prompt ended with an open <think>
  bool continues_message = false;          // the prompt ends inside an assistant message (a prefill)
  // OpenAI tools, for argument typing. Null or empty (no tools, or tool_choice "none"): tool
  // calls are not parsed, their markup stays content (as vLLM does).
  nlohmann::json tools;
  // Tool-call ids are this plus the call's index. Empty: each RequestOutput (one per choice)
  // draws its own "call_<16 random hex digits>_", so ids never repeat across requests or
  // choices (a `tool` message's tool_call_id must name one call of the transcript).
  std::string tool_call_id_prefix;
  std::string tool_call_id_head = "call";  // the random prefix's head: "call" (OpenAI), "toolu" (Anthropic)
};

// What one engine event adds for the client.
struct OutputDelta {
  std::vector<int32_t> tokens;                    // new token ids, as the engine produced them
  std::vector<scheduler::TokenLogprob> logprobs;  // one per token when asked for
  std::vector<scheduler::TokenLogprob> prompt_logprobs;  // prompt scoring: on the first delta
  std::string text;                               // content (complete UTF-8)
  std::string reasoning;                          // chat: inside <think>
  std::vector<tokenizer::ToolCall> tool_calls;    // chat: completed calls
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;
  // Chat: of completion_tokens so far, those of the reasoning (inside <think>, its tags included).
  int32_t reasoning_tokens = 0;
  // Drafts from the request's prediction kept in the output and rejected (scheduler::GenerationEvent).
  int32_t accepted_prediction_tokens = 0;
  int32_t rejected_prediction_tokens = 0;
  bool first_tokens = false;        // carries the request's first generated token(s)
  scheduler::RequestTimes times;    // with first_tokens: the engine's (first token, queued, scheduled)
  bool finished = false;
  std::string finish_reason;        // stop | length | abort | tool_calls
  // A stop string ended the request here: the caller must Abort it in the engine (the engine
  // knows nothing of strings) and stop reading its stream.
  bool stop_string_matched = false;
  std::string matched_stop;         // with stop_string_matched: which stop string (Anthropic's stop_sequence)
};

class RequestOutput {
 public:
  // `tokenizer` may be null (token ids only; then text fields stay empty). It must outlive this.
  RequestOutput(const tokenizer::Tokenizer* tokenizer, OutputOptions options);

  // Folds in the next engine event. A failed request (event.error) returns that error. After the
  // request finished (finished event or stop string), further events yield empty deltas.
  absl::StatusOr<OutputDelta> Consume(const scheduler::GenerationEvent& event);
  // Consume(event), then the events `stream` released together with it (--stream-interval: Next
  // hands them out without waiting) folded in — tokens, text, logprobs and calls appended, counts
  // and the end from the latest — up to the request's end: what one streamed message carries.
  // With an interval of 1, just Consume(event). The event carrying the first tokens is a message
  // alone (RequestStream's contract: the TTFT message holds the first token however late the
  // consumer woke), even when a whole group is already waiting behind it.
  absl::StatusOr<OutputDelta> ConsumeReleased(const scheduler::GenerationEvent& event,
                                              scheduler::RequestStream& stream);

  bool finished() const { return finished_; }
  int tool_call_count() const { return tool_calls_; }
  int32_t prompt_tokens() const { return prompt_tokens_; }
  int32_t completion_tokens() const { return completion_tokens_; }

 private:
  // Text after detokenization → stop-string filter → (parser) → delta.
  absl::Status EmitText(const std::string& text, bool final, OutputDelta* delta);
  absl::Status Route(const std::string& text, bool final, OutputDelta* delta);
  // Length of the longest suffix of pending_ that is a proper prefix of a stop string.
  size_t PartialStopSuffix() const;

  const tokenizer::Tokenizer* tokenizer_;
  OutputOptions options_;
  std::unique_ptr<tokenizer::IncrementalDetokenizer> detok_;
  std::unique_ptr<tokenizer::ToolCallParser> parser_;
  absl::flat_hash_set<int32_t> markup_ids_;   // special tokens the chat parser needs to see
  absl::flat_hash_set<int32_t> hidden_stop_ids_;
  std::string pending_;                       // held back for a possible stop string
  // The first pending_sent_ bytes of pending_ already went out: text from before min_tokens that
  // a stop string completing at or after the min_tokens-th token may have started in.
  size_t pending_sent_ = 0;
  std::string unchecked_tail_;                // the last bytes sent before min_tokens
  bool finished_ = false;
  bool any_tokens_ = false;
  int tool_calls_ = 0;
  int32_t prompt_tokens_ = 0;
  int32_t completion_tokens_ = 0;
  // Chat: reasoning token count, and whether the next token is inside <think> (token ids of the
  // tags: -1 where the tokenizer lacks them).
  int32_t reasoning_tokens_ = 0;
  int32_t tokens_seen_ = 0;  // output tokens detokenized so far (OutputOptions::min_tokens)
  bool in_reasoning_ = false;
  int32_t think_open_id_ = -1;
  int32_t think_close_id_ = -1;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_REQUEST_OUTPUT_H_
