// The coordinator's front ends: the gRPC Inference service (+ grpc.health.v1 and reflection)
// and the OpenAI-compatible HTTP API (+ /health, /metrics), both over one Engine. The only
// module that includes grpcpp and httplib.
#ifndef GLM_COORDINATOR_API_API_SERVER_H_
#define GLM_COORDINATOR_API_API_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/api/response_store.h"
#include "coordinator/scheduler/engine.h"
#include "coordinator/structured/json_grammar.h"

namespace glm::tokenizer {
class Tokenizer;
class ChatTemplate;
}  // namespace glm::tokenizer

namespace glm::api {

// What is served, for GetModelInfo, /v1/models and request validation.
struct ServedModel {
  std::string name;                       // e.g. the model directory's base name
  std::string model_dir_name;             // the model directory's base name (what plans and routing records name)
  std::vector<std::string> aliases;       // other names clients may send
  bool accept_any_name = true;            // one model served: any `model` value is fine (echoed back)
  int64_t max_context = 0;
  int32_t vocab_size = 0;
  std::vector<int32_t> eos_token_ids;
  bool has_mtp = false;
  int32_t experts_per_token = 0;          // num_experts_per_tok (routing records)
  const tokenizer::Tokenizer* tokenizer = nullptr;        // null: token ids in and out only
  const tokenizer::ChatTemplate* chat_template = nullptr; // null: no chat requests
  std::string placement_summary;          // human-readable table
  std::string placement_json;
  int32_t world_size = 1;
  std::string default_speculative;        // the server's --speculative ("" = off)
  int64_t draft_vocab = 0;                // the server's --draft-vocab (0 = off)
  std::string kv_cache_dtype = "f32";     // the server's --kv-cache-dtype
  std::string index_key_dtype = "f32";    // the server's --index-key-dtype
  int64_t kv_cache_tokens = 0;            // positions the KV cache holds (blocks x block size)
  int64_t kv_block_size = 0;              // positions a KV block holds (0: not reported)
  bool prefix_caching = true;             // the server's --enable-prefix-caching
  // How the chat template spaces a tool call (ToolCallLayoutOf): forced calls are generated so.
  structured::ToolCallLayout tool_call_layout;
};

struct ApiOptions {
  std::string grpc_listen = "127.0.0.1:50051";  // "" = no gRPC
  std::string http_listen = "127.0.0.1:8000";   // "" = no HTTP
  int http_threads = 16;
  int http_max_threads = 0;  // the pool grows to this when every thread is busy (0 = http_threads)
  int32_t default_max_tokens = 0;               // 0 = up to the context
  scheduler::StreamInterval stream_interval;    // tokens per streamed message (--stream-interval)
  std::vector<std::string> api_keys;            // --api-key: clients must present one (api_keys.h); none = open
  int64_t responses_store_bytes = ResponseStore::kDefaultBytes;  // stored /v1/responses replies (0 = none)
};

class ApiServer {
 public:
  // Binds and starts serving in background threads; health reports NOT_SERVING until
  // SetServing(true).
  static absl::StatusOr<std::unique_ptr<ApiServer>> Start(const ApiOptions& options, scheduler::Engine* engine,
                                                          const ServedModel* model);
  virtual ~ApiServer() = default;
  virtual int grpc_port() const = 0;  // the bound port (useful with port 0)
  virtual int http_port() const = 0;
  // Health: SERVING once the cluster is ready; NOT_SERVING while loading or draining.
  virtual void SetServing(bool serving) = 0;
  // Stops accepting, ends open streams, joins the server threads.
  virtual void Shutdown() = 0;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_API_SERVER_H_
