// RequestOutput on its own: detokenization across token boundaries, stop-string hold-back, the
// hidden EOS, the chat parser split, the first token's time, and ServingMetrics' derived series.
#include "coordinator/api/request_output.h"

#include "absl/time/clock.h"
#include "coordinator/api/serving_metrics.h"
#include "gtest/gtest.h"
#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

class RequestOutputTest : public ApiTest {
 protected:
  void SetUp() override {}  // no server needed
  void TearDown() override {}

  // Feeds `ids` one event each (the last one finished with `reason`); returns the deltas' texts.
  std::vector<std::string> Feed(api::RequestOutput* out, const std::vector<int32_t>& ids, const std::string& reason,
                                api::OutputDelta* last = nullptr) {
    std::vector<std::string> texts;
    for (const api::OutputDelta& d : Deltas(out, ids, reason)) {
      texts.push_back(d.text);
      if (last != nullptr) *last = d;
    }
    return texts;
  }

  // Feeds `ids` one event each (the last one finished with `reason`, completion counts 1, 2, ...)
  // until the output finishes; returns every delta.
  std::vector<api::OutputDelta> Deltas(api::RequestOutput* out, const std::vector<int32_t>& ids,
                                       const std::string& reason) {
    std::vector<api::OutputDelta> deltas;
    for (size_t i = 0; i < ids.size(); ++i) {
      scheduler::GenerationEvent e;
      e.tokens = {ids[i]};
      e.completion_tokens = static_cast<int32_t>(i + 1);
      e.finished = i + 1 == ids.size();
      if (e.finished) e.finish_reason = reason;
      auto d = out->Consume(e);
      EXPECT_TRUE(d.ok()) << d.status();
      if (!d.ok()) break;
      deltas.push_back(*std::move(d));
      if (deltas.back().finished) break;
    }
    return deltas;
  }

  // One token per byte-level piece, so text arrives split inside words and characters.
  std::vector<int32_t> Pieces(const std::string& text) { return Encode(text); }
};

// --stream-interval with a late consumer: a whole group waits behind the first token, yet the
// first token is a message alone (the TTFT message), and the group follows as the next one.
TEST_F(RequestOutputTest, FirstTokenIsAMessageAloneWhenAGroupWaitsBehindIt) {
  scheduler::RequestStream stream("late-reader");
  stream.SetInterval({.tokens = 4, .max_delay = absl::Hours(1)});
  for (int32_t i = 0; i < 8; ++i) {
    scheduler::GenerationEvent e;
    e.tokens = {100 + i};
    e.completion_tokens = i + 1;
    stream.Push(std::move(e));
  }
  api::RequestOutput out(tokenizer_, api::OutputOptions{});
  scheduler::GenerationEvent e;
  ASSERT_TRUE(stream.Next(&e, absl::ZeroDuration()));
  auto first = out.ConsumeReleased(e, stream);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->tokens, (std::vector<int32_t>{100}));
  EXPECT_TRUE(first->first_tokens);
  ASSERT_TRUE(stream.Next(&e, absl::ZeroDuration()));  // the 7 waiting: past the interval
  auto group = out.ConsumeReleased(e, stream);
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ(group->tokens, (std::vector<int32_t>{101, 102, 103, 104, 105, 106, 107}));
  EXPECT_EQ(group->completion_tokens, 8);
  EXPECT_FALSE(stream.Next(&e, absl::ZeroDuration()));  // nothing left
  scheduler::GenerationEvent end;
  end.tokens = {108};
  end.completion_tokens = 9;
  end.finished = true;
  end.finish_reason = "length";
  stream.Push(std::move(end));
  ASSERT_TRUE(stream.Next(&e, absl::ZeroDuration()));  // the end never waits for a group
  auto last = out.ConsumeReleased(e, stream);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->tokens, (std::vector<int32_t>{108}));
  EXPECT_TRUE(last->finished);
}

