#include "coordinator/api/grpc_client.h"

#include <chrono>
#include <future>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpcpp/generic/generic_stub.h"
#include "coordinator/tokenizer/reasoning_marker.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "protos/inference.grpc.pb.h"

namespace glm::api {
namespace {

namespace pb = glm::inference::v1;
using json = nlohmann::json;

absl::Status FromGrpc(const grpc::Status& s, const std::string& server) {
  if (s.ok()) return absl::OkStatus();
  std::string message = s.error_message();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
    message = absl::StrCat("server ", server, ": ", message);
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), message);
}

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

// A channel that is known to be connected, or UNAVAILABLE naming the address.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const std::string& server, absl::Duration timeout) {
  if (server.empty()) return absl::InvalidArgumentError("--server HOST:PORT is empty");
  auto channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(DeadlineAfter(timeout)))
    return absl::UnavailableError(absl::StrCat("cannot reach the server at ", server, " within ",
                                               absl::FormatDuration(timeout)));
  return channel;
}

absl::StatusOr<std::vector<int32_t>> ParseCsv(const std::string& csv) {
  std::vector<int32_t> ids;
  if (csv.empty()) return absl::InvalidArgumentError("--tokens is empty");
  for (absl::string_view part : absl::StrSplit(csv, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int64_t v = 0;
    const bool digits = !part.empty() && part.find_first_not_of("0123456789") == absl::string_view::npos;
    if (!digits || !absl::SimpleAtoi(part, &v) || v > INT32_MAX)
      return absl::InvalidArgumentError(absl::StrCat("token id '", part, "' is not a non-negative integer"));
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

absl::Status CheckSampling(double temperature, double top_p) {
  if (temperature < 0) return absl::InvalidArgumentError("--temperature must be >= 0");
  if (top_p <= 0 || top_p > 1) return absl::InvalidArgumentError("--top_p must be in (0, 1]");
  return absl::OkStatus();
}

// The sampling fields RemoteGenerateOptions and RemoteChatOptions share.
template <typename Options>
void FillSampling(const Options& o, pb::SamplingParameters* s) {
  s->set_max_tokens(static_cast<int32_t>(o.max_new_tokens));
  s->set_temperature(static_cast<float>(o.temperature));
  s->set_top_p(static_cast<float>(o.top_p));
  s->set_top_k(o.top_k);
  s->set_min_p(static_cast<float>(o.min_p));
  s->set_repetition_penalty(static_cast<float>(o.repetition_penalty));
  s->set_presence_penalty(static_cast<float>(o.presence_penalty));
  s->set_frequency_penalty(static_cast<float>(o.frequency_penalty));
  s->set_seed(o.seed);  // always sent: the single-process glmctl also uses seed 0 by default
  s->set_ignore_eos(o.ignore_eos);
}

struct StreamResult {
  std::vector<int32_t> tokens;
  std::string text;
  std::string reasoning;
  std::string tool_calls_json;
  std::string finish_reason;
  pb::Usage usage;
};

// The server's --api-key, when the caller has one: gRPC metadata keys are lower-case.
void AddApiKey(grpc::ClientContext* ctx, const std::string& api_key) {
  if (!api_key.empty()) ctx->AddMetadata("authorization", absl::StrCat("Bearer ", api_key));
}

absl::StatusOr<StreamResult> RunGenerate(const std::shared_ptr<grpc::Channel>& channel, const std::string& server,
                                         const pb::GenerateRequest& request, absl::Duration timeout,
                                         const std::string& api_key, const TextSink& on_text = nullptr) {
  auto stub = pb::Inference::NewStub(channel);
  grpc::ClientContext ctx;
  AddApiKey(&ctx, api_key);
  if (timeout != absl::InfiniteDuration()) ctx.set_deadline(DeadlineAfter(timeout));
  auto reader = stub->Generate(&ctx, request);
  StreamResult r;
  pb::GenerateResponse resp;
  tokenizer::ReasoningMarker marker(on_text);
  while (reader->Read(&resp)) {
    r.tokens.insert(r.tokens.end(), resp.token_ids().begin(), resp.token_ids().end());
    r.text += resp.text();
    r.reasoning += resp.reasoning_text();
    if (on_text) marker.Write(resp.reasoning_text(), resp.text());
    if (!resp.finish_reason().empty()) r.finish_reason = resp.finish_reason();
    if (!resp.tool_calls_json().empty()) r.tool_calls_json = resp.tool_calls_json();
    r.usage = resp.usage();
  }
  if (on_text) marker.Finish();
  if (auto s = FromGrpc(reader->Finish(), server); !s.ok()) return s;
  return r;
}

std::string JsonString(const std::string& s) { return json(s).dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

absl::StatusOr<bool> RemoteHealthServing(const std::string& server, const std::string& service,
                                         absl::Duration timeout) {
  auto channel = Connect(server, timeout);
  if (!channel.ok()) return channel.status();
  // grpc.health.v1 by hand (field 1 of both messages): the generated health stubs are not
  // installed with libgrpc++, and two fields do not justify vendoring health.proto.
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back(0x0a);
    request_bytes.push_back(static_cast<char>(service.size()));  // names < 128 bytes
    request_bytes += service;
  }
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineAfter(timeout));
  grpc::GenericStub stub(*channel);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status status = done.get_future().get();
  if (auto s = FromGrpc(status, server); !s.ok()) return s;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::InternalError("cannot read the health response");
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status = 1 (varint)}; SERVING = 1; an empty message is UNKNOWN (0).
  return bytes.size() >= 2 && bytes[0] == 0x08 && bytes[1] == 0x01;
}

absl::StatusOr<std::string> RemoteGenerate(const std::string& server, const RemoteGenerateOptions& o) {
  if (o.tokens_csv.empty() == o.prompt.empty())
    return absl::InvalidArgumentError("give exactly one of --tokens and --prompt");
  if (auto s = CheckSampling(o.temperature, o.top_p); !s.ok()) return s;
  if (o.max_new_tokens < 0 || o.max_new_tokens > INT32_MAX)
    return absl::InvalidArgumentError("--max_new_tokens must be >= 0");
  pb::GenerateRequest request;
  if (!o.tokens_csv.empty()) {
    auto ids = ParseCsv(o.tokens_csv);
    if (!ids.ok()) return ids.status();
    request.mutable_token_ids()->mutable_ids()->Add(ids->begin(), ids->end());
  } else {
    request.set_text(o.prompt);
  }
  FillSampling(o, request.mutable_sampling());
  request.set_speculative(o.speculative);
  request.set_prediction(o.prediction);
  request.set_response_format_json(o.response_format_json);
  request.set_structured_outputs_json(o.structured_outputs_json);
  request.set_priority(o.priority);

  auto channel = Connect(server, o.connect_timeout);
  if (!channel.ok()) return channel.status();
  // Whether the reply has text depends on the server having a tokenizer.
  pb::ModelInfo info;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineAfter(o.connect_timeout));
    AddApiKey(&ctx, o.api_key);
    if (auto s = FromGrpc(pb::Inference::NewStub(*channel)->GetModelInfo(&ctx, pb::ModelInfoRequest(), &info), server);
        !s.ok())
      return s;
  }
  const bool streamed = o.on_text != nullptr && !o.json && !o.prompt.empty();
  auto r = RunGenerate(*channel, server, request, o.timeout, o.api_key, streamed ? o.on_text : nullptr);
  if (!r.ok()) return r.status();
  if (streamed) return std::string("\n");
  if (o.json) {
    std::string out = absl::StrCat("{\"tokens\":[", absl::StrJoin(r->tokens, ","), "],\"finish_reason\":\"",
                                   r->finish_reason, "\"");
    if (info.has_tokenizer() || !o.prompt.empty()) absl::StrAppend(&out, ",\"text\":", JsonString(r->text));
    if (!o.prediction.empty())
      absl::StrAppend(&out, ",\"accepted_prediction_tokens\":", r->usage.accepted_prediction_tokens(),
                      ",\"rejected_prediction_tokens\":", r->usage.rejected_prediction_tokens());
    return absl::StrCat(out, "}");
  }
  if (!o.prompt.empty()) return r->text;
  return absl::StrJoin(r->tokens, ",");
}

