#include "coordinator/api/load_client.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "protos/inference.grpc.pb.h"

namespace glm::api {
namespace {

namespace pb = glm::inference::v1;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxErrorBody = 4096;

// Arrival times of output tokens, relative to the send.
class Timeline {
 public:
  Timeline() : start_(Clock::now()) {}

  double Elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  // `tokens` arrived now. split: the gap since the last arrival is shared evenly among them
  // (gRPC, where the count is known); otherwise they are content chunks read at once (OpenAI
  // SSE events, several when the socket held more than one): one gap each, the first the time
  // since the last arrival and the others 0, as vLLM's bench serve stamps each chunk it parses.
  void Arrived(int tokens, bool split) {
    if (tokens <= 0) return;
    const double now = Elapsed();
    if (count_ == 0) {
      ttft_ = now;
      if (!split) itl_.insert(itl_.end(), tokens - 1, 0.0);
    } else if (split) {
      const double gap = (now - last_) / tokens;
      for (int i = 0; i < tokens; ++i) itl_.push_back(gap);
    } else {
      itl_.push_back(now - last_);
      itl_.insert(itl_.end(), tokens - 1, 0.0);
    }
    last_ = now;
    count_ += tokens;
  }

  int count() const { return count_; }
  double ttft() const { return ttft_; }
  std::vector<double>& itl() { return itl_; }

 private:
  Clock::time_point start_;
  double ttft_ = 0;
  double last_ = 0;
  int count_ = 0;
  std::vector<double> itl_;
};

// `detail`: what the stream held, for the error of one that carried no output (e.g. an SSE
// stream's events, finish reason and usage).
void Finish(Timeline& timeline, LoadRequestResult* r, const std::string& detail = "") {
  r->latency_s = timeline.Elapsed();
  r->ttft_s = timeline.ttft();
  r->itl_s = std::move(timeline.itl());
  if (r->success && timeline.count() == 0) {
    r->success = false;
    r->error = "the stream ended without output tokens";
    if (!detail.empty()) absl::StrAppend(&r->error, " (", detail, ")");
  }
}

// ---------------------------------------------------------------------------------------------
// gRPC: glm.inference.v1.Inference/Generate.

class GrpcLoadClient final : public LoadClient {
 public:
  GrpcLoadClient(const LoadClientOptions& options, std::shared_ptr<grpc::Channel> channel)
      : options_(options), stub_(pb::Inference::NewStub(channel)) {}

  const std::string& model() const override { return options_.model; }

  LoadRequestResult Send(const LoadPrompt& prompt, absl::Time deadline) override {
    pb::GenerateRequest request;
    if (!options_.model.empty()) request.set_model(options_.model);
    if (!prompt.token_ids.empty()) {
      request.mutable_token_ids()->mutable_ids()->Add(prompt.token_ids.begin(), prompt.token_ids.end());
    } else {
      request.set_text(prompt.text);
    }
    pb::SamplingParameters* s = request.mutable_sampling();
    s->set_max_tokens(prompt.output_len);
    s->set_ignore_eos(options_.ignore_eos);
    s->set_temperature(static_cast<float>(options_.temperature));
    request.set_priority(options_.priority);

    LoadRequestResult r;
    r.prompt_len = prompt.prompt_len;
    grpc::ClientContext ctx;
    if (deadline != absl::InfiniteFuture()) ctx.set_deadline(absl::ToChronoTime(deadline));
    if (!options_.api_key.empty()) ctx.AddMetadata("authorization", absl::StrCat("Bearer ", options_.api_key));
    Timeline timeline;
    auto reader = stub_->Generate(&ctx, request);
    pb::GenerateResponse response;
    pb::Usage usage;
    while (reader->Read(&response)) {
      timeline.Arrived(response.token_ids_size(), /*split=*/true);
      if (response.has_usage()) usage = response.usage();
    }
    const grpc::Status status = reader->Finish();
    r.success = status.ok();
    if (!status.ok()) r.error = absl::StrCat("gRPC ", static_cast<int>(status.error_code()), ": ", status.error_message());
    if (usage.prompt_tokens() > 0) r.prompt_len = usage.prompt_tokens();
    r.cached_tokens = usage.cached_tokens();
    r.output_tokens = std::max(usage.completion_tokens(), timeline.count());
    Finish(timeline, &r);
    return r;
  }

