// serve_bench's core against our ApiServer over the FakeEngine (127.0.0.1, ports chosen by the
// OS): the gRPC backend and both OpenAI backends send what they should (token ids, exactly
// output_len tokens with ignore_eos) and measure what they should (counts, TTFT <= E2E, one
// ITL per later token), plus the report's statistics and JSON keys, failures and the deadline.
#include <httplib.h>

#include <cmath>
#include <limits>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "coordinator/api/api_server.h"
#include "coordinator/api/load_client.h"
#include "coordinator/api/load_generator.h"
#include "coordinator/api/load_report.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/coordinator/api/fake_engine.h"

namespace glm::testing {
namespace {

using api::LoadBackend;

class ServeBenchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = std::string(GLM_MODELS_DIR) + "/glm5-tiny-code";
    auto tok = tokenizer::Tokenizer::FromFile(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = tok->release();
    auto tmpl = tokenizer::ChatTemplate::FromTokenizerConfig(dir);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    chat_template_ = tmpl->release();
  }

  void SetUp() override {
    model_.name = "glm5-tiny-code";
    model_.max_context = 4096;
    model_.vocab_size = 4096;
    model_.eos_token_ids = {0};
    model_.tokenizer = tokenizer_;
    model_.chat_template = chat_template_;
    FakeEngineOptions engine_options;
    engine_options.token_delay = absl::Milliseconds(2);
    engine_ = std::make_unique<FakeEngine>(engine_options);
    api::ApiOptions options;
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    options.http_threads = 8;
    auto server = api::ApiServer::Start(options, engine_.get(), &model_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    server_->SetServing(true);
    // ASCII words, so every token has text of its own (one SSE chunk per token).
    std::string text;
    for (int i = 0; i < 40; ++i) text += " the cat sat on the mat";
    auto ids = tokenizer_->Encode(text, false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    engine_->SetScript([ids = *ids](const scheduler::GenerationRequest&) { return ids; });
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
    server_.reset();
    engine_.reset();
  }

  std::unique_ptr<api::LoadClient> Client(LoadBackend backend, int32_t priority = 0) {
    api::LoadClientOptions o;
    o.backend = backend;
    o.priority = priority;
    o.server = "127.0.0.1:" + std::to_string(backend == LoadBackend::kGrpc ? server_->grpc_port() : server_->http_port());
    o.connect_timeout = absl::Seconds(5);
    auto client = api::LoadClient::Create(o);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  static std::vector<api::LoadPrompt> Prompts(LoadBackend backend, int n, int input_len, int output_len,
                                              const std::string& dataset = "random") {
    api::LoadDatasetOptions d;
    d.dataset = dataset;
    d.num_prompts = n;
    d.input_len = input_len;
    d.output_len = output_len;
    d.seed = 7;
    d.as_text = backend == LoadBackend::kOpenAiChat || backend == LoadBackend::kAnthropicMessages ||
                backend == LoadBackend::kOpenAiResponses;
    auto prompts = api::MakeLoadPrompts(d);
    EXPECT_TRUE(prompts.ok()) << prompts.status();
    return prompts.ok() ? *prompts : std::vector<api::LoadPrompt>{};
  }

  // Runs `n` requests of `input_len` -> `output_len` tokens and checks everything that holds for
  // every backend; returns the run for backend-specific checks.
  api::LoadRunResult RunAndCheck(LoadBackend backend, int n, int input_len, int output_len, int concurrency) {
    auto client = Client(backend);
    if (!client) return {};
    api::LoadRunOptions run_options;
    run_options.max_concurrency = concurrency;
    run_options.timeout = absl::Seconds(30);
    const auto prompts = Prompts(backend, n, input_len, output_len);
    api::LoadRunResult run = api::RunLoad(client.get(), prompts, run_options);
    EXPECT_EQ(run.requests.size(), static_cast<size_t>(n));
    EXPECT_LE(run.peak_concurrency, concurrency);
    EXPECT_GE(run.peak_concurrency, 1);
    for (const auto& r : run.requests) {
      EXPECT_TRUE(r.success) << r.error;
      EXPECT_EQ(r.output_tokens, output_len);
      EXPECT_GT(r.ttft_s, 0.0);
      EXPECT_LE(r.ttft_s, r.latency_s);
      EXPECT_GE(r.start_s, 0.0);
      EXPECT_LE(r.start_s + r.latency_s, run.duration_s + 1e-6);
      // The fake engine sends one token per step: gRPC counts each gap, an OpenAI content chunk
      // is one gap even when the client reads several at once from a busy socket (it recorded one
      // gap per read).
      EXPECT_EQ(r.itl_s.size(), static_cast<size_t>(output_len - 1));
      for (double gap : r.itl_s) EXPECT_GE(gap, 0.0);
    }
    // What the server was asked: exactly output_len tokens, EOS ignored.
    const auto requests = engine_->requests();
    EXPECT_EQ(requests.size(), static_cast<size_t>(n));
    for (const auto& q : requests) {
      EXPECT_EQ(q.sampling.max_tokens, output_len);
      EXPECT_TRUE(q.sampling.ignore_eos);
    }

    const api::LoadSummary s = api::SummarizeLoad(run, api::LoadBackendName(backend), client->model());
    EXPECT_EQ(s.completed, n);
    EXPECT_EQ(s.failed, 0);
    EXPECT_EQ(s.total_output_tokens, int64_t{n} * output_len);
    EXPECT_GT(s.request_throughput, 0.0);
    EXPECT_NEAR(s.output_throughput, s.total_output_tokens / s.duration_s, 1e-6);
    EXPECT_LE(s.ttft.mean, s.e2el.mean);
    EXPECT_GT(s.tpot.mean, 0.0);
    EXPECT_GT(s.itl.mean, 0.0);
    EXPECT_LE(s.itl.median, s.itl.p99);
    return run;
  }

  static inline tokenizer::Tokenizer* tokenizer_ = nullptr;
  static inline tokenizer::ChatTemplate* chat_template_ = nullptr;
  api::ServedModel model_;
  std::unique_ptr<FakeEngine> engine_;
  std::unique_ptr<api::ApiServer> server_;
};

TEST_F(ServeBenchTest, GrpcSendsTokenIdsAndCountsEveryToken) {
  auto client = Client(LoadBackend::kGrpc);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->model(), "glm5-tiny-code");  // discovered from GetModelInfo: the report's model_id
  const auto run = RunAndCheck(LoadBackend::kGrpc, 6, 16, 8, 3);
  for (const auto& r : run.requests) EXPECT_EQ(r.prompt_len, 16);
  for (const auto& q : engine_->requests()) EXPECT_EQ(q.prompt.size(), 16u);
  EXPECT_EQ(api::SummarizeLoad(run, "grpc", "").total_input_tokens, 6 * 16);
}

TEST_F(ServeBenchTest, OpenAiCompletionsSendsTokenIdsAndReadsUsage) {
  const auto run = RunAndCheck(LoadBackend::kOpenAiCompletions, 5, 12, 6, 2);
  for (const auto& r : run.requests) EXPECT_EQ(r.prompt_len, 12);
  for (const auto& q : engine_->requests()) EXPECT_EQ(q.prompt.size(), 12u);
}

TEST_F(ServeBenchTest, OpenAiChatSendsTextAndTakesPromptLengthFromUsage) {
  auto client = Client(LoadBackend::kOpenAiChat);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->model(), "glm5-tiny-code");  // discovered from GET /v1/models
  const auto run = RunAndCheck(LoadBackend::kOpenAiChat, 4, 10, 5, 4);
  const auto requests = engine_->requests();
  ASSERT_EQ(requests.size(), 4u);
  for (size_t i = 0; i < run.requests.size(); ++i) EXPECT_GT(run.requests[i].prompt_len, 10);  // + the template
}

// The agent-harness APIs: the same load over Anthropic's messages and OpenAI's responses streams,
// their typed events read for output, usage (prompt length including the chat template) and end.
TEST_F(ServeBenchTest, AnthropicMessagesBackend) {
  const auto run = RunAndCheck(LoadBackend::kAnthropicMessages, 4, 10, 5, 2);
  for (const auto& r : run.requests) EXPECT_GT(r.prompt_len, 10);  // + the template
  EXPECT_EQ(api::LoadBackendName(LoadBackend::kAnthropicMessages), "anthropic-messages");
  EXPECT_EQ(*api::ParseLoadBackend("anthropic"), LoadBackend::kAnthropicMessages);
}

TEST_F(ServeBenchTest, OpenAiResponsesBackend) {
  const auto run = RunAndCheck(LoadBackend::kOpenAiResponses, 4, 10, 5, 2);
  for (const auto& r : run.requests) EXPECT_GT(r.prompt_len, 10);
  EXPECT_EQ(*api::ParseLoadBackend("openai-responses"), LoadBackend::kOpenAiResponses);
}

// A chat stream whose tokens carry no text (here special tokens, which chat output drops) has no
// first token to time: failed, as vLLM's benchmark counts it, with what the stream held.
// An OpenAI server that writes its SSE events four to a write (a busy socket, a server that
// batches): every content chunk is a token with its own gap, the later ones of a write 0 apart, as
// vLLM's bench serve records them (one gap per read turned 12 tokens into 3 gaps, 4x too long).
TEST(ServeBenchItlTest, ChunksReadTogetherAreAGapEach) {
  httplib::Server server;
  server.Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("text/event-stream", [](size_t, httplib::DataSink& sink) {
      for (int write = 0; write < 3; ++write) {
        std::string events;
        for (int i = 0; i < 4; ++i)
          events += R"(data: {"object":"text_completion","choices":[{"index":0,"text":"x","finish_reason":null}]})"
                    "\n\n";
        sink.write(events.data(), events.size());
        std::this_thread::sleep_for(std::chrono::milliseconds(40));
      }
      const std::string end = "data: [DONE]\n\n";
      sink.write(end.data(), end.size());
      sink.done();
      return true;
    });
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread serving([&server] { server.listen_after_bind(); });
  api::LoadClientOptions o;
  o.backend = LoadBackend::kOpenAiCompletions;
  o.server = "127.0.0.1:" + std::to_string(port);
  o.model = "m";
  auto client = api::LoadClient::Create(o);
  ASSERT_TRUE(client.ok()) << client.status();
  api::LoadPrompt prompt;
  prompt.text = "hi";
  prompt.prompt_len = 1;
  prompt.output_len = 12;
  const api::LoadRunResult run = api::RunLoad(client->get(), {prompt}, api::LoadRunOptions{});
  server.stop();
  serving.join();
  ASSERT_EQ(run.requests.size(), 1u);
  const api::LoadRequestResult& r = run.requests[0];
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_EQ(r.output_tokens, 12);
  ASSERT_EQ(r.itl_s.size(), 11u);
  int long_gaps = 0;
  for (double gap : r.itl_s) long_gaps += gap >= 0.02;
  EXPECT_EQ(long_gaps, 2);  // between the three writes; the 9 others within a write
}

TEST_F(ServeBenchTest, AChatStreamWithoutTextFailsAndSaysWhatItHeld) {
  const int32_t pad = *tokenizer_->TokenToId("<|pad|>");
  engine_->SetScript([pad](const scheduler::GenerationRequest&) { return std::vector<int32_t>(3, pad); });
  auto client = Client(LoadBackend::kOpenAiChat);
  ASSERT_NE(client, nullptr);
  const auto run = api::RunLoad(client.get(), Prompts(LoadBackend::kOpenAiChat, 1, 8, 3), {});
  ASSERT_EQ(run.requests.size(), 1u);
  const api::LoadRequestResult& r = run.requests[0];
  EXPECT_FALSE(r.success);
  EXPECT_NE(r.error.find("the stream ended without output tokens"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("[DONE] received"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("finish_reason length"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("usage completion_tokens 3"), std::string::npos) << r.error;
}

// --priority reaches the server on gRPC and the OpenAI APIs (vLLM's field); 0 is not sent.
TEST_F(ServeBenchTest, PrioritySentWhenSet) {
  for (const LoadBackend backend : {LoadBackend::kGrpc, LoadBackend::kOpenAiCompletions, LoadBackend::kOpenAiChat,
                                    LoadBackend::kOpenAiResponses}) {
    for (const int32_t priority : {-3, 0}) {
      auto client = Client(backend, priority);
      ASSERT_NE(client, nullptr);
      const auto prompts = Prompts(backend, 1, 8, 2);
      api::LoadRunOptions run_options;
      run_options.timeout = absl::Seconds(30);
      const api::LoadRunResult run = api::RunLoad(client.get(), prompts, run_options);
      ASSERT_EQ(run.requests.size(), 1u);
      EXPECT_TRUE(run.requests[0].success) << run.requests[0].error;
      EXPECT_EQ(engine_->requests().back().priority, priority) << api::LoadBackendName(backend);
    }
  }
}

TEST_F(ServeBenchTest, FixedDatasetRepeatsOnePrompt) {
  const auto prompts = Prompts(LoadBackend::kGrpc, 3, 20, 4, "fixed");
  ASSERT_EQ(prompts.size(), 3u);
  EXPECT_EQ(prompts[0].token_ids.size(), 20u);
  EXPECT_EQ(prompts[0].token_ids, prompts[2].token_ids);
  const auto random = Prompts(LoadBackend::kGrpc, 3, 20, 4);
  EXPECT_NE(random[0].token_ids, random[1].token_ids);
  api::LoadDatasetOptions d;
  d.dataset = "fixed";
  d.num_prompts = 2;
  d.output_len = 3;
  d.prompt_text = "one two three";
  auto text = api::MakeLoadPrompts(d);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ((*text)[1].text, "one two three");
  EXPECT_EQ((*text)[1].prompt_len, 3);
}

// vLLM's custom dataset: the user's own prompts, a JSON object a line, sent in file order.
TEST_F(ServeBenchTest, CustomDatasetSendsTheFilesPromptsInOrder) {
  api::LoadDatasetOptions d;
  d.dataset = "custom";
  d.num_prompts = 5;
  d.output_len = 6;
  d.prompt_text = "{\"prompt\": \"def add(a, b):\", \"output_tokens\": 3, \"source\": \"x\"}\r\n\n  \n"
                  "{\"prompt\": \"import os\"}\n";
  auto prompts = api::MakeLoadPrompts(d);
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  ASSERT_EQ(prompts->size(), 5u);
  const std::vector<std::string> texts = {"def add(a, b):", "import os", "def add(a, b):", "import os", "def add(a, b):"};
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ((*prompts)[i].text, texts[i]) << i;
    EXPECT_TRUE((*prompts)[i].token_ids.empty()) << i;
    EXPECT_EQ((*prompts)[i].output_len, i % 2 == 0 ? 3 : 6) << i;
  }
  EXPECT_EQ((*prompts)[0].prompt_len, 3);  // words: the server's usage replaces the estimate

  // Sent through gRPC as text: the engine gets the file's prompts, tokenized, in order.
  auto client = Client(LoadBackend::kGrpc);
  ASSERT_NE(client, nullptr);
  api::LoadRunOptions one_at_a_time;
  one_at_a_time.max_concurrency = 1;
  const auto run = api::RunLoad(client.get(), *prompts, one_at_a_time);
  for (const auto& r : run.requests) EXPECT_TRUE(r.error.empty()) << r.error;
  const auto requests = engine_->requests();
  ASSERT_EQ(requests.size(), 5u);
  EXPECT_EQ(requests[0].prompt, requests[2].prompt);
  EXPECT_NE(requests[0].prompt, requests[1].prompt);
  EXPECT_EQ(run.requests[0].output_tokens, 3);  // ignore_eos: exactly the line's output_tokens

  // Refusals name the line.
  for (const auto& [jsonl, why] : std::vector<std::pair<std::string, std::string>>{
           {"{\"prompt\": \"a\"}\n[1, 2]\n", "line 2: not a JSON object"},
           {"{\"prompt\": \"a\"}\n\n{\"text\": \"b\"}\n", "line 3: needs \"prompt\": a non-empty string"},
           {"{\"prompt\": \"\"}", "line 1: needs \"prompt\""},
           {"{\"prompt\": \"a\", \"output_tokens\": 0}", "line 1: \"output_tokens\" must be an integer"},
           {"{\"prompt\": \"a\", \"output_tokens\": 2.5}", "line 1: \"output_tokens\" must be an integer"},
           {"{\"prompt\": \"a\"", "line 1: not a JSON object"},
           {"\n \n", "holds no prompt"}}) {
    d.prompt_text = jsonl;
    auto refused = api::MakeLoadPrompts(d);
    ASSERT_FALSE(refused.ok()) << jsonl;
    EXPECT_NE(refused.status().message().find(why), std::string::npos) << refused.status() << " for " << jsonl;
  }
  d.prompt_text.clear();
  EXPECT_NE(api::MakeLoadPrompts(d).status().message().find("--dataset custom needs --prompt-file"), std::string::npos);
}

TEST_F(ServeBenchTest, RandomRangeRatioVariesLengths) {
  api::LoadDatasetOptions d;
  d.num_prompts = 50;
  d.input_len = 100;
  d.output_len = 10;
  d.range_ratio = 0.5;
  auto prompts = api::MakeLoadPrompts(d);
  ASSERT_TRUE(prompts.ok());
  int lo = 1000, hi = 0;
  for (const auto& p : *prompts) {
    EXPECT_EQ(static_cast<int>(p.token_ids.size()), p.prompt_len);
    lo = std::min(lo, p.prompt_len);
    hi = std::max(hi, p.prompt_len);
    EXPECT_GE(p.output_len, 5);
    EXPECT_LE(p.output_len, 15);
  }
  EXPECT_GE(lo, 50);
  EXPECT_LE(hi, 150);
  EXPECT_LT(lo, hi);
  d.range_ratio = 1.0;
  EXPECT_FALSE(api::MakeLoadPrompts(d).ok());
}

TEST_F(ServeBenchTest, PoissonArrivalsSpreadRequests) {
  auto client = Client(LoadBackend::kGrpc);
  ASSERT_NE(client, nullptr);
  api::LoadRunOptions o;
  o.request_rate = 40;
  o.seed = 3;
  const auto run = api::RunLoad(client.get(), Prompts(LoadBackend::kGrpc, 6, 8, 3), o);
  for (size_t i = 1; i < run.requests.size(); ++i) EXPECT_GE(run.requests[i].start_s, run.requests[i - 1].start_s);
  EXPECT_GT(run.requests.back().start_s, 0.0);  // 5 exponential gaps of mean 25 ms
  for (const auto& r : run.requests) EXPECT_TRUE(r.success) << r.error;
}

TEST_F(ServeBenchTest, FailuresAreCountedWithTheirErrors) {
  engine_->FailAfter(2, absl::InternalError("shard worker 3 died"));
  for (LoadBackend backend : {LoadBackend::kGrpc, LoadBackend::kOpenAiCompletions}) {
    auto client = Client(backend);
    ASSERT_NE(client, nullptr);
    const auto run = api::RunLoad(client.get(), Prompts(backend, 3, 8, 6), {});
    const auto s = api::SummarizeLoad(run, api::LoadBackendName(backend), client->model());
    EXPECT_EQ(s.completed, 0) << api::LoadBackendName(backend);
    EXPECT_EQ(s.failed, 3);
    ASSERT_EQ(s.errors.size(), 3u);
    EXPECT_NE(s.errors[0].find("shard worker 3 died"), std::string::npos) << s.errors[0];
    EXPECT_EQ(s.total_output_tokens, 0);
  }
}

TEST_F(ServeBenchTest, TheRunStopsAtItsTimeout) {
  engine_->SetTokenDelay(absl::Milliseconds(100));
  for (LoadBackend backend : {LoadBackend::kGrpc, LoadBackend::kOpenAiCompletions}) {
    auto client = Client(backend);
    ASSERT_NE(client, nullptr);
    api::LoadRunOptions o;
    o.max_concurrency = 1;
    o.timeout = absl::Milliseconds(400);
    const absl::Time start = absl::Now();
    const auto run = api::RunLoad(client.get(), Prompts(backend, 3, 8, 50), o);
    EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << api::LoadBackendName(backend);
    const auto s = api::SummarizeLoad(run, api::LoadBackendName(backend), client->model());
    EXPECT_EQ(s.failed, 3);
    ASSERT_EQ(s.errors.size(), 3u);
    EXPECT_NE(s.errors[2].find("not sent"), std::string::npos) << s.errors[2];
  }
}

TEST_F(ServeBenchTest, UnreachableServerFailsFast) {
  api::LoadClientOptions o;
  o.backend = LoadBackend::kOpenAiCompletions;
  o.server = "127.0.0.1:1";
  o.connect_timeout = absl::Milliseconds(500);
  auto client = api::LoadClient::Create(o);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable) << client.status();
  o.backend = LoadBackend::kGrpc;
  client = api::LoadClient::Create(o);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable) << client.status();
  EXPECT_FALSE(api::ParseLoadBackend("tgi").ok());
}

TEST(LoadReportTest, StatisticsMatchNumpy) {
  const api::LoadStat s = api::ComputeLoadStat({4, 1, 3, 2});
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.median, 2.5);
  EXPECT_NEAR(s.stddev, std::sqrt(1.25), 1e-12);  // numpy.std (population)
  EXPECT_NEAR(s.p90, 3.7, 1e-12);                 // numpy.percentile, linear
  EXPECT_NEAR(s.p99, 3.97, 1e-12);
  const api::LoadStat empty = api::ComputeLoadStat({});
  EXPECT_EQ(empty.mean, 0.0);
  EXPECT_EQ(empty.p99, 0.0);
}

TEST(LoadReportTest, JsonHasVllmKeysAndTableIsLaidOut) {
  api::LoadRunResult run;
  run.duration_s = 2.0;
  run.request_rate = std::numeric_limits<double>::infinity();
  api::LoadRequestResult ok;
  ok.success = true;
  ok.prompt_len = 10;
  ok.output_tokens = 5;
  ok.ttft_s = 0.1;
  ok.latency_s = 0.5;
  ok.itl_s = {0.1, 0.1, 0.1, 0.1};
  api::LoadRequestResult bad;
  bad.error = "HTTP 503: busy";
  run.requests = {ok, ok, bad};
  const api::LoadSummary s = api::SummarizeLoad(run, "grpc", "m");
  EXPECT_EQ(s.completed, 2);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.total_input_tokens, 20);
  EXPECT_EQ(s.total_output_tokens, 10);
  EXPECT_DOUBLE_EQ(s.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(s.output_throughput, 5.0);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 15.0);
  EXPECT_NEAR(s.ttft.mean, 100.0, 1e-9);
  EXPECT_NEAR(s.tpot.mean, 100.0, 1e-9);  // (500 - 100) / (5 - 1)
  EXPECT_NEAR(s.itl.mean, 100.0, 1e-9);
  EXPECT_NEAR(s.e2el.p99, 500.0, 1e-9);

