#include "coordinator/api/openai_http.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/api/anthropic_http.h"
#include "coordinator/api/anthropic_protocol.h"
#include "coordinator/api/api_keys.h"
#include "coordinator/api/api_status.h"
#include "coordinator/api/elastic_task_queue.h"
#include "coordinator/api/exclusive_listen.h"
#include "coordinator/api/http_response.h"
#include "coordinator/api/json_depth.h"
#include "coordinator/api/openai_protocol.h"
#include "coordinator/api/openai_responses.h"
#include "coordinator/api/request_output.h"
#include "coordinator/api/tokenize_endpoint.h"
#include "coordinator/scheduler/engine_errors.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace glm::api {
namespace {

using json = nlohmann::json;

// How often a request waiting for its first choice's first token looks at the server's stop.
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);
constexpr size_t kMaxBodyBytes = 64u << 20;
constexpr time_t kKeepAliveSeconds = 2;

int HttpCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition: return 400;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnimplemented: return 501;
    default: return 500;
  }
}

// OpenAI's error object: {"error": {"message", "type", "param", "code"}}.
json ErrorJson(const absl::Status& status, const std::string& code_override = "") {
  const int http = HttpCode(status.code());
  std::string type = "internal_error";
  json code = nullptr;
  switch (http) {
    case 400: type = "invalid_request_error"; break;
    case 404: type = "invalid_request_error"; code = "model_not_found"; break;
    case 429: type = "rate_limit_error"; code = "rate_limit_exceeded"; break;
    case 503: type = "service_unavailable_error"; code = "service_unavailable"; break;
    case 504: type = "timeout_error"; break;
    default: break;
  }
  if (!code_override.empty()) code = code_override;
  const std::string param = FieldOf(status);
  return {{"error",
           {{"message", std::string(status.message())},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code}}}};
}

void SendError(httplib::Response& res, const absl::Status& status, const std::string& code_override = "") {
  // A request that can never fit the KV cache is OpenAI's context_length_exceeded (400): a 429
  // would have clients retry it for ever.
  if (scheduler::ExceedsKvCache(status)) {
    res.status = 400;
    res.set_content(DumpJson(ErrorJson(absl::InvalidArgumentError(status.message()), "context_length_exceeded")),
                    "application/json");
    return;
  }
  if (ExceedsContext(status)) {
    res.status = 400;
    res.set_content(DumpJson(ErrorJson(status, "context_length_exceeded")), "application/json");
    return;
  }
  res.status = HttpCode(status.code());
  // A full queue clears in about a step or two; tell well-behaved clients to retry soon.
  if (res.status == 429 || res.status == 503) res.set_header("Retry-After", "1");
  res.set_content(DumpJson(ErrorJson(status, code_override)), "application/json");
}

// OpenAI chat/completions bodies: one builder per choice (they point into the request, which
// the format owns for as long as the response lives).
class OpenAiFormat : public ResponseFormat {
 public:
  OpenAiFormat(std::unique_ptr<OpenAiRequest> request, size_t choices)
      : request_(std::move(request)), builders_(choices) {}
  std::unique_ptr<OpenAiResponseBuilder>& builder(size_t choice) { return builders_[choice]; }

  void Accumulate(size_t choice, const OutputDelta& delta) override { builders_[choice]->Accumulate(delta); }
  json Final() const override { return OpenAiResponseBuilder::FinalOf(Builders()); }
  std::string StreamChunks(size_t choice, const OutputDelta& delta, bool last) override {
    std::string chunks = builders_[choice]->StreamChoiceChunks(delta);
    if (last) chunks += builders_.front()->StreamEnd(OpenAiResponseBuilder::UsageOf(Builders()));
    return chunks;
  }
  std::string StreamError(const absl::Status& status) override {
    return OpenAiResponseBuilder::StreamError(ErrorJson(status));
  }
  void SendError(httplib::Response& res, const absl::Status& status) const override { api::SendError(res, status); }

 private:
  std::vector<const OpenAiResponseBuilder*> Builders() const {
    std::vector<const OpenAiResponseBuilder*> b;
    for (const auto& builder : builders_) b.push_back(builder.get());
    return b;
  }
  std::unique_ptr<OpenAiRequest> request_;
  std::vector<std::unique_ptr<OpenAiResponseBuilder>> builders_;
};