 private:
  LoadClientOptions options_;
  std::unique_ptr<pb::Inference::Stub> stub_;
};

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible HTTP with SSE streaming.

// Splits an SSE byte stream into `data:` payloads and reads the fields that matter: OpenAI chat /
// completions chunks, or the typed events of Anthropic messages and OpenAI responses streams.
class SseReader {
 public:
  explicit SseReader(LoadBackend backend) : backend_(backend) {}

  // Feeds bytes; returns how many content chunks (chunks with non-empty text) they completed.
  int Feed(const char* data, size_t size) {
    buffer_.append(data, size);
    int content_chunks = 0;
    for (;;) {
      size_t end = buffer_.find("\n\n");
      size_t skip = 2;
      const size_t crlf = buffer_.find("\r\n\r\n");
      if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) {
        end = crlf;
        skip = 4;
      }
      if (end == std::string::npos) break;
      const std::string event = buffer_.substr(0, end);
      buffer_.erase(0, end + skip);
      for (absl::string_view line : SplitLines(event)) {
        if (!absl::ConsumePrefix(&line, "data:")) continue;
        absl::ConsumePrefix(&line, " ");
        if (OnData(line)) ++content_chunks;
      }
    }
    return content_chunks;
  }

  bool done() const { return done_; }
  const std::string& error() const { return error_; }
  int prompt_tokens() const { return prompt_tokens_; }
  int completion_tokens() const { return completion_tokens_; }
  int cached_tokens() const { return cached_tokens_; }
  // What the stream held, for a request that got no output text.
  std::string Summary() const {
    const char* end = backend_ == LoadBackend::kAnthropicMessages ? "message_stop"
                      : backend_ == LoadBackend::kOpenAiResponses ? "response end"
                                                                  : "[DONE]";
    return absl::StrCat(events_, " SSE events, ", end, done_ ? " received" : " missing", ", finish_reason ",
                        finish_reason_.empty() ? "none" : finish_reason_, ", usage completion_tokens ",
                        completion_tokens_);
  }

 private:
  static std::vector<absl::string_view> SplitLines(absl::string_view event) {
    std::vector<absl::string_view> lines;
    while (!event.empty()) {
      const size_t nl = event.find('\n');
      absl::string_view line = event.substr(0, nl);
      absl::ConsumeSuffix(&line, "\r");
      lines.push_back(line);
      if (nl == absl::string_view::npos) break;
      event.remove_prefix(nl + 1);
    }
    return lines;
  }

  static bool NonEmptyString(const json& obj, const char* key) {
    auto it = obj.find(key);
    return it != obj.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
  }

  static int IntAt(const json& obj, const char* key) {
    auto it = obj.find(key);
    return it != obj.end() && it->is_number_integer() ? it->get<int>() : 0;
  }

  // Anthropic messages events. True when the event carried output.
  bool OnAnthropicEvent(const std::string& type, const json& j) {
    if (type == "message_start" && j.contains("message") && j["message"].is_object() &&
        j["message"].contains("usage") && j["message"]["usage"].is_object()) {
      // Anthropic's input_tokens leave out the prefix-cache reads.
      const json& u = j["message"]["usage"];
      cached_tokens_ = IntAt(u, "cache_read_input_tokens");
      prompt_tokens_ = IntAt(u, "input_tokens") + cached_tokens_ + IntAt(u, "cache_creation_input_tokens");
    } else if (type == "content_block_delta" && j.contains("delta") && j["delta"].is_object()) {
      const json& d = j["delta"];
      return NonEmptyString(d, "text") || NonEmptyString(d, "thinking") || NonEmptyString(d, "partial_json");
    } else if (type == "message_delta") {
      if (j.contains("usage") && j["usage"].is_object()) completion_tokens_ = IntAt(j["usage"], "output_tokens");
      if (j.contains("delta") && j["delta"].is_object() && NonEmptyString(j["delta"], "stop_reason"))
        finish_reason_ = j["delta"]["stop_reason"].get<std::string>();
    } else if (type == "message_stop") {
      done_ = true;
    }
    return false;
  }

