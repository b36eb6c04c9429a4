// The continuous-batching engine over a real (in-process) cluster of the bundled model:
// batching, chunked prefill, prefix-cache exactness, preemption, abort, admission control.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <thread>

#include "absl/strings/match.h"
#include "coordinator/scheduler/engine_errors.h"
#include "tests/coordinator/scheduler/engine_harness.h"

namespace glm::scheduler {
namespace {

TEST(EngineTest, GreedyMatchesSingleProcessEngine) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  auto prompt = Prompt(1, 37);
  auto out = h.Run(Greedy(prompt, 12));
  ASSERT_TRUE(out.error.ok()) << out.error;
  EXPECT_EQ(out.finish_reason, "length");
  EXPECT_EQ(out.tokens, SingleProcessGreedy(prompt, 12));
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
}

// Every worker rank's counters reach the engine's load (and so /metrics): each rank ran every
// step, read routed experts (the bundled model's MoE layers sit on both stages of a 2-stage
// split), and the pipeline's second stage spent time receiving the hand-off.
TEST(EngineTest, RankStatsCountEveryWorkersSteps) {
  for (auto [workers, stages] : std::vector<std::pair<int, int>>{{1, 1}, {2, 2}, {2, 1}}) {
    SCOPED_TRACE(::testing::Message() << workers << " workers, " << stages << " stages");
    EngineHarness h("glm5-tiny-code", workers, stages, 256, 16);
    auto out = h.Run(Greedy(Prompt(1, 37), 12));
    ASSERT_TRUE(out.error.ok()) << out.error;
    // Collected once the loop goes idle after the last step.
    EngineLoad load = h.engine()->GetLoad();
    for (int i = 0; i < 1000 && (load.ranks.empty() || load.ranks[0].steps() != load.steps); ++i) {
      absl::SleepFor(absl::Milliseconds(10));
      load = h.engine()->GetLoad();
    }
    ASSERT_EQ(static_cast<int>(load.ranks.size()), workers);
    EXPECT_GE(load.steps, 12);
    int64_t expert_bytes = 0;
    for (int i = 0; i < workers; ++i) {
      const shard::RankStats& r = load.ranks[i];
      EXPECT_EQ(r.rank(), i + 1);
      EXPECT_EQ(r.stage(), stages == 1 ? 0 : i);
      EXPECT_EQ(r.steps(), load.steps);
      EXPECT_GT(r.step_seconds(), 0.0);
      EXPECT_GT(r.expert_bytes_read(), 0);
      if (r.stage() > 0) {  // receives the previous stage's hidden states (an in-process send is a copy)
        EXPECT_GT(r.comm_seconds(), 0.0);
      }
      expert_bytes += r.expert_bytes_read();
    }
    EXPECT_EQ(load.expert_bytes_total, expert_bytes);
    // Routing statistics (GetExpertLoad): every MoE layer, from both stages of a split, each
    // counting the 37 prompt tokens and the 11 fed-back ones num_experts_per_tok times; kept out
    // of the ranks' counters GetLoad copies.
    const auto routing = h.engine()->ExpertRouting();
    EXPECT_EQ(routing.size(), 5u);
    for (const auto& [layer, counts] : routing) {
      EXPECT_EQ(counts.size(), 16u);
      EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), int64_t{0}), 4 * (37 + 11)) << "layer " << layer;
    }
    for (const shard::RankStats& r : load.ranks) EXPECT_EQ(r.routing_size(), 0);
  }
}

// Penalties and logit_bias change greedy picks; the cluster (with or without speculation, one
// worker or a 2-stage pipeline) must pick exactly what the single-process engine picks.
TEST(EngineTest, PenaltiesAndLogitBiasMatchSingleProcessEngine) {
  SingleProcess sp;
  ASSERT_NE(sp.model, nullptr);
  const model::Glm5Model& single = *sp.model;
  struct Case {
    float repetition, presence, frequency;
    std::vector<std::pair<int32_t, float>> bias;
  };
  const std::vector<Case> cases = {{1.3f, 0, 0, {}},
                                   {1.0f, 0.8f, 0, {}},
                                   {1.0f, 0, 2.0f, {}},
                                   {1.2f, 0.3f, 0.2f, {{120, 4.0f}, {33, -100.0f}}}};
  const auto prompt = Prompt(5, 30);
  runtime::GenerateOptions plain;
  plain.max_new_tokens = 24;
  plain.ignore_eos = true;
  const auto unpenalised = runtime::Generate(single, prompt, plain)->tokens;
  for (int layout : {1, 2}) {
    EngineHarness h("glm5-tiny-code", layout, layout, 256, 16);
    for (size_t c = 0; c < cases.size(); ++c) {
      runtime::GenerateOptions g = plain;
      g.sampling.repetition_penalty = cases[c].repetition;
      g.sampling.presence_penalty = cases[c].presence;
      g.sampling.frequency_penalty = cases[c].frequency;
      g.sampling.logit_bias = cases[c].bias;
      const auto want = runtime::Generate(single, prompt, g)->tokens;
      EXPECT_NE(want, unpenalised) << "case " << c << " changes nothing here: the comparison would prove nothing";
      for (const std::string spec : {"none", "mtp:2", "ngram:3"}) {
        GenerationRequest r = Greedy(prompt, 24);
        r.sampling.repetition_penalty = cases[c].repetition;
        r.sampling.presence_penalty = cases[c].presence;
        r.sampling.frequency_penalty = cases[c].frequency;
        r.sampling.logit_bias = cases[c].bias;
        r.speculative = spec;
        auto out = h.Run(r);
        ASSERT_TRUE(out.error.ok()) << out.error;
        EXPECT_EQ(out.tokens, want) << "case " << c << " " << spec << " layout " << layout << "x" << layout;
      }
    }
  }
}