// A Responses API body (one response, one choice); the builder points into the request, which
// the format owns.
class ResponsesFormat : public ResponseFormat {
 public:
  // `store` (may be null) keeps the finished reply when the request asked for it.
  ResponsesFormat(std::unique_ptr<ResponsesRequest> request, std::string id, int64_t created_at, ResponseStore* store)
      : request_(std::move(request)), store_(store), builder_(request_.get(), std::move(id), created_at) {}
  void Accumulate(size_t, const OutputDelta& delta) override {
    builder_.Accumulate(delta);
    Keep(delta);
  }
  json Final() const override { return builder_.Final(); }
  std::string StreamChunks(size_t, const OutputDelta& delta, bool) override {
    std::string events = builder_.StreamEvents(delta);
    Keep(delta);
    return events;
  }
  std::string StreamError(const absl::Status& status) override { return builder_.StreamError(ErrorJson(status)); }
  void SendError(httplib::Response& res, const absl::Status& status) const override { api::SendError(res, status); }

 private:
  // A finished reply (not an aborted one) joins the store: its object and the conversation it ends.
  void Keep(const OutputDelta& delta) {
    if (!delta.finished || delta.finish_reason == "abort" || store_ == nullptr || !request_->store) return;
    json conversation = request_->conversation;
    if (json turn = builder_.AssistantTurn(); !turn.is_null()) conversation.push_back(std::move(turn));
    store_->Put(builder_.id(), {builder_.Completed(), std::move(conversation), request_->holder});
  }

  std::unique_ptr<ResponsesRequest> request_;
  ResponseStore* store_;
  ResponsesBuilder builder_;
};

// The methods the route at `path` takes ("Allow"), exactly as registered in Start; "" when no
// route has this path (then it is 404, never 405).
std::string AllowedMethods(const std::string& path) {
  for (const char* post : {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/tokenize", "/v1/tokenize",
                           "/detokenize", "/v1/detokenize", "/v1/messages", "/v1/messages/count_tokens"})
    if (path == post) return "POST, OPTIONS";
  if (path == "/health" || path == "/metrics" || path == "/v1/models") return "GET, OPTIONS";
  if (path == "/ping") return "GET, POST, OPTIONS";
  // /v1/models/(.+): a model name may hold slashes; /v1/responses/([^/]+).
  if (absl::StartsWith(path, "/v1/models/") && path.size() > 11) return "GET, OPTIONS";
  if (absl::StartsWith(path, "/v1/responses/") && path.size() > 14 && path.find('/', 14) == std::string::npos)
    return "GET, DELETE, OPTIONS";
  return "";
}

}  // namespace

OpenAiHttpServer::OpenAiHttpServer(scheduler::Engine* engine, const TextFrontend* frontend, ServingMetrics* metrics,
                                   const std::atomic<bool>* serving, const std::atomic<bool>* stopping, int threads,
                                   scheduler::StreamInterval interval, const ApiKeys* keys, int max_threads)
    : engine_(engine),
      frontend_(frontend),
      metrics_(metrics),
      serving_(serving),
      stopping_(stopping),
      threads_(threads > 0 ? threads : 16),
      max_threads_(std::max(threads_, max_threads)),
      interval_(interval),
      created_(absl::ToUnixSeconds(absl::Now())),
      anthropic_(std::make_unique<AnthropicMessagesEndpoint>(engine, frontend, metrics, stopping, interval)),
      keys_(keys) {}

OpenAiHttpServer::~OpenAiHttpServer() { Stop(); }

