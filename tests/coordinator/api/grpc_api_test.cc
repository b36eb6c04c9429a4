// The gRPC front end and the glmctl client functions against a FakeEngine.
#include <chrono>
#include <thread>

#include <httplib.h>

#include "absl/strings/str_join.h"
#include "coordinator/api/grpc_client.h"
#include "coordinator/api/serving_metrics.h"
#include "coordinator/scheduler/engine_errors.h"
#include "google/protobuf/unknown_field_set.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/grpc_test_util.h"

namespace glm::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(GrpcApiTest, StreamsEachTokenInOrderThenFinishes) {
  Collected c = Generate(TokenRequest({5, 6, 7}, 5));
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_EQ(c.tokens(), (std::vector<int32_t>{100, 101, 102, 103, 104}));
  ASSERT_EQ(c.messages.size(), 5u);  // one message per engine event
  for (size_t i = 0; i + 1 < c.messages.size(); ++i) EXPECT_EQ(c.messages[i].finish_reason(), "");
  EXPECT_EQ(c.messages.back().finish_reason(), "length");
  EXPECT_EQ(c.messages.back().usage().prompt_tokens(), 3);
  EXPECT_EQ(c.messages.back().usage().completion_tokens(), 5);
  EXPECT_FALSE(c.messages.back().request_id().empty());
  // The engine saw greedy sampling (proto defaults) and the requested budget.
  scheduler::GenerationRequest seen = engine_->last_request();
  EXPECT_EQ(seen.sampling.max_tokens, 5);
  EXPECT_EQ(seen.sampling.temperature, 0.0f);
  EXPECT_EQ(seen.sampling.top_p, 1.0f);
  EXPECT_EQ(seen.sampling.presence_penalty, 0.0f);
  EXPECT_TRUE(seen.sampling.logit_bias.empty());
}

