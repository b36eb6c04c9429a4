// The client side of `glmctl --server HOST:PORT generate|chat|info`: each call returns the text
// glmctl prints. RemoteGenerate --json prints exactly what the single-process
// `glmctl generate --json` prints ({"tokens":[...],"finish_reason":"..."}), plus "text" when
// the server has a tokenizer, so scripts can switch between the two.
#ifndef GLM_COORDINATOR_API_GRPC_CLIENT_H_
#define GLM_COORDINATOR_API_GRPC_CLIENT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/inference.pb.h"

namespace glm::api {

// Streaming (glmctl --stream): called with each piece of text as it arrives; the call's result is
// then only what the pieces did not show (a trailing newline).
using TextSink = std::function<void(const std::string& text)>;

struct RemoteGenerateOptions {
  std::string tokens_csv;            // "1,2,3" (exactly one of tokens_csv / prompt)
  std::string prompt;                // text, tokenized by the server
  std::string speculative;           // "" (server default) | "mtp:K" | "ngram:K"
  std::string prediction;            // OpenAI's predicted outputs: text the reply should resemble
  std::string response_format_json;  // optional OpenAI response_format object (structured output)
  std::string structured_outputs_json;  // or vLLM's structured_outputs object (regex, choice, json)
  int32_t priority = 0;              // under the server's --scheduling-policy priority: lower first
  int64_t max_new_tokens = 16;       // 0 = the server's default
  double temperature = 0.0;
  double top_p = 1.0;
  int32_t top_k = 0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  uint64_t seed = 0;
  bool ignore_eos = false;
  bool json = false;
  TextSink on_text;                  // with a text prompt and no json: the reply streamed to it
  // Reaching the server (and the health check of RemoteInfo); a dead address fails this fast.
  absl::Duration connect_timeout = absl::Seconds(5);
  // The whole generation; infinite = no deadline.
  absl::Duration timeout = absl::InfiniteDuration();
  std::string api_key;  // sent as "authorization: Bearer KEY" when set (the server's --api-key)
};

struct RemoteChatOptions {
  std::string speculative;  // "" (server default) | "mtp:K" | "ngram:K"
  std::string prediction;   // OpenAI's predicted outputs: text the reply should resemble
  std::string message;               // the user message
  std::string system;                // optional system message
  std::string tools_json;            // optional OpenAI tools array
  std::string tool_choice;           // "" | auto | none | required | a tool's name (one call of it)
  std::string response_format_json;  // optional OpenAI response_format object (structured output)
  std::string structured_outputs_json;  // or vLLM's structured_outputs object (regex, choice, json)
  std::string template_kwargs_json;  // optional, e.g. {"enable_thinking": false}
  int32_t priority = 0;              // under the server's --scheduling-policy priority: lower first
  int64_t max_new_tokens = 0;        // 0 = the server's default
  double temperature = 0.0;
  double top_p = 1.0;
  int32_t top_k = 0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  uint64_t seed = 0;
  bool ignore_eos = false;
  // Plain: the reply text. JSON: {"content", "reasoning_content"?, "tool_calls"?, "finish_reason",
  // "tokens", "usage"}.
  bool json = false;
  TextSink on_text;                  // without json: the reply's text streamed to it (its reasoning
                                     // too, between "<think>" and "</think>")
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration timeout = absl::InfiniteDuration();
  std::string api_key;
};

struct RemoteInfoOptions {
  absl::Duration timeout = absl::Seconds(5);  // connect + health + GetModelInfo
  std::string api_key;
};

// UNAVAILABLE (with the address in the message) when the server cannot be reached; the
// server's status otherwise (INVALID_ARGUMENT names the field, RESOURCE_EXHAUSTED, ...).
absl::StatusOr<std::string> RemoteGenerate(const std::string& server, const RemoteGenerateOptions& options);
absl::StatusOr<std::string> RemoteChat(const std::string& server, const RemoteChatOptions& options);
// ModelInfo as JSON (+ "health": "SERVING"). Fails (UNAVAILABLE) when the server is not
// reachable or its health is not SERVING.
absl::StatusOr<std::string> RemoteInfo(const std::string& server, const RemoteInfoOptions& options);

// GetExpertLoad: the cluster's routing statistics so far (for `glmctl --server ... expert-load`).
absl::StatusOr<glm::inference::v1::ExpertLoadResponse> RemoteExpertLoad(const std::string& server,
                                                                        const RemoteInfoOptions& options);

// grpc.health.v1 Check: true when SERVING. `service` "" asks about the whole server.
absl::StatusOr<bool> RemoteHealthServing(const std::string& server, const std::string& service,
                                         absl::Duration timeout);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_GRPC_CLIENT_H_