TEST_F(RequestOutputTest, StopStringSplitAcrossTokensIsHeldBackThenCut) {
  api::OutputOptions o;
  o.stop = {"<END>"};
  api::RequestOutput out(tokenizer_, o);
  api::OutputDelta last;
  std::vector<int32_t> ids = Pieces("abc <EN");
  std::vector<int32_t> rest = Pieces("D> tail");
  ids.insert(ids.end(), rest.begin(), rest.end());
  auto texts = Feed(&out, ids, "length", &last);
  std::string all;
  for (const auto& t : texts) {
    EXPECT_EQ(t.find('<'), std::string::npos) << "a partial stop string leaked: " << t;
    all += t;
  }
  EXPECT_EQ(all, "abc ");
  EXPECT_TRUE(last.stop_string_matched);
  EXPECT_EQ(last.matched_stop, "<END>");
  EXPECT_EQ(last.finish_reason, "stop");
  EXPECT_TRUE(out.finished());
}

// min_tokens: a stop string in the first min_tokens - 1 tokens passes as text; from the
// min_tokens-th token on one ends the output (vLLM checks once the output has min_tokens tokens).
TEST_F(RequestOutputTest, StopStringsWaitForMinTokens) {
  const std::vector<int32_t> head = Pieces("a;b;");
  std::vector<int32_t> ids = head, rest = Pieces("cd;ef");
  ids.insert(ids.end(), rest.begin(), rest.end());
  for (const bool in_one_event : {false, true}) {
    api::OutputOptions o;
    o.stop = {";"};
    o.min_tokens = static_cast<int32_t>(head.size()) + 1;
    api::RequestOutput out(tokenizer_, o);
    std::string all;
    api::OutputDelta last;
    if (in_one_event) {
      scheduler::GenerationEvent e;
      e.tokens = ids;
      e.completion_tokens = static_cast<int32_t>(ids.size());
      auto d = out.Consume(e);
      ASSERT_TRUE(d.ok()) << d.status();
      all = d->text;
      last = *d;
    } else {
      for (const std::string& t : Feed(&out, ids, "length", &last)) all += t;
    }
    EXPECT_EQ(all, "a;b;cd") << in_one_event;
    EXPECT_TRUE(last.stop_string_matched);
    EXPECT_EQ(last.finish_reason, "stop");
  }
}

// An event of several tokens (accepted speculative drafts) ends where the same tokens one event
// each end: at the token that completes the first stop string to complete — not at the earliest-
// starting match in the event's text — with no token, logprob or count from after it. Before, the
// whole event's text was searched at once: MTP speculation cut a greedy request elsewhere than
// plain decoding did, and its logprobs and counts included tokens from after the stop.
TEST_F(RequestOutputTest, StopStringsInAMultiTokenEventEndWhereSingleTokensEnd) {
  const std::vector<int32_t> ids = Pieces("ab Xyz tail Q more");
  // "Xyz tail Q" starts first but completes last; "Q" completes first.
  for (const std::vector<std::string>& stops : {std::vector<std::string>{"Xyz tail Q", "Q"},
                                                std::vector<std::string>{"yz", "Xy"}}) {
    api::OutputOptions o;
    o.stop = stops;
    api::RequestOutput single(tokenizer_, o);
    api::OutputDelta single_last;
    std::string single_text;
    for (const auto& t : Feed(&single, ids, "length", &single_last)) single_text += t;
    size_t single_tokens = 0;
    {
      api::RequestOutput counter(tokenizer_, o);
      for (const api::OutputDelta& d : Deltas(&counter, ids, "length")) single_tokens += d.tokens.size();
    }
    api::RequestOutput batched(tokenizer_, o);
    scheduler::GenerationEvent e;
    e.tokens = ids;
    e.completion_tokens = static_cast<int32_t>(ids.size());
    for (int32_t id : ids) e.logprobs.push_back({id, -1.0f, {}});
    auto d = batched.Consume(e);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(d->stop_string_matched);
    EXPECT_EQ(d->matched_stop, single_last.matched_stop) << stops[0];
    EXPECT_TRUE(d->matched_stop == stops[0] || d->matched_stop == stops[1]) << d->matched_stop;
    EXPECT_EQ(d->text, single_text) << stops[0];
    EXPECT_EQ(d->tokens.size(), single_tokens) << stops[0];
    EXPECT_EQ(d->logprobs.size(), single_tokens);
    EXPECT_EQ(d->completion_tokens, static_cast<int32_t>(single_tokens));
    EXPECT_EQ(single_last.completion_tokens, static_cast<int32_t>(single_tokens));
  }
}