TEST_F(GrpcApiTest, StreamIntervalGroupsTokensIntoFewerMessages) {
  // max_delay of an hour: only the token count (or the end) releases a group.
  RestartWithStreamInterval({.tokens = 4, .max_delay = absl::Hours(1)});
  pb::GenerateRequest r = TokenRequest({5, 6, 7}, 13);
  r.mutable_sampling()->set_return_logprobs(true);
  r.mutable_sampling()->set_ignore_eos(true);
  Collected c = Generate(r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  std::vector<int32_t> want;
  for (int32_t t = 100; t < 113; ++t) want.push_back(t);
  EXPECT_EQ(c.tokens(), want);
  ASSERT_GE(c.messages.size(), 2u);
  EXPECT_EQ(c.messages.front().token_ids_size(), 1);  // the first token goes at once (TTFT)
  // Every later message but the last carries at least the interval's 4 tokens: at most 1 + 3 + 1.
  EXPECT_LE(c.messages.size(), 5u);
  for (size_t i = 1; i + 1 < c.messages.size(); ++i) EXPECT_GE(c.messages[i].token_ids_size(), 4) << i;
  int logprobs = 0;
  for (const auto& m : c.messages) {
    EXPECT_EQ(m.logprobs_size(), m.token_ids_size());  // grouped with their tokens
    logprobs += m.logprobs_size();
    EXPECT_EQ(m.finish_reason().empty(), &m != &c.messages.back());
  }
  EXPECT_EQ(logprobs, 13);
  EXPECT_EQ(c.messages.back().finish_reason(), "length");
  EXPECT_EQ(c.messages.back().usage().completion_tokens(), 13);
}

TEST_F(GrpcApiTest, StreamIntervalKeepsTextAndStopStrings) {
  RestartWithStreamInterval({.tokens = 3, .max_delay = absl::Milliseconds(20)});
  ScriptText("alpha beta gamma STOP delta epsilon zeta eta theta");
  pb::GenerateRequest r;
  r.set_text("x");
  r.set_request_id("grouped-stopper");
  r.mutable_sampling()->add_stop("STOP");
  Collected c = Generate(r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_EQ(c.text(), "alpha beta gamma ");
  EXPECT_EQ(c.messages.back().finish_reason(), "stop");
  EXPECT_TRUE(engine_->WaitForAbort("grouped-stopper", absl::Seconds(5)));
}

TEST_F(GrpcApiTest, PromptLogprobsComeOnTheFirstMessage) {
  pb::GenerateRequest r = TokenRequest({5, 6, 7, 8}, 3);
  r.mutable_sampling()->set_prompt_logprobs(2);
  Collected c = Generate(r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_EQ(engine_->last_request().sampling.prompt_logprobs, 2);
  ASSERT_FALSE(c.messages.empty());
  ASSERT_EQ(c.messages[0].prompt_logprobs_size(), 3);
  for (int p = 1; p <= 3; ++p) {
    const pb::TokenLogprob& lp = c.messages[0].prompt_logprobs(p - 1);
    EXPECT_EQ(lp.token(), 5 + p);
    EXPECT_FLOAT_EQ(lp.logprob(), -static_cast<float>(p) / 8);  // the fake engine's values
    EXPECT_EQ(lp.rank(), 10 + p);
    EXPECT_EQ(lp.top_size(), 2);
  }
  for (size_t i = 1; i < c.messages.size(); ++i) EXPECT_EQ(c.messages[i].prompt_logprobs_size(), 0);
  r.mutable_sampling()->clear_prompt_logprobs();
  ASSERT_TRUE(Generate(r).status.ok());
  EXPECT_EQ(engine_->last_request().sampling.prompt_logprobs, -1) << "unset: no prompt scoring";
}

TEST_F(GrpcApiTest, PenaltiesLogitBiasMinTokensAllowedTokenIdsAndPriorityReachTheEngine) {
  pb::GenerateRequest r = TokenRequest({5, 6, 7}, 2);
  r.mutable_sampling()->set_presence_penalty(0.5f);
  r.mutable_sampling()->set_frequency_penalty(1.5f);
  (*r.mutable_sampling()->mutable_logit_bias())[9] = -4.0f;
  (*r.mutable_sampling()->mutable_logit_bias())[3] = 2.0f;
  r.mutable_sampling()->set_min_tokens(1);
  r.mutable_sampling()->add_allowed_token_ids(4);
  r.set_cache_salt("tenant-2");
  r.set_priority(4);
  Collected c = Generate(r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  scheduler::GenerationRequest seen = engine_->last_request();
  EXPECT_EQ(seen.sampling.presence_penalty, 0.5f);
  EXPECT_EQ(seen.sampling.frequency_penalty, 1.5f);
  EXPECT_EQ(seen.sampling.logit_bias, (std::vector<std::pair<int32_t, float>>{{3, 2.0f}, {9, -4.0f}}));
  EXPECT_EQ(seen.sampling.min_tokens, 1);
  EXPECT_EQ(seen.cache_salt, "tenant-2");
  EXPECT_EQ(seen.priority, 4);
  ASSERT_NE(seen.constraint, nullptr);  // allowed_token_ids
  EXPECT_TRUE(seen.constraint->Accept(4).ok());
  EXPECT_FALSE(seen.constraint->Accept(5).ok());
}

TEST_F(GrpcApiTest, TextPromptGivesTextAndHidesEos) {
  ScriptText("Hello world");
  pb::GenerateRequest r;
  r.set_text("Say hello");
  r.set_request_id("my-id-1");
  Collected c = Generate(r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_EQ(c.text(), "Hello world");
  EXPECT_EQ(c.messages.back().finish_reason(), "stop");
  EXPECT_EQ(c.tokens().back(), 0);  // EOS is reported as a token, not as text
  EXPECT_EQ(c.messages.back().request_id(), "my-id-1");
  EXPECT_EQ(engine_->last_request().prompt, Encode("Say hello"));
  // A request's own speculative decoding reaches the engine (it was dropped: only the server's
  // --speculative applied).
  r.set_request_id("my-id-2");
  r.set_speculative("ngram:3");
  ASSERT_TRUE(Generate(r).status.ok());
  EXPECT_EQ(engine_->last_request().speculative, "ngram:3");
}

TEST_F(GrpcApiTest, InvalidArgumentsNameTheField) {
  struct Case {
    std::function<void(pb::GenerateRequest*)> edit;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_temperature(-1); }, "sampling.temperature"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_top_p(1.5f); }, "sampling.top_p"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_max_tokens(-3); }, "sampling.max_tokens"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_top_k(-5); }, "sampling.top_k"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_logprobs(99); }, "sampling.logprobs"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->add_stop(""); }, "sampling.stop[0]"},
      {[](pb::GenerateRequest* r) { r->clear_token_ids(); }, "input"},
      {[](pb::GenerateRequest* r) { r->set_text(""); }, "text"},
      {[](pb::GenerateRequest* r) { r->mutable_token_ids()->mutable_ids()->Set(1, 99999); }, "token_ids[1]"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_max_tokens(5000); }, "sampling.max_tokens"},
      {[](pb::GenerateRequest* r) { r->set_speculative("mtp:2"); }, "speculative"},  // no MTP layer here
      {[](pb::GenerateRequest* r) { r->set_speculative("ngram:9"); }, "speculative"},
      {[](pb::GenerateRequest* r) { r->set_speculative("lookahead:2"); }, "speculative"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_presence_penalty(-2.5f); }, "sampling.presence_penalty"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_frequency_penalty(9); }, "sampling.frequency_penalty"},
      {[](pb::GenerateRequest* r) { (*r->mutable_sampling()->mutable_logit_bias())[99999] = 1; },
       "sampling.logit_bias[\"99999\"]"},
      {[](pb::GenerateRequest* r) { (*r->mutable_sampling()->mutable_logit_bias())[5] = 150; },
       "sampling.logit_bias[\"5\"]"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_prompt_logprobs(21); }, "sampling.prompt_logprobs"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_prompt_logprobs(-1); }, "sampling.prompt_logprobs"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->set_min_tokens(-1); }, "sampling.min_tokens"},
      {[](pb::GenerateRequest* r) { r->mutable_sampling()->add_allowed_token_ids(99999); }, "sampling.allowed_token_ids[0]"},
  };
  for (const auto& c : cases) {
    pb::GenerateRequest r = TokenRequest({1, 2, 3}, 4);
    c.edit(&r);
    Collected got = Generate(r);
    EXPECT_EQ(got.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_THAT(got.status.error_message(), HasSubstr(c.field));
  }
  EXPECT_TRUE(engine_->requests().empty());
}

