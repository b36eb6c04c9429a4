// OpenAI's chat/completions wire format: request JSON → ApiRequest (lenient: unknown fields are
// ignored, vLLM's extensions such as top_k, min_p, ignore_eos, stop_token_ids,
// chat_template_kwargs are understood) and OutputDelta → the exact response and stream-chunk
// shapes OpenAI clients parse. No transport here; openai_http.cc does the HTTP.
#ifndef GLM_COORDINATOR_API_OPENAI_PROTOCOL_H_
#define GLM_COORDINATOR_API_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/api/request_output.h"
#include "coordinator/api/text_frontend.h"
#include "nlohmann/json.hpp"

namespace glm::api {

enum class OpenAiEndpoint { kChat, kCompletions };

// What the response needs besides the generation itself.
// The most choices (`n`) one request may ask for, and the most generations (prompts × n) in all.
inline constexpr int kMaxChoices = 16;
inline constexpr int kMaxGenerations = 128;

// One prompt of a completions request that sends several.
struct PromptInput {
  ApiRequest::Input input = ApiRequest::Input::kText;
  std::string text;
  std::vector<int32_t> token_ids;
  std::string field;  // "prompt[i]", for errors
};

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChat;
  ApiRequest api;
  std::string model;            // echoed back (the served name when the client sent none)
  int n = 1;                    // choices: n engine requests for the same prompt (seed + i each)
  // Completions with several prompts: all of them, in order (api holds the first); each gets
  // n choices, indexed prompt · n + i. Empty for one prompt.
  std::vector<PromptInput> prompts;
  bool stream = false;
  bool include_usage = false;   // stream_options.include_usage
  bool continuous_usage = false;  // vLLM's stream_options.continuous_usage_stats (with include_usage)
  bool logprobs = false;        // report logprobs in the response
  bool echo = false;            // completions: the prompt comes back before the completion (with
                                // its tokens' logprobs when logprobs are asked for)
  // vLLM's return_token_ids: the prompt's token ids (chat: "prompt_token_ids" on the response, or
  // on the role chunk when streamed; completions: on each choice, or its first chunk) and each
  // choice's generated ids ("token_ids": all of them, or each chunk's new ones when streamed).
  bool return_token_ids = false;
  // vLLM's return_tokens_as_token_ids: logprobs name tokens as "token_id:N" (a token that is
  // part of a character has no text of its own).
  bool tokens_as_ids = false;
  // vLLM's prompt_logprobs: every prompt position's token with its logprob and rank, and this
  // many alternatives ("prompt_logprobs" on each completions choice, on the chat response); -1:
  // not asked. Not with stream (as in vLLM).
  int prompt_logprobs = -1;
};

// Parses a request body. INVALID_ARGUMENT names the field (InvalidField). `raw_body`, the body's
// text when there is one, gives a json_schema's properties, and the messages and tools the chat
// template prints, in the client's key order.
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, const nlohmann::json& body,
                                                 const std::string& served_name, const std::string* raw_body = nullptr);

// Accumulates one response: either renders stream chunks per delta, or collects everything for
// the final non-streaming object.
// OpenAI's reasoning effort (chat `reasoning_effort`, Responses `reasoning.effort`: `field`):
// none, minimal, low, medium, high or xhigh; null is no choice. GLM's thinking is on or off, so
// "none" switches it off (`enable_thinking: false` in *template_kwargs, unless the request's
// chat_template_kwargs set enable_thinking themselves) and the other efforts leave it on. Another
// value is INVALID_ARGUMENT naming `field`.
absl::Status ApplyReasoningEffort(const nlohmann::json& effort, const std::string& field,
                                  nlohmann::json* template_kwargs);

class OpenAiResponseBuilder {
 public:
  // `frontend` gives token texts for logprobs; it must outlive the builder. One builder per
  // choice; `choice_index` is its "index" in the response, `prompt_index` which prompt it
  // continues (usage counts each prompt once).
  OpenAiResponseBuilder(const OpenAiRequest* request, const TextFrontend* frontend, std::string id, int64_t created,
                        int choice_index = 0, int prompt_index = 0);

  // Streaming: the SSE events ("data: {...}\n\n" each) this delta adds; the first call also
  // sends the chat role chunk. After the finished delta: the finish chunk, the usage chunk
  // when asked for, and "data: [DONE]" (a single-choice response).
  std::string StreamChunks(const OutputDelta& delta);
  // The same without the end of the stream (a response of several choices ends once, with
  // StreamEnd and the usage of all of them).
  std::string StreamChoiceChunks(const OutputDelta& delta);
  std::string StreamEnd(const nlohmann::json& usage) const;
  // Streaming failure after the headers went out: an error event and [DONE].
  static std::string StreamError(const nlohmann::json& error);

