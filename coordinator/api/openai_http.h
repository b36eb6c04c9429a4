// The OpenAI-compatible HTTP front end (cpp-httplib): /v1/models, /v1/chat/completions,
// /v1/completions and /v1/responses (streaming as server-sent events and not), /health and
// /metrics, plus vLLM's /tokenize and /detokenize and Anthropic's /v1/messages
// (anthropic_http.h). Each request
// runs on one of the server's pool threads; a streaming response pulls engine events from
// inside httplib's chunked content provider, so a failed write (the client went away) aborts
// the request in the engine.
#ifndef GLM_COORDINATOR_API_OPENAI_HTTP_H_
#define GLM_COORDINATOR_API_OPENAI_HTTP_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "coordinator/api/response_store.h"
#include "coordinator/api/serving_metrics.h"
#include "coordinator/api/text_frontend.h"
#include "coordinator/scheduler/engine.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace glm::api {

class AnthropicMessagesEndpoint;
class ApiKeys;

class OpenAiHttpServer {
 public:
  // Pointers must outlive the server. `serving` drives /health; `stopping` ends open streams.
  OpenAiHttpServer(scheduler::Engine* engine, const TextFrontend* frontend, ServingMetrics* metrics,
                   const std::atomic<bool>* serving, const std::atomic<bool>* stopping, int threads,
                   scheduler::StreamInterval interval = {}, const ApiKeys* keys = nullptr, int max_threads = 0);
  ~OpenAiHttpServer();

  // Binds "host:port" (port 0 picks a free one) and starts the accept thread.
  absl::Status Start(const std::string& listen);
  int port() const { return port_; }
  // Stops accepting, ends keep-alive connections and streams, joins the accept thread.
  void Stop();
  // The stored /v1/responses replies (--responses-store-mib sets its capacity).
  ResponseStore& responses() { return responses_; }

 private:
  enum class Kind { kChat, kCompletions };
  void HandleGenerate(Kind kind, const httplib::Request& req, httplib::Response& res);
  void HandleModels(httplib::Response& res);
  // /v1/responses (openai_responses.h): one choice, on the shared response loop.
  void HandleResponses(const httplib::Request& req, httplib::Response& res);
  // The API key a request presents (ApiKeys::Holder): whose stored responses it may use.
  std::string Holder(const httplib::Request& req) const;
  // /tokenize and /detokenize: the body parsed, then `body_fn` (tokenize_endpoint.h).
  void HandleTokenizer(const httplib::Request& req, httplib::Response& res,
                       absl::StatusOr<nlohmann::json> (*body_fn)(const TextFrontend&, const nlohmann::json&,
                                                                 const std::string* raw_body));
  // One entry of /v1/models (OpenAI's model object) under the name `id`.
  nlohmann::json ModelJson(const std::string& id) const;

  scheduler::Engine* engine_;
  const TextFrontend* frontend_;
  ServingMetrics* metrics_;
  const std::atomic<bool>* serving_;
  const std::atomic<bool>* stopping_;
  int threads_;
  int max_threads_;  // the connection pool grows to this (ElasticTaskQueue)
  static constexpr int kListenBacklog = 4096;  // cpp-httplib's own is 5 (exclusive_listen.h)
  std::shared_ptr<int> listen_socket_ = std::make_shared<int>(-1);  // the bound socket (ListenExclusively)
  scheduler::StreamInterval interval_;  // SSE: tokens per chunk (--stream-interval)
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};  // the listening thread's accept loop has ended
  int port_ = 0;
  // The models' "created" (Unix seconds): when this server started; clients sort and display it.
  int64_t created_ = 0;
  std::unique_ptr<AnthropicMessagesEndpoint> anthropic_;  // /v1/messages on the same server
  const ApiKeys* keys_;  // null or none configured: no authentication
  ResponseStore responses_;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_OPENAI_HTTP_H_