// Prompt scoring: every prompt token's logprob after the first (with alternatives), over chunked
// prefill and a 2-stage pipeline, is the single-process forward's log-softmax; a scored prompt
// is computed in full even when its blocks are cached; requests sharing its steps (plain and
// speculative, whose logit rows sit next to its rows) are unaffected; a logits budget of 5 rows
// cuts the scored prompt into 5-token chunks with the same result.
TEST(EngineTest, PromptLogprobsMatchTheSingleProcessForward) {
  const auto prompt = Prompt(9, 45);
  const int64_t n = static_cast<int64_t>(prompt.size());
  SingleProcess sp;
  ASSERT_NE(sp.model, nullptr);
  const model::Glm5Model& single = *sp.model;
  auto cache = single.NewCache();
  std::vector<model::SequenceInput> in(1);
  in[0].cache = cache.get();
  in[0].tokens = prompt;
  auto full = single.Forward(in, model::LogitRows::kAll);
  ASSERT_TRUE(full.ok());
  const int64_t vocab = single.config().vocab_size;
  struct Layout {
    int workers, stages, chunk;
    int64_t scored_rows;  // max_scored_logits in rows of the vocabulary
  };
  for (Layout layout : {Layout{1, 1, 7, 1 << 20}, Layout{2, 2, 2048, 1 << 20}, Layout{1, 1, 2048, 5}}) {
    EngineOptions o;
    o.prefill_chunk = layout.chunk;
    o.max_scored_logits = layout.scored_rows * vocab;
    EngineHarness h("glm5-tiny-code", layout.workers, layout.stages, 256, 16, o);
    ASSERT_TRUE(h.Run(Greedy(prompt, 2)).error.ok());  // the prompt's blocks are now cached
    GenerationRequest r = Greedy(prompt, 3);
    r.sampling.prompt_logprobs = 2;
    // Sharing its steps: a plain request and a speculative one (several logit rows each).
    const auto other = Prompt(10, 30), third = Prompt(11, 20);
    GenerationRequest spec = Greedy(third, 12);
    spec.speculative = "mtp:2";
    auto outs = h.RunAll({r, Greedy(other, 8), spec});
    const auto& out = outs[0];
    ASSERT_TRUE(out.error.ok()) << out.error;
    ASSERT_TRUE(outs[1].error.ok() && outs[2].error.ok());
    EXPECT_EQ(outs[1].tokens, SingleProcessGreedy(other, 8));
    EXPECT_EQ(outs[2].tokens, SingleProcessGreedy(third, 12));
    EXPECT_EQ(out.cached_tokens, 0) << "a scored prompt must not start from cached blocks";
    EXPECT_EQ(out.tokens, SingleProcessGreedy(prompt, 3));
    ASSERT_EQ(static_cast<int64_t>(out.prompt_logprobs.size()), n - 1);
    for (int64_t p = 1; p < n; ++p) {
      const float* row = full->logits.data() + (p - 1) * vocab;
      const float max = *std::max_element(row, row + vocab);
      double z = 0;
      for (int64_t v = 0; v < vocab; ++v) z += std::exp(static_cast<double>(row[v] - max));
      const double want = row[prompt[p]] - max - std::log(z);
      const TokenLogprob& got = out.prompt_logprobs[p - 1];
      EXPECT_EQ(got.token, prompt[p]) << p;
      EXPECT_NEAR(got.logprob, want, 1e-4) << "position " << p << " layout " << layout.workers << "x" << layout.stages;
      // Its rank: 1 + the tokens more likely there (within the layouts' rounding of the logits).
      const float at = row[prompt[p]];
      const int64_t above = std::count_if(row, row + vocab, [&](float v) { return v > at + 1e-3f; });
      const int64_t near_or_above = std::count_if(row, row + vocab, [&](float v) { return v > at - 1e-3f; }) - 1;
      EXPECT_GE(got.rank, 1 + above) << p;
      EXPECT_LE(got.rank, 1 + near_or_above) << p;
      ASSERT_EQ(got.top.size(), 2u);
      EXPECT_EQ(got.top[0].first, static_cast<int32_t>(std::max_element(row, row + vocab) - row)) << p;
      EXPECT_GE(got.top[0].second, got.top[1].second);
    }
    if (layout.scored_rows == 5) {
      // Alone, the scored prompt takes 9 steps of 5 tokens (the published count may lag one).
      const int64_t before = h.engine()->GetLoad().steps;
      GenerationRequest alone = Greedy(prompt, 1);
      alone.sampling.prompt_logprobs = 0;
      ASSERT_TRUE(h.Run(alone).error.ok());
      EXPECT_GE(h.engine()->GetLoad().steps - before, 8) << "45 scored tokens in chunks of at most 5";
    }
    EXPECT_EQ(h.SettledBlocksUsed(), 0);
  }
}