absl::Status OpenAiHttpServer::Start(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535)
    return absl::InvalidArgumentError(absl::StrCat("http_listen '", listen, "' is not HOST:PORT"));
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";

  server_ = std::make_unique<httplib::Server>();
  ListenExclusively(server_.get(), listen_socket_);
  const int threads = threads_;
  // An open request holds a thread for its generation: the pool grows past `threads` so health,
  // metrics and refusals (429) still get one, up to room for every request the engine may hold.
  const int max_threads = max_threads_;
  server_->new_task_queue = [threads, max_threads] { return new ElasticTaskQueue(threads, max_threads); };
  server_->set_payload_max_length(kMaxBodyBytes);
  // httplib's stop() waits for idle keep-alive connections to time out (it does not interrupt
  // them), so this bounds how long Shutdown can take; clients simply reconnect.
  server_->set_keep_alive_timeout(kKeepAliveSeconds);

  // API keys (api_keys.h): every route but health, metrics and CORS preflights needs one when
  // keys are configured; a refusal is 401 in the shape of the API that was called.
  server_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (keys_ == nullptr || !keys_->enabled() || req.method == "OPTIONS" || req.path == "/health" ||
        req.path == "/ping" || req.path == "/metrics" ||
        keys_->Accepts(req.get_header_value("Authorization"), req.get_header_value("x-api-key")))
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string message =
        "this server needs an API key: send \"Authorization: Bearer KEY\" or \"x-api-key: KEY\"";
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer");  // (Access-Control-Allow-Origin: the post-routing handler's)
    const json body =
        absl::StartsWith(req.path, "/v1/messages")
            ? json{{"type", "error"}, {"error", {{"type", "authentication_error"}, {"message", message}}}}
            : json{{"error",
                    {{"message", message}, {"type", "invalid_request_error"}, {"param", nullptr}, {"code", "invalid_api_key"}}}};
    res.set_content(DumpJson(body), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  });
  auto health = [this](const httplib::Request&, httplib::Response& res) {
    const bool ok = serving_->load() && !stopping_->load() && !engine_->draining();
    res.status = ok ? 200 : 503;
    res.set_content(ok ? "" : "not serving\n", "text/plain");
  };
  server_->Get("/health", health);
  // vLLM's /ping (SageMaker's health route), GET or POST: the same answer.
  server_->Get("/ping", health);
  server_->Post("/ping", health);
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    if (const tokenizer::Tokenizer* t = frontend_->model().tokenizer; t != nullptr) {
      const tokenizer::BpeModel::CacheStats words = t->word_cache_stats();
      metrics_->SetTokenizerWordCache(static_cast<int64_t>(words.words), words.hits, words.misses);
    }
    const TextFrontend::StructuredOutputStats so = frontend_->structured_output_stats();
    metrics_->SetStructuredOutputs(so.requests, so.masks.hits, so.masks.misses, so.masks.compute_seconds);
    const ResponseStore::Stats stored = responses_.stats();
    metrics_->SetStoredResponses(stored.entries, stored.bytes, stored.evicted);
    res.set_content(metrics_->Render(engine_->GetLoad()), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) { HandleModels(res); });
  // OpenAI's "retrieve model" (the SDKs' models.retrieve): any name the server accepts.
  server_->Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    if (auto s = frontend_->CheckModelName(name); !s.ok()) return SendError(res, s);
    res.set_content(DumpJson(ModelJson(name)), "application/json");
  });
  // Anthropic's Messages API (anthropic_http.h), for Anthropic-API agent harnesses.
  anthropic_->Register(server_.get());
  // vLLM's tokenizer endpoints (tokenize_endpoint.h), also under /v1 as some servers put them.
  for (const char* path : {"/tokenize", "/v1/tokenize"})
    server_->Post(path, [this](const httplib::Request& req, httplib::Response& res) {
      HandleTokenizer(req, res, &TokenizeBody);
    });
  for (const char* path : {"/detokenize", "/v1/detokenize"})
    server_->Post(path, [this](const httplib::Request& req, httplib::Response& res) {
      HandleTokenizer(req, res, [](const TextFrontend& frontend, const nlohmann::json& body, const std::string*) {
        return DetokenizeBody(frontend, body);
      });
    });
  server_->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleGenerate(Kind::kChat, req, res);
  });
  server_->Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleGenerate(Kind::kCompletions, req, res);
  });
  server_->Post("/v1/responses", [this](const httplib::Request& req, httplib::Response& res) {
    HandleResponses(req, res);
  });
  // Stored replies (response_store.h): read one back, or delete it.
  server_->Get(R"(/v1/responses/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    auto entry = responses_.Get(id, Holder(req));
    if (!entry.has_value())
      return SendError(res, absl::NotFoundError(absl::StrCat("no stored response '", id, "'")), "not_found");
    res.set_content(DumpJson(entry->response), "application/json");
  });
  server_->Delete(R"(/v1/responses/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    if (!responses_.Delete(id, Holder(req)))
      return SendError(res, absl::NotFoundError(absl::StrCat("no stored response '", id, "'")), "not_found");
    res.set_content(DumpJson(json{{"id", id}, {"object", "response.deleted"}, {"deleted", true}}), "application/json");
  });
  // CORS, as vLLM and llama.cpp's server allow by default: browser front ends (chat UIs, notebooks)
  // call the API from another origin. A preflight (OPTIONS) on any path is answered here; every
  // response carries the allow-origin header.
  server_->Options(R"(.*)", [](const httplib::Request& req, httplib::Response& res) {
    res.status = 204;
    res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
    const std::string asked = req.get_header_value("Access-Control-Request-Headers");
    res.set_header("Access-Control-Allow-Headers", asked.empty() ? "Authorization, Content-Type" : asked);
    res.set_header("Access-Control-Max-Age", "86400");
  });
  server_->set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    res.set_header("Access-Control-Allow-Origin", "*");
  });
  // Unknown paths and methods get OpenAI-shaped errors too (handlers that set a body keep it).
  server_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    // A route that exists, asked with another method, is 405 (with Allow); any other path 404.
    const std::string allow = AllowedMethods(req.path);
    if (res.status == 404 && !allow.empty()) {
      res.status = 405;
      res.set_header("Allow", allow);
    }
    // cpp-httplib reads an application/x-www-form-urlencoded body (curl -d without a JSON
    // Content-Type) only up to 8 KiB; JSON bodies may be up to kMaxBodyBytes.
    const bool form = absl::StartsWith(req.get_header_value("Content-Type"), "application/x-www-form-urlencoded");
    absl::Status s =
        res.status == 404   ? absl::NotFoundError(absl::StrCat("no route for ", req.method, " ", req.path))
        : res.status == 405 ? absl::InvalidArgumentError(absl::StrCat(req.method, " is not allowed on ", req.path,
                                                                      " (allowed: ", allow, ")"))
        : res.status == 413 && form
            ? InvalidField("body", "sent as application/x-www-form-urlencoded is limited to 8 KiB; send it with "
                                   "Content-Type: application/json")
        : res.status == 413 ? InvalidField("body", absl::StrCat("is larger than this server's limit of ",
                                                                kMaxBodyBytes >> 20, " MiB (", kMaxBodyBytes, " bytes)"))
        // The HTTP library refuses a POST without a body length (curl -X POST with no -d sends one).
        : res.status == 400 && (req.method == "POST" || req.method == "PUT") && !req.has_header("Content-Length") &&
                  !req.has_header("Transfer-Encoding")
            ? absl::InvalidArgumentError(absl::StrCat(req.method, " ", req.path, " needs a body length: send "
                                                      "Content-Length (curl -d '' sends 0) or a chunked body"))
                            : absl::InvalidArgumentError(absl::StrCat("HTTP ", res.status));
    const int status = res.status;
    if (absl::StartsWith(req.path, "/v1/messages")) {  // Anthropic clients read Anthropic's error shape
      res.set_content(DumpJson(AnthropicErrorJson(s, nullptr)), "application/json");
      res.status = status;
      return;
    }
    res.set_content(DumpJson(ErrorJson(s, status == 404   ? "not_found"
                                          : status == 405 ? "method_not_allowed"
                                          : status == 413 ? "request_too_large"
                                                          : "")),
                    "application/json");
    res.status = status;
  });

  if (port == 0) {
    port_ = server_->bind_to_any_port(host);
    if (port_ < 0) return absl::UnavailableError(absl::StrCat("cannot bind HTTP on ", host));
  } else {
    if (!server_->bind_to_port(host, port))
      return absl::UnavailableError(absl::StrCat("cannot bind HTTP on ", listen, " (in use?)"));
    port_ = port;
  }
  SetListenBacklog(*listen_socket_, kListenBacklog);
  listen_returned_ = false;
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_returned_ = true;
  });
  return absl::OkStatus();
}