// A stop string that starts before the min_tokens-th token and completes at it ends the output
// (vLLM looks back a stop string's length): it was missed, as the text before min_tokens went out
// unchecked, and the output ran on to a later match. One wholly before min_tokens still passes.
TEST_F(RequestOutputTest, AStopStringCompletingAtMinTokensCountsThoughItStartedBefore) {
  const std::vector<int32_t> head = Pieces("abc Retu");
  std::vector<int32_t> ids = head;
  for (int32_t id : Pieces("rns, more")) ids.push_back(id);
  for (const bool include : {false, true}) {
    api::OutputOptions o;
    o.stop = {"turn", "abc"};
    o.include_stop_str = include;
    o.min_tokens = static_cast<int32_t>(head.size()) + 1;
    api::RequestOutput out(tokenizer_, o);
    api::OutputDelta last;
    std::string all;
    for (const std::string& t : Feed(&out, ids, "length", &last)) all += t;
    EXPECT_EQ(all, include ? "abc Return" : "abc Retu") << include;
    EXPECT_TRUE(last.stop_string_matched);
    EXPECT_EQ(last.matched_stop, "turn");
    EXPECT_EQ(last.finish_reason, "stop");
  }
}

// Predicted outputs: tokens count as accepted only where they are in the completion (OpenAI). A
// stop string that cuts an event of accepted drafts short used to leave the count above the
// completion's tokens; the cut ones now count as rejected.
TEST_F(RequestOutputTest, AcceptedPredictionTokensNeverExceedTheCompletion) {
  const std::vector<int32_t> ids = Pieces("x + 1 and more");
  api::OutputOptions o;
  o.stop = {"+"};
  api::RequestOutput out(tokenizer_, o);
  scheduler::GenerationEvent e;
  e.tokens = ids;
  e.completion_tokens = static_cast<int32_t>(ids.size());
  e.accepted_prediction_tokens = static_cast<int32_t>(ids.size()) - 1;
  e.rejected_prediction_tokens = 2;
  auto d = out.Consume(e);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(d->stop_string_matched);
  EXPECT_LT(d->completion_tokens, e.completion_tokens);
  EXPECT_EQ(d->accepted_prediction_tokens, d->completion_tokens);
  EXPECT_EQ(d->accepted_prediction_tokens + d->rejected_prediction_tokens,
            e.accepted_prediction_tokens + e.rejected_prediction_tokens);
}

// include_stop_str_in_output (vLLM): the matched stop string ends the text instead of being cut.
TEST_F(RequestOutputTest, IncludedStopStringEndsTheText) {
  api::OutputOptions o;
  o.stop = {"<END>"};
  o.include_stop_str = true;
  api::RequestOutput out(tokenizer_, o);
  api::OutputDelta last;
  std::string all;
  for (const auto& t : Feed(&out, Pieces("abc <END> tail"), "length", &last)) all += t;
  EXPECT_EQ(all, "abc <END>");
  EXPECT_EQ(last.finish_reason, "stop");
}

// Chat keeps special tokens other than its markup out of the content unless the client sends
// skip_special_tokens: false (it was ignored in chat).
TEST_F(RequestOutputTest, ChatShowsSpecialTokensOnlyWhenNotSkipped) {
  const auto user = tokenizer_->TokenToId("<|user|>");
  ASSERT_TRUE(user.has_value());
  std::vector<int32_t> ids = Pieces("a");
  ids.push_back(*user);
  const std::vector<int32_t> tail = Pieces("b");
  ids.insert(ids.end(), tail.begin(), tail.end());
  for (bool skip : {true, false}) {
    api::OutputOptions o;
    o.parse_chat = true;
    o.skip_special_tokens = skip;
    api::RequestOutput out(tokenizer_, o);
    std::string content;
    for (const api::OutputDelta& d : Deltas(&out, ids, "length")) content += d.text;
    EXPECT_EQ(content, skip ? "ab" : "a<|user|>b");
  }
}

TEST_F(RequestOutputTest, UnmatchedPartialStopIsReleased) {
  api::OutputOptions o;
  o.stop = {"<END>"};
  api::RequestOutput out(tokenizer_, o);
  auto texts = Feed(&out, Pieces("x <EN y <E"), "length");
  std::string all;
  for (const auto& t : texts) all += t;
  EXPECT_EQ(all, "x <EN y <E");
}