// Seeded sampling draws token i from a generator seeded by (seed, i) in every engine: the
// cluster (one worker, and a 2-stage pipeline, with other requests in the batch) gives exactly
// the single-process generator's tokens for the same seed.
TEST(EngineTest, SeededSamplingMatchesSingleProcessEngine) {
  SingleProcess sp;
  ASSERT_NE(sp.model, nullptr);
  const model::Glm5Model& single = *sp.model;
  const auto prompt = Prompt(21, 25);
  runtime::GenerateOptions g;
  g.max_new_tokens = 24;
  g.ignore_eos = true;
  g.sampling.temperature = 0.9f;
  g.sampling.top_p = 0.95f;
  g.sampling.top_k = 40;
  g.sampling.repetition_penalty = 1.1f;
  g.sampling.seed = 1234;
  const auto want = runtime::Generate(single, prompt, g)->tokens;
  g.sampling.seed = 1235;
  EXPECT_NE(runtime::Generate(single, prompt, g)->tokens, want) << "the seed must matter";
  for (int layout : {1, 2}) {
    EngineHarness h("glm5-tiny-code", layout, layout, 256, 16);
    GenerationRequest r = Greedy(prompt, 24);
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.95f;
    r.sampling.top_k = 40;
    r.sampling.repetition_penalty = 1.1f;
    r.sampling.seed = 1234;
    auto outs = h.RunAll({r, Greedy(Prompt(22, 17), 10)});
    ASSERT_TRUE(outs[0].error.ok()) << outs[0].error;
    EXPECT_EQ(outs[0].tokens, want) << "layout " << layout << "x" << layout;
  }
}

// The last stage decides a step's sequences on all its compute threads: a mixed batch (seeded
// sampling with top-k/top-p/min-p, penalties, logprobs, greedy, MTP and prompt-lookup
// speculation) gives every request exactly what it gets from a one-thread worker, and the
// non-speculative ones what the single-process engine gives.
TEST(EngineTest, SampledBatchOnSeveralThreadsMatchesOneThread) {
  SingleProcess sp;
  ASSERT_NE(sp.model, nullptr);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 6; ++i) {
    GenerationRequest r = Greedy(Prompt(500 + i, 12 + 3 * i), 16);
    r.sampling.temperature = i == 5 ? 0.0f : 0.7f + 0.1f * i;
    r.sampling.top_p = i % 2 == 0 ? 0.9f : 1.0f;
    r.sampling.top_k = i == 1 ? 20 : 0;
    r.sampling.min_p = i == 3 ? 0.05f : 0.0f;
    r.sampling.repetition_penalty = i == 2 ? 1.3f : 1.0f;
    r.sampling.top_logprobs = i == 4 ? 3 : 0;
    r.sampling.logprobs = i == 4;
    r.sampling.seed = 900 + i;
    r.speculative = i == 0 ? "mtp:2" : i == 3 ? "ngram:2" : "none";
    requests.push_back(r);
  }
  std::vector<std::vector<int32_t>> one_thread;
  {
    EngineHarness h("glm5-tiny-code", 1, 1, 256, 16, {}, 1);
    for (const auto& out : h.RunAll(requests)) {
      ASSERT_TRUE(out.error.ok()) << out.error;
      one_thread.push_back(out.tokens);
    }
  }
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16, {}, 3);
  const auto outs = h.RunAll(requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(outs[i].error.ok()) << outs[i].error;
    EXPECT_EQ(outs[i].tokens, one_thread[i]) << "request " << i;
    if (requests[i].speculative != "none") continue;
    runtime::GenerateOptions g;
    g.max_new_tokens = 16;
    g.ignore_eos = true;
    g.sampling.temperature = requests[i].sampling.temperature;
    g.sampling.top_p = requests[i].sampling.top_p;
    g.sampling.top_k = requests[i].sampling.top_k;
    g.sampling.min_p = requests[i].sampling.min_p;
    g.sampling.repetition_penalty = requests[i].sampling.repetition_penalty;
    g.sampling.seed = *requests[i].sampling.seed;
    EXPECT_EQ(outs[i].tokens, runtime::Generate(*sp.model, requests[i].prompt, g)->tokens) << "request " << i;
  }
}

