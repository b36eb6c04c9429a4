// How /metrics accounts for requests and renders its samples (ServingMetrics, MetricsRegistry),
// through the HTTP front end; the gRPC front end's accounting is tested in grpc_api_test.cc.
#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "coordinator/api/metrics.h"
#include "coordinator/scheduler/engine_errors.h"
#include "coordinator/api/serving_metrics.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

class MetricsAccountingTest : public ApiTest {
 protected:
  int PostStatus(const std::string& path, const std::string& body) {
    auto res = PostJson(path, body);
    EXPECT_TRUE(res);
    return res ? res->status : -1;
  }
};

// A request the engine ends because its deadline passed or the server shut down is an abort
// (vLLM's finished_reason="abort"), not a server error; a cluster failure stays an error.
TEST_F(MetricsAccountingTest, HttpDeadlineAndShutdownEndingsCountAsAbortNotError) {
  const std::string abort = Series("vllm:request_success_total", "finished_reason", "abort");
  const std::string error = Series("glm:request_failures_total", "reason", "error");
  const std::string body = json{{"prompt", {1, 2}}, {"max_tokens", 10}}.dump();
  const std::string streamed = json{{"prompt", {1, 2}}, {"max_tokens", 10}, {"stream", true}}.dump();
  engine_->FailAfter(0, absl::DeadlineExceededError("deadline exceeded"));
  EXPECT_EQ(PostStatus("/v1/completions", body), 504);
  engine_->FailAfter(1, scheduler::ShuttingDownError());
  EXPECT_EQ(PostStatus("/v1/completions", body), 503);
  engine_->FailAfter(1, absl::DeadlineExceededError("deadline exceeded"));
  EXPECT_EQ(PostStatus("/v1/completions", streamed), 200);  // the error is an SSE event
  EXPECT_EQ(MetricValue(abort), 3);
  EXPECT_EQ(MetricValue(error), 0);
  engine_->FailAfter(1, absl::UnavailableError("the cluster failed: shard worker 3 is gone"));
  EXPECT_EQ(PostStatus("/v1/completions", body), 503);
  EXPECT_EQ(MetricValue(error), 1);
  EXPECT_EQ(MetricValue(abort), 3);
}

// n > 1: every choice is a request of the metrics (as of the engine and of vLLM): its prompt is
// counted, and its TTFT and latency run from the client's request. Choices after the first start
// once the first has its first token, so theirs include that wait (they were timed from their own
// start, hiding the prefill; and the prompt histogram saw one request where the rest counted n).
TEST_F(MetricsAccountingTest, EveryChoiceOfNIsARequestTimedFromTheClientsRequest) {
  const std::string labels = "{model_name=\"glm5-tiny-code\"}";
  const double prompts_before = MetricValue("vllm:request_prompt_tokens_count" + labels);
  const double prompt_sum_before = MetricValue("vllm:request_prompt_tokens_sum" + labels);
  const double ttft_count_before = MetricValue("vllm:time_to_first_token_seconds_count" + labels);
  const double ttft_sum_before = MetricValue("vllm:time_to_first_token_seconds_sum" + labels);
  engine_->SetTokenDelay(absl::Milliseconds(100));
  EXPECT_EQ(PostStatus("/v1/completions", json{{"prompt", {1, 2, 3, 4, 5}}, {"max_tokens", 1}, {"n", 3}}.dump()), 200);
  EXPECT_EQ(MetricValue("vllm:request_prompt_tokens_count" + labels) - prompts_before, 3);
  EXPECT_EQ(MetricValue("vllm:request_prompt_tokens_sum" + labels) - prompt_sum_before, 15);
  EXPECT_EQ(MetricValue("vllm:time_to_first_token_seconds_count" + labels) - ttft_count_before, 3);
  // Choice 0: ~0.1 s; choices 1 and 2: ~0.2 s each from the request (0.1 s each timed alone).
  EXPECT_GE(MetricValue("vllm:time_to_first_token_seconds_sum" + labels) - ttft_sum_before, 0.45);
}

