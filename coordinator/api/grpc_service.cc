#include "coordinator/api/grpc_service.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/api/api_keys.h"
#include "coordinator/api/api_status.h"
#include "coordinator/api/json_depth.h"
#include "coordinator/api/request_output.h"
#include "coordinator/api/response_format.h"
#include "coordinator/scheduler/engine_errors.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/tool_call_parser.h"

namespace glm::api {
namespace {

namespace pb = glm::inference::v1;

// How often a waiting Generate looks at cancellation, the deadline and shutdown.
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

// A client JSON string in the client's key order (ParseClientJson checks it; nlohmann::json
// would sort the objects the chat template prints: ApiRequest::messages says why).
absl::StatusOr<nlohmann::ordered_json> ParseOrderedClientJson(const std::string& text, absl::string_view field) {
  auto checked = ParseClientJson(text, field, nullptr);
  if (!checked.ok()) return checked.status();
  if (text.empty()) return nlohmann::ordered_json();
  return nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);  // (valid: parsed above)
}

// ChatInput → OpenAI-style messages/tools/kwargs for the template.
absl::Status ChatToJson(const pb::ChatInput& chat, const std::string& prefix, nlohmann::ordered_json* messages,
                        nlohmann::ordered_json* tools, nlohmann::json* kwargs) {
  *messages = nlohmann::ordered_json::array();
  for (int i = 0; i < chat.messages_size(); ++i) {
    const pb::ChatMessage& m = chat.messages(i);
    nlohmann::ordered_json j = {{"role", m.role()}, {"content", m.content()}};
    if (!m.reasoning_content().empty()) j["reasoning_content"] = m.reasoning_content();
    if (!m.tool_call_id().empty()) j["tool_call_id"] = m.tool_call_id();
    if (!m.name().empty()) j["name"] = m.name();
    if (!m.tool_calls_json().empty()) {
      auto calls = ParseOrderedClientJson(m.tool_calls_json(), absl::StrCat(prefix, ".messages[", i, "].tool_calls_json"));
      if (!calls.ok()) return calls.status();
      j["tool_calls"] = *std::move(calls);
    }
    messages->push_back(std::move(j));
  }
  auto t = ParseOrderedClientJson(chat.tools_json(), prefix + ".tools_json");
  if (!t.ok()) return t.status();
  *tools = *std::move(t);
  auto k = ParseClientJson(chat.template_kwargs_json(), prefix + ".template_kwargs_json", nlohmann::json::object());
  if (!k.ok()) return k.status();
  if (!k->is_object()) return InvalidField(prefix + ".template_kwargs_json", "must be a JSON object");
  *kwargs = *std::move(k);
  return absl::OkStatus();
}

absl::StatusOr<ApiRequest> FromProto(const pb::GenerateRequest& req, absl::Time deadline) {
  ApiRequest a;
  a.field_prefix = "sampling.";
  a.request_id = req.request_id();
  a.deadline = deadline;
  a.speculative = req.speculative();
  a.prediction = req.prediction();
  a.prediction_field = "prediction";
  switch (req.input_case()) {
    case pb::GenerateRequest::kText:
      a.input = ApiRequest::Input::kText;
      a.input_field = "text";
      a.text = req.text();
      break;
    case pb::GenerateRequest::kTokenIds:
      a.input = ApiRequest::Input::kTokenIds;
      a.input_field = "token_ids";
      a.token_ids.assign(req.token_ids().ids().begin(), req.token_ids().ids().end());
      break;
    case pb::GenerateRequest::kChat: {
      a.input = ApiRequest::Input::kChat;
      a.input_field = "chat.messages";
      a.tools_field = "chat.tools_json";
      if (auto s = ChatToJson(req.chat(), "chat", &a.messages, &a.tools, &a.template_kwargs); !s.ok()) return s;
      a.add_generation_prompt = !req.chat().has_add_generation_prompt() || req.chat().add_generation_prompt();
      break;
    }
    case pb::GenerateRequest::INPUT_NOT_SET:
      a.input = ApiRequest::Input::kNone;
      a.input_field = "input (text, token_ids or chat)";
      break;
  }
  const pb::SamplingParameters& s = req.sampling();
  a.temperature = s.temperature();            // proto default 0: greedy
  a.top_p = s.top_p() == 0 ? 1.0f : s.top_p();
  a.top_k = s.top_k();
  a.min_p = s.min_p();
  a.repetition_penalty = s.repetition_penalty() == 0 ? 1.0f : s.repetition_penalty();
  a.presence_penalty = s.presence_penalty();
  a.frequency_penalty = s.frequency_penalty();
  for (const auto& [token, bias] : s.logit_bias()) a.logit_bias.emplace_back(token, bias);
  // -1 stands for "not asked" inside; a negative value sent is out of range (refused below).
  if (s.has_prompt_logprobs()) a.prompt_logprobs = s.prompt_logprobs() < 0 ? -2 : s.prompt_logprobs();
  std::sort(a.logit_bias.begin(), a.logit_bias.end());  // map order is unspecified
  if (s.has_seed()) a.seed = s.seed();
  if (s.max_tokens() != 0) a.max_tokens = s.max_tokens();
  a.stop.assign(s.stop().begin(), s.stop().end());
  a.stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  a.ignore_eos = s.ignore_eos();
  if (s.min_tokens() < 0) return InvalidField("sampling.min_tokens", "must be >= 0");
  a.min_tokens = s.min_tokens();
  a.allowed_token_ids.assign(s.allowed_token_ids().begin(), s.allowed_token_ids().end());
  a.bad_words.assign(s.bad_words().begin(), s.bad_words().end());
  a.top_logprobs = s.logprobs();
  a.top_logprobs_field = "logprobs";
  a.logprobs = s.return_logprobs() || s.logprobs() > 0;
  a.skip_special_tokens = !s.has_skip_special_tokens() || s.skip_special_tokens();
  a.include_stop_str_in_output = s.include_stop_str_in_output();
  if (!req.response_format_json().empty()) {
    auto format = ParseClientJson(req.response_format_json(), "response_format_json", nullptr);
    if (!format.ok()) return format.status();
    auto grammar = ParseResponseFormat(*format, {"response_format_json", false, &req.response_format_json(), {}});
    if (!grammar.ok()) return grammar.status();
    a.output_grammar = *std::move(grammar);
    a.output_format_field = "response_format_json";
  }
  a.cache_salt = req.cache_salt();
  a.priority = req.priority();
  if (const std::string& outputs = req.structured_outputs_json(); !outputs.empty()) {
    if (a.output_grammar != nullptr)
      return InvalidField("structured_outputs_json", "cannot be combined with response_format_json");
    auto parsed = ParseClientJson(outputs, "structured_outputs_json", nullptr);
    if (!parsed.ok()) return parsed.status();
    // The text inside a body of its own, so that a schema keeps the client's key order.
    const std::string body_text = absl::StrCat("{\"structured_outputs\":", outputs, "}");
    std::shared_ptr<const structured::JsonGrammar> grammar;
    std::string field;
    if (auto s = ParseGuidedDecoding(nlohmann::json{{"structured_outputs", *parsed}}, &body_text, &grammar, &field,
                                     "structured_outputs_json");
        !s.ok())
      return s;
    a.output_grammar = std::move(grammar);
    a.output_format_field = field;
  }
  if (const std::string& choice_text = req.chat().tool_choice_json(); !choice_text.empty()) {
    if (req.input_case() != pb::GenerateRequest::kChat) return InvalidField("chat.tool_choice_json", "needs chat input");
    absl::StatusOr<nlohmann::json> choice = ParseClientJson(choice_text, "chat.tool_choice_json", nullptr);
    // A bare word (required) reads as the JSON string it spells.
    if (!choice.ok() && choice_text.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_") ==
                            std::string::npos)
      choice = nlohmann::json(choice_text);
    if (!choice.ok()) return choice.status();
    std::string forced;  // "" = not forced; "*" = any tool
    if (auto s = ParseToolChoice(*choice, "chat.tool_choice_json", /*flat=*/false, &a.tools, &forced); !s.ok()) return s;
    if (!forced.empty()) {
      if (a.output_grammar != nullptr)
        return InvalidField("chat.tool_choice_json",
                            absl::StrCat("a forced tool call cannot be combined with ", a.output_format_field));
      if (auto s = TextFrontend::ValidateTools(a.tools, "chat.tools_json"); !s.ok()) return s;
      auto grammar = ForcedToolCall(a.tools, forced == "*" ? "" : forced, "chat.tool_choice_json",
                                    !req.chat().has_parallel_tool_calls() || req.chat().parallel_tool_calls());
      if (!grammar.ok()) return grammar.status();
      a.output_grammar = *std::move(grammar);
      a.output_format_field = "chat.tool_choice_json";
    }
  }
  return a;
}

absl::Time DeadlineOf(const grpc::ServerContext& ctx) {
  const auto d = ctx.deadline();
  if (d == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(d);
}

void FillLogprobs(const std::vector<scheduler::TokenLogprob>& in,
                  google::protobuf::RepeatedPtrField<pb::TokenLogprob>* out) {
  for (const auto& lp : in) {
    pb::TokenLogprob* p = out->Add();
    p->set_token(lp.token);
    p->set_logprob(lp.logprob);
    p->set_rank(lp.rank);
    for (const auto& [tok, logprob] : lp.top) {
      pb::TokenLogprob* t = p->add_top();
      t->set_token(tok);
      t->set_logprob(logprob);
    }
  }
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

GrpcInferenceService::GrpcInferenceService(scheduler::Engine* engine, const TextFrontend* frontend,
                                           ServingMetrics* metrics, const std::atomic<bool>* stopping,
                                           scheduler::StreamInterval interval, const ApiKeys* keys)
    : engine_(engine), frontend_(frontend), metrics_(metrics), stopping_(stopping), interval_(interval), keys_(keys) {}

grpc::Status GrpcInferenceService::CheckKey(const grpc::ServerContext* context) const {
  // No context: an internal call (GetModelInfo fills its load through GetLoad), already checked.
  if (keys_ == nullptr || !keys_->enabled() || context == nullptr) return grpc::Status::OK;
  auto value = [&](const char* key) {
    const auto it = context->client_metadata().find(key);
    return it == context->client_metadata().end() ? absl::string_view()
                                                  : absl::string_view(it->second.data(), it->second.size());
  };
  if (keys_->Accepts(value("authorization"), value("x-api-key"))) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "this server needs an API key: metadata \"authorization: Bearer KEY\" or \"x-api-key: KEY\"");
}

grpc::Status GrpcInferenceService::Generate(grpc::ServerContext* context, const pb::GenerateRequest* request,
                                            grpc::ServerWriter<pb::GenerateResponse>* writer) {
  if (auto key = CheckKey(context); !key.ok()) return key;
  // Every refusal before the engine has the request counts as "rejected" too, as the engine's own
  // (queue full, draining) do below: glm:request_failures_total counts invalid requests.
  // Each is also logged (one JSON line), so an operator sees why clients' requests fail.
  auto reject = [this, request](const grpc::Status& status) {
    if (metrics_ != nullptr) metrics_->ObserveFinished("rejected", 0);
    LogRequestEvent("request_rejected", request->request_id(),
                    absl::StrCat("grpc ", static_cast<int>(status.error_code()), ": ", status.error_message()));
    return status;
  };
  if (stopping_->load()) return reject(grpc::Status(grpc::StatusCode::UNAVAILABLE, scheduler::kShuttingDownMessage));
  if (!frontend_->AcceptsModelName(request->model()))
    return reject(grpc::Status(grpc::StatusCode::NOT_FOUND,
                               absl::StrCat("model: '", request->model(), "' is not served here (serving '",
                                            frontend_->model().name, "')")));
  const absl::Time deadline = DeadlineOf(*context);
  auto api = FromProto(*request, deadline);
  if (!api.ok()) return reject(ToGrpcStatus(api.status()));
  auto prepared = frontend_->Prepare(*api);
  if (!prepared.ok()) return reject(ToGrpcStatus(prepared.status()));
  const std::string id = prepared->engine_request.request_id;
  RequestTracker tracker(metrics_, id, "grpc", static_cast<int>(prepared->engine_request.prompt.size()));
  auto stream = engine_->Submit(std::move(prepared->engine_request));
  if (!stream.ok()) {
    tracker.Finish("rejected");
    return ToGrpcStatus(stream.status());
  }
  (*stream)->SetInterval(interval_);
  RequestOutput output(frontend_->model().tokenizer, std::move(prepared->output));
  std::vector<tokenizer::ToolCall> calls;

  while (true) {
    // Checked on every turn, not only when idle: a fast stream must notice a gone client too.
    // Stopping cuts a request still generating; one the engine has finished (a drain lets
    // running requests end) is delivered to its end, however far its writer lags behind.
    if (context->IsCancelled() || (stopping_->load() && !(*stream)->finished()) || absl::Now() >= deadline) {
      engine_->AbortStream(**stream);
      tracker.Finish("abort");
      if (stopping_->load()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, scheduler::kShuttingDownMessage);
      if (absl::Now() >= deadline) return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded");
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
    }
    scheduler::GenerationEvent event;
    if (!(*stream)->Next(&event, kPollInterval)) continue;
    auto delta = output.ConsumeReleased(event, **stream);  // one message per released group
    if (!delta.ok()) {
      engine_->AbortStream(**stream);  // an output error ends the request on the workers too (a no-op if it failed there)
      tracker.Finish(FailureFinishReason(delta.status()));  // the engine's deadline or shutdown is an abort
      return ToGrpcStatus(delta.status());
    }
    if (delta->stop_string_matched) engine_->AbortStream(**stream);
    tracker.OnTokens(static_cast<int>(delta->tokens.size()), delta->times);
    for (auto& c : delta->tool_calls) calls.push_back(std::move(c));

    const bool empty = delta->tokens.empty() && delta->text.empty() && delta->reasoning.empty() &&
                       delta->prompt_logprobs.empty();
    if (empty && !delta->finished) continue;
    pb::GenerateResponse resp;
    resp.set_request_id(id);
    resp.mutable_token_ids()->Add(delta->tokens.begin(), delta->tokens.end());
    resp.set_text(delta->text);
    resp.set_reasoning_text(delta->reasoning);
    FillLogprobs(delta->logprobs, resp.mutable_logprobs());
    FillLogprobs(delta->prompt_logprobs, resp.mutable_prompt_logprobs());
    resp.mutable_usage()->set_prompt_tokens(delta->prompt_tokens);
    resp.mutable_usage()->set_completion_tokens(delta->completion_tokens);
    resp.mutable_usage()->set_cached_tokens(delta->cached_tokens);
    resp.mutable_usage()->set_accepted_prediction_tokens(delta->accepted_prediction_tokens);
    resp.mutable_usage()->set_rejected_prediction_tokens(delta->rejected_prediction_tokens);
    if (delta->finished) {
      resp.set_finish_reason(delta->finish_reason);
      if (!calls.empty()) resp.set_tool_calls_json(tokenizer::ToolCallParser::ToOpenAi(calls).dump());
    }
    if (!writer->Write(resp)) {
      if (!delta->finished) engine_->AbortStream(**stream);
      tracker.Finish("abort");
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
    if (delta->finished) {
      tracker.Finish(delta->finish_reason);
      return grpc::Status::OK;
    }
  }
}

grpc::Status GrpcInferenceService::Abort(grpc::ServerContext* context, const pb::AbortRequest* request,
                                         pb::AbortResponse* response) {
  if (auto key = CheckKey(context); !key.ok()) return key;
  if (request->request_id().empty())
    return ToGrpcStatus(InvalidField("request_id", "is required"));
  response->set_found(engine_->Abort(request->request_id()));
  return grpc::Status::OK;
}

grpc::Status GrpcInferenceService::GetModelInfo(grpc::ServerContext* context, const pb::ModelInfoRequest*,
                                                pb::ModelInfo* info) {
  if (auto key = CheckKey(context); !key.ok()) return key;
  const ServedModel& m = frontend_->model();
  info->set_name(m.name);
  for (const auto& a : m.aliases) info->add_aliases(a);
  info->set_max_context(m.max_context);
  info->set_vocab_size(m.vocab_size);
  info->mutable_eos_token_ids()->Add(m.eos_token_ids.begin(), m.eos_token_ids.end());
  info->set_has_tokenizer(m.tokenizer != nullptr);
  info->set_has_chat_template(m.chat_template != nullptr);
  info->set_has_mtp(m.has_mtp);
  info->set_placement_summary(m.placement_summary);
  info->set_placement_json(m.placement_json);
  info->set_world_size(m.world_size);
  info->set_default_speculative(m.default_speculative);
  info->set_draft_vocab(m.draft_vocab);
  info->set_kv_cache_dtype(m.kv_cache_dtype);
  info->set_index_key_dtype(m.index_key_dtype);
  info->set_kv_cache_tokens(m.kv_cache_tokens);
  pb::LoadResponse load;
  GetLoad(nullptr, nullptr, &load);
  *info->mutable_load() = load;
  return grpc::Status::OK;
}

grpc::Status GrpcInferenceService::Tokenize(grpc::ServerContext* context, const pb::TokenizeRequest* request,
                                            pb::TokenizeResponse* response) {
  if (auto key = CheckKey(context); !key.ok()) return key;
  absl::StatusOr<std::vector<int32_t>> ids;
  if (request->input_case() == pb::TokenizeRequest::kText) {
    ids = frontend_->EncodeText(request->text(), request->add_special_tokens(), "text");
  } else if (request->input_case() == pb::TokenizeRequest::kChat) {
    nlohmann::ordered_json messages, tools;
    nlohmann::json kwargs;
    if (auto s = ChatToJson(request->chat(), "chat", &messages, &tools, &kwargs); !s.ok()) return ToGrpcStatus(s);
    const bool add_prompt = !request->chat().has_add_generation_prompt() || request->chat().add_generation_prompt();
    auto text = frontend_->RenderChat(messages, tools, add_prompt, kwargs, "chat.messages", "chat.tools_json");
    if (!text.ok()) return ToGrpcStatus(text.status());
    ids = frontend_->EncodeText(*text, request->add_special_tokens(), "chat.messages");
  } else {
    return ToGrpcStatus(InvalidField("input", "text or chat is required"));
  }
  if (!ids.ok()) return ToGrpcStatus(ids.status());
  response->mutable_ids()->Add(ids->begin(), ids->end());
  return grpc::Status::OK;
}

grpc::Status GrpcInferenceService::Detokenize(grpc::ServerContext* context, const pb::DetokenizeRequest* request,
                                              pb::DetokenizeResponse* response) {
  if (auto key = CheckKey(context); !key.ok()) return key;
  const tokenizer::Tokenizer* tok = frontend_->model().tokenizer;
  if (tok == nullptr)
    return ToGrpcStatus(InvalidField("ids", "this model is served with token ids only (no tokenizer.json)"));
  std::vector<int32_t> ids(request->ids().begin(), request->ids().end());
  auto text = tok->Decode(ids, request->skip_special_tokens());
  if (!text.ok()) return ToGrpcStatus(InvalidField("ids", text.status().message()));
  response->set_text(*text);
  return grpc::Status::OK;
}

grpc::Status GrpcInferenceService::GetLoad(grpc::ServerContext* context, const pb::LoadRequest*, pb::LoadResponse* response) {
  if (auto key = CheckKey(context); !key.ok()) return key;
  const scheduler::EngineLoad load = engine_->GetLoad();
  response->set_running(load.running);
  response->set_waiting(load.waiting);
  response->set_kv_cache_usage(load.kv_blocks_total > 0 ? static_cast<double>(load.kv_blocks_used) /
                                                               static_cast<double>(load.kv_blocks_total)
                                                         : 0.0);
  response->set_kv_blocks_total(load.kv_blocks_total);
  response->set_kv_blocks_free(load.kv_blocks_total - load.kv_blocks_used);
  response->set_prompt_tokens_total(load.prompt_tokens_total);
  response->set_generation_tokens_total(load.generation_tokens_total);
  response->set_prefix_cache_queries(load.prefix_cache_queries);
  response->set_prefix_cache_hits(load.prefix_cache_hits);
  response->set_spec_num_drafts(load.spec_num_drafts);
  response->set_spec_draft_tokens(load.spec_draft_tokens);
  response->set_spec_accepted_tokens(load.spec_accepted_tokens);
  response->mutable_spec_accepted_per_pos()->Add(load.spec_accepted_per_pos.begin(), load.spec_accepted_per_pos.end());
  response->mutable_spec_drafted_per_pos()->Add(load.spec_drafted_per_pos.begin(), load.spec_drafted_per_pos.end());
  for (size_t i = 0; i < load.spec_drafted_per_pos.size(); ++i)
    response->add_spec_acceptance_rate_per_pos(
        load.spec_drafted_per_pos[i] > 0 && i < load.spec_accepted_per_pos.size()
            ? static_cast<double>(load.spec_accepted_per_pos[i]) / static_cast<double>(load.spec_drafted_per_pos[i])
            : 0.0);
  response->set_spec_acceptance_rate(load.spec_draft_tokens > 0 ? static_cast<double>(load.spec_accepted_tokens) /
                                                                      static_cast<double>(load.spec_draft_tokens)
                                                                : 0.0);
  return grpc::Status::OK;
}

grpc::Status GrpcInferenceService::GetExpertLoad(grpc::ServerContext* context, const pb::ExpertLoadRequest*,
                                                 pb::ExpertLoadResponse* response) {
  if (auto key = CheckKey(context); !key.ok()) return key;
  const ServedModel& m = frontend_->model();
  response->set_model(m.model_dir_name);
  response->set_experts_per_token(m.experts_per_token);
  for (const auto& [layer, counts] : engine_->ExpertRouting()) {
    pb::ExpertLayerLoad* l = response->add_layers();
    l->set_layer(static_cast<int32_t>(layer));
    l->mutable_tokens_per_expert()->Add(counts.begin(), counts.end());
  }
  return grpc::Status::OK;
}

}  // namespace glm::api