TEST(EngineTest, ConcurrentRequestsEachGetTheirSoloOutput) {
  EngineHarness h("glm5-tiny-code", 2, 1, 512, 16);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(Prompt(100 + i, 10 + 9 * i));
  std::vector<EngineHarness::Output> outs(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i)
    clients.emplace_back([&, i] { outs[i] = h.Run(Greedy(prompts[i], 10)); });
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(outs[i].error.ok()) << outs[i].error;
    // Batch-invariant kernels: a request's tokens do not depend on what else is in the batch.
    EXPECT_EQ(outs[i].tokens, SingleProcessGreedy(prompts[i], 10)) << "request " << i;
  }
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
}

TEST(EngineTest, ChunkedPrefillGivesTheSameTokens) {
  EngineOptions small_chunks;
  small_chunks.prefill_chunk = 7;
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16, small_chunks);
  auto prompt = Prompt(3, 50);
  auto out = h.Run(Greedy(prompt, 8));
  ASSERT_TRUE(out.error.ok()) << out.error;
  EXPECT_EQ(out.tokens, SingleProcessGreedy(prompt, 8));
}

// A multi-turn conversation: each turn's prompt extends the previous turn's prompt and reply.
// With the prefix cache (and eviction pressure from unrelated requests) every turn gives
// exactly the tokens of a cold run — greedy and seeded sampling (engine_harness.h).
TEST(EngineTest, PrefixCacheHitsAreExactOverAMultiTurnConversation) { ExpectMultiTurnPrefixHitsExact("f32"); }

TEST(EngineTest, RepeatedPromptIsServedFromTheCache) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  auto prompt = Prompt(7, 100);
  auto first = h.Run(Greedy(prompt, 4));
  auto second = h.Run(Greedy(prompt, 4));
  EXPECT_EQ(first.cached_tokens, 0);
  EXPECT_EQ(second.cached_tokens, 96);  // all full blocks but the one with the last token
  EXPECT_EQ(first.tokens, second.tokens);
}

TEST(EngineTest, PreemptionUnderBlockPressureKeepsOutputsExact) {
  // 4 requests that together need more blocks than exist while decoding (4 x 8 blocks of 4
  // positions vs 24), all submitted before any is read: they always run together.
  absl::Mutex log_mu;
  std::vector<std::pair<std::string, std::string>> logged;  // (event, request id)
  EngineOptions o;
  o.log_event = [&](const std::string& event, const std::string& id, const std::string&) {
    absl::MutexLock lock(&log_mu);
    logged.emplace_back(event, id);
  };
  EngineHarness h("glm5-tiny-code", 1, 1, 24, 4, o);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(Prompt(300 + i, 12));
    requests.push_back(Greedy(prompts.back(), 20, "pre-" + std::to_string(i)));
  }
  const std::vector<EngineHarness::Output> outs = h.RunAll(std::move(requests));
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(outs[i].error.ok()) << outs[i].error;
    EXPECT_EQ(outs[i].tokens, SingleProcessGreedy(prompts[i], 20)) << "request " << i;
  }
  EXPECT_GT(h.engine()->GetLoad().preemptions, 0);
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
  // Each preemption is a structured log event naming its request.
  absl::MutexLock lock(&log_mu);
  EXPECT_EQ(static_cast<int64_t>(logged.size()), h.engine()->GetLoad().preemptions);
  for (const auto& [event, id] : logged) {
    EXPECT_EQ(event, "request_preempted");
    EXPECT_EQ(id.rfind("pre-", 0), 0u) << id;
  }
}

// The penalties' history reaches the last stage in parts (each step sends only the tokens it
// does not hold yet); preempted and recomputed sequences must still be penalised against their
// whole history.
TEST(EngineTest, PenaltyHistoryStaysExactThroughPreemption) {
  SingleProcess sp;
  ASSERT_NE(sp.model, nullptr);
  // 24 blocks of 4 positions; a request grows to 18 (12 + 60 positions), so any two that overlap
  // at all preempt — with 20 new tokens (8 blocks) only three at once did, and a loaded machine
  // that stalled the submitting thread could let the engine run them one after another.
  EngineHarness h("glm5-tiny-code", 1, 1, 24, 4);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<GenerationRequest> requests;
  std::vector<std::vector<int32_t>> want;
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(Prompt(400 + i, 12));
    GenerationRequest r = Greedy(prompts.back(), 60);
    r.sampling.repetition_penalty = 1.4f;
    r.sampling.frequency_penalty = 0.5f;
    requests.push_back(r);
    runtime::GenerateOptions g;
    g.max_new_tokens = 60;
    g.ignore_eos = true;
    g.sampling.repetition_penalty = 1.4f;
    g.sampling.frequency_penalty = 0.5f;
    want.push_back(runtime::Generate(*sp.model, prompts.back(), g)->tokens);
  }
  const std::vector<EngineHarness::Output> outs = h.RunAll(std::move(requests));
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(outs[i].error.ok()) << outs[i].error;
    EXPECT_EQ(outs[i].tokens, want[i]) << "request " << i;
  }
  EXPECT_GT(h.engine()->GetLoad().preemptions, 0);
}

