// The engine's scheduling decisions over a scripted last stage (no model): the queue bound and
// what a preempted request recomputes.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "tests/coordinator/scheduler/engine_harness.h"

namespace glm::scheduler {
namespace {

// The queue bound counts each waiting request once. Requests that arrived during a step were
// counted twice from the step's end until the next scheduling pass (load_.waiting held them,
// and Submit added the inbox again): spurious RESOURCE_EXHAUSTED at about half of max_waiting.
TEST(EngineSchedulingTest, TheQueueBoundCountsEachRequestOnce) {
  struct BlockingRunner : StepRunner {
    absl::Notification in_step, release_step, in_stats, release_stats;
    int steps = 0;
    absl::StatusOr<shard::StepResult> Step(const shard::StepPlan& plan) override {
      if (steps++ == 0) {
        in_step.Notify();
        release_step.WaitForNotification();
      }
      return SampleEverySequence(plan);
    }
    absl::StatusOr<std::vector<shard::RankStats>> CollectRankStats() override {
      if (!in_stats.HasBeenNotified()) {  // the window between a step's end and the next pass
        in_stats.Notify();
        release_stats.WaitForNotification();
      }
      return std::vector<shard::RankStats>();
    }
  } runner;
  EngineOptions o = ScriptedEngineOptions(64, 16);
  o.max_running = 1;
  o.max_waiting = 3;
  auto engine = Engine::Create(&runner, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  ASSERT_TRUE((*engine)->Submit(Greedy({1, 2, 3}, 20)).ok());
  runner.in_step.WaitForNotification();
  ASSERT_TRUE((*engine)->Submit(Greedy({1, 2, 3}, 2)).ok());  // 1 waiting
  ASSERT_TRUE((*engine)->Submit(Greedy({1, 2, 3}, 2)).ok());  // 2 waiting
  runner.release_step.Notify();
  runner.in_stats.WaitForNotification();
  auto third = (*engine)->Submit(Greedy({1, 2, 3}, 2));  // 3 waiting: within the bound
  EXPECT_TRUE(third.ok()) << third.status();
  EXPECT_EQ((*engine)->Submit(Greedy({1, 2, 3}, 2)).status().code(), absl::StatusCode::kResourceExhausted);
  runner.release_stats.Notify();
  (*engine)->Shutdown(false);
  loop.join();
}


// A scored prompt (prompt_logprobs, completions echo) preempted after its first token recomputes
// like any other prompt: its scores went out with that token. It used to be scored again (every
// row's logits over the vocabulary, in chunks cut to max_scored_logits), without the prefix
// cache, and the scores thrown away.
TEST(EngineSchedulingTest, AScoredPromptPreemptedAfterItsFirstTokenIsNotScoredAgain) {
  struct RecordingRunner : StepRunner {
    std::vector<shard::SequenceStep> steps;  // every sequence step, in order
    absl::StatusOr<shard::StepResult> Step(const shard::StepPlan& plan) override {
      steps.insert(steps.end(), plan.sequences().begin(), plan.sequences().end());
      return SampleEverySequence(plan);
    }
  } runner;
  // 32 positions: the scored request outgrows what the plain one leaves it.
  EngineOptions o = ScriptedEngineOptions(64, 2);
  auto engine = Engine::Create(&runner, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  GenerationRequest plain = Greedy(std::vector<int32_t>(10, 3), 8);
  GenerationRequest scored = Greedy(std::vector<int32_t>(10, 4), 20);
  scored.sampling.prompt_logprobs = 0;
  auto p = (*engine)->Submit(plain);
  auto s = (*engine)->Submit(scored);  // newer: the one preempted
  ASSERT_TRUE(p.ok() && s.ok());
  std::thread loop([&] { (void)(*engine)->RunLoop(); });
  GenerationEvent e;
  int64_t tokens = 0;
  while ((*s)->Next(&e, absl::Seconds(30))) {
    tokens += static_cast<int64_t>(e.tokens.size());
    if (e.finished) break;
  }
  EXPECT_TRUE(e.error.ok()) << e.error;
  EXPECT_EQ(tokens, 20);
  (*engine)->Shutdown(false);
  loop.join();
  ASSERT_GE((*engine)->GetLoad().preemptions, 1);
  const uint64_t id = 2;  // the second request submitted
  bool sampled = false, recomputed = false;
  for (const shard::SequenceStep& step : runner.steps) {
    if (step.seq_id() != id) continue;
    if (sampled && step.start_position() == 0) recomputed = true;
    if (recomputed) {
      EXPECT_FALSE(step.want_prompt_logprobs()) << "a step from " << step.start_position();
    }
    sampled = sampled || step.sample();
  }
  EXPECT_TRUE(recomputed);
}

// cache_salt (vLLM's): a prompt's cached blocks serve a later request only with the same salt
// (none counts as a salt of its own), and the tokens are the same either way.
TEST(EngineSchedulingTest, CacheSaltKeepsPrefixCachesApart) {
  EngineHarness h("glm5-tiny-code", 1, 1, 64, 16);
  const std::vector<int32_t> prompt = Prompt(77, 70);
  auto run = [&](const std::string& salt) {
    GenerationRequest r = Greedy(prompt, 4);
    r.cache_salt = salt;
    return h.Run(r);
  };
  const auto cold = run("tenant-a");
  ASSERT_TRUE(cold.error.ok()) << cold.error;
  EXPECT_EQ(cold.cached_tokens, 0);
  const auto same = run("tenant-a");
  EXPECT_EQ(same.cached_tokens, 64);  // the 4 full blocks of the 70-token prompt
  EXPECT_EQ(run("tenant-b").cached_tokens, 0);
  EXPECT_EQ(run("").cached_tokens, 0);
  EXPECT_EQ(run("").cached_tokens, 64);
  EXPECT_EQ(same.tokens, cold.tokens);
}

}  // namespace
}  // namespace glm::scheduler