// Every refused Generate counts in glm:request_failures_total{reason="rejected"}, whichever check
// refused it (only the engine's own refusals were counted: 22 invalid requests raised it by 2).
TEST_F(GrpcApiTest, EveryRefusalCountsAsRejected) {
  const std::string rejected = Series("glm:request_failures_total", "reason", "rejected");
  std::vector<std::function<void(pb::GenerateRequest*)>> edits = {
      [](pb::GenerateRequest* r) { r->mutable_sampling()->set_temperature(-1); },                // FromProto/Prepare
      [](pb::GenerateRequest* r) { r->mutable_sampling()->set_top_p(1.5f); },
      [](pb::GenerateRequest* r) { r->mutable_token_ids()->mutable_ids()->Set(1, 99999); },
      [](pb::GenerateRequest* r) { (*r->mutable_sampling()->mutable_logit_bias())[5] = 150; },
      [](pb::GenerateRequest* r) { r->mutable_sampling()->set_max_tokens(5000); },             // over the context
      [](pb::GenerateRequest* r) { r->clear_token_ids(); },
      [](pb::GenerateRequest* r) { r->mutable_chat()->set_tools_json("{not json"); },           // FromProto
      [](pb::GenerateRequest* r) { r->set_model("gpt-4o"); },                                   // NOT_FOUND
  };
  model_.accept_any_name = false;
  for (const auto& edit : edits) {
    pb::GenerateRequest r = TokenRequest({1, 2, 3}, 4);
    edit(&r);
    EXPECT_FALSE(Generate(r).status.ok());
  }
  EXPECT_TRUE(engine_->requests().empty());
  EXPECT_EQ(MetricValue(rejected), static_cast<double>(edits.size()));
  engine_->SetMaxLive(0);  // the engine's refusal still counts once
  EXPECT_EQ(Generate(TokenRequest({1}, 2)).status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(MetricValue(rejected), static_cast<double>(edits.size() + 1));
  EXPECT_EQ(MetricValue(Series("glm:request_failures_total", "reason", "error")), 0);
}

// A refused request is logged with its id and the status the client got.
TEST_F(GrpcApiTest, RefusedRequestsAreLogged) {
  pb::GenerateRequest r = TokenRequest({1, 2, 3}, 4);
  r.set_request_id("refused-7");
  r.mutable_sampling()->set_top_p(1.5f);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Generate(r).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, ::testing::HasSubstr("\"event\":\"request_rejected\""));
  EXPECT_THAT(log, ::testing::HasSubstr("\"request_id\":\"refused-7\""));
  EXPECT_THAT(log, ::testing::HasSubstr("grpc 3: sampling.top_p"));
}