  // The prompt this choice continues, as the engine saw it (echo, return_token_ids,
  // prompt_logprobs). `scorer`, when given, is the builder of the choice whose engine request
  // scores this prompt (one choice per prompt does); its prompt logprobs are used when this choice
  // has none.
  void SetPromptTokenIds(std::vector<int32_t> ids, const OpenAiResponseBuilder* scorer = nullptr) {
    prompt_ids_ = std::move(ids);
    scorer_ = scorer == this ? nullptr : scorer;
  }
  // Completions `echo`: the prompt as the client sent it (its ids: SetPromptTokenIds).
  void SetEchoPrompt(std::string text) { echo_text_ = std::move(text); }

  // Non-streaming: fold in a delta; after the finished one, Final() is the response object.
  void Accumulate(const OutputDelta& delta);
  nlohmann::json Final() const;
  // Final()'s choice object, and the response object for several choices (in index order).
  nlohmann::json FinalChoice() const;
  static nlohmann::json FinalOf(const std::vector<const OpenAiResponseBuilder*>& choices);

  // OpenAI usage of this choice; UsageOf several choices counts each prompt once.
  nlohmann::json Usage() const;
  static nlohmann::json UsageOf(const std::vector<const OpenAiResponseBuilder*>& choices);

 private:
  nlohmann::json Chunk(nlohmann::json choice) const;
  nlohmann::json ChatLogprobs(const std::vector<scheduler::TokenLogprob>& lps) const;
  // Completions text_offset: where a token's text starts in the returned text, counted in
  // Unicode code points (vLLM's offsets are Python string indices; JSON clients index decoded
  // strings, not UTF-8 bytes). Fed the tokens' raw bytes, so a character split over several
  // tokens counts once; a token that starts inside a character gets that character's offset.
  struct TextOffset {
    size_t code_points = 0;
    int continuation_left = 0;  // continuation bytes still due for the last character begun
    // The offset of a token whose text is `bytes`; then moves past it.
    size_t Take(std::string_view bytes);
  };
  nlohmann::json CompletionLogprobs(const std::vector<scheduler::TokenLogprob>& lps, TextOffset* offset) const;
  // The bytes a generated token adds to the completion text: none for a special token the
  // request skips.
  std::string EmittedBytes(int32_t token) const;
  // A completions top_logprobs entry: {text: logprob} of the alternatives and of `token` (the
  // one sampled, or the prompt's).
  // `limit`: at most this many of lp's alternatives.
  nlohmann::json TopLogprobs(int32_t token, const scheduler::TokenLogprob& lp, size_t limit = SIZE_MAX) const;
  // vLLM's prompt_logprobs array: null for the first prompt token, then per position
  // {"<id>": {"logprob", "rank", "decoded_token"}} of the prompt token and the best
  // OpenAiRequest::prompt_logprobs alternatives (ranks 1, 2, ...).
  nlohmann::json VllmPromptLogprobs() const;
  // A token as completions logprobs name it: its text, "bytes:\\xNN.." for part of a UTF-8
  // character (TextFrontend::LogprobTokenName: the keys of top_logprobs stay distinct), or
  // "token_id:N" (OpenAiRequest::tokens_as_ids).
  std::string LogprobToken(int32_t token) const;
  // Echo: the prompt's completions-logprobs arrays (its first token has no logprob: null).
  nlohmann::json EchoLogprobs(const std::vector<scheduler::TokenLogprob>& prompt_lps) const;
  // Where the completion's text offsets start after the echoed prompt: its length.
  TextOffset EchoEnd() const;

  const OpenAiRequest* request_;
  const TextFrontend* frontend_;
  std::string id_;
  int64_t created_;
  int index_ = 0;
  int prompt_index_ = 0;
  bool role_sent_ = false;
  int tool_index_ = 0;
  // Running totals (non-streaming result; usage).
  std::string text_;
  std::string reasoning_;
  std::vector<tokenizer::ToolCall> tool_calls_;
  std::vector<scheduler::TokenLogprob> logprobs_;
  std::vector<int32_t> token_ids_;   // return_token_ids: generated so far
  std::vector<int32_t> prompt_ids_;  // SetPromptTokenIds
  bool prompt_ids_sent_ = false;     // streaming: on a chunk already
  std::string finish_reason_;
  int32_t prompt_tokens_ = 0;
  int32_t completion_tokens_ = 0;
  int32_t cached_tokens_ = 0;
  int32_t reasoning_tokens_ = 0;
  int32_t accepted_prediction_tokens_ = 0;
  int32_t rejected_prediction_tokens_ = 0;
  TextOffset text_offset_;      // completions logprobs' text_offset while streaming
  // Echo.
  std::string echo_text_;
  bool echo_sent_ = false;
  std::vector<scheduler::TokenLogprob> prompt_logprobs_;
  const OpenAiResponseBuilder* scorer_ = nullptr;
  const std::vector<scheduler::TokenLogprob>& PromptLogprobs() const {
    return prompt_logprobs_.empty() && scorer_ != nullptr ? scorer_->prompt_logprobs_ : prompt_logprobs_;
  }
};

// Serializes JSON for the wire: invalid UTF-8 (never expected) is replaced, not thrown.
std::string DumpJson(const nlohmann::json& j);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_OPENAI_PROTOCOL_H_