// Every refused request counts in glm:request_failures_total{reason="rejected"}, whichever check
// refused it (JSON, fields, model name, prompt, or the engine); an unknown route is no request.
TEST_F(MetricsAccountingTest, HttpEveryRefusalCountsAsRejected) {
  const std::string rejected = Series("glm:request_failures_total", "reason", "rejected");
  model_.accept_any_name = false;
  const std::string deep = std::string(1000, '[') + std::string(1000, ']') + "}";  // over the depth limit
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"/v1/completions", "{not json"},
      {"/v1/completions", R"({"prompt": )" + deep},
      {"/v1/completions", R"({"prompt": "x", "temperature": -2})"},
      {"/v1/chat/completions", R"({"model": "glm-tiny"})"},
      {"/v1/completions", R"({"prompt": "x", "model": "gpt-4o"})"},
      {"/v1/completions", R"({"prompt": [1, 99999]})"},
      {"/v1/completions", R"({"prompt": ["x", [1, 99999]]})"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 5000})"},
  };
  for (const auto& [path, body] : refused) EXPECT_GE(PostStatus(path, body), 400) << body;
  EXPECT_EQ(PostStatus("/v1/nothing-here", "{}"), 404);
  EXPECT_TRUE(engine_->requests().empty());
  EXPECT_EQ(MetricValue(rejected), static_cast<double>(refused.size()));
  engine_->SetMaxLive(0);  // the engine's refusal still counts once
  EXPECT_EQ(PostStatus("/v1/completions", R"({"prompt": "x"})"), 429);
  EXPECT_EQ(MetricValue(rejected), static_cast<double>(refused.size() + 1));
}

// A finished request's phases come from the engine's times (queue = first scheduled - queued,
// prefill = first token - first scheduled, decode = last token - first token, inference = last
// token - first scheduled) and its token counts go to vLLM's 1-2-5 histograms up to the context;
// refused and failed requests add nothing.
TEST(MetricsRenderTest, PhasesAndTokenCountsOfFinishedRequests) {
  api::ServingMetrics metrics("m", 4096);
  {
    api::RequestTracker tracker(&metrics, "r1", "http", 100);
    const absl::Time t0 = absl::Now();
    absl::SleepFor(absl::Milliseconds(30));
    tracker.OnTokens(1, {t0 + absl::Milliseconds(1), t0 + absl::Milliseconds(11), t0 + absl::Milliseconds(25)});
    absl::SleepFor(absl::Milliseconds(10));
    tracker.OnTokens(3);
    tracker.Finish("stop");
  }
  for (const char* refused : {"rejected", "error"}) {
    api::RequestTracker tracker(&metrics, "r2", "http", 7);
    tracker.Finish(refused);
  }
  const std::string text = metrics.Render(scheduler::EngineLoad());
  auto sample = [&](const std::string& series) {
    const size_t at = text.find(series + " ");
    EXPECT_NE(at, std::string::npos) << series << "\n" << text;
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + series.size() + 1));
  };
  EXPECT_NEAR(sample("vllm:request_queue_time_seconds_sum{model_name=\"m\"}"), 0.010, 1e-6);
  EXPECT_NEAR(sample("vllm:request_prefill_time_seconds_sum{model_name=\"m\"}"), 0.014, 1e-6);
  const double decode = sample("vllm:request_decode_time_seconds_sum{model_name=\"m\"}");
  EXPECT_GT(decode, 0.014);  // the last token reached the tracker >= 15 ms after the engine's first
  EXPECT_NEAR(sample("vllm:request_inference_time_seconds_sum{model_name=\"m\"}"), decode + 0.014, 1e-6);
  EXPECT_EQ(sample("vllm:request_queue_time_seconds_count{model_name=\"m\"}"), 1);
  EXPECT_EQ(sample("vllm:request_prompt_tokens_sum{model_name=\"m\"}"), 100);
  EXPECT_EQ(sample("vllm:request_prompt_tokens_count{model_name=\"m\"}"), 1);
  EXPECT_EQ(sample("vllm:request_generation_tokens_sum{model_name=\"m\"}"), 4);
  EXPECT_EQ(sample("vllm:request_generation_tokens_bucket{model_name=\"m\",le=\"2\"}"), 0);
  EXPECT_EQ(sample("vllm:request_generation_tokens_bucket{model_name=\"m\",le=\"5\"}"), 1);
  EXPECT_EQ(sample("vllm:request_prompt_tokens_bucket{model_name=\"m\",le=\"2000\"}"), 1);
  EXPECT_EQ(text.find("vllm:request_prompt_tokens_bucket{model_name=\"m\",le=\"5000\"}"), std::string::npos)
      << "buckets stop at the model's context";
}