  // OpenAI responses events. True when the event carried output.
  bool OnResponsesEvent(const std::string& type, const json& j) {
    if (type == "response.output_text.delta" || type == "response.reasoning_text.delta" ||
        type == "response.function_call_arguments.delta")
      return NonEmptyString(j, "delta");
    if (type == "error" && error_.empty()) error_ = NonEmptyString(j, "message") ? j["message"].get<std::string>() : j.dump();
    if (type == "response.completed" || type == "response.incomplete" || type == "response.failed") {
      done_ = true;
      const json& resp = j.contains("response") && j["response"].is_object() ? j["response"] : j;
      if (NonEmptyString(resp, "status")) finish_reason_ = resp["status"].get<std::string>();
      if (type == "response.failed" && error_.empty()) error_ = "response.failed";
      if (resp.contains("usage") && resp["usage"].is_object()) {
        const json& u = resp["usage"];
        prompt_tokens_ = IntAt(u, "input_tokens");
        completion_tokens_ = IntAt(u, "output_tokens");
        if (u.contains("input_tokens_details") && u["input_tokens_details"].is_object())
          cached_tokens_ = IntAt(u["input_tokens_details"], "cached_tokens");
      }
    }
    return false;
  }

  // True when the payload carried output text.
  bool OnData(absl::string_view payload) {
    ++events_;
    if (payload == "[DONE]") {
      done_ = true;
      return false;
    }
    json j = json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return false;
    if (backend_ == LoadBackend::kOpenAiResponses && NonEmptyString(j, "type"))
      return OnResponsesEvent(j["type"].get<std::string>(), j);
    if (auto it = j.find("error"); it != j.end() && !it->is_null()) {
      if (error_.empty()) {
        const json& e = *it;
        error_ = e.is_object() && e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>()
                                                                                  : e.dump();
      }
      return false;
    }
    if (auto it = j.find("usage"); it != j.end() && it->is_object()) {
      const json& u = *it;
      if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
        prompt_tokens_ = u["prompt_tokens"].get<int>();
      if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
        completion_tokens_ = u["completion_tokens"].get<int>();
      if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object()) {
        const json& d = u["prompt_tokens_details"];
        if (d.contains("cached_tokens") && d["cached_tokens"].is_number_integer())
          cached_tokens_ = d["cached_tokens"].get<int>();
      }
    }
    if (backend_ == LoadBackend::kAnthropicMessages && NonEmptyString(j, "type"))
      return OnAnthropicEvent(j["type"].get<std::string>(), j);
    auto choices = j.find("choices");
    if (choices == j.end() || !choices->is_array() || choices->empty() || !(*choices)[0].is_object()) return false;
    const json& c = (*choices)[0];
    if (NonEmptyString(c, "finish_reason")) finish_reason_ = c["finish_reason"].get<std::string>();
    if (NonEmptyString(c, "text")) return true;  // completions
    auto delta = c.find("delta");                  // chat
    if (delta == c.end() || !delta->is_object()) return false;
    return NonEmptyString(*delta, "content") || NonEmptyString(*delta, "reasoning_content") ||
           NonEmptyString(*delta, "reasoning");
  }

  LoadBackend backend_;
  std::string buffer_;
  int events_ = 0;
  std::string finish_reason_;
  bool done_ = false;
  std::string error_;
  int prompt_tokens_ = 0;
  int completion_tokens_ = 0;
  int cached_tokens_ = 0;
};

std::string BaseUrl(const std::string& server) {
  if (absl::StartsWith(server, "http://") || absl::StartsWith(server, "https://")) return server;
  return absl::StrCat("http://", server);
}

void SetTimeouts(httplib::Client& client, absl::Duration connect, absl::Duration read) {
  client.set_connection_timeout(std::chrono::microseconds(absl::ToInt64Microseconds(connect)));
  client.set_read_timeout(std::chrono::microseconds(absl::ToInt64Microseconds(read)));
}