void OpenAiHttpServer::Stop() {
  if (server_ == nullptr) return;
  // httplib's stop() does nothing until the accept loop has started (is_running()): a stop right
  // after Start() would be lost and the join below would wait forever, so wait for the loop first.
  while (thread_.joinable() && !server_->is_running() && !listen_returned_)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

nlohmann::json OpenAiHttpServer::ModelJson(const std::string& id) const {
  const ServedModel& m = frontend_->model();
  // OpenAI's model object plus the fields of Anthropic's (type, display_name, created_at), so
  // the Anthropic SDKs' models.list / retrieve read it too; each side ignores the other's.
  return {{"id", id},
          {"object", "model"},
          {"created", created_},
          {"owned_by", "glm"},
          {"root", m.name},
          {"parent", nullptr},
          {"max_model_len", m.max_context},
          {"type", "model"},
          {"display_name", id},
          {"created_at", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(created_), absl::UTCTimeZone())}};
}

void OpenAiHttpServer::HandleModels(httplib::Response& res) {
  const ServedModel& m = frontend_->model();
  json data = json::array();
  data.push_back(ModelJson(m.name));
  for (const auto& a : m.aliases) data.push_back(ModelJson(a));
  // Anthropic's list fields next to OpenAI's: one page holds every name.
  json list = {{"object", "list"}, {"has_more", false}, {"first_id", data.front()["id"]}, {"last_id", data.back()["id"]}};
  list["data"] = std::move(data);
  res.set_content(DumpJson(list), "application/json");
}

