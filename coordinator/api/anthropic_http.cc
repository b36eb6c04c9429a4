#include "coordinator/api/anthropic_http.h"

#include <httplib.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/api/anthropic_protocol.h"
#include "coordinator/api/api_status.h"
#include "coordinator/api/http_response.h"
#include "coordinator/api/json_depth.h"
#include "coordinator/api/openai_protocol.h"
#include "coordinator/scheduler/engine_errors.h"

namespace glm::api {
namespace {

using json = nlohmann::json;

void SendAnthropicError(httplib::Response& res, absl::Status status) {
  // Anthropic's own wording for requests that do not fit, which its clients act on: Claude Code
  // compacts the conversation on "prompt is too long" and retries with a smaller max_tokens on
  // "input length and `max_tokens` exceed context limit: A + B > C". Neither can ever run as sent
  // (400, not a retryable 429).
  if (const std::optional<ContextOverflow> o = ContextOverflowOf(status); o.has_value()) {
    status = absl::InvalidArgumentError(
        o->max_tokens == 0
            ? absl::StrCat("prompt is too long: ", o->prompt_tokens, " tokens > ", o->context_tokens - 1, " maximum")
            : absl::StrCat("input length and `max_tokens` exceed context limit: ", o->prompt_tokens, " + ",
                           o->max_tokens, " > ", o->context_tokens,
                           ", decrease input length or `max_tokens` and try again"));
  } else if (scheduler::ExceedsKvCache(status)) {
    status = absl::InvalidArgumentError(absl::StrCat("prompt is too long: ", status.message()));
  }
  int http = 500;
  json body = AnthropicErrorJson(status, &http);
  res.status = http;
  if (http == 429 || http == 529) res.set_header("Retry-After", "1");
  res.set_content(DumpJson(body), "application/json");
}

// Anthropic's not_found wording ("model: NAME"), which its clients show as is.
absl::Status CheckModel(const TextFrontend& frontend, const std::string& name) {
  if (frontend.AcceptsModelName(name)) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("model: ", name, " (serving '", frontend.model().name, "')"));
}

// One message (Anthropic requests have one choice).
class AnthropicFormat : public ResponseFormat {
 public:
  AnthropicFormat(std::string id, std::string model) : builder_(std::move(id), std::move(model)) {}
  void Accumulate(size_t, const OutputDelta& delta) override { builder_.Accumulate(delta); }
  json Final() const override { return builder_.Final(); }
  std::string StreamChunks(size_t, const OutputDelta& delta, bool) override { return builder_.StreamEvents(delta); }
  std::string StreamError(const absl::Status& status) override {
    return AnthropicResponseBuilder::StreamError(status);
  }
  void SendError(httplib::Response& res, const absl::Status& status) const override {
    SendAnthropicError(res, status);
  }

 private:
  AnthropicResponseBuilder builder_;
};

}  // namespace

AnthropicMessagesEndpoint::AnthropicMessagesEndpoint(scheduler::Engine* engine, const TextFrontend* frontend,
                                                     ServingMetrics* metrics, const std::atomic<bool>* stopping,
                                                     scheduler::StreamInterval interval)
    : engine_(engine), frontend_(frontend), metrics_(metrics), stopping_(stopping), interval_(interval) {}

void AnthropicMessagesEndpoint::Register(httplib::Server* server) {
  server->Post("/v1/messages", [this](const httplib::Request& req, httplib::Response& res) {
    HandleMessages(req, res);
  });
  server->Post("/v1/messages/count_tokens", [this](const httplib::Request& req, httplib::Response& res) {
    HandleCountTokens(req, res);
  });
}

void AnthropicMessagesEndpoint::HandleCountTokens(const httplib::Request& req, httplib::Response& res) {
  auto body = ParseRequestBody(req.body);
  if (!body.ok()) return SendAnthropicError(res, body.status());
  auto parsed = ParseAnthropicRequest(*body, frontend_->model().name, /*count_only=*/true, &req.body);
  if (!parsed.ok()) return SendAnthropicError(res, parsed.status());
  if (auto s = CheckModel(*frontend_, parsed->model); !s.ok()) return SendAnthropicError(res, s);
  // Encoded as a generation would be, so the count is the input the model would read; a prompt
  // longer than the context is still counted.
  auto ids = frontend_->EncodeChat(parsed->api);
  if (!ids.ok()) return SendAnthropicError(res, ids.status());
  res.set_content(DumpJson({{"input_tokens", ids->size()}}), "application/json");
}

void AnthropicMessagesEndpoint::HandleMessages(const httplib::Request& req, httplib::Response& res) {
  // Refusals count as "rejected" and are logged, as on the OpenAI endpoints.
  auto reject = [&](const absl::Status& status) {
    RecordRejected(metrics_, req.path, status);
    SendAnthropicError(res, status);
  };
  if (stopping_->load()) return reject(scheduler::ShuttingDownError());
  auto body = ParseRequestBody(req.body);
  if (!body.ok()) return reject(body.status());
  auto parsed = ParseAnthropicRequest(*body, frontend_->model().name, /*count_only=*/false, &req.body);
  if (!parsed.ok()) return reject(parsed.status());
  if (auto s = CheckModel(*frontend_, parsed->model); !s.ok()) return reject(s);
  const std::string id = frontend_->NewRequestId("msg", "_");  // Anthropic's msg_...
  parsed->api.request_id = id;
  auto prepared = frontend_->Prepare(parsed->api);
  if (!prepared.ok()) return reject(prepared.status());
  prepared->output.tool_call_id_head = "toolu";

  auto state = std::make_shared<ResponseState>();
  state->format = std::make_unique<AnthropicFormat>(id, parsed->model);
  if (auto s = SubmitSingleChoice(engine_, frontend_->model().tokenizer, metrics_, interval_, "anthropic-messages",
                                  *std::move(prepared), state.get());
      !s.ok())
    return SendAnthropicError(res, s);
  SendResponse(state, parsed->stream, id, engine_, stopping_, req, res);
}

}  // namespace glm::api