absl::StatusOr<std::string> RemoteChat(const std::string& server, const RemoteChatOptions& o) {
  if (o.message.empty()) return absl::InvalidArgumentError("--message is empty");
  if (auto s = CheckSampling(o.temperature, o.top_p); !s.ok()) return s;
  if (o.max_new_tokens < 0 || o.max_new_tokens > INT32_MAX)
    return absl::InvalidArgumentError("--max_new_tokens must be >= 0");
  pb::GenerateRequest request;
  pb::ChatInput* chat = request.mutable_chat();
  if (!o.system.empty()) {
    pb::ChatMessage* m = chat->add_messages();
    m->set_role("system");
    m->set_content(o.system);
  }
  pb::ChatMessage* m = chat->add_messages();
  m->set_role("user");
  m->set_content(o.message);
  chat->set_tools_json(o.tools_json);
  if (o.tool_choice.empty() || o.tool_choice == "auto" || o.tool_choice == "none" || o.tool_choice == "required") {
    chat->set_tool_choice_json(o.tool_choice);
  } else {
    chat->set_tool_choice_json(json{{"type", "function"}, {"function", {{"name", o.tool_choice}}}}.dump());
  }
  chat->set_template_kwargs_json(o.template_kwargs_json);
  chat->set_add_generation_prompt(true);
  FillSampling(o, request.mutable_sampling());
  request.set_speculative(o.speculative);
  request.set_prediction(o.prediction);
  request.set_response_format_json(o.response_format_json);
  request.set_structured_outputs_json(o.structured_outputs_json);
  request.set_priority(o.priority);

  auto channel = Connect(server, o.connect_timeout);
  if (!channel.ok()) return channel.status();
  const bool streamed = o.on_text != nullptr && !o.json;
  auto r = RunGenerate(*channel, server, request, o.timeout, o.api_key, streamed ? o.on_text : nullptr);
  if (!r.ok()) return r.status();
  if (streamed) return std::string("\n");
  if (!o.json) return r->text;
  json out = json::object();
  out["content"] = r->text;
  if (!r->reasoning.empty()) out["reasoning_content"] = r->reasoning;
  if (!r->tool_calls_json.empty()) {
    json calls = json::parse(r->tool_calls_json, nullptr, false);
    if (!calls.is_discarded()) out["tool_calls"] = calls;
  }
  out["finish_reason"] = r->finish_reason;
  out["tokens"] = r->tokens;
  out["usage"] = {{"prompt_tokens", r->usage.prompt_tokens()},
                  {"completion_tokens", r->usage.completion_tokens()},
                  {"cached_tokens", r->usage.cached_tokens()},
                  {"accepted_prediction_tokens", r->usage.accepted_prediction_tokens()},
                  {"rejected_prediction_tokens", r->usage.rejected_prediction_tokens()}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<std::string> RemoteInfo(const std::string& server, const RemoteInfoOptions& o) {
  auto serving = RemoteHealthServing(server, "", o.timeout);
  if (!serving.ok()) return serving.status();
  if (!*serving)
    return absl::UnavailableError(absl::StrCat("server ", server, " is not serving yet (health NOT_SERVING: loading or draining)"));
  auto channel = Connect(server, o.timeout);
  if (!channel.ok()) return channel.status();
  pb::ModelInfo info;
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineAfter(o.timeout));
  AddApiKey(&ctx, o.api_key);
  if (auto s = FromGrpc(pb::Inference::NewStub(*channel)->GetModelInfo(&ctx, pb::ModelInfoRequest(), &info), server);
      !s.ok())
    return s;
  json j = {{"name", info.name()},
            {"aliases", std::vector<std::string>(info.aliases().begin(), info.aliases().end())},
            {"max_context", info.max_context()},
            {"vocab_size", info.vocab_size()},
            {"eos_token_ids", std::vector<int32_t>(info.eos_token_ids().begin(), info.eos_token_ids().end())},
            {"has_tokenizer", info.has_tokenizer()},
            {"has_chat_template", info.has_chat_template()},
            {"has_mtp", info.has_mtp()},
            {"world_size", info.world_size()},
            {"draft_vocab", info.draft_vocab()},
            {"kv_cache_dtype", info.kv_cache_dtype()},
            {"index_key_dtype", info.index_key_dtype().empty() ? std::string("f32") : info.index_key_dtype()},
            {"kv_cache_tokens", info.kv_cache_tokens()},
            {"placement_summary", info.placement_summary()},
            {"default_speculative", info.default_speculative().empty() ? std::string("none") : info.default_speculative()}};
  // GetModelInfo's load: the speculative-decoding counters with the queue and KV cache.
  const pb::LoadResponse& l = info.load();
  j["load"] = {{"running", l.running()},
               {"waiting", l.waiting()},
               {"kv_cache_usage", l.kv_cache_usage()},
               {"kv_blocks_total", l.kv_blocks_total()},
               {"kv_blocks_free", l.kv_blocks_free()},
               {"prompt_tokens_total", l.prompt_tokens_total()},
               {"generation_tokens_total", l.generation_tokens_total()},
               {"prefix_cache_queries", l.prefix_cache_queries()},
               {"prefix_cache_hits", l.prefix_cache_hits()},
               {"spec_num_drafts", l.spec_num_drafts()},
               {"spec_draft_tokens", l.spec_draft_tokens()},
               {"spec_accepted_tokens", l.spec_accepted_tokens()},
               {"spec_acceptance_rate", l.spec_acceptance_rate()},
               {"spec_accepted_per_pos", std::vector<int64_t>(l.spec_accepted_per_pos().begin(), l.spec_accepted_per_pos().end())},
               {"spec_drafted_per_pos", std::vector<int64_t>(l.spec_drafted_per_pos().begin(), l.spec_drafted_per_pos().end())},
               {"spec_acceptance_rate_per_pos", std::vector<double>(l.spec_acceptance_rate_per_pos().begin(),
                                                                    l.spec_acceptance_rate_per_pos().end())}};
  if (!info.placement_json().empty()) {
    json placement = json::parse(info.placement_json(), nullptr, false);
    j["placement"] = placement.is_discarded() ? json(info.placement_json()) : placement;
  }
  j["health"] = "SERVING";
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<pb::ExpertLoadResponse> RemoteExpertLoad(const std::string& server, const RemoteInfoOptions& o) {
  auto channel = Connect(server, o.timeout);
  if (!channel.ok()) return channel.status();
  pb::ExpertLoadResponse load;
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineAfter(o.timeout));
  AddApiKey(&ctx, o.api_key);
  if (auto s = FromGrpc(pb::Inference::NewStub(*channel)->GetExpertLoad(&ctx, pb::ExpertLoadRequest(), &load), server);
      !s.ok())
    return s;
  return load;
}

}  // namespace glm::api