void OpenAiHttpServer::HandleTokenizer(const httplib::Request& req, httplib::Response& res,
                                       absl::StatusOr<nlohmann::json> (*body_fn)(const TextFrontend&,
                                                                                 const nlohmann::json&,
                                                                                 const std::string* raw_body)) {
  auto body = ParseRequestBody(req.body);
  if (!body.ok()) return SendError(res, body.status());
  auto out = body_fn(*frontend_, *body, &req.body);
  if (!out.ok()) return SendError(res, out.status());
  res.set_content(DumpJson(*out), "application/json");
}

void OpenAiHttpServer::HandleGenerate(Kind kind, const httplib::Request& req, httplib::Response& res) {
  // Every refusal before the engine has the request counts as "rejected" too, as the engine's own
  // (queue full, draining) do in submit below: glm:request_failures_total counts invalid requests.
  // Each is also logged (one JSON line), so an operator sees why clients' requests fail.
  auto reject = [&](const absl::Status& status) {
    RecordRejected(metrics_, req.path, status);
    SendError(res, status);
  };
  const absl::Time arrival = absl::Now();  // every choice's TTFT and latency count from here
  if (stopping_->load()) return reject(scheduler::ShuttingDownError());
  auto body = ParseRequestBody(req.body);
  if (!body.ok()) return reject(body.status());
  const OpenAiEndpoint endpoint = kind == Kind::kChat ? OpenAiEndpoint::kChat : OpenAiEndpoint::kCompletions;
  auto parsed = ParseOpenAiRequest(endpoint, *body, frontend_->model().name, &req.body);
  if (!parsed.ok()) return reject(parsed.status());
  auto owned_request = std::make_unique<OpenAiRequest>(std::move(*parsed));
  OpenAiRequest* request = owned_request.get();
  if (auto s = frontend_->CheckModelName(request->model); !s.ok()) return reject(s);
  const std::string id = frontend_->NewRequestId(kind == Kind::kChat ? "chatcmpl" : "cmpl");
  request->api.request_id = id;
  // Every prompt prepared (tokenized, validated) before anything is submitted: a bad one
  // fails the whole request with its field named.
  std::vector<PreparedRequest> prepared;
  std::vector<std::string> echo_texts;  // echo: each prompt as the client sent it
  const size_t n_prompts = std::max<size_t>(1, request->prompts.size());
  for (size_t p = 0; p < n_prompts; ++p) {
    ApiRequest a = request->api;
    if (!request->prompts.empty()) {
      const PromptInput& in = request->prompts[p];
      a.input = in.input;
      a.text = in.text;
      a.token_ids = in.token_ids;
      a.input_field = in.field;
    }
    auto one = frontend_->Prepare(a);
    if (!one.ok()) return reject(one.status());
    if (request->echo) {
      std::string text = a.text;
      const tokenizer::Tokenizer* tok = frontend_->model().tokenizer;
      if (a.input == ApiRequest::Input::kTokenIds && tok != nullptr) {
        auto decoded = tok->Decode(one->engine_request.prompt);
        if (!decoded.ok()) return reject(InvalidField(a.input_field, decoded.status().message()));
        text = *decoded;
      }
      echo_texts.push_back(std::move(text));
    }
    prepared.push_back(*std::move(one));
  }

  // One engine request per choice: choice k = prompt · n + i continues prompt `prompt`; ids
  // id, id-1, ...; seeds seed + i when the client gave one.
  auto state = std::make_shared<ResponseState>();
  const size_t n_choices = prepared.size() * request->n;
  state->choices.resize(n_choices);
  auto owned_format = std::make_unique<OpenAiFormat>(std::move(owned_request), n_choices);
  OpenAiFormat* format = owned_format.get();
  state->format = std::move(owned_format);
  const int64_t created = absl::ToUnixSeconds(absl::Now());
  const char* api_kind = kind == Kind::kChat ? "openai-chat" : "openai-completions";
  auto submit = [&](size_t p, int i) -> absl::Status {
    const int k = static_cast<int>(p) * request->n + i;
    scheduler::GenerationRequest g = prepared[p].engine_request;
    if (k > 0) g.request_id = absl::StrCat(id, "-", k);
    // Each choice's output follows the format on its own.
    if (g.constraint != nullptr) g.constraint = g.constraint->Clone();
    if (g.sampling.seed.has_value()) *g.sampling.seed += static_cast<uint64_t>(i);
    // The prompt is scored once, by its first choice; the others start from its cached blocks.
    if (i > 0) g.sampling.prompt_logprobs = -1;
    ResponseChoice& c = state->choices[k];
    c.id = g.request_id;
    // Each choice is a request of the metrics, as each is one of the engine's (and vLLM's): its
    // prompt counted, its latencies from the client's request (choices after the first start
    // once the first has its first token).
    c.tracker = std::make_unique<RequestTracker>(metrics_, c.id, api_kind, static_cast<int>(g.prompt.size()), arrival);
    auto stream = engine_->Submit(std::move(g));
    if (!stream.ok()) {
      c.tracker->Finish("rejected");
      c.tracker.reset();
      return stream.status();
    }
    c.stream = std::move(*stream);
    c.stream->SetInterval(interval_);
    c.output = std::make_unique<RequestOutput>(frontend_->model().tokenizer, prepared[p].output);
    auto& builder = format->builder(k);
    builder = std::make_unique<OpenAiResponseBuilder>(request, frontend_, id, created, k, static_cast<int>(p));
    builder->SetPromptTokenIds(prepared[p].engine_request.prompt, format->builder(p * request->n).get());
    if (request->echo) builder->SetEchoPrompt(echo_texts[p]);
    return absl::OkStatus();
  };
  auto fail = [&](const absl::Status& status) {
    state->AbortUnfinished(engine_);
    for (ResponseChoice& c : state->choices)
      if (c.tracker != nullptr) c.tracker->Finish("abort");
    SendError(res, status);
  };
  // Each prompt's first choice goes first. The others follow once it has produced its first
  // token: by then the prompt's full blocks are in the prefix cache, so n choices cost one
  // prefill, not n (admitted together, each would compute the whole prompt).
  for (size_t p = 0; p < prepared.size(); ++p)
    if (auto s = submit(p, 0); !s.ok()) return fail(s);
  for (size_t p = 0; p < prepared.size() && request->n > 1; ++p) {
    ResponseChoice& first = state->choices[p * request->n];
    for (scheduler::GenerationEvent e; !first.pending.has_value();) {
      if (stopping_->load()) return fail(scheduler::ShuttingDownError());
      if (first.stream->Next(&e, kPollInterval)) first.pending = std::move(e);
    }
    for (int i = 1; i < request->n; ++i)
      if (auto s = submit(p, i); !s.ok()) return fail(s);
  }
  SendResponse(state, request->stream, id, engine_, stopping_, req, res);
}