// A step whose penalty history does not continue what the last stage holds is refused with
// INVALID_ARGUMENT (never sampled against a wrong history), and the cluster keeps serving.
TEST(EngineTest, PenaltyHistoryMustContinueWhatTheLastStageHolds) {
  auto lc = LocalCluster::Start(FixtureModelDir("glm5-tiny-code"), 1, 1, 16, 16);
  ASSERT_TRUE(lc.ok()) << lc.status();
  shard::StepPlan plan = OneSequencePlan(1, 7, {21, 22, 23});
  auto* s = plan.mutable_sequences(0);
  s->mutable_sampling()->set_repetition_penalty(1.3f);
  s->set_penalty_tokens_from(5);  // nothing is held for sequence 7 yet
  for (int32_t t : {21, 22, 23}) s->add_penalty_tokens(t);
  auto refused = (*lc)->client()->Step(plan);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_NE(std::string(refused.status().message()).find("penalty tokens start at 5"), std::string::npos)
      << refused.status();
  s->set_penalty_tokens_from(0);
  plan.set_step_id(2);
  auto served = (*lc)->client()->Step(plan);
  ASSERT_TRUE(served.ok()) << served.status();
  ASSERT_EQ(served->sequences_size(), 1);
}

// Steps send only the block-table entries the workers do not hold (block_table_from): a running
// sequence's table grows by appends; a preempted one comes back with a whole new table. The
// outputs stay exact through preemption, and the pieces add up to the coordinator's tables.
TEST(EngineTest, BlockTablesAreSentIncrementallyAndStayExactThroughPreemption) {
  auto lc = LocalCluster::Start(FixtureModelDir("glm5-tiny-code"), 2, 2, 24, 4);
  ASSERT_TRUE(lc.ok()) << lc.status();
  struct RecordingRunner : StepRunner {
    explicit RecordingRunner(cluster::ClusterClient* c) : inner(c) {}
    absl::StatusOr<shard::StepResult> Step(const shard::StepPlan& plan) override {
      plans.push_back(plan);
      return inner.Step(plan);
    }
    // The engine submits a step, delivers the previous step's tokens, then waits for the result.
    absl::Status Submit(const shard::StepPlan& plan) override {
      plans.push_back(plan);
      return inner.Submit(plan);
    }
    absl::StatusOr<shard::StepResult> AwaitResult() override {
      ++awaited;
      return inner.AwaitResult();
    }
    ClusterStepRunner inner;
    std::vector<shard::StepPlan> plans;  // read after the loop has stopped
    int awaited = 0;
  } runner((*lc)->client());
  EngineOptions o;
  o.max_context = (*lc)->config().max_position_embeddings;
  o.vocab_size = static_cast<int32_t>((*lc)->config().vocab_size);
  o.eos_token_ids = (*lc)->config().eos_token_ids;
  o.kv_blocks = 24;
  o.kv_block_size = 4;
  auto engine = Engine::Create(&runner, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::thread loop([&] { (*engine)->RunLoop().IgnoreError(); });
  std::vector<std::shared_ptr<RequestStream>> streams;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(Prompt(500 + i, 12));
    auto s = (*engine)->Submit(Greedy(prompts.back(), 20));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    std::vector<int32_t> tokens;
    GenerationEvent e;
    while (streams[i]->Next(&e, absl::Seconds(120))) {
      tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
      if (e.finished) break;
    }
    ASSERT_TRUE(e.error.ok()) << e.error;
    EXPECT_EQ(tokens, SingleProcessGreedy(prompts[i], 20)) << "request " << i;
  }
  EXPECT_GT((*engine)->GetLoad().preemptions, 0);
  (*engine)->Shutdown(false);
  loop.join();

  std::map<uint64_t, std::vector<int32_t>> tables;
  int incremental = 0, readmitted = 0;
  for (const shard::StepPlan& plan : runner.plans) {
    for (uint64_t id : plan.finished()) tables.erase(id);
    for (const shard::SequenceStep& s : plan.sequences()) {
      auto [it, fresh] = tables.try_emplace(s.seq_id());
      ASSERT_LE(s.block_table_from(), static_cast<int32_t>(it->second.size())) << "seq " << s.seq_id();
      if (s.block_table_from() > 0) ++incremental;
      if (!fresh && s.block_table_from() == 0) ++readmitted;
      it->second.resize(s.block_table_from());
      it->second.insert(it->second.end(), s.block_table().begin(), s.block_table().end());
      // The whole table covers the positions this step writes.
      EXPECT_GE(static_cast<int64_t>(it->second.size()) * 4, s.start_position() + s.tokens_size());
    }
  }
  EXPECT_EQ(runner.awaited, static_cast<int>(runner.plans.size())) << "every submitted step is waited for";
  EXPECT_GT(incremental, 0) << "decode steps should send only new entries";
  EXPECT_GT(readmitted, 0) << "a preempted sequence comes back with a whole table";
}