TEST_F(GrpcApiTest, QueueFullIsResourceExhausted) {
  engine_->SetMaxLive(0);
  Collected c = Generate(TokenRequest({1}, 2));
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(GrpcApiTest, DrainingIsUnavailableAndHealthFollows) {
  auto serving = api::RemoteHealthServing(grpc_address_, "", absl::Seconds(5));
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_TRUE(*serving);
  engine_->SetDraining(true);
  Collected c = Generate(TokenRequest({1}, 2));
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  // The server notices the engine draining on its own (it polls every 100 ms; the bound is only
  // there so a broken watcher fails the test instead of hanging it — under a loaded CI machine
  // each health call can take a while).
  bool not_serving = false;
  for (int i = 0; i < 400 && !not_serving; ++i) {
    auto s = api::RemoteHealthServing(grpc_address_, "glm.inference.v1.Inference", absl::Seconds(5));
    ASSERT_TRUE(s.ok()) << s.status();
    not_serving = !*s;
    if (!not_serving) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(not_serving);
}

TEST_F(GrpcApiTest, ClusterFailureMidStreamIsUnavailable) {
  engine_->FailAfter(2, absl::UnavailableError("shard worker 3 is gone"));
  Collected c = Generate(TokenRequest({1}, 10));
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(c.status.error_message(), HasSubstr("shard worker 3"));
  EXPECT_EQ(c.tokens().size(), 2u);
}

TEST_F(GrpcApiTest, ClientCancelAbortsInEngine) {
  engine_->SetTokenDelay(absl::Milliseconds(20));
  grpc::ClientContext ctx;
  pb::GenerateRequest r = TokenRequest({1, 2}, 500);
  r.set_request_id("cancel-me");
  r.mutable_sampling()->set_ignore_eos(true);
  auto reader = stub_->Generate(&ctx, r);
  pb::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  ctx.TryCancel();
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(engine_->WaitForAbort("cancel-me", absl::Seconds(3)));
}

TEST_F(GrpcApiTest, DeadlineExceededAbortsInEngine) {
  engine_->SetTokenDelay(absl::Milliseconds(20));
  pb::GenerateRequest r = TokenRequest({1, 2}, 500);
  r.set_request_id("too-slow");
  r.mutable_sampling()->set_ignore_eos(true);  // 500 tokens x 20 ms: far past the deadline
  Collected c = Generate(r, absl::Milliseconds(300));
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(engine_->WaitForAbort("too-slow", absl::Seconds(3)));
  EXPECT_NE(engine_->last_request().deadline, absl::InfiniteFuture());  // passed on to the engine
}

// A request the engine ends because its deadline passed (in the queue or mid-decode), the
// client cancelled, or the server shut down is an abort, as vLLM counts it, whoever noticed first;
// only a real failure (the cluster gone) is an error. The client's status code is unchanged.
TEST_F(GrpcApiTest, DeadlineCancelAndShutdownEndingsCountAsAbortNotError) {
  const std::string abort = Series("vllm:request_success_total", "finished_reason", "abort");
  const std::string error = Series("glm:request_failures_total", "reason", "error");
  struct Case {
    absl::Status engine_error;
    grpc::StatusCode code;
    int after_tokens;
  };
  const std::vector<Case> cases = {
      {absl::DeadlineExceededError("deadline exceeded"), grpc::StatusCode::DEADLINE_EXCEEDED, 0},  // while queued
      {absl::DeadlineExceededError("deadline exceeded"), grpc::StatusCode::DEADLINE_EXCEEDED, 2},  // mid-decode
      {absl::CancelledError("cancelled"), grpc::StatusCode::CANCELLED, 1},
      {scheduler::ShuttingDownError(), grpc::StatusCode::UNAVAILABLE, 1},
  };
  for (const Case& c : cases) {
    engine_->FailAfter(c.after_tokens, c.engine_error);
    EXPECT_EQ(Generate(TokenRequest({1}, 10)).status.error_code(), c.code) << c.engine_error;
  }
  EXPECT_EQ(MetricValue(abort), 4);
  EXPECT_EQ(MetricValue(error), 0);
  engine_->FailAfter(1, absl::UnavailableError("the cluster failed: shard worker 3 is gone"));
  EXPECT_EQ(Generate(TokenRequest({1}, 10)).status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(MetricValue(error), 1);
  EXPECT_EQ(MetricValue(abort), 4);
}

TEST_F(GrpcApiTest, ModelNamesAreLenientUnlessConfigured) {
  pb::GenerateRequest r = TokenRequest({1}, 1);
  r.set_model("gpt-4o");
  EXPECT_TRUE(Generate(r).status.ok());
  model_.accept_any_name = false;
  EXPECT_EQ(Generate(r).status.error_code(), grpc::StatusCode::NOT_FOUND);
  r.set_model("glm-tiny");
  EXPECT_TRUE(Generate(r).status.ok());
}

TEST_F(GrpcApiTest, StopStringEndsRequestAndAbortsEngine) {
  ScriptText("alpha beta STOP gamma delta epsilon");
  pb::GenerateRequest r;
  r.set_text("x");
  r.set_request_id("stopper");
  r.mutable_sampling()->add_stop("STOP");
  Collected c = Generate(r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_EQ(c.text(), "alpha beta ");
  EXPECT_EQ(c.messages.back().finish_reason(), "stop");
  EXPECT_TRUE(engine_->WaitForAbort("stopper", absl::Seconds(5)));
}

TEST_F(GrpcApiTest, ChatToolCallsAreParsed) {
  ScriptText("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>");
  pb::GenerateRequest r;
  pb::ChatMessage* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Weather in Paris?");
  r.mutable_chat()->set_tools_json(
      R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])");
  Collected c = Generate(r);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_EQ(c.messages.back().finish_reason(), "tool_calls");
  auto calls = nlohmann::json::parse(c.messages.back().tool_calls_json());
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(nlohmann::json::parse(calls[0]["function"]["arguments"].get<std::string>())["city"], "Paris");
  EXPECT_EQ(c.text(), "");
  // The chat template rendered the prompt with the generation prompt (unset = true).
  auto expected = chat_template_->Render(nlohmann::json::array({{{"role", "user"}, {"content", "Weather in Paris?"}}}),
                                         nullptr, true);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(engine_->last_request().prompt, Encode(*expected));
}

TEST_F(GrpcApiTest, InfoTokenizeDetokenizeLoad) {
  grpc::ClientContext c1;
  pb::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&c1, pb::ModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.name(), "glm5-tiny-code");
  EXPECT_TRUE(info.has_tokenizer());
  EXPECT_TRUE(info.has_chat_template());
  EXPECT_EQ(info.world_size(), 2);
  EXPECT_EQ(info.draft_vocab(), 512);
  EXPECT_EQ(info.kv_cache_dtype(), "bf16");
  EXPECT_EQ(info.index_key_dtype(), "int8");
  EXPECT_EQ(info.kv_cache_tokens(), 4096);

  grpc::ClientContext c2;
  pb::TokenizeRequest tr;
  tr.set_text("Hello world");
  pb::TokenizeResponse tok;
  ASSERT_TRUE(stub_->Tokenize(&c2, tr, &tok).ok());
  std::vector<int32_t> ids(tok.ids().begin(), tok.ids().end());
  EXPECT_EQ(ids, Encode("Hello world"));

  grpc::ClientContext c3;
  pb::DetokenizeRequest dr;
  dr.mutable_ids()->Add(ids.begin(), ids.end());
  pb::DetokenizeResponse detok;
  ASSERT_TRUE(stub_->Detokenize(&c3, dr, &detok).ok());
  EXPECT_EQ(detok.text(), "Hello world");

  grpc::ClientContext c4;
  pb::LoadResponse load;
  ASSERT_TRUE(stub_->GetLoad(&c4, pb::LoadRequest(), &load).ok());
  EXPECT_EQ(load.kv_blocks_total(), 100);
  // Per draft position: drafted, accepted, and their ratio.
  EXPECT_THAT(load.spec_drafted_per_pos(), ::testing::ElementsAre(10, 4));
  EXPECT_THAT(load.spec_accepted_per_pos(), ::testing::ElementsAre(8, 1));
  EXPECT_THAT(load.spec_acceptance_rate_per_pos(), ::testing::ElementsAre(0.8, 0.25));
  EXPECT_DOUBLE_EQ(load.spec_acceptance_rate(), 9.0 / 14.0);
}

TEST_F(GrpcApiTest, TokenIdsOnlyModelRejectsText) {
  server_->Shutdown();
  model_.tokenizer = nullptr;
  model_.chat_template = nullptr;
  StartServer(true);
  pb::GenerateRequest r;
  r.set_text("hello");
  Collected c = Generate(r);
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(c.status.error_message(), HasSubstr("this model is served with token ids only (no tokenizer.json)"));
  Collected ok = Generate(TokenRequest({1, 2}, 3));
  EXPECT_TRUE(ok.status.ok());
  EXPECT_EQ(ok.text(), "");
}

TEST_F(GrpcApiTest, GlmctlClientFunctions) {
  api::RemoteGenerateOptions g;
  g.tokens_csv = "5,6,7";
  g.max_new_tokens = 3;
  g.json = true;
  auto out = api::RemoteGenerate(grpc_address_, g);
  ASSERT_TRUE(out.ok()) << out.status();
  // Same JSON as single-process `glmctl generate --json`, plus the text.
  const std::string text = *tokenizer_->Decode({100, 101, 102}, true);
  EXPECT_EQ(*out, "{\"tokens\":[100,101,102],\"finish_reason\":\"length\",\"text\":" + nlohmann::json(text).dump() + "}");
  g.json = false;
  EXPECT_EQ(*api::RemoteGenerate(grpc_address_, g), "100,101,102");
  EXPECT_EQ(engine_->last_request().sampling.seed, std::optional<uint64_t>(0));

  ScriptText("Bonjour");
  api::RemoteGenerateOptions p;
  p.prompt = "hi";
  EXPECT_EQ(*api::RemoteGenerate(grpc_address_, p), "Bonjour");
  // glmctl --stream: the text goes to the sink as it arrives; the result only ends the line.
  std::vector<std::string> pieces;
  p.on_text = [&](const std::string& t) { pieces.push_back(t); };
  EXPECT_EQ(*api::RemoteGenerate(grpc_address_, p), "\n");
  EXPECT_EQ(absl::StrJoin(pieces, ""), "Bonjour");
  EXPECT_GE(pieces.size(), 2u) << "one piece per streamed message";
  p.on_text = nullptr;

  api::RemoteChatOptions chat;
  chat.message = "hello?";
  chat.min_p = 0.05;
  chat.repetition_penalty = 1.3;
  chat.presence_penalty = 0.5;
  chat.frequency_penalty = -0.5;
  EXPECT_EQ(*api::RemoteChat(grpc_address_, chat), "Bonjour");
  pieces.clear();
  chat.on_text = [&](const std::string& t) { pieces.push_back(t); };
  EXPECT_EQ(*api::RemoteChat(grpc_address_, chat), "\n");
  EXPECT_EQ(absl::StrJoin(pieces, ""), "Bonjour");
  chat.on_text = nullptr;
  const scheduler::SamplingOptions sent = engine_->last_request().sampling;
  EXPECT_FLOAT_EQ(sent.min_p, 0.05f);
  EXPECT_FLOAT_EQ(sent.repetition_penalty, 1.3f);
  EXPECT_FLOAT_EQ(sent.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(sent.frequency_penalty, -0.5f);
  chat.json = true;
  auto cj = nlohmann::json::parse(*api::RemoteChat(grpc_address_, chat));
  EXPECT_EQ(cj["content"], "Bonjour");
  EXPECT_EQ(cj["finish_reason"], "stop");

  auto info = api::RemoteInfo(grpc_address_, {});
  ASSERT_TRUE(info.ok()) << info.status();
  auto ij = nlohmann::json::parse(*info);
  EXPECT_EQ(ij["name"], "glm5-tiny-code");
  EXPECT_EQ(ij["health"], "SERVING");
  EXPECT_EQ(ij["max_context"], 4096);
  // GetModelInfo's speculative default and load (with the spec-decode counters) reach the CLI.
  EXPECT_TRUE(ij["default_speculative"].is_string()) << ij;
  ASSERT_TRUE(ij["load"].is_object()) << ij;
  for (const char* key : {"running", "kv_blocks_total", "spec_num_drafts", "spec_draft_tokens", "spec_accepted_tokens",
                          "spec_acceptance_rate", "spec_acceptance_rate_per_pos"})
    EXPECT_TRUE(ij["load"].contains(key)) << key << " in " << ij["load"];

  // Structured output and forced tool calls reach the engine as a constraint.
  p.response_format_json = R"({"type":"json_object"})";
  ScriptText("{}");
  ASSERT_TRUE(api::RemoteGenerate(grpc_address_, p).ok());
  EXPECT_NE(engine_->last_request().constraint, nullptr);
  chat.json = false;
  chat.tools_json = R"([{"type":"function","function":{"name":"now"}}])";
  chat.tool_choice = "now";  // a tool's name: one call of it
  ScriptText("x");
  ASSERT_TRUE(api::RemoteChat(grpc_address_, chat).ok());
  EXPECT_NE(engine_->last_request().constraint, nullptr);
  chat.tool_choice = "later";
  EXPECT_THAT(std::string(api::RemoteChat(grpc_address_, chat).status().message()),
              HasSubstr("chat.tool_choice_json: names 'later', which is not among the tools"));

  // Errors come back with the server's code and field.
  g.temperature = 0;
  g.max_new_tokens = 99999;
  EXPECT_EQ(api::RemoteGenerate(grpc_address_, g).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(GrpcApiTest, ShutdownEndsOpenStreamsAndAbortsThem) {
  engine_->SetTokenDelay(absl::Milliseconds(10));
  grpc::ClientContext ctx;
  pb::GenerateRequest r = TokenRequest({1, 2}, 1000);
  r.set_request_id("open-at-shutdown");
  r.mutable_sampling()->set_ignore_eos(true);
  auto reader = stub_->Generate(&ctx, r);
  pb::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  const absl::Time start = absl::Now();
  server_->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  while (reader->Read(&resp)) {
  }
  EXPECT_FALSE(reader->Finish().ok());
  EXPECT_TRUE(engine_->WaitForAbort("open-at-shutdown", absl::Seconds(5)));
}

TEST_F(GrpcApiTest, UnreachableServerFailsFast) {
  api::RemoteInfoOptions o;
  o.timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  auto info = api::RemoteInfo("127.0.0.1:1", o);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("127.0.0.1:1"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

}  // namespace
}  // namespace glm::testing
