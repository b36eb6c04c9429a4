// What the gRPC and HTTP front ends share: a client request in API terms (text, token ids or
// chat messages, plus sampling fields) validated and turned into a scheduler::GenerationRequest
// and the OutputOptions for its RequestOutput. Validation messages name the offending field in
// the caller's spelling (gRPC "sampling.temperature", HTTP "temperature").
#ifndef GLM_COORDINATOR_API_TEXT_FRONTEND_H_
#define GLM_COORDINATOR_API_TEXT_FRONTEND_H_

#include <atomic>
#include <list>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/api/api_server.h"
#include "coordinator/api/request_output.h"
#include "coordinator/scheduler/request.h"
#include "coordinator/structured/json_grammar.h"
#include "coordinator/structured/output_format.h"
#include "nlohmann/json.hpp"

namespace glm::api {

// ApiRequest::prediction (OpenAI's predicted outputs): at most this many bytes of text.
inline constexpr size_t kMaxPredictionBytes = size_t{1} << 20;

struct ApiRequest {
  enum class Input { kNone, kText, kTokenIds, kChat };
  Input input = Input::kNone;
  std::string text;
  std::vector<int32_t> token_ids;
  // Chat input in the client's key order (ordered_json): the template prints these objects (tools,
  // schemas, tool-call arguments, extra message fields) as given, as transformers does; a sorted
  // nlohmann::json would reorder every one of them. HTTP parsers take them from the request text
  // (OrderedBody), gRPC from its JSON strings.
  nlohmann::ordered_json messages;         // chat: OpenAI messages array
  nlohmann::ordered_json tools;            // chat: OpenAI tools array, or null
  std::string tools_field = "tools";       // its spelling in errors (gRPC: "chat.tools_json")
  nlohmann::json template_kwargs = nlohmann::json::object();
  bool add_generation_prompt = true;
  // vLLM's continue_final_message (and Anthropic's prefill): the prompt is cut right after the
  // final assistant message's content, as transformers' apply_chat_template cuts it, so a template
  // that closes the turn (an end-of-turn token) leaves the message open. Needs
  // add_generation_prompt false; errors about it name `continue_final_field`.
  bool continue_final_message = false;
  std::string continue_final_field = "continue_final_message";
  bool chat_add_special_tokens = false;
  std::string cache_salt;                // vLLM's: prefix-cache blocks shared only within one salt
  int32_t priority = 0;                    // vLLM's (scheduler::GenerationRequest::priority)

  // Field spellings for error messages.
  std::string input_field = "prompt";      // where the text/ids/messages came from
  std::string field_prefix;                // prepended to sampling field names
  std::string max_tokens_field = "max_tokens";
  std::string top_logprobs_field = "top_logprobs";

  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;                       // 0 or -1: off
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token, bias)
  std::optional<uint64_t> seed;
  std::optional<int64_t> max_tokens;       // unset: ApiOptions::default_max_tokens
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  int32_t min_tokens = 0;                  // vLLM's (scheduler::SamplingOptions::min_tokens)
  std::vector<int32_t> allowed_token_ids;  // vLLM's: when set, every output token is one of these
  std::vector<std::string> bad_words;      // vLLM's: words the output never contains (BadWordSequences)
  int32_t truncate_prompt_tokens = 0;      // vLLM's: N > 0 keeps the prompt's last N tokens, -1 the context's
  bool logprobs = false;
  int32_t top_logprobs = 0;
  int32_t prompt_logprobs = -1;            // >= 0: score the prompt (completions echo + logprobs)
  bool skip_special_tokens = true;
  bool include_stop_str_in_output = false;  // a matched stop string ends the output text (vLLM's)
  std::string speculative;                 // "" (the server's default) | "none" | "mtp:K" | "ngram:K" (the engine checks it)
  std::string prediction;                  // OpenAI's predicted outputs: prediction.content's text ("" = none)
  std::string prediction_field = "prediction.content";  // errors about it name this field
  // Structured outputs: the JSON grammar the reply must follow (null: free text), and the field
  // that asked for it (errors name it). A constrained chat renders its template with thinking
  // off: the format applies from the reply's first token.
  std::shared_ptr<const structured::JsonGrammar> output_grammar;
  std::string output_format_field = "response_format";

  std::string request_id;                  // "" = assigned
  absl::Time deadline = absl::InfiniteFuture();
};

struct PreparedRequest {
  scheduler::GenerationRequest engine_request;
  OutputOptions output;
};

class TextFrontend {
 public:
  static constexpr int32_t kMaxTopLogprobs = 20;
  // bad_words: at most this many words of at most kMaxBadWordBytes each.
  static constexpr size_t kMaxBadWords = 1024;
  // Stop strings are searched in the text after every token: bounded like bad_words (OpenAI takes
  // 4, vLLM any number).
  static constexpr size_t kMaxStopStrings = 1024;
  static constexpr size_t kMaxStopStringBytes = 4096;
  static constexpr size_t kMaxBadWordBytes = 1024;

  // `model` must outlive this object.
  TextFrontend(const ServedModel* model, int32_t default_max_tokens);

  absl::StatusOr<PreparedRequest> Prepare(const ApiRequest& request) const;