  const nlohmann::json j = api::LoadSummaryJson(s);
  for (const char* key :
       {"duration", "completed", "total_input_tokens", "total_output_tokens", "request_throughput", "output_throughput",
        "total_token_throughput", "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
        "median_tpot_ms", "std_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "median_itl_ms", "std_itl_ms", "p99_itl_ms",
        "mean_e2el_ms", "median_e2el_ms", "std_e2el_ms", "p99_e2el_ms", "p90_ttft_ms", "max_concurrency",
        "request_rate", "failed", "error_samples"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_TRUE(j["max_concurrency"].is_null());
  EXPECT_EQ(j["error_samples"][0], "HTTP 503: busy");
  EXPECT_FALSE(j.contains("ttfts"));
  EXPECT_FALSE(j.contains("errors"));  // as vLLM: the per-request lists only in the detailed result
  const nlohmann::json detailed = api::LoadSummaryJson(s, &run);
  ASSERT_TRUE(detailed.contains("ttfts"));
  EXPECT_EQ(detailed["output_lens"].size(), 3u);
  // vLLM's "errors": one entry per request, empty for the successes.
  ASSERT_EQ(detailed["errors"].size(), 3u);
  int failed_entries = 0;
  for (const auto& e : detailed["errors"]) failed_entries += !e.get<std::string>().empty();
  EXPECT_EQ(failed_entries, 1);

  const std::string table = api::FormatLoadSummary(s);
  EXPECT_NE(table.find("Successful requests:                     2"), std::string::npos) << table;
  EXPECT_NE(table.find("Mean TTFT (ms):                          100.00"), std::string::npos) << table;
  EXPECT_NE(table.find("Time per Output Token (excl. 1st token)"), std::string::npos) << table;
  EXPECT_NE(table.find("error: HTTP 503: busy"), std::string::npos) << table;
}

}  // namespace
}  // namespace glm::testing