// A step whose block table does not continue what the workers hold is refused with
// INVALID_ARGUMENT on every rank; a finished sequence's table is gone.
TEST(EngineTest, BlockTableMustContinueWhatTheWorkersHold) {
  auto lc = LocalCluster::Start(FixtureModelDir("glm5-tiny-code"), 2, 2, 16, 16);
  ASSERT_TRUE(lc.ok()) << lc.status();
  shard::StepPlan plan = OneSequencePlan(1, 7, {21, 22, 23});
  auto* s = plan.mutable_sequences(0);
  s->set_block_table_from(1);  // nothing is held for sequence 7 yet
  auto refused = (*lc)->client()->Step(plan);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_NE(std::string(refused.status().message()).find("block table entries start at 1 but this rank holds 0"),
            std::string::npos)
      << refused.status();
  s->set_block_table_from(0);
  plan.set_step_id(2);
  auto first = (*lc)->client()->Step(plan);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->sequences_size(), 1);
  const int32_t next = first->sequences(0).token();

  // Decode the next token twice: sequence 7 by reference to its held table, sequence 8 (the same
  // tokens in other blocks) with its whole table: the same token comes out.
  shard::StepPlan prefill8 = plan;
  prefill8.set_step_id(3);
  prefill8.mutable_sequences(0)->set_seq_id(8);
  prefill8.mutable_sequences(0)->set_block_table(0, 1);
  ASSERT_TRUE((*lc)->client()->Step(prefill8).ok());
  shard::StepPlan decode;
  decode.set_kind(shard::StepPlan::FORWARD);
  decode.set_step_id(4);
  for (uint64_t id : {7, 8}) {
    auto* d = decode.add_sequences();
    d->set_seq_id(id);
    d->add_tokens(next);
    d->set_start_position(3);
    d->set_sample(true);
    if (id == 7) {
      d->set_block_table_from(1);  // block 0 is held
    } else {
      d->add_block_table(1);
    }
  }
  auto decoded = (*lc)->client()->Step(decode);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->sequences_size(), 2);
  EXPECT_EQ(decoded->sequences(0).token(), decoded->sequences(1).token());

  // A sequence twice in one step is refused (its table would be updated twice).
  shard::StepPlan twice = decode;
  twice.set_step_id(5);
  *twice.add_sequences() = decode.sequences(1);
  auto doubled = (*lc)->client()->Step(twice);
  ASSERT_FALSE(doubled.ok());
  EXPECT_NE(std::string(doubled.status().message()).find("sequence 8 appears twice"), std::string::npos)
      << doubled.status();

  // Finished: its table is dropped, so continuing it is refused.
  shard::StepPlan after;
  after.set_kind(shard::StepPlan::FORWARD);
  after.set_step_id(6);
  after.add_finished(7);
  *after.add_sequences() = decode.sequences(0);
  after.mutable_sequences(0)->set_start_position(4);
  auto gone = (*lc)->client()->Step(after);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kInvalidArgument) << gone.status();
}

TEST(EngineTest, AbortStopsAndFreesBlocks) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  GenerationRequest r = Greedy(Prompt(9, 20), 0, "long-one");  // until the context fills
  auto stream = h.engine()->Submit(r);
  ASSERT_TRUE(stream.ok());
  GenerationEvent e;
  ASSERT_TRUE((*stream)->Next(&e, absl::Seconds(30)));
  EXPECT_TRUE(h.engine()->Abort("long-one"));
  while ((*stream)->Next(&e, absl::Seconds(30)) && !e.finished) {
  }
  EXPECT_TRUE(e.finished);
  EXPECT_EQ(e.finish_reason, "abort");
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
  EXPECT_FALSE(h.engine()->Abort("long-one"));
}

