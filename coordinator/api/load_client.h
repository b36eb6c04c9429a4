// The client side of bench/serve_bench: sends one streaming generation request to a serving
// endpoint and measures it (time to first token, every inter-token gap, end-to-end latency).
// Three backends: our gRPC Inference.Generate, and any OpenAI-compatible HTTP server's
// /v1/completions or /v1/chat/completions with SSE streaming (ours, vLLM, SGLang, llama.cpp),
// so the same load can be measured side by side. Lives in coordinator/api because it includes
// grpcpp and httplib; the scheduling and report code (load_generator.h, load_report.h) does not.
#ifndef GLM_COORDINATOR_API_LOAD_CLIENT_H_
#define GLM_COORDINATOR_API_LOAD_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace glm::api {

enum class LoadBackend { kGrpc, kOpenAiCompletions, kOpenAiChat, kAnthropicMessages, kOpenAiResponses };

// "grpc" | "openai-completions" (also "openai") | "openai-chat" | "anthropic-messages" |
// "openai-responses".
absl::StatusOr<LoadBackend> ParseLoadBackend(absl::string_view name);
std::string LoadBackendName(LoadBackend backend);

// One request's input.
struct LoadPrompt {
  // Non-empty: sent as token ids (gRPC `token_ids`, completions `prompt: [ids]`). Chat needs text.
  std::vector<int32_t> token_ids;
  std::string text;         // used when token_ids is empty (gRPC `text`, completions, chat user message)
  int32_t prompt_len = 0;   // tokens as the generator counts them; the server's usage wins when reported
  int32_t output_len = 0;   // tokens requested (max_tokens; with ignore_eos exactly this many)
};

struct LoadClientOptions {
  LoadBackend backend = LoadBackend::kGrpc;
  std::string server;       // HOST:PORT (OpenAI backends also accept http[s]://HOST:PORT)
  std::string endpoint;     // OpenAI path; "" = /v1/completions or /v1/chat/completions
  std::string model;        // "" : gRPC omits it, OpenAI takes the first id of GET /v1/models
  std::string api_key;      // sent as "Authorization: Bearer ..." (HTTP header, gRPC metadata) when set
  bool ignore_eos = true;   // with max_tokens: exactly output_len tokens
  double temperature = 0.0;
  // vLLM's request priority (a server with --scheduling-policy priority: lower first); 0 = not sent.
  int32_t priority = 0;
  absl::Duration connect_timeout = absl::Seconds(10);
};

// What one request measured. Times are seconds from just before the request was sent.
struct LoadRequestResult {
  bool success = false;
  std::string error;            // set when !success
  int32_t prompt_len = 0;       // the server's usage.prompt_tokens, else LoadPrompt::prompt_len
  int32_t output_tokens = 0;    // the server's completion count, else tokens (gRPC) or content chunks
  int32_t cached_tokens = 0;    // prompt tokens served from the server's prefix cache, when reported
  double ttft_s = 0;            // first output token (first non-empty content chunk)
  double latency_s = 0;         // end to end: until the stream closed
  // Gaps between token arrivals. gRPC: a message carrying k tokens after a gap g adds k gaps of
  // g/k. OpenAI: one gap per content chunk (what vLLM's bench serve records); chunks read
  // together from the socket add gaps of 0 after the first.
  std::vector<double> itl_s;
  double start_s = 0;           // send time, seconds since the run began (set by the generator)
};

// Thread-safe: one client serves all concurrent requests of a run.
class LoadClient {
 public:
  // Connects (gRPC: waits for the channel; OpenAI without a model name: GET /v1/models).
  // UNAVAILABLE names the address when the server cannot be reached.
  static absl::StatusOr<std::unique_ptr<LoadClient>> Create(const LoadClientOptions& options);
  virtual ~LoadClient() = default;

  // Sends `prompt` and reads the whole stream; gives up (a failed result) at `deadline`.
  virtual LoadRequestResult Send(const LoadPrompt& prompt, absl::Time deadline) = 0;
  // The model name requests carry ("" when gRPC and none was given).
  virtual const std::string& model() const = 0;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_LOAD_CLIENT_H_
