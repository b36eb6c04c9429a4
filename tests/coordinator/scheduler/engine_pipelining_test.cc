// Steps in flight together (EngineOptions::max_steps_in_flight): with pipeline stages, the running
// sequences split between the steps so that the stages work on different micro-batches. Every
// output must be what one step at a time gives (and what the single-process engine gives), no
// sequence may be in two steps at once, and aborts, preemption, chunked prefill, the prefix cache
// and speculative decoding must keep working through it.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tests/coordinator/scheduler/engine_harness.h"

namespace glm::scheduler {
namespace {

// Forwards to the cluster and checks the pipelining contract as the engine uses it: results are
// awaited in submission order, and a sequence is never in two submitted steps at once.
class CheckingRunner : public StepRunner {
 public:
  explicit CheckingRunner(cluster::ClusterClient* client) : inner_(client) {}
  absl::StatusOr<shard::StepResult> Step(const shard::StepPlan& plan) override { return inner_.Step(plan); }
  absl::Status Submit(const shard::StepPlan& plan) override {
    std::set<uint64_t> ids;
    for (const auto& s : plan.sequences()) {
      ids.insert(s.seq_id());
      for (const auto& earlier : pending_)
        if (earlier.contains(s.seq_id())) ++overlapping_sequences_;
    }
    pending_.push_back(std::move(ids));
    max_in_flight_ = std::max(max_in_flight_, static_cast<int>(pending_.size()));
    return inner_.Submit(plan);
  }
  absl::StatusOr<shard::StepResult> AwaitResult() override {
    if (!pending_.empty()) pending_.erase(pending_.begin());
    return inner_.AwaitResult();
  }
  // Read once the engine loop has stopped.
  int max_in_flight() const { return max_in_flight_; }
  int overlapping_sequences() const { return overlapping_sequences_; }

 private:
  ClusterStepRunner inner_;
  std::vector<std::set<uint64_t>> pending_;
  int max_in_flight_ = 0, overlapping_sequences_ = 0;
};

// An engine over a local cluster of the bundled model with a CheckingRunner.
class PipelinedEngine : public EngineHarness {
 public:
  PipelinedEngine(int workers, int stages, int kv_blocks, int block_size, EngineOptions o)
      : EngineHarness("glm5-tiny-code", workers, stages, kv_blocks, block_size, o, 1,
                      [](cluster::ClusterClient* c) { return std::make_unique<CheckingRunner>(c); }) {}
  const CheckingRunner& checks() { return *static_cast<CheckingRunner*>(runner()); }

  // Every request submitted before any is read; returns each one's tokens (and checks it ended
  // without error).
  std::vector<std::vector<int32_t>> Tokens(std::vector<GenerationRequest> requests) {
    std::vector<std::vector<int32_t>> out;
    for (Output& o : RunAll(std::move(requests))) {
      EXPECT_TRUE(o.error.ok()) << o.error;
      EXPECT_FALSE(o.finish_reason.empty()) << "a request did not finish";
      out.push_back(std::move(o.tokens));
    }
    return out;
  }
};

EngineOptions InFlight(int steps, int32_t prefill_chunk = 2048) {
  EngineOptions o;
  o.max_steps_in_flight = steps;
  o.prefill_chunk = prefill_chunk;
  return o;
}

// Two stages with two steps in flight, three with three: concurrent requests of different
// lengths (prompts cut into 16-token chunks) give exactly the single-process tokens, the steps
// really overlap, and no sequence is ever in two of them.
TEST(EnginePipeliningTest, StepsInFlightGiveTheSingleProcessTokens) {
  for (int stages : {2, 3}) {
    SCOPED_TRACE(absl::StrCat(stages, " stages"));
    PipelinedEngine p(stages, stages, 256, 16, InFlight(stages, /*prefill_chunk=*/16));
    std::vector<GenerationRequest> requests;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 6; ++i) {
      prompts.push_back(Prompt(700 + i, 5 + 9 * i));
      requests.push_back(Greedy(prompts.back(), 12 + 3 * i, absl::StrCat("r", i)));
    }
    auto outs = p.Tokens(std::move(requests));
    for (int i = 0; i < 6; ++i) EXPECT_EQ(outs[i], SingleProcessGreedy(prompts[i], 12 + 3 * i)) << "request " << i;
    EXPECT_EQ(p.SettledBlocksUsed(), 0);
    const EngineLoad load = p.engine()->GetLoad();
    EXPECT_EQ(load.max_steps_in_flight, stages);
    EXPECT_GT(load.overlapped_steps, 0);
    p.Stop();
    EXPECT_EQ(p.checks().max_in_flight(), stages) << "the steps never overlapped that far";
    EXPECT_EQ(p.checks().overlapping_sequences(), 0);
  }
}

// One step at a time stays one step at a time (the default), even with two stages.
TEST(EnginePipeliningTest, OneStepInFlightNeverOverlaps) {
  PipelinedEngine p(2, 2, 256, 16, InFlight(1));
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 4; ++i) requests.push_back(Greedy(Prompt(710 + i, 9), 8));
  p.Tokens(std::move(requests));
  EXPECT_EQ(p.engine()->GetLoad().overlapped_steps, 0);
  p.Stop();
  EXPECT_EQ(p.checks().max_in_flight(), 1);
}