// Abort releases the request id at once: a client that ended a request on a stop string (the
// front end aborts it then) may send its next request with the same id before the engine's loop
// has got to the abort. It was refused as "already running" until then.
TEST(EngineTest, AnAbortedRequestsIdIsFreeAtOnce) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  auto first = h.engine()->Submit(Greedy(Prompt(9, 20), 0, "x"));  // until the context fills
  ASSERT_TRUE(first.ok()) << first.status();
  GenerationEvent e;
  ASSERT_TRUE((*first)->Next(&e, absl::Seconds(30)));
  ASSERT_TRUE(h.engine()->Abort("x"));
  auto second = h.engine()->Submit(Greedy(Prompt(4, 10), 5, "x"));
  ASSERT_TRUE(second.ok()) << second.status();
  // The id now belongs to the second request: in use, and an abort of it is the second's.
  EXPECT_EQ(h.engine()->Submit(Greedy(Prompt(4, 10), 5, "x")).status().code(), absl::StatusCode::kInvalidArgument);
  while ((*first)->Next(&e, absl::Seconds(30)) && !e.finished) {
  }
  EXPECT_EQ(e.finish_reason, "abort");
  std::vector<int32_t> tokens;
  while ((*second)->Next(&e, absl::Seconds(30))) {
    tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
    if (e.finished) break;
  }
  EXPECT_EQ(e.finish_reason, "length");
  EXPECT_EQ(tokens, SingleProcessGreedy(Prompt(4, 10), 5));
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
  EXPECT_FALSE(h.engine()->Abort("x"));
}

// A front end stopping its own request (AbortStream) cannot stop a newer request that reuses the
// id once its own has finished (a client cancelling while re-sending with the same id); Abort by
// id, the gRPC Abort RPC's, stops whichever request holds the id.
TEST(EngineTest, AbortStreamStopsOnlyItsOwnRequest) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  auto first = h.engine()->Submit(Greedy(Prompt(4, 10), 2, "x"));
  ASSERT_TRUE(first.ok()) << first.status();
  GenerationEvent e;
  while ((*first)->Next(&e, absl::Seconds(30)) && !e.finished) {
  }
  ASSERT_EQ(e.finish_reason, "length");
  auto second = h.engine()->Submit(Greedy(Prompt(9, 20), 0, "x"));  // until the context fills
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE((*second)->Next(&e, absl::Seconds(30)));
  EXPECT_FALSE(h.engine()->AbortStream(**first));
  EXPECT_TRUE(h.engine()->AbortStream(**second));
  while ((*second)->Next(&e, absl::Seconds(30)) && !e.finished) {
  }
  EXPECT_EQ(e.finish_reason, "abort");
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
}

// The step that samples a stop token finishes the request in the same event: front ends hide a
// stop token's text (stop_token_ids, EOS with skip_special_tokens off) only when they see the
// token and the finish together. The engine used to send the token, then a token-less finish.
TEST(EngineTest, AStopTokenArrivesWithTheFinish) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  const std::vector<int32_t> greedy = SingleProcessGreedy(Prompt(3, 10), 6);
  GenerationRequest r = Greedy(Prompt(3, 10), 20);
  r.sampling.stop_token_ids = {greedy[4]};
  const size_t first = std::find(greedy.begin(), greedy.end(), greedy[4]) - greedy.begin();
  auto stream = h.engine()->Submit(r);
  ASSERT_TRUE(stream.ok()) << stream.status();
  GenerationEvent e;
  std::vector<int32_t> tokens;
  while ((*stream)->Next(&e, absl::Seconds(30))) {
    tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
    if (e.finished) break;
  }
  ASSERT_TRUE(e.finished);
  EXPECT_EQ(e.finish_reason, "stop");
  EXPECT_EQ(e.tokens, std::vector<int32_t>{greedy[4]});
  EXPECT_EQ(tokens, std::vector<int32_t>(greedy.begin(), greedy.begin() + first + 1));
}

TEST(EngineTest, DeadlineEndsTheRequest) {
  EngineHarness h("glm5-tiny-code", 1, 1, 256, 16);
  GenerationRequest r = Greedy(Prompt(10, 20), 0);
  r.deadline = absl::Now() + absl::Milliseconds(300);
  auto out = h.Run(r);
  EXPECT_EQ(out.finish_reason, "abort");
  EXPECT_EQ(out.error.code(), absl::StatusCode::kDeadlineExceeded);
}

// A request without max_tokens on a server whose KV cache is shorter than the model's context
// stops, with finish reason "length", where the cache ends; it used to grow past it, preempt
// itself and never be admitted again, holding up every request behind it.
TEST(EngineTest, UnlimitedRequestStopsWhereTheCacheEnds) {
  EngineHarness h("glm5-tiny-code", 1, 1, 8, 16);  // 128 positions
  GenerationRequest unlimited = Greedy(Prompt(1, 10), 0);
  unlimited.sampling.ignore_eos = true;
  GenerationRequest next = Greedy(Prompt(2, 10), 5);
  auto outs = h.RunAll({unlimited, next});
  ASSERT_TRUE(outs[0].error.ok()) << outs[0].error;
  EXPECT_EQ(outs[0].finish_reason, "length");
  EXPECT_EQ(outs[0].tokens.size(), 128u - 10u);
  EXPECT_EQ(outs[0].tokens, SingleProcessGreedy(Prompt(1, 10), 118));
  ASSERT_TRUE(outs[1].error.ok()) << outs[1].error;
  EXPECT_EQ(outs[1].tokens, SingleProcessGreedy(Prompt(2, 10), 5));
  EXPECT_EQ(h.SettledBlocksUsed(), 0);
}