TEST_F(RequestOutputTest, MultiByteCharactersArriveWhole) {
  api::RequestOutput out(tokenizer_, api::OutputOptions{});
  const std::string text = "héllo wörld ✓ 日本";
  auto texts = Feed(&out, Pieces(text), "length");
  std::string all;
  for (const auto& t : texts) all += t;
  EXPECT_EQ(all, text);
}

TEST_F(RequestOutputTest, EosTextHiddenButTokenKept) {
  api::OutputOptions o;
  o.hidden_stop_ids = {0};
  o.skip_special_tokens = false;
  api::RequestOutput out(tokenizer_, o);
  std::vector<int32_t> ids = Pieces("done");
  ids.push_back(0);
  api::OutputDelta last;
  auto texts = Feed(&out, ids, "stop", &last);
  std::string all;
  for (const auto& t : texts) all += t;
  EXPECT_EQ(all, "done");
  EXPECT_EQ(last.tokens, std::vector<int32_t>{0});
}

TEST_F(RequestOutputTest, ChatSplitsReasoningContentAndToolCalls) {
  api::OutputOptions o;
  o.parse_chat = true;
  o.tools = nlohmann::json::parse(R"([{"type":"function","function":{"name":"f"}}])");
  api::RequestOutput out(tokenizer_, o);
  std::string reasoning, content;
  int calls = 0;
  std::string last_reason;
  const std::vector<int32_t> ids =
      Pieces("<think>hmm</think>Sure.<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>1</arg_value>\n</tool_call>");
  for (const api::OutputDelta& d : Deltas(&out, ids, "stop")) {
    reasoning += d.reasoning;
    content += d.text;
    calls += static_cast<int>(d.tool_calls.size());
    if (d.finished) last_reason = d.finish_reason;
  }
  EXPECT_EQ(reasoning, "hmm");
  EXPECT_EQ(content, "Sure.");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(last_reason, "tool_calls");
}

// A request without tools (null or []; tool_choice "none" nulls them) got the model's
// <tool_call> text parsed into tool_calls anyway; now it stays content, as in vLLM.
TEST_F(RequestOutputTest, ChatWithoutToolsKeepsToolCallMarkupAsContent) {
  const std::string text = "Sure.<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>1</arg_value>\n</tool_call>";
  for (const nlohmann::json& tools : {nlohmann::json(nullptr), nlohmann::json::array()}) {
    api::OutputOptions o;
    o.parse_chat = true;
    o.tools = tools;
    api::RequestOutput out(tokenizer_, o);
    api::OutputDelta last;
    std::string content;
    for (const std::string& t : Feed(&out, Pieces("<think>hmm</think>" + text), "stop", &last)) content += t;
    EXPECT_EQ(content, text) << tools;
    EXPECT_EQ(out.tool_call_count(), 0);
    EXPECT_EQ(last.finish_reason, "stop");
  }
}

// Tool-call ids: OutputOptions::tool_call_id_prefix when set, else a random prefix per
// RequestOutput (one per choice): two outputs of the same request never share an id.
TEST_F(RequestOutputTest, ToolCallIdsArePerOutput) {
  const std::vector<int32_t> ids = Pieces("<tool_call>f\n</tool_call><tool_call>g\n</tool_call>");
  auto call_ids = [&](const std::string& prefix) {
    api::OutputOptions o;
    o.parse_chat = true;
    o.tools = nlohmann::json::parse(R"([{"type":"function","function":{"name":"f"}}])");
    o.tool_call_id_prefix = prefix;
    api::RequestOutput out(tokenizer_, o);
    std::vector<std::string> got;
    for (const api::OutputDelta& d : Deltas(&out, ids, "stop"))
      for (const auto& c : d.tool_calls) got.push_back(c.id);
    return got;
  };
  EXPECT_EQ(call_ids("call_x_"), (std::vector<std::string>{"call_x_0", "call_x_1"}));
  const std::vector<std::string> a = call_ids(""), b = call_ids("");
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_NE(a[0], a[1]);
  EXPECT_NE(a[0], b[0]);
  EXPECT_EQ(a[0].rfind("call_", 0), 0u) << a[0];
  EXPECT_EQ(a[0].size(), std::string("call_0123456789abcdef_0").size()) << a[0];
}