class OpenAiLoadClient final : public LoadClient {
 public:
  OpenAiLoadClient(const LoadClientOptions& options, std::string base_url, std::string model)
      : options_(options), base_url_(std::move(base_url)), model_(std::move(model)) {
    const LoadBackend b = options_.backend;
    endpoint_ = !options_.endpoint.empty()               ? options_.endpoint
                : b == LoadBackend::kOpenAiChat         ? "/v1/chat/completions"
                : b == LoadBackend::kAnthropicMessages  ? "/v1/messages"
                : b == LoadBackend::kOpenAiResponses    ? "/v1/responses"
                                                        : "/v1/completions";
  }

  const std::string& model() const override { return model_; }

  LoadRequestResult Send(const LoadPrompt& prompt, absl::Time deadline) override {
    json body = {{"model", model_}, {"stream", true}, {"temperature", options_.temperature}};
    const json user_message = json::array({{{"role", "user"}, {"content", prompt.text}}});
    if (options_.backend == LoadBackend::kOpenAiChat) {
      body["stream_options"] = {{"include_usage", true}};
      body["messages"] = user_message;
      // Both spellings: servers differ in which one they read.
      body["max_completion_tokens"] = prompt.output_len;
      body["max_tokens"] = prompt.output_len;
    } else if (options_.backend == LoadBackend::kAnthropicMessages) {
      body["messages"] = user_message;
      body["max_tokens"] = prompt.output_len;
    } else if (options_.backend == LoadBackend::kOpenAiResponses) {
      body["input"] = user_message;
      body["max_output_tokens"] = prompt.output_len;
    } else {
      body["stream_options"] = {{"include_usage", true}};
      body["prompt"] = prompt.token_ids.empty() ? json(prompt.text) : json(prompt.token_ids);
      body["max_tokens"] = prompt.output_len;
    }
    if (options_.ignore_eos) body["ignore_eos"] = true;
    // Anthropic's API has no priority; the OpenAI ones take vLLM's.
    if (options_.priority != 0 && options_.backend != LoadBackend::kAnthropicMessages) body["priority"] = options_.priority;

    LoadRequestResult r;
    r.prompt_len = prompt.prompt_len;
    const absl::Duration left = std::max(deadline - absl::Now(), absl::Milliseconds(1));
    httplib::Client client(base_url_);
    SetTimeouts(client, std::min(left, options_.connect_timeout), left);
    httplib::Request request;
    request.method = "POST";
    request.path = endpoint_;
    request.headers = {{"Content-Type", "application/json"},
                       {"Accept", "text/event-stream"},
                       {"Accept-Encoding", "identity"}};  // compressed SSE would arrive in bursts
    if (!options_.api_key.empty()) {
      request.headers.emplace("Authorization", absl::StrCat("Bearer ", options_.api_key));
      request.headers.emplace("x-api-key", options_.api_key);  // Anthropic's header
    }
    if (options_.backend == LoadBackend::kAnthropicMessages) request.headers.emplace("anthropic-version", "2023-06-01");
    request.body = body.dump();

    int http_status = 0;
    std::string error_body;
    SseReader sse(options_.backend);
    Timeline timeline;
    bool timed_out = false;
    request.response_handler = [&http_status](const httplib::Response& response) {
      http_status = response.status;
      return true;
    };
    request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
      if (http_status != 200) {
        error_body.append(data, std::min(size, kMaxErrorBody - std::min(kMaxErrorBody, error_body.size())));
        return true;
      }
      timeline.Arrived(sse.Feed(data, size), /*split=*/false);
      if (absl::Now() > deadline) {
        timed_out = true;
        return false;
      }
      return true;
    };
    httplib::Response response;
    httplib::Error error = httplib::Error::Success;
    const bool sent = client.send(request, response, error);
    if (timed_out) {
      r.error = "the run's deadline passed mid-stream";
    } else if (!sent || error != httplib::Error::Success) {
      r.error = absl::StrCat("HTTP request to ", base_url_, endpoint_, " failed: ", httplib::to_string(error));
    } else if (http_status != 200) {
      r.error = absl::StrCat("HTTP ", http_status, ": ", error_body);
    } else if (!sse.error().empty()) {
      r.error = absl::StrCat("stream error: ", sse.error());
    } else {
      r.success = true;
    }
    if (sse.prompt_tokens() > 0) r.prompt_len = sse.prompt_tokens();
    r.cached_tokens = sse.cached_tokens();
    r.output_tokens = sse.completion_tokens() > 0 ? sse.completion_tokens() : timeline.count();
    Finish(timeline, &r, sse.Summary());
    return r;
  }

 private:
  LoadClientOptions options_;
  std::string base_url_;
  std::string model_;
  std::string endpoint_;
};

