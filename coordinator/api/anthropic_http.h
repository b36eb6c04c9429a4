// Anthropic's Messages API on the HTTP front end (anthropic_protocol.h has the translation):
// POST /v1/messages (streaming as Anthropic's server-sent events, and not) and
// POST /v1/messages/count_tokens. Same engine, scheduler, prefix cache and metrics as the OpenAI
// endpoints; errors in Anthropic's shape and, for requests that do not fit the context, Anthropic's
// wording ("prompt is too long: ...", "input length and `max_tokens` exceed context limit: ..."),
// which its clients act on (compacting the conversation, retrying with a smaller max_tokens).
#ifndef GLM_COORDINATOR_API_ANTHROPIC_HTTP_H_
#define GLM_COORDINATOR_API_ANTHROPIC_HTTP_H_

#include <atomic>

#include "coordinator/api/serving_metrics.h"
#include "coordinator/api/text_frontend.h"
#include "coordinator/scheduler/engine.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace glm::api {

class AnthropicMessagesEndpoint {
 public:
  // Pointers must outlive the endpoint (the HTTP server that owns it).
  AnthropicMessagesEndpoint(scheduler::Engine* engine, const TextFrontend* frontend, ServingMetrics* metrics,
                            const std::atomic<bool>* stopping, scheduler::StreamInterval interval);

  // Adds the routes to `server`.
  void Register(httplib::Server* server);

 private:
  void HandleMessages(const httplib::Request& req, httplib::Response& res);
  void HandleCountTokens(const httplib::Request& req, httplib::Response& res);

  scheduler::Engine* engine_;
  const TextFrontend* frontend_;
  ServingMetrics* metrics_;
  const std::atomic<bool>* stopping_;
  scheduler::StreamInterval interval_;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_ANTHROPIC_HTTP_H_