std::string OpenAiHttpServer::Holder(const httplib::Request& req) const {
  if (keys_ == nullptr) return "";
  return keys_->Holder(req.get_header_value("Authorization"), req.get_header_value("x-api-key"));
}

void OpenAiHttpServer::HandleResponses(const httplib::Request& req, httplib::Response& res) {
  // Refusals count as "rejected" and are logged, as for chat and completions.
  auto reject = [&](const absl::Status& status) {
    RecordRejected(metrics_, req.path, status);
    SendError(res, status);
  };
  if (stopping_->load()) return reject(scheduler::ShuttingDownError());
  auto body = ParseRequestBody(req.body);
  if (!body.ok()) return reject(body.status());
  auto parsed = ParseResponsesRequest(*body, frontend_->model().name, &req.body, &responses_, Holder(req));
  if (!parsed.ok()) return reject(parsed.status());
  auto request = std::make_unique<ResponsesRequest>(*std::move(parsed));
  if (auto s = frontend_->CheckModelName(request->model); !s.ok()) return reject(s);
  const std::string id = frontend_->NewRequestId("resp", "_");  // OpenAI's resp_...
  request->api.request_id = id;
  auto prepared = frontend_->Prepare(request->api);
  if (!prepared.ok()) return reject(prepared.status());

  auto state = std::make_shared<ResponseState>();
  const bool stream = request->stream;
  state->format =
      std::make_unique<ResponsesFormat>(std::move(request), id, absl::ToUnixSeconds(absl::Now()), &responses_);
  if (auto s = SubmitSingleChoice(engine_, frontend_->model().tokenizer, metrics_, interval_, "openai-responses",
                                  *std::move(prepared), state.get());
      !s.ok())
    return SendError(res, s);
  SendResponse(state, stream, id, engine_, stopping_, req, res);
}

}  // namespace glm::api