// The first model id of GET /v1/models.
absl::StatusOr<std::string> DiscoverModel(const std::string& base_url, const LoadClientOptions& options) {
  httplib::Client client(base_url);
  SetTimeouts(client, options.connect_timeout, options.connect_timeout);
  httplib::Headers headers;
  if (!options.api_key.empty()) {
    headers.emplace("Authorization", absl::StrCat("Bearer ", options.api_key));
    headers.emplace("x-api-key", options.api_key);
  }
  if (options.backend == LoadBackend::kAnthropicMessages) headers.emplace("anthropic-version", "2023-06-01");
  auto res = client.Get("/v1/models", headers);
  if (!res) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach the server at ", base_url, ": ", httplib::to_string(res.error())));
  }
  if (res->status != 200)
    return absl::FailedPreconditionError(absl::StrCat("GET ", base_url, "/v1/models: HTTP ", res->status,
                                                      " (give --model)"));
  json j = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("data") && j["data"].is_array() && !j["data"].empty() &&
      j["data"][0].is_object() && j["data"][0].contains("id") && j["data"][0]["id"].is_string())
    return j["data"][0]["id"].get<std::string>();
  return absl::FailedPreconditionError(absl::StrCat("GET ", base_url, "/v1/models lists no model (give --model)"));
}

}  // namespace

absl::StatusOr<LoadBackend> ParseLoadBackend(absl::string_view name) {
  if (name == "grpc") return LoadBackend::kGrpc;
  if (name == "openai-completions" || name == "openai") return LoadBackend::kOpenAiCompletions;
  if (name == "openai-chat") return LoadBackend::kOpenAiChat;
  if (name == "anthropic-messages" || name == "anthropic") return LoadBackend::kAnthropicMessages;
  if (name == "openai-responses") return LoadBackend::kOpenAiResponses;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown backend '", name, "' (grpc | openai-completions | openai-chat | anthropic-messages | openai-responses)"));
}

std::string LoadBackendName(LoadBackend backend) {
  switch (backend) {
    case LoadBackend::kGrpc: return "grpc";
    case LoadBackend::kOpenAiCompletions: return "openai-completions";
    case LoadBackend::kOpenAiChat: return "openai-chat";
    case LoadBackend::kAnthropicMessages: return "anthropic-messages";
    case LoadBackend::kOpenAiResponses: return "openai-responses";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<LoadClient>> LoadClient::Create(const LoadClientOptions& options) {
  if (options.server.empty()) return absl::InvalidArgumentError("--server HOST:PORT is empty");
  if (options.backend == LoadBackend::kGrpc) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    auto channel = grpc::CreateCustomChannel(options.server, grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + options.connect_timeout)))
      return absl::UnavailableError(absl::StrCat("cannot reach the gRPC server at ", options.server, " within ",
                                                 absl::FormatDuration(options.connect_timeout)));
    LoadClientOptions named = options;
    if (named.model.empty()) {  // the served name, for the report's model_id (as the HTTP backend asks /v1/models)
      pb::ModelInfo info;
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + options.connect_timeout));
      if (!options.api_key.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", options.api_key));
      if (pb::Inference::NewStub(channel)->GetModelInfo(&context, pb::ModelInfoRequest(), &info).ok())
        named.model = info.name();
    }
    return std::unique_ptr<LoadClient>(new GrpcLoadClient(named, std::move(channel)));
  }
  const std::string base_url = BaseUrl(options.server);
  std::string model = options.model;
  if (model.empty()) {
    auto discovered = DiscoverModel(base_url, options);
    if (!discovered.ok()) return discovered.status();
    model = *discovered;
  }
  return std::unique_ptr<LoadClient>(new OpenAiLoadClient(options, base_url, std::move(model)));
}

}  // namespace glm::api