TEST_F(RequestOutputTest, EngineErrorIsReturned) {
  api::RequestOutput out(tokenizer_, api::OutputOptions{});
  scheduler::GenerationEvent e;
  e.finished = true;
  e.error = absl::UnavailableError("cluster gone");
  EXPECT_EQ(out.Consume(e).status().code(), absl::StatusCode::kUnavailable);
}

// TTFT is the engine's first-token time, not when an API thread got round to the token: the
// first delta carries the engine's time, and the tracker measures from it.
TEST_F(RequestOutputTest, TimeToFirstTokenIsTheEnginesTime) {
  api::RequestOutput out(tokenizer_, api::OutputOptions{});
  const absl::Time produced = absl::Now() + absl::Milliseconds(2);
  scheduler::GenerationEvent first;
  first.tokens = {100};
  first.times = {produced - absl::Milliseconds(9), produced - absl::Milliseconds(4), produced};
  auto d = out.Consume(first);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->first_tokens);
  EXPECT_EQ(d->times.first_token, produced);
  EXPECT_EQ(d->times.queued, produced - absl::Milliseconds(9));  // and the engine's phase times with it
  EXPECT_EQ(d->times.scheduled, produced - absl::Milliseconds(4));
  scheduler::GenerationEvent second;
  second.tokens = {101};
  d = out.Consume(second);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->first_tokens);

  api::ServingMetrics metrics("m");
  {
    api::RequestTracker tracker(&metrics);
    const absl::Time engine_time = absl::Now() + absl::Milliseconds(1);
    absl::SleepFor(absl::Milliseconds(60));  // the API thread is late
    scheduler::RequestTimes times;
    times.first_token = engine_time;
    tracker.OnTokens(1, times);
    tracker.Finish("length");
  }
  const std::string text = metrics.Render(scheduler::EngineLoad());
  const std::string key = "vllm:time_to_first_token_seconds_sum{model_name=\"m\"} ";
  const size_t at = text.find(key);
  ASSERT_NE(at, std::string::npos) << text;
  const double ttft = std::stod(text.substr(at + key.size()));
  EXPECT_GT(ttft, 0.0005);
  EXPECT_LT(ttft, 0.03) << "measured when the tracker saw the token, not when the engine produced it";
}

// ServingMetrics derives each stage's load imbalance from the ranks' counters: the busiest rank's
// compute time (step minus communication) over the stage's mean, for stages of 2+ ranks.
TEST(ServingMetricsTest, StageBusiestRankRatio) {
  scheduler::EngineLoad load;
  auto add = [&](int rank, int stage, double step, double comm) {
    shard::RankStats r;
    r.set_rank(rank);
    r.set_stage(stage);
    r.set_step_seconds(step);
    r.set_comm_seconds(comm);
    load.ranks.push_back(r);
  };
  add(1, 0, 1.0, 0.2);  // busy 0.8
  add(2, 0, 1.0, 0.6);  // busy 0.4: waited for rank 1
  add(3, 1, 1.0, 0.1);  // alone in its stage
  api::ServingMetrics metrics("m");
  const std::string text = metrics.Render(load);
  const std::string key = "glm:stage_busiest_rank_ratio{model_name=\"m\",stage=\"0\"} ";
  const size_t at = text.find(key);
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_NEAR(std::stod(text.substr(at + key.size())), 0.8 / 0.6, 1e-9);
  EXPECT_EQ(text.find("stage_busiest_rank_ratio{model_name=\"m\",stage=\"1\"}"), std::string::npos);
}

// vllm:cache_config_info: value 1, the KV cache's settings as labels (absent until set: a server
// that did not report its blocks shows no made-up cache).
TEST(ServingMetricsTest, CacheConfigInfo) {
  api::ServingMetrics metrics("m");
  EXPECT_EQ(metrics.Render(scheduler::EngineLoad{}).find("vllm:cache_config_info{"), std::string::npos);
  metrics.SetCacheConfig(32, "int8", 16777, true, "bf16");
  const std::string text = metrics.Render(scheduler::EngineLoad{});
  EXPECT_NE(text.find("# TYPE vllm:cache_config_info gauge"), std::string::npos) << text;
  EXPECT_NE(text.find("vllm:cache_config_info{model_name=\"m\",block_size=\"32\",cache_dtype=\"int8\","
                      "enable_prefix_caching=\"True\",num_gpu_blocks=\"16777\",index_key_dtype=\"bf16\"} 1"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace glm::testing