// Every counter family is named with _total and its samples carry that name: parsers built on
// prometheus_client skip a counter sample without the suffix (the per-position speculative
// counters lacked it).
TEST(MetricsRenderTest, EveryCounterIsNamedWithTotal) {
  scheduler::EngineLoad load;
  load.spec_accepted_per_pos = {8, 1};
  load.spec_drafted_per_pos = {10, 4};
  shard::RankStats rank;
  rank.set_rank(1);
  rank.set_expert_cache_hits(3);
  load.ranks.push_back(rank);
  api::ServingMetrics metrics("m");
  metrics.ObserveFinished("length", 0.5);
  metrics.ObserveFinished("rejected", 0);
  const std::string text = metrics.Render(load);
  std::map<std::string, std::string> type_of;  // family -> type
  int counters = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      ASSERT_EQ(parts.size(), 4u) << line;
      type_of[parts[2]] = parts[3];
      if (parts[3] == "counter") {
        ++counters;
        EXPECT_TRUE(absl::EndsWith(parts[2], "_total")) << line;
      }
      continue;
    }
    if (absl::StartsWith(line, "#")) continue;
    const std::string name(line.substr(0, line.find_first_of("{ ")));
    // A counter's samples are its family's name; histograms add _bucket/_sum/_count.
    if (!type_of.count(name)) {
      bool histogram_part = false;
      for (const char* suffix : {"_bucket", "_sum", "_count"})
        if (absl::EndsWith(name, suffix) &&
            type_of[name.substr(0, name.size() - std::string(suffix).size())] == "histogram")
          histogram_part = true;
      EXPECT_TRUE(histogram_part) << "a sample of no declared family: " << line;
    }
  }
  EXPECT_GT(counters, 10);
  EXPECT_THAT(text, HasSubstr("vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name=\"m\",position=\"1\"} 1"));
  EXPECT_THAT(text, HasSubstr("glm:spec_decode_num_draft_tokens_per_pos_total{model_name=\"m\",position=\"0\"} 10"));
}

// Numbers are printed in their shortest round-tripping form: a bucket's le="0.005" (vLLM's text;
// Prometheus before 3.0 compares le as a string), not %.17g's "0.0050000000000000001".
TEST(MetricsRenderTest, NumbersAreShortestRoundTrip) {
  using Type = api::MetricsRegistry::Type;
  api::MetricsRegistry r;
  r.Declare("h_seconds", Type::kHistogram, "h", {0.005, 0.1, 0.3, 0.8, 2.5, 10});
  r.Declare("g", Type::kGauge, "g");
  r.Declare("c_total", Type::kCounter, "c");
  r.Observe("h_seconds", {}, 0.064155107);
  r.Set("c_total", {}, 3e9);
  const std::vector<double> gauges = {0.1 + 0.2, 1e-7, 1e20, -2.5, 123456789012.5, 1.0 / 3,
                                      std::numeric_limits<double>::infinity(),
                                      -std::numeric_limits<double>::infinity(),
                                      std::numeric_limits<double>::quiet_NaN()};
  for (size_t i = 0; i < gauges.size(); ++i) r.Set("g", {{"i", std::to_string(i)}}, gauges[i]);
  const std::string text = r.Render();
  for (const char* le : {"0.005", "0.1", "0.3", "0.8", "2.5", "10", "+Inf"})
    EXPECT_THAT(text, HasSubstr(std::string("h_seconds_bucket{le=\"") + le + "\"}")) << le;
  EXPECT_THAT(text, HasSubstr("\nh_seconds_sum 0.064155107\n"));
  EXPECT_THAT(text, HasSubstr("\nc_total 3000000000\n"));  // whole counts stay digits
  EXPECT_THAT(text, HasSubstr("g{i=\"0\"} 0.30000000000000004\n"));
  EXPECT_THAT(text, HasSubstr("g{i=\"6\"} +Inf\n"));
  EXPECT_THAT(text, HasSubstr("g{i=\"7\"} -Inf\n"));
  EXPECT_THAT(text, HasSubstr("g{i=\"8\"} NaN\n"));
  // Every finite value reads back as the same double.
  for (size_t i = 0; i + 3 < gauges.size(); ++i) {
    const std::string key = "g{i=\"" + std::to_string(i) + "\"} ";
    const size_t at = text.find(key);
    ASSERT_NE(at, std::string::npos) << key;
    EXPECT_EQ(std::strtod(text.c_str() + at + key.size(), nullptr), gauges[i]) << key;
  }
}

// A refused request is also logged, so an operator sees why clients' requests fail (counted in
// glm:request_failures_total, it wrote no log line).
TEST_F(MetricsAccountingTest, RefusedRequestsAreLogged) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(PostStatus("/v1/completions", json{{"prompt", {1, 2}}, {"max_tokens", -3}}.dump()), 400);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("\"event\":\"request_rejected\""));
  EXPECT_THAT(log, HasSubstr("/v1/completions: INVALID_ARGUMENT: max_tokens"));
}

}  // namespace
}  // namespace glm::testing