// Whatever a failed step returns (here an unreadable reply, DATA_LOSS), clients get UNAVAILABLE,
// the engine reports itself unhealthy at once (draining(): what health checks read), and new
// requests are refused with UNAVAILABLE.
TEST(EngineTest, AClusterFailureIsUnavailableAndUnhealthy) {
  struct BrokenRunner : StepRunner {
    absl::StatusOr<shard::StepResult> Step(const shard::StepPlan&) override {
      return absl::DataLossError("unreadable StepResult");
    }
  } runner;
  EngineOptions o = ScriptedEngineOptions(64, 8);
  std::vector<std::string> failed;  // request ids logged as failed (the loop thread, joined below)
  o.log_event = [&](const std::string& event, const std::string& id, const std::string& detail) {
    if (event == "request_failed" && detail.find("unreadable StepResult") != std::string::npos) failed.push_back(id);
  };
  auto engine = Engine::Create(&runner, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_FALSE((*engine)->draining());
  auto stream = (*engine)->Submit(Greedy({1, 2, 3}, 4, "doomed"));
  ASSERT_TRUE(stream.ok()) << stream.status();
  absl::Status loop_status;
  std::thread loop([&] { loop_status = (*engine)->RunLoop(); });
  GenerationEvent e;
  while ((*stream)->Next(&e, absl::Seconds(30)) && !e.finished) {
  }
  loop.join();
  EXPECT_TRUE(e.finished);
  EXPECT_EQ(e.error.code(), absl::StatusCode::kUnavailable) << e.error;
  EXPECT_NE(e.error.message().find("unreadable StepResult"), std::string::npos) << e.error;
  EXPECT_FALSE(loop_status.ok());
  EXPECT_EQ(failed, std::vector<std::string>{"doomed"});
  EXPECT_TRUE((*engine)->draining());
  EXPECT_EQ((*engine)->Submit(Greedy({1, 2, 3}, 4)).status().code(), absl::StatusCode::kUnavailable);
}

TEST(EngineTest, ValidationAndAdmissionErrors) {
  EngineOptions tight;
  tight.max_waiting = 1;
  EngineHarness h("glm5-tiny-code", 1, 1, 8, 16, tight);
  EXPECT_EQ(h.Run(Greedy({}, 4)).error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(h.Run(Greedy({99999}, 4)).error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(h.Run(Greedy(Prompt(1, 10), 100000)).error.code(), absl::StatusCode::kInvalidArgument);
  // 8 blocks of 16 positions cannot hold a 200-token prompt: never admissible (marked so, for the
  // HTTP front end's 400 context_length_exceeded: a 429 would be retried for ever).
  auto huge = h.Run(Greedy(Prompt(1, 200), 4));
  EXPECT_EQ(huge.error.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(ExceedsKvCache(huge.error)) << huge.error;
  EXPECT_TRUE(absl::StartsWith(huge.error.message(), "prompt: ")) << huge.error;
  // Nor a short prompt whose max_tokens would outgrow them (once preempted it could never return).
  auto outgrows = h.Run(Greedy(Prompt(1, 10), 119));
  EXPECT_EQ(outgrows.error.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(ExceedsKvCache(outgrows.error)) << outgrows.error;
  EXPECT_NE(outgrows.error.message().find("max_tokens"), std::string::npos) << outgrows.error;
  EXPECT_FALSE(ExceedsKvCache(absl::ResourceExhaustedError("the queue is full")));
  GenerationRequest bad = Greedy(Prompt(1, 10), 4);
  bad.sampling.top_p = 0;
  auto s = h.engine()->Submit(bad);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("top_p"), std::string::npos);
  GenerationRequest bad_penalty = Greedy(Prompt(1, 10), 4);
  bad_penalty.sampling.frequency_penalty = 2.5f;
  EXPECT_EQ(h.Run(bad_penalty).error.code(), absl::StatusCode::kInvalidArgument);
  GenerationRequest bad_scoring = Greedy(Prompt(1, 10), 4);
  bad_scoring.sampling.prompt_logprobs = 21;
  EXPECT_EQ(h.Run(bad_scoring).error.code(), absl::StatusCode::kInvalidArgument);
  GenerationRequest bad_bias = Greedy(Prompt(1, 10), 4);
  bad_bias.sampling.logit_bias = {{99999, 1.0f}};
  auto b = h.engine()->Submit(bad_bias);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("logit_bias"), std::string::npos);
  h.engine()->Shutdown(/*drain=*/true);
  EXPECT_EQ(h.Run(Greedy(Prompt(1, 10), 4)).error.code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace glm::scheduler