// A single stream cannot be split: with two steps allowed it still runs one step at a time and
// gives its tokens.
TEST(EnginePipeliningTest, ASingleStreamRunsOneStepAtATime) {
  PipelinedEngine p(2, 2, 256, 16, InFlight(2));
  const std::vector<int32_t> prompt = Prompt(720, 11);
  auto outs = p.Tokens({Greedy(prompt, 20)});
  EXPECT_EQ(outs[0], SingleProcessGreedy(prompt, 20));
  p.Stop();
  EXPECT_EQ(p.checks().max_in_flight(), 1);
}

// Out of KV blocks with steps in flight: a sequence in flight is never preempted (its step still
// writes its blocks); the others are, and every output stays exact.
TEST(EnginePipeliningTest, PreemptionWithStepsInFlightKeepsOutputsExact) {
  PipelinedEngine p(2, 2, 24, 4, InFlight(2));
  std::vector<GenerationRequest> requests;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(Prompt(500 + i, 12));
    requests.push_back(Greedy(prompts.back(), 20));
  }
  auto outs = p.Tokens(std::move(requests));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(outs[i], SingleProcessGreedy(prompts[i], 20)) << "request " << i;
  EXPECT_GT(p.engine()->GetLoad().preemptions, 0);
  EXPECT_EQ(p.SettledBlocksUsed(), 0);
  p.Stop();
  EXPECT_EQ(p.checks().overlapping_sequences(), 0);
}

// A request aborted while its step is in flight ends with "abort" and frees its blocks; its
// result, when it comes back, is dropped; the other requests are untouched.
TEST(EnginePipeliningTest, AbortWhileInFlight) {
  PipelinedEngine p(2, 2, 256, 16, InFlight(2));
  auto doomed = p.engine()->Submit(Greedy(Prompt(730, 20), 0, "doomed"));  // until the context fills
  ASSERT_TRUE(doomed.ok()) << doomed.status();
  std::vector<GenerationRequest> others;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 3; ++i) {
    prompts.push_back(Prompt(740 + i, 10));
    others.push_back(Greedy(prompts.back(), 40, absl::StrCat("other", i)));
  }
  std::vector<std::vector<int32_t>> outs;
  std::thread reader([&] { outs = p.Tokens(std::move(others)); });
  GenerationEvent e;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*doomed)->Next(&e, absl::Seconds(30)));
  EXPECT_TRUE(p.engine()->Abort("doomed"));
  while (!e.finished && (*doomed)->Next(&e, absl::Seconds(30))) {
  }
  reader.join();
  EXPECT_TRUE(e.finished);
  EXPECT_EQ(e.finish_reason, "abort");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(outs[i], SingleProcessGreedy(prompts[i], 40)) << "request " << i;
  EXPECT_EQ(p.SettledBlocksUsed(), 0);
}

// The prefix cache through steps in flight: a repeated prompt hits the cache and gives the same
// tokens, next to other requests.
TEST(EnginePipeliningTest, PrefixCacheHitsAreExactWithStepsInFlight) {
  PipelinedEngine p(2, 2, 256, 16, InFlight(2));
  const std::vector<int32_t> shared = Prompt(750, 48);
  auto first = p.Tokens({Greedy(shared, 10, "a"), Greedy(Prompt(751, 20), 10, "b")});
  auto second = p.Tokens({Greedy(shared, 10, "c"), Greedy(Prompt(752, 20), 10, "d"), Greedy(Prompt(753, 7), 10, "e")});
  EXPECT_EQ(second[0], first[0]);
  EXPECT_EQ(first[0], SingleProcessGreedy(shared, 10));
  EXPECT_GT(p.engine()->GetLoad().prefix_cache_hits, 0);
}

// Speculative decoding with steps in flight: greedy MTP and prompt-lookup outputs are the plain
// ones, and a seeded sampled request gives the tokens it gives with one step at a time.
TEST(EnginePipeliningTest, SpeculationWithStepsInFlight) {
  auto run = [](int steps) {
    PipelinedEngine p(2, 2, 512, 16, InFlight(steps));
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 4; ++i) {
      GenerationRequest r = Greedy(Prompt(760 + i, 30), 24, absl::StrCat("g", i));
      r.speculative = i % 2 == 0 ? "mtp:2" : "ngram:3";
      requests.push_back(std::move(r));
    }
    GenerationRequest sampled = Greedy(Prompt(770, 30), 24, "sampled");
    sampled.sampling.temperature = 0.8f;
    sampled.sampling.seed = 31337;
    sampled.speculative = "mtp:2";
    requests.push_back(std::move(sampled));
    auto outs = p.Tokens(std::move(requests));
    EXPECT_GT(p.engine()->GetLoad().spec_draft_tokens, 0);
    return outs;
  };
  const auto pipelined = run(2), serial = run(1);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(pipelined[i], SingleProcessGreedy(Prompt(760 + i, 30), 24)) << "request " << i;
  EXPECT_EQ(pipelined[4], serial[4]) << "the seeded sampled request";
}

}  // namespace
}  // namespace glm::scheduler