  // The chat template applied to OpenAI-style messages (for chat requests and Tokenize), after
  // ValidateTools and NormalizeMessages. `field` and `tools_field` name the two in errors.
  absl::StatusOr<std::string> RenderChat(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                         bool add_generation_prompt, const nlohmann::json& template_kwargs,
                                         absl::string_view field, absl::string_view tools_field = "tools") const;
  // How the chat template spaces GLM's tool call (structured::ToolCallLayout), read off a probe
  // call it renders; nullopt when it prints no such call (no template, or not GLM's format).
  std::optional<structured::ToolCallLayout> TemplateToolCallLayout() const;
  // OpenAI `tools`: null, or an array of {"type": "function" (may be left out), "function":
  // {"name": a non-empty string, "parameters": an object, "description": a string (both may be
  // left out)}}. Checked up front: the tool-call parser and the template read these while a
  // reply is generated. Errors name e.g. "tools[1].function.name".
  static absl::Status ValidateTools(const nlohmann::ordered_json& tools, absl::string_view field);
  // OpenAI messages as the template expects them (templates branch on role and print content,
  // so anything else would be dropped or printed as a Python repr): role is system, user,
  // assistant or tool ("developer", OpenAI's newer name for system, becomes "system"); content
  // is a string: null or absent gives "", an array of {"type": "text", "text"} parts gives their
  // texts joined by "\n" (as vLLM does); other part types (image_url, input_audio, ...) are
  // refused, this model reads text only. Errors name e.g. "messages[2].content[0].type".
  static absl::StatusOr<nlohmann::ordered_json> NormalizeMessages(const nlohmann::ordered_json& messages,
                                                                  absl::string_view field);
  // continue_final_message: `rendered` cut right after the final message's content (a string, or
  // of text parts the last one), where it last occurs, else where its whitespace-trimmed text
  // last occurs (templates that trim), as transformers does. INVALID_ARGUMENT naming `field`
  // when the template did not print it.
  static absl::StatusOr<std::string> CutAfterFinalMessage(const nlohmann::ordered_json& messages,
                                                          std::string rendered, absl::string_view field);
  // A chat request's prompt (r.input == kChat): rendered by the chat template and encoded as
  // Prepare does it, so token counts (/tokenize, count_tokens) are what a generation reads.
  // `add_special_tokens` false: the template wrote the special tokens it wants. `rendered`, when
  // given, receives the template's text (cut after the final message for continue_final_message).
  absl::StatusOr<std::vector<int32_t>> EncodeChat(const ApiRequest& r, bool add_special_tokens = false,
                                                  std::string* rendered = nullptr) const;
  absl::StatusOr<std::vector<int32_t>> EncodeText(const std::string& text, bool add_special_tokens,
                                                  absl::string_view field) const;
  // The text of one token, for logprob entries ("" without a tokenizer). Lossy: a token that is
  // only part of a UTF-8 character gives U+FFFD.
  std::string TokenText(int32_t id) const;
  // The raw bytes of one token, without the UTF-8 repair (e.g. F0 9F for the first half of an
  // emoji), for logprob `bytes` and text offsets ("" without a tokenizer or for an unknown id).
  std::string TokenBytes(int32_t id) const;
  // A token's name in logprobs: its text, or for a token that is only part of a UTF-8 character
  // OpenAI's "bytes:\\xe2\\x80" spelling of its bytes (its lossy text, U+FFFD, is the same for
  // all such tokens, so alternatives keyed by it would overwrite each other).
  std::string LogprobTokenName(int32_t id) const;
  // Whether `id` is one of the tokenizer's special tokens (false without a tokenizer).
  bool IsSpecialToken(int32_t id) const;

  // `model` in a request: the served name, an alias, or anything when accept_any_name.
  bool AcceptsModelName(const std::string& name) const;
  // OK when AcceptsModelName, else NOT_FOUND "The model 'X' does not exist (serving 'Y')" (OpenAI's
  // wording, which clients show as is).
  absl::Status CheckModelName(const std::string& name) const;
  // "<prefix><separator><process nonce>-<counter>": unique within and across restarts.
  std::string NewRequestId(absl::string_view prefix, absl::string_view separator = "-") const;

  // Structured outputs since start: constrained requests prepared, and the token masks their
  // formats served from the cache or computed (with the time that took).
  struct StructuredOutputStats {
    int64_t requests = 0;
    structured::OutputFormat::Stats masks;
  };
  StructuredOutputStats structured_output_stats() const;

  const ServedModel& model() const { return *model_; }
  bool has_tokenizer() const { return model_->tokenizer != nullptr; }

 private:
  absl::Status ValidateSampling(const ApiRequest& r) const;
  // The engine constraint for r.output_grammar (checks the tokenizer can spell it).
  absl::StatusOr<std::shared_ptr<scheduler::TokenConstraint>> OutputConstraint(const ApiRequest& r) const;
  // r.bad_words as token sequences, spelt as vLLM spells them: each word (leading spaces
  // stripped) as it is, and after a space where that spelling starts with another token and has as
  // many tokens (a word in the middle of text).
  absl::StatusOr<std::vector<std::vector<int32_t>>> BadWordSequences(const ApiRequest& r) const;
  // The chat template's arguments for `r` (thinking off when the output is constrained).
  nlohmann::json TemplateArguments(const ApiRequest& r) const;

  const ServedModel* model_;
  int32_t default_max_tokens_;
  std::string nonce_;
  mutable std::atomic<uint64_t> next_id_{0};
  // Structured outputs: the tokenizer's bytes per id (built on first use) and the most recently
  // used formats with their mask caches, by schema: at most 32 x 16 MiB of masks, however many
  // schemas clients send.
  static constexpr size_t kMaxCachedFormats = 32;
  mutable absl::Mutex formats_mu_;
  mutable std::shared_ptr<const structured::TokenVocabulary> vocabulary_ ABSL_GUARDED_BY(formats_mu_);
  mutable std::list<std::shared_ptr<structured::OutputFormat>> formats_ ABSL_GUARDED_BY(formats_mu_);
  mutable StructuredOutputStats retired_ ABSL_GUARDED_BY(formats_mu_);  // requests, and evicted formats' masks
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_TEXT_FRONTEND_H_
